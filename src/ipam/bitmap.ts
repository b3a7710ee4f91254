/**
 * A bitmap of allocated items, ported from Kubernetes
 * `pkg/registry/core/service/allocator/bitmap.go` (`AllocationBitmap` with
 * `randomScanStrategyWithOffset`, KEP-3070).
 *
 * Invariant (upstream comment): `count` is always equal to the number of set bits and
 * can be recalculated at any time by counting them.
 *
 * Storage is a `Uint32Array` (bit `i` = word `i >>> 5`, bit `i & 31`), not a bigint:
 * a /12 service range has 1,048,574 items and `allocateNext` skips full words 32 items
 * at a time. Upstream stores a `big.Int`; the snapshot format (`Snapshot`/`Restore`)
 * keeps that byte layout (big-endian, minimal length), so snapshots stay compatible
 * with a `RangeAllocation.data` written by kube-apiserver.
 *
 * ```
 * offsets: 0 .............. offset-1 | offset ................. max-1
 *          static band (lower)        | dynamic band (upper)
 * allocateNext: random start in the upper band, scan with wrap-around;
 *               only when it is full: random start in the lower band, scan with wrap.
 * ```
 *
 * @module
 */
import { OffsetOutOfRangeError, RangeSpecMismatchError } from './errors.js';

/** Returns a uniformly random integer in `[0, n)`; `n >= 1`. Injectable for tests. */
export type RandomInt = (n: number) => number;

/**
 * Default RNG. Upstream uses `math/rand` (not crypto): start positions only spread
 * allocations, they are not a security boundary.
 */
export const mathRandomInt: RandomInt = (n) => Math.floor(Math.random() * n);

/** Snapshot of a bitmap: `RangeAllocation.range` and `RangeAllocation.data`. */
export interface BitmapSnapshot {
  readonly rangeSpec: string;
  /** `big.Int.Bytes()`: big-endian, no leading zero bytes; empty when nothing is set. */
  readonly data: Uint8Array;
}

const FULL = 0xffffffff;

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Index of the lowest set bit of a non-zero 32-bit value. */
function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Options of {@link AllocationBitmap}. */
export interface BitmapOptions {
  /** Size of the static (lower) band, KEP-3070; 0 disables it. Must be in `[0, max]`. */
  readonly offset?: number;
  readonly random?: RandomInt;
}

/**
 * `allocator.AllocationBitmap`: `max` items, offsets `0..max-1`.
 *
 * `Restore` does not check that the data fits `max` (upstream neither): bits at or
 * above `max` are kept, counted, snapshotted and visited by `forEach`, but never
 * handed out by `allocateNext` or accepted by `allocate`.
 */
export class AllocationBitmap {
  readonly max: number;
  readonly rangeSpec: string;
  /** Size of the static (lower) band. */
  readonly offset: number;
  #words: Uint32Array;
  #count = 0;
  readonly #random: RandomInt;

  constructor(max: number, rangeSpec: string, options: BitmapOptions = {}) {
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`invalid bitmap size ${max}`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > max) {
      throw new RangeError(`invalid bitmap offset ${offset} for size ${max}`);
    }
    this.max = max;
    this.rangeSpec = rangeSpec;
    this.offset = offset;
    this.#words = new Uint32Array(Math.ceil(max / 32));
    this.#random = options.random ?? mathRandomInt;
  }

  /** Number of set bits. */
  get count(): number {
    return this.#count;
  }

  /** `max - count` (negative only after restoring stray bits beyond `max`). */
  free(): number {
    return this.max - this.#count;
  }

  /**
   * Marks `offset` allocated. Returns true if it was free, false if already set.
   * Throws {@link OffsetOutOfRangeError} outside `[0, max)`.
   */
  allocate(offset: number): boolean {
    if (!Number.isInteger(offset) || offset < 0 || offset >= this.max) {
      throw new OffsetOutOfRangeError(offset, this.max);
    }
    const w = offset >>> 5;
    const bit = 1 << (offset & 31);
    const word = this.#words[w] ?? 0;
    if ((word & bit) !== 0) return false;
    this.#words[w] = word | bit;
    this.#count++;
    return true;
  }

  /**
   * Allocates a free offset chosen by `randomScanStrategyWithOffset`; undefined when
   * none is free. Upstream: `if count >= max` nothing is searched.
   */
  allocateNext(): number | undefined {
    if (this.#count >= this.max) return undefined;
    const at = this.#findNext();
    if (at === undefined) return undefined;
    this.#words[at >>> 5] = (this.#words[at >>> 5] ?? 0) | (1 << (at & 31));
    this.#count++;
    return at;
  }

  #findNext(): number | undefined {
    const { offset, max } = this;
    const sub = max - offset;
    if (sub > 0) {
      const start = offset + this.#random(sub);
      const at = this.#firstClear(start, max) ?? this.#firstClear(offset, start);
      if (at !== undefined) return at;
    }
    // Go calls rand.Intn(offset) here and would panic on 0; guard it.
    if (offset > 0) {
      const start = this.#random(offset);
      return this.#firstClear(start, offset) ?? this.#firstClear(0, start);
    }
    return undefined;
  }

  /** Lowest clear bit in `[from, to)`, skipping full words. */
  #firstClear(from: number, to: number): number | undefined {
    if (from >= to) return undefined;
    const words = this.#words;
    let w = from >>> 5;
    const lastW = (to - 1) >>> 5;
    // First word: ignore bits below `from`.
    let free = ~(words[w] ?? 0) & (FULL << (from & 31));
    for (;;) {
      if (free !== 0) {
        const at = (w << 5) + ctz32(free);
        return at < to ? at : undefined;
      }
      if (++w > lastW) return undefined;
      const word = words[w] ?? 0;
      free = word === FULL ? 0 : ~word;
    }
  }

  /** Clears `offset`. No bounds check, no error: releasing a clear bit is a no-op. */
  release(offset: number): void {
    if (!Number.isInteger(offset) || offset < 0) return;
    const w = offset >>> 5;
    const word = this.#words[w];
    if (word === undefined) return;
    const bit = 1 << (offset & 31);
    if ((word & bit) === 0) return;
    this.#words[w] = word & ~bit;
    this.#count--;
  }

  /** True when `offset` is set. */
  has(offset: number): boolean {
    if (!Number.isInteger(offset) || offset < 0) return false;
    const word = this.#words[offset >>> 5];
    return word !== undefined && (word & (1 << (offset & 31))) !== 0;
  }

  /** Visits set offsets in ascending order. */
  forEach(fn: (offset: number) => void): void {
    const words = this.#words;
    for (let w = 0; w < words.length; w++) {
      let word = words[w] ?? 0;
      while (word !== 0) {
        const b = ctz32(word);
        fn((w << 5) + b);
        word &= word - 1;
      }
    }
  }

  /** `Snapshot()`: the range spec and the `big.Int.Bytes()` of the bitmap. */
  snapshot(): BitmapSnapshot {
    const words = this.#words;
    let hi = words.length - 1;
    while (hi >= 0 && words[hi] === 0) hi--;
    if (hi < 0) return { rangeSpec: this.rangeSpec, data: new Uint8Array(0) };
    const top = words[hi] ?? 0;
    const topBytes = top >>> 24 !== 0 ? 4 : top >>> 16 !== 0 ? 3 : top >>> 8 !== 0 ? 2 : 1;
    const len = hi * 4 + topBytes;
    const data = new Uint8Array(len);
    // Little-endian byte i (bits 8i..8i+7) goes to data[len-1-i].
    for (let i = 0; i < len; i++) {
      data[len - 1 - i] = ((words[i >>> 2] ?? 0) >>> ((i & 3) * 8)) & 0xff;
    }
    return { rangeSpec: this.rangeSpec, data };
  }

  /**
   * `Restore(rangeSpec, data)`: replaces the bitmap and recounts. Throws
   * {@link RangeSpecMismatchError} when the spec differs. Data of any length is accepted.
   */
  restore(rangeSpec: string, data: Uint8Array): void {
    if (rangeSpec !== this.rangeSpec) throw new RangeSpecMismatchError();
    let start = 0;
    while (start < data.length && data[start] === 0) start++;
    const len = data.length - start;
    const words = new Uint32Array(Math.max(Math.ceil(this.max / 32), Math.ceil(len / 4)));
    let count = 0;
    for (let i = 0; i < len; i++) {
      const byte = data[data.length - 1 - i] ?? 0;
      if (byte === 0) continue;
      words[i >>> 2] = (words[i >>> 2] ?? 0) | (byte << ((i & 3) * 8));
      count += popcount32(byte);
    }
    this.#words = words;
    this.#count = count;
  }
}
