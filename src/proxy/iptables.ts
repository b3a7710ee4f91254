/**
 * iptables mode, rendering half: the `iptables-restore` input kube-proxy's iptables
 * proxier writes for a view (pkg/proxy/iptables/proxier.go `syncProxyRules`,
 * `writeServiceToEndpointRules`), in the same chains, names, argument order, comments and
 * quoting, so an operator (or a test written against kube-proxy) reads the same ruleset.
 * Pure: no kernel, no clock. `IptablesBackend` (iptables-backend.ts) applies the text;
 * `clusterdns rules --mode iptables` prints a full render.
 *
 * Not rendered because our view does not carry them: LoadBalancer ingress IPs and
 * `loadBalancerSourceRanges` (so no KUBE-FW-* chains and an always-empty
 * KUBE-PROXY-FIREWALL), `healthCheckNodePort` (so filter KUBE-NODEPORTS stays empty),
 * topology hints. Not rendered by choice: the localhost-NodePort machinery (see
 * `nodePortsTail`) and kubelet's KUBE-FIREWALL chain that goes with it, and the nfacct
 * counters kube-proxy attaches to two rules when the kernel has nfacct.
 */
import { categorize, externallyAccessible } from './categorize.js';
import { extChain, lowerProto, probability, sepChain, svcChain, svlChain } from './names.js';
import type { ProxyPort, RulesOptions } from './types.js';

/** kube-proxy's chain names (proxier.go constants). */
export const KUBE_SERVICES = 'KUBE-SERVICES';
export const KUBE_EXTERNAL_SERVICES = 'KUBE-EXTERNAL-SERVICES';
export const KUBE_NODEPORTS = 'KUBE-NODEPORTS';
export const KUBE_POSTROUTING = 'KUBE-POSTROUTING';
export const KUBE_MARK_MASQ = 'KUBE-MARK-MASQ';
export const KUBE_FORWARD = 'KUBE-FORWARD';
export const KUBE_PROXY_FIREWALL = 'KUBE-PROXY-FIREWALL';

/** Top-level chains declared (so flushed) and fully rewritten on every sync, per table. */
export const FILTER_CHAINS: readonly string[] = [KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL];
export const NAT_CHAINS: readonly string[] = [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ];

/**
 * kube-proxy's default masqueradeBit 14, formatted as it does (`fmt.Sprintf("%#08x",
 * 1<<14)` in NewProxier); iptables-save prints it back as 0x4000.
 */
export const MASQUERADE_MARK = '0x00004000';

/**
 * `largeClusterEndpointsThreshold`: above this many endpoints (all services, all
 * conditions) the SVC→SEP and SEP rules lose their comments (`appendServiceCommentLocked`:
 * the input shrinks by 40 %+).
 */
export const LARGE_CLUSTER_ENDPOINTS = 1000;

const SERVICE_CHAIN_PREFIXES = ['KUBE-SVC-', 'KUBE-SVL-', 'KUBE-EXT-', 'KUBE-FW-', 'KUBE-SEP-'] as const;

/** kube-proxy's `isServiceChainName`: the per-service nat chains a sync may delete as stale. */
export function isServiceChainName(chain: string): boolean {
  return SERVICE_CHAIN_PREFIXES.some((p) => chain.startsWith(p));
}

/** One jump from a built-in chain into ours (proxier.go `iptablesJumpChains`). */
export interface JumpRule {
  readonly table: 'filter' | 'nat';
  /** Built-in chain the rule is inserted into (prepended, `EnsureRule(Prepend, …)`). */
  readonly from: string;
  /** Our chain. */
  readonly to: string;
  /** Arguments after `-I/-C/-D <from>`, exactly as kube-proxy passes them. */
  readonly args: readonly string[];
}

const NEW = ['-m', 'conntrack', '--ctstate', 'NEW'];

function jump(table: JumpRule['table'], to: string, from: string, comment: string, extra: readonly string[] = []): JumpRule {
  return { table, from, to, args: [...extra, '-m', 'comment', '--comment', comment, '-j', to] };
}

/**
 * `iptablesJumpChains`, same order. kube-proxy also adds kubelet's KUBE-FIREWALL jumps
 * (`iptablesKubeletJumpChains`); that chain only carries the localhost-NodePort
 * anti-martian rule, which we do not need since we never set route_localnet.
 */
export const JUMP_RULES: readonly JumpRule[] = [
  jump('filter', KUBE_EXTERNAL_SERVICES, 'INPUT', 'kubernetes externally-visible service portals', NEW),
  jump('filter', KUBE_EXTERNAL_SERVICES, 'FORWARD', 'kubernetes externally-visible service portals', NEW),
  jump('filter', KUBE_NODEPORTS, 'INPUT', 'kubernetes health check service ports'),
  jump('filter', KUBE_SERVICES, 'FORWARD', 'kubernetes service portals', NEW),
  jump('filter', KUBE_SERVICES, 'OUTPUT', 'kubernetes service portals', NEW),
  jump('filter', KUBE_FORWARD, 'FORWARD', 'kubernetes forwarding rules'),
  jump('filter', KUBE_PROXY_FIREWALL, 'INPUT', 'kubernetes load balancer firewall', NEW),
  jump('filter', KUBE_PROXY_FIREWALL, 'OUTPUT', 'kubernetes load balancer firewall', NEW),
  jump('filter', KUBE_PROXY_FIREWALL, 'FORWARD', 'kubernetes load balancer firewall', NEW),
  jump('nat', KUBE_SERVICES, 'OUTPUT', 'kubernetes service portals'),
  jump('nat', KUBE_SERVICES, 'PREROUTING', 'kubernetes service portals'),
  jump('nat', KUBE_POSTROUTING, 'POSTROUTING', 'kubernetes postrouting rules'),
];

export interface IptablesSync {
  /** Write every per-service chain (first sync, after a failure, periodic resync). */
  readonly full: boolean;
  /** Service keys (`ns/name`) whose Service or endpoints changed; ignored when `full`. */
  readonly changed: ReadonlySet<string>;
  /**
   * Per-service nat chains active after the last successful sync (plus, on a full sync,
   * any found in the kernel): those no longer active are flushed and deleted (`-X`).
   */
  readonly previousChains: ReadonlySet<string>;
  /**
   * Full sync of a view with more endpoints than this: the per-service chains (all of a
   * Service's in one) go to `chunks` of about this many chains, restored before `text`,
   * which then holds the rest (see `IptablesRender.chunks`). Unset: one input.
   */
  readonly chunkChains?: number;
  /**
   * Partial sync: each Service's per-service chains as the last sync left them
   * (`IptablesRender.byService`). An unchanged Service's are taken from here instead of
   * being computed again (a hash per endpoint: ~1 s a sync at 100,000 endpoints).
   */
  readonly previousByService?: ReadonlyMap<string, readonly string[]>;
}

/** Facts about the host the rules depend on (read by the backend, defaults for `rules`). */
export interface IptablesHost {
  /**
   * `net.netfilter.nf_conntrack_tcp_be_liberal` is non-zero: kube-proxy then leaves out
   * the KUBE-FORWARD `--ctstate INVALID -j DROP` rule (NewProxier). Default false.
   */
  readonly conntrackTCPLiberal?: boolean;
}

export interface IptablesRender {
  /** `iptables-restore --noflush` input: `*filter … COMMIT`, `*nat … COMMIT`. */
  readonly text: string;
  /**
   * Every per-service nat chain (SVC/SVL/EXT/FW/SEP) the ruleset now uses, written in
   * this text or not: the `previousChains` of the next sync.
   */
  readonly natChains: Set<string>;
  /** `-A` lines written (both tables, chunks included; rules of skipped services not counted). */
  readonly rules: number;
  /**
   * With `chunkChains`: `iptables-restore --noflush` inputs holding the per-service nat
   * chains, to be restored before `text`. iptables-nft (1.8.x) keeps the names of the
   * chains a restore mentions in a sorted linked list, inserting each with a linear walk,
   * so one input with 110,000 chains (10,000 Services × 10 endpoints) takes many minutes;
   * chunks of a thousand take a few seconds in all. Each leaves a consistent ruleset:
   * a chunk only adds or rewrites whole Services' chains, nothing points at a new one
   * before `text` rewrites KUBE-SERVICES, and kube-proxy's rules are unchanged.
   */
  readonly chunks?: readonly string[];
  /** The per-service nat chains of each Service (`natChains` by Service): the next `previousByService`. */
  readonly byService: Map<string, string[]>;
}

const FULL: IptablesSync = { full: true, changed: new Set(), previousChains: new Set() };

/**
 * `iptables-restore` quoting as kube-proxy does it by hand (``fmt.Sprintf(`"%s …"`)``):
 * comments with spaces in double quotes, single tokens bare.
 */
function quote(s: string): string {
  return /\s/.test(s) ? `"${s}"` : s;
}

/** Lines of one chain-declaration or rule section; counts `-A` lines. */
class Lines {
  readonly out: string[] = [];
  appended = 0;
  constructor(private readonly discard = false) {}
  chain(name: string): void {
    if (!this.discard) this.out.push(`:${name} - [0:0]`);
  }
  rule(chain: string, ...args: string[]): void {
    if (this.discard) return;
    this.out.push(`-A ${chain} ${args.join(' ')}`);
    this.appended++;
  }
  raw(line: string): void {
    if (!this.discard) this.out.push(line);
  }
}

function compare(a: ProxyPort, b: ProxyPort): number {
  if (a.spn !== b.spn) return a.spn < b.spn ? -1 : 1;
  if (a.protocol !== b.protocol) return a.protocol < b.protocol ? -1 : 1;
  return 0;
}

/**
 * The ruleset for `ports` of `opts.family` (ports of the other family are ignored).
 * Mirrors `syncProxyRules`; where it iterates a Go map we sort by (spn, protocol) so
 * the output is stable.
 */
export function renderIptables(
  ports: readonly ProxyPort[],
  opts: RulesOptions,
  sync: IptablesSync = FULL,
  host: IptablesHost = {},
): IptablesRender {
  const isIPv6 = opts.family === 6;
  const mine = ports.filter((p) => p.family === opts.family).sort(compare);

  const filterChains = new Lines();
  const filterRules = new Lines();
  const natChains = new Lines();
  const natRules = new Lines();
  // Unchanged services' per-service chains are computed (for natChains) but not written.
  const skipped = new Lines(true);

  for (const c of FILTER_CHAINS) filterChains.chain(c);
  for (const c of NAT_CHAINS) natChains.chain(c);

  // KUBE-POSTROUTING / KUBE-MARK-MASQ: one chain each so the mark can change in one place.
  const mark = `${MASQUERADE_MARK}/${MASQUERADE_MARK}`;
  natRules.rule(KUBE_POSTROUTING, '-m', 'mark', '!', '--mark', mark, '-j', 'RETURN');
  // Clear the mark so a packet re-traversing the stack is not masqueraded twice.
  natRules.rule(KUBE_POSTROUTING, '-j', 'MARK', '--xor-mark', MASQUERADE_MARK);
  // kube-proxy adds --random-fully when iptables has it (>= 1.6.2, which the backend's
  // preflight requires anyway for -w/-W).
  natRules.rule(KUBE_POSTROUTING, '-m', 'comment', '--comment', quote('kubernetes service traffic requiring SNAT'), '-j', 'MASQUERADE', '--random-fully');
  natRules.rule(KUBE_MARK_MASQ, '-j', 'MARK', '--or-mark', MASQUERADE_MARK);

  // kube-proxy's local detector (NewDetectLocalByCIDR) takes one CIDR per family.
  const localCIDR = opts.clusterCIDRs[0];

  const active = new Set<string>();
  let totalEndpoints = 0;
  for (const p of mine) totalEndpoints += p.endpoints.length;
  const chunking = sync.full && sync.chunkChains !== undefined && totalEndpoints > sync.chunkChains;
  const chunks: string[] = [];
  let chunkChains = new Lines();
  let chunkRules = new Lines();
  let chunkRulesWritten = 0;
  const endChunk = (): void => {
    if (chunkChains.out.length === 0 && chunkRules.out.length === 0) return;
    chunks.push(['*nat', ...chunkChains.out, ...chunkRules.out, 'COMMIT', ''].join('\n'));
    chunkRulesWritten += chunkRules.appended;
    chunkChains = new Lines();
    chunkRules = new Lines();
  };
  let previousService: string | undefined;
  const byService = new Map<string, string[]>();
  const carried = new Set<string>();
  if (chunking) {
    // First, the chain every chunk jumps to (flushed and rewritten as the final input
    // will: the same rule).
    chunks.push(['*nat', `:${KUBE_MARK_MASQ} - [0:0]`, `-A ${KUBE_MARK_MASQ} -j MARK --or-mark ${MASQUERADE_MARK}`, 'COMMIT', ''].join('\n'));
  }
  const largeCluster = totalEndpoints > LARGE_CLUSTER_ENDPOINTS;
  // appendServiceCommentLocked
  const svcComment = (comment: string): string[] => (largeCluster ? [] : ['-m', 'comment', '--comment', quote(comment)]);

  for (const p of mine) {
    const proto = lowerProto(p.protocol);
    const spn = p.spn;
    const port = String(p.port);
    const { cluster, local, allReachable, hasAny: hasEndpoints } = categorize(p);

    const clusterPolicyChain = svcChain(spn, p.protocol);
    const usesClusterPolicyChain = cluster.length > 0; // categorize: empty unless UsesClusterEndpoints
    const localPolicyChain = svlChain(spn, p.protocol);
    const usesLocalPolicyChain = local.length > 0; // empty unless UsesLocalEndpoints

    let internalTrafficChain = clusterPolicyChain;
    let hasInternalEndpoints = hasEndpoints;
    if (p.internalLocal) {
      internalTrafficChain = localPolicyChain;
      if (local.length === 0) hasInternalEndpoints = false;
    }
    let externalPolicyChain = clusterPolicyChain;
    let hasExternalEndpoints = hasEndpoints;
    if (p.externalLocal) {
      externalPolicyChain = localPolicyChain;
      if (local.length === 0) hasExternalEndpoints = false;
    }
    const externalTrafficChain = extChain(spn, p.protocol);
    // On hasEndpoints, not hasExternalEndpoints: the short-circuit rules for pod and
    // host traffic are needed even when no endpoint is usable from outside.
    const usesExternalTrafficChain = hasEndpoints && externallyAccessible(p);

    let internalFilterTarget = '';
    let internalFilterComment = '';
    let externalFilterTarget = '';
    let externalFilterComment = '';
    if (!hasEndpoints) {
      // No nat chains at all for this port, only filter rejects.
      internalFilterTarget = externalFilterTarget = 'REJECT';
      internalFilterComment = externalFilterComment = quote(`${spn} has no endpoints`);
    } else {
      if (!hasInternalEndpoints) {
        internalFilterTarget = 'DROP';
        internalFilterComment = quote(`${spn} has no local endpoints`);
      }
      if (!hasExternalEndpoints) {
        externalFilterTarget = 'DROP';
        externalFilterComment = quote(`${spn} has no local endpoints`);
      }
    }

    const match = ['-m', proto, '-p', proto];

    // Capture the clusterIP.
    if (hasInternalEndpoints) {
      natRules.rule(KUBE_SERVICES, '-m', 'comment', '--comment', quote(`${spn} cluster IP`), ...match, '-d', p.clusterIP, '--dport', port, '-j', internalTrafficChain);
    } else {
      filterRules.rule(KUBE_SERVICES, '-m', 'comment', '--comment', internalFilterComment, ...match, '-d', p.clusterIP, '--dport', port, '-j', internalFilterTarget);
    }

    // Capture externalIPs.
    for (const ip of p.externalIPs) {
      if (hasEndpoints) {
        natRules.rule(KUBE_SERVICES, '-m', 'comment', '--comment', quote(`${spn} external IP`), ...match, '-d', ip, '--dport', port, '-j', externalTrafficChain);
      }
      if (!hasExternalEndpoints) {
        filterRules.rule(KUBE_EXTERNAL_SERVICES, '-m', 'comment', '--comment', externalFilterComment, ...match, '-d', ip, '--dport', port, '-j', externalFilterTarget);
      }
    }

    // Capture NodePorts (not subject to source ranges, as in kube-proxy).
    if (p.nodePort !== 0) {
      const np = String(p.nodePort);
      if (hasEndpoints) {
        natRules.rule(KUBE_NODEPORTS, '-m', 'comment', '--comment', quote(spn), ...match, '--dport', np, '-j', externalTrafficChain);
      }
      if (!hasExternalEndpoints) {
        filterRules.rule(KUBE_EXTERNAL_SERVICES, '-m', 'comment', '--comment', externalFilterComment, '-m', 'addrtype', '--dst-type', 'LOCAL', ...match, '--dport', np, '-j', externalFilterTarget);
      }
    }

    // KEP-3453 (MinimizeIPTablesRestore): SVC/SVL/EXT/FW/SEP of unchanged services are
    // left as they are in the kernel; their names carried over (previousByService) or
    // computed, so natChains stays complete.
    const write = sync.full || sync.changed.has(p.service);
    if (chunking && p.service !== previousService && chunkChains.out.length >= sync.chunkChains!) endChunk();
    previousService = p.service;
    const known = write ? undefined : sync.previousByService?.get(p.service);
    if (known !== undefined) {
      // Unchanged and known: its chains as they are (once for all its ports).
      if (!carried.has(p.service)) {
        carried.add(p.service);
        byService.set(p.service, [...known]);
        for (const c of known) active.add(c);
      }
      continue;
    }
    const chains = !write ? skipped : chunking ? chunkChains : natChains;
    const rules = !write ? skipped : chunking ? chunkRules : natRules;
    let mine = byService.get(p.service);
    if (mine === undefined) byService.set(p.service, (mine = []));
    const use = (chain: string): void => {
      active.add(chain);
      mine.push(chain);
    };

    // Internal traffic: masquerade what does not come from a pod (a static route to the
    // service range via this node may bounce off-node), or everything with masqueradeAll.
    if (hasInternalEndpoints) {
      const args = ['-m', 'comment', '--comment', quote(`${spn} cluster IP`), ...match, '-d', p.clusterIP, '--dport', port];
      if (opts.masqueradeAll) rules.rule(internalTrafficChain, ...args, '-j', KUBE_MARK_MASQ);
      else if (localCIDR !== undefined) rules.rule(internalTrafficChain, ...args, '!', '-s', localCIDR, '-j', KUBE_MARK_MASQ);
    }

    // External destinations (NodePort, external IPs) all go through KUBE-EXT-*.
    if (usesExternalTrafficChain) {
      chains.chain(externalTrafficChain);
      use(externalTrafficChain);
      if (!p.externalLocal) {
        // Endpoints may be on other nodes: always SNAT.
        rules.rule(externalTrafficChain, '-m', 'comment', '--comment', quote(`masquerade traffic for ${spn} external destinations`), '-j', KUBE_MARK_MASQ);
      } else {
        // Pod → external destination short-circuits to the cluster chain, as if it had
        // gone out to a load balancer and come back; no policy, source kept.
        if (localCIDR !== undefined) {
          rules.rule(externalTrafficChain, '-m', 'comment', '--comment', quote(`pod traffic for ${spn} external destinations`), '-s', localCIDR, '-j', clusterPolicyChain);
        }
        // The host's own traffic picks a local source address (the external IP may be
        // local), so it needs masquerading, and it goes to the cluster chain.
        rules.rule(externalTrafficChain, '-m', 'comment', '--comment', quote(`masquerade LOCAL traffic for ${spn} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', KUBE_MARK_MASQ);
        rules.rule(externalTrafficChain, '-m', 'comment', '--comment', quote(`route LOCAL traffic for ${spn} external destinations`), '-m', 'addrtype', '--src-type', 'LOCAL', '-j', clusterPolicyChain);
      }
      if (hasExternalEndpoints) rules.rule(externalTrafficChain, '-j', externalPolicyChain);
    }

    if (usesClusterPolicyChain) {
      chains.chain(clusterPolicyChain);
      use(clusterPolicyChain);
      writeServiceToEndpointRules(rules, p, clusterPolicyChain, cluster, svcComment);
    }
    if (usesLocalPolicyChain) {
      chains.chain(localPolicyChain);
      use(localPolicyChain);
      writeServiceToEndpointRules(rules, p, localPolicyChain, local, svcComment);
    }

    // One KUBE-SEP per endpoint reachable from this node.
    for (const ep of allReachable) {
      const sep = sepChain(spn, p.protocol, ep.key);
      chains.chain(sep);
      use(sep);
      const c = svcComment(spn);
      // Hairpin: a pod reaching itself through the service must be SNATed, or it would
      // answer itself directly.
      rules.rule(sep, ...c, '-s', ep.ip, '-j', KUBE_MARK_MASQ);
      const affinity = p.affinitySeconds > 0 ? ['-m', 'recent', '--name', sep, '--set'] : [];
      // ep.key is Go's JoinHostPort, so IPv6 comes out as [ip]:port as DNAT wants it.
      rules.rule(sep, ...c, ...affinity, ...match, '-j', 'DNAT', '--to-destination', ep.key);
    }
  }

  // Stale per-service chains: declaring flushes them, then -X deletes them. kube-proxy
  // finds them with iptables-save; the backend passes what it tracked (and, on full
  // syncs, what iptables-save lists).
  const stale = [...sync.previousChains].filter((c) => !active.has(c) && isServiceChainName(c)).sort();
  for (const c of stale) {
    natChains.chain(c);
    natRules.raw(`-X ${c}`);
  }

  // Tail call to KUBE-NODEPORTS: must stay the last rule of nat KUBE-SERVICES.
  nodePortsTail(natRules, opts, isIPv6);

  // KUBE-FORWARD. INVALID packets would otherwise cause spurious resets (issues
  // #74839, #117924), unless conntrack is already liberal about them.
  if (host.conntrackTCPLiberal !== true) filterRules.rule(KUBE_FORWARD, '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'DROP');
  // Forward masquerade-marked traffic (NodePorts) even when the FORWARD policy is DROP,
  // and the rest of the connections it accepted.
  filterRules.rule(KUBE_FORWARD, '-m', 'comment', '--comment', quote('kubernetes forwarding rules'), '-m', 'mark', '--mark', mark, '-j', 'ACCEPT');
  filterRules.rule(KUBE_FORWARD, '-m', 'comment', '--comment', quote('kubernetes forwarding conntrack rule'), '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT');

  const text = [
    '*filter',
    ...filterChains.out,
    ...filterRules.out,
    'COMMIT',
    '*nat',
    ...natChains.out,
    ...natRules.out,
    'COMMIT',
    '',
  ].join('\n');
  if (chunking) endChunk();
  return { text, natChains: active, rules: filterRules.appended + natRules.appended + chunkRulesWritten, ...(chunking ? { chunks } : {}), byService };
}

/**
 * The last nat KUBE-SERVICES rule. kube-proxy's localhostNodePorts (IPv4) needs
 * `route_localnet=1`, a known security hole (issue 90259) it then patches with kubelet's
 * KUBE-FIREWALL rule; we never set route_localnet, so, like kube-proxy with
 * `--iptables-localhost-nodeports=false`, loopback destinations are excluded:
 * `! -d 127.0.0.0/8` (IPv4), `! -d ::1/128` (IPv6, where they never work).
 *
 * With nodePortAddresses kube-proxy writes one rule per node IP inside the CIDRs
 * (`GetNodeIPs`); a pure renderer cannot list interfaces, so we write one rule per CIDR
 * and keep `--dst-type LOCAL`, which selects the same addresses in the kernel (and
 * follows address changes without a resync). A zero-prefix CIDR matches everything, as
 * `NodePortAddresses.MatchAll` treats it.
 */
function nodePortsTail(natRules: Lines, opts: RulesOptions, isIPv6: boolean): void {
  const comment = quote('kubernetes service nodeports; NOTE: this must be the last rule in this chain');
  const cidrs = opts.nodePortAddresses;
  if (cidrs.length === 0 || cidrs.some((c) => c.endsWith('/0'))) {
    natRules.rule(KUBE_SERVICES, '-m', 'comment', '--comment', comment, '-m', 'addrtype', '--dst-type', 'LOCAL', '!', '-d', isIPv6 ? '::1/128' : '127.0.0.0/8', '-j', KUBE_NODEPORTS);
    return;
  }
  for (const cidr of cidrs) {
    natRules.rule(KUBE_SERVICES, '-m', 'comment', '--comment', comment, '-m', 'addrtype', '--dst-type', 'LOCAL', '-d', cidr, '-j', KUBE_NODEPORTS);
  }
}

/**
 * `writeServiceToEndpointRules`: affinity checks first (one `recent --rcheck` per
 * endpoint, list name = SEP chain), then the random pick: rule i of n matches with
 * probability 1/(n-i), the last one always, so each endpoint gets 1/n.
 */
function writeServiceToEndpointRules(
  rules: Lines,
  p: ProxyPort,
  chain: string,
  endpoints: readonly { readonly key: string }[],
  svcComment: (c: string) => string[],
): void {
  if (p.affinitySeconds > 0) {
    for (const ep of endpoints) {
      const sep = sepChain(p.spn, p.protocol, ep.key);
      rules.rule(chain, ...svcComment(`${p.spn} -> ${ep.key}`), '-m', 'recent', '--name', sep, '--rcheck', '--seconds', String(p.affinitySeconds), '--reap', '-j', sep);
    }
  }
  const n = endpoints.length;
  endpoints.forEach((ep, i) => {
    const sep = sepChain(p.spn, p.protocol, ep.key);
    const stat = i < n - 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', probability(n - i)] : [];
    rules.rule(chain, ...svcComment(`${p.spn} -> ${ep.key}`), ...stat, '-j', sep);
  });
}
