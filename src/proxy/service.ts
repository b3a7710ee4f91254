/**
 * The service proxy beside (or instead of) DNS: one ProxyView per cluster store, kept
 * current from the store's change notices, feeding the mode in use. Sources are the
 * same StoreProvider the DNS node reads, so `serve --proxy` has one watch and one view.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { ClusterStore } from '../cluster/store.js';
import type { StoreProvider } from '../cluster/provider.js';
import { ipFamily } from '../net/ip.js';
import type { RulesBackend } from './backend.js';
import { requireNetAdmin } from './caps.js';
import { exec as defaultExec, type Exec } from './exec.js';
import { IptablesBackend } from './iptables-backend.js';
import type { ProxyMetrics } from './metrics.js';
import { NftablesBackend } from './nftables-backend.js';
import { RulesProxier } from './rules-proxier.js';
import type { Family, ProxyPort, ProxySettings, RulesOptions } from './types.js';
import { UserspaceProxier } from './userspace/proxier.js';
import { mergedPorts, ProxyView } from './view.js';

export const PROXY_MODES = ['userspace', 'iptables', 'nftables'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];

export interface ProxyServiceOptions {
  readonly mode: ProxyMode;
  readonly provider: StoreProvider;
  readonly config: ProxySettings;
  /** `--node-name`; else `proxy.nodeName`, $NODE_NAME, the hostname. */
  readonly nodeName?: string | undefined;
  /** Service CIDRs are authoritative (embedded registry): nftables drops unallocated ClusterIPs in them. */
  readonly serviceCIDRsKnown: boolean;
  readonly log: Logger;
  readonly metrics?: ProxyMetrics;
  readonly exec?: Exec;
}

export function resolveNodeName(flag: string | undefined, config: ProxySettings, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return flag;
  if (config.proxy.nodeName !== '') return config.proxy.nodeName;
  const fromEnv = env.NODE_NAME;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return hostname().toLowerCase();
}

const inFamily = (family: Family) => (cidr: string) => (ipFamily(cidr.split('/')[0]!) === 'IPv6' ? 6 : 4) === family;

/** The renderers' options for one family, from the configuration. */
export function rulesOptions(config: ProxySettings, family: Family, serviceCIDRsKnown: boolean): RulesOptions {
  return {
    family,
    clusterCIDRs: config.proxy.clusterCIDR.filter(inFamily(family)),
    masqueradeAll: config.proxy.masqueradeAll,
    nodePortAddresses: config.proxy.nodePortAddresses.filter(inFamily(family)),
    serviceCIDRs: serviceCIDRsKnown ? config.serviceCIDRs.filter(inFamily(family)) : [],
  };
}

export function rulesBackend(mode: 'iptables' | 'nftables', opts: RulesOptions, exec?: Exec): RulesBackend {
  const o = exec === undefined ? opts : { ...opts, exec };
  return mode === 'iptables' ? new IptablesBackend(o) : new NftablesBackend(o);
}

export class ProxyService {
  readonly mode: ProxyMode;
  readonly nodeName: string;
  readonly #opts: ProxyServiceOptions;
  readonly #log: Logger;
  #views: { zone: string; store: ClusterStore; view: ProxyView; off: () => void }[] = [];
  #offZones: (() => void) | undefined;
  #rules: RulesProxier | undefined;
  #userspace: UserspaceProxier | undefined;
  #userspaceChain: Promise<void> = Promise.resolve();
  #userspaceReady = false;
  #started = false;
  #stopped = false;
  #syncTimer: NodeJS.Timeout | undefined;

  constructor(opts: ProxyServiceOptions) {
    this.#opts = opts;
    this.mode = opts.mode;
    this.#log = opts.log.child({ component: 'proxy', mode: opts.mode });
    this.nodeName = resolveNodeName(opts.nodeName, opts.config);
  }

  /**
   * Check permissions and tools (rejects with one clear error), then start syncing once
   * the sources have synced.
   */
  async start(): Promise<void> {
    requireNetAdmin(`the ${this.mode} proxy`);
    const exec = this.#opts.exec ?? defaultExec;
    const { config } = this.#opts;
    if (this.mode === 'userspace') {
      this.#userspace = new UserspaceProxier({
        udpIdleTimeoutMs: config.proxy.udpIdleTimeout,
        maxConnections: config.proxy.maxConnections,
        syncPeriodMs: config.proxy.syncPeriod,
        log: this.#log,
        exec,
        ...(this.#opts.metrics === undefined ? {} : { metrics: this.#opts.metrics }),
      });
      await this.#userspace.preflight();
    } else {
      const backends: RulesBackend[] = [];
      for (const family of [4, 6] as const) {
        const b = rulesBackend(this.mode, rulesOptions(config, family, this.#opts.serviceCIDRsKnown), exec);
        try {
          await b.preflight();
          backends.push(b);
        } catch (err) {
          // IPv4 is required; IPv6 may be switched off in this kernel or namespace.
          if (family === 4) throw err;
          this.#log.warn({ error: (err as Error).message }, 'IPv6 proxy rules unavailable here; proxying IPv4 only');
        }
      }
      this.#rules = new RulesProxier({
        backends,
        ports: (family) => mergedPorts(this.#views.map((v) => v.view), family),
        minSyncPeriodMs: config.proxy.minSyncPeriod,
        syncPeriodMs: config.proxy.syncPeriod,
        log: this.#log,
        exec,
        ...(this.#opts.metrics === undefined ? {} : { metrics: this.#opts.metrics }),
      });
    }
    // As kube-proxy on start: another mode's rules (a previous run with --keep-rules, or a
    // crash) would still catch Service traffic first, so they go.
    for (const e of await cleanupModes(PROXY_MODES.filter((m) => m !== this.mode), config, exec)) {
      this.#log.warn({ error: e }, 'leftover rules of another proxy mode could not all be removed');
    }
    // kube-proxy: no sync until the Service and EndpointSlice informers have synced.
    // Waited for in the background: DNS (serve --proxy) answers meanwhile.
    const begin = (): void => {
      if (this.#stopped) return;
      this.#attach();
      this.#started = true;
      const first = this.#rules !== undefined ? this.#rules.start() : Promise.resolve(this.#pushUserspace());
      first.then(
        () => this.#log.info({ node: this.nodeName, services: this.#views.reduce((n, v) => n + v.view.size, 0) }, 'service proxy started'),
        (err: unknown) => this.#log.error({ error: (err as Error).message }, 'service proxy failed to start'),
      );
    };
    if (this.#opts.provider.synced()) {
      begin();
      return;
    }
    this.#syncTimer = setInterval(() => {
      if (!this.#opts.provider.synced()) return;
      clearInterval(this.#syncTimer);
      this.#syncTimer = undefined;
      begin();
    }, 100);
  }

  /** The first sync has applied the initial view (readiness). */
  ready(): boolean {
    if (!this.#started) return false;
    if (this.#rules !== undefined) return this.#rules.syncs > 0;
    return this.#userspaceReady;
  }

  /** Resolves when every change so far has been applied (tests). */
  async settled(): Promise<void> {
    if (this.#rules !== undefined) await this.#rules.idle();
    await this.#userspaceChain;
  }

  /** The current view (both families), for `clusterdns rules` and tests. */
  ports(family?: Family): ProxyPort[] {
    return mergedPorts(
      this.#views.map((v) => v.view),
      family,
    );
  }

  get userspace(): UserspaceProxier | undefined {
    return this.#userspace;
  }

  #attach(): void {
    const provider = this.#opts.provider;
    const rebuild = (): void => {
      const zones = provider.zones();
      const keep = this.#views.filter((v) => zones.includes(v.zone));
      for (const v of this.#views) if (!keep.includes(v)) v.off();
      const removed = this.#views.filter((v) => !keep.includes(v)).flatMap((v) => v.view.ports().map((p) => p.service));
      this.#views = keep;
      const added: string[] = [];
      for (const zone of zones) {
        if (this.#views.some((v) => v.zone === zone)) continue;
        const store = provider.storeFor(zone);
        const view = new ProxyView(store, this.nodeName);
        const off = store.onChange((change) => this.#changed(view.update(change.services)));
        this.#views.push({ zone, store, view, off });
        added.push(...view.ports().map((p) => p.service));
      }
      if (removed.length + added.length > 0) this.#changed(new Set([...removed, ...added]));
    };
    rebuild();
    this.#offZones = provider.onZonesChanged(rebuild);
  }

  #changed(services: Set<string>): void {
    if (services.size === 0) return;
    if (this.#rules !== undefined) this.#rules.changed(services);
    else this.#pushUserspace();
  }

  /** Userspace updates run one at a time, in order; endpoint changes apply at once. */
  #pushUserspace(): void {
    const u = this.#userspace;
    if (u === undefined) return;
    this.#userspaceChain = this.#userspaceChain
      .then(() => u.update(this.ports()))
      .then(
        () => {
          this.#userspaceReady = true;
        },
        (err: unknown) => {
          this.#log.error({ error: (err as Error).message }, 'userspace proxy update failed; retrying at the next change or sync period');
          setTimeout(() => this.#pushUserspace(), this.#opts.config.proxy.syncPeriod).unref();
        },
      );
  }

  /** Stop; with `cleanup` (the default) remove everything installed. */
  async stop(cleanup = true): Promise<void> {
    this.#stopped = true;
    if (this.#syncTimer !== undefined) clearInterval(this.#syncTimer);
    this.#offZones?.();
    for (const v of this.#views) v.off();
    this.#views = [];
    await this.#rules?.stop(cleanup);
    if (this.#userspace !== undefined) {
      await this.#userspaceChain;
      await this.#userspace.close(cleanup);
    }
  }
}

/** Remove these modes' rules, both families; returns what could not be removed. */
async function cleanupModes(modes: readonly ProxyMode[], config: ProxySettings, exec: Exec): Promise<string[]> {
  const errors: string[] = [];
  for (const family of [4, 6] as const) {
    const opts = rulesOptions(config, family, false);
    for (const mode of modes) {
      if (mode === 'userspace') continue;
      const b = rulesBackend(mode, opts, exec);
      try {
        await b.cleanup();
      } catch (err) {
        errors.push(`${mode} ipv${family}: ${(err as Error).message}`);
      }
    }
  }
  if (modes.includes('userspace')) {
    try {
      await UserspaceProxier.cleanupLeftovers(exec);
    } catch (err) {
      errors.push(`userspace: ${(err as Error).message}`);
    }
  }
  return errors;
}

/** Remove what any mode may have left (kube-proxy --cleanup): both families, all modes. */
export async function cleanupAll(config: ProxySettings, log: Logger, exec: Exec = defaultExec): Promise<string[]> {
  requireNetAdmin('clusterdns proxy --cleanup');
  const errors = await cleanupModes(PROXY_MODES, config, exec);
  for (const e of errors) log.warn({ error: e }, 'cleanup incomplete');
  return errors;
}
