/**
 * The answer cache of forwarded queries (CoreDNS `cache`): least recently used entries go
 * first.
 *
 * - Bounds: `maxEntries`, and `maxBytes` counting what an entry really costs the
 *   process (its bytes, its objects, the GC's headroom over them; see entrySize).
 * - Key: a numeric slot for (qtype, qclass, DO, CD) and the lowercase qname the query
 *   parser already made: one Map per slot, keyed by name, so a lookup builds no string
 *   (an answer fetched with DNSSEC records or with checking disabled is not served to a
 *   client that asked otherwise).
 * - Value: the upstream reply as received (ID and question as we sent them) with the
 *   offsets of its records' TTLs and ends, as one latin1 string, and its header facts
 *   (wire.ts Prepared), so a hit is one copy of contiguous bytes plus patches at known
 *   offsets (wire.ts `renderEntry`). The LRU order is a list threaded through the
 *   entries: a hit moves one entry and allocates nothing.
 * - Positive answers (NOERROR with answer records) live min(record TTLs, maxTTL) seconds.
 * - Negative answers (NXDOMAIN, and NOERROR without answers: NODATA) live
 *   min(SOA TTL, SOA MINIMUM, maxNegativeTTL) seconds (RFC 2308 §5). A negative answer
 *   without an SOA is not cached (RFC 2308 §5: "SHOULD NOT be cached"), nor is a
 *   NOERROR referral.
 * - Never cached: other rcodes (SERVFAIL, REFUSED, FORMERR, NOTIMP…), truncated
 *   replies, and answers whose lifetime would be 0 s.
 * - What is served has every TTL at most the entry's lifetime, counted down by the
 *   whole seconds since it was stored (RFC 1035 §3.2.1; CoreDNS does the same). The
 *   lifetime is at most every record's TTL, so every record gets the same value.
 * - Serve-stale (RFC 8767): an entry stays for `serveStale` seconds after it expired;
 *   the forwarder serves it, with TTL 30 (RFC 8767 §4), only when every upstream failed.
 * - Prefetch (CoreDNS `prefetch AMOUNT DURATION PERCENTAGE%`): an entry hit at least
 *   `amount` times within `duration` seconds and with less than `percentage`% of its
 *   lifetime left is refreshed in the background, so popular names never miss.
 */
import { Flag, Rcode } from '../dns/constants.js';
import { preparedWire, sectionCounts, type Prepared, type Scan } from './wire.js';

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
  /**
   * Most bytes held: message bytes plus each entry's measured overhead and the GC's
   * headroom over them (default 32 MiB).
   */
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

/** Prefetch bookkeeping of an entry, made on its first hit when prefetch is on. */
interface PrefetchState {
  /** Hits in the current window, and when that window began. */
  hits: number;
  windowStart: number;
  prefetching: boolean;
}

/**
 * One cached answer: a Prepared reply plus its lifetime and place in the LRU list. Its
 * small numbers are packed into integers that stay small (V8 keeps them unboxed), so an
 * entry is one object of a dozen fields and its wire string.
 */
export class CacheEntry implements Prepared {
  readonly wire: string;
  /** questionEnd | bodyEnd << 9 (a question ends before 12 + 255 + 4 < 512). */
  readonly #shape: number;
  /** Answer count | authority count << 13 (a record takes 11 bytes at least: < 8192 each). */
  readonly #counts: number;
  /** Header flags | (rcode & 0xff) << 16 | DO << 24 | denial << 25. */
  readonly #meta: number;
  /** Clock time when stored, ms. */
  readonly storedAt: number;
  /** Lifetime, whole seconds (≥ 1). */
  readonly ttl: number;
  readonly slot: number;
  readonly name: string;
  #pf: PrefetchState | undefined = undefined;
  /** Neighbours in the LRU list (newer, older); `linked` while in the cache. */
  newer: CacheEntry | undefined = undefined;
  older: CacheEntry | undefined = undefined;
  linked = false;

  constructor(msg: Buffer, scan: Scan, slot: number, name: string, storedAt: number, ttl: number, kind: EntryKind) {
    this.wire = preparedWire(msg, scan);
    const recs = scan.records;
    const bodyEnd = recs.length > 0 ? recs[recs.length - 1]!.end : scan.questionEnd;
    this.#shape = scan.questionEnd | (bodyEnd << 9);
    const c = sectionCounts(scan);
    this.#counts = c.an | (c.ns << 13);
    this.#meta = (scan.flags & 0xffff) | ((scan.rcode & 0xff) << 16) | (scan.opt?.dnssecOk === true ? 1 << 24 : 0) | (kind === 'denial' ? 1 << 25 : 0);
    this.slot = slot;
    this.name = name;
    this.storedAt = storedAt;
    this.ttl = ttl;
  }

  get questionEnd(): number {
    return this.#shape & 511;
  }

  get bodyEnd(): number {
    return this.#shape >>> 9;
  }

  get an(): number {
    return this.#counts & 8191;
  }

  get ns(): number {
    return this.#counts >>> 13;
  }

  get flags(): number {
    return this.#meta & 0xffff;
  }

  get rcode(): number {
    return (this.#meta >>> 16) & 0xff;
  }

  get dnssecOk(): boolean {
    return (this.#meta & (1 << 24)) !== 0;
  }

  get kind(): EntryKind {
    return (this.#meta & (1 << 25)) !== 0 ? 'denial' : 'success';
  }

  /** Bytes charged against maxBytes. */
  get size(): number {
    return entrySize(this.wire.length, this.name.length);
  }

  /** Prefetch bookkeeping (made when first asked for). */
  get pf(): PrefetchState {
    return (this.#pf ??= { hits: 0, windowStart: this.storedAt, prefetching: false });
  }

  /** A refresh of this entry is running. */
  get prefetching(): boolean {
    return this.#pf?.prefetching === true;
  }

  set prefetching(v: boolean) {
    this.pf.prefetching = v;
  }

  /** TTL to serve every record with at `now` (whole seconds elapsed since stored; ≥ 0). */
  ttlAt(now: number): number {
    const left = this.ttl - Math.floor((now - this.storedAt) / 1000);
    return left > 0 ? left : 0;
  }
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
/**
 * Memory an entry costs beyond its wire string's bytes and its name's characters,
 * measured (V8 heap and malloc, Node 20, `test/upstream/cache-memory.test.ts` checks it):
 * the entry object, the string headers, the Map slot. Rounded up.
 */
export const ENTRY_OVERHEAD = 240;
/**
 * The garbage collector's headroom: V8 lets its old generation grow well past what
 * survived its last full collection before collecting again (under a high allocation
 * rate up to about twice), so evicted entries stay resident for a while and the heap's
 * limit grows with the live cache. Measured under a stream of unique names
 * (bench/forward.ts, memory run; scripts in its report): the resident set grew by up to
 * 2.2 × the cache's live bytes. Charging twice the live cost keeps the process within
 * about maxBytes of its base, at the price of caching half as many entries for a given
 * maxBytes (the default maxEntries, 10,000, binds long before the default 32 MiB).
 */
export const GC_HEADROOM = 2;

export const CACHE_DEFAULTS = {
  maxEntries: 10_000,
  maxBytes: 32 * 1024 * 1024,
  maxTTL: 30,
  maxNegativeTTL: 5,
  serveStale: 3600,
  prefetch: { amount: 10, duration: 60, percentage: 10 },
} as const;

/**
 * The slot of a question's (qtype, qclass, DO, CD): a small integer for class IN, so
 * the per-slot maps are found by number.
 */
export function cacheSlot(qtype: number, qclass: number, dnssecOk: boolean, checkingDisabled: boolean): number {
  const bits = (dnssecOk ? 2 : 0) | (checkingDisabled ? 1 : 0);
  return qclass === 1 ? qtype * 4 + bits : (qclass * 65536 + qtype) * 4 + bits + 262_144;
}

export class AnswerCache {
  readonly #enabled: boolean;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #maxTTL: number;
  readonly #maxNegTTL: number;
  readonly #staleMs: number;
  readonly #prefetch: Required<PrefetchOptions> | undefined;
  #slots = new Map<number, Map<string, CacheEntry>>();
  /** LRU list ends: most and least recently used. */
  #newest: CacheEntry | undefined;
  #oldest: CacheEntry | undefined;
  #size = 0;
  #bytes = 0;
  #hits = { success: 0, denial: 0 };
  #misses = 0;
  #stale = 0;
  #prefetches = 0;
  #evictions = 0;
  readonly #kinds = { success: 0, denial: 0 };

  constructor(opts: CacheOptions = {}) {
    this.#maxEntries = opts.maxEntries ?? CACHE_DEFAULTS.maxEntries;
    this.#maxBytes = opts.maxBytes ?? CACHE_DEFAULTS.maxBytes;
    this.#enabled = this.#maxEntries > 0 && this.#maxBytes > 0;
    this.#maxTTL = opts.maxTTL ?? CACHE_DEFAULTS.maxTTL;
    this.#maxNegTTL = opts.maxNegativeTTL ?? CACHE_DEFAULTS.maxNegativeTTL;
    this.#staleMs = Math.max(0, opts.serveStale ?? CACHE_DEFAULTS.serveStale) * 1000;
    const p = opts.prefetch;
    this.#prefetch = p === undefined || p === false ? undefined : { ...CACHE_DEFAULTS.prefetch, ...(p === true ? {} : p) };
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  get prefetchEnabled(): boolean {
    return this.#prefetch !== undefined;
  }

  get maxBytes(): number {
    return this.#maxBytes;
  }

  /**
   * A fresh entry for (slot, name) (a hit), or undefined (a miss). Entries past their
   * lifetime are kept for serve-stale; entries past that too are deleted.
   */
  get(slot: number, name: string, now: number): CacheEntry | undefined {
    const e = this.#slots.get(slot)?.get(name);
    if (e !== undefined) {
      const age = now - e.storedAt;
      if (age < e.ttl * 1000) {
        this.#hits[e.kind]++;
        this.#touch(e);
        return e;
      }
      if (age >= e.ttl * 1000 + this.#staleMs) this.#remove(e);
    }
    this.#misses++;
    return undefined;
  }

  /** An expired entry still within the serve-stale window (counted as served stale). */
  stale(slot: number, name: string, now: number): CacheEntry | undefined {
    if (this.#staleMs === 0) return undefined;
    const e = this.#slots.get(slot)?.get(name);
    if (e === undefined) return undefined;
    const age = now - e.storedAt;
    if (age >= e.ttl * 1000 + this.#staleMs) return undefined;
    this.#stale++;
    return e;
  }

  /**
   * Store an upstream reply when it may be cached; returns the entry (also when it is
   * too big to keep: it is then only served), or undefined when it must not be cached.
   */
  store(slot: number, name: string, msg: Buffer, scan: Scan, now: number): CacheEntry | undefined {
    if (!this.#enabled) return undefined;
    const decision = lifetime(scan, this.#maxTTL, this.#maxNegTTL);
    if (decision === undefined) return undefined;
    const e = new CacheEntry(msg, scan, slot, name, now, decision.ttl, decision.kind);
    const size = e.size;
    if (size > this.#maxBytes) return e; // servable, too big to keep
    const old = this.#slots.get(slot)?.get(name);
    if (old !== undefined) this.#remove(old);
    let bySlot = this.#slots.get(slot);
    if (bySlot === undefined) this.#slots.set(slot, (bySlot = new Map()));
    bySlot.set(name, e);
    e.linked = true;
    e.older = this.#newest;
    if (this.#newest !== undefined) this.#newest.newer = e;
    this.#newest = e;
    if (this.#oldest === undefined) this.#oldest = e;
    this.#size++;
    this.#bytes += size;
    this.#kinds[e.kind]++;
    while ((this.#size > this.#maxEntries || this.#bytes > this.#maxBytes) && this.#oldest !== undefined) {
      this.#remove(this.#oldest);
      this.#evictions++;
    }
    return e;
  }

  /**
   * Count a hit for prefetch and say whether the entry should be refreshed now
   * (popular, nearly expired, no refresh already running).
   */
  wantsPrefetch(e: CacheEntry, now: number): boolean {
    const p = this.#prefetch;
    if (p === undefined) return false;
    const pf = e.pf;
    if (now - pf.windowStart > p.duration * 1000) {
      pf.windowStart = now;
      pf.hits = 0;
    }
    pf.hits++;
    if (pf.prefetching || pf.hits < p.amount) return false;
    const left = e.storedAt + e.ttl * 1000 - now;
    return left < (e.ttl * 1000 * p.percentage) / 100;
  }

  notePrefetch(): void {
    this.#prefetches++;
  }

  clear(): void {
    for (let e = this.#newest; e !== undefined; e = e.older) e.linked = false;
    this.#slots = new Map();
    this.#newest = undefined;
    this.#oldest = undefined;
    this.#size = 0;
    this.#bytes = 0;
    this.#kinds.success = 0;
    this.#kinds.denial = 0;
  }

  stats(): CacheStats {
    return {
      size: this.#size,
      bytes: this.#bytes,
      entries: { ...this.#kinds },
      hits: { ...this.#hits },
      misses: this.#misses,
      staleServed: this.#stale,
      prefetches: this.#prefetches,
      evictions: this.#evictions,
    };
  }

  /** Most recently used now. */
  #touch(e: CacheEntry): void {
    if (this.#newest === e) return;
    // Unlink (e has a newer neighbour, since it is not the newest).
    e.newer!.older = e.older;
    if (e.older !== undefined) e.older.newer = e.newer;
    else this.#oldest = e.newer;
    e.newer = undefined;
    e.older = this.#newest;
    this.#newest!.newer = e;
    this.#newest = e;
  }

  #remove(e: CacheEntry): void {
    if (!e.linked) return;
    e.linked = false;
    // A linked entry is always the one its (slot, name) maps to.
    const bySlot = this.#slots.get(e.slot);
    if (bySlot !== undefined && bySlot.delete(e.name) && bySlot.size === 0) this.#slots.delete(e.slot);
    if (e.newer !== undefined) e.newer.older = e.older;
    else this.#newest = e.older;
    if (e.older !== undefined) e.older.newer = e.newer;
    else this.#oldest = e.newer;
    e.newer = undefined;
    e.older = undefined;
    this.#size--;
    this.#bytes -= e.size;
    this.#kinds[e.kind]--;
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

/**
 * Bytes an entry is charged: its wire string (message and record offsets), its name, and
 * its measured overhead, times the GC's headroom.
 */
export function entrySize(wireBytes: number, nameLength: number): number {
  return Math.ceil((wireBytes + nameLength + ENTRY_OVERHEAD) * GC_HEADROOM);
}
