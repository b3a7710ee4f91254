/**
 * Record building: one service (with its endpoints) → the record sets it places in
 * the cluster zone and in the reverse tree. Kubernetes DNS spec 1.1.0 §2.3–2.5, and
 * CoreDNS's kubernetes plugin where the spec is silent (see README "Differences").
 */
import { Type } from '../dns/constants.js';
import { dashedIP } from '../dns/ip.js';
import { addressRR, type RR } from '../dns/rr.js';
import type { EndpointSlice, Service, ServicePort } from '../cluster/model.js';
import { EndpointNames } from './endpoints.js';
import { exists, type RecordSet, type TypeEntry } from './table.js';

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
}

/** Served endpoint addresses of a service, one entry per (name, address). */
export interface ServedEndpoint {
  readonly name: string;
  readonly ip: string;
  /** The name is the dashed address (no usable hostname or pod name). */
  readonly dashed: boolean;
  readonly ports: EndpointSlice['ports'];
}

const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The label an endpoint address is known by (spec §2.1 "hostname"; CoreDNS endpointHostname). */
export function endpointName(
  ep: EndpointSlice['endpoints'][number],
  ip: string,
  endpointPodNames: boolean,
): string {
  return endpointLabel(ep, endpointPodNames) ?? dashedIP(ip);
}

/** The hostname or (with endpointPodNames) pod name label; undefined: the dashed address. */
function endpointLabel(ep: EndpointSlice['endpoints'][number], endpointPodNames: boolean): string | undefined {
  const host = ep.hostname?.toLowerCase();
  if (host !== undefined && LABEL.test(host)) return host;
  const pod = ep.podName?.toLowerCase();
  if (endpointPodNames && pod !== undefined && pod.length < 64 && LABEL.test(pod)) return pod;
  return undefined;
}

/**
 * Addresses DNS serves for a service: ready endpoints (nil counts as ready), or all of
 * them with `publishNotReadyAddresses` (the EndpointSlice controller marks those
 * ready; honouring the field directly covers hand-written slices too). FQDN slices
 * are skipped. Terminating endpoints are served only when still ready, as the
 * controller reports them.
 */
export function servedEndpoints(svc: Service, slices: readonly EndpointSlice[], opts: ZoneOptions): ServedEndpoint[] {
  const out: ServedEndpoint[] = [];
  const seen = new Set<string>();
  // Slices sorted by name so names and order do not depend on event order.
  const sorted = [...slices].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const slice of sorted) {
    if (slice.addressType === 'FQDN') continue;
    for (const ep of slice.endpoints) {
      if (!ep.conditions.ready && !svc.publishNotReadyAddresses) continue;
      for (const ip of ep.addresses) {
        const label = endpointLabel(ep, opts.endpointPodNames);
        const name = label ?? dashedIP(ip);
        const k = `${name}|${ip}`;
        if (seen.has(k)) continue;
        seen.add(k);
        out.push({ name, ip, dashed: label === undefined, ports: slice.ports });
      }
    }
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
 * What grows with the endpoints is built on demand: endpoint names are an
 * EndpointNames directory below the service name, and the service's address and SRV
 * sets are `build` thunks over the (immutable) store objects, run when first asked.
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
  // The lazy sets recompute the served endpoints from the same store objects when asked.
  const served = (): ServedEndpoint[] => (opts.noEndpoints ? [] : servedEndpoints(svc, slices, opts));

  if (svc.headless) {
    if (eps.length === 0) return { forward, ptr: undefined };
    // §2.4.1: one A/AAAA per ready address, de-duplicated by IP.
    forward.push(...addressSets(base, ttl, uniqueIPs(eps.map((e) => e.ip))));
    forward.push(...headlessSrv(base, ttl, eps, served));
  } else {
    if (svc.clusterIPs.length === 0) return { forward, ptr: undefined };
    if (opts.ignoreEmptyService && eps.length === 0) return { forward, ptr: undefined };
    forward.push(...addressSets(base, ttl, svc.clusterIPs));
    forward.push(...clusterIPSrv(base, ttl, svc));
  }

  // Endpoint names (spec §2.4.1 for headless; CoreDNS also serves them under ClusterIP services).
  let names: EndpointNames | undefined;
  if (eps.length > 0) {
    names = new EndpointNames(base, ttl);
    for (const e of eps) names.add(e.name, e.ip, e.dashed);
    forward.push({ name: base, type: 0, rrs: [], children: names });
  }
  // §2.3.3: a ClusterIP's PTR is exclusive and wins over endpoint PTRs; §2.4.3 and
  // CoreDNS: endpoint PTRs for endpoints of any service.
  return { forward, ptr: { base, clusterIPs: svc.headless ? [] : svc.clusterIPs, endpoints: names } };
}

function uniqueIPs(ips: string[]): string[] {
  return [...new Set(ips)];
}

/**
 * A and AAAA sets at `name` (an absent family makes no set: NODATA for that type).
 * Beyond a few addresses the records are built when first asked.
 */
function addressSets(name: string, ttl: number, ips: readonly string[]): RecordSet[] {
  const v4 = ips.filter((ip) => !ip.includes(':'));
  const v6 = ips.filter((ip) => ip.includes(':'));
  const out: RecordSet[] = [];
  for (const [type, group] of [
    [Type.A, v4],
    [Type.AAAA, v6],
  ] as const) {
    if (group.length === 0) continue;
    if (group.length <= 2) out.push({ name, type, rrs: group.map((ip) => addressRR(name, ttl, ip)) });
    else out.push({ name, type, rrs: [], build: () => ({ rrs: group.map((ip) => addressRR(name, ttl, ip)), extra: [] }) });
  }
  if (out.length === 0) out.push(exists(name));
  return out;
}

/**
 * CoreDNS weights (plugin.SRV): every candidate (port × address) weighs 100 at
 * priority 0; each SRV gets floor(100·100 / sum), at least 1; the sum is taken before
 * de-duplicating on (target, port).
 */
function srvWeight(candidates: number): number {
  return Math.max(1, Math.floor(100 / Math.max(1, candidates)));
}

function protoLabel(p: string): string {
  return `_${p.toLowerCase()}`;
}

/** §2.3.2: `_port._proto.svc` → `0 w port svc.ns.svc.zone.`; the bare name lists every port. */
function clusterIPSrv(base: string, ttl: number, svc: Service): RecordSet[] {
  const out: RecordSet[] = [];
  if (svc.ports.length === 0) return out;
  const perIP = svc.clusterIPs.length;
  const named = new Map<string, ServicePort[]>();
  for (const p of svc.ports) {
    if (p.name === '') continue;
    const n = `_${p.name.toLowerCase()}.${protoLabel(p.protocol)}.${base}`;
    named.set(n, [...(named.get(n) ?? []), p]);
  }
  const make = (name: string, ports: readonly ServicePort[]): RecordSet => ({
    name,
    type: Type.SRV,
    rrs: [],
    build: () => {
      const w = srvWeight(ports.length * perIP);
      const seen = new Set<number>();
      const rrs: RR[] = [];
      for (const p of ports) {
        if (seen.has(p.port)) continue;
        seen.add(p.port);
        rrs.push({ name, type: Type.SRV, ttl, srv: { priority: 0, weight: w, port: p.port, target: base } });
      }
      return { rrs, extra: svc.clusterIPs.map((ip) => addressRR(base, ttl, ip)) };
    },
  });
  for (const [n, ports] of named) out.push(make(n, ports));
  out.push(make(base, svc.ports));
  return out;
}

/**
 * §2.4.2: one SRV per distinct (endpoint name, port), targets' addresses as additional.
 * Which SRV names exist is decided now (from the ports of the slices that have served
 * endpoints); their records are built when asked.
 */
function headlessSrv(base: string, ttl: number, eps: readonly ServedEndpoint[], served: () => ServedEndpoint[]): RecordSet[] {
  const names = new Set<string>();
  let any = false;
  const seenPorts = new Set<ServedEndpoint['ports']>();
  for (const e of eps) {
    if (seenPorts.has(e.ports)) continue;
    seenPorts.add(e.ports);
    for (const p of e.ports) {
      if (p.port < 1) continue;
      any = true;
      if (p.name !== '') names.add(srvName(p, base));
    }
  }
  const make = (name: string, only: string | undefined): RecordSet => ({
    name,
    type: Type.SRV,
    rrs: [],
    build: () => srvSet(name, base, ttl, served(), only),
  });
  const out: RecordSet[] = [];
  for (const n of names) out.push(make(n, n));
  if (any) out.push(make(base, undefined));
  return out;
}

function srvName(p: { name: string; protocol: string }, base: string): string {
  return `_${p.name.toLowerCase()}.${protoLabel(p.protocol)}.${base}`;
}

/** The SRV set at `name`: every (endpoint, port) candidate, or only ports named `only`. */
function srvSet(name: string, base: string, ttl: number, eps: readonly ServedEndpoint[], only: string | undefined): TypeEntry {
  type Cand = { ep: ServedEndpoint; port: number };
  const cands: Cand[] = [];
  for (const e of eps) {
    for (const p of e.ports) {
      if (p.port < 1) continue;
      if (only !== undefined && (p.name === '' || srvName(p, base) !== only)) continue;
      cands.push({ ep: e, port: p.port });
    }
  }
  const w = srvWeight(cands.length);
  const seen = new Set<string>();
  const rrs: RR[] = [];
  const extra: RR[] = [];
  const seenExtra = new Set<string>();
  for (const c of cands) {
    const target = `${c.ep.name}.${base}`;
    const k = `${target}|${c.port}`;
    if (!seen.has(k)) {
      seen.add(k);
      rrs.push({ name, type: Type.SRV, ttl, srv: { priority: 0, weight: w, port: c.port, target } });
    }
    const ke = `${target}|${c.ep.ip}`;
    if (!seenExtra.has(ke)) {
      seenExtra.add(ke);
      extra.push(addressRR(target, ttl, c.ep.ip));
    }
  }
  return { rrs, extra };
}
