/**
 * ReverseIndex: PTR data (spec §2.3.3, §2.4.3) kept as address → owning services, not
 * as precomputed in-addr.arpa/ip6.arpa names. A query's reverse name is turned back into
 * an address (one parse) and looked up, and the targets are made from the owner's
 * PtrSource (its service name, its endpoint names): per address the index holds one Map
 * slot, no name string, record or object (at 150k endpoints, ~60 MB less than names).
 *
 * The ancestors of known addresses (`0.244.10.in-addr.arpa`) are counted so that,
 * inside an authoritative reverse zone, they answer NODATA rather than NXDOMAIN.
 */
import { Type } from '../dns/constants.js';
import { reverseName, reverseToIP } from '../dns/ip.js';
import type { RR } from '../dns/rr.js';
import type { PtrSource } from './build.js';
import type { TypeEntry } from './table.js';

/** One owner's PTR data, shared by every address it covers (no object per address). */
interface Ref {
  readonly owner: string;
  readonly src: PtrSource;
}

export class ReverseIndex {
  readonly #byIP = new Map<string, Ref | Ref[]>();
  /** Owner → the addresses it covers (to update and remove them). */
  readonly #byOwner = new Map<string, readonly string[]>();
  readonly #ancestors = new Map<string, number>();
  /** TTL of served PTR records (the zone's `ttl`). */
  ttl = 5;

  get size(): number {
    return this.#byIP.size;
  }

  owners(): IterableIterator<string> {
    return this.#byOwner.keys();
  }

  /** Replace what `owner` contributes (undefined: remove it). */
  set(owner: string, src: PtrSource | undefined): void {
    const old = this.#byOwner.get(owner);
    const ips = src === undefined ? [] : addressesOf(src);
    // Update in place: addresses the owner keeps get the new ref under their existing
    // key. Removing and re-adding them would leave a deleted entry per address in the
    // Map's table at every rebuild, and V8 grows a table full of deleted entries instead
    // of compacting it (14 MB instead of 7 at 160k addresses).
    const kept = old === undefined ? undefined : new Set(old);
    if (old !== undefined) {
      const now = new Set(ips);
      for (const ip of old) if (!now.has(ip)) this.#remove(owner, ip);
    }
    if (src === undefined || ips.length === 0) {
      this.#byOwner.delete(owner);
      return;
    }
    const ref: Ref = { owner, src };
    this.#byOwner.set(owner, ips);
    for (const ip of ips) {
      if (kept?.has(ip) === true) this.#replace(ref, ip);
      else this.#add(ref, ip);
    }
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

  #add(ref: Ref, ip: string): void {
    const cur = this.#byIP.get(ip);
    if (cur === undefined) {
      this.#byIP.set(ip, ref);
      this.#ancestry(ip, +1);
    } else if (Array.isArray(cur)) cur.push(ref);
    else this.#byIP.set(ip, [cur, ref]);
  }

  /** Swap the owner's ref at `ip` for its new one (the key stays where it is). */
  #replace(ref: Ref, ip: string): void {
    const cur = this.#byIP.get(ip);
    if (cur === undefined) {
      this.#add(ref, ip);
    } else if (Array.isArray(cur)) {
      const i = cur.findIndex((r) => r.owner === ref.owner);
      if (i < 0) cur.push(ref);
      else cur[i] = ref;
    } else if (cur.owner === ref.owner) {
      this.#byIP.set(ip, ref);
    } else {
      this.#byIP.set(ip, [cur, ref]);
    }
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

/** The addresses a PTR source covers, each once. */
function addressesOf(src: PtrSource): string[] {
  const out = new Set<string>(src.clusterIPs);
  if (src.endpoints !== undefined) for (const ip of src.endpoints.allAddresses()) out.add(ip);
  return [...out];
}
