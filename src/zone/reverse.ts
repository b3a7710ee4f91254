/**
 * ReverseIndex: PTR data (spec §2.3.3, §2.4.3) kept as address → owning services, not
 * as precomputed in-addr.arpa/ip6.arpa names. A query's reverse name is turned back into
 * an address (one parse) and looked up, and the targets are made from the owner's
 * PtrSource (its service name, its endpoint names): per IPv4 address the index holds one
 * 8-byte table slot (U32Map), no name string, record or object.
 *
 * The ancestors of known addresses (`0.244.10.in-addr.arpa`) are counted so that,
 * inside an authoritative reverse zone, they answer NODATA rather than NXDOMAIN.
 */
import { Type } from '../dns/constants.js';
import { reverseName, reverseToIP } from '../dns/ip.js';
import { ipv4Key } from '../net/ip.js';
import type { RR } from '../dns/rr.js';
import type { PtrSource } from './build.js';
import type { TypeEntry } from './table.js';
import { U32Map } from './u32map.js';

/** One owner's PTR data, referred to by slot number from every address it covers. */
interface Ref {
  readonly owner: string;
  readonly src: PtrSource;
}

/** Multi-owner marker in #v4 (the owners are in #v4multi). */
const MULTI = -1;

export class ReverseIndex {
  /**
   * IPv4 address → owner slot + 1, or MULTI. One table entry per address and nothing
   * else: at 160k endpoint addresses 2 MB, where a Map of address strings took 7.
   */
  readonly #v4 = new U32Map();
  readonly #v4multi = new Map<number, number[]>();
  /** Other addresses (IPv6, or IPv4 not in canonical text) → owner slot(s). */
  readonly #other = new Map<string, number | number[]>();
  /** Owner slots: an address refers to its owner's slot, so a rebuild that keeps an address writes nothing for it. */
  readonly #refs: (Ref | undefined)[] = [];
  readonly #slotOf = new Map<string, number>();
  readonly #free: number[] = [];
  readonly #ancestors = new Map<string, number>();
  /** TTL of served PTR records (the zone's `ttl`). */
  ttl = 5;

  /** Addresses with PTR data. */
  get size(): number {
    return this.#v4.size + this.#other.size;
  }

  owners(): IterableIterator<string> {
    return this.#slotOf.keys();
  }

  /** Replace what `owner` contributes (undefined: remove it). */
  set(owner: string, src: PtrSource | undefined): void {
    let slot = this.#slotOf.get(owner);
    const old = slot === undefined ? [] : addressesOf(this.#refs[slot]!.src);
    const ips = src === undefined ? [] : addressesOf(src);
    if (slot !== undefined && ips.length === 0) {
      for (const ip of old) this.#remove(slot, ip);
      this.#refs[slot] = undefined;
      this.#slotOf.delete(owner);
      this.#free.push(slot);
      return;
    }
    if (ips.length === 0) return;
    if (slot === undefined) {
      slot = this.#free.pop() ?? this.#refs.length;
      this.#slotOf.set(owner, slot);
    }
    // Addresses kept by the owner need no write: they refer to the slot, whose ref is
    // replaced here.
    this.#refs[slot] = { owner, src: src! };
    if (old.length > 0) {
      const now = new Set(ips);
      for (const ip of old) if (!now.has(ip)) this.#remove(slot, ip);
    }
    const before = old.length > 0 ? new Set(old) : undefined;
    for (const ip of ips) if (before?.has(ip) !== true) this.#add(slot, ip);
  }

  /** Whether a reverse name exists: a known address or an ancestor of one. */
  exists(name: string): boolean {
    return this.lookup(name) !== undefined;
  }

  /** PTR records of a reverse name; an empty map for an ancestor; undefined when unknown. */
  lookup(name: string): Map<number, TypeEntry> | undefined {
    const ip = reverseToIP(name);
    if (ip === undefined) return (this.#ancestors.get(name) ?? 0) > 0 ? new Map() : undefined;
    const slots = this.#slots(ip);
    if (slots.length === 0) return undefined;
    const list = slots.map((k) => this.#refs[k]!).sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0));
    // Rank -1: a ClusterIP (exclusive: the first owner wins, as CoreDNS serves its first
    // match); rank 0: endpoint names, merged across owners.
    const cands: { rank: number; targets: string[] }[] = list.map((r) =>
      r.src.clusterIPs.includes(ip)
        ? { rank: -1, targets: [r.src.base] }
        : { rank: 0, targets: (r.src.endpoints?.labelsOf(ip) ?? []).map((l) => `${l}.${r.src.base}`) },
    );
    const best = Math.min(...cands.map((c) => c.rank));
    let chosen = cands.filter((c) => c.rank === best);
    if (best < 0) chosen = chosen.slice(0, 1);
    const seen = new Set<string>();
    const rrs: RR[] = [];
    for (const c of chosen) {
      for (const target of c.targets) {
        if (seen.has(target)) continue;
        seen.add(target);
        rrs.push({ name, type: Type.PTR, ttl: this.ttl, target });
      }
    }
    return new Map([[Type.PTR, { rrs, extra: [] }]]);
  }

  /** The owner slots of an address. */
  #slots(ip: string): readonly number[] {
    const k = ipv4Key(ip);
    if (k < 0) {
      const cur = this.#other.get(ip);
      return cur === undefined ? [] : typeof cur === 'number' ? [cur] : cur;
    }
    const v = this.#v4.get(k);
    return v === 0 ? [] : v === MULTI ? this.#v4multi.get(k)! : [v - 1];
  }

  #add(slot: number, ip: string): void {
    const k = ipv4Key(ip);
    if (k < 0) {
      const cur = this.#other.get(ip);
      if (cur === undefined) {
        this.#other.set(ip, slot);
        this.#ancestry(ip, +1);
      } else if (typeof cur === 'number') {
        if (cur !== slot) this.#other.set(ip, [cur, slot]);
      } else if (!cur.includes(slot)) cur.push(slot);
      return;
    }
    const v = this.#v4.get(k);
    if (v === 0) {
      this.#v4.set(k, slot + 1);
      this.#ancestry(ip, +1);
    } else if (v === MULTI) {
      const list = this.#v4multi.get(k)!;
      if (!list.includes(slot)) list.push(slot);
    } else if (v - 1 !== slot) {
      this.#v4.set(k, MULTI);
      this.#v4multi.set(k, [v - 1, slot]);
    }
  }

  #remove(slot: number, ip: string): void {
    const k = ipv4Key(ip);
    if (k < 0) {
      const cur = this.#other.get(ip);
      if (cur === undefined) return;
      const rest = typeof cur === 'number' ? (cur === slot ? [] : [cur]) : cur.filter((x) => x !== slot);
      if (rest.length === 0) {
        this.#other.delete(ip);
        this.#ancestry(ip, -1);
      } else this.#other.set(ip, rest.length === 1 ? rest[0]! : rest);
      return;
    }
    const v = this.#v4.get(k);
    if (v === 0) return;
    if (v !== MULTI) {
      if (v - 1 !== slot) return;
      this.#v4.delete(k);
      this.#ancestry(ip, -1);
      return;
    }
    const rest = this.#v4multi.get(k)!.filter((x) => x !== slot);
    if (rest.length === 1) {
      this.#v4multi.delete(k);
      this.#v4.set(k, rest[0]! + 1);
    } else this.#v4multi.set(k, rest);
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

/** The addresses a PTR source covers, each once. */
function addressesOf(src: PtrSource): string[] {
  const out = new Set<string>(src.clusterIPs);
  if (src.endpoints !== undefined) for (const ip of src.endpoints.allAddresses()) out.add(ip);
  return [...out];
}
