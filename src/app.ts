/**
 * Composition root and process model.
 *
 * - One process (default): the sources, a DnsNode answering from their stores, and
 *   the HTTP operations endpoint.
 * - `--workers N`: the primary runs the sources (one API watch, one allocator) and
 *   the HTTP endpoint; N workers each run a DnsNode on the shared sockets, fed with
 *   the primary's store changes (replica.ts). Metrics are summed across workers.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { HostPort } from './net/ip.js';
import { createNotifier, DnsNode } from './node.js';
import { onStoreChanges } from './server/notify.js';
import { gauge, Metrics } from './ops/metrics.js';
import { MEMORY_FLAGS, startupDone, type MemoryProfile } from './ops/memory.js';
import { ReplicaFeed, ReplicaProvider, type ReplicaMessage } from './replica.js';
import { serveHttp, type OpsServer } from './server/http.js';
import type { Listener } from './server/listen.js';
import { fileSources, type Sources } from './sources.js';
import { createMirror } from './registry/mirror.js';
import { ipamMetrics } from './registry/metrics.js';
import type { ClusterZone } from './zone/zone.js';
import type { ProxyMode, ProxyService } from './proxy/service.js';

export type { HostPort };
export { zoneOptions } from './node.js';

/** The Kubernetes API as the source (instead of zones/). */
export interface KubeOptions {
  readonly kubeconfig: string | undefined;
  readonly context: string | undefined;
  readonly inCluster: boolean;
  /** The cluster domain served from the API. */
  readonly domain: string;
}

export interface ServeOptions {
  readonly config: Config;
  readonly zonesDir: string;
  /** Embedded registry state (allocations); default `.clusterdns/` next to zonesDir. */
  readonly stateDir?: string;
  /** Watch the API instead of reading zonesDir. */
  readonly kube?: KubeOptions | undefined;
  readonly dns: readonly HostPort[];
  readonly http: HostPort | undefined;
  readonly upstreams: readonly HostPort[];
  readonly noUpstream: boolean;
  /** DNS worker processes (1: answer in this process). */
  readonly workers?: number;
  /** Run the service proxy in this process too (`--proxy MODE`). */
  readonly proxy?: ProxyOptions | undefined;
}

export interface ProxyOptions {
  readonly mode: ProxyMode;
  /** `--node-name`. */
  readonly nodeName?: string | undefined;
}

export interface Server {
  /** Bound DNS addresses (actual ports). */
  readonly addresses: readonly { host: string; port: number }[];
  readonly http: OpsServer | undefined;
  /** The in-process DNS node (undefined in a `--workers` primary). */
  readonly node: DnsNode | undefined;
  /** The service proxy, with `--proxy`. */
  readonly proxy?: ProxyService | undefined;
  readonly zones: () => readonly ClusterZone[];
  readonly zoneNames: () => string[];
  /** Apply a new configuration (SIGHUP, config file edit). */
  reload(config: Config): boolean;
  /** Lame-duck (unhealthy, still answering) for `config.lameduck` seconds, then close. */
  shutdown(): Promise<void>;
  close(): Promise<void>;
}

/** Keys a reload cannot apply to a running process: say so instead of ignoring them silently. */
function warnRestartOnly(log: Logger, prev: Config, next: Config, kube = false): void {
  if (prev.memory !== next.memory) {
    log.warn({ running: prev.memory, configured: next.memory }, 'memory profile changes take effect at the next restart');
  }
  // The Kubernetes source is built once (its watches' deadlines with it); a reload does not rebuild it.
  if (prev.watchTimeout !== next.watchTimeout) {
    log.warn({ running: prev.watchTimeout, configured: next.watchTimeout }, 'watchTimeout changes take effect at the next restart');
  }
  // The API source decides at start whether to watch ServiceImports: a zone added now is served, empty.
  if (kube && prev.multicluster.length === 0 && next.multicluster.length > 0) {
    log.warn({ configured: next.multicluster }, 'multicluster zones are served from now on, but ServiceImports are watched only after a restart');
  }
  // The API source keeps endpoints' topology zones only when zonal is on at start: until a
  // restart every endpoint is zoneless, so pin names answer NODATA and prefer names every endpoint.
  if (kube && !prev.zonal && next.zonal) {
    log.warn({ configured: next.zonal }, 'zonal names are served from now on, but endpoint zones are kept only after a restart');
  }
}

async function createSources(opts: ServeOptions, log: Logger): Promise<Sources> {
  if (opts.kube !== undefined) {
    // Loaded only when used (client-node's Watch, the kubeconfig reader, the watch loops).
    const { kubeSources } = await import('./cluster/kube/index.js');
    const src = kubeSources({ ...opts.kube, config: opts.config, proxy: opts.proxy !== undefined }, log);
    // Kubernetes mode: the allocator mirrors the cluster's ClusterIPs read-only and
    // reports anomalies (issue #4); it never allocates.
    const mirror = createMirror(src.storeFor(opts.kube.domain), opts.config, log, { zone: opts.kube.domain });
    const start = src.start.bind(src);
    const stop = src.stop.bind(src);
    return Object.assign(src, {
      ipam: { status: () => [mirror.status()] },
      start: async () => {
        await start();
        mirror.start();
      },
      stop: async () => {
        mirror.stop();
        await stop();
      },
    });
  }
  return fileSources({ zonesDir: opts.zonesDir, stateDir: opts.stateDir, config: opts.config }, log);
}

function sourceMetrics(metrics: Metrics, sources: Sources): void {
  const ipam = sources.ipam;
  if (ipam !== undefined) for (const m of ipamMetrics(() => ipam.status())) metrics.register(m);
  const stores = () => sources.zones().map((z) => ({ zone: z, store: sources.storeFor(z) }));
  metrics.register(
    gauge('clusterdns_kubernetes_objects', 'Objects tracked, by zone and kind.', () =>
      stores().flatMap(({ zone, store }) => [
        { labels: { zone, kind: 'Service' }, value: store.services.size },
        { labels: { zone, kind: 'EndpointSlice' }, value: store.slices.size },
        { labels: { zone, kind: 'Endpoints' }, value: store.legacyEndpoints.size },
        { labels: { zone, kind: 'Pod' }, value: store.pods.size },
        { labels: { zone, kind: 'Namespace' }, value: store.namespaces.size },
        { labels: { zone, kind: 'ServiceImport' }, value: store.serviceImports.size },
      ]),
    ),
  );
  metrics.register(
    gauge('clusterdns_source_last_change_timestamp_seconds', 'Unix time of the last DNS-visible change (the SOA serial), by zone.', () =>
      stores().map(({ zone, store }) => ({ labels: { zone }, value: store.lastChange })),
    ),
  );
}

/**
 * The service proxy on these sources (loaded only when asked for). Rejects when it
 * cannot run here (no CAP_NET_ADMIN, tools missing): the caller stops and says why.
 */
async function startProxy(opts: { readonly config: Config; readonly kube?: KubeOptions | undefined }, proxy: ProxyOptions, sources: Sources, metrics: Metrics, log: Logger): Promise<ProxyService> {
  const { ProxyService } = await import('./proxy/service.js');
  const { ProxyMetrics } = await import('./proxy/metrics.js');
  const pm = new ProxyMetrics();
  pm.register(metrics);
  const svc = new ProxyService({
    mode: proxy.mode,
    provider: sources,
    config: opts.config,
    nodeName: proxy.nodeName,
    // The embedded registry owns the service CIDRs; with the API they are the cluster's.
    serviceCIDRsKnown: opts.kube === undefined,
    log,
    metrics: pm,
  });
  await svc.start();
  return svc;
}

/** Before loading any cluster data: a proxy without CAP_NET_ADMIN stops at once, with one line. */
async function checkProxyPermission(proxy: ProxyOptions): Promise<void> {
  const { requireNetAdmin } = await import('./proxy/caps.js');
  requireNetAdmin(`the ${proxy.mode} proxy`);
}

/** Run `fn` once the sources have synced (now, or when they do; checked every second). */
function whenSynced(sources: { synced(): boolean }, fn: () => void): void {
  if (sources.synced()) {
    fn();
    return;
  }
  const t = setInterval(() => {
    if (!sources.synced()) return;
    clearInterval(t);
    fn();
  }, 1000);
  t.unref();
}

function serverLabel(dns: readonly HostPort[]): string {
  const first = dns[0];
  return first === undefined ? 'dns://:53' : `dns://${first.host}:${first.port}`;
}

export async function startServer(opts: ServeOptions, log: Logger): Promise<Server> {
  if (opts.proxy !== undefined) await checkProxyPermission(opts.proxy);
  if ((opts.workers ?? 1) > 1) return startPrimary(opts, log);
  let config = opts.config;
  const metrics = new Metrics(serverLabel(opts.dns));
  const sources = await createSources(opts, log);
  await sources.start();
  sourceMetrics(metrics, sources);
  const node = new DnsNode(config, opts.dns, log, metrics);
  node.attach(sources);
  node.startNotify();
  whenSynced(sources, () => startupDone(config.memory));
  let healthy = true;
  let http: OpsServer | undefined;
  let proxy: ProxyService | undefined;
  try {
    if (opts.proxy !== undefined) proxy = await startProxy(opts, opts.proxy, sources, metrics, log);
    await node.listen(opts.dns);
    await node.forward({ upstreams: opts.upstreams, noUpstream: opts.noUpstream, dns: node.listeners.map((l) => ({ host: l.host, port: l.udpPort })) });
    if (opts.http !== undefined) {
      http = await serveHttp(opts.http.host, opts.http.port, {
        healthy: () => healthy,
        ready: () => sources.synced() && healthy && (proxy?.ready() ?? true),
        routes: new Map([['/metrics', async () => ({ type: metrics.contentType, body: await metrics.text() })]]),
      });
    }
  } catch (err) {
    await proxy?.stop();
    await node.close();
    await sources.stop();
    throw err;
  }
  const close = async (): Promise<void> => {
    await proxy?.stop();
    await node.close();
    await http?.close();
    await sources.stop();
  };
  return {
    addresses: node.listeners.map((l: Listener) => ({ host: l.host, port: l.udpPort })),
    http,
    node,
    proxy,
    zones: () => node.zones(),
    zoneNames: () => node.zones().map((z) => z.name),
    reload: (next) => {
      try {
        node.setConfig(next);
        warnRestartOnly(log, config, next, opts.kube !== undefined);
        config = next;
        log.info({ ttl: next.ttl, pods: next.pods }, 'configuration reloaded');
        return true;
      } catch (err) {
        log.error({ err }, 'configuration reload failed; the previous configuration stays');
        return false;
      }
    },
    shutdown: async () => {
      healthy = false;
      await lameDuck(config, log);
      await close();
    },
    close,
  };
}

export interface ProxyNodeOptions {
  readonly config: Config;
  readonly zonesDir: string;
  readonly stateDir?: string;
  readonly kube?: KubeOptions | undefined;
  readonly http: HostPort | undefined;
  readonly proxy: ProxyOptions;
}

export interface ProxyNode {
  readonly http: OpsServer | undefined;
  readonly proxy: ProxyService;
  /** Stop; `cleanup` false leaves the installed rules in place (`--keep-rules`). */
  close(cleanup?: boolean): Promise<void>;
}

/** `clusterdns proxy`: the sources, the proxy and the HTTP endpoint; no DNS listener. */
export async function startProxyNode(opts: ProxyNodeOptions, log: Logger): Promise<ProxyNode> {
  await checkProxyPermission(opts.proxy);
  const metrics = new Metrics(`proxy://${opts.proxy.mode}`);
  const sources = await createSources({ ...opts, dns: [], upstreams: [], noUpstream: true }, log);
  await sources.start();
  sourceMetrics(metrics, sources);
  let proxy: ProxyService;
  try {
    proxy = await startProxy(opts, opts.proxy, sources, metrics, log);
  } catch (err) {
    await sources.stop();
    throw err;
  }
  let http: OpsServer | undefined;
  let healthy = true;
  try {
    if (opts.http !== undefined) {
      http = await serveHttp(opts.http.host, opts.http.port, {
        healthy: () => healthy,
        ready: () => sources.synced() && proxy.ready(),
        routes: new Map([['/metrics', async () => ({ type: metrics.contentType, body: await metrics.text() })]]),
      });
    }
  } catch (err) {
    await proxy.stop();
    await sources.stop();
    throw err;
  }
  return {
    http,
    proxy,
    close: async (cleanup = true) => {
      healthy = false;
      await proxy.stop(cleanup);
      await http?.close();
      await sources.stop();
    },
  };
}

/** The sources alone, synced (for `clusterdns rules`): the caller stops them. */
export async function syncedSources(opts: Omit<ProxyNodeOptions, 'http' | 'proxy'>, log: Logger, timeoutMs = 60_000): Promise<Sources> {
  const sources = await createSources({ ...opts, dns: [], http: undefined, upstreams: [], noUpstream: true }, log);
  await sources.start();
  const deadline = Date.now() + timeoutMs;
  while (!sources.synced()) {
    if (Date.now() > deadline) {
      await sources.stop();
      throw new Error(`the cluster source did not sync within ${timeoutMs / 1000} s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return sources;
}

async function lameDuck(config: Config, log: Logger): Promise<void> {
  if (config.lameduck <= 0) return;
  log.info({ seconds: config.lameduck }, 'lame duck: still answering, /healthz failing');
  await new Promise((r) => setTimeout(r, config.lameduck * 1000));
}

/** Messages between the primary and its workers (besides replica messages). */
type ControlMessage =
  | { readonly t: 'hello' }
  | { readonly t: 'init'; readonly config: Config; readonly dns: readonly HostPort[]; readonly upstreams: readonly HostPort[]; readonly noUpstream: boolean }
  | { readonly t: 'config'; readonly config: Config }
  | { readonly t: 'listening'; readonly addresses: { host: string; port: number }[] }
  | { readonly t: 'failed'; readonly error: string };

async function startPrimary(opts: ServeOptions, log: Logger): Promise<Server> {
  let config = opts.config;
  const n = opts.workers ?? 1;
  const metrics = new Metrics(serverLabel(opts.dns));
  const sources = await createSources(opts, log);
  await sources.start();
  sourceMetrics(metrics, sources);
  let proxy: ProxyService | undefined;
  try {
    if (opts.proxy !== undefined) proxy = await startProxy(opts, opts.proxy, sources, metrics, log);
  } catch (err) {
    await sources.stop();
    throw err;
  }
  // Workers get the memory profile's V8 flags on their command line (src/ops/memory.ts).
  cluster.setupPrimary({ serialization: 'advanced', execArgv: [...process.execArgv, ...MEMORY_FLAGS[config.memory]] });
  const workers = new Set<Worker>();
  const ready = new Set<Worker>();
  let closing = false;
  let addresses: { host: string; port: number }[] = [];
  const broadcast = (m: ReplicaMessage | ControlMessage): void => {
    for (const w of ready) if (w.isConnected()) w.send(m);
  };
  const feed = new ReplicaFeed(sources, broadcast);
  // NOTIFY from here, where the stores change, not from every worker. Without the
  // zones' SOA (workers build them), so a secondary asks for the serial (RFC 1996 §3.7
  // makes it optional). A change can concern the multicluster zones too: they are told
  // every time (a NOTIFY for an unchanged serial costs the secondary one SOA query).
  const notifier = createNotifier(config, log, metrics, () => undefined);
  const unwatchStores = onStoreChanges(sources, (zone) => {
    notifier.changed(zone);
    for (const mc of config.multicluster) notifier.changed(mc);
  });
  let lastSynced = sources.synced();
  const syncTimer = setInterval(() => {
    const s = sources.synced();
    if (s !== lastSynced) feed.synced((lastSynced = s));
  }, 200);

  // Ports: with port 0, the first worker's bind picks one and the cluster module
  // gives the others the same shared handle.
  const fork = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork({ CLUSTERDNS_WORKER: '1' });
      workers.add(w);
      w.on('message', (m: ControlMessage) => {
        if (m.t === 'hello') {
          // The worker's module graph is loaded and listening for messages.
          w.send({ t: 'init', config, dns: opts.dns, upstreams: opts.upstreams, noUpstream: opts.noUpstream } satisfies ControlMessage);
        } else if (m.t === 'listening') {
          addresses = m.addresses;
          ready.add(w);
          // Catch up: every zone's snapshot, then the live stream.
          for (const msg of feed.snapshot()) w.send(msg);
          resolve();
        } else if (m.t === 'failed') {
          reject(new Error(m.error));
        }
      });
      w.on('exit', (code, signal) => {
        workers.delete(w);
        ready.delete(w);
        if (closing) return;
        log.error({ worker: w.id, code, signal }, 'DNS worker died; starting another');
        setTimeout(() => {
          if (!closing) fork().catch((err: unknown) => log.error({ err }, 'worker restart failed'));
        }, 500);
      });
    });
  const stopWorkers = async (): Promise<void> => {
    closing = true;
    await Promise.all(
      [...workers].map(
        (w) =>
          new Promise<void>((r) => {
            w.once('exit', () => r());
            w.kill('SIGKILL');
          }),
      ),
    );
  };
  try {
    // The first worker binds (and reports errors such as an address in use) before the rest.
    await fork();
    await Promise.all(Array.from({ length: n - 1 }, () => fork()));
  } catch (err) {
    clearInterval(syncTimer);
    unwatchStores();
    await notifier.close();
    feed.close();
    await stopWorkers();
    await proxy?.stop();
    await sources.stop();
    throw err;
  }
  const aggregator = new AggregatorRegistry();
  let healthy = true;
  let http: OpsServer | undefined;
  if (opts.http !== undefined) {
    http = await serveHttp(opts.http.host, opts.http.port, {
      healthy: () => healthy,
      ready: () => sources.synced() && healthy && ready.size === n && (proxy?.ready() ?? true),
      routes: new Map([
        [
          '/metrics',
          async () => {
            const fromWorkers = await aggregator.clusterMetrics();
            // The primary's own metrics: sources and the allocator live here, not in the workers.
            let body = `${fromWorkers}\n`;
            for (const m of metrics.registry.getMetricsAsArray()) {
              if (/^clusterdns_(kubernetes_objects|source_last_change|ipam_|proxy_|notify_)/.test(m.name)) body += `${await metrics.registry.getSingleMetricAsString(m.name)}\n`;
            }
            return { type: aggregator.contentType, body };
          },
        ],
      ]),
    });
  }
  const close = async (): Promise<void> => {
    clearInterval(syncTimer);
    unwatchStores();
    await notifier.close();
    feed.close();
    await stopWorkers();
    await proxy?.stop();
    await http?.close();
    await sources.stop();
  };
  return {
    addresses,
    http,
    node: undefined,
    proxy,
    zones: () => [],
    zoneNames: () => sources.zones(),
    reload: (next) => {
      warnRestartOnly(log, config, next, opts.kube !== undefined);
      config = next;
      broadcast({ t: 'config', config: next });
      // A reload rebuilds the zones (TTL, namespaces, ...): a new serial in every worker.
      notifier.setTargets(next.transferNotify);
      for (const z of [...sources.zones(), ...next.multicluster]) notifier.changed(z);
      log.info({ ttl: next.ttl, pods: next.pods, workers: ready.size }, 'configuration reloaded');
      return true;
    },
    shutdown: async () => {
      healthy = false;
      await lameDuck(config, log);
      await close();
    },
    close,
  };
}

/** A `--workers` worker: a DnsNode fed by the primary. Never returns. */
export function runWorker(log: Logger): void {
  const replica = new ReplicaProvider();
  let node: DnsNode | undefined;
  /** The profile the primary started this worker with (its execArgv). */
  let memory: MemoryProfile | undefined;
  const send = (m: ControlMessage): void => {
    process.send?.(m);
  };
  process.on('message', (m: ReplicaMessage | ControlMessage) => {
    try {
      if (m.t === 'init') {
        const metrics = new Metrics(serverLabel(m.dns));
        // Constructing one installs prom-client's worker-side reply to the primary's scrape.
        new AggregatorRegistry();
        AggregatorRegistry.setRegistries([metrics.registry]);
        node = new DnsNode(m.config, m.dns, log, metrics);
        node.attach(replica);
        memory = m.config.memory;
        if (replica.synced()) startupDone(memory);
        const n = node;
        n.listen(m.dns, true)
          .then(async () => {
            const addresses = n.listeners.map((l) => ({ host: l.host, port: l.udpPort }));
            await n.forward({ upstreams: m.upstreams, noUpstream: m.noUpstream, dns: addresses });
            send({ t: 'listening', addresses });
          })
          .then(
          () => {},
          (err: unknown) => {
            send({ t: 'failed', error: (err as Error).message });
            setTimeout(() => process.exit(2), 50);
          },
        );
      } else if (m.t === 'config') {
        node?.setConfig(m.config);
      } else if (m.t === 'zones' || m.t === 'snapshot' || m.t === 'ops' || m.t === 'synced') {
        replica.handle(m);
        if (m.t === 'synced' && m.synced && memory !== undefined) startupDone(memory);
      }
    } catch (err) {
      log.error({ err }, 'worker message failed');
    }
  });
  // The primary going away means we go too; signals are the primary's to handle
  // (it lame-ducks, then stops the workers).
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => {});
  process.on('SIGINT', () => {});
  send({ t: 'hello' });
}
