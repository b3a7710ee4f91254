/**
 * The answer cache of forwarded queries (CoreDNS `cache`), on lru-cache, bounded both
 * by entry count and by (approximate) bytes.
 *
 * - Key: lowercase qname, qtype, qclass, DO and CD bits (an answer fetched with DNSSEC
 *   records or with checking disabled is not served to a client that asked otherwise).
 * - Value: the upstream reply as received (ID and question as we sent them) with its
 *   scan, so a hit is a copy of contiguous bytes plus TTL patches at known offsets.
 * - Positive answers (NOERROR with answer records) live min(record TTLs, maxTTL) seconds.
 * - Negative answers (NXDOMAIN, and NOERROR without answers: NODATA) live
 *   min(SOA TTL, SOA MINIMUM, maxNegativeTTL) seconds (RFC 2308 §5). A negative answer
 *   without an SOA is not cached (RFC 2308 §5: "SHOULD NOT be cached"), nor is a
 *   NOERROR referral.
 * - Never cached: other rcodes (SERVFAIL, REFUSED, FORMERR, NOTIMP…), truncated
 *   replies, and answers whose lifetime would be 0 s.
 * - What is served has every TTL at most the entry's lifetime, counted down by the
 *   whole seconds since it was stored (RFC 1035 §3.2.1; CoreDNS does the same).
 * - Serve-stale (RFC 8767): an entry stays for `serveStale` seconds after it expired;
 *   the forwarder serves it, with TTL 30 (RFC 8767 §4), only when every upstream failed.
 * - Prefetch (CoreDNS `prefetch AMOUNT DURATION PERCENTAGE%`): an entry hit at least
 *   `amount` times within `duration` seconds and with less than `percentage`% of its
 *   lifetime left is refreshed in the background, so popular names never miss.
 */
import { LRUCache } from 'lru-cache';
import { Flag, Rcode } from '../dns/constants.js';
import type { Scan } from './wire.js';

export interface PrefetchOptions {
  /** Hits within `duration` that make an entry popular (default 10). */
  readonly amount?: number;
  /** Window for counting hits, seconds (default 60). */
  readonly duration?: number;
  /** Refresh when less than this share of the lifetime is left, percent (default 10). */
  readonly percentage?: number;
}

export interface CacheOptions {
  /** Most entries (default 10000); 0 turns the cache off. */
  readonly maxEntries?: number;
  /** Most bytes held, approximately (message bytes plus bookkeeping; default 32 MiB). */
  readonly maxBytes?: number;
  /** Longest lifetime of a positive answer, seconds (default 30, CoreDNS `cache 30`). */
  readonly maxTTL?: number;
  /** Longest lifetime of a negative answer, seconds (default 5). */
  readonly maxNegativeTTL?: number;
  /** Seconds after expiry an entry may still be served when all upstreams fail (default 3600; 0 = off). */
  readonly serveStale?: number;
  /** Refresh popular entries before they expire (default off; `true` = the defaults above). */
  readonly prefetch?: boolean | PrefetchOptions;
}

export type EntryKind = 'success' | 'denial';

export interface CacheEntry {
  /** The upstream reply as received (our ID, our lowercase question). */
  readonly msg: Buffer;
  readonly scan: Scan;
  /** Clock time when stored, ms. */
  readonly storedAt: number;
  /** Lifetime, whole seconds (≥ 1). */
  readonly ttl: number;
  readonly kind: EntryKind;
  /** Hits in the current prefetch window, and when that window began. */
  hits: number;
  windowStart: number;
  prefetching: boolean;
}

export interface CacheStats {
  readonly size: number;
  readonly bytes: number;
  readonly entries: Readonly<Record<EntryKind, number>>;
  readonly hits: Readonly<Record<EntryKind, number>>;
  readonly misses: number;
  readonly staleServed: number;
  readonly prefetches: number;
  readonly evictions: number;
}

/** TTL given to records of a stale answer (RFC 8767 §4). */
export const STALE_TTL = 30;
/** Bookkeeping bytes charged per entry beyond its message (key, scan objects, LRU slots). */
const ENTRY_OVERHEAD = 200;
const RECORD_OVERHEAD = 64;

export const CACHE_DEFAULTS = {
  maxEntries: 10_000,
  maxBytes: 32 * 1024 * 1024,
  maxTTL: 30,
  maxNegativeTTL: 5,
  serveStale: 3600,
  prefetch: { amount: 10, duration: 60, percentage: 10 },
} as const;

/** Cache key of a question. */
export function cacheKey(name: string, qtype: number, qclass: number, dnssecOk: boolean, checkingDisabled: boolean): string {
  return `${name}|${qtype}|${qclass}|${dnssecOk ? 1 : 0}${checkingDisabled ? 1 : 0}`;
}

export class AnswerCache {
  readonly #lru: LRUCache<string, CacheEntry> | undefined;
  readonly #maxTTL: number;
  readonly #maxNegTTL: number;
  readonly #staleMs: number;
  readonly #prefetch: Required<PrefetchOptions> | undefined;
  #hits = { success: 0, denial: 0 };
  #misses = 0;
  #stale = 0;
  #prefetches = 0;
  #evictions = 0;
  readonly #kinds = { success: 0, denial: 0 };

  constructor(opts: CacheOptions = {}) {
    const max = opts.maxEntries ?? CACHE_DEFAULTS.maxEntries;
    const maxBytes = opts.maxBytes ?? CACHE_DEFAULTS.maxBytes;
    this.#maxTTL = opts.maxTTL ?? CACHE_DEFAULTS.maxTTL;
    this.#maxNegTTL = opts.maxNegativeTTL ?? CACHE_DEFAULTS.maxNegativeTTL;
    this.#staleMs = Math.max(0, opts.serveStale ?? CACHE_DEFAULTS.serveStale) * 1000;
    const p = opts.prefetch;
    this.#prefetch = p === undefined || p === false ? undefined : { ...CACHE_DEFAULTS.prefetch, ...(p === true ? {} : p) };
    if (max > 0 && maxBytes > 0) {
      this.#lru = new LRUCache<string, CacheEntry>({
        max,
        maxSize: maxBytes,
        sizeCalculation: (e, k) => entrySize(e, k),
        // Expiry is ours (entries outlive their TTL for serve-stale); lru-cache only
        // enforces the bounds.
        disposeAfter: (e, _k, reason) => {
          this.#kinds[e.kind]--;
          if (reason === 'evict') this.#evictions++;
        },
      });
    }
  }

  get enabled(): boolean {
    return this.#lru !== undefined;
  }

  get prefetchEnabled(): boolean {
    return this.#prefetch !== undefined;
  }

  /**
   * A fresh entry for `key` (a hit), or undefined (a miss). Entries past their
   * lifetime are kept for serve-stale; entries past that too are deleted.
   */
  get(key: string, now: number): CacheEntry | undefined {
    const lru = this.#lru;
    if (lru === undefined) return undefined;
    const e = lru.get(key);
    if (e !== undefined) {
      const age = now - e.storedAt;
      if (age < e.ttl * 1000) {
        this.#hits[e.kind]++;
        return e;
      }
      if (age >= e.ttl * 1000 + this.#staleMs) lru.delete(key);
    }
    this.#misses++;
    return undefined;
  }

  /** An expired entry still within the serve-stale window (counted as served stale). */
  stale(key: string, now: number): CacheEntry | undefined {
    if (this.#lru === undefined || this.#staleMs === 0) return undefined;
    const e = this.#lru.peek(key);
    if (e === undefined) return undefined;
    const age = now - e.storedAt;
    if (age >= e.ttl * 1000 + this.#staleMs) return undefined;
    this.#stale++;
    return e;
  }

  /** Store an upstream reply when it may be cached; returns the entry, or undefined. */
  store(key: string, msg: Buffer, scan: Scan, now: number): CacheEntry | undefined {
    const lru = this.#lru;
    if (lru === undefined) return undefined;
    const decision = lifetime(scan, this.#maxTTL, this.#maxNegTTL);
    if (decision === undefined) return undefined;
    const e: CacheEntry = { msg, scan, storedAt: now, ttl: decision.ttl, kind: decision.kind, hits: 0, windowStart: now, prefetching: false };
    const size = entrySize(e, key);
    if (size > lru.maxSize) return e; // servable, too big to keep
    lru.set(key, e);
    if (lru.peek(key) === e) this.#kinds[e.kind]++;
    return e;
  }

  /**
   * Count a hit for prefetch and say whether the entry should be refreshed now
   * (popular, nearly expired, no refresh already running).
   */
  wantsPrefetch(e: CacheEntry, now: number): boolean {
    const p = this.#prefetch;
    if (p === undefined) return false;
    if (now - e.windowStart > p.duration * 1000) {
      e.windowStart = now;
      e.hits = 0;
    }
    e.hits++;
    if (e.prefetching || e.hits < p.amount) return false;
    const left = e.storedAt + e.ttl * 1000 - now;
    return left < (e.ttl * 1000 * p.percentage) / 100;
  }

  notePrefetch(): void {
    this.#prefetches++;
  }

  clear(): void {
    this.#lru?.clear();
  }

  stats(): CacheStats {
    return {
      size: this.#lru?.size ?? 0,
      bytes: this.#lru?.calculatedSize ?? 0,
      entries: { ...this.#kinds },
      hits: { ...this.#hits },
      misses: this.#misses,
      staleServed: this.#stale,
      prefetches: this.#prefetches,
      evictions: this.#evictions,
    };
  }
}

/** TTL rewrite for serving `e` at `now`: capped at the lifetime, minus whole seconds elapsed. */
export function countdown(e: CacheEntry, now: number): (ttl: number) => number {
  const elapsed = Math.floor((now - e.storedAt) / 1000);
  const cap = e.ttl;
  return (ttl) => Math.max(0, Math.min(ttl, cap) - elapsed);
}

/** TTL rewrite for a stale answer (RFC 8767 §4). */
export function staleTtl(): number {
  return STALE_TTL;
}

/** How long a reply may be cached, and as what; undefined when it must not be. */
export function lifetime(scan: Scan, maxTTL: number, maxNegTTL: number): { ttl: number; kind: EntryKind } | undefined {
  if ((scan.flags & Flag.TC) !== 0) return undefined;
  if (scan.rcode !== Rcode.NOERROR && scan.rcode !== Rcode.NXDOMAIN) return undefined;
  if (scan.rcode === Rcode.NOERROR && scan.answers > 0) {
    const ttl = Math.min(scan.minTtl ?? 0, maxTTL);
    return ttl >= 1 ? { ttl: Math.floor(ttl), kind: 'success' } : undefined;
  }
  // NXDOMAIN or NODATA: RFC 2308 §5, from the SOA; min over all records covers the SOA.
  if (scan.soaTtl === undefined) return undefined;
  const ttl = Math.min(scan.soaTtl, scan.minTtl ?? scan.soaTtl, maxNegTTL);
  return ttl >= 1 ? { ttl: Math.floor(ttl), kind: 'denial' } : undefined;
}

function entrySize(e: CacheEntry, key: string): number {
  return e.msg.length + key.length + ENTRY_OVERHEAD + e.scan.records.length * RECORD_OVERHEAD;
}
