/**
 * The userspace proxier (kube-proxy ≤ v1.25, pkg/proxy/userspace/proxier.go): one proxy
 * socket per service port and family, and the nat "portal" rules that REDIRECT the
 * ClusterIP, external IPs and NodePort of each to it.
 *
 * `update(view)` replaces kube-proxy's `syncProxyRules` + `mergeService`/`unmergeService`
 * + `OnEndpoints*`: it diffs the view against the running set by `portKey`:
 * - new port → LB state, socket opened on a random port;
 * - changed identity (`sameConfig`: protocol, port, nodePort, clusterIP, externalIPs in
 *   order, affinity on/off) → a new socket (new proxy port), the old one closed;
 * - removed → socket closed and LB state deleted (TCP: established connections go on;
 *   UDP: the flows end) and, for UDP, the conntrack entries of the VIP cleared
 *   (`ClearEntriesForIP`) so clients are not stuck on the old REDIRECT;
 * - endpoints changed → LB update only (no rules).
 * Then the portal ruleset of each family is rewritten with one `iptables-restore
 * --noflush` (chains declared, hence flushed and refilled), skipped when the text is
 * unchanged, and the jumps from PREROUTING/OUTPUT (and filter INPUT) are ensured with
 * `-C` before `-I`/`-A` (`iptablesInit`). New sockets are bound before the rules name
 * them, and replaced sockets closed only after the rules moved away from them.
 *
 * Differences from kube-proxy, on purpose:
 * - Host traffic (nat OUTPUT) is REDIRECTed like pod traffic: in OUTPUT that sends it to
 *   127.0.0.1 / ::1, which reaches a TCP proxy bound to the wildcard address (accepted
 *   sockets reply from the address they were reached on). UDP ports REDIRECT host
 *   traffic to a second socket bound to the loopback address (`hostProxyPort`), so the
 *   replies' source matches the conntrack entry and is un-NATed to the VIP (udp.ts).
 *   Checked by test/proxy/userspace-rules.test.ts. kube-proxy DNATed to a chosen host
 *   IP (`iptablesHostPortalArgs`), which needs that choice and breaks when it changes.
 * - External IPs get one KUBE-PORTALS-CONTAINER rule without `-m physdev ! --physdev-is-in`
 *   (bridge netfilter is not assumed), so pods reach them through the proxy too.
 * - Load-balancer ingress IPs are not in the view (no rules for them); SCTP ports are
 *   skipped with a warning ("SCTP is not supported for user space proxy").
 * - Endpoints: `categorize(port).cluster`, or `.local` with internalTrafficPolicy Local
 *   (kube-proxy's userspace mode had no traffic policies). One socket serves ClusterIP
 *   and NodePort, so externalTrafficPolicy is not applied.
 * - The NodePort is not reserved with a listening socket (`claimNodePort`); the
 *   apiserver's allocator keeps NodePorts unique.
 */
import { conntrackArgs } from '../conntrack.js';
import { categorize } from '../categorize.js';
import { exec as defaultExec, firstLine, type Exec } from '../exec.js';
import type { Family, Protocol, ProxyPort } from '../types.js';
import { portKey } from '../types.js';
import { nullLog, safeMetrics, type ProxyLog, type UserspaceMetrics } from './common.js';
import { LoadBalancerRR } from './lb.js';
import { TcpProxy, type ConnLimit } from './tcp.js';
import { UdpProxy } from './udp.js';

export type { ProxyLog, UserspaceMetrics } from './common.js';

/** Open TCP connections of a proxier (each holds two descriptors; kube-proxy raised RLIMIT_NOFILE to 64000). */
export const DEFAULT_MAX_CONNECTIONS = 16_384;

/** kube-proxy's userspace chains (`iptablesInit`). */
export const CHAIN_PORTALS_CONTAINER = 'KUBE-PORTALS-CONTAINER';
export const CHAIN_PORTALS_HOST = 'KUBE-PORTALS-HOST';
export const CHAIN_NODEPORT_CONTAINER = 'KUBE-NODEPORT-CONTAINER';
export const CHAIN_NODEPORT_HOST = 'KUBE-NODEPORT-HOST';
export const CHAIN_NODEPORT_NON_LOCAL = 'KUBE-NODEPORT-NON-LOCAL';

const NAT_CHAINS = [CHAIN_PORTALS_CONTAINER, CHAIN_PORTALS_HOST, CHAIN_NODEPORT_CONTAINER, CHAIN_NODEPORT_HOST] as const;

interface Jump {
  readonly table: 'nat' | 'filter';
  readonly chain: string;
  readonly target: string;
  /** Prepend (`-I`, position 1) or append (`-A`), as `iptablesInit` does. */
  readonly prepend: boolean;
  readonly args: readonly string[];
}

const CLUSTERIP_COMMENT = 'handle ClusterIPs; NOTE: this must be before the NodePort rules';
const NODEPORT_COMMENT = 'handle service NodePorts; NOTE: this must be the last rule in the chain';

/** The jumps of `iptablesInit`, in its order. */
export const PORTAL_JUMPS: readonly Jump[] = [
  { table: 'nat', chain: 'PREROUTING', target: CHAIN_PORTALS_CONTAINER, prepend: true, args: ['-m', 'comment', '--comment', CLUSTERIP_COMMENT] },
  { table: 'nat', chain: 'OUTPUT', target: CHAIN_PORTALS_HOST, prepend: true, args: ['-m', 'comment', '--comment', CLUSTERIP_COMMENT] },
  { table: 'nat', chain: 'PREROUTING', target: CHAIN_NODEPORT_CONTAINER, prepend: false, args: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'comment', '--comment', NODEPORT_COMMENT] },
  { table: 'nat', chain: 'OUTPUT', target: CHAIN_NODEPORT_HOST, prepend: false, args: ['-m', 'addrtype', '--dst-type', 'LOCAL', '-m', 'comment', '--comment', NODEPORT_COMMENT] },
  { table: 'filter', chain: 'INPUT', target: CHAIN_NODEPORT_NON_LOCAL, prepend: true, args: ['-m', 'comment', '--comment', 'Ensure that non-local NodePort traffic can flow'] },
];

/** What a portal rule needs to know about one service port and its proxy socket. */
export interface Portal {
  readonly spn: string;
  readonly protocol: Protocol;
  readonly clusterIP: string;
  readonly port: number;
  readonly nodePort: number;
  readonly externalIPs: readonly string[];
  /** The bound proxy port the rules REDIRECT to. */
  readonly proxyPort: number;
  /**
   * Target of the host (nat OUTPUT) rules when it differs from `proxyPort`: a UDP
   * port's loopback-bound socket (see udp.ts for why). Absent: `proxyPort`.
   */
  readonly hostProxyPort?: number;
}

/** A running proxy socket, as `ports()` reports it. */
export interface BoundPort extends Portal {
  /** `portKey(port)`: family, protocol and SPN. */
  readonly key: string;
  readonly family: Family;
}

export interface UserspaceProxierOptions {
  /** Install the portal rules (default true). False: sockets only (unit tests dial the proxy port). */
  readonly rules?: boolean;
  /** Tool runner for iptables-restore, iptables and conntrack (tests inject one). */
  readonly exec?: Exec;
  /** Clear UDP conntrack entries of new, changed and removed UDP ports (default: same as `rules`). */
  readonly conntrack?: boolean;
  /** Listen addresses per family (default '0.0.0.0' and '::'; kube-proxy's --bind-address). */
  readonly bindAddress4?: string;
  readonly bindAddress6?: string;
  /** UDP flow idle timeout in ms (kube-proxy's udpIdleTimeout, 250 ms). */
  readonly udpIdleTimeoutMs?: number;
  /** Open TCP connections over all ports (`proxy.maxConnections`); further ones are reset. */
  readonly maxConnections?: number;
  /** UDP flows per service port. */
  readonly udpMaxClients?: number;
  /** Affinity entries per service port. */
  readonly maxAffinity?: number;
  /** TCP dial timeouts (kube-proxy's [250, 500, 1000, 2000] ms). */
  readonly dialTimeouts?: readonly number[];
  /** Pass a FIN on instead of closing both sides (kube-proxy: false). */
  readonly halfClose?: boolean;
  /** Stream buffer per socket and direction, bytes (default 64 KiB). */
  readonly highWaterMark?: number;
  /** How often expired affinity entries are swept, ms (kube-proxy: each sync, 30 s). */
  readonly syncPeriodMs?: number;
  readonly metrics?: UserspaceMetrics;
  readonly log?: ProxyLog;
  /** LoadBalancerRR clock and shuffle source (tests). */
  readonly now?: () => number;
  readonly random?: () => number;
}

interface Running {
  readonly key: string;
  readonly family: Family;
  readonly identity: string;
  readonly port: ProxyPort;
  readonly proxy: TcpProxy | UdpProxy;
  readonly proxyPort: number;
  readonly hostProxyPort: number;
}

/** kube-proxy's `sameConfig` fields (family, protocol and SPN are in the key). */
function identity(p: ProxyPort): string {
  return JSON.stringify([p.protocol, p.port, p.nodePort, p.clusterIP, p.externalIPs, p.affinitySeconds > 0]);
}

/** Endpoints the balancer uses for a port (see the module comment). */
function endpointsFor(p: ProxyPort): ProxyPort['endpoints'] {
  const c = categorize(p);
  return p.internalLocal ? c.local : c.cluster;
}

export class UserspaceProxier {
  readonly #o: UserspaceProxierOptions;
  readonly #exec: Exec;
  readonly #log: ProxyLog;
  readonly #metrics: UserspaceMetrics;
  readonly #lb: LoadBalancerRR;
  readonly #limit: ConnLimit;
  readonly #running = new Map<string, Running>();
  /** TCP proxies whose listener closed while connections live on. */
  readonly #draining = new Set<TcpProxy>();
  /** Ruleset text last applied per family (skip identical restores). */
  readonly #applied = new Map<Family, string>();
  readonly #sctpWarned = new Set<string>();
  readonly #sweeper: NodeJS.Timeout;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  /** preflight found no usable ip6tables nat table. */
  #noV6Rules = false;
  /** The conntrack tool is missing (warned once). */
  #noConntrack = false;

  constructor(opts: UserspaceProxierOptions = {}) {
    this.#o = opts;
    this.#exec = opts.exec ?? defaultExec;
    this.#log = opts.log ?? nullLog;
    this.#metrics = safeMetrics(opts.metrics, this.#log);
    this.#lb = new LoadBalancerRR({
      ...(opts.now === undefined ? {} : { now: opts.now }),
      ...(opts.random === undefined ? {} : { random: opts.random }),
      ...(opts.maxAffinity === undefined ? {} : { maxAffinity: opts.maxAffinity }),
    });
    this.#limit = { active: 0, max: opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS };
    this.#sweeper = setInterval(() => this.#lb.cleanupStaleStickySessions(), opts.syncPeriodMs ?? 30_000);
    this.#sweeper.unref();
  }

  /** The balancer (tests inspect rotation and affinity). */
  get loadBalancer(): LoadBalancerRR {
    return this.#lb;
  }

  /** Open TCP connections over every port. */
  get connections(): number {
    return this.#limit.active;
  }

  /** The running proxy sockets, sorted by key. */
  ports(): BoundPort[] {
    return [...this.#running.values()]
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map((r) => ({
        key: r.key,
        family: r.family,
        spn: r.port.spn,
        protocol: r.port.protocol,
        clusterIP: r.port.clusterIP,
        port: r.port.port,
        nodePort: r.port.nodePort,
        externalIPs: r.port.externalIPs,
        proxyPort: r.proxyPort,
        hostProxyPort: r.hostProxyPort,
      }));
  }

  /** The bound proxy port of a service port (`portKey`), if running. */
  proxyPort(key: string): number | undefined {
    return this.#running.get(key)?.proxyPort;
  }

  /** The running TCP/UDP proxy of a service port (tests: buffered bytes, flows). */
  proxyOf(key: string): TcpProxy | UdpProxy | undefined {
    return this.#running.get(key)?.proxy;
  }

  /** The portal ruleset of a family for the running sockets (what `update` applies). */
  render(family: Family): string {
    return renderPortals(this.ports().filter((p) => p.family === family));
  }

  /**
   * Bring sockets, balancer and rules in line with the view. Calls are serialized.
   * Rejects when rules could not be applied (sockets are updated regardless; the next
   * call rewrites the whole ruleset).
   */
  update(ports: readonly ProxyPort[]): Promise<void> {
    const run = this.#queue.then(() => this.#update(ports));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #update(view: readonly ProxyPort[]): Promise<void> {
    if (this.#closed) throw new Error('userspace proxier is closed');
    const desired = new Map<string, ProxyPort>();
    for (const p of view) {
      if (p.protocol === 'SCTP') {
        if (!this.#sctpWarned.has(p.spn)) {
          this.#sctpWarned.add(p.spn);
          this.#log.warn({ spn: p.spn }, 'SCTP is not supported for user space proxy');
        }
        continue;
      }
      if (p.clusterIP === '' || p.clusterIP === 'None') continue;
      desired.set(portKey(p), p);
    }

    const retired: Running[] = [];
    const udpTouched: ProxyPort[] = [];
    for (const [key, r] of this.#running) {
      const p = desired.get(key);
      if (p === undefined || identity(p) !== r.identity) {
        retired.push(r);
        this.#running.delete(key);
        if (r.port.protocol === 'UDP') udpTouched.push(r.port);
        if (p === undefined) this.#lb.deleteService(key);
      }
    }

    const toOpen: [string, ProxyPort][] = [];
    for (const [key, p] of desired) {
      this.#lb.newService(key, p.affinitySeconds);
      this.#lb.updateEndpoints(key, endpointsFor(p));
      const r = this.#running.get(key);
      // Same identity: keep the socket, remember the newer port data (endpoints, TTL).
      if (r !== undefined) this.#running.set(key, { ...r, port: p });
      else toOpen.push([key, p]);
    }
    // Binds in batches: a first sync of thousands of ports should not take a tick each.
    for (let i = 0; i < toOpen.length; i += 64) {
      await Promise.all(
        toOpen.slice(i, i + 64).map(async ([key, p]) => {
          try {
            const started = await this.#open(key, p);
            this.#running.set(key, started);
            if (p.protocol === 'UDP') udpTouched.push(p);
            this.#log.info({ spn: p.spn, protocol: p.protocol, family: p.family, proxyPort: started.proxyPort }, 'userspace proxy: opened');
          } catch (err) {
            // Retried at the next update (the port is not in the running set).
            this.#log.warn({ spn: p.spn, protocol: p.protocol, family: p.family, err: String(err) }, 'userspace proxy: could not open proxy socket');
          }
        }),
      );
    }
    for (const key of this.#lb.keys()) if (!desired.has(key)) this.#lb.deleteService(key);
    this.#lb.cleanupStaleStickySessions();

    let ruleError: Error | undefined;
    if (this.#o.rules !== false) {
      try {
        await this.#applyRules();
      } catch (err) {
        ruleError = err as Error;
      }
    }
    for (const r of retired) await this.#retire(r);
    if (this.#o.conntrack ?? this.#o.rules !== false) await this.#clearUdpConntrack(udpTouched);
    if (ruleError !== undefined) throw ruleError;
  }

  async #open(key: string, p: ProxyPort): Promise<Running> {
    const bindAddress = p.family === 6 ? (this.#o.bindAddress6 ?? '::') : (this.#o.bindAddress4 ?? '0.0.0.0');
    const common = { key, spn: p.spn, lb: this.#lb, bindAddress, metrics: this.#metrics, log: this.#log };
    let proxy: TcpProxy | UdpProxy;
    if (p.protocol === 'TCP') {
      proxy = new TcpProxy({
        ...common,
        limit: this.#limit,
        ...(this.#o.dialTimeouts === undefined ? {} : { dialTimeouts: this.#o.dialTimeouts }),
        ...(this.#o.halfClose === undefined ? {} : { halfClose: this.#o.halfClose }),
        ...(this.#o.highWaterMark === undefined ? {} : { highWaterMark: this.#o.highWaterMark }),
      });
    } else {
      proxy = new UdpProxy({
        ...common,
        ...(this.#o.udpIdleTimeoutMs === undefined ? {} : { idleTimeoutMs: this.#o.udpIdleTimeoutMs }),
        ...(this.#o.udpMaxClients === undefined ? {} : { maxClients: this.#o.udpMaxClients }),
        loopback: this.#o.rules !== false,
      });
    }
    let proxyPort: number;
    try {
      proxyPort = await proxy.listen(0);
    } catch (err) {
      if (proxy instanceof UdpProxy) await proxy.close();
      else await proxy.destroy();
      throw err;
    }
    const hostProxyPort = proxy instanceof UdpProxy ? proxy.hostPort : proxyPort;
    return { key, family: p.family, identity: identity(p), port: p, proxy, proxyPort, hostProxyPort };
  }

  /** Stop a proxy socket (`stopProxy`): TCP keeps its connections until they end. */
  async #retire(r: Running): Promise<void> {
    this.#log.info({ spn: r.port.spn, protocol: r.port.protocol, family: r.family, proxyPort: r.proxyPort }, 'userspace proxy: closed');
    if (r.proxy instanceof UdpProxy) {
      await r.proxy.close();
      return;
    }
    const tcp = r.proxy;
    tcp.closeListener();
    if (tcp.connections > 0) {
      this.#draining.add(tcp);
      tcp.onIdle(() => this.#draining.delete(tcp));
    }
  }

  async #applyRules(): Promise<void> {
    const bound = this.ports();
    const errors: string[] = [];
    for (const family of [4, 6] as const) {
      const mine = bound.filter((p) => p.family === family);
      // A family is touched once it has ports; after that it is kept up to date (emptied).
      if (mine.length === 0 && !this.#applied.has(family)) continue;
      if (family === 6 && this.#noV6Rules) continue;
      const text = renderPortals(mine);
      if (this.#applied.get(family) === text) continue;
      const restore = family === 6 ? 'ip6tables-restore' : 'iptables-restore';
      const r = await this.#exec(restore, ['--wait', '--noflush'], text);
      if (r.code !== 0) {
        this.#applied.delete(family);
        errors.push(`${restore}: ${firstLine(r.stderr) || `exit ${r.code}`}`);
        continue;
      }
      try {
        await ensureJumps(this.#exec, family);
        this.#applied.set(family, text);
      } catch (err) {
        this.#applied.delete(family);
        errors.push((err as Error).message);
      }
    }
    if (errors.length > 0) throw new Error(`userspace proxy rules: ${errors.join('; ')}`);
  }

  /**
   * `conntrack -D` for UDP ports whose proxy socket appeared, moved or went away: a UDP
   * conntrack entry outlives its REDIRECT target and keeps a retransmitting client (DNS)
   * pointed at a closed port. kube-proxy cleared only removed ports' ClusterIPs.
   */
  async #clearUdpConntrack(ports: readonly ProxyPort[]): Promise<void> {
    if (this.#noConntrack) return;
    const byArgs = new Map<string, { spn: string; args: string[] }>();
    const add = (spn: string, args: string[]): void => void byArgs.set(args.join(' '), { spn, args });
    for (const p of ports) {
      for (const ip of [p.clusterIP, ...p.externalIPs]) add(p.spn, conntrackArgs({ family: p.family, origDst: ip, origPortDst: p.port }));
      if (p.nodePort !== 0) add(p.spn, conntrackArgs({ family: p.family, origPortDst: p.nodePort }));
    }
    const runs = [...byArgs.values()];
    // One filter per conntrack run; a few at a time so a first sync with many UDP ports stays short.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < runs.length && !this.#noConntrack) {
        const { spn, args } = runs[next++]!;
        const r = await this.#exec('conntrack', args, undefined, 10_000);
        if (r.code === 127) {
          this.#noConntrack = true;
          this.#log.warn({ err: firstLine(r.stderr) }, 'userspace proxy: conntrack tool missing; stale UDP flows are not cleared');
        } else if (r.code !== 0 && r.code !== 1) {
          // Exit 1 with "0 flow entries have been deleted" is the common, fine case.
          this.#log.debug({ spn, err: firstLine(r.stderr) }, 'userspace proxy: conntrack -D failed');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, runs.length) }, worker));
  }

  /**
   * Check that the rule tools work here (with `rules`): IPv4 must (one clear error
   * otherwise), IPv6 may be missing (a warning; IPv6 ports then get sockets but no rules).
   */
  async preflight(): Promise<void> {
    if (this.#o.rules === false) return;
    const v4 = await natUsable(this.#exec, 4);
    if (v4 !== undefined) throw new Error(`userspace proxy: iptables does not work here: ${v4}`);
    const v6 = await natUsable(this.#exec, 6);
    if (v6 !== undefined) {
      this.#noV6Rules = true;
      this.#log.warn({ err: v6 }, 'userspace proxy: ip6tables nat unavailable; IPv6 service ports get no portal rules');
    }
  }

  /** Remove the jumps and chains this mode installs, in both families (also leftovers of a crashed run). */
  async cleanup(): Promise<void> {
    await this.#queue;
    const errors = await cleanupPortals(this.#exec);
    this.#applied.clear();
    if (errors.length > 0) throw new Error(`userspace proxy cleanup: ${errors.join('; ')}`);
  }

  /**
   * kube-proxy's `CleanupLeftovers` for this mode: remove the portal jumps and chains of
   * both families without a running proxier (`--cleanup`). Rejects naming what failed.
   */
  static async cleanupLeftovers(run: Exec = defaultExec): Promise<void> {
    const errors = await cleanupPortals(run);
    if (errors.length > 0) throw new Error(errors.join('; '));
  }

  /**
   * Close every socket and connection; then, with `rules` on and `cleanup` (default),
   * remove the rules. Rule removal failures are logged, not thrown.
   */
  async close(cleanup = true): Promise<void> {
    await this.#queue;
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    const all: Promise<void>[] = [];
    for (const r of this.#running.values()) all.push(r.proxy instanceof UdpProxy ? r.proxy.close() : r.proxy.destroy());
    for (const t of this.#draining) all.push(t.destroy());
    this.#running.clear();
    this.#draining.clear();
    await Promise.all(all);
    if (this.#o.rules !== false && cleanup) {
      const errors = await cleanupPortals(this.#exec);
      for (const e of errors) this.#log.warn({ err: e }, 'userspace proxy: rule cleanup incomplete');
    }
    this.#applied.clear();
  }
}

/**
 * The portal ruleset of one family, as `iptables-restore --noflush` input: the four nat
 * chains declared (so flushed) and refilled, and the filter KUBE-NODEPORT-NON-LOCAL
 * chain. Pure; rule shape as `openOnePortal` / `openNodePort` (`iptablesCommonPortalArgs`
 * order), targets REDIRECT to the proxy port. Ports are written in the given order.
 */
export function renderPortals(portals: readonly Portal[]): string {
  const nat: string[] = ['*nat'];
  for (const c of NAT_CHAINS) nat.push(`:${c} - [0:0]`);
  const filter: string[] = ['*filter', `:${CHAIN_NODEPORT_NON_LOCAL} - [0:0]`];
  for (const p of portals) {
    const proto = p.protocol.toLowerCase();
    const common = (dport: number): string => `-m comment --comment ${quote(p.spn)} -p ${proto} -m ${proto} --dport ${dport}`;
    const to = `-j REDIRECT --to-ports ${p.proxyPort}`;
    const toHost = `-j REDIRECT --to-ports ${p.hostProxyPort ?? p.proxyPort}`;
    const vip = `${p.clusterIP}/${p.clusterIP.includes(':') ? 128 : 32}`;
    nat.push(`-A ${CHAIN_PORTALS_CONTAINER} ${common(p.port)} -d ${vip} ${to}`);
    nat.push(`-A ${CHAIN_PORTALS_HOST} ${common(p.port)} -d ${vip} ${toHost}`);
    for (const ip of p.externalIPs) {
      const dst = `${ip}/${ip.includes(':') ? 128 : 32}`;
      nat.push(`-A ${CHAIN_PORTALS_CONTAINER} ${common(p.port)} -d ${dst} ${to}`);
      nat.push(`-A ${CHAIN_PORTALS_HOST} ${common(p.port)} -d ${dst} -m addrtype --dst-type LOCAL ${toHost}`);
    }
    if (p.nodePort !== 0) {
      nat.push(`-A ${CHAIN_NODEPORT_CONTAINER} ${common(p.nodePort)} ${to}`);
      nat.push(`-A ${CHAIN_NODEPORT_HOST} ${common(p.nodePort)} ${toHost}`);
      // After REDIRECT the packet's port is the proxy port (iptablesNonLocalNodePortArgs).
      filter.push(`-A ${CHAIN_NODEPORT_NON_LOCAL} ${common(p.proxyPort)} -m state --state NEW -j ACCEPT`);
    }
  }
  nat.push('COMMIT');
  filter.push('COMMIT');
  return `${nat.join('\n')}\n${filter.join('\n')}\n`;
}

/** Comments double-quoted, as kube-proxy writes them (SPNs never contain quotes). */
function quote(s: string): string {
  return `"${s.replace(/["\\]/g, '')}"`;
}

function iptablesCmd(family: Family): string {
  return family === 6 ? 'ip6tables' : 'iptables';
}

/** `iptablesInit`'s EnsureRule for each jump: `-C`, and `-I`/`-A` only when missing. */
async function ensureJumps(run: Exec, family: Family): Promise<void> {
  const cmd = iptablesCmd(family);
  for (const j of PORTAL_JUMPS) {
    const rule = [j.chain, ...j.args, '-j', j.target];
    const check = await run(cmd, ['--wait', '-t', j.table, '-C', ...rule]);
    if (check.code === 0) continue;
    const add = await run(cmd, ['--wait', '-t', j.table, j.prepend ? '-I' : '-A', ...rule]);
    if (add.code !== 0) throw new Error(`${cmd} -t ${j.table} ${j.prepend ? '-I' : '-A'} ${j.chain} -j ${j.target}: ${firstLine(add.stderr) || `exit ${add.code}`}`);
  }
}

/** Undefined when the family's nat table can be listed; else the tool's error line. */
async function natUsable(run: Exec, family: Family): Promise<string | undefined> {
  const cmd = iptablesCmd(family);
  const r = await run(cmd, ['--wait', '-t', 'nat', '-S', 'OUTPUT'], undefined, 10_000);
  return r.code === 0 ? undefined : firstLine(r.stderr) || `${cmd} exit ${r.code}`;
}

/**
 * Remove the jumps (every copy) and then the chains, in both families (kube-proxy's
 * `CleanupLeftovers` for userspace). Absent jumps and chains are fine; a family whose
 * nat table cannot be listed (tool missing, IPv6 off) is skipped, since nothing can be
 * installed there. Returns what failed otherwise.
 */
export async function cleanupPortals(run: Exec = defaultExec): Promise<string[]> {
  const errors: string[] = [];
  for (const family of [4, 6] as const) {
    if ((await natUsable(run, family)) !== undefined) continue;
    const cmd = iptablesCmd(family);
    for (const j of PORTAL_JUMPS) {
      const rule = [j.chain, ...j.args, '-j', j.target];
      // Every copy (a crashed run, or two); bounded anyway.
      for (let i = 0; i < 16; i++) {
        const r = await run(cmd, ['--wait', '-t', j.table, '-D', ...rule]);
        if (r.code !== 0) break;
      }
    }
    // Declaring a chain creates or flushes it, so -X works whether or not it existed.
    const text = [
      '*nat',
      ...NAT_CHAINS.map((c) => `:${c} - [0:0]`),
      ...NAT_CHAINS.map((c) => `-X ${c}`),
      'COMMIT',
      '*filter',
      `:${CHAIN_NODEPORT_NON_LOCAL} - [0:0]`,
      `-X ${CHAIN_NODEPORT_NON_LOCAL}`,
      'COMMIT',
      '',
    ].join('\n');
    const restore = family === 6 ? 'ip6tables-restore' : 'iptables-restore';
    const r = await run(restore, ['--wait', '--noflush'], text);
    if (r.code !== 0) errors.push(`${restore}: ${firstLine(r.stderr) || `exit ${r.code}`}`);
  }
  return errors;
}
