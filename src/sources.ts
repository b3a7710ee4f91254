/**
 * The cluster sources behind one StoreProvider: the zones/ folder (embedded mode).
 * The Kubernetes API source plugs in here too, so the DNS side never knows which
 * one feeds it.
 *
 * In embedded mode the zones/ folder goes through the embedded registry
 * (`src/registry/`): Services get their virtual IPs and NodePorts (persisted under
 * the state directory before they are served), selector Services get EndpointSlices
 * from the Pods, and bad endpoint addresses are dropped.
 */
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { FileSource } from './cluster/files.js';
import type { StoreSources } from './cluster/provider.js';
import type { ClusterStore } from './cluster/store.js';
import type { Config } from './config.js';
import { sourceLog } from './log.js';
import { Registry, type RegistryOptions } from './registry/registry.js';
import type { IpamStatus } from './registry/status.js';

/** Allocator usage and findings for metrics (the registry, or the Kubernetes-mode mirror). */
export interface IpamProvider {
  status(): readonly IpamStatus[];
}

export interface Sources extends StoreSources {
  /** Allocator status (embedded registry; the API source may set its mirror here). */
  readonly ipam?: IpamProvider;
}

export interface FileSourcesOptions {
  readonly zonesDir: string;
  /** Embedded registry state; default `.clusterdns/` next to the zones folder. */
  readonly stateDir?: string;
  /** serviceCIDRs and nodePortRange (default: `DEFAULT_CONFIG`'s). */
  readonly config?: Pick<Config, 'serviceCIDRs' | 'nodePortRange'>;
  /** Registry tuning (tests: repair and retry periods, injected file system). */
  readonly registry?: Omit<RegistryOptions, 'stateDir' | 'config' | 'log' | 'readOnly'>;
  /** File source tuning (tests). */
  readonly pollIntervalMs?: number;
}

/** Default state directory: `.clusterdns/` next to the zones folder. */
export function defaultStateDir(zonesDir: string): string {
  return join(dirname(zonesDir), '.clusterdns');
}

/** A zone the file source can be asked to rebuild (not in every FileSource version). */
interface Refreshable {
  refresh?(zone: string): unknown;
}

export function fileSources(opts: FileSourcesOptions, log: Logger): Sources & { readonly registry: Registry } {
  const slog = sourceLog(log);
  const registry = new Registry({
    ...opts.registry,
    stateDir: opts.stateDir ?? defaultStateDir(opts.zonesDir),
    ...(opts.config === undefined ? {} : { config: { serviceCIDRs: opts.config.serviceCIDRs, nodePortRange: opts.config.nodePortRange } }),
    log: slog,
  });
  const files = new FileSource({
    dir: opts.zonesDir,
    log: slog,
    transform: registry.transform,
    ...(opts.pollIntervalMs === undefined ? {} : { pollIntervalMs: opts.pollIntervalMs }),
  });
  // State writes work again: rebuild the zone so Services held back are served now
  // (when the file source can be asked to; otherwise at the zone's next change).
  registry.onRecovered((zone) => {
    (files as unknown as Refreshable).refresh?.(zone);
  });
  let started = false;
  return {
    registry,
    ipam: { status: () => registry.status() },
    zones: () => files.zones(),
    storeFor: (zone: string): ClusterStore => files.storeFor(zone),
    onZonesChanged: (l) => files.onZonesChanged(() => l()),
    // The initial load completes before start() resolves: synced from then on.
    synced: () => started,
    start: async () => {
      await files.start();
      registry.start();
      started = true;
    },
    stop: async () => {
      registry.stop();
      await files.stop();
    },
    describe: () => `zones from ${opts.zonesDir}`,
  };
}
