/**
 * ReverseIndex: PTR data (spec §2.3.3, §2.4.3) kept as address → targets, not as
 * precomputed in-addr.arpa/ip6.arpa names. A query's reverse name is turned back into
 * an address (one parse) and looked up; at 150k endpoints this saves the name string,
 * node, record set and record objects per address (about 60 MB).
 *
 * The ancestors of known addresses (`0.244.10.in-addr.arpa`) are counted so that,
 * inside an authoritative reverse zone, they answer NODATA rather than NXDOMAIN.
 */
import { Type } from '../dns/constants.js';
import { reverseName, reverseToIP } from '../dns/ip.js';
import type { RR } from '../dns/rr.js';
import type { TypeEntry } from './table.js';

export interface ReverseEntry {
  /** Canonical address text. */
  readonly ip: string;
  /** The name the PTR points to. */
  readonly target: string;
  /** -1: a ClusterIP (exclusive, wins over endpoint names); 0: an endpoint name (merged). */
  readonly rank: number;
}

interface Ref {
  readonly owner: string;
  readonly target: string;
  readonly rank: number;
}

export class ReverseIndex {
  readonly #byIP = new Map<string, Ref | Ref[]>();
  readonly #byOwner = new Map<string, readonly ReverseEntry[]>();
  readonly #ancestors = new Map<string, number>();
  /** TTL of served PTR records (the zone's `ttl`). */
  ttl = 5;

  get size(): number {
    return this.#byIP.size;
  }

  owners(): IterableIterator<string> {
    return this.#byOwner.keys();
  }

  /** Replace what `owner` contributes (empty: remove it). */
  set(owner: string, entries: readonly ReverseEntry[]): void {
    const old = this.#byOwner.get(owner);
    if (old !== undefined) for (const e of old) this.#remove(owner, e.ip);
    if (entries.length === 0) {
      this.#byOwner.delete(owner);
      return;
    }
    this.#byOwner.set(owner, entries);
    for (const e of entries) this.#add({ owner, target: e.target, rank: e.rank }, e.ip);
  }

  /** Whether a reverse name exists: a known address or an ancestor of one. */
  exists(name: string): boolean {
    return this.lookup(name) !== undefined;
  }

  /** PTR records of a reverse name; an empty map for an ancestor; undefined when unknown. */
  lookup(name: string): Map<number, TypeEntry> | undefined {
    const ip = reverseToIP(name);
    if (ip === undefined) return (this.#ancestors.get(name) ?? 0) > 0 ? new Map() : undefined;
    const refs = this.#byIP.get(ip);
    if (refs === undefined) return undefined;
    const list = Array.isArray(refs) ? [...refs].sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0)) : [refs];
    const best = Math.min(...list.map((r) => r.rank));
    let chosen = list.filter((r) => r.rank === best);
    if (best < 0) chosen = chosen.slice(0, 1);
    const seen = new Set<string>();
    const rrs: RR[] = [];
    for (const r of chosen) {
      if (seen.has(r.target)) continue;
      seen.add(r.target);
      rrs.push({ name, type: Type.PTR, ttl: this.ttl, target: r.target });
    }
    return new Map([[Type.PTR, { rrs, extra: [] }]]);
  }

  #add(ref: Ref, ip: string): void {
    const cur = this.#byIP.get(ip);
    if (cur === undefined) {
      this.#byIP.set(ip, ref);
      this.#ancestry(ip, +1);
    } else if (Array.isArray(cur)) cur.push(ref);
    else this.#byIP.set(ip, [cur, ref]);
  }

  #remove(owner: string, ip: string): void {
    const cur = this.#byIP.get(ip);
    if (cur === undefined) return;
    if (!Array.isArray(cur)) {
      if (cur.owner !== owner) return;
      this.#byIP.delete(ip);
      this.#ancestry(ip, -1);
      return;
    }
    const rest = cur.filter((r) => r.owner !== owner);
    if (rest.length === 0) {
      this.#byIP.delete(ip);
      this.#ancestry(ip, -1);
    } else this.#byIP.set(ip, rest.length === 1 ? rest[0]! : rest);
  }

  /** Count the reverse name's ancestors (`c.b.a.in-addr.arpa` … `in-addr.arpa`). */
  #ancestry(ip: string, delta: number): void {
    const full = reverseName(ip);
    if (full === undefined) return;
    let name = full;
    for (;;) {
      const dot = name.indexOf('.');
      if (dot < 0) return;
      name = name.slice(dot + 1);
      if (name === 'arpa') return;
      const n = (this.#ancestors.get(name) ?? 0) + delta;
      if (n <= 0) this.#ancestors.delete(name);
      else this.#ancestors.set(name, n);
    }
  }
}
