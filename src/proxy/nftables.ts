/**
 * nftables mode, rendering half: the ruleset kube-proxy's nftables proxier builds for a
 * view (pkg/proxy/nftables/proxier.go `setupNFTables`, `syncProxyRules`,
 * `writeServiceToEndpointRules`), with the same table layout, chain, set and map names,
 * verdicts and element bookkeeping (`nftElementStorage`), as `nft -f` input. Pure: no
 * kernel, no clock. `NftablesBackend` (nftables-backend.ts) applies it;
 * `clusterdns rules --mode nftables` prints a full render per family.
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
 * - The endpoint pick. kube-proxy writes `numgen random mod N vmap { 0 : goto endpoint-…,
 *   … }` in every service chain. Each such vmap is an anonymous set, and the kernel pays
 *   for every set it adds in proportion to the sets already in the table (the name
 *   allocation parses every set's name, lookups walk the set list): 10,000 Services take
 *   minutes to load, whatever the transactions (named per-service maps only halve it).
 *   Up to `RULE_PICK_MAX` endpoints we write the pick as rules, as iptables mode does with
 *   `statistic`: rule i of n is `numgen random mod (n-i) == 0 goto endpoint-…`, the last
 *   a plain `goto`, so each endpoint gets exactly 1/n (no set at all). Above it, where a
 *   walk per new connection would cost more than a set lookup, kube-proxy's vmap.
 * - Chains are written whole, `add chain X { rule … }` (after `flush chain X` when X
 *   exists), not as one `add rule` command a line; elements are added by redeclaring
 *   their map with `elements = { … }`, not with `add element`, and removed by emptying
 *   and refilling their map (a shard's few hundred elements; `cluster-ips` one a
 *   Service), not with `delete element`. Same ruleset; but nft (1.0.x) reads every chain
 *   of every table into its cache before a transaction holding `add rule`, `add element`
 *   or any `delete` (the kernel's chain dump grows with the square of the chains: 1-3 s
 *   at 110,000), and only the table list before `add chain`, `add map` and `flush`.
 *   Chain and set deletions still pay it, so they are deferred (below).
 * - A large full sync is several transactions: the fixed part; the service chains in
 *   chunks of about `CHUNK_RULES` rules (the backend runs two at a time); then one
 *   transaction that swaps the contents of every map and set. Each leaves a consistent
 *   ruleset: a chunk only adds or rewrites whole Services' chains, nothing new is
 *   reachable before the last transaction points the maps at it, and a rewritten Service
 *   is never half old, half new. kube-proxy uses one transaction per sync.
 * - Large views are spread over several tables. The kernel validates a whole table on
 *   every commit that adds a jump, a goto or a NAT rule, walking everything reachable
 *   from each base chain (twice: nat-prerouting and nat-output both reach every service
 *   chain): ~250 ms at 10,000 Services × 10 endpoints on a small VM, for a one-endpoint
 *   change. Above `SHARD_ENDPOINTS` endpoints the service chains, affinity sets and the
 *   `service-ips` / `service-nodeports` maps go to `shardCount` tables `clusterdns-0`,
 *   `clusterdns-1`, … (by a hash of the Service), each with kube-proxy's nat-prerouting /
 *   nat-output → `services` part; everything else stays in `clusterdns`. A commit then
 *   validates one shard. The first nat chain that translates a connection ends the nat
 *   hook for it, so a packet is translated by the one shard holding its Service; a new
 *   connection that matches no Service costs one lookup per shard.
 * - Stale chains and affinity sets are flushed in the sync that makes them stale and
 *   deleted by a later transaction (`deferStaleChains`, which kube-proxy does for chains
 *   on kernels < 6.2), so a partial sync never pays nft's chain fetch for a deletion;
 *   the backend batches those deletions (nftables-backend.ts).
 * - No table listing on every sync: the previous sync's state says what exists. The
 *   backend lists chains and sets only when it does not know (first sync, after a
 *   failure), see `stateFromListing`.
 * - Topology hints are not modelled (categorize.ts), so no topology filtering.
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

/**
 * Endpoint picks over at most this many endpoints are rules (a walk of up to this many
 * rules for the first packet of a connection); larger ones kube-proxy's `numgen … vmap`.
 */
export const RULE_PICK_MAX = 64;

/** A full render with more rules and elements than this is split into transactions of about this size. */
export const CHUNK_RULES = 20_000;

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

/**
 * Above this many endpoints (all ports of the family), the per-Service part of the table
 * is spread over several tables (`shardCount`), so a commit validates a fraction of it.
 */
export const SHARD_ENDPOINTS = 8_000;

/** At most this many shard tables. */
export const MAX_SHARDS = 64;

/**
 * How many tables hold the per-Service chains for `endpoints` endpoints: 1 (everything
 * in `clusterdns`, kube-proxy's layout) up to `perShard`, then the power of two that
 * keeps each under it. A previous count within a factor of two is kept (moving Services
 * between tables takes a full sync).
 */
export function shardCount(endpoints: number, previous?: number, perShard: number = SHARD_ENDPOINTS): number {
  const want = endpoints <= perShard ? 1 : Math.min(MAX_SHARDS, 2 ** Math.ceil(Math.log2(endpoints / perShard)));
  if (previous !== undefined && previous >= 1 && previous * 2 >= want && previous <= want * 2) return previous;
  return want;
}

/** The table holding a Service's chains: `clusterdns`, or `clusterdns-<i>` when sharded. */
export function serviceTable(service: string, shards: number): string {
  if (shards <= 1) return NFT_TABLE;
  // FNV-1a: stable across processes and versions, so a restart finds each Service where it was.
  let h = 0x811c9dc5;
  for (let i = 0; i < service.length; i++) {
    h ^= service.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `${NFT_TABLE}-${h % shards}`;
}

/** Whether `table` is one of ours: `clusterdns` or a shard `clusterdns-<n>`. */
export function isOurTable(table: string): boolean {
  return table === NFT_TABLE || new RegExp(`^${NFT_TABLE}-\\d+$`).test(table);
}

/** `table chain` / `table set`: chain and set names qualified by their table (state keys). */
export function qualified(table: string, name: string): string {
  return `${table} ${name}`;
}

/** The inverse of `qualified`. */
export function splitQualified(q: string): { readonly table: string; readonly name: string } {
  const i = q.indexOf(' ');
  return { table: q.slice(0, i), name: q.slice(i + 1) };
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
  /** The table holding it: the Service's for service-ips / service-nodeports, else `clusterdns`. */
  readonly table: string;
}

/** What one Service (all its ports) owns in the table. */
export interface NftServiceState {
  /** The table holding its chains and affinity sets. */
  readonly table: string;
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

/** The tables as the last successful sync left them (what a partial sync diffs against). */
export interface NftState {
  readonly family: Family;
  /** The options rendered with; a partial sync under other options renders full. '' for a listing. */
  readonly optionsKey: string;
  /** Shard tables in use (1: none, everything in `clusterdns`). */
  readonly shards: number;
  /** Shard tables that exist (`clusterdns-<n>`; not `clusterdns`). */
  readonly tables: ReadonlySet<string>;
  /** Per Service key (`ns/name`). */
  readonly services: ReadonlyMap<string, NftServiceState>;
  /** `container key` → claims (kube-proxy keeps one writer per key; so do we, the first). */
  readonly claims: ReadonlyMap<string, readonly Claim[]>;
  /**
   * Service chains (`qualified`) that no Service owns: flushed, unreferenced and not yet
   * deleted (`deferStaleChains`), or found by a listing (`stateFromListing`).
   */
  readonly staleChains: ReadonlySet<string>;
  /**
   * Affinity sets (`qualified`) that no Service owns, with their timeout: flushed and not
   * yet deleted, or found by a listing (entries kept: a full render may reuse them).
   */
  readonly staleSets: ReadonlyMap<string, number>;
  /** Whether the `nodeport-ips` sets exist; undefined: not known. */
  readonly nodePortIPs?: boolean | undefined;
}

export interface NftSync {
  /** Render everything (tables, fixed chains, all containers flushed and refilled). */
  readonly full: boolean;
  /** Service keys whose Service or endpoints changed since `previous` (partial sync). */
  readonly changed: ReadonlySet<string>;
  /**
   * State of the last successful sync; without it (or with other options) the render is
   * full, and written for tables holding none of the service chains.
   */
  readonly previous?: NftState;
  /**
   * Flush stale service chains and affinity sets and leave them in `state.staleChains` /
   * `state.staleSets` for a later `renderStaleDeletion`, instead of deleting them in this
   * transaction (kube-proxy's `staleChains`).
   */
  readonly deferStaleChains?: boolean;
  /**
   * Full sync only: `add` + `delete` every base chain before declaring it, so a changed
   * type, hook or priority applies (kube-proxy does this once per process, `flushed`).
   */
  readonly resetBaseChains?: boolean;
  /**
   * Full sync only: split into transactions of about this many rules and elements when
   * larger (default `CHUNK_RULES`; Infinity: one transaction).
   */
  readonly chunkRules?: number;
  /** Endpoints per shard table (default `SHARD_ENDPOINTS`; Infinity: never shard). */
  readonly shardEndpoints?: number;
}

export interface NftRender {
  /** `nft -f` input: every transaction, in order (also valid as one transaction). */
  readonly text: string;
  /**
   * The transactions, to be applied in order, one `nft -f` each; all but the first and
   * the last may run concurrently. One, unless a large full render was split.
   */
  readonly transactions: readonly string[];
  /** The tables after `text` applied (pass as `previous` next time). */
  readonly state: NftState;
  /** Rules written (in chains) plus elements added and deleted. */
  readonly rules: number;
  /** Whether this render is a full one (asked, or no usable `previous`). */
  readonly full: boolean;
}

/** Family-dependent words (setupNFTables's `ipX`, `ipvX_addr`, `noLocalhost`). */
interface Fam {
  readonly ipX: 'ip' | 'ip6';
  readonly addrType: 'ipv4_addr' | 'ipv6_addr';
  readonly noLocalhost: string;
}

function fam(family: Family): Fam {
  return family === 4
    ? { ipX: 'ip', addrType: 'ipv4_addr', noLocalhost: 'ip daddr != 127.0.0.0/8' }
    : { ipX: 'ip6', addrType: 'ipv6_addr', noLocalhost: 'ip6 daddr != ::1' };
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

/** An element as it goes in `elements = { … }`: `key comment "…" : verdict`. */
function elementText(e: NftElement): string {
  const comment = e.comment === '' ? '' : ` comment ${q(e.comment)}`;
  return e.value === '' ? `${e.key}${comment}` : `${e.key}${comment} : ${e.value}`;
}

/** Go's JoinHostPort for the DNAT target: IPv6 bracketed. */
function dnatTarget(ep: ProxyEndpoint): string {
  return ep.ip.includes(':') ? `[${ep.ip}]:${ep.port}` : `${ep.ip}:${ep.port}`;
}

/** `add chain X { rules }`, one rule a line (`add chain X` alone when there are none). */
function chainBlock(P: string, name: string, rules: readonly string[]): string {
  return rules.length === 0 ? `add chain ${P} ${name}` : `add chain ${P} ${name} {\n\t${rules.join('\n\t')}\n}`;
}

/** A map or set declaration in table `P` (`ip clusterdns`), without its closing brace (`setupNFTables`). */
function containerDecl(c: NftContainer | 'nodeport-ips', f: Fam, P: string): string {
  switch (c) {
    case 'cluster-ips':
      return `set ${P} cluster-ips { type ${f.addrType} ; comment "Active ClusterIPs" ;`;
    case 'nodeport-ips':
      return `set ${P} nodeport-ips { type ${f.addrType} ; flags interval ; auto-merge ; comment "IPs that accept NodePort traffic" ;`;
    case 'no-endpoint-services':
      return `map ${P} no-endpoint-services { type ${f.addrType} . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ;`;
    case 'no-endpoint-nodeports':
      return `map ${P} no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ;`;
    case 'service-ips':
      return `map ${P} service-ips { type ${f.addrType} . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ;`;
    case 'service-nodeports':
      return `map ${P} service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ;`;
  }
}

/**
 * Elements added by redeclaring their container (nft then needs no chain cache, unlike
 * `add element`); the declaration matches setup's, so the kernel sees no change to it.
 */
function fillContainer(c: NftContainer | 'nodeport-ips', f: Fam, P: string, elements: readonly string[]): string {
  return `add ${containerDecl(c, f, P)} elements = {\n\t${elements.join(',\n\t')}\n} ; }`;
}

/** One chain of a service port: its name and rule bodies. */
interface ChainOut {
  readonly name: string;
  readonly rules: string[];
}

/** The chains, sets and elements of one service port (`syncProxyRules`' per-port loop). */
interface PortRender {
  /** In creation order: endpoint chains, then the chains that jump to them. */
  readonly chains: ChainOut[];
  readonly sets: Map<string, number>;
  readonly elements: DraftElement[];
}

/** An element before its Service's table is known. */
type DraftElement = Omit<NftElement, 'table'>;

function renderPort(p: ProxyPort, opts: RulesOptions, f: Fam): PortRender {
  const proto = lowerProto(p.protocol);
  const base = nftServiceBase(p.namespace, p.name, p.protocol, p.portName);
  const clusterPolicyChain = `service-${base}`;
  const localPolicyChain = `local-${base}`;
  const externalTrafficChain = `external-${base}`;
  const affinity = p.affinitySeconds > 0;
  const { cluster, local, allReachable, hasAny } = categorize(p);
  const accessible = externallyAccessible(p);
  // BaseServicePortInfo's externalPolicyLocal is only set for externally accessible ports.
  const externalLocal = p.externalLocal && accessible;
  // One hash per endpoint: its base names the endpoint chain and the affinity set.
  const bases = new Map<ProxyEndpoint, string>();
  for (const ep of allReachable) bases.set(ep, nftEndpointBase(p.namespace, p.name, p.protocol, p.portName, ep.ip, ep.port));
  const epBase = (ep: ProxyEndpoint): string => bases.get(ep)!;

  const chains: ChainOut[] = [];
  const sets = new Map<string, number>();
  const elements: DraftElement[] = [];

  // Endpoint chains first: the chains created after them jump to them.
  for (const ep of allReachable) {
    const rules: string[] = [];
    // Hairpin: a pod reaching itself through the service must be SNATed, or it would
    // answer itself directly and the client would drop the reply.
    rules.push(`${f.ipX} saddr ${ep.ip} jump ${MARK_MASQ_CHAIN}`);
    if (affinity) {
      sets.set(`affinity-${epBase(ep)}`, p.affinitySeconds);
      rules.push(`update @affinity-${epBase(ep)} { ${f.ipX} saddr }`);
    }
    rules.push(`meta l4proto ${proto} dnat to ${dnatTarget(ep)}`);
    chains.push({ name: `endpoint-${epBase(ep)}`, rules });
  }

  const usesClusterPolicyChain = cluster.length > 0 && usesClusterEndpoints(p);
  const usesLocalPolicyChain = local.length > 0 && usesLocalEndpoints(p);
  const internalTrafficChain = p.internalLocal ? localPolicyChain : clusterPolicyChain;
  const hasInternalEndpoints = hasAny && !(p.internalLocal && local.length === 0);
  const externalPolicyChain = externalLocal ? localPolicyChain : clusterPolicyChain;
  const hasExternalEndpoints = hasAny && !(externalLocal && local.length === 0);
  // Based on hasAny, not hasExternalEndpoints: eTP=Local still needs the short-circuit
  // rules for pod and host traffic when this node has no local endpoint.
  const usesExternalTrafficChain = hasAny && accessible;

  /**
   * writeServiceToEndpointRules: affinity first (any endpoint that saw this client within
   * the timeout wins), then a uniform pick in sorted endpoint order.
   */
  const toEndpoints = (rules: string[], eps: readonly ProxyEndpoint[]): void => {
    if (affinity) {
      for (const ep of eps) rules.push(`${f.ipX} saddr @affinity-${epBase(ep)} goto endpoint-${epBase(ep)}`);
    }
    const n = eps.length;
    if (n > RULE_PICK_MAX) {
      const vmap = eps.map((ep, i) => `${i} : goto endpoint-${epBase(ep)}`).join(', ');
      rules.push(`numgen random mod ${n} vmap { ${vmap} }`);
      return;
    }
    // Rule i of n matches with probability 1/(n-i), the last always: each endpoint 1/n.
    eps.forEach((ep, i) => {
      rules.push(i < n - 1 ? `numgen random mod ${n - i} == 0 goto endpoint-${epBase(ep)}` : `goto endpoint-${epBase(ep)}`);
    });
  };

  /**
   * Internal traffic: masquerade everything, or what comes from outside the pod CIDRs
   * (the local detector's IfNotLocalNFT): off-node clients routed to a ClusterIP through
   * this node, and this node itself. First rule of the internal traffic chain.
   */
  const masqueradeRule = (): string | undefined => {
    const match = `${f.ipX} daddr ${p.clusterIP} ${proto} dport ${p.port}`;
    if (opts.masqueradeAll) return `${match} jump ${MARK_MASQ_CHAIN}`;
    if (opts.clusterCIDRs.length > 0) return `${match} ${f.ipX} saddr != ${oneOrSet(opts.clusterCIDRs)} jump ${MARK_MASQ_CHAIN}`;
    return undefined;
  };

  if (usesClusterPolicyChain) {
    const rules: string[] = [];
    if (!p.internalLocal) {
      const m = masqueradeRule();
      if (m !== undefined) rules.push(m);
    }
    toEndpoints(rules, cluster);
    chains.push({ name: clusterPolicyChain, rules });
  }
  if (usesLocalPolicyChain) {
    const rules: string[] = [];
    if (p.internalLocal) {
      const m = masqueradeRule();
      if (m !== undefined) rules.push(m);
    }
    toEndpoints(rules, local);
    chains.push({ name: localPolicyChain, rules });
  }

  if (usesExternalTrafficChain) {
    const rules: string[] = [];
    if (!externalLocal) {
      // Cluster policy may cross nodes: always SNAT so replies come back through us.
      rules.push(`jump ${MARK_MASQ_CHAIN}`);
    } else {
      // Local policy keeps the client address, except for pods (short-circuited to all
      // endpoints, as if they went out to a load balancer and back) and this host (whose
      // source would be the service address itself).
      if (opts.clusterCIDRs.length > 0) {
        rules.push(`${f.ipX} saddr ${oneOrSet(opts.clusterCIDRs)} goto ${clusterPolicyChain} comment "short-circuit pod traffic"`);
      }
      rules.push(`fib saddr type local jump ${MARK_MASQ_CHAIN} comment "masquerade local traffic"`);
      rules.push(`fib saddr type local goto ${clusterPolicyChain} comment "short-circuit local traffic"`);
    }
    if (hasExternalEndpoints) rules.push(`goto ${externalPolicyChain}`);
    chains.push({ name: externalTrafficChain, rules });
  }

  // No endpoints at all: reject (ICMP port unreachable, so clients fail at once). A
  // Local policy without local endpoints: drop, as kube-proxy does.
  const internalVerdict = !hasAny ? `goto ${REJECT_CHAIN}` : 'drop';
  const spn = p.spn;
  const key = (ip: string): string => `${ip} . ${proto} . ${p.port}`;

  elements.push({ container: 'cluster-ips', key: p.clusterIP, value: '', comment: '' });
  if (hasInternalEndpoints) {
    elements.push({ container: 'service-ips', key: key(p.clusterIP), value: `goto ${internalTrafficChain}`, comment: '' });
  } else {
    elements.push({ container: 'no-endpoint-services', key: key(p.clusterIP), value: internalVerdict, comment: spn });
  }
  for (const ip of p.externalIPs) {
    if (hasAny) elements.push({ container: 'service-ips', key: key(ip), value: `goto ${externalTrafficChain}`, comment: '' });
    if (!hasExternalEndpoints) elements.push({ container: 'no-endpoint-services', key: key(ip), value: !hasAny ? `goto ${REJECT_CHAIN}` : 'drop', comment: spn });
  }
  if (p.nodePort !== 0) {
    // NodePorts are not subject to loadBalancerSourceRanges (kube-proxy neither).
    const np = `${proto} . ${p.nodePort}`;
    if (hasAny) elements.push({ container: 'service-nodeports', key: np, value: `goto ${externalTrafficChain}`, comment: '' });
    if (!hasExternalEndpoints) elements.push({ container: 'no-endpoint-nodeports', key: np, value: !hasAny ? `goto ${REJECT_CHAIN}` : 'drop', comment: spn });
  }
  return { chains, sets, elements };
}

/** Chains and containers of a shard table: kube-proxy's nat-prerouting / nat-output → services part. */
const SHARD_CHAINS: ReadonlySet<string> = new Set(['nat-prerouting', 'nat-output', SERVICES_CHAIN, MARK_MASQ_CHAIN]);

/**
 * Table, base and fixed chains, sets and maps (`setupNFTables`) of `table`: all of them
 * for `clusterdns`, the nat-prerouting / nat-output → services part for a shard. The
 * containers are declared here and filled (flushed and refilled) by the full render's
 * last transaction.
 */
function renderSetup(
  opts: RulesOptions,
  f: Fam,
  table: string,
  shard: { readonly index: number; readonly of: number } | undefined,
  resetBaseChains: boolean,
  nodePortIPsMayExist: boolean,
  out: string[],
): number {
  let rules = 0;
  const P = `${f.ipX} ${table}`;
  const mine = (chain: string): boolean => shard === undefined || SHARD_CHAINS.has(chain);
  const blocks = new Map<string, string[]>();
  const rule = (chain: string, text: string): void => {
    if (!mine(chain)) return;
    let list = blocks.get(chain);
    if (list === undefined) blocks.set(chain, (list = []));
    list.push(text);
    rules++;
  };

  const comment = shard === undefined ? 'rules for clusterdns (kube-proxy nftables mode)' : `clusterdns Service chains, part ${shard.index + 1} of ${shard.of}`;
  out.push(`add table ${P} { comment ${q(comment)} ; }`);
  const baseChains = BASE_CHAINS.filter((bc) => mine(bc.name));
  if (resetBaseChains) {
    for (const bc of baseChains) out.push(`add chain ${P} ${bc.name}`, `delete chain ${P} ${bc.name}`);
  }
  // Every chain exists before any rule names it; each is flushed, then written whole.
  const fixed: string[] = [];
  for (const bc of baseChains) {
    out.push(`add chain ${P} ${bc.name} { type ${bc.type} hook ${bc.hook} priority ${bc.priority} ; }`);
    fixed.push(bc.name);
  }
  for (const chain of [...JUMP_CHAINS.map((j) => j.to), SERVICES_CHAIN, CLUSTER_IPS_CHECK_CHAIN, MASQUERADING_CHAIN, MARK_MASQ_CHAIN]) {
    if (fixed.includes(chain) || !mine(chain)) continue;
    out.push(`add chain ${P} ${chain}`);
    fixed.push(chain);
  }
  if (shard === undefined) {
    // `reject` is not a verdict a vmap can hold, hence a chain to goto.
    out.push(`add chain ${P} ${REJECT_CHAIN} { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }`);
    fixed.push(REJECT_CHAIN);
  }

  const matchAll = nodePortsMatchAll(opts);
  if (shard === undefined) out.push(`add ${containerDecl('cluster-ips', f, P)} }`);
  if (matchAll) {
    // add + delete rather than delete alone: deleting an absent set fails the transaction.
    if (nodePortIPsMayExist) out.push(`add ${containerDecl('nodeport-ips', f, P)} }`, `delete set ${P} nodeport-ips`);
  } else {
    out.push(`add ${containerDecl('nodeport-ips', f, P)} }`, `flush set ${P} nodeport-ips`);
    const cidrs = opts.nodePortAddresses.map((c) => c.trim());
    out.push(fillContainer('nodeport-ips', f, P, cidrs));
    rules += cidrs.length;
  }
  const containers = shard === undefined ? (['no-endpoint-services', 'no-endpoint-nodeports', 'service-ips', 'service-nodeports'] as const) : (['service-ips', 'service-nodeports'] as const);
  for (const c of containers) out.push(`add ${containerDecl(c, f, P)} }`);

  for (const j of JUMP_CHAINS) rule(j.from, `${j.extra}jump ${j.to}`);
  rule(MARK_MASQ_CHAIN, `mark set mark or ${MASQUERADE_MARK}`);
  rule(MASQUERADING_CHAIN, `mark and ${MASQUERADE_MARK} == 0 return`);
  rule(MASQUERADING_CHAIN, `mark set mark xor ${MASQUERADE_MARK}`);
  rule(MASQUERADING_CHAIN, 'masquerade fully-random');
  rule(CLUSTER_IPS_CHECK_CHAIN, `${f.ipX} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"`);
  if (opts.serviceCIDRs.length > 0) {
    rule(CLUSTER_IPS_CHECK_CHAIN, `${f.ipX} daddr { ${opts.serviceCIDRs.join(', ')} } drop comment "Drop traffic to unallocated ClusterIPs"`);
  }
  if (shard === undefined) rule(REJECT_CHAIN, 'reject');
  rule(SERVICE_ENDPOINTS_CHECK_CHAIN, `${f.ipX} daddr . meta l4proto . th dport vmap @no-endpoint-services`);
  if (matchAll) rule(NODEPORT_ENDPOINTS_CHECK_CHAIN, `${f.noLocalhost} meta l4proto . th dport vmap @no-endpoint-nodeports`);
  else rule(NODEPORT_ENDPOINTS_CHECK_CHAIN, `${f.ipX} daddr @nodeport-ips fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports`);
  rule(SERVICES_CHAIN, `${f.ipX} daddr . meta l4proto . th dport vmap @service-ips`);
  if (matchAll) rule(SERVICES_CHAIN, `fib daddr type local ${f.noLocalhost} meta l4proto . th dport vmap @service-nodeports`);
  else rule(SERVICES_CHAIN, `${f.ipX} daddr @nodeport-ips fib daddr type local meta l4proto . th dport vmap @service-nodeports`);

  for (const chain of fixed) {
    out.push(`flush chain ${P} ${chain}`);
    const list = blocks.get(chain);
    if (list !== undefined) out.push(chainBlock(P, chain, list));
  }
  return rules;
}

const elementId = (e: { readonly container: NftContainer; readonly key: string }): string => `${e.container} ${e.key}`;
const sameElement = (a: NftElement | undefined, b: NftElement | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && a.value === b.value && a.comment === b.comment && a.table === b.table);

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

/** Shard tables `clusterdns-0` … for `shards` (none for 1). */
function shardTables(shards: number): string[] {
  return shards <= 1 ? [] : Array.from({ length: shards }, (_, i) => `${NFT_TABLE}-${i}`);
}

/** Elements to add or delete, per table and container, written in a stable order. */
class ElementGroups {
  readonly #groups = new Map<string, Map<NftContainer, string[]>>();
  push(table: string, container: NftContainer, text: string): void {
    let byContainer = this.#groups.get(table);
    if (byContainer === undefined) this.#groups.set(table, (byContainer = new Map()));
    let list = byContainer.get(container);
    if (list === undefined) byContainer.set(container, (list = []));
    list.push(text);
  }
  /** `clusterdns` first, then the shards in order; containers in `CONTAINERS` order. */
  *entries(): Generator<[string, NftContainer, string[]]> {
    const tables = [...this.#groups.keys()].sort((a, b) => (a === NFT_TABLE ? -1 : b === NFT_TABLE ? 1 : Number(a.slice(NFT_TABLE.length + 1)) - Number(b.slice(NFT_TABLE.length + 1))));
    for (const t of tables) {
      const byContainer = this.#groups.get(t)!;
      for (const c of CONTAINERS) {
        const list = byContainer.get(c);
        if (list !== undefined) yield [t, c, list];
      }
    }
  }
}

/**
 * Render one sync. Full: the whole ruleset, idempotent given `previous` (applying it
 * over the tables `previous` describes leaves exactly the view's ruleset; affinity sets
 * keep their entries), split into transactions when large. Partial (`previous` given,
 * same options, same shard count): only the chains of `changed` Services are flushed and
 * rewritten, and only the elements that differ are deleted or added, so the text is
 * O(changes).
 */
export function renderNftables(ports: readonly ProxyPort[], opts: RulesOptions, sync: NftSync): NftRender {
  const stream = streamNftables(ports, opts, sync);
  for (;;) {
    const step = stream.next();
    if (step.done === true) return step.value;
  }
}

/**
 * `renderNftables` as it goes, so a large full sync can be applied while it is rendered:
 * yields each transaction but the last as soon as it is complete (the first, then the
 * chunks, which may be applied concurrently), and `undefined` now and then in between (a
 * chance to let nft processes be fed); returns the whole render, whose last transaction
 * is the one not yielded. Small and partial renders yield nothing.
 */
export function* streamNftables(ports: readonly ProxyPort[], opts: RulesOptions, sync: NftSync): Generator<string | undefined, NftRender, undefined> {
  const f = fam(opts.family);
  const pfx = (table: string): string => `${f.ipX} ${table}`;
  const key = optionsKey(opts);
  const prev = sync.previous;
  let full = sync.full || prev === undefined || prev.optionsKey !== key || prev.family !== opts.family;
  const defer = sync.deferStaleChains === true;

  let endpoints = 0;
  for (const p of ports) if (p.family === opts.family) endpoints += p.endpoints.length;
  const shards = shardCount(endpoints, prev?.shards, sync.shardEndpoints ?? SHARD_ENDPOINTS);
  // Moving Services to other tables takes a full render.
  if (!full && shards !== prev!.shards) full = true;
  const tables = full ? new Set(shardTables(shards)) : prev!.tables;

  let rules = 0;
  const services = new Map<string, NftServiceState>(full ? [] : prev!.services);
  const claims = new Map<string, readonly Claim[]>(full ? [] : prev!.claims);
  /** Effective element per id before this sync touched it (partial syncs). */
  const before = new Map<string, NftElement | undefined>();
  /** Chains and sets (`qualified`) that exist now (before this transaction) and may go stale. */
  const oldChains = new Set<string>();
  const oldSets = new Map<string, number>();
  const newChains = new Set<string>();
  const newSets = new Set<string>();
  /**
   * Stale chains and sets an earlier sync flushed (those a listing found still hold their
   * rules and entries: a listing's state has no options).
   */
  const listed = prev !== undefined && prev.optionsKey === '';
  const flushedChains: ReadonlySet<string> = listed ? new Set() : (prev?.staleChains ?? new Set());
  const flushedSets = new Set<string>(listed ? [] : (prev?.staleSets.keys() ?? []));

  const setup: string[] = [];
  if (full) {
    const reset = sync.resetBaseChains === true;
    const mayExist = (t: string): boolean => prev?.nodePortIPs !== false && (prev === undefined || t === NFT_TABLE || prev.tables.has(t));
    rules += renderSetup(opts, f, NFT_TABLE, undefined, reset, mayExist(NFT_TABLE), setup);
    [...tables].forEach((t, index) => {
      rules += renderSetup(opts, f, t, { index, of: tables.size }, reset, mayExist(t), setup);
    });
    if (prev !== undefined) {
      for (const s of prev.services.values()) {
        for (const c of s.chains) oldChains.add(qualified(s.table, c));
        for (const [n, t] of s.sets) oldSets.set(qualified(s.table, n), t);
      }
    }
  }
  for (const c of prev?.staleChains ?? []) oldChains.add(c);
  for (const [n, t] of prev?.staleSets ?? []) oldSets.set(n, t);

  const groups = groupPorts(ports, opts.family, full ? undefined : sync.changed);
  const keys = full ? [...groups.keys()] : [...new Set([...sync.changed].filter((k) => groups.has(k) || prev!.services.has(k)))];
  keys.sort();
  if (full && shards > 1) {
    // Table by table: each table's chains are then allocated together in the kernel, and
    // walking one table's chain list (nft's chain dump, every commit's validation) stays
    // in cache; most chunks also touch, so validate, one table.
    const tableOf = new Map(keys.map((k) => [k, serviceTable(k, shards)]));
    const index = (t: string): number => Number(t.slice(NFT_TABLE.length + 1));
    keys.sort((a, b) => index(tableOf.get(a)!) - index(tableOf.get(b)!) || (a < b ? -1 : a > b ? 1 : 0));
  }

  // Service chains, in chunks (a new chunk once one holds `chunkRules` rules). Whether
  // to split at all is decided up front (about 3 rules an endpoint), so transactions can
  // be handed out as they are complete.
  const chunkRules = sync.chunkRules ?? CHUNK_RULES;
  const split = full && 3 * endpoints + keys.length > chunkRules;
  const text = (lines: readonly string[]): string => (lines.length === 0 ? '' : `${lines.join('\n')}\n`);
  const transactions: string[] = [];
  if (split) {
    transactions.push(text(setup));
    yield transactions[0];
  }
  let chunk: string[] = [];
  let chunkCount = 0;
  let sinceYield = 0;

  for (const svc of keys) {
    if (split && ++sinceYield === 64) {
      sinceYield = 0;
      yield undefined;
    }
    const table = serviceTable(svc, shards);
    const P = pfx(table);
    const old = full ? undefined : prev!.services.get(svc);
    if (old !== undefined) {
      for (const c of old.chains) oldChains.add(qualified(old.table, c));
      for (const [n, t] of old.sets) oldSets.set(qualified(old.table, n), t);
    }
    const chains: ChainOut[] = [];
    const sets = new Map<string, number>();
    const elements = new Map<string, NftElement>();
    for (const p of groups.get(svc) ?? []) {
      const r = renderPort(p, opts, f);
      chains.push(...r.chains);
      for (const [n, t] of r.sets) sets.set(n, t);
      for (const e of r.elements) {
        const id = elementId(e);
        if (!elements.has(id)) elements.set(id, { ...e, table: e.container === 'service-ips' || e.container === 'service-nodeports' ? table : NFT_TABLE });
      }
    }

    // Existing chains emptied first (so the sets they use can be recreated), then the
    // sets, then every chain written whole, endpoint chains before their users.
    // (Nothing existed before: a first sync need not track what may go stale.)
    if (oldChains.size > 0) {
      for (const c of chains) {
        const qc = qualified(table, c.name);
        newChains.add(qc);
        if (oldChains.has(qc) && !flushedChains.has(qc)) chunk.push(`flush chain ${P} ${c.name}`);
      }
    }
    for (const [n, t] of sets) {
      const qs = qualified(table, n);
      newSets.add(qs);
      // A set's timeout cannot be changed on every kernel: recreate it (its rules are
      // gone, the chains were just flushed), losing the affinities, as a new timeout
      // should.
      const was = oldSets.get(qs);
      if (was !== undefined && was !== t) chunk.push(`delete set ${P} ${n}`);
      // "dynamic" although no stateful objects are stored: without it some kernels add
      // it themselves and the next `add` looks like a flags change (kube-proxy).
      chunk.push(`add set ${P} ${n} { type ${f.addrType} ; flags dynamic,timeout ; timeout ${t}s ; }`);
    }
    for (const c of chains) {
      chunk.push(chainBlock(P, c.name, c.rules));
      rules += c.rules.length;
      chunkCount += c.rules.length;
    }

    if (chains.length > 0 || elements.size > 0) services.set(svc, { table, chains: chains.map((c) => c.name), sets, elements: [...elements.values()] });
    else services.delete(svc);

    // Claims: replace this Service's claim in place (so an unchanged winner stays the
    // winner), drop the ones it no longer makes, append new ones.
    if (full) {
      for (const [id, e] of elements) {
        const list = claims.get(id);
        claims.set(id, list === undefined ? [{ service: svc, element: e }] : [...list, { service: svc, element: e }]);
      }
    } else {
      for (const id of new Set<string>([...(old?.elements ?? []).map(elementId), ...elements.keys()])) {
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

    // The first chunk is half-sized, so the two nft processes the backend runs at once
    // fall out of step: one parses while the other's batch is in the kernel.
    if (split && chunkCount >= (transactions.length === 1 ? chunkRules / 2 : chunkRules)) {
      transactions.push(text(chunk));
      yield transactions[transactions.length - 1];
      chunk = [];
      chunkCount = 0;
    }
  }
  if (split && chunk.length > 0) {
    transactions.push(text(chunk));
    yield transactions[transactions.length - 1];
    chunk = [];
  }

  // Elements. Full: every container emptied and refilled in one transaction. Partial:
  // deletes first (a changed verdict is delete + add, as ensureElem does), then adds,
  // after every chain they may name exists.
  const last: string[] = [];
  const adds = new ElementGroups();
  const add = (e: NftElement): void => {
    adds.push(e.table, e.container, elementText(e));
    rules++;
  };
  if (full) {
    for (const c of CONTAINERS) last.push(`flush ${c === 'cluster-ips' ? 'set' : 'map'} ${pfx(NFT_TABLE)} ${c}`);
    for (const t of tables) last.push(`flush map ${pfx(t)} service-ips`, `flush map ${pfx(t)} service-nodeports`);
    for (const list of claims.values()) add(list[0]!.element);
  } else {
    // An element leaves (or changes its verdict: kube-proxy's delete + add) by emptying
    // and refilling its container in this transaction: `delete element` would make nft
    // read every chain of every table first (seconds at 100,000 endpoints), a refill
    // costs the container's size (a shard's few hundred elements; cluster-ips one a
    // Service).
    const refill = new Set<string>();
    const pending: NftElement[] = [];
    for (const [id, was] of before) {
      const now = claims.get(id)?.[0]?.element;
      if (sameElement(was, now)) continue;
      if (was !== undefined) {
        refill.add(`${was.table} ${was.container}`);
        rules++;
      }
      if (now !== undefined) pending.push(now);
    }
    for (const e of pending) if (!refill.has(`${e.table} ${e.container}`)) add(e);
    if (refill.size > 0) {
      for (const list of claims.values()) {
        const e = list[0]!.element;
        if (refill.has(`${e.table} ${e.container}`)) add(e);
      }
      const order = new ElementGroups();
      for (const r of refill) {
        const { table, name } = splitQualified(r);
        order.push(table, name as NftContainer, '');
      }
      for (const [t, c] of order.entries()) last.push(`flush ${c === 'cluster-ips' ? 'set' : 'map'} ${pfx(t)} ${c}`);
    }
  }
  for (const [t, c, list] of adds.entries()) last.push(fillContainer(c, f, pfx(t), list));

  // Stale chains and sets: nothing references them any more (their elements are gone and
  // every chain that used them was rewritten above), so flush them, then delete them
  // now or, deferred, in a later transaction. Those of a shard table no longer used go
  // with their table.
  const dropTables = full && prev !== undefined ? [...prev.tables].filter((t) => !tables.has(t)) : [];
  const dropped = (q: string): boolean => dropTables.includes(splitQualified(q).table);
  const staleChains = new Set<string>();
  const staleSets = new Map<string, number>();
  const deleteNow: string[] = [];
  for (const qc of oldChains) {
    if (newChains.has(qc) || dropped(qc)) continue;
    const { table, name } = splitQualified(qc);
    if (!flushedChains.has(qc)) last.push(`flush chain ${pfx(table)} ${name}`);
    if (defer) staleChains.add(qc);
    else deleteNow.push(`delete chain ${pfx(table)} ${name}`);
  }
  for (const [qs, t] of oldSets) {
    if (newSets.has(qs) || dropped(qs)) continue;
    const { table, name } = splitQualified(qs);
    if (!defer) {
      last.push(`delete set ${pfx(table)} ${name}`);
      continue;
    }
    // Emptied now, so an endpoint that comes back before the deletion starts afresh, as
    // it would with kube-proxy (which deletes affinity sets at once).
    if (!flushedSets.has(qs)) last.push(`flush set ${pfx(table)} ${name}`);
    staleSets.set(qs, t);
  }
  last.push(...deleteNow);
  for (const t of dropTables) last.push(`delete table ${pfx(t)}`);

  if (split) {
    transactions.push(text(last));
  } else {
    const all = text([...setup, ...chunk, ...last]);
    if (all !== '') transactions.push(all);
  }
  const state: NftState = {
    family: opts.family,
    optionsKey: key,
    shards,
    tables,
    services,
    claims,
    staleChains,
    staleSets,
    nodePortIPs: !nodePortsMatchAll(opts) || (!full && prev?.nodePortIPs === true),
  };
  let joined: string | undefined;
  return {
    get text(): string {
      return (joined ??= transactions.join(''));
    },
    transactions,
    state,
    rules,
    full,
  };
}

/** The elements of one container as the tables hold them (the first claim of each key). */
export function stateElements(state: NftState, container: NftContainer): NftElement[] {
  const out: NftElement[] = [];
  for (const list of state.claims.values()) {
    const e = list[0]?.element;
    if (e !== undefined && e.container === container) out.push(e);
  }
  return out;
}

/**
 * The transaction deleting chains and sets (`qualified`) `renderNftables` left flushed in
 * `staleChains` / `staleSets` (deferStaleChains): kube-proxy runs it ≥ 1 s after the
 * chains went stale, in its own transaction, so a failure does not block the sync.
 */
export function renderStaleDeletion(family: Family, chains: Iterable<string>, sets: Iterable<string> = []): string {
  const ipX = fam(family).ipX;
  let text = '';
  for (const q of chains) {
    const { table, name } = splitQualified(q);
    text += `delete chain ${ipX} ${table} ${name}\n`;
  }
  for (const q of sets) {
    const { table, name } = splitQualified(q);
    text += `delete set ${ipX} ${table} ${name}\n`;
  }
  return text;
}

/** `state` without the given stale chains and sets (after `renderStaleDeletion` applied). */
export function withoutStale(state: NftState, chains: Iterable<string>, sets: Iterable<string> = []): NftState {
  const staleChains = new Set(state.staleChains);
  for (const c of chains) staleChains.delete(c);
  const staleSets = new Map(state.staleSets);
  for (const s of sets) staleSets.delete(s);
  return { ...state, staleChains, staleSets };
}

/** A listed chain or set: its name, and its table when not `clusterdns`. */
export interface Listed {
  readonly name: string;
  readonly table?: string;
}

/**
 * A state for tables this process knows nothing of (first sync, after a failed one): the
 * shard tables, service chains and affinity sets a listing found, all to be reused or
 * removed by a full render. Other names (base and fixed chains, maps) are redeclared
 * anyway. Chains and sets of other tables are ignored.
 */
export function stateFromListing(family: Family, chains: Iterable<string | Listed>, sets: Iterable<Listed & { readonly timeout: number }>): NftState {
  const tables = new Set<string>();
  const staleChains = new Set<string>();
  for (const c of chains) {
    const { name, table = NFT_TABLE } = typeof c === 'string' ? { name: c } : c;
    if (!isOurTable(table)) continue;
    if (table !== NFT_TABLE) tables.add(table);
    if (isServiceChainName(name)) staleChains.add(qualified(table, name));
  }
  const staleSets = new Map<string, number>();
  let nodePortIPs = false;
  for (const s of sets) {
    const table = s.table ?? NFT_TABLE;
    if (!isOurTable(table)) continue;
    if (table !== NFT_TABLE) tables.add(table);
    if (isAffinitySetName(s.name)) staleSets.set(qualified(table, s.name), s.timeout);
    if (s.name === 'nodeport-ips') nodePortIPs = true;
  }
  return { family, optionsKey: '', shards: Math.max(1, tables.size), tables, services: new Map(), claims: new Map(), staleChains, staleSets, nodePortIPs };
}
