/**
 * Which endpoints a service port sends traffic to: kube-proxy's CategorizeEndpoints
 * (pkg/proxy/topology.go) with KEP-1669 terminating-endpoint fallback. Topology hints
 * are not carried by our slim model, so no topology filtering happens (README).
 */
import type { ProxyEndpoint, ProxyPort } from './types.js';

export interface Categorized {
  /** Endpoints for Cluster policy: ready ones, else serving-terminating ones. */
  readonly cluster: readonly ProxyEndpoint[];
  /** Endpoints for Local policy: local ready ones, else local serving-terminating ones. */
  readonly local: readonly ProxyEndpoint[];
  /** Union of the lists the port uses, in sorted order: one KUBE-SEP / endpoint chain each. */
  readonly allReachable: readonly ProxyEndpoint[];
  /** Any usable endpoint at all (drives REJECT "has no endpoints"). */
  readonly hasAny: boolean;
}

/** ExternallyAccessible (pkg/proxy/serviceport.go): NodePort or external IPs. */
export function externallyAccessible(p: ProxyPort): boolean {
  return p.nodePort !== 0 || p.externalIPs.length > 0;
}

/** UsesClusterEndpoints: internal Cluster policy, or reachable from outside. */
export function usesClusterEndpoints(p: ProxyPort): boolean {
  return !p.internalLocal || externallyAccessible(p);
}

/** UsesLocalEndpoints: internal Local policy, or external Local policy when reachable from outside. */
export function usesLocalEndpoints(p: ProxyPort): boolean {
  return p.internalLocal || (p.externalLocal && externallyAccessible(p));
}

function pick(eps: readonly ProxyEndpoint[], onlyLocal: boolean): ProxyEndpoint[] {
  const ready = eps.filter((e) => e.ready && (!onlyLocal || e.local));
  if (ready.length > 0) return ready;
  return eps.filter((e) => e.serving && e.terminating && (!onlyLocal || e.local));
}

export function categorize(p: ProxyPort): Categorized {
  const useCluster = usesClusterEndpoints(p);
  const useLocal = usesLocalEndpoints(p);
  const cluster = useCluster ? pick(p.endpoints, false) : [];
  const local = useLocal ? pick(p.endpoints, true) : [];
  let hasAny: boolean;
  if (!useLocal) hasAny = cluster.length > 0;
  else hasAny = p.endpoints.some((e) => e.ready || (e.serving && e.terminating));
  let allReachable: readonly ProxyEndpoint[];
  if (!useLocal) allReachable = cluster;
  else if (!useCluster) allReachable = local;
  else {
    const keys = new Set([...cluster, ...local].map((e) => e.key));
    allReachable = p.endpoints.filter((e) => keys.has(e.key));
  }
  return { cluster, local, allReachable, hasAny };
}
