/**
 * Record building: one service (with its endpoints) → the record sets it places in
 * the cluster zone and in the reverse tree. Kubernetes DNS spec 1.1.0 §2.3–2.5, and
 * CoreDNS's kubernetes plugin where the spec is silent (see README "Differences").
 */
import { Type } from '../dns/constants.js';
import { dashedIP } from '../dns/ip.js';
import { addressRR, type RR } from '../dns/rr.js';
import type { EndpointSlice, Service } from '../cluster/model.js';
import { exists, type RecordSet } from './table.js';
import type { ReverseEntry } from './reverse.js';

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
  readonly ports: EndpointSlice['ports'];
}

const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The label an endpoint address is known by (spec §2.1 "hostname"; CoreDNS endpointHostname). */
export function endpointName(
  ep: EndpointSlice['endpoints'][number],
  ip: string,
  endpointPodNames: boolean,
): string {
  const host = ep.hostname?.toLowerCase();
  if (host !== undefined && LABEL.test(host)) return host;
  const pod = ep.podName?.toLowerCase();
  if (endpointPodNames && pod !== undefined && pod.length < 64 && LABEL.test(pod)) return pod;
  return dashedIP(ip);
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
        const name = endpointName(ep, ip, opts.endpointPodNames);
        const k = `${name}|${ip}`;
        if (seen.has(k)) continue;
        seen.add(k);
        out.push({ name, ip, ports: slice.ports });
      }
    }
  }
  return out;
}

export interface ServiceRecords {
  readonly forward: RecordSet[];
  readonly reverse: ReverseEntry[];
}

/**
 * Records of one service in `zone`. Empty when the service has no name at all
 * (headless with no ready endpoint: NXDOMAIN per spec §2.4.1; ExternalName with an IP;
 * `ignoreEmptyService` with no ready endpoint).
 */
export function serviceRecords(zone: string, svc: Service, slices: readonly EndpointSlice[], opts: ZoneOptions): ServiceRecords {
  const base = `${svc.name}.${svc.namespace}.svc.${zone}`;
  const ttl = opts.ttl;
  const forward: RecordSet[] = [];
  const reverse: ReverseEntry[] = [];

  if (svc.type === 'ExternalName') {
    const target = svc.externalName;
    // CoreDNS only CNAMEs hostnames; an IP externalName has no record (coredns#2324).
    if (target === undefined || target === '' || /^[0-9.]+$/.test(target) || target.includes(':')) {
      return { forward, reverse };
    }
    forward.push({ name: base, type: Type.CNAME, rrs: [{ name: base, type: Type.CNAME, ttl, target }] });
    return { forward, reverse };
  }

  const eps = opts.noEndpoints ? [] : servedEndpoints(svc, slices, opts);
  // One record object per (name, address), shared by the endpoint's own set and the
  // SRV additional sections that name it: at 150k endpoints copies cost tens of MB.
  const rrCache = new Map<string, RR>();
  const addr = (name: string, ip: string): RR => {
    const k = `${name}|${ip}`;
    let rr = rrCache.get(k);
    if (rr === undefined) rrCache.set(k, (rr = addressRR(name, ttl, ip)));
    return rr;
  };

  if (svc.headless) {
    if (eps.length === 0) return { forward, reverse };
    // §2.4.1: one A/AAAA per ready address, de-duplicated by IP.
    forward.push(...addressSets(base, uniqueIPs(eps.map((e) => e.ip)), addr));
    forward.push(...headlessSrv(base, ttl, eps, addr));
  } else {
    if (svc.clusterIPs.length === 0) return { forward, reverse };
    if (opts.ignoreEmptyService && eps.length === 0) return { forward, reverse };
    forward.push(...addressSets(base, svc.clusterIPs, addr));
    forward.push(...clusterIPSrv(base, ttl, svc, addr));
    // §2.3.3; rank -1: a ClusterIP's PTR is exclusive and wins over endpoint PTRs.
    for (const ip of svc.clusterIPs) reverse.push({ ip, target: base, rank: -1 });
  }

  // Endpoint names (spec §2.4.1 for headless; CoreDNS also serves them under ClusterIP services).
  const byName = new Map<string, string[]>();
  for (const e of eps) {
    let l = byName.get(e.name);
    if (l === undefined) byName.set(e.name, (l = []));
    if (!l.includes(e.ip)) l.push(e.ip);
  }
  for (const [name, ips] of byName) {
    const fq = `${name}.${base}`;
    forward.push(...addressSets(fq, ips, addr));
    // §2.4.3, and CoreDNS's PTR for endpoints of any service (rank 0: merged).
    for (const ip of ips) reverse.push({ ip, target: fq, rank: 0 });
  }
  return { forward, reverse };
}

type AddrRR = (name: string, ip: string) => RR;

function uniqueIPs(ips: string[]): string[] {
  return [...new Set(ips)];
}

/** A and AAAA sets at `name` (an absent family makes no set: NODATA for that type). */
function addressSets(name: string, ips: readonly string[], addr: AddrRR): RecordSet[] {
  const a: RR[] = [];
  const aaaa: RR[] = [];
  for (const ip of ips) {
    const rr = addr(name, ip);
    (rr.type === Type.A ? a : aaaa).push(rr);
  }
  const out: RecordSet[] = [];
  if (a.length > 0) out.push({ name, type: Type.A, rrs: a });
  if (aaaa.length > 0) out.push({ name, type: Type.AAAA, rrs: aaaa });
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
function clusterIPSrv(base: string, ttl: number, svc: Service, addr: AddrRR): RecordSet[] {
  const out: RecordSet[] = [];
  if (svc.ports.length === 0) return out;
  const extra = svc.clusterIPs.map((ip) => addr(base, ip));
  const perIP = svc.clusterIPs.length;
  const named = new Map<string, typeof svc.ports>();
  for (const p of svc.ports) {
    if (p.name === '') continue;
    const n = `_${p.name.toLowerCase()}.${protoLabel(p.protocol)}.${base}`;
    named.set(n, [...(named.get(n) ?? []), p]);
  }
  const make = (name: string, ports: typeof svc.ports): RecordSet => {
    const w = srvWeight(ports.length * perIP);
    const seen = new Set<number>();
    const rrs: RR[] = [];
    for (const p of ports) {
      if (seen.has(p.port)) continue;
      seen.add(p.port);
      rrs.push({ name, type: Type.SRV, ttl, srv: { priority: 0, weight: w, port: p.port, target: base } });
    }
    return { name, type: Type.SRV, rrs, extra };
  };
  for (const [n, ports] of named) out.push(make(n, ports));
  out.push(make(base, svc.ports));
  return out;
}

/** §2.4.2: one SRV per distinct (endpoint name, port), targets' addresses as additional. */
function headlessSrv(base: string, ttl: number, eps: readonly ServedEndpoint[], addr: AddrRR): RecordSet[] {
  type Cand = { ep: ServedEndpoint; port: number };
  const named = new Map<string, Cand[]>();
  const all: Cand[] = [];
  for (const e of eps) {
    for (const p of e.ports) {
      if (p.port < 1) continue;
      all.push({ ep: e, port: p.port });
      if (p.name === '') continue;
      const n = `_${p.name.toLowerCase()}.${protoLabel(p.protocol)}.${base}`;
      let l = named.get(n);
      if (l === undefined) named.set(n, (l = []));
      l.push({ ep: e, port: p.port });
    }
  }
  const make = (name: string, cands: Cand[]): RecordSet => {
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
        extra.push(addr(target, c.ep.ip));
      }
    }
    return { name, type: Type.SRV, rrs, extra };
  };
  const out: RecordSet[] = [];
  for (const [n, cands] of named) out.push(make(n, cands));
  if (all.length > 0) out.push(make(base, all));
  return out;
}
