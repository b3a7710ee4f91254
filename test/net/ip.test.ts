import { isIPv6 } from 'node:net';
import fc from 'fast-check';
import t from 'tap';
import {
  bytesToIP,
  canonicalIP,
  formatIPv4,
  formatIPv6Groups,
  hasHostBits,
  ipFamily,
  ipToBytes,
  ipv4Key,
  joinHostPort,
  parseCIDR,
  stripZone,
  unmapIPv4,
} from '../../src/net/ip.js';
import { IP } from '../../src/ipam/ip.js';

t.test('canonicalIP: IPv4', async (t) => {
  const cases: [string, string | undefined][] = [
    ['10.0.0.1', '10.0.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    // Leading zeros are refused (Go's net.ParseIP): `010` is neither 10 nor 8.
    ['010.0.0.1', undefined],
    ['1.2.3.04', undefined],
    ['00.0.0.0', undefined],
    ['1.2.3.4/24', undefined],
    [' 1.2.3.4', undefined],
    ['1.2.3.4 ', undefined],
    ['256.1.1.1', undefined],
    ['1.2.3', undefined],
    ['1.2.3.4.5', undefined],
    ['abc', undefined],
    ['', undefined],
  ];
  for (const [input, want] of cases) t.equal(canonicalIP(input), want, JSON.stringify(input));
});

t.test('canonicalIP: IPv6 per RFC 5952', async (t) => {
  const cases: [string, string | undefined, string][] = [
    // §4.3 lowercase; §4.1 no leading zeros.
    ['2001:DB8::1', '2001:db8::1', 'lowercase'],
    ['FD00:10:96:0:0:0:0:A', 'fd00:10:96::a', 'lowercase, compressed'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1', 'leading zeros dropped'],
    ['2001:0db8:85a3:0042:1000:8a2e:0370:7334', '2001:db8:85a3:42:1000:8a2e:370:7334', 'leading zeros dropped, nothing compressed'],
    // §4.2.3 the longest run; on a tie, the first.
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3', 'longest run'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1', 'longest run, not the first'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1', 'tie: the first run'],
    ['1:0:0:1:1:0:0:1', '1::1:1:0:0:1', 'tie: the first run'],
    // §4.2.2 a single zero group is not compressed.
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1', 'single zero group'],
    ['2001:db8::1:1:1:1:1', '2001:db8:0:1:1:1:1:1', 'single zero group written as ::'],
    ['1:0:1:0:1:0:1:0', '1:0:1:0:1:0:1:0', 'single zero groups only'],
    // §4.2.1 shortest: the whole run.
    ['0:0:0:0:0:0:0:0', '::', 'all zero'],
    ['0:0:0:0:0:0:0:1', '::1', 'loopback'],
    ['1:0:0:0:0:0:0:0', '1::', 'trailing run'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0', ':: for one group'],
    // §5 IPv4-mapped: mixed notation, whatever the input spelling.
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4', 'mapped'],
    ['::FFFF:0102:0304', '::ffff:1.2.3.4', 'mapped, hex spelling'],
    ['0:0:0:0:0:ffff:a00:1', '::ffff:10.0.0.1', 'mapped, full spelling'],
    // Other embedded IPv4 forms are plain IPv6.
    ['::1.2.3.4', '::102:304', 'IPv4-compatible'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221', 'NAT64'],
    ['::fffe:1.2.3.4', '::fffe:102:304', 'not mapped'],
    // Zone ids are refused: a cluster address never has one.
    ['fe80::1%eth0', undefined, 'zone id'],
    ['fe80::1%1', undefined, 'numeric zone id'],
    ['1:2:3:4:5:6:7:8:9', undefined, 'nine groups'],
    ['1:2:3:4:5:6:7', undefined, 'seven groups'],
    ['1::2::3', undefined, 'two ::'],
    ['12345::', undefined, 'five digits'],
    ['::ffff:01.2.3.4', undefined, 'leading zero in the IPv4 tail'],
    ['[::1]', undefined, 'brackets'],
    ['::1/128', undefined, 'prefix'],
  ];
  for (const [input, want, why] of cases) t.equal(canonicalIP(input), want, `${JSON.stringify(input)}: ${why}`);
});

t.test('canonicalIP is idempotent and agrees with the allocator outside its deviations', async (t) => {
  const group = fc.integer({ min: 0, max: 0xffff });
  // Runs of zeros are what RFC 5952 is about: draw them often.
  const g = fc.oneof(group, fc.constant(0), fc.constant(0));
  fc.assert(
    fc.property(fc.array(g, { minLength: 8, maxLength: 8 }), fc.boolean(), (groups, upper) => {
      let text = groups.map((x) => x.toString(16).padStart(4, '0')).join(':');
      if (upper) text = text.toUpperCase();
      const c = canonicalIP(text);
      if (c === undefined) return false;
      if (canonicalIP(c) !== c) return false;
      const mapped = groups.slice(0, 5).every((x) => x === 0) && groups[5] === 0xffff;
      // ipam reads as Go does: a mapped address is IPv4 there; otherwise the same text.
      return mapped ? c === `::ffff:${IP.parse(text)!.toString()}` : c === IP.parse(text)!.toString();
    }),
  );
  t.pass('random addresses');
});

t.test('ipToBytes and bytesToIP', async (t) => {
  t.same([...ipToBytes('10.1.2.3')!], [10, 1, 2, 3]);
  t.same([...ipToBytes('2001:db8::1')!], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  t.same([...ipToBytes('::ffff:1.2.3.4')!], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
  t.same([...ipToBytes('fe80::1%eth0')!], [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 'the wire side drops a zone id');
  for (const bad of ['010.0.0.1', '1.2.3', '', 'x', '1::2::3', '::1/128']) t.equal(ipToBytes(bad), undefined, JSON.stringify(bad));
  t.equal(bytesToIP(Uint8Array.of(192, 0, 2, 1)), '192.0.2.1');
  t.equal(bytesToIP(ipToBytes('2001:DB8:0:0:1:0:0:1')!), '2001:db8::1:0:0:1');
  // RFC 5952 §4 only: mapped addresses keep hex groups on the wire side.
  t.equal(bytesToIP(ipToBytes('::ffff:1.2.3.4')!), '::ffff:102:304');
  for (const ip of ['0.0.0.0', '10.96.0.10', '::', '::1', 'fd00:10:96::a', '1:0:0:2::3', '2001:db8:0:1:1:1:1:1']) {
    t.equal(bytesToIP(ipToBytes(ip)!), ip, `round trip ${ip}`);
  }
  t.equal(formatIPv4(0x0a600001), '10.96.0.1');
  t.equal(formatIPv4(0xffffffff), '255.255.255.255');
  t.equal(formatIPv6Groups([0, 0, 0, 0, 0, 0, 0, 0]), '::');
  t.equal(formatIPv6Groups([1, 0, 2, 0, 3, 0, 4, 0]), '1:0:2:0:3:0:4:0');
});

t.test('ipFamily, ipv4Key, stripZone, unmapIPv4', async (t) => {
  t.equal(ipFamily('10.0.0.1'), 'IPv4');
  t.equal(ipFamily('::1'), 'IPv6');
  t.equal(ipFamily('::ffff:1.2.3.4'), 'IPv6', 'mapped text is IPv6 text');
  t.equal(ipFamily('None'), undefined);
  t.equal(ipFamily('010.0.0.1'), undefined);
  t.equal(ipv4Key('10.0.0.1'), 0x0a000001);
  t.equal(ipv4Key('255.255.255.255'), 0xffffffff);
  t.equal(ipv4Key('0.0.0.0'), 0);
  for (const bad of ['010.0.0.1', '1.2.3', '1.2.3.4.5', '1.2.3.256', '::1', '1..2.3', '1.2.3.', '']) t.equal(ipv4Key(bad), -1, JSON.stringify(bad));
  t.equal(stripZone('fe80::1%eth0'), 'fe80::1');
  t.equal(stripZone('fe80::1'), 'fe80::1');
  t.equal(unmapIPv4('::ffff:10.0.0.1'), '10.0.0.1');
  t.equal(unmapIPv4('::ffff:a00:1'), '::ffff:a00:1', 'only the mixed notation a socket reports');
  t.equal(unmapIPv4('2001:db8::1'), '2001:db8::1');
});

t.test('joinHostPort (Go net.JoinHostPort)', async (t) => {
  t.equal(joinHostPort('10.0.0.1', 53), '10.0.0.1:53');
  t.equal(joinHostPort('::1', 53), '[::1]:53');
  t.equal(joinHostPort('fe80::1%eth0', '443'), '[fe80::1%eth0]:443');
  t.equal(joinHostPort('kubernetes.default.svc', 443), 'kubernetes.default.svc:443');
});

t.test('parseCIDR and hasHostBits', async (t) => {
  const c = parseCIDR('10.96.0.0/12')!;
  t.same({ ip: c.ip, bytes: [...c.bytes], prefix: c.prefix }, { ip: '10.96.0.0', bytes: [10, 96, 0, 0], prefix: 12 });
  t.equal(parseCIDR('fd00:10:96::/112')?.prefix, 112);
  t.equal(parseCIDR('10.0.0.0/33')?.prefix, 33, 'a long prefix is for the caller to refuse');
  for (const bad of ['10.0.0.0', '10.0.0.0/', '10.0.0.0/1234', '010.0.0.0/8', 'x/8', '/8', '10.0.0.0/8 ']) t.equal(parseCIDR(bad), undefined, JSON.stringify(bad));
  t.notOk(hasHostBits(parseCIDR('10.96.0.0/12')!.bytes, 12));
  t.ok(hasHostBits(parseCIDR('10.97.0.0/12')!.bytes, 12));
  t.notOk(hasHostBits(parseCIDR('0.0.0.0/0')!.bytes, 0));
  t.ok(hasHostBits(parseCIDR('fd00::1/64')!.bytes, 64));
  t.notOk(hasHostBits(parseCIDR('fd00::1/128')!.bytes, 128));
});

t.test('agrees with Node on what is an address', async (t) => {
  fc.assert(
    fc.property(fc.ipV6(), (text) => {
      const c = canonicalIP(text);
      return c !== undefined && isIPv6(c) && bytesToIP(ipToBytes(c)!) === bytesToIP(ipToBytes(text)!);
    }),
  );
  fc.assert(fc.property(fc.ipV4(), (text) => canonicalIP(text) === text && formatIPv4(ipv4Key(text)) === text));
  t.pass('random addresses');
});
