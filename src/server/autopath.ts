/**
 * Autopath: the server walks a pod's search list for it (CoreDNS `autopath @kubernetes`,
 * plugin/autopath/autopath.go with the list of plugin/kubernetes/autopath.go).
 *
 * A pod's resolv.conf (kubelet, ClusterFirst) is `search <ns>.svc.<zone> svc.<zone> <zone>
 * <node's search domains>` with `ndots:5`, so an external name costs the pod one NXDOMAIN
 * per search domain before the name itself is asked. When a query is the first expansion,
 * `<base>.<ns>.svc.<zone>`, comes from the IP of a pod in namespace `<ns>` and is NXDOMAIN,
 * the server asks the rest of the list itself, in the client's order:
 *
 *   <base>.svc.<zone>, <base>.<zone>, <base>.<each search domain of /etc/resolv.conf>, <base>
 *
 * and answers with the first reply that is not NXDOMAIN, for the name the client asked:
 * with a CNAME `<asked> → <found>` in front of the found name's records when there are any
 * (CoreDNS's `cnamer`), and as it is otherwise. What CoreDNS counts as "found", kept here:
 * any rcode but NXDOMAIN, so NODATA stops the walk. That is what keeps the answer what the
 * client's own walk would end with: a NODATA reply carries no CNAME, so glibc (which goes on
 * after NODATA) goes on walking by itself, and musl (which stops at NODATA) stops, as each
 * would have at that step. When every name is NXDOMAIN the plain NXDOMAIN of the asked name
 * is the answer, and the client walks on as usual.
 *
 * Where we differ from CoreDNS, all on paths where the client's own walk gives the same
 * end result:
 * - the walk starts only when the first expansion is NXDOMAIN (CoreDNS walks from it, and a
 *   hit there gets the same plain answer, CNAME-decorated);
 * - an upstream step that fails (SERVFAIL, timeout, REFUSED) ends the walk with the plain
 *   NXDOMAIN, where CoreDNS answers SERVFAIL: the client then asks the rest itself;
 * - upstream steps are taken for A, AAAA and CNAME queries only (the records the forwarder
 *   hands back as records); for other types a walk that reaches a name outside our zones
 *   stops with the plain NXDOMAIN;
 * - a query for `<ns>.svc.<zone>` itself is answered plainly (CoreDNS: SERVFAIL);
 * - the search domains of /etc/resolv.conf inside our own zones are skipped (they are a
 *   pod's own list when the server itself runs with ClusterFirst, not the node's).
 *
 * The client is known by its source address: a pod (pods verified index) whose phase can
 * still run, and the only such pod with that address. Several pods at one address are
 * hostNetwork pods sharing their node's (our pod view does not keep `spec.hostNetwork`;
 * CoreDNS documents that hostNetwork pods are not autopathed): no autopath for them.
 */
import { readFileSync } from 'node:fs';
import { Rcode, Type } from '../dns/constants.js';
import type { RR } from '../dns/rr.js';
import type { Answer } from '../dns/writer.js';
import { canonicalIP, stripZone, unmapIPv4 } from '../net/ip.js';
import type { Resolver } from '../zone/resolver.js';
import type { ClusterZone } from '../zone/zone.js';

/** Upstream resolution of one name (Forwarder.lookup, as the handler's ChaseStage). */
export type AutopathLookup = (name: string, qtype: number) => Promise<{ readonly rcode?: number; readonly answer: readonly RR[]; readonly tc: boolean }>;

/** The reply of a successful walk, for the name the client asked. */
export interface Walked {
  readonly answer: Answer;
  /** The upstream reply behind it was truncated (copied onto ours, as the ExternalName chase does). */
  readonly tc: boolean;
  /** Where the found answer came from (metrics): our zones or upstream. */
  readonly source: 'cluster' | 'forward';
}

/** The first expansion `<base>.<ns>.svc.<zone>` split. */
interface FirstExpansion {
  readonly zone: ClusterZone;
  readonly ns: string;
  readonly base: string;
}

const NXDOMAIN = Rcode.NXDOMAIN;
const NOERROR = Rcode.NOERROR;

/** The `search` (or `domain`) list of a resolv.conf text; the last such line wins (resolv.conf(5)). */
export function parseResolvSearch(text: string): string[] {
  let out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^(search|domain)\s+(.+)$/.exec(line);
    if (m === null) continue;
    const names = m[2]!.split(/\s+/).map((d) => d.toLowerCase().replace(/\.$/, '')).filter((d) => d !== '');
    out = m[1] === 'domain' ? names.slice(0, 1) : names;
  }
  return [...new Set(out)];
}

/** The search domains of `path` (CoreDNS reads its own /etc/resolv.conf the same way); none when unreadable. */
export function resolvConfSearch(path = '/etc/resolv.conf'): string[] {
  try {
    return parseResolvSearch(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
}

export class Autopath {
  readonly #resolver: Resolver;
  #search: readonly string[];
  /** Queries answered from a later element of the client's search list. */
  answered = 0;

  /** `search`: the node's search domains (the tail of a pod's list), lowercase, no trailing dot. */
  constructor(resolver: Resolver, search: readonly string[] = []) {
    this.#resolver = resolver;
    this.#search = search;
  }

  setSearch(search: readonly string[]): void {
    this.#search = search;
  }

  /**
   * Whether an NXDOMAIN for `name` can be a first expansion some pod's walk would be taken
   * for: `<base>.<ns>.svc.<zone>` in a zone with pods verified. String work only, no client.
   */
  candidate(name: string): boolean {
    return this.#split(name) !== undefined;
  }

  #split(name: string): FirstExpansion | undefined {
    const zone = this.#resolver.zoneOf(name);
    if (zone === undefined || zone.options.pods !== 'verified') return undefined;
    // `.svc.` + zone: 5 characters besides the zone.
    const end = name.length - zone.name.length - 5;
    if (end <= 0 || !name.endsWith(`.svc.${zone.name}`)) return undefined;
    const nsDot = name.lastIndexOf('.', end - 1);
    if (nsDot <= 0) return undefined;
    return { zone, ns: name.slice(nsDot + 1, end), base: name.slice(0, nsDot) };
  }

  /** Namespace of the pod at `client`, when exactly one live pod has that address. */
  clientNamespace(zone: ClusterZone, client: string): string | undefined {
    const ip = canonicalIP(unmapIPv4(stripZone(client)));
    if (ip === undefined) return undefined;
    const store = zone.store;
    const keys = store.podsByIP.get(ip);
    if (keys === undefined) return undefined;
    let ns: string | undefined;
    let n = 0;
    for (const key of keys) {
      const pod = store.pods.get(key);
      // Succeeded/Failed/Unknown: what the pods watch leaves out (CoreDNS's field selector).
      if (pod === undefined || pod.phase === 'Succeeded' || pod.phase === 'Failed' || pod.phase === 'Unknown') continue;
      ns = pod.namespace;
      n++;
    }
    return n === 1 ? ns : undefined;
  }

  /**
   * The walk for `name` (asked with `qtype` by `client`), whose own answer is NXDOMAIN.
   * Undefined when autopath does not apply or nothing was found without the upstream: the
   * plain answer stands. A Promise when an upstream step is needed; it resolves undefined
   * when the plain answer stands after all. Never rejects (lookup never does).
   */
  walk(name: string, qtype: number, client: string | undefined, lookup: AutopathLookup | undefined): Walked | Promise<Walked | undefined> | undefined {
    if (client === undefined) return undefined;
    const first = this.#split(name);
    if (first === undefined || this.clientNamespace(first.zone, client) !== first.ns) return undefined;
    const list = this.#list(first);
    return this.#from(list, 0, name, qtype, lookup);
  }

  /** The rest of the client's search list after its first element, as full names. */
  #list(first: FirstExpansion): string[] {
    const { base, zone } = first;
    const out = [`${base}.svc.${zone.name}`, `${base}.${zone.name}`];
    for (const d of this.#search) {
      // A domain of our zones in our own resolv.conf is a pod's list, not the node's.
      if (this.#resolver.zoneOf(d) !== undefined) continue;
      out.push(`${base}.${d}`);
    }
    out.push(base);
    return out;
  }

  /** Synchronously through our zones from element `i`; the first upstream step turns it into a Promise. */
  #from(list: readonly string[], i: number, asked: string, qtype: number, lookup: AutopathLookup | undefined): Walked | Promise<Walked | undefined> | undefined {
    for (; i < list.length; i++) {
      const n = list[i]!;
      const ans = this.#resolver.resolve(n, qtype);
      if (ans === undefined) {
        // Outside our zones: upstream, for the types the lookup hands back as records.
        if (lookup === undefined || (qtype !== Type.A && qtype !== Type.AAAA && qtype !== Type.CNAME)) return undefined;
        return this.#upstream(list, i, asked, qtype, lookup);
      }
      if (ans.rcode === NXDOMAIN) continue;
      const target = lookup === undefined ? undefined : this.#chaseTarget(ans, qtype);
      if (target !== undefined) return this.#chased(asked, n, ans, target, qtype, lookup!);
      return this.#done(asked, n, ans, [], false, 'cluster');
    }
    return undefined;
  }

  async #upstream(list: readonly string[], i: number, asked: string, qtype: number, lookup: AutopathLookup): Promise<Walked | undefined> {
    const n = list[i]!;
    const r = await lookup(n, qtype);
    const rcode = r.rcode ?? NOERROR;
    if (rcode === NXDOMAIN) return this.#from(list, i + 1, asked, qtype, lookup);
    // A failed upstream says nothing about the name: the client asks the rest itself.
    if (rcode !== NOERROR) return undefined;
    const ans: Answer = { rcode, authoritative: false, answer: r.answer, authority: [], additional: [] };
    return this.#done(asked, n, ans, [], r.tc, 'forward');
  }

  /** An ExternalName found on the way, pointing outside our zones: its target's records too. */
  async #chased(asked: string, n: string, ans: Answer, target: string, qtype: number, lookup: AutopathLookup): Promise<Walked> {
    const r = await lookup(target, qtype);
    return this.#done(asked, n, ans, r.answer, r.tc, 'cluster');
  }

  #chaseTarget(ans: Answer, qtype: number): string | undefined {
    if ((qtype !== Type.A && qtype !== Type.AAAA) || ans.rcode !== NOERROR) return undefined;
    const last = ans.answer[ans.answer.length - 1];
    if (last === undefined || last.type !== Type.CNAME) return undefined;
    return this.#resolver.owns(last.target) ? undefined : last.target;
  }

  #done(asked: string, found: string, ans: Answer, more: readonly RR[], tc: boolean, source: Walked['source']): Walked {
    this.answered++;
    const head = ans.answer[0];
    // CoreDNS's cnamer: a CNAME from the asked name to the found one, with the TTL of the
    // first record, only when there are records (see the module comment for NODATA).
    const answer: RR[] = head === undefined ? [] : [{ name: asked, type: Type.CNAME, ttl: head.ttl, target: found }, ...ans.answer, ...more];
    return { answer: { ...ans, answer }, tc, source };
  }
}
