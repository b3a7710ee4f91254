/**
 * Cases A of clusterip-allocator-cases.md: upstream
 * `pkg/registry/core/service/allocator/bitmap_test.go`, plus the derived extras.
 */
import t from 'tap';
import { AllocationBitmap } from '../../src/ipam/bitmap.js';
import { OffsetOutOfRangeError, RangeSpecMismatchError } from '../../src/ipam/errors.js';
import { hex, seeded, seqRandom, throwsClass } from './fixtures/helpers.js';

const CONFIGS: Array<[number, number]> = [
  [32, 0],
  [8, 0],
  [128, 16],
  [1024, 64],
  [65535, 256],
];

function collect(m: AllocationBitmap): number[] {
  const out: number[] = [];
  m.forEach((o) => out.push(o));
  return out;
}

for (const [max, offset] of CONFIGS) {
  const mk = (seed = max) => new AllocationBitmap(max, 'test', { offset, random: seeded(seed) });

  t.test(`A max=${max} offset=${offset}`, async (t) => {
    t.test('A1 allocateNext once', async (t) => {
      const m = mk();
      const o = m.allocateNext();
      t.type(o, 'number');
      t.equal(m.count, 1);
      t.equal(m.free(), max - 1);
      t.ok(m.has(o as number));
    });

    t.test('A2 allocate every offset', async (t) => {
      const m = mk();
      let allOk = true;
      for (let i = 0; i < max; i++) if (m.allocate(i) !== true) allOk = false;
      t.ok(allOk, 'every Allocate(i) is (true, nil)');
      t.equal(m.allocateNext(), undefined, 'then AllocateNext is not ok');
      throwsClass(t, () => m.allocate(max), OffsetOutOfRangeError, `offset ${max} out of range [0,${max}]`);
      t.equal(m.free(), 0);
    });

    t.test('A3 allocateNext max times', async (t) => {
      const m = mk();
      const seen = new Set<number>();
      for (let i = 0; i < max; i++) {
        const o = m.allocateNext();
        if (o === undefined || o < 0 || o >= max || seen.has(o)) {
          t.fail(`bad allocation ${o} at step ${i}`);
          return;
        }
        seen.add(o);
      }
      t.equal(seen.size, max);
      t.equal(m.allocateNext(), undefined);
      t.equal(m.free(), 0);
      t.equal(m.count, max);
    });

    t.test('A4 allocate twice', async (t) => {
      const m = mk();
      t.equal(m.allocate(3), true);
      t.equal(m.allocate(3), false);
      t.equal(m.count, 1);
    });

    t.test('A5 has / release', async (t) => {
      const m = mk();
      m.allocate(3);
      t.equal(m.has(3), true);
      t.equal(m.release(3), undefined);
      t.equal(m.has(3), false);
      t.equal(m.count, 0);
    });

    t.test('A6 forEach visits exactly the set, ascending', async (t) => {
      const sets = [[], [0], [0, 2, 5], [0, 1, 2, 3, 4, 5, 6, 7]];
      for (const set of sets) {
        const m = mk();
        for (const o of [...set].reverse()) m.allocate(o);
        t.same(collect(m), set, JSON.stringify(set));
      }
    });

    t.test('A7 snapshot restores into a map of another size', async (t) => {
      const m = mk();
      m.allocate(3);
      const snap = m.snapshot();
      t.equal(snap.rangeSpec, 'test');
      const other = new AllocationBitmap(10, 'test');
      t.equal(other.restore(snap.rangeSpec, snap.data), undefined);
      t.equal(other.count, 1);
      t.equal(other.has(3), true);
    });

    t.test('extra: restore with another spec, release of a clear bit, Allocate(-1)', async (t) => {
      const m = mk();
      m.allocate(1);
      throwsClass(t, () => m.restore('other', m.snapshot().data), RangeSpecMismatchError, 'the provided range does not match the current range');
      t.equal(m.count, 1, 'state unchanged after a failed restore');
      m.release(5);
      t.equal(m.count, 1, 'release of an unset bit is a no-op');
      const err = throwsClass(t, () => m.allocate(-1), OffsetOutOfRangeError, `offset -1 out of range [0,${max}]`);
      t.equal(err?.code, 'ERR_IPAM_OFFSET_OUT_OF_RANGE');
    });
  });
}

t.test('A8 upper band first, then the lower band (max=128, offset=16)', async (t) => {
  for (let seed = 1; seed <= 5; seed++) {
    const m = new AllocationBitmap(128, 'test', { offset: 16, random: seeded(seed) });
    let minSeen = Infinity;
    for (let i = 0; i < 112; i++) {
      const o = m.allocateNext();
      if (o === undefined) {
        t.fail('allocateNext failed in the upper band');
        return;
      }
      minSeen = Math.min(minSeen, o);
    }
    t.ok(minSeen >= 16, `seed ${seed}: the first 112 allocations are all >= 16`);
    t.equal(m.free(), 16);
    let lowerFree = true;
    for (let i = 0; i < 16; i++) if (m.has(i)) lowerFree = false;
    t.ok(lowerFree, 'Has(i) is false for every i < 16');
    const o = m.allocateNext();
    t.ok(o !== undefined && o < 16, `one more AN comes from the lower band (${o})`);
    t.equal(m.count, 113);
    t.equal(m.free(), 15);
  }
});

t.test('A9 the only free bit is in the lower band', async (t) => {
  const m = new AllocationBitmap(128, 'test', { offset: 16, random: seeded(9) });
  for (let i = 16; i < 128; i++) m.allocate(i);
  for (let i = 0; i < 15; i++) m.allocate(i);
  t.equal(m.free(), 1);
  t.equal(m.allocateNext(), 15);
  t.equal(m.allocateNext(), undefined);
  // cases.md says "count = 127", but upstream TestPreAllocateReservedFull_BitmapReserved
  // asserts count == allocated == 112 + 15 + 1 = 128 (and F = 0 implies the same).
  t.equal(m.count, 128);
  t.equal(m.free(), 0);
});

t.test('snapshot bytes are big-endian and minimal', async (t) => {
  const cases: Array<[number[], string]> = [
    [[], ''],
    [[0], '01'],
    [[3], '08'],
    [[8], '01 00'],
    [[0, 9], '02 01'],
    [[7, 15], '80 80'],
    [[31], '80 00 00 00'],
    [[32], '01 00 00 00 00'],
    [[0, 63], '80 00 00 00 00 00 00 01'],
  ];
  for (const [set, want] of cases) {
    const m = new AllocationBitmap(128, 'r');
    for (const o of set) m.allocate(o);
    const snap = m.snapshot();
    t.equal(hex(snap.data), want, `snapshot ${JSON.stringify(set)}`);
    // Round trip, including leading zero bytes that big.Int.SetBytes ignores.
    const back = new AllocationBitmap(128, 'r');
    back.restore('r', Uint8Array.from([0, 0, ...snap.data]));
    t.same(collect(back), set, `restore ${JSON.stringify(set)}`);
    t.equal(back.count, set.length);
  }
});

t.test('restore keeps stray bits beyond max (no size check upstream)', async (t) => {
  const m = new AllocationBitmap(10, 'r', { random: () => 0 });
  m.restore('r', Uint8Array.from([0x01, 0x00, 0x01])); // offsets 0 and 16
  t.equal(m.count, 2);
  t.equal(m.has(16), true);
  t.equal(m.free(), 8);
  t.same(collect(m), [0, 16]);
  t.equal(hex(m.snapshot().data), '01 00 01');
  // allocateNext never hands out offsets >= max.
  const got: number[] = [];
  for (let o = m.allocateNext(); o !== undefined; o = m.allocateNext()) got.push(o);
  t.same(got, [1, 2, 3, 4, 5, 6, 7, 8], 'stops when count reaches max: 9 stays free');
  t.equal(m.has(9), false);
  m.release(16);
  t.equal(m.count, 9);
});

t.test('randomScanStrategyWithOffset is exact given the RNG', async (t) => {
  // start = offset + rand(max-offset); first clear bit at or after start, wrapping in the upper band.
  const m = new AllocationBitmap(128, 'r', { offset: 16, random: seqRandom([0, 5, 5, 104, 7, 7, 3, 7]) });
  t.equal(m.allocateNext(), 16, 'rand 0 -> offset 16');
  m.allocate(21);
  t.equal(m.allocateNext(), 22, 'rand 5 -> 21 is taken -> 22');
  t.equal(m.allocateNext(), 23, 'rand 5 -> 21, 22 taken -> 23');
  for (let i = 120; i < 128; i++) m.allocate(i);
  t.equal(m.allocateNext(), 17, 'rand 104 -> 120..127 taken -> wraps to 16 (taken) -> 17');
  for (let i = 16; i < 128; i++) if (!m.has(i)) m.allocate(i);
  t.equal(m.allocateNext(), 7, 'upper band full: rand(max-offset) then rand(offset)=7 -> 7');
  t.equal(m.allocateNext(), 8, 'rand(112) then rand(16)=7 -> 7 taken -> 8');
});

t.test('offset 0 never calls rand(0) and a full map never calls rand', async (t) => {
  let calls = 0;
  const m = new AllocationBitmap(4, 'r', {
    random: (n) => {
      calls++;
      if (n <= 0) throw new Error(`rand(${n})`);
      return 0;
    },
  });
  for (let i = 0; i < 4; i++) t.equal(m.allocateNext(), i);
  t.equal(calls, 4);
  t.equal(m.allocateNext(), undefined);
  t.equal(calls, 4, 'count >= max: no rand call');
  const empty = new AllocationBitmap(0, 'r');
  t.equal(empty.allocateNext(), undefined);
  t.equal(empty.free(), 0);
});

t.test('constructor validates size and offset', async (t) => {
  t.throws(() => new AllocationBitmap(-1, 'r'), RangeError);
  t.throws(() => new AllocationBitmap(10, 'r', { offset: 11 }), RangeError);
  t.throws(() => new AllocationBitmap(10, 'r', { offset: -1 }), RangeError);
  t.equal(new AllocationBitmap(10, 'r', { offset: 10 }).offset, 10);
});

t.test('performance: exhausting a /12-sized bitmap with allocateNext', async (t) => {
  const max = 1048574;
  const m = new AllocationBitmap(max, '10.0.0.0/12', { offset: 256 });
  const start = performance.now();
  let n = 0;
  while (m.allocateNext() !== undefined) n++;
  const ms = performance.now() - start;
  t.equal(n, max);
  t.equal(m.free(), 0);
  t.ok(ms < 10000, `took ${ms.toFixed(0)} ms`);
  // Snapshot/restore round trip at full size.
  const snap = m.snapshot();
  t.equal(snap.data.length, Math.ceil(max / 8));
  const back = new AllocationBitmap(max, '10.0.0.0/12', { offset: 256 });
  back.restore(snap.rangeSpec, snap.data);
  t.equal(back.count, max);
  back.release(123456);
  t.equal(back.allocateNext(), 123456, 'the single free offset is found');
});
