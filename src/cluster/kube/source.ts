/**
 * KubeSource: the cluster as the Kubernetes API server sees it, kept in one ClusterStore.
 *
 * It lists and watches Namespaces, Services, discovery.k8s.io/v1 EndpointSlices (or, on
 * an API server that does not serve them, legacy v1 Endpoints: discovery is asked once at
 * start), when asked, Pods and, with `multicluster`, MCS-API ServiceImports (a CRD, see
 * `#discoverImports`) — one `ResourceWatcher` loop each — and writes slim
 * objects into `store` through `StoreWriter` (which implements `namespaceLabels`). The DNS
 * side reads only the store, so nothing in the answer path knows which source feeds it.
 *
 * Startup follows CoreDNS's `startup_timeout`: `start()` resolves when every resource has
 * completed its first full list, or after `startupTimeoutMs`, whichever comes first, and
 * never rejects; `synced()` says which it was, and the resolver turns NXDOMAIN into
 * SERVFAIL until it is true (a name we have not seen yet may well exist).
 *
 * When the API server is unreachable the store keeps the last known state and every loop
 * retries with backoff; the log gets one warning when the trouble starts and one line when
 * it ends (not one per retry). `status()` and the `on()` events expose the details for
 * metrics.
 */
import type { ClusterStore } from '../store.js';
import { ClusterStore as Store } from '../store.js';
import type { SourceLog } from '../../log.js';
import { Backoff, Pause } from './backoff.js';
import { type Channel, type ClientConfig, type ClientDescription, KubeConfigError, loadClientConfig } from './config.js';
import { Emitter } from './events.js';
import { describeError, getJSON, statusOf } from './http.js';
import {
  DISCOVERY_V1_PATH,
  endpointSlicesSpec,
  legacyEndpointsSpec,
  MCS_V1ALPHA1_PATH,
  namespacesSpec,
  podsSpec,
  serviceImportsSpec,
  servicesSpec,
  type ResourceSpec,
} from './resources.js';
import { labelSelectorError } from './selector.js';
import { ResourceWatcher, type ResourceStatus, type RestartReason } from './watcher.js';
import { StoreWriter } from './writer.js';

/**
 * 150 s, config `watchTimeout`'s default: the apiserver sends a bookmark on an open watch
 * (KEP-956) about once a minute (its watch cache's `defaultBookmarkFrequency`), so 2.5 of
 * those intervals of silence mean a dead connection (a NAT or proxy that dropped it
 * without a reset), not a quiet cluster. Each watch also asks the server to end it after
 * 50–90% of this (`timeoutSeconds`, watcher.ts), so a healthy quiet watch is renewed by
 * the server before the watchdog fires.
 */
export const DEFAULT_WATCH_TIMEOUT_MS = 150_000;

export interface KubeSourceOptions {
  /** Path of a kubeconfig file. */
  readonly kubeconfig?: string | undefined;
  /** Kubeconfig context (default: its current-context). */
  readonly context?: string | undefined;
  /** Use the pod's service account. Without kubeconfig or inCluster: client-node's default search. */
  readonly inCluster?: boolean | undefined;
  /** Test hook: prefix of the service-account directory. */
  readonly inClusterRoot?: string | undefined;
  /** Label selector on Services, EndpointSlices/Endpoints and Pods (CoreDNS `labels`). */
  readonly labels?: string | undefined;
  /** Label selector on Namespaces; others count as nonexistent (CoreDNS `namespace_labels`). */
  readonly namespaceLabels?: string | undefined;
  /** Watch Pods (`pods: verified`, `endpointPodNames` needs, embedded controllers). */
  readonly watchPods: boolean;
  /**
   * Watch multicluster.x-k8s.io/v1alpha1 ServiceImports (config `multicluster` not empty).
   * The slices that feed them come with the EndpointSlice watch anyway.
   */
  readonly multicluster?: boolean | undefined;
  /**
   * Keep endpoints' pod names (`targetRef.name`): only `endpointPodNames` reads them.
   * Default false: at 150k endpoints they are ~7 MB nobody asks for.
   */
  readonly endpointPodNames?: boolean | undefined;
  /** Keep endpoints' node names: the service proxy (internalTrafficPolicy: Local) reads them. */
  readonly endpointNodeNames?: boolean | undefined;
  /** Keep endpoints' topology zones: only `zonal` reads them (CoreDNS keeps them only then too). */
  readonly endpointZones?: boolean | undefined;
  /** start() resolves after this even if not synced (CoreDNS `startup_timeout`). Default 5000. */
  readonly startupTimeoutMs?: number | undefined;
  /**
   * Abandon and restart a watch silent for this long (config `watchTimeout`). Default
   * {@link DEFAULT_WATCH_TIMEOUT_MS}.
   */
  readonly watchTimeoutMs?: number | undefined;
  /** Deadline of one list page. Default 60,000. */
  readonly listTimeoutMs?: number | undefined;
  readonly backoff?: { readonly initialMs?: number; readonly maxMs?: number } | undefined;
  /** Objects per list page. Default 500 (EndpointSlices/Endpoints/Pods adapt to ~2 MiB pages). */
  readonly pageSize?: number | undefined;
  readonly log: SourceLog;
}

/** Events for metrics and logs. Listeners must be cheap; a throwing one is isolated. */
export interface KubeSourceEvents {
  /** A watch event was applied. */
  readonly event: { readonly resource: string; readonly type: string };
  /** A watch was started again after it ended. */
  readonly restart: { readonly resource: string; readonly reason: RestartReason };
  /** A list after the first one. */
  readonly relist: { readonly resource: string; readonly reason: string };
  /** A request failed; the loop waits `delayMs`. */
  readonly failure: { readonly resource: string; readonly error: string; readonly status: number | undefined; readonly delayMs: number };
  /** An object could not be converted and is not served. */
  readonly invalid: { readonly resource: string; readonly kind?: string; readonly namespace?: string; readonly name?: string; readonly reason: string };
  /** Every resource completed its first list. */
  readonly synced: { readonly ms: number };
  /** The API is unreachable or failing (some resource failed twice in a row); once per outage. */
  readonly outage: { readonly error: string };
  /** Every resource is healthy again after an outage. */
  readonly recovered: { readonly seconds: number; readonly failures: number };
}

export interface KubeSourceStatus {
  readonly synced: boolean;
  readonly client: ClientDescription;
  /** Which endpoints API is used; undefined until discovery answered. */
  readonly endpoints: 'EndpointSlice' | 'Endpoints' | undefined;
  /**
   * ServiceImports: `off` (no `multicluster`), `pending` (discovery not answered yet),
   * `absent` (the CRD is not installed: nothing to watch, checked again with backoff),
   * `watching`.
   */
  readonly serviceImports: ImportsState;
  /** True while some resource is failing (its last attempt failed). */
  readonly outage: boolean;
  /** Objects held out of the store because their namespace does not match namespaceLabels. */
  readonly parked: number;
  readonly resources: readonly ResourceStatus[];
}

export type ImportsState = 'off' | 'pending' | 'absent' | 'watching';

/** The ServiceImports collection's name in logs, events and status(). */
const IMPORTS = 'serviceimports';

export class KubeSource {
  /** The cluster view this source writes (one store: the cluster domain is the caller's choice). */
  readonly store: ClusterStore;
  readonly #opts: KubeSourceOptions;
  readonly #log: SourceLog;
  readonly #client: ClientConfig;
  readonly #writer: StoreWriter;
  readonly #events = new Emitter<KubeSourceEvents>();
  readonly #watchers: ResourceWatcher[] = [];
  #endpoints: 'EndpointSlice' | 'Endpoints' | undefined;
  readonly #discoveryPause = new Pause();
  #discovery: Promise<void> | undefined;
  #discoveryChannel: Channel | undefined;
  #imports: ImportsState = 'off';
  #importsDiscovery: Promise<void> | undefined;
  readonly #importsPause = new Pause();
  #importsChannel: Channel | undefined;
  /** The ServiceImports watch got 404 (the CRD was removed): warned once until it is back. */
  #importsGone = false;
  #started: Promise<void> | undefined;
  #startedAt = 0;
  #startTimer: NodeJS.Timeout | undefined;
  #resolveStart: (() => void) | undefined;
  #synced = false;
  #stopped = false;
  /** Resources currently failing → their last error and consecutive failures. */
  readonly #failing = new Map<string, { error: string; count: number }>();
  #outageSince: number | undefined;
  #outageFailures = 0;
  #outageLogged = false;

  /**
   * Loads the client configuration. Throws KubeConfigError (bad kubeconfig path, unknown
   * context, no in-cluster environment, invalid label selector): configuration mistakes
   * belong on the command line, not in a retry loop.
   */
  constructor(opts: KubeSourceOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    for (const [name, sel] of [['labels', opts.labels], ['namespaceLabels', opts.namespaceLabels]] as const) {
      const err = sel === undefined ? undefined : labelSelectorError(sel);
      if (err !== undefined) throw new KubeConfigError(`${name}: ${err}`);
    }
    this.#client = loadClientConfig(opts);
    this.store = new Store();
    const gated = opts.namespaceLabels !== undefined && opts.namespaceLabels.trim() !== '';
    this.#writer = new StoreWriter(this.store, gated, {
      keepPodNames: opts.endpointPodNames === true,
      keepNodeNames: opts.endpointNodeNames === true,
      keepZones: opts.endpointZones === true,
    });
    this.#events.onListenerError = (name, err) =>
      this.#log.error('a Kubernetes source event listener failed (reported once per listener)', { event: name, err: describeError(err) });
  }

  /** Subscribe to an event; returns the unsubscribe function. */
  on<K extends keyof KubeSourceEvents>(name: K, fn: (e: KubeSourceEvents[K]) => void): () => void {
    return this.#events.on(name, fn);
  }

  /** True once every resource has completed its first full list. */
  synced(): boolean {
    return this.#synced;
  }

  status(): KubeSourceStatus {
    return {
      synced: this.#synced,
      client: this.#client.describe(),
      endpoints: this.#endpoints,
      serviceImports: this.#imports,
      outage: this.#failing.size > 0,
      parked: this.#writer.parkedCount,
      resources: this.#watchers.map((w) => w.status()),
    };
  }

  /** Sockets the client holds open (in use and idle), for tests and metrics. */
  socketCount(): number {
    return this.#client.socketCount();
  }

  /**
   * Start listing and watching. Resolves once every resource has synced, or after
   * startupTimeoutMs; never rejects.
   */
  start(): Promise<void> {
    if (this.#started !== undefined) return this.#started;
    this.#startedAt = Date.now();
    this.#started = new Promise<void>((resolve) => {
      this.#resolveStart = resolve;
    });
    const timeout = this.#opts.startupTimeoutMs ?? 5000;
    this.#startTimer = setTimeout(() => {
      this.#startTimer = undefined;
      if (!this.#synced && !this.#stopped) {
        const pending = this.#watchers.filter((w) => !w.synced).map((w) => w.spec.resource);
        this.#log.warn('Kubernetes API not synced within the startup timeout: answering anyway, SERVFAIL instead of NXDOMAIN until synced', {
          startupTimeoutMs: timeout,
          pending: [...pending, ...(this.#endpoints === undefined ? ['discovery'] : []), ...(this.#imports === 'pending' ? [`${IMPORTS} discovery`] : [])],
          error: [...this.#failing.values()][0]?.error,
        });
      }
      this.#settleStart();
    }, timeout);

    const c = this.#client.describe();
    this.#log.info('watching the Kubernetes API', {
      server: c.server,
      context: c.context,
      user: c.user,
      auth: c.auth,
      config: c.source,
      labels: this.#opts.labels,
      namespaceLabels: this.#opts.namespaceLabels,
      pods: this.#opts.watchPods,
      serviceImports: this.#opts.multicluster === true,
    });
    const o = { labels: this.#opts.labels, namespaceLabels: this.#opts.namespaceLabels };
    this.#add(namespacesSpec(o));
    this.#add(servicesSpec(o));
    if (this.#opts.watchPods) this.#add(podsSpec(o));
    this.#discovery = this.#discover();
    if (this.#opts.multicluster === true) {
      this.#imports = 'pending';
      this.#importsDiscovery = this.#discoverImports();
    }
    return this.#started;
  }

  /** Stop every loop, close every socket, clear every timer. The store keeps its content. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#startTimer !== undefined) clearTimeout(this.#startTimer);
    this.#startTimer = undefined;
    this.#settleStart();
    this.#discoveryPause.wake();
    this.#discoveryChannel?.abortAll();
    this.#importsPause.wake();
    this.#importsChannel?.abortAll();
    await Promise.all([this.#discovery, this.#importsDiscovery, ...this.#watchers.map((w) => w.stop())]);
    this.#client.destroy();
  }

  #settleStart(): void {
    const r = this.#resolveStart;
    this.#resolveStart = undefined;
    r?.();
  }

  #backoff(): Backoff {
    return new Backoff({ initialMs: this.#opts.backoff?.initialMs ?? 500, maxMs: this.#opts.backoff?.maxMs ?? 30_000 });
  }

  #add(spec: ResourceSpec): void {
    if (this.#stopped) return;
    const resource = spec.resource;
    const w = new ResourceWatcher({
      spec,
      channel: this.#client.channel(),
      sink: this.#writer,
      backoff: this.#backoff(),
      pageSize: Math.max(1, this.#opts.pageSize ?? 500),
      watchTimeoutMs: Math.max(1, this.#opts.watchTimeoutMs ?? DEFAULT_WATCH_TIMEOUT_MS),
      listTimeoutMs: Math.max(1, this.#opts.listTimeoutMs ?? 60_000),
      hooks: {
        onEvent: (type) => this.#events.emit('event', { resource, type }),
        onInvalid: (ref, reason) => {
          this.#log.warn('Kubernetes object skipped: it cannot be served', { resource, ...ref, reason });
          this.#events.emit('invalid', { resource, ...ref, reason });
        },
        onFailure: (err, phase, delayMs) => this.#failed(resource, err, phase, delayMs),
        onHealthy: () => this.#healthy(resource),
        onRestart: (reason) => this.#events.emit('restart', { resource, reason }),
        onRelist: (reason) => {
          this.#log.info('relisting', { resource, reason });
          this.#events.emit('relist', { resource, reason });
        },
        onSynced: () => this.#checkSynced(),
        onBug: (where, err) => this.#log.error('internal error in the Kubernetes source (carrying on)', { resource, where, err: describeError(err) }),
      },
    });
    this.#watchers.push(w);
    w.start();
  }

  /** Ask once whether discovery.k8s.io/v1 EndpointSlices are served; retry until answered. */
  async #discover(): Promise<void> {
    const channel = this.#client.channel();
    this.#discoveryChannel = channel;
    const backoff = this.#backoff();
    while (!this.#stopped) {
      try {
        const res = await getJSON(channel, DISCOVERY_V1_PATH, {}, { timeoutMs: this.#opts.listTimeoutMs ?? 60_000 });
        this.#healthy('discovery');
        const resources = (res.body as { resources?: { name?: unknown }[] }).resources;
        this.#endpoints = Array.isArray(resources) && resources.some((r) => r?.name === 'endpointslices') ? 'EndpointSlice' : 'Endpoints';
      } catch (err) {
        if (this.#stopped) return;
        if (statusOf(err) === 404) {
          this.#healthy('discovery');
          this.#endpoints = 'Endpoints';
        } else {
          const delay = backoff.next();
          this.#failed('discovery', err as Error, 'list', delay);
          await this.#discoveryPause.sleep(delay);
          continue;
        }
      }
      break;
    }
    if (this.#stopped || this.#endpoints === undefined) return;
    const o = { labels: this.#opts.labels, namespaceLabels: this.#opts.namespaceLabels };
    if (this.#endpoints === 'Endpoints') {
      this.#log.info('the API server does not serve discovery.k8s.io/v1 EndpointSlices: watching legacy v1 Endpoints', {});
      this.#add(legacyEndpointsSpec(o));
    } else {
      this.#add(endpointSlicesSpec(o));
    }
  }

  /**
   * Whether the ServiceImport CRD is served; until it is, retried with backoff (capped, as
   * every loop here), after one warning. Absent, there is nothing to list: the source
   * counts as synced without it (the multicluster zones serve no imports, every other
   * zone is unaffected), and once the CRD appears its watch starts like any other.
   * Any other failure is an API failure as for the rest (outage bookkeeping), and holds
   * the first sync back, as the EndpointSlice discovery does: imports that exist must not
   * be NXDOMAIN because we did not ask yet.
   */
  async #discoverImports(): Promise<void> {
    const channel = this.#client.channel();
    this.#importsChannel = channel;
    const failures = this.#backoff();
    const absentRetry = this.#backoff();
    let warned = false;
    while (!this.#stopped) {
      let delay: number;
      try {
        const res = await getJSON(channel, MCS_V1ALPHA1_PATH, {}, { timeoutMs: this.#opts.listTimeoutMs ?? 60_000 });
        this.#healthy(`${IMPORTS} discovery`);
        const resources = (res.body as { resources?: { name?: unknown }[] }).resources;
        if (Array.isArray(resources) && resources.some((r) => r?.name === IMPORTS)) break;
        delay = absentRetry.next();
      } catch (err) {
        if (this.#stopped) return;
        if (statusOf(err) !== 404) {
          delay = failures.next();
          this.#failed(`${IMPORTS} discovery`, err as Error, 'list', delay);
          await this.#importsPause.sleep(delay);
          continue;
        }
        this.#healthy(`${IMPORTS} discovery`);
        delay = absentRetry.next();
      }
      failures.reset();
      if (!warned) {
        warned = true;
        this.#log.warn('the ServiceImport CRD (multicluster.x-k8s.io/v1alpha1) is not installed: multicluster zones serve no imports until it is; checking again with backoff', {
          path: MCS_V1ALPHA1_PATH,
          retryMs: delay,
        });
      }
      if (this.#imports !== 'absent') {
        this.#imports = 'absent';
        this.#checkSynced();
      }
      await this.#importsPause.sleep(delay);
    }
    if (this.#stopped) return;
    if (warned) this.#log.info('the ServiceImport CRD is installed now: watching ServiceImports', { path: MCS_V1ALPHA1_PATH });
    this.#imports = 'watching';
    this.#add(serviceImportsSpec({}));
  }

  #checkSynced(): void {
    if (this.#synced || this.#endpoints === undefined || this.#imports === 'pending') return;
    if (!this.#watchers.every((w) => w.synced)) return;
    this.#synced = true;
    const ms = Date.now() - this.#startedAt;
    const s = this.store;
    this.#log.info('Kubernetes API synced', {
      ms,
      namespaces: s.namespaces.size,
      services: s.services.size,
      endpointSlices: s.slices.size,
      endpoints: s.legacyEndpoints.size,
      pods: s.pods.size,
      ...(this.#imports === 'off' ? {} : { serviceImports: s.serviceImports.size }),
    });
    if (this.#startTimer !== undefined) clearTimeout(this.#startTimer);
    this.#startTimer = undefined;
    this.#settleStart();
    this.#events.emit('synced', { ms });
  }

  /**
   * Outage bookkeeping. A failure that the very next attempt repairs (a dropped watch that
   * reconnects at once) is a blip: counted in status() and the `failure` event, not logged.
   * When some resource fails twice in a row, the outage is real: one warning, then silence
   * until every resource is healthy again, which is logged once too.
   */
  #failed(resource: string, err: Error, phase: 'list' | 'watch', delayMs: number): void {
    const error = describeError(err);
    const status = statusOf(err);
    // A refused token may have been rotated under us: read the token files again.
    if (status === 401) this.#client.invalidateTokens();
    this.#events.emit('failure', { resource, error, status, delayMs });
    if (resource === IMPORTS && status === 404) {
      // The CRD was removed under a running watch: not an API outage. The imports we had
      // keep serving (as in any outage) and the watch retries with backoff.
      if (!this.#importsGone) {
        this.#importsGone = true;
        this.#log.warn('the ServiceImport CRD is not served any more (404): keeping the last ServiceImports, retrying with backoff', { phase, error });
      }
      return;
    }
    const f = this.#failing.get(resource) ?? { error, count: 0 };
    f.error = error;
    f.count++;
    this.#failing.set(resource, f);
    this.#outageSince ??= Date.now();
    this.#outageFailures++;
    if (!this.#outageLogged && f.count >= 2) {
      this.#outageLogged = true;
      this.#log.warn(
        this.#synced
          ? 'Kubernetes API unreachable or failing: serving the last known state, retrying with backoff'
          : 'Kubernetes API unreachable or failing: not synced yet, retrying with backoff',
        { resource, phase, error, status, server: this.#client.describe().server },
      );
      this.#events.emit('outage', { error });
    }
  }

  #healthy(resource: string): void {
    if (resource === IMPORTS && this.#importsGone) {
      this.#importsGone = false;
      this.#log.info('the ServiceImport CRD is served again', {});
    }
    if (!this.#failing.delete(resource) || this.#failing.size > 0) return;
    const since = this.#outageSince ?? Date.now();
    const seconds = Math.round((Date.now() - since) / 100) / 10;
    const failures = this.#outageFailures;
    const logged = this.#outageLogged;
    this.#outageSince = undefined;
    this.#outageFailures = 0;
    this.#outageLogged = false;
    if (!logged) return;
    this.#log.info('Kubernetes API reachable again', { seconds, failures });
    this.#events.emit('recovered', { seconds, failures });
  }
}
