/**
 * The proxy's view of the cluster: one `ProxyPort` per (service port, IP family), as
 * kube-proxy's `ServicePortName` plus the fields its proxiers read
 * (pkg/proxy/serviceport.go, endpoint.go). Built from the ClusterStore by `view.ts`;
 * read by every mode (userspace data plane, iptables and nftables renderers). Plain
 * data, so renderers and golden tests can make views by hand.
 */
import type { Protocol } from '../cluster/model.js';

export type { Protocol };
export type Family = 4 | 6;

export interface ProxyEndpoint {
  /** Canonical address text (IPv6 per RFC 5952). */
  readonly ip: string;
  readonly port: number;
  /** `ip:port`, IPv6 bracketed (Go's JoinHostPort): the endpoint's identity and sort key. */
  readonly key: string;
  /** discovery/v1 conditions (nil ready = true; nil serving = ready; nil terminating = false). */
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
  /** The endpoint's nodeName is this node's (`proxy.nodeName`). */
  readonly local: boolean;
}

export interface ProxyPort {
  /** `namespace/name` of the Service (the store's service key). */
  readonly service: string;
  readonly namespace: string;
  readonly name: string;
  /** Service port name; '' when unnamed. */
  readonly portName: string;
  /** kube-proxy's ServicePortName.String(): `ns/name` plus `:portName` when named. */
  readonly spn: string;
  readonly protocol: Protocol;
  readonly family: Family;
  /** The ClusterIP of this family (canonical text). */
  readonly clusterIP: string;
  readonly port: number;
  /** 0 when the port has none. */
  readonly nodePort: number;
  /** `spec.externalIPs` of this family. */
  readonly externalIPs: readonly string[];
  /** `sessionAffinity: ClientIP` timeout in seconds (default 10800); 0 = no affinity. */
  readonly affinitySeconds: number;
  /** `internalTrafficPolicy: Local`. */
  readonly internalLocal: boolean;
  /** `externalTrafficPolicy: Local` (only matters for NodePorts / external IPs). */
  readonly externalLocal: boolean;
  /**
   * Endpoints for this port and family, with the port resolved from each slice by the
   * service port's name and protocol; deduplicated by `key` (first wins, replaced by a
   * later non-terminating one) and sorted by `key` as a string (kube-proxy's rule order).
   */
  readonly endpoints: readonly ProxyEndpoint[];
}

/**
 * Identity of a ProxyPort within a view: family, protocol and SPN. Two ports of one
 * view never share it.
 */
export function portKey(p: Pick<ProxyPort, 'family' | 'protocol' | 'spn'>): string {
  return `${p.family}|${p.protocol}|${p.spn}`;
}

/** Options the rules renderers share (kube-proxy's KubeProxyConfiguration fields). */
export interface RulesOptions {
  readonly family: Family;
  /**
   * Pod CIDRs of this family (`proxy.clusterCIDR`): traffic to a ClusterIP from outside
   * them is masqueraded (kube-proxy's local detector). Empty: no such rule.
   */
  readonly clusterCIDRs: readonly string[];
  /** Masquerade every ClusterIP connection (`proxy.masqueradeAll`). */
  readonly masqueradeAll: boolean;
  /**
   * CIDRs of this family whose local addresses accept NodePorts
   * (`proxy.nodePortAddresses`); empty = every local address.
   */
  readonly nodePortAddresses: readonly string[];
  /** Service CIDRs of this family (nftables drops unallocated ClusterIPs in them). */
  readonly serviceCIDRs: readonly string[];
}

/** The `proxy:` configuration keys (kube-proxy's KubeProxyConfiguration fields of the same names). */
export interface ProxyConfig {
  /** Resync and retry interval, ms (kube-proxy syncPeriod, 30 s). */
  readonly syncPeriod: number;
  /** Least time between two syncs, ms (kube-proxy minSyncPeriod, 1 s). */
  readonly minSyncPeriod: number;
  /** Userspace UDP flow idle timeout, ms (kube-proxy udpIdleTimeout, 250 ms). */
  readonly udpIdleTimeout: number;
  /** CIDRs whose local addresses accept NodePorts; empty: every local address. */
  readonly nodePortAddresses: readonly string[];
  /** Pod CIDRs (one per family): ClusterIP traffic from outside them is masqueraded. */
  readonly clusterCIDR: readonly string[];
  /** Masquerade all ClusterIP traffic (kube-proxy masqueradeAll). */
  readonly masqueradeAll: boolean;
  /** Userspace mode: most connections open at once per service port; more are refused. */
  readonly maxConnections: number;
  /** This node's name (internalTrafficPolicy: Local); '' = --node-name, $NODE_NAME, hostname. */
  readonly nodeName: string;
}

/** What the proxy reads of the configuration: its own keys and the service CIDRs. */
export interface ProxySettings {
  readonly proxy: ProxyConfig;
  /** Service CIDRs (primary first). */
  readonly serviceCIDRs: readonly string[];
}
