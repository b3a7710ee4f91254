/**
 * nftables mode, rendering half: the `nft -f` transaction kube-proxy's nftables proxier
 * builds for a view (pkg/proxy/nftables/proxier.go `setupNFTables`, `syncProxyRules`,
 * `writeServiceToEndpointRules`), with the same chain, set and map names, the same rules
 * and the same element bookkeeping (`nftElementStorage`), written as knftables writes a
 * transaction (one command a line). Pure: no kernel, no clock. `NftablesBackend`
 * (nftables-backend.ts) applies the text; `clusterdns rules --mode nftables` prints a
 * full render per family.
 *
 * Differences from kube-proxy, on purpose:
 * - The table is `clusterdns` (family `ip` and `ip6`), not `kube-proxy`, so both can run
 *   on one node without touching each other's rules.
 * - No `firewall-check` chain, `firewall-ips` map, `firewall-<base>` chains nor the
 *   `filter-prerouting` base chain (whose only rule jumps to `firewall-check`): our view
 *   carries no LoadBalancer ingress IPs, so there is nothing for
 *   `loadBalancerSourceRanges` to guard and an empty check would only cost a lookup per
 *   new connection.
 * - `nodeport-ips` holds the `nodePortAddresses` CIDRs (an interval set) and the rule
 *   also asks `fib daddr type local`, where kube-proxy enumerates the node's addresses in
 *   those CIDRs (`GetNodeIPs`): same meaning, no interface listing in a pure renderer,
 *   and address changes apply without a resync.
 * - Stale chains are deleted in the sync's own transaction, after the map elements and
 *   rules referencing them are gone (kernels ≥ 6.2 release the references at once),
 *   unless `deferStaleChains` asks for kube-proxy's way (flush now, delete ≥ 1 s later,
 *   `renderStaleChainDeletion`), which kernels < 6.2 need.
 * - No table listing on every sync: the previous sync's state says what exists. The
 *   backend lists chains and sets only when it does not know (first sync, after a
 *   failure), see `stateFromListing`.
 * - Topology hints are not modelled (categorize.ts), so no topology filtering.
 *
 * Cost, measured with nft 1.0.6 on kernel 6.18 (a busy 2-CPU VM): the kernel finds the
 * anonymous set of each `numgen … vmap { … }` rule by walking the whole pending
 * transaction, so a first sync grows with the square of the Services: 4,000 Services ×
 * 10 endpoints take ~18 s in one transaction (~3.5 s with those rules replaced by a
 * plain goto, ~4.5 s with named per-service maps), 10,000 × 10 ~2 min. kube-proxy has the
 * same shape and cost; kept for parity. A partial sync's text is O(changes), but nft
 * still reads every chain of the table into its cache and the kernel revalidates the
 * table on commit: ~1.5 s at 10,000 × 10 on that VM.
 */
import { categorize, externallyAccessible, usesClusterEndpoints, usesLocalEndpoints } from './categorize.js';
import { lowerProto, nftEndpointBase, nftServiceBase } from './names.js';
import type { Family, ProxyEndpoint, ProxyPort, RulesOptions } from './types.js';

/** Our table, in family `ip` and `ip6` (kube-proxy's is `kube-proxy`). */
export const NFT_TABLE = 'clusterdns';

/** kube-proxy's masqueradeBit 14 as `fmt.Sprintf("%#08x", 1<<14)` (NewProxier). */
export const MASQUERADE_MARK = '0x00004000';

/** proxier.go constants. */
export const SERVICES_CHAIN = 'services';
export const SERVICE_ENDPOINTS_CHECK_CHAIN = 'service-endpoints-check';
export const NODEPORT_ENDPOINTS_CHECK_CHAIN = 'nodeport-endpoints-check';
export const REJECT_CHAIN = 'reject-chain';
export const CLUSTER_IPS_CHECK_CHAIN = 'cluster-ips-check';
export const MARK_MASQ_CHAIN = 'mark-for-masquerade';
export const MASQUERADING_CHAIN = 'masquerading';

/** The element containers a sync diffs (kube-proxy's `nftElementStorage` instances). */
export type NftContainer = 'cluster-ips' | 'service-ips' | 'service-nodeports' | 'no-endpoint-services' | 'no-endpoint-nodeports';

const CONTAINERS: readonly NftContainer[] = ['cluster-ips', 'service-ips', 'service-nodeports', 'no-endpoint-services', 'no-endpoint-nodeports'];

/** `nftablesBaseChains`, minus filter-prerouting (it only served firewall-check). */
export const BASE_CHAINS: readonly { readonly name: string; readonly type: 'filter' | 'nat'; readonly hook: string; readonly priority: number }[] = [
  // Filter chains run before DNAT (dstnat-10 = -110) so they see the service address;
  // filter-output-post-dnat (dstnat+10) sees locally generated packets after DNAT, so
  // cluster-ips-check only catches what `services` did not translate. Written as
  // numbers: nft only accepts the `dstnat` keyword on the prerouting/output hooks.
  { name: 'filter-input', type: 'filter', hook: 'input', priority: -110 },
  { name: 'filter-forward', type: 'filter', hook: 'forward', priority: -110 },
  { name: 'filter-output', type: 'filter', hook: 'output', priority: -110 },
  { name: 'filter-output-post-dnat', type: 'filter', hook: 'output', priority: -90 },
  { name: 'nat-prerouting', type: 'nat', hook: 'prerouting', priority: -100 },
  { name: 'nat-output', type: 'nat', hook: 'output', priority: -100 },
  { name: 'nat-postrouting', type: 'nat', hook: 'postrouting', priority: 100 },
];

/** `nftablesJumpChains` (same order), minus the two firewall-check jumps. */
const JUMP_CHAINS: readonly { readonly to: string; readonly from: string; readonly extra: string }[] = [
  // service-endpoints-check is not jumped to from prerouting: `reject` is only valid in
  // the input, forward and output hooks (before kernel 5.9).
  { to: NODEPORT_ENDPOINTS_CHECK_CHAIN, from: 'filter-input', extra: 'ct state new ' },
  { to: SERVICE_ENDPOINTS_CHECK_CHAIN, from: 'filter-input', extra: 'ct state new ' },
  { to: SERVICE_ENDPOINTS_CHECK_CHAIN, from: 'filter-forward', extra: 'ct state new ' },
  { to: SERVICE_ENDPOINTS_CHECK_CHAIN, from: 'filter-output', extra: 'ct state new ' },
  { to: SERVICES_CHAIN, from: 'nat-output', extra: '' },
  { to: SERVICES_CHAIN, from: 'nat-prerouting', extra: '' },
  { to: MASQUERADING_CHAIN, from: 'nat-postrouting', extra: '' },
  { to: CLUSTER_IPS_CHECK_CHAIN, from: 'filter-forward', extra: 'ct state new ' },
  { to: CLUSTER_IPS_CHECK_CHAIN, from: 'filter-output-post-dnat', extra: 'ct state new ' },
];

/** kube-proxy's `isServiceChainName`: per-service chains, and only those, contain '/'. */
export function isServiceChainName(chain: string): boolean {
  return chain.includes('/');
}

/** kube-proxy's `isAffinitySetName`. */
export function isAffinitySetName(set: string): boolean {
  return set.startsWith('affinity-');
}

/** One map or set element; `value` is '' for sets. */
export interface NftElement {
  readonly container: NftContainer;
  /** As nft writes it: `172.30.0.41 . tcp . 80`. */
  readonly key: string;
  /** Verdict (`goto service-…`, `goto reject-chain`, `drop`); '' in a set. */
  readonly value: string;
  /** Element comment (kube-proxy's SPN on no-endpoint elements); '' for none. */
  readonly comment: string;
}

/** What one Service (all its ports) owns in the table. */
export interface NftServiceState {
  /** service-, local-, external- and endpoint- chains. */
  readonly chains: readonly string[];
  /** Affinity sets and their timeout in seconds. */
  readonly sets: ReadonlyMap<string, number>;
  /** The elements the Service asks for (deduplicated by container and key). */
  readonly elements: readonly NftElement[];
}

/** A Service's claim on an element; the first claim of a key is the one in the table. */
interface Claim {
  readonly service: string;
  readonly element: NftElement;
}

/** The table as the last successful sync left it (what a partial sync diffs against). */
export interface NftState {
  readonly family: Family;
  /** The options rendered with; a partial sync under other options renders full. */
  readonly optionsKey: string;
  /** Per Service key (`ns/name`). */
  readonly services: ReadonlyMap<string, NftServiceState>;
  /** `container key` → claims (kube-proxy keeps one writer per key; so do we, the first). */
  readonly claims: ReadonlyMap<string, readonly Claim[]>;
  /**
   * Service chains in the table that no Service owns: flushed, unreferenced and not yet
   * deleted (`deferStaleChains`), or found by a listing (`stateFromListing`).
   */
  readonly staleChains: ReadonlySet<string>;
  /** Affinity sets found by a listing that no Service owns yet, with their timeout. */
  readonly staleSets: ReadonlyMap<string, number>;
}

export interface NftSync {
  /** Render everything (table, fixed chains, all containers flushed and refilled). */
  readonly full: boolean;
  /** Service keys whose Service or endpoints changed since `previous` (partial sync). */
  readonly changed: ReadonlySet<string>;
  /** State of the last successful sync; without it (or with other options) the render is full. */
  readonly previous?: NftState;
  /**
   * Flush stale service chains and leave them in `state.staleChains` for a later
   * `renderStaleChainDeletion` (kube-proxy's `staleChains`, for kernels < 6.2), instead
   * of deleting them in this transaction.
   */
  readonly deferStaleChains?: boolean;
  /**
   * Full sync only: `add` + `delete` every base chain before declaring it, so a changed
   * type, hook or priority applies (kube-proxy does this once per process, `flushed`).
   */
  readonly resetBaseChains?: boolean;
}

export interface NftRender {
  /** `nft -f` input: one transaction. */
  readonly text: string;
  /** The table after `text` applied (pass as `previous` next time). */
  readonly state: NftState;
  /** `add rule`, `add element` and `delete element` commands in `text`. */
  readonly rules: number;
  /** Whether this render is a full one (asked, or no usable `previous`). */
  readonly full: boolean;
}

/** Family-dependent words (setupNFTables's `ipX`, `ipvX_addr`, `noLocalhost`). */
interface Fam {
  readonly ipX: 'ip' | 'ip6';
  readonly addrType: 'ipv4_addr' | 'ipv6_addr';
  readonly noLocalhost: string;
  readonly prefix: string;
}

function fam(family: Family): Fam {
  return family === 4
    ? { ipX: 'ip', addrType: 'ipv4_addr', noLocalhost: 'ip daddr != 127.0.0.0/8', prefix: `ip ${NFT_TABLE}` }
    : { ipX: 'ip6', addrType: 'ipv6_addr', noLocalhost: 'ip6 daddr != ::1', prefix: `ip6 ${NFT_TABLE}` };
}

/** What the options change in the rendered rules; a change forces a full render. */
export function optionsKey(opts: RulesOptions): string {
  return JSON.stringify([opts.family, opts.clusterCIDRs, opts.masqueradeAll, opts.nodePortAddresses, opts.serviceCIDRs]);
}

/** `nodePortAddresses` match every local address (empty, or a /0 in it: NewNodePortAddresses). */
function nodePortsMatchAll(opts: RulesOptions): boolean {
  return opts.nodePortAddresses.length === 0 || opts.nodePortAddresses.some((c) => /\/0$/.test(c.trim()));
}

/** An nft anonymous set or single value: `10.0.0.0/8`, `{ a, b }`. */
function oneOrSet(values: readonly string[]): string {
  return values.length === 1 ? values[0]! : `{ ${values.join(', ')} }`;
}

const q = (s: string): string => `"${s.replace(/["\\]/g, '')}"`;

/** `{ key comment "…" : verdict }` to add; `{ key }` to delete (the key is the identity). */
function elementText(e: NftElement, add: boolean): string {
  if (!add) return `{ ${e.key} }`;
  const comment = e.comment === '' ? '' : ` comment ${q(e.comment)}`;
  const value = e.value !== '' ? ` : ${e.value}` : '';
  return `{ ${e.key}${comment}${value} }`;
}

/** Go's JoinHostPort for the DNAT target: IPv6 bracketed. */
function dnatTarget(ep: ProxyEndpoint): string {
  return ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
}

/** The rules for one service port, as `syncProxyRules` builds them in its per-port loop. */
interface PortRender {
  readonly chains: string[];
  readonly sets: Map<string, number>;
  readonly elements: NftElement[];
  readonly rules: string[];
}

function renderPort(p: ProxyPort, opts: RulesOptions, f: Fam): PortRender {
  const proto = lowerProto(p.protocol);
  const base = nftServiceBase(p.namespace, p.name, p.protocol, p.portName);
  const epBase = (ep: ProxyEndpoint): string => nftEndpointBase(p.namespace, p.name, p.protocol, p.portName, ep.ip, ep.port);
  const clusterPolicyChain = `service-${base}`;
  const localPolicyChain = `local-${base}`;
  const externalTrafficChain = `external-${base}`;
  const affinity = p.affinitySeconds > 0;
  const { cluster, local, allReachable, hasAny } = categorize(p);
  const accessible = externallyAccessible(p);
  // BaseServicePortInfo's externalPolicyLocal is only set for externally accessible ports.
  const externalLocal = p.externalLocal && accessible;

  const chains: string[] = [];
  const sets = new Map<string, number>();
  const elements: NftElement[] = [];
  const rules: string[] = [];
  const rule = (chain: string, text: string): void => {
    rules.push(`add rule ${f.prefix} ${chain} ${text}`);
  };

  for (const ep of allReachable) {
    chains.push(`endpoint-${epBase(ep)}`);
    if (affinity) sets.set(`affinity-${epBase(ep)}`, p.affinitySeconds);
  }
  const usesClusterPolicyChain = cluster.length > 0 && usesClusterEndpoints(p);
  if (usesClusterPolicyChain) chains.push(clusterPolicyChain);
  const usesLocalPolicyChain = local.length > 0 && usesLocalEndpoints(p);
  if (usesLocalPolicyChain) chains.push(localPolicyChain);

  const internalTrafficChain = p.internalLocal ? localPolicyChain : clusterPolicyChain;
  const hasInternalEndpoints = hasAny && !(p.internalLocal && local.length === 0);
  const externalPolicyChain = externalLocal ? localPolicyChain : clusterPolicyChain;
  const hasExternalEndpoints = hasAny && !(externalLocal && local.length === 0);
  // Based on hasAny, not hasExternalEndpoints: eTP=Local still needs the short-circuit
  // rules for pod and host traffic when this node has no local endpoint.
  const usesExternalTrafficChain = hasAny && accessible;
  if (usesExternalTrafficChain) chains.push(externalTrafficChain);

  // No endpoints at all: reject (ICMP port unreachable, so clients fail at once). A
  // Local policy without local endpoints: drop, as kube-proxy does.
  const internalVerdict = !hasAny ? `goto ${REJECT_CHAIN}` : 'drop';
  const externalVerdict = internalVerdict;
  const portKey = `${proto} . ${p.port}`;

  elements.push({ container: 'cluster-ips', key: p.clusterIP, value: '', comment: '' });
  if (hasInternalEndpoints) {
    elements.push({ container: 'service-ips', key: `${p.clusterIP} . ${portKey}`, value: `goto ${internalTrafficChain}`, comment: '' });
  } else {
    elements.push({ container: 'no-endpoint-services', key: `${p.clusterIP} . ${portKey}`, value: internalVerdict, comment: p.spn });
  }
  for (const ip of p.externalIPs) {
    if (hasAny) elements.push({ container: 'service-ips', key: `${ip} . ${portKey}`, value: `goto ${externalTrafficChain}`, comment: '' });
    if (!hasExternalEndpoints) elements.push({ container: 'no-endpoint-services', key: `${ip} . ${portKey}`, value: externalVerdict, comment: p.spn });
  }
  if (p.nodePort !== 0) {
    // NodePorts are not subject to loadBalancerSourceRanges (kube-proxy neither).
    if (hasAny) elements.push({ container: 'service-nodeports', key: `${proto} . ${p.nodePort}`, value: `goto ${externalTrafficChain}`, comment: '' });
    if (!hasExternalEndpoints) elements.push({ container: 'no-endpoint-nodeports', key: `${proto} . ${p.nodePort}`, value: externalVerdict, comment: p.spn });
  }

  // Internal traffic: masquerade everything, or what comes from outside the pod CIDRs
  // (the local detector's IfNotLocalNFT): off-node clients routed to a ClusterIP through
  // this node, and this node itself.
  if (hasInternalEndpoints) {
    const match = `${f.ipX} daddr ${p.clusterIP} ${proto} dport ${p.port}`;
    if (opts.masqueradeAll) rule(internalTrafficChain, `${match} jump ${MARK_MASQ_CHAIN}`);
    else if (opts.clusterCIDRs.length > 0) rule(internalTrafficChain, `${match} ${f.ipX} saddr != ${oneOrSet(opts.clusterCIDRs)} jump ${MARK_MASQ_CHAIN}`);
  }

  if (usesExternalTrafficChain) {
    if (!externalLocal) {
      // Cluster policy may cross nodes: always SNAT so replies come back through us.
      rule(externalTrafficChain, `jump ${MARK_MASQ_CHAIN}`);
    } else {
      // Local policy keeps the client address, except for pods (short-circuited to all
      // endpoints, as if they went out to a load balancer and back) and this host (whose
      // source would be the service address itself).
      if (opts.clusterCIDRs.length > 0) {
        rule(externalTrafficChain, `${f.ipX} saddr ${oneOrSet(opts.clusterCIDRs)} goto ${clusterPolicyChain} comment "short-circuit pod traffic"`);
      }
      rule(externalTrafficChain, `fib saddr type local jump ${MARK_MASQ_CHAIN} comment "masquerade local traffic"`);
      rule(externalTrafficChain, `fib saddr type local goto ${clusterPolicyChain} comment "short-circuit local traffic"`);
    }
    if (hasExternalEndpoints) rule(externalTrafficChain, `goto ${externalPolicyChain}`);
  }

  const toEndpoints = (chain: string, eps: readonly ProxyEndpoint[]): void => {
    // writeServiceToEndpointRules: affinity first (any endpoint that saw this client
    // within the timeout wins), then a uniform pick in sorted endpoint order.
    if (affinity) {
      for (const ep of eps) rule(chain, `${f.ipX} saddr @affinity-${epBase(ep)} goto endpoint-${epBase(ep)}`);
    }
    const vmap = eps.map((ep, i) => `${i} : goto endpoint-${epBase(ep)}`).join(', ');
    rule(chain, `numgen random mod ${eps.length} vmap { ${vmap} }`);
  };
  if (usesClusterPolicyChain) toEndpoints(clusterPolicyChain, cluster);
  if (usesLocalPolicyChain) toEndpoints(localPolicyChain, local);

  for (const ep of allReachable) {
    const chain = `endpoint-${epBase(ep)}`;
    // Hairpin: a pod reaching itself through the service must be SNATed, or it would
    // answer itself directly and the client would drop the reply.
    rule(chain, `${f.ipX} saddr ${ep.ip} jump ${MARK_MASQ_CHAIN}`);
    if (affinity) rule(chain, `update @affinity-${epBase(ep)} { ${f.ipX} saddr }`);
    rule(chain, `meta l4proto ${proto} dnat to ${dnatTarget(ep)}`);
  }
  return { chains, sets, elements, rules };
}

/** Table, base and fixed chains, sets and maps (`setupNFTables`), containers flushed. */
function renderSetup(opts: RulesOptions, f: Fam, resetBaseChains: boolean, out: string[]): number {
  let rules = 0;
  const P = f.prefix;
  const rule = (chain: string, text: string): void => {
    out.push(`add rule ${P} ${chain} ${text}`);
    rules++;
  };
  const ensured = new Set<string>();
  // ensureChain: add + flush once, so a chain is emptied before any rule of this
  // transaction lands in it.
  const ensureChain = (chain: string, comment?: string): void => {
    if (ensured.has(chain)) return;
    ensured.add(chain);
    out.push(`add chain ${P} ${chain}${comment === undefined ? '' : ` { comment ${q(comment)} ; }`}`, `flush chain ${P} ${chain}`);
  };

  out.push(`add table ${P} { comment "rules for clusterdns (kube-proxy nftables mode)" ; }`);
  if (resetBaseChains) {
    for (const bc of BASE_CHAINS) out.push(`add chain ${P} ${bc.name}`, `delete chain ${P} ${bc.name}`);
  }
  for (const bc of BASE_CHAINS) {
    out.push(`add chain ${P} ${bc.name} { type ${bc.type} hook ${bc.hook} priority ${bc.priority} ; }`, `flush chain ${P} ${bc.name}`);
  }
  for (const j of JUMP_CHAINS) {
    ensureChain(j.to);
    rule(j.from, `${j.extra}jump ${j.to}`);
  }
  for (const chain of [SERVICES_CHAIN, CLUSTER_IPS_CHECK_CHAIN, MASQUERADING_CHAIN, MARK_MASQ_CHAIN]) ensureChain(chain);

  rule(MARK_MASQ_CHAIN, `mark set mark or ${MASQUERADE_MARK}`);
  rule(MASQUERADING_CHAIN, `mark and ${MASQUERADE_MARK} == 0 return`);
  rule(MASQUERADING_CHAIN, `mark set mark xor ${MASQUERADE_MARK}`);
  rule(MASQUERADING_CHAIN, 'masquerade fully-random');

  out.push(`add set ${P} cluster-ips { type ${f.addrType} ; comment "Active ClusterIPs" ; }`);
  rule(CLUSTER_IPS_CHECK_CHAIN, `${f.ipX} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`);
  if (opts.serviceCIDRs.length > 0) {
    rule(CLUSTER_IPS_CHECK_CHAIN, `${f.ipX} daddr { ${opts.serviceCIDRs.join(', ')} } drop comment "Drop traffic to unallocated ClusterIPs"`);
  }

  // add + delete rather than delete alone: deleting an absent set fails the transaction.
  const matchAll = nodePortsMatchAll(opts);
  out.push(`add set ${P} nodeport-ips { type ${f.addrType} ; flags interval ; auto-merge ; comment "IPs that accept NodePort traffic" ; }`);
  if (matchAll) {
    out.push(`delete set ${P} nodeport-ips`);
  } else {
    out.push(`flush set ${P} nodeport-ips`);
    out.push(`add element ${P} nodeport-ips { ${opts.nodePortAddresses.map((c) => c.trim()).join(', ')} }`);
    rules++;
  }

  out.push(`add map ${P} no-endpoint-services { type ${f.addrType} . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }`);
  out.push(`add map ${P} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }`);
  // `reject` is not a verdict a vmap can hold, hence a chain to goto.
  ensureChain(REJECT_CHAIN, 'helper for @no-endpoint-services / @no-endpoint-nodeports');
  rule(REJECT_CHAIN, 'reject');
  rule(SERVICE_ENDPOINTS_CHECK_CHAIN, `${f.ipX} daddr . meta l4proto . th dport vmap @no-endpoint-services`);
  if (matchAll) rule(NODEPORT_ENDPOINTS_CHECK_CHAIN, `${f.noLocalhost} meta l4proto . th dport vmap @no-endpoint-nodeports`);
  else rule(NODEPORT_ENDPOINTS_CHECK_CHAIN, `${f.ipX} daddr @nodeport-ips fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports`);

  out.push(`add map ${P} service-ips { type ${f.addrType} . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }`);
  out.push(`add map ${P} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }`);
  rule(SERVICES_CHAIN, `${f.ipX} daddr . meta l4proto . th dport vmap @service-ips`);
  if (matchAll) rule(SERVICES_CHAIN, `fib daddr type local ${f.noLocalhost} meta l4proto . th dport vmap @service-nodeports`);
  else rule(SERVICES_CHAIN, `${f.ipX} daddr @nodeport-ips fib daddr type local meta l4proto . th dport vmap @service-nodeports`);

  // nftElementStorage.reset: every container emptied, refilled below.
  for (const c of CONTAINERS) out.push(`flush ${c === 'cluster-ips' ? 'set' : 'map'} ${P} ${c}`);
  return rules;
}

const elementId = (e: NftElement): string => `${e.container} ${e.key}`;
const sameElement = (a: NftElement | undefined, b: NftElement | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.value === b.value && a.comment === b.comment);

/** Ports grouped by Service key, each group in a stable order (spn, then protocol). */
function groupPorts(ports: readonly ProxyPort[], family: Family, only?: ReadonlySet<string>): Map<string, ProxyPort[]> {
  const groups = new Map<string, ProxyPort[]>();
  for (const p of ports) {
    if (p.family !== family) continue;
    if (only !== undefined && !only.has(p.service)) continue;
    let g = groups.get(p.service);
    if (g === undefined) groups.set(p.service, (g = []));
    g.push(p);
  }
  for (const g of groups.values()) g.sort((a, b) => (a.spn < b.spn ? -1 : a.spn > b.spn ? 1 : a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0));
  return groups;
}

/**
 * Render one sync. Full: the whole table, idempotent (applying it twice leaves the same
 * ruleset; affinity sets keep their entries). Partial (`previous` given, same options):
 * only the chains of `changed` Services are flushed and rewritten, and only the
 * elements that differ are deleted or added, so the text is O(changes).
 */
export function renderNftables(ports: readonly ProxyPort[], opts: RulesOptions, sync: NftSync): NftRender {
  const f = fam(opts.family);
  const P = f.prefix;
  const key = optionsKey(opts);
  const prev = sync.previous;
  const full = sync.full || prev === undefined || prev.optionsKey !== key || prev.family !== opts.family;

  const out: string[] = [];
  let rules = 0;
  const services = new Map<string, NftServiceState>(full ? [] : prev!.services);
  const claims = new Map<string, readonly Claim[]>(full ? [] : prev!.claims);
  /** Effective element per id before this sync touched it (partial syncs). */
  const before = new Map<string, NftElement | undefined>();
  /** Chains and sets that exist now (before this transaction) and may go stale. */
  const oldChains = new Set<string>();
  const oldSets = new Map<string, number>();
  const newChains = new Set<string>();
  const newSets = new Set<string>();

  if (full) {
    rules += renderSetup(opts, f, sync.resetBaseChains === true, out);
    if (prev !== undefined) {
      for (const s of prev.services.values()) {
        for (const c of s.chains) oldChains.add(c);
        for (const [n, t] of s.sets) oldSets.set(n, t);
      }
      for (const c of prev.staleChains) oldChains.add(c);
      for (const [n, t] of prev.staleSets) oldSets.set(n, t);
    }
  } else {
    for (const c of prev!.staleChains) oldChains.add(c);
    for (const [n, t] of prev!.staleSets) oldSets.set(n, t);
  }

  const groups = groupPorts(ports, opts.family, full ? undefined : sync.changed);
  const keys = full ? [...groups.keys()] : [...new Set([...sync.changed].filter((k) => groups.has(k) || prev!.services.has(k)))];
  keys.sort();

  for (const svc of keys) {
    const old = full ? undefined : prev!.services.get(svc);
    if (old !== undefined) {
      for (const c of old.chains) oldChains.add(c);
      for (const [n, t] of old.sets) oldSets.set(n, t);
    }
    const chains: string[] = [];
    const sets = new Map<string, number>();
    const elements = new Map<string, NftElement>();
    for (const p of groups.get(svc) ?? []) {
      const r = renderPort(p, opts, f);
      for (const c of r.chains) {
        chains.push(c);
        newChains.add(c);
        out.push(`add chain ${P} ${c}`, `flush chain ${P} ${c}`);
      }
      for (const [n, t] of r.sets) {
        sets.set(n, t);
        newSets.add(n);
        // A set's timeout cannot be changed on every kernel: recreate it (its rules
        // are gone, the chains were just flushed), losing the affinities, as a new
        // timeout should.
        const was = oldSets.get(n);
        if (was !== undefined && was !== t) out.push(`delete set ${P} ${n}`);
        // "dynamic" although no stateful objects are stored: without it some kernels
        // add it themselves and the next `add` looks like a flags change (kube-proxy).
        out.push(`add set ${P} ${n} { type ${f.addrType} ; flags dynamic,timeout ; timeout ${t}s ; }`);
      }
      out.push(...r.rules);
      rules += r.rules.length;
      for (const e of r.elements) {
        const id = elementId(e);
        if (!elements.has(id)) elements.set(id, e);
      }
    }
    if (chains.length > 0 || elements.size > 0) services.set(svc, { chains, sets, elements: [...elements.values()] });
    else services.delete(svc);

    // Claims: replace this Service's claim in place (so an unchanged winner stays the
    // winner), drop the ones it no longer makes, append new ones.
    const ids = new Set<string>([...(old?.elements ?? []).map(elementId), ...elements.keys()]);
    for (const id of ids) {
      const list = claims.get(id) ?? [];
      if (!before.has(id)) before.set(id, list[0]?.element);
      const e = elements.get(id);
      const i = list.findIndex((c) => c.service === svc);
      let next: Claim[];
      if (e === undefined) next = list.filter((_, j) => j !== i);
      else if (i >= 0) next = list.map((c, j) => (j === i ? { service: svc, element: e } : c));
      else next = [...list, { service: svc, element: e }];
      if (next.length === 0) claims.delete(id);
      else claims.set(id, next);
    }
  }

  // Elements: deletes first (a changed verdict is delete + add, as ensureElem does),
  // then adds, after every chain they may name exists.
  const adds: string[] = [];
  for (const [id, was] of before) {
    const now = claims.get(id)?.[0]?.element;
    if (sameElement(was, now)) continue;
    if (was !== undefined) {
      out.push(`delete element ${P} ${was.container} ${elementText(was, false)}`);
      rules++;
    }
    if (now !== undefined) adds.push(`add element ${P} ${now.container} ${elementText(now, true)}`);
  }
  out.push(...adds);
  rules += adds.length;

  // Stale chains and sets: nothing references them any more (their elements are gone
  // and every chain that jumped to them was flushed above), so flush, then delete.
  const staleChains = new Set<string>(full ? [] : prev!.staleChains);
  const flushNow: string[] = [];
  for (const c of oldChains) {
    if (newChains.has(c)) {
      staleChains.delete(c);
      continue;
    }
    if (!staleChains.has(c) || full) flushNow.push(c);
    staleChains.add(c);
  }
  for (const c of flushNow) out.push(`flush chain ${P} ${c}`);
  const staleSets = new Map<string, number>();
  for (const n of oldSets.keys()) {
    if (!newSets.has(n)) out.push(`delete set ${P} ${n}`);
  }
  if (sync.deferStaleChains !== true) {
    for (const c of staleChains) out.push(`delete chain ${P} ${c}`);
    staleChains.clear();
  }

  const state: NftState = { family: opts.family, optionsKey: key, services, claims, staleChains, staleSets };
  return { text: out.length === 0 ? '' : `${out.join('\n')}\n`, state, rules, full };
}

/** The elements of one container as the table holds them (the first claim of each key). */
export function stateElements(state: NftState, container: NftContainer): NftElement[] {
  const out: NftElement[] = [];
  for (const list of state.claims.values()) {
    const e = list[0]?.element;
    if (e !== undefined && e.container === container) out.push(e);
  }
  return out;
}

/**
 * The transaction deleting chains `renderNftables` left flushed in `staleChains`
 * (deferStaleChains): kube-proxy runs it ≥ 1 s after the chains went stale, in its own
 * transaction, so a failure does not block the sync.
 */
export function renderStaleChainDeletion(family: Family, chains: Iterable<string>): string {
  const P = fam(family).prefix;
  let text = '';
  for (const c of chains) text += `delete chain ${P} ${c}\n`;
  return text;
}

/** `state` without the given stale chains (after `renderStaleChainDeletion` applied). */
export function withoutStaleChains(state: NftState, deleted: Iterable<string>): NftState {
  const staleChains = new Set(state.staleChains);
  for (const c of deleted) staleChains.delete(c);
  return { ...state, staleChains };
}

/**
 * A state for a table this process knows nothing of (first sync, after a failed one):
 * the service chains and affinity sets a listing found, all to be reused or removed by
 * a full render. Other names (base and fixed chains, maps) are redeclared anyway.
 */
export function stateFromListing(family: Family, chains: Iterable<string>, sets: Iterable<{ readonly name: string; readonly timeout: number }>): NftState {
  const staleChains = new Set<string>();
  for (const c of chains) if (isServiceChainName(c)) staleChains.add(c);
  const staleSets = new Map<string, number>();
  for (const s of sets) if (isAffinitySetName(s.name)) staleSets.set(s.name, s.timeout);
  return { family, optionsKey: '', services: new Map(), claims: new Map(), staleChains, staleSets };
}
