/**
 * Cases B and C of clusterip-allocator-cases.md: upstream
 * `pkg/registry/core/service/ipallocator/bitmap_test.go` and derived edge ranges.
 */
import t from 'tap';
import {
  ErrAllocated,
  ErrFull,
  ErrMismatchedNetwork,
  ErrNotInRange,
  InvalidIPError,
  IpamError,
} from '../../src/ipam/errors.js';
import { IP, parseCidr } from '../../src/ipam/ip.js';
import { Range, calculateRangeOffset, usableSize } from '../../src/ipam/range.js';
import { seeded, seqRandom, throwsClass } from './fixtures/helpers.js';

t.test('B1 TestAllocate', async (t) => {
  const cases = [
    {
      cidr: '192.168.1.0/24',
      family: 'IPv4',
      free: 254,
      released: '192.168.1.5',
      outOfRange: ['192.168.0.1', '192.168.1.0', '192.168.1.255', '192.168.2.2'],
      already: '192.168.1.1',
    },
    {
      cidr: '10.0.0.0/15',
      family: 'IPv4',
      free: 131070,
      released: '10.0.0.5',
      // 10.15.255.255 is outside 10.0.0.0/15 (upstream calls it "broadcast").
      outOfRange: ['10.0.0.0', '10.15.255.255', '10.255.255.2'],
      already: '10.0.0.1',
    },
    {
      cidr: '2001:db8:1::/48',
      family: 'IPv6',
      free: 65535,
      released: '2001:db8:1::5',
      outOfRange: ['2001:db8::1', '2001:db8:1::', '2001:db8:1::1:0', '2001:db8:2::2'],
      already: '2001:db8:1::1',
    },
  ] as const;
  for (const tc of cases) {
    t.test(tc.cidr, async (t) => {
      const cidr = parseCidr(tc.cidr);
      const r = new Range(cidr, { random: seeded(7) });
      t.equal(r.free(), tc.free, 'free');
      t.equal(r.cidr.toString(), tc.cidr, 'CIDR().String()');
      t.equal(r.family, tc.family, 'IPFamily()');
      t.equal(r.used(), 0, 'used');
      const found = new Set<string>();
      let bad = '';
      while (r.free() > 0) {
        const ip = r.allocateNext();
        if (!cidr.contains(ip)) bad ||= `${ip} outside ${tc.cidr}`;
        if (found.has(ip.toString())) bad ||= `${ip} allocated twice`;
        found.add(ip.toString());
      }
      t.equal(bad, '', 'every IP unique and inside the CIDR');
      t.equal(found.size, tc.free);
      throwsClass(t, () => r.allocateNext(), ErrFull, 'range is full');

      r.release(tc.released);
      t.equal(r.free(), 1);
      t.equal(r.used(), tc.free - 1);
      t.equal(r.allocateNext().toString(), tc.released, 'AllocateNext returns exactly the released IP');
      r.release(tc.released);

      for (const x of tc.outOfRange) {
        const err = throwsClass(t, () => r.allocate(x), ErrNotInRange, undefined, `A(${x})`);
        t.equal(err?.ip, x, 'ErrNotInRange.ip');
        t.equal(err?.validRange, tc.cidr, 'ErrNotInRange.validRange');
        t.equal(err?.message, `the provided IP (${x}) is not in the valid range. The range of valid IPs is ${tc.cidr}`);
      }
      throwsClass(t, () => r.allocate(tc.already), ErrAllocated, 'provided IP is already allocated');
      t.equal(r.free(), 1);
      t.equal(r.used(), tc.free - 1);
      t.equal(r.allocate(tc.released), undefined);
      t.equal(r.free(), 0);
      t.equal(r.used(), tc.free);
    });
  }
});

t.test('B2 TestAllocateTiny', async (t) => {
  const r = new Range('192.168.1.0/32');
  t.equal(r.free(), 0);
  throwsClass(t, () => r.allocateNext(), ErrFull);
});

t.test('B3 TestAllocateReserved', async (t) => {
  const r = new Range('192.168.1.0/25', { random: seeded(3) });
  t.equal(r.max, 126);
  t.equal(r.rangeOffset, 16);
  for (let i = 0; i < 110; i++) r.allocateNext();
  let allUpper = true;
  for (let i = 17; i <= 126; i++) if (!r.has(`192.168.1.${i}`)) allUpper = false;
  t.ok(allUpper, '192.168.1.17 .. 192.168.1.126 are all allocated');
  t.equal(r.free(), 16);
  let staticOk = true;
  for (let i = 1; i <= 16; i++) {
    try {
      r.allocate(`192.168.1.${i}`);
    } catch {
      staticOk = false;
    }
  }
  t.ok(staticOk, 'A(192.168.1.1 .. 192.168.1.16) all succeed');
  t.equal(r.free(), 0);
  r.release('192.168.1.10');
  t.equal(r.allocateNext().toString(), '192.168.1.10');
  t.equal(r.free(), 0);
});

t.test('B4 TestAllocateSmall', async (t) => {
  const r = new Range('192.168.1.240/30', { random: seeded(4) });
  t.equal(r.free(), 2);
  const got = [r.allocateNext().toString(), r.allocateNext().toString()].sort();
  t.same(got, ['192.168.1.241', '192.168.1.242']);
  for (const ip of got) {
    t.ok(r.has(ip));
    throwsClass(t, () => r.allocate(ip), ErrAllocated);
  }
  let allFull = true;
  for (let i = 0; i < 100; i++) {
    try {
      r.allocateNext();
      allFull = false;
    } catch (err) {
      if (!(err instanceof ErrFull)) allFull = false;
    }
  }
  t.ok(allFull, '100 x AN -> ErrFull');
  t.equal(r.free(), 0);
  t.equal(r.max, 2);
});

t.test('B5 TestForEach', async (t) => {
  const sets = [
    [],
    ['192.168.1.1'],
    ['192.168.1.1', '192.168.1.254'],
    ['192.168.1.1', '192.168.1.128', '192.168.1.254'],
  ];
  for (const set of sets) {
    const r = new Range('192.168.1.0/24');
    for (const ip of [...set].reverse()) {
      r.allocate(ip);
      t.ok(r.has(ip));
    }
    const calls: string[] = [];
    r.forEach((ip) => calls.push(ip.toString()));
    t.same(calls, set, JSON.stringify(set));
    t.same(r.list(), set);
  }
});

t.test('B6 TestSnapshot', async (t) => {
  const r = new Range('192.168.1.0/24', { random: seeded(6) });
  const ips: string[] = [];
  for (let i = 0; i < 10; i++) ips.push(r.allocateNext().toString());
  const dst = r.snapshot();
  const network = parseCidr(dst.range);
  t.ok(network.equals(r.cidr), 'dst.Range parses to the same network and mask');
  t.equal(dst.range, '192.168.1.0/24');
  throwsClass(t, () => r.restore('192.168.2.0/24', dst.data), ErrMismatchedNetwork, 'the provided network does not match the current range');
  throwsClass(t, () => r.restore('192.168.1.0/25', dst.data), ErrMismatchedNetwork, undefined, 'same IP, other mask');
  const other = new Range(network);
  t.equal(other.restore('192.168.1.7/24', dst.data), undefined, 'host bits are masked like ParseCIDR');
  t.ok(ips.every((ip) => other.has(ip)), 'restored range has all 10');
  t.equal(other.free(), r.free());
});

t.test('B7 TestNewFromSnapshot', async (t) => {
  const r = new Range('192.168.0.0/24', { random: seeded(8) });
  const ips: string[] = [];
  for (let i = 0; i < 128; i++) ips.push(r.allocateNext().toString());
  const r2 = Range.fromSnapshot(r.snapshot());
  t.equal(r2.free(), 126);
  t.equal(r2.used(), 128);
  t.ok(ips.every((ip) => r2.has(ip)));
});

t.test('B8 TestClusterIPMetrics (counters)', async (t) => {
  const a = new Range('10.0.0.0/24', { random: seeded(10) });
  const b = new Range('2001:db8::/112', { random: seeded(11) });
  t.equal(a.free(), 254);
  t.equal(b.free(), 65535);
  const found = [a.allocateNext().toString(), a.allocateNext().toString()];
  t.not(found[0], found[1]);
  t.equal(a.free(), 252);
  t.equal(a.used(), 2);
  const total = (s: { static: number; dynamic: number }) => s.static + s.dynamic;
  t.equal(total(a.stats().allocations), 2);
  t.equal(total(a.stats().errors), 0);
  for (const ip of found) throwsClass(t, () => a.allocate(ip), ErrAllocated);
  t.equal(total(a.stats().errors), 2);
  for (const ip of found) a.release(ip);
  t.equal(a.free(), 254);
  t.equal(a.used(), 0);
  t.equal(total(a.stats().allocations), 2);
  t.equal(total(a.stats().errors), 2);
  for (let i = 0; i < 264; i++) {
    try {
      a.allocateNext();
    } catch {
      // ErrFull after 254, counted as an error
    }
    b.allocateNext();
  }
  t.same([a.free(), a.used(), total(a.stats().allocations), total(a.stats().errors)], [0, 254, 256, 12]);
  t.same([b.free(), b.used(), total(b.stats().allocations), total(b.stats().errors)], [65271, 264, 264, 0]);
});

t.test('B9 static / dynamic scopes', async (t) => {
  const a = new Range('10.0.0.0/25', { random: seeded(12) });
  t.equal(a.free(), 126);
  const found = [a.allocateNext(), a.allocateNext()];
  t.equal(a.stats().allocations.dynamic, 2);
  for (const ip of found) throwsClass(t, () => a.allocate(ip), ErrAllocated);
  t.equal(a.stats().errors.static, 2);
  t.equal(a.stats().errors.dynamic, 0);
  a.release(found[0] as IP);
  a.allocate(found[0] as IP);
  t.equal(a.stats().allocations.static, 1);
  throwsClass(t, () => a.allocate('10.0.0.200'), ErrNotInRange);
  t.equal(a.stats().errors.static, 3, 'ErrNotInRange counts as a static error');
});

t.test('B10 TestDryRun', async (t) => {
  for (const [cidr, family, first, network] of [
    ['192.168.1.0/24', 'IPv4', '192.168.1.1', '192.168.1.0'],
    ['2001:db8:1::/48', 'IPv6', '2001:db8:1::1', '2001:db8:1::'],
  ] as const) {
    const r = new Range(cidr);
    const dry = r.dryRun();
    t.equal(dry.cidr.toString(), cidr);
    t.equal(dry.family, family);
    const baseUsed = r.used();
    t.equal(dry.allocate(first), undefined, 'Allocate(network+1) -> nil');
    t.equal(r.used(), baseUsed);
    t.equal(dry.allocateNext().toString(), network, 'AllocateNext -> the network address');
    t.equal(r.used(), baseUsed);
    t.equal(dry.release(network), undefined);
    t.equal(r.used(), baseUsed);
    t.equal(dry.dryRun(), dry, 'DryRun() of the shim is itself');
  }
  // Extras [D]
  const r = new Range('10.0.0.0/30');
  r.allocate('10.0.0.1');
  r.allocate('10.0.0.2');
  const dry = r.dryRun();
  t.equal(dry.allocate('10.0.0.1'), undefined, 'already allocated -> nil');
  t.equal(dry.allocateNext().toString(), '10.0.0.0', 'full range -> network address, no ErrFull');
  throwsClass(t, () => dry.allocate('10.0.0.3'), ErrNotInRange);
  t.equal(r.stats().errors.static, 0, 'dry-run errors are not counted');
  dry.release('10.0.0.1');
  t.ok(dry.has('10.0.0.1'), 'release is a no-op');
  t.equal(dry.used(), 2);
  t.equal(dry.free(), 0);
  const seen: string[] = [];
  dry.forEach((ip) => seen.push(ip.toString()));
  t.same(seen, ['10.0.0.1', '10.0.0.2']);
});

t.test('B11 calculateRangeOffset', async (t) => {
  const cases: Array<[string, number]> = [
    ['192.168.1.1/32', 0],
    ['fd00::1/128', 0],
    ['192.168.1.1/30', 0],
    ['fd00::1/126', 0],
    ['192.168.1.1/28', 0],
    ['192.168.1.1/27', 16],
    ['fd00::1/124', 0],
    ['fd00::1/122', 16],
    ['192.168.1.1/22', 64],
    ['fd00::1/118', 64],
    ['192.168.1.1/8', 256],
    ['fd00::1/12', 256],
    // derived rows of the doc table
    ['10.0.0.0/26', 16],
    ['10.0.0.0/25', 16],
    ['10.0.0.0/24', 16],
    ['10.0.0.0/23', 32],
    ['10.0.0.0/21', 128],
    ['10.0.0.0/20', 256],
    ['fd00::/123', 16],
    ['fd00::/120', 16],
    ['fd00::/119', 32],
    ['fd00::/117', 128],
    ['fd00::/116', 256],
    ['fd00::/64', 256],
  ];
  for (const [cidr, want] of cases) t.equal(calculateRangeOffset(cidr), want, cidr);
});

t.test('usable sizes (doc 3.1 table)', async (t) => {
  const cases: Array<[string, number]> = [
    ['10.0.0.0/32', 0],
    ['10.0.0.0/31', 0],
    ['10.0.0.0/30', 2],
    ['10.0.0.0/29', 6],
    ['10.0.0.0/28', 14],
    ['10.0.0.0/27', 30],
    ['10.0.0.0/25', 126],
    ['10.0.0.0/24', 254],
    ['10.0.0.0/16', 65534],
    ['10.0.0.0/15', 131070],
    ['10.0.0.0/12', 1048574],
    ['fd00::/128', 0],
    ['fd00::/127', 1],
    ['fd00::/126', 3],
    ['fd00::/124', 15],
    ['fd00::/120', 255],
    ['fd00::/116', 4095],
    ['fd00::/112', 65535],
    ['fd00::/108', 65535],
    ['fd00::/64', 65535],
    ['fd00::/48', 65535],
  ];
  for (const [cidr, want] of cases) {
    t.equal(usableSize(cidr), want, cidr);
    t.equal(new Range(cidr).free(), want, `new Range(${cidr}).free()`);
  }
});

t.test('C edge ranges', async (t) => {
  t.test('10.0.0.0/31', async (t) => {
    const r = new Range('10.0.0.0/31');
    t.same([r.max, r.rangeOffset], [0, 0]);
    throwsClass(t, () => r.allocateNext(), ErrFull);
    throwsClass(t, () => r.allocate('10.0.0.0'), ErrNotInRange);
    throwsClass(t, () => r.allocate('10.0.0.1'), ErrNotInRange);
  });
  t.test('10.0.0.0/30', async (t) => {
    const r = new Range('10.0.0.0/30');
    t.same([r.max, r.rangeOffset], [2, 0]);
    r.allocate('10.0.0.1');
    r.allocate('10.0.0.2');
    throwsClass(t, () => r.allocate('10.0.0.3'), ErrNotInRange, undefined, 'broadcast');
  });
  t.test('10.0.0.0/28', async (t) => {
    const r = new Range('10.0.0.0/28', { random: seeded(1) });
    t.same([r.max, r.rangeOffset], [14, 0]);
    const got = new Set<string>();
    for (let i = 0; i < 14; i++) got.add(r.allocateNext().toString());
    t.same([...got].sort(), Array.from({ length: 14 }, (_, i) => `10.0.0.${i + 1}`).sort());
  });
  t.test('10.0.0.0/27: the first 14 AN land in .17-.30', async (t) => {
    const r = new Range('10.0.0.0/27', { random: seeded(2) });
    t.same([r.max, r.rangeOffset], [30, 16]);
    const got: number[] = [];
    for (let i = 0; i < 14; i++) got.push(Number(r.allocateNext().toString().split('.')[3]));
    t.same(got.sort((a, b) => a - b), [17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
    const next = Number(r.allocateNext().toString().split('.')[3]);
    t.ok(next >= 1 && next <= 16, `then the static band (${next})`);
  });
  t.test('10.0.0.0/24: static .1-.16, dynamic .17-.254', async (t) => {
    const r = new Range('10.0.0.0/24', { random: seqRandom([0, 237]) });
    t.same([r.max, r.rangeOffset], [254, 16]);
    t.equal(r.allocateNext().toString(), '10.0.0.17', 'rand 0 -> first dynamic address');
    t.equal(r.allocateNext().toString(), '10.0.0.254', 'rand 237 -> last dynamic address');
    t.equal(r.ipAt(15).toString(), '10.0.0.16', 'last static address');
  });
  t.test('10.0.0.0/20: static 10.0.0.1-10.0.1.0', async (t) => {
    const r = new Range('10.0.0.0/20', { random: seqRandom([0]) });
    t.same([r.max, r.rangeOffset], [4094, 256]);
    t.equal(r.ipAt(r.rangeOffset - 1).toString(), '10.0.1.0');
    t.equal(r.allocateNext().toString(), '10.0.1.1');
    t.equal(r.ipAt(r.max - 1).toString(), '10.0.15.254');
  });
  t.test('10.0.0.0/12', async (t) => {
    const r = new Range('10.0.0.0/12');
    t.same([r.max, r.rangeOffset], [1048574, 256]);
    r.allocate('10.15.255.254');
    throwsClass(t, () => r.allocate('10.15.255.255'), ErrNotInRange);
  });
  t.test('fd00::/128', async (t) => {
    const r = new Range('fd00::/128');
    t.same([r.max, r.rangeOffset], [0, 0]);
    throwsClass(t, () => r.allocateNext(), ErrFull);
  });
  t.test('fd00::/127', async (t) => {
    const r = new Range('fd00::/127');
    t.same([r.max, r.rangeOffset], [1, 0]);
    t.equal(r.allocateNext().toString(), 'fd00::1');
    throwsClass(t, () => r.allocateNext(), ErrFull);
  });
  t.test('fd00::/120', async (t) => {
    const r = new Range('fd00::/120');
    t.same([r.max, r.rangeOffset], [255, 16]);
    t.equal(r.allocate('fd00::ff'), undefined, 'no IPv6 broadcast');
  });
  for (const cidr of ['fd00::/112', 'fd00::/108', 'fd00::/64']) {
    t.test(cidr, async (t) => {
      const r = new Range(cidr);
      t.same([r.max, r.rangeOffset], [65535, 256]);
      t.equal(r.allocate('fd00::ffff'), undefined, 'fd00::ffff ok');
      if (cidr !== 'fd00::/112') throwsClass(t, () => r.allocate('fd00::1:0'), ErrNotInRange, undefined, 'cap');
    });
  }
  t.test('extras', async (t) => {
    const r = new Range('10.0.0.0/24');
    t.equal(r.release('192.168.0.1'), undefined, 'R(ip outside CIDR) -> nil');
    t.equal(r.release('10.0.0.0'), undefined, 'R(network) -> nil');
    t.equal(r.release('10.0.0.9'), undefined, 'R(not allocated) -> nil');
    t.equal(r.has('10.0.0.0'), false, 'Has(network) false');
    t.equal(r.has('2001:db8::1'), false, 'other family');
    throwsClass(t, () => r.allocate('2001:db8::1'), ErrNotInRange);
    r.allocate('10.0.0.254');
    r.allocate('10.0.0.1');
    const seen: string[] = [];
    r.forEach((ip) => seen.push(ip.toString()));
    t.same(seen, ['10.0.0.1', '10.0.0.254']);
    r.allocate('::ffff:10.0.0.2');
    t.ok(r.has('10.0.0.2'), 'IPv4-mapped IPv6 is the IPv4 address');
    const bad = throwsClass(t, () => r.allocate('nope'), InvalidIPError);
    t.ok(bad instanceof IpamError);
    t.equal(bad?.code, 'ERR_IPAM_INVALID_IP');
    const full = new ErrFull();
    t.equal(full.code, 'ERR_IPAM_FULL');
    t.equal(new ErrAllocated().code, 'ERR_IPAM_ALLOCATED');
    t.equal(new ErrNotInRange('1.2.3.4', '10.0.0.0/24').code, 'ERR_IPAM_NOT_IN_RANGE');
    t.equal(new ErrMismatchedNetwork().code, 'ERR_IPAM_MISMATCHED_NETWORK');
  });
  t.test('255.255.255.255/32 and ffff:...:ffff/128 construct', async (t) => {
    t.equal(new Range('255.255.255.255/32').free(), 0);
    t.equal(new Range('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128').free(), 0);
  });
});

t.test('IPs are canonical IP objects', async (t) => {
  const r = new Range('2001:db8::/120', { random: seqRandom([0]) });
  const ip = r.allocateNext();
  t.ok(ip instanceof IP);
  t.equal(ip.toString(), '2001:db8::11');
});
