/**
 * The bitmap ClusterIP allocator for one service CIDR, ported from Kubernetes
 * `pkg/registry/core/service/ipallocator/bitmap.go` (`ipallocator.Range`).
 *
 * ```
 * size   = RangeSize(cidr)                 // total addresses, capped at MaxInt64
 * max    = IPv6 ? min(size, 65536) : size - 1    // bitmap cap / drop the IPv4 broadcast
 * max    = max(0, max - 1)                 // drop the network address
 * base   = network + 1                     // bitmap offset 0 <=> first host address
 * offset = calculateRangeOffset(cidr)      // KEP-3070 static band
 * ```
 *
 * IPv6 has no broadcast exclusion (`::ffff` of a /112 is allocatable) and any prefix
 * shorter than /112 is capped at `network+1 .. network+65535`.
 *
 * @module
 */
import type { IPFamily } from '../cluster/model.js';
import { AllocationBitmap, type RandomInt } from './bitmap.js';
import { ErrAllocated, ErrFull, ErrMismatchedNetwork, ErrNotInRange, SnapshotRestoreError } from './errors.js';
import { Cidr, IP, rangeSize, toCidr, toIP } from './ip.js';

/**
 * KEP-3070 `calculateRangeOffset`: size of the static band for a CIDR.
 * `cidrSize <= 16 ? 0 : clamp(cidrSize / 16, 16, 256)`, where `cidrSize` is
 * `RangeSize(cidr)` (the total size, not the usable count).
 */
export function calculateRangeOffset(cidr: Cidr | string): number {
  const size = rangeSize(toCidr(cidr));
  const min = 16n;
  const max = 256n;
  const step = 16n;
  if (size <= min) return 0;
  const o = size / step;
  if (o < min) return Number(min);
  if (o > max) return Number(max);
  return Number(o);
}

/** Usable addresses (bitmap size) of a CIDR, per the formula in the module doc. */
export function usableSize(cidr: Cidr | string): number {
  const c = toCidr(cidr);
  const size = rangeSize(c);
  let max = c.family === 'IPv6' ? (size < 65536n ? size : 65536n) : size - 1n;
  max -= 1n;
  if (max < 0n) max = 0n;
  return Number(max);
}

/** `RangeAllocation` (`range`, `data`): what upstream persists per service CIDR. */
export interface RangeSnapshot {
  /** `cidr.String()`, e.g. `10.0.0.0/24`. */
  readonly range: string;
  /** Bitmap bytes, big-endian minimal (see `AllocationBitmap.snapshot`). */
  readonly data: Uint8Array;
}

/** Allocation counters, as upstream's metrics (`scope` = `static` for `allocate`, `dynamic` for `allocateNext`). */
export interface RangeStats {
  allocations: { static: number; dynamic: number };
  errors: { static: number; dynamic: number };
}

/** What `Range` and its dry-run shim have in common (upstream `ipallocator.Interface`). */
export interface IPRangeAllocator {
  readonly cidr: Cidr;
  readonly family: IPFamily;
  /** Throws ErrNotInRange or ErrAllocated. */
  allocate(ip: IP | string): void;
  /** Throws ErrFull. */
  allocateNext(): IP;
  release(ip: IP | string): void;
  has(ip: IP | string): boolean;
  forEach(fn: (ip: IP) => void): void;
  used(): number;
  free(): number;
  dryRun(): IPRangeAllocator;
}

/** Options of {@link Range}. */
export interface RangeOptions {
  /** Injectable RNG for `allocateNext` (tests). */
  readonly random?: RandomInt;
}

/** `ipallocator.Range`: the bitmap allocator of one service CIDR. */
export class Range implements IPRangeAllocator {
  readonly cidr: Cidr;
  readonly family: IPFamily;
  /** First allocatable address (network + 1). */
  readonly base: IP;
  /** Number of allocatable addresses. */
  readonly max: number;
  /** Size of the KEP-3070 static band (offsets `[0, rangeOffset)`). */
  readonly rangeOffset: number;
  readonly #bitmap: AllocationBitmap;
  readonly #stats: RangeStats = { allocations: { static: 0, dynamic: 0 }, errors: { static: 0, dynamic: 0 } };

  constructor(cidr: Cidr | string, options: RangeOptions = {}) {
    this.cidr = toCidr(cidr);
    this.family = this.cidr.family;
    // 255.255.255.255/32 has no network+1; max is 0 there, so any base will do.
    this.base = this.cidr.network.add(1n) ?? this.cidr.network;
    this.max = usableSize(this.cidr);
    this.rangeOffset = calculateRangeOffset(this.cidr);
    const bitmapOptions = options.random === undefined
      ? { offset: this.rangeOffset }
      : { offset: this.rangeOffset, random: options.random };
    this.#bitmap = new AllocationBitmap(this.max, this.cidr.toString(), bitmapOptions);
  }

  /** `NewFromSnapshot`: a range for `snap.range` with `snap.data` restored. */
  static fromSnapshot(snap: RangeSnapshot, options: RangeOptions = {}): Range {
    const r = new Range(snap.range, options);
    r.restore(r.cidr, snap.data);
    return r;
  }

  /** Bitmap offset of an IP, or undefined when it is not allocatable here (`contains`). */
  offsetOf(ip: IP | string): number | undefined {
    const addr = toIP(ip);
    if (!this.cidr.contains(addr)) return undefined;
    const off = addr.value - this.base.value;
    if (off < 0n || off >= BigInt(this.max)) return undefined;
    return Number(off);
  }

  /** True when the IP is inside the allocatable window (not network, not v4 broadcast, under the v6 cap). */
  contains(ip: IP | string): boolean {
    return this.offsetOf(ip) !== undefined;
  }

  /** IP at a bitmap offset. */
  ipAt(offset: number): IP {
    return IP.from(this.family, this.base.value + BigInt(offset));
  }

  /** Reserves a specific IP. Throws {@link ErrNotInRange} or {@link ErrAllocated}; never ErrFull. */
  allocate(ip: IP | string): void {
    const addr = toIP(ip);
    const off = this.offsetOf(addr);
    if (off === undefined) {
      this.#stats.errors.static++;
      throw new ErrNotInRange(addr.toString(), this.cidr.toString());
    }
    if (!this.#bitmap.allocate(off)) {
      this.#stats.errors.static++;
      throw new ErrAllocated();
    }
    this.#stats.allocations.static++;
  }

  /** Allocates a free IP (upper band first). Throws {@link ErrFull}. */
  allocateNext(): IP {
    const off = this.#bitmap.allocateNext();
    if (off === undefined) {
      this.#stats.errors.dynamic++;
      throw new ErrFull();
    }
    this.#stats.allocations.dynamic++;
    return this.ipAt(off);
  }

  /** Frees an IP; a no-op for IPs outside the range or not allocated. */
  release(ip: IP | string): void {
    const off = this.offsetOf(ip);
    if (off !== undefined) this.#bitmap.release(off);
  }

  has(ip: IP | string): boolean {
    const off = this.offsetOf(ip);
    return off !== undefined && this.#bitmap.has(off);
  }

  /** Visits allocated IPs in ascending order. */
  forEach(fn: (ip: IP) => void): void {
    this.#bitmap.forEach((off) => fn(this.ipAt(off)));
  }

  /** Allocated IPs in ascending order, as canonical text. */
  list(): string[] {
    const out: string[] = [];
    this.forEach((ip) => out.push(ip.toString()));
    return out;
  }

  used(): number {
    return this.max - this.#bitmap.free();
  }

  free(): number {
    return this.#bitmap.free();
  }

  /** Copy of the allocation counters. */
  stats(): RangeStats {
    const s = this.#stats;
    return { allocations: { ...s.allocations }, errors: { ...s.errors } };
  }

  snapshot(): RangeSnapshot {
    return { range: this.cidr.toString(), data: this.#bitmap.snapshot().data };
  }

  /**
   * `Restore(net, data)`: the network address and the prefix must equal this range's,
   * else {@link ErrMismatchedNetwork}.
   */
  restore(network: Cidr | string, data: Uint8Array): void {
    const net = toCidr(network);
    if (!net.equals(this.cidr)) throw new ErrMismatchedNetwork();
    try {
      this.#bitmap.restore(this.cidr.toString(), data);
    } catch (err) {
      throw new SnapshotRestoreError(err as Error);
    }
  }

  /** The dry-run shim (`Range.DryRun()`). */
  dryRun(): IPRangeAllocator {
    return new DryRunRange(this);
  }
}

/**
 * `dryRunRange`: validates without changing anything.
 * - `allocate` only range-checks (an already allocated IP passes);
 * - `allocateNext` returns the **network address** with no search and no ErrFull;
 * - `release` is a no-op; reads delegate to the real range.
 */
class DryRunRange implements IPRangeAllocator {
  readonly #real: Range;
  constructor(real: Range) {
    this.#real = real;
  }
  get cidr(): Cidr {
    return this.#real.cidr;
  }
  get family(): IPFamily {
    return this.#real.family;
  }
  allocate(ip: IP | string): void {
    const addr = toIP(ip);
    if (!this.#real.contains(addr)) throw new ErrNotInRange(addr.toString(), this.#real.cidr.toString());
  }
  allocateNext(): IP {
    return this.#real.cidr.network;
  }
  release(ip: IP | string): void {
    toIP(ip);
  }
  has(ip: IP | string): boolean {
    return this.#real.has(ip);
  }
  forEach(fn: (ip: IP) => void): void {
    this.#real.forEach(fn);
  }
  used(): number {
    return this.#real.used();
  }
  free(): number {
    return this.#real.free();
  }
  dryRun(): IPRangeAllocator {
    return this;
  }
}
