/**
 * The API source as {@link StoreSources} (what the composition root's `Sources` in
 * src/sources.ts extends), so wiring it is one line in app.ts's createSources:
 *
 *   if (opts.kube !== undefined) return kubeSources({ ...opts.kube, config: opts.config }, log);
 *
 * One zone (the cluster domain given with --domain), one store. Config keys: `labels`,
 * `namespaceLabels`, `startupTimeout` and `watchTimeout` (seconds); Pods are watched only
 * for `pods: verified` (`endpointPodNames` reads `targetRef.name` from the slices, no pod
 * watch needed);
 * ServiceImports only with `multicluster` (the multicluster zones are served by the DNS
 * node from this same store).
 * The option types are this module's own: nothing under src/cluster imports the
 * composition root (its config.ts, sources.ts).
 */
import type { Logger } from 'pino';
import { sourceLog } from '../../log.js';
import type { StoreSources } from '../provider.js';
import type { ClusterStore } from '../store.js';
import { KubeSource, type KubeSourceOptions } from './source.js';

export interface KubeSourcesOptions {
  readonly kubeconfig: string | undefined;
  readonly context: string | undefined;
  readonly inCluster: boolean;
  /** The cluster domain served from the API. */
  readonly domain: string;
  readonly config: KubeSourcesConfig;
  /** The service proxy runs on this store: keep what it reads (endpoint node names). */
  readonly proxy?: boolean;
  /** Overrides for tests and benchmarks (backoff, watchdog, page size). */
  readonly tuning?: Partial<Pick<KubeSourceOptions, 'backoff' | 'watchTimeoutMs' | 'listTimeoutMs' | 'pageSize' | 'inClusterRoot'>>;
}

/** The configuration keys this source reads (the composition root passes its `Config`). */
export interface KubeSourcesConfig {
  /** Label selector on Services and EndpointSlices (CoreDNS `labels`). */
  readonly labels: string | undefined;
  /** Label selector on Namespaces (CoreDNS `namespace_labels`). */
  readonly namespaceLabels: string | undefined;
  /** Seconds to wait for the first sync (CoreDNS `startup_timeout`). */
  readonly startupTimeout: number;
  /** CoreDNS `pods` mode: Pods are watched only for `verified`. */
  readonly pods: string;
  readonly endpointPodNames: boolean;
  /** `multicluster` zones: ServiceImports are watched only when there is one (read at start). */
  readonly multicluster?: readonly string[];
  /** `zonal`: endpoints' topology zones are kept (read at start, like endpointPodNames). */
  readonly zonal?: boolean;
  /**
   * Seconds a watch may stay silent (no event, bookmark or headers) before it is abandoned
   * and restarted (read at start). Undefined: KubeSource's default, the same 150 s.
   */
  readonly watchTimeout?: number;
}

export interface KubeSources extends StoreSources {
  /** The source itself: status() and on() for metrics. */
  readonly source: KubeSource;
}

/** Throws KubeConfigError for an unusable configuration (see KubeSource's constructor). */
export function kubeSources(opts: KubeSourcesOptions, log: Logger): KubeSources {
  const domain = opts.domain.toLowerCase().replace(/\.$/, '');
  const source = new KubeSource({
    kubeconfig: opts.kubeconfig,
    context: opts.context,
    inCluster: opts.inCluster,
    labels: opts.config.labels,
    namespaceLabels: opts.config.namespaceLabels,
    watchPods: opts.config.pods === 'verified',
    multicluster: (opts.config.multicluster?.length ?? 0) > 0,
    endpointPodNames: opts.config.endpointPodNames,
    endpointNodeNames: opts.proxy === true,
    endpointZones: opts.config.zonal === true,
    startupTimeoutMs: opts.config.startupTimeout * 1000,
    ...(opts.config.watchTimeout === undefined ? {} : { watchTimeoutMs: opts.config.watchTimeout * 1000 }),
    log: sourceLog(log),
    ...opts.tuning,
  });
  return {
    source,
    zones: () => [domain],
    storeFor: (zone: string): ClusterStore => {
      if (zone.toLowerCase() !== domain) throw new Error(`the Kubernetes API source serves only ${domain}, not ${zone}`);
      return source.store;
    },
    // The zone list never changes.
    onZonesChanged: () => () => {},
    synced: () => source.synced(),
    start: () => source.start(),
    stop: () => source.stop(),
    describe: () => {
      const c = source.status().client;
      return `Kubernetes API ${c.server} (${c.source === 'in-cluster' ? 'in-cluster' : `context ${c.context}`}) as ${domain}`;
    },
  };
}
