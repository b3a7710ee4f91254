/**
 * Usage of a service CIDR or NodePort range, split into the KEP-3070 / KEP-3668 bands:
 * the static (lower) band that random allocation only uses once the dynamic (upper)
 * band is full, so manifests can pick addresses there without colliding.
 *
 * @module
 */
import type { IPFamily } from '../cluster/model.js';
import type { PortAllocator } from '../ipam/portallocator.js';
import type { Range } from '../ipam/range.js';

/** One band: its bounds (absent when empty) and how much of it is taken. */
export interface BandUsage {
  readonly first?: string;
  readonly last?: string;
  readonly allocated: number;
  readonly total: number;
}

/** Usage of one service CIDR. */
export interface RangeUsage {
  readonly family: IPFamily;
  readonly cidr: string;
  readonly allocated: number;
  readonly free: number;
  /** Allocatable addresses (network, IPv4 broadcast and the IPv6 cap excluded). */
  readonly total: number;
  readonly static: BandUsage;
  readonly dynamic: BandUsage;
}

/** Usage of the NodePort range. */
export interface PortUsage {
  readonly range: string;
  readonly allocated: number;
  readonly free: number;
  readonly total: number;
  readonly static: BandUsage;
  readonly dynamic: BandUsage;
}

function band(first: string | undefined, last: string | undefined, allocated: number, total: number): BandUsage {
  return total > 0 && first !== undefined && last !== undefined ? { first, last, allocated, total } : { allocated, total };
}

/** Usage of a bitmap range, by band. */
export function rangeUsage(range: Range): RangeUsage {
  const offset = Math.min(range.rangeOffset, range.max);
  let low = 0;
  let all = 0;
  range.forEach((ip) => {
    all++;
    const off = range.offsetOf(ip);
    if (off !== undefined && off < offset) low++;
  });
  const staticBand = band(offset > 0 ? range.ipAt(0).toString() : undefined, offset > 0 ? range.ipAt(offset - 1).toString() : undefined, low, offset);
  const dyn = range.max - offset;
  const dynamicBand = band(dyn > 0 ? range.ipAt(offset).toString() : undefined, dyn > 0 ? range.ipAt(range.max - 1).toString() : undefined, all - low, dyn);
  return { family: range.family, cidr: range.cidr.toString(), allocated: all, free: range.max - all, total: range.max, static: staticBand, dynamic: dynamicBand };
}

/** Usage of a NodePort allocator, by band. */
export function portUsage(pa: PortAllocator): PortUsage {
  const { base, size } = pa.range;
  const offset = Math.min(pa.offset, size);
  let low = 0;
  let all = 0;
  pa.forEach((p) => {
    all++;
    if (p - base < offset) low++;
  });
  const dyn = size - offset;
  return {
    range: pa.range.toString(),
    allocated: all,
    free: size - all,
    total: size,
    static: band(offset > 0 ? String(base) : undefined, offset > 0 ? String(base + offset - 1) : undefined, low, offset),
    dynamic: band(dyn > 0 ? String(base + offset) : undefined, dyn > 0 ? String(base + size - 1) : undefined, all - low, dyn),
  };
}

/** `allocated/total` text of a band, with its bounds: `10.96.0.1-10.96.1.0 3/256`. */
export function formatBand(b: BandUsage): string {
  return b.total === 0 ? 'empty' : `${b.first ?? ''}-${b.last ?? ''} ${b.allocated}/${b.total}`;
}
