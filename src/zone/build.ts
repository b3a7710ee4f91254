/**
 * Record building: one service (with its endpoints) → the record sets it places in
 * the cluster zone and in the reverse tree. Kubernetes DNS spec 1.1.0 §2.3–2.5, and
 * CoreDNS's kubernetes plugin where the spec is silent (see README "Differences").
 */
import { Type } from '../dns/constants.js';
import { dashedIP } from '../dns/ip.js';
import { addressRR, type RR } from '../dns/rr.js';
import type { EndpointPort, EndpointSlice, Service } from '../cluster/model.js';
import { eachAddress } from '../cluster/packed.js';
import { EndpointNames } from './endpoints.js';
import { exists, type ChildNames, type RecordSet, type TypeEntry } from './table.js';
import { inZone, parseZonal, type ZonalName } from './zonal.js';

export type PodsMode = 'disabled' | 'insecure' | 'verified';

export interface ZoneOptions {
  /** TTL of every record (CoreDNS `ttl`, default 5). */
  readonly ttl: number;
  readonly pods: PodsMode;
  readonly ignoreEmptyService: boolean;
  readonly endpointPodNames: boolean;
  readonly noEndpoints: boolean;
  /** Only these namespaces are served (CoreDNS `namespaces`); undefined: all. */
  readonly namespaces: ReadonlySet<string> | undefined;
  /**
   * Headless services answer `<topology-zone>.pin|prefer._zone.<svc>...` (CoreDNS
   * `zonal`; zonal.ts). Never set for a multicluster zone (node.ts zoneOptions).
   */
  readonly zonal?: boolean;
}

/**
 * Served endpoint addresses of a service, one entry per (name, address). Most are known
 * by their dashed address, whose name is made only where it is written (`nameOf`).
 */
export interface ServedEndpoint {
  /** The hostname or pod name label; undefined: the dashed address. */
  readonly label: string | undefined;
  readonly ip: string;
  readonly ports: EndpointSlice['ports'];
}

/** The endpoint's name label (spec §2.1 "hostname"; CoreDNS endpointHostname). */
export function nameOf(e: ServedEndpoint): string {
  return e.label ?? dashedIP(e.ip);
}

const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * The hostname or (with endpointPodNames) pod name label, undefined for the dashed
 * address; also undefined when the label is the dashed address itself, so that the
 * same (name, address) pair is never counted twice.
 */
function endpointLabel(ip: string, hostname: string | undefined, podName: string | undefined, endpointPodNames: boolean): string | undefined {
  let label: string | undefined;
  const host = hostname?.toLowerCase();
  if (host !== undefined && LABEL.test(host)) label = host;
  else {
    const pod = podName?.toLowerCase();
    if (endpointPodNames && pod !== undefined && pod.length < 64 && LABEL.test(pod)) label = pod;
  }
  return label !== undefined && label === dashedIP(ip) ? undefined : label;
}

/**
 * Addresses DNS serves for a service: ready endpoints (nil counts as ready), or all of
 * them with `publishNotReadyAddresses` (the EndpointSlice controller marks those
 * ready; honouring the field directly covers hand-written slices too). FQDN slices
 * are skipped. Terminating endpoints are served only when still ready, as the
 * controller reports them. With `zone`, only endpoints in that topology zone (zonal.ts).
 */
export function servedEndpoints(svc: Service, slices: readonly EndpointSlice[], opts: ZoneOptions, zone?: string): ServedEndpoint[] {
  const out: ServedEndpoint[] = [];
  // (name, address) pairs seen: dashed ones by address, labelled ones by `label|address`.
  const dashed = new Set<string>();
  let labelled: Set<string> | undefined;
  // Slices sorted by name so names and order do not depend on event order.
  const sorted = slices.length < 2 ? slices : [...slices].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const slice of sorted) {
    if (slice.addressType === 'FQDN') continue;
    const ports = slice.ports;
    eachAddress(slice.endpoints, (ip, bits, hostname, podName, _node, epZone) => {
      if ((bits & 1) === 0 && !svc.publishNotReadyAddresses) return;
      if (zone !== undefined && !inZone(epZone, zone)) return;
      const label = endpointLabel(ip, hostname, podName, opts.endpointPodNames);
      if (label === undefined) {
        if (dashed.has(ip)) return;
        dashed.add(ip);
      } else {
        const k = `${label}|${ip}`;
        if ((labelled ??= new Set()).has(k)) return;
        labelled.add(k);
      }
      out.push({ label, ip, ports });
    });
  }
  return out;
}

export interface ServiceRecords {
  readonly forward: RecordSet[];
  /** What the service contributes to the reverse tree; undefined: nothing. */
  readonly ptr: PtrSource | undefined;
}

/**
 * A service's PTR data (spec §2.3.3, §2.4.3), read by the ReverseIndex per query: its
 * ClusterIPs point at the service name (exclusive, rank -1); endpoint addresses point at
 * their endpoint names (merged across services, rank 0).
 */
export interface PtrSource {
  readonly base: string;
  readonly clusterIPs: readonly string[];
  readonly endpoints: EndpointNames | undefined;
}

/**
 * Records of one service in `zone`. Empty when the service has no name at all
 * (headless with no ready endpoint: NXDOMAIN per spec §2.4.1; ExternalName with an IP;
 * `ignoreEmptyService` with no ready endpoint).
 *
 * Only the service name is a node of the table. What lies below it is answered on
 * demand by a ServiceChildren (endpoint names, `_port._proto` SRV names and their
 * `_proto` parents), and the large sets at the service name are `build` thunks over the
 * (immutable) store objects, run when first asked.
 */
export function serviceRecords(zone: string, svc: Service, slices: readonly EndpointSlice[], opts: ZoneOptions): ServiceRecords {
  const base = `${svc.name}.${svc.namespace}.svc.${zone}`;
  const ttl = opts.ttl;
  const forward: RecordSet[] = [];

  if (svc.type === 'ExternalName') {
    const target = svc.externalName;
    // CoreDNS only CNAMEs hostnames; an IP externalName has no record (coredns#2324).
    if (target === undefined || target === '' || /^[0-9.]+$/.test(target) || target.includes(':')) {
      return { forward, ptr: undefined };
    }
    forward.push({ name: base, type: Type.CNAME, rrs: [{ name: base, type: Type.CNAME, ttl, target }] });
    return { forward, ptr: undefined };
  }

  const eps = opts.noEndpoints ? [] : servedEndpoints(svc, slices, opts);
  if (svc.headless ? eps.length === 0 : svc.clusterIPs.length === 0 || (opts.ignoreEmptyService && eps.length === 0)) {
    return { forward, ptr: undefined };
  }
  // §2.4.1: a headless name has one A/AAAA per ready address, de-duplicated by IP.
  forward.push(...addressSets(base, ttl, svc.headless ? uniqueIPs(eps.map((e) => e.ip)) : svc.clusterIPs));

  // Endpoint names (spec §2.4.1 for headless; CoreDNS also serves them under ClusterIP services).
  let names: EndpointNames | undefined;
  if (eps.length > 0) {
    names = new EndpointNames(ttl);
    for (const e of eps) names.add(e.label, e.ip);
  }
  const children = new ServiceChildren(base, ttl, svc, slices, opts, names, eps);
  // §2.3.2 / §2.4.2: the bare service name lists every port.
  if (children.hasSrv) forward.push({ name: base, type: Type.SRV, rrs: NONE, build: () => children.srv(base, undefined) });
  if (children.size > 0) forward.push({ name: base, type: 0, rrs: NONE, children });
  // §2.3.3: a ClusterIP's PTR is exclusive and wins over endpoint PTRs; §2.4.3 and
  // CoreDNS: endpoint PTRs for endpoints of any service.
  return { forward, ptr: { base, clusterIPs: svc.headless ? [] : svc.clusterIPs, endpoints: names } };
}

/** Shared empty record list of lazy and existence-only sets (one array, not one per set). */
const NONE: readonly RR[] = Object.freeze([]);

/**
 * The names below one service, answered on demand: `<endpoint>.<svc>` (EndpointNames),
 * `_<port>._<proto>.<svc>` SRV sets and their `_<proto>.<svc>` parents (empty
 * non-terminals: NODATA). The SRV names are derived from the store objects at query time
 * (the service's ports, or for a headless service the ports of the slices that have
 * served endpoints), so nothing per port or per endpoint is kept here.
 */
export class ServiceChildren implements ChildNames {
  /** Endpoint and SRV names; zonal names (any zone label answers) are not counted. */
  readonly size: number;
  /** Whether any port makes an SRV record (the bare-name SRV set exists). */
  readonly hasSrv: boolean;
  readonly #base: string;
  readonly #ttl: number;
  readonly #svc: Service;
  readonly #slices: readonly EndpointSlice[];
  readonly #opts: ZoneOptions;
  readonly #names: EndpointNames | undefined;

  /** `eps`: the served endpoints as computed now (not kept). */
  constructor(
    base: string,
    ttl: number,
    svc: Service,
    slices: readonly EndpointSlice[],
    opts: ZoneOptions,
    names: EndpointNames | undefined,
    eps: readonly ServedEndpoint[],
  ) {
    this.#base = base;
    this.#ttl = ttl;
    this.#svc = svc;
    this.#slices = slices;
    this.#opts = opts;
    this.#names = names;
    const rels = this.#rels(eps);
    this.hasSrv = rels.length > 0;
    this.size = (names?.size ?? 0) + srvNames(rels).size;
  }

  /** The served endpoints now; with `zone`, those in that topology zone. */
  #served(zone?: string): ServedEndpoint[] {
    return this.#opts.noEndpoints ? [] : servedEndpoints(this.#svc, this.#slices, this.#opts, zone);
  }

  /** The SRV ports' relative names (srvRels); a headless service's come from `served`. */
  #rels(served: readonly ServedEndpoint[] | undefined): string[] {
    return srvRels(this.#svc.headless ? undefined : this.#svc.ports, served ?? []);
  }

  lookup(rel: string, name: string): Map<number, TypeEntry> | undefined {
    // Zonal names exist below headless services only: a ClusterIP has no zone, and
    // answering it under a pinned name would drop the pin (CoreDNS: NXDOMAIN).
    if (this.#opts.zonal === true && this.#svc.headless) {
      const z = parseZonal(rel);
      if (z !== undefined) return this.#zonal(z, name);
    }
    if (rel.charCodeAt(0) !== 95 /* _ */) {
      // An endpoint label (never starts with '_': RFC 1123 labels and dashed addresses).
      return rel.includes('.') ? undefined : this.#names?.lookup(rel, name);
    }
    // A headless service's served endpoints, computed once for the names and the records.
    const served = this.#svc.headless ? this.#served() : undefined;
    const srv = srvNames(this.#rels(served));
    if (srv.has(rel)) return new Map([[Type.SRV as number, this.srv(name, rel, served)]]);
    for (const proto of srv.values()) if (proto === rel) return new Map();
    return undefined;
  }

  /**
   * A zonal name, computed per query from the store objects: the anchor and directive
   * names exist empty; `pin` answers the endpoints in the zone (none: NODATA, as for a
   * drained or mistyped zone alike, the same on every replica); `prefer` falls back to
   * every served endpoint when the zone holds none (the fallback is in the name the
   * client chose, never a silent widening of a pin). CoreDNS kubernetes.go findServices.
   */
  #zonal(z: ZonalName, name: string): Map<number, TypeEntry> | undefined {
    if (z.kind === 'nx') return undefined;
    if (z.kind === 'ent') return new Map();
    let eps = this.#served(z.zone);
    if (eps.length === 0 && z.prefer) eps = this.#served();
    return zonalRecords(name, this.#base, this.#ttl, eps);
  }

  /**
   * Every record `lookup` answers below the service (zone transfer): each endpoint
   * name's A/AAAA, then each `_port._proto` name's SRV set. The `_proto` parents have
   * no records (empty non-terminals are implied by the names below them). Read from the
   * objects this was built from, so the records are those of one store version.
   */
  *records(): Generator<RR> {
    const base = this.#base;
    if (this.#names !== undefined) yield* this.#names.records(base);
    const served = this.#svc.headless ? this.#served() : undefined;
    for (const rel of srvNames(this.#rels(served)).keys()) yield* this.srv(`${rel}.${base}`, rel, served).rrs;
  }

  /** The SRV set at `name`: every port, or those whose relative name is `rel`. */
  srv(name: string, rel: string | undefined, served?: readonly ServedEndpoint[]): TypeEntry {
    const base = this.#base;
    const ttl = this.#ttl;
    const svc = this.#svc;
    if (!svc.headless) return clusterIPSrvSet(name, base, ttl, svc.ports, svc.clusterIPs, rel);
    return headlessSrvSet(name, base, ttl, served ?? this.#served(), rel);
  }
}

/**
 * §2.3.2: the SRV set of a name with virtual IPs (a ClusterIP service, a ClusterSetIP
 * import) at `name`: `0 w port <base>.` per distinct port, every port or those whose
 * relative name is `rel`, the IPs as additional; CoreDNS weights (one candidate per
 * port × IP, findServices' and findMultiClusterServices' ClusterIP branches).
 */
export function clusterIPSrvSet(
  name: string,
  base: string,
  ttl: number,
  ports: readonly EndpointPort[],
  ips: readonly string[],
  rel: string | undefined,
): TypeEntry {
  const named = ports.filter((p) => rel === undefined || (p.name !== '' && srvRel(p) === rel));
  const w = srvWeight(named.length * ips.length);
  const seen = new Set<number>();
  const rrs: RR[] = [];
  for (const p of named) {
    if (seen.has(p.port)) continue;
    seen.add(p.port);
    rrs.push({ name, type: Type.SRV, ttl, srv: { priority: 0, weight: w, port: p.port, target: base } });
  }
  return { rrs, extra: ips.map((ip) => addressRR(base, ttl, ip)) };
}

/**
 * The records at a zonal name for the endpoints it selects: A/AAAA of their addresses
 * (de-duplicated, §2.4.1) and the headless SRV set over them (every port, targets the
 * endpoint names `<ep>.<svc>...`, §2.4.2); other types NODATA.
 */
function zonalRecords(name: string, base: string, ttl: number, eps: readonly ServedEndpoint[]): Map<number, TypeEntry> {
  const out = new Map<number, TypeEntry>();
  const a: RR[] = [];
  const aaaa: RR[] = [];
  for (const ip of uniqueIPs(eps.map((e) => e.ip))) {
    const rr = addressRR(name, ttl, ip);
    (rr.type === Type.A ? a : aaaa).push(rr);
  }
  if (a.length > 0) out.set(Type.A, { rrs: a, extra: [] });
  if (aaaa.length > 0) out.set(Type.AAAA, { rrs: aaaa, extra: [] });
  const srv = headlessSrvSet(name, base, ttl, eps, undefined);
  if (srv.rrs.length > 0) out.set(Type.SRV, srv);
  return out;
}

/**
 * One entry per port an SRV record is made of: its relative SRV name (`_http._tcp`), or
 * '' when the port is unnamed. A name with virtual IPs takes its object's `ports`; a
 * headless one (`ports` undefined) the ports of the slices its served endpoints are in.
 */
export function srvRels(ports: readonly EndpointPort[] | undefined, served: readonly ServedEndpoint[]): string[] {
  const out: string[] = [];
  if (ports !== undefined) {
    for (const p of ports) out.push(p.name === '' ? '' : srvRel(p));
    return out;
  }
  const seen = new Set<EndpointSlice['ports']>();
  for (const e of served) {
    if (seen.has(e.ports)) continue;
    seen.add(e.ports);
    for (const p of e.ports) if (p.port >= 1) out.push(p.name === '' ? '' : srvRel(p));
  }
  return out;
}

/** Relative SRV names (`_http._tcp`) → their `_proto` parent. */
export function srvNames(rels: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const rel of rels) if (rel !== '') out.set(rel, rel.slice(rel.indexOf('.') + 1));
  return out;
}

export function srvRel(p: { name: string; protocol: string }): string {
  return `_${p.name.toLowerCase()}.${protoLabel(p.protocol)}`;
}

function uniqueIPs(ips: string[]): string[] {
  return [...new Set(ips)];
}

/**
 * A and AAAA sets at `name` (an absent family makes no set: NODATA for that type).
 * Beyond a few addresses the records are built when first asked.
 */
export function addressSets(name: string, ttl: number, ips: readonly string[]): RecordSet[] {
  const v4 = ips.filter((ip) => !ip.includes(':'));
  const v6 = ips.filter((ip) => ip.includes(':'));
  const out: RecordSet[] = [];
  for (const [type, group] of [
    [Type.A, v4],
    [Type.AAAA, v6],
  ] as const) {
    if (group.length === 0) continue;
    if (group.length <= 2) out.push({ name, type, rrs: group.map((ip) => addressRR(name, ttl, ip)) });
    else out.push({ name, type, rrs: NONE, build: () => ({ rrs: group.map((ip) => addressRR(name, ttl, ip)), extra: [] }) });
  }
  if (out.length === 0) out.push(exists(name));
  return out;
}

/**
 * CoreDNS weights (plugin.SRV): every candidate (port × address) weighs 100 at
 * priority 0; each SRV gets floor(100·100 / sum), at least 1; the sum is taken before
 * de-duplicating on (target, port).
 */
export function srvWeight(candidates: number): number {
  return Math.max(1, Math.floor(100 / Math.max(1, candidates)));
}

function protoLabel(p: string): string {
  return `_${p.toLowerCase()}`;
}

/** One candidate of an endpoint SRV set: an endpoint name, its address, one port. */
export interface SrvCandidate {
  readonly target: string;
  readonly ip: string;
  readonly port: number;
}

/**
 * Appends to `out` the SRV candidates of `eps`, whose names hang below `parent`: one per
 * (endpoint, port), every port or those whose relative name is `rel`.
 */
export function srvCandidates(out: SrvCandidate[], eps: readonly ServedEndpoint[], parent: string, rel: string | undefined): void {
  for (const e of eps) {
    for (const p of e.ports) {
      if (p.port < 1) continue;
      if (rel !== undefined && (p.name === '' || srvRel(p) !== rel)) continue;
      out.push({ target: `${nameOf(e)}.${parent}`, ip: e.ip, port: p.port });
    }
  }
}

/**
 * §2.4.2: one SRV per distinct (target, port) of the candidates, the targets' addresses
 * as additional; the weight counts every candidate (CoreDNS, before de-duplication).
 */
export function endpointSrvSet(name: string, ttl: number, cands: readonly SrvCandidate[]): TypeEntry {
  const w = srvWeight(cands.length);
  const seen = new Set<string>();
  const rrs: RR[] = [];
  const extra: RR[] = [];
  const seenExtra = new Set<string>();
  for (const c of cands) {
    const k = `${c.target}|${c.port}`;
    if (!seen.has(k)) {
      seen.add(k);
      rrs.push({ name, type: Type.SRV, ttl, srv: { priority: 0, weight: w, port: c.port, target: c.target } });
    }
    const ke = `${c.target}|${c.ip}`;
    if (!seenExtra.has(ke)) {
      seenExtra.add(ke);
      extra.push(addressRR(c.target, ttl, c.ip));
    }
  }
  return { rrs, extra };
}

/** A headless service's SRV set at `name`: its served endpoints, named below `base`. */
function headlessSrvSet(name: string, base: string, ttl: number, eps: readonly ServedEndpoint[], rel: string | undefined): TypeEntry {
  const cands: SrvCandidate[] = [];
  srvCandidates(cands, eps, base, rel);
  return endpointSrvSet(name, ttl, cands);
}
