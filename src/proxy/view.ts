/**
 * ProxyView: the store's Services and endpoints as the proxy sees them (types.ts),
 * recomputed per changed service when the store says which ones changed, as the zone
 * side does. kube-proxy's rules for what it ignores and how it merges slices
 * (pkg/proxy/endpointslicecache.go, serviceport.go) are applied here once, so every
 * mode reads the same answer.
 */
import type { EndpointSlice, Service } from '../cluster/model.js';
import { eachAddress } from '../cluster/packed.js';
import type { ClusterStore } from '../cluster/store.js';
import { ipFamily, joinHostPort } from '../net/ip.js';
import { portKey, type Family, type ProxyEndpoint, type ProxyPort } from './types.js';

/** Services with this label belong to another proxy (kube-proxy's informer selector). */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
/** Slices of headless services carry this label; kube-proxy never watches them. */
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';

const READY = 1;
const SERVING = 2;
const TERMINATING = 4;

function familyOf(ip: string): Family {
  return ipFamily(ip) === 'IPv6' ? 6 : 4;
}

/** Whether kube-proxy would program this Service at all. */
export function proxied(svc: Service): boolean {
  if (svc.type === 'ExternalName' || svc.headless || svc.clusterIPs.length === 0) return false;
  return svc.labels[SERVICE_PROXY_NAME_LABEL] === undefined;
}

/** The ProxyPorts of one Service (both families), from its slices. */
export function servicePorts(svc: Service, slices: readonly EndpointSlice[], nodeName: string): ProxyPort[] {
  if (!proxied(svc)) return [];
  const out: ProxyPort[] = [];
  const service = `${svc.namespace}/${svc.name}`;
  for (const clusterIP of svc.clusterIPs) {
    const family = familyOf(clusterIP);
    const externalIPs = (svc.externalIPs ?? []).filter((ip) => familyOf(ip) === family);
    for (const sp of svc.ports) {
      // Endpoints of this port: each slice names its port by the service port's name
      // (the endpoints controller resolved a named targetPort per pod, so the number
      // can differ from slice to slice).
      const byKey = new Map<string, ProxyEndpoint>();
      for (const slice of slices) {
        if (slice.labels[HEADLESS_LABEL] !== undefined) continue;
        if (!slice.legacy && slice.addressType !== (family === 4 ? 'IPv4' : 'IPv6')) continue;
        const ep = slice.ports.find((p) => p.name === sp.name && p.protocol === sp.protocol);
        if (ep === undefined) continue;
        const port = ep.port;
        eachAddress(slice.endpoints, (ip, bits, _host, _pod, node) => {
          if (familyOf(ip) !== family) return;
          const key = joinHostPort(ip, port);
          const terminating = (bits & TERMINATING) !== 0;
          const prev = byKey.get(key);
          // Duplicates across slices: keep the first, unless a later one is not terminating
          // and the kept one is (endpointslicecache.go addEndpoints).
          if (prev !== undefined && !(prev.terminating && !terminating)) return;
          byKey.set(key, {
            ip,
            port,
            key,
            ready: (bits & READY) !== 0,
            serving: (bits & SERVING) !== 0,
            terminating,
            local: node !== undefined && node === nodeName,
          });
        });
      }
      const endpoints = [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      out.push({
        service,
        namespace: svc.namespace,
        name: svc.name,
        portName: sp.name,
        spn: sp.name === '' ? service : `${service}:${sp.name}`,
        protocol: sp.protocol,
        family,
        clusterIP,
        port: sp.port,
        nodePort: sp.nodePort ?? 0,
        externalIPs,
        affinitySeconds: svc.affinitySeconds ?? 0,
        internalLocal: svc.internalTrafficPolicyLocal === true,
        externalLocal: svc.externalTrafficPolicyLocal === true,
        endpoints,
      });
    }
  }
  return out;
}

/** The view of one store, kept current per changed service. */
export class ProxyView {
  readonly #byService = new Map<string, readonly ProxyPort[]>();
  readonly #store: ClusterStore;
  readonly #nodeName: string;

  constructor(store: ClusterStore, nodeName: string) {
    this.#store = store;
    this.#nodeName = nodeName;
    for (const key of store.services.keys()) this.#compute(key);
  }

  /** Recompute these services; returns the ones whose ports actually changed. */
  update(services: Iterable<string>): Set<string> {
    const changed = new Set<string>();
    for (const key of services) {
      const before = this.#byService.get(key);
      const after = this.#compute(key);
      if (!samePorts(before, after)) changed.add(key);
    }
    return changed;
  }

  #compute(key: string): readonly ProxyPort[] | undefined {
    const svc = this.#store.services.get(key);
    const ports = svc === undefined ? [] : servicePorts(svc, this.#store.endpointsOf(key), this.#nodeName);
    if (ports.length === 0) {
      this.#byService.delete(key);
      return undefined;
    }
    this.#byService.set(key, ports);
    return ports;
  }

  portsOf(service: string): readonly ProxyPort[] {
    return this.#byService.get(service) ?? [];
  }

  /** Every port of one family (or both). */
  ports(family?: Family): ProxyPort[] {
    const out: ProxyPort[] = [];
    for (const ports of this.#byService.values()) for (const p of ports) if (family === undefined || p.family === family) out.push(p);
    return out;
  }

  get size(): number {
    return this.#byService.size;
  }
}

function samePorts(a: readonly ProxyPort[] | undefined, b: readonly ProxyPort[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Every port of these views (one family or both); a port two zones both define is taken from the first. */
export function mergedPorts(views: readonly ProxyView[], family?: Family): ProxyPort[] {
  if (views.length === 1) return views[0]!.ports(family);
  const seen = new Set<string>();
  const out: ProxyPort[] = [];
  for (const v of views) {
    for (const p of v.ports(family)) {
      const k = portKey(p);
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(p);
    }
  }
  return out;
}
