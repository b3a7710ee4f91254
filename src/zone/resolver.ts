/**
 * Authoritative lookup over the cluster zones and the reverse tree: qname/qtype →
 * Answer, or undefined when the name is not ours (the caller forwards or refuses).
 *
 * The NXDOMAIN/NODATA split follows RFC 8020 and CoreDNS: NXDOMAIN only when nothing
 * exists at or below the name; an existing name without the asked type is NODATA
 * (NOERROR, empty answer, the zone's SOA in authority, RFC 2308 §2.2).
 */
import { Rcode, Type } from '../dns/constants.js';
import { podLabelToIP } from '../dns/ip.js';
import { addressRR, type RR } from '../dns/rr.js';
import type { Answer } from '../dns/writer.js';
import type { ClusterZone } from './zone.js';
import type { TypeEntry } from './table.js';

/** RFC 1034 §3.6.2 chains; CoreDNS stops at 10 too. */
const MAX_CHAIN = 10;

/** Preference for the one RRset an ANY query gets (RFC 8482 §4.1). */
const ANY_ORDER = [Type.A, Type.AAAA, Type.CNAME, Type.SRV, Type.PTR, Type.TXT, Type.SOA, Type.NS];

export interface ReverseZone {
  /** Zone name, e.g. `96.10.in-addr.arpa`. */
  readonly name: string;
}

export class Resolver {
  #zones: ClusterZone[] = [];
  #reverseZones: readonly ReverseZone[] = [];
  /** True once every source has synced; before that NXDOMAIN becomes SERVFAIL. */
  synced: () => boolean = () => true;

  setZones(zones: readonly ClusterZone[]): void {
    // Longest zone first so a nested cluster domain wins over its parent.
    this.#zones = [...zones].sort((a, b) => b.name.length - a.name.length);
  }

  get zones(): readonly ClusterZone[] {
    return this.#zones;
  }

  setReverseZones(zones: readonly ReverseZone[]): void {
    this.#reverseZones = [...zones].sort((a, b) => b.name.length - a.name.length);
  }

  /** The zone a name belongs to (for metrics): a cluster domain, a reverse zone or tree, or undefined. */
  zoneName(name: string): string | undefined {
    const z = this.zoneOf(name);
    if (z !== undefined) return z.name;
    const rz = this.#reverseZoneOf(name);
    if (rz !== undefined) return rz.name;
    if (name.endsWith('.in-addr.arpa') || name === 'in-addr.arpa') return 'in-addr.arpa';
    if (name.endsWith('.ip6.arpa') || name === 'ip6.arpa') return 'ip6.arpa';
    return undefined;
  }

  /** Whether we answer for `name` at all. */
  owns(name: string): boolean {
    return this.zoneOf(name) !== undefined || this.#reverseZoneOf(name) !== undefined;
  }

  resolve(name: string, qtype: number): Answer | undefined {
    const zone = this.zoneOf(name);
    if (zone !== undefined) return this.#inZone(zone, name, qtype);
    if (name.endsWith('.in-addr.arpa') || name.endsWith('.ip6.arpa')) return this.#reverse(name, qtype);
    return undefined;
  }

  /** The cluster zone a name is in (the longest matching cluster domain). */
  zoneOf(name: string): ClusterZone | undefined {
    for (const z of this.#zones) {
      if (name === z.name || (name.endsWith(z.name) && name.charCodeAt(name.length - z.name.length - 1) === 46)) return z;
    }
    return undefined;
  }

  #reverseZoneOf(name: string): ReverseZone | undefined {
    for (const z of this.#reverseZones) {
      if (name === z.name || (name.endsWith(z.name) && name.charCodeAt(name.length - z.name.length - 1) === 46)) return z;
    }
    return undefined;
  }

  #soa(zone: ClusterZone): RR {
    const apex = zone.forward.lookup(zone.name)?.get(Type.SOA)?.rrs[0];
    return apex ?? zone.soa();
  }

  #negative(zone: ClusterZone, rcode: number, answer: readonly RR[] = []): Answer {
    // Before the first sync we cannot know a name is absent: SERVFAIL, never a
    // cacheable NXDOMAIN (CoreDNS, startup_timeout).
    if (rcode === Rcode.NXDOMAIN && !this.synced()) rcode = Rcode.SERVFAIL;
    return { rcode, authoritative: true, answer, authority: [this.#soa(zone)], additional: [] };
  }

  #inZone(zone: ClusterZone, name: string, qtype: number): Answer {
    const chain: RR[] = [];
    const extra: RR[] = [];
    let cur = name;
    let curZone = zone;
    for (let hop = 0; ; hop++) {
      const node = this.#node(curZone, cur);
      if (node === undefined) return this.#negative(curZone, Rcode.NXDOMAIN, chain);
      const cname = node.get(Type.CNAME);
      if (cname !== undefined && qtype !== Type.CNAME) {
        // ExternalName. CoreDNS filters the CNAME out of SRV answers (NODATA there).
        if (qtype === Type.SRV && hop === 0) return this.#negative(curZone, Rcode.NOERROR);
        chain.push(...cname.rrs);
        const target = (cname.rrs[0] as { target: string }).target;
        const next = this.zoneOf(target);
        // Out-of-zone target: the CNAME alone; the client's resolver (or our upstream
        // stage) chases it. Loops and long chains stop after MAX_CHAIN hops.
        if (next === undefined || hop + 1 >= MAX_CHAIN || target === cur) {
          return { rcode: Rcode.NOERROR, authoritative: true, answer: chain, authority: [], additional: [] };
        }
        cur = target;
        curZone = next;
        continue;
      }
      const picked = this.#pick(node, qtype);
      if (picked === undefined) return this.#negative(curZone, Rcode.NOERROR, chain);
      chain.push(...picked.rrs);
      extra.push(...picked.extra);
      return { rcode: Rcode.NOERROR, authoritative: true, answer: chain, authority: [], additional: extra };
    }
  }

  #pick(node: Map<number, TypeEntry>, qtype: number): TypeEntry | undefined {
    if (qtype === Type.ANY) {
      for (const t of ANY_ORDER) {
        const e = node.get(t);
        if (e !== undefined) return { rrs: e.rrs, extra: [] };
      }
      return undefined;
    }
    return node.get(qtype);
  }

  /** Table lookup plus the names computed from the query itself (pod records). */
  #node(zone: ClusterZone, name: string): Map<number, TypeEntry> | undefined {
    const node = zone.forward.lookup(name);
    if (node !== undefined) return node;
    return this.#pod(zone, name);
  }

  /**
   * `<a-b-c-d>.<ns>.pod.<zone>` (CoreDNS `pods insecure|verified`; spec 1.0.0 §2.6):
   * the label is the address; insecure echoes it, verified needs a pod with that IP
   * in that namespace. The namespace must exist and be exposed.
   */
  #pod(zone: ClusterZone, name: string): Map<number, TypeEntry> | undefined {
    const mode = zone.options.pods;
    if (mode === 'disabled') return undefined;
    const rel = name.slice(0, name.length - zone.name.length - 1);
    const parts = rel.split('.');
    if (parts.length !== 3 || parts[2] !== 'pod') return undefined;
    const [label, ns] = parts as [string, string];
    if (!zone.forward.exists(`${ns}.pod.${zone.name}`)) return undefined;
    const ip = podLabelToIP(label);
    if (ip === undefined) return undefined;
    if (mode === 'verified') {
      const pods = zone.store.podsByIP.get(ip);
      let found = false;
      for (const key of pods ?? []) if (key.startsWith(`${ns}/`)) found = true;
      if (!found) return undefined;
    }
    const rr = addressRR(name, zone.options.ttl, ip);
    return new Map([[rr.type, { rrs: [rr], extra: [] }]]);
  }

  /**
   * PTR (spec §2.3.3, §2.4.3). Known addresses are answered anywhere under
   * in-addr.arpa/ip6.arpa; other names there are ours only inside a configured
   * `reverseZones` CIDR (NXDOMAIN with that zone's SOA), else not ours.
   */
  #reverse(name: string, qtype: number): Answer | undefined {
    const rz = this.#reverseZoneOf(name);
    let node: Map<number, TypeEntry> | undefined;
    for (const z of this.#zones) {
      const n = z.reverse.lookup(name);
      if (n === undefined) continue;
      if (node === undefined) {
        node = n;
      } else {
        // Several cluster zones know the address: merge their PTRs.
        const a = node.get(Type.PTR)?.rrs ?? [];
        const b = n.get(Type.PTR)?.rrs ?? [];
        node = new Map([[Type.PTR, { rrs: [...a, ...b], extra: [] }]]);
      }
    }
    const ptr = node?.get(Type.PTR);
    if (rz === undefined) {
      if (ptr === undefined) return undefined;
      if (qtype !== Type.PTR && qtype !== Type.ANY) return undefined;
      return { rcode: Rcode.NOERROR, authoritative: true, answer: ptr.rrs, authority: [], additional: [] };
    }
    const soa = this.#reverseSoa(rz);
    if (ptr !== undefined && (qtype === Type.PTR || qtype === Type.ANY)) {
      return { rcode: Rcode.NOERROR, authoritative: true, answer: ptr.rrs, authority: [], additional: [] };
    }
    if (qtype === Type.SOA && name === rz.name) {
      return { rcode: Rcode.NOERROR, authoritative: true, answer: [soa], authority: [], additional: [] };
    }
    // An ancestor of a known address, or a known address asked for another type: NODATA.
    // (The index's lookup already answers for ancestors of known addresses.)
    const existsHere = node !== undefined || name === rz.name;
    let rcode: number = existsHere ? Rcode.NOERROR : Rcode.NXDOMAIN;
    if (rcode === Rcode.NXDOMAIN && !this.synced()) rcode = Rcode.SERVFAIL;
    return { rcode, authoritative: true, answer: [], authority: [soa], additional: [] };
  }

  #reverseSoa(rz: ReverseZone): RR {
    const primary = this.#zones[this.#zones.length - 1];
    if (primary === undefined) {
      return { name: rz.name, type: Type.SOA, ttl: 5, soa: { mname: `ns.dns.${rz.name}`, rname: `hostmaster.${rz.name}`, serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: 5 } };
    }
    return primary.soa(rz.name);
  }
}
