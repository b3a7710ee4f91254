/**
 * The cluster sources behind one StoreProvider: the zones/ folder (embedded mode).
 * The Kubernetes API source plugs in here too, so the DNS side never knows which
 * one feeds it.
 */
import type { Logger } from 'pino';
import { FileSource } from './cluster/files.js';
import type { ClusterStore } from './cluster/store.js';
import { sourceLog } from './log.js';
import type { StoreProvider } from './node.js';

export interface Sources extends StoreProvider {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Human description for logs and the banner. */
  describe(): string;
}

export interface FileSourcesOptions {
  readonly zonesDir: string;
}

export function fileSources(opts: FileSourcesOptions, log: Logger): Sources {
  const files = new FileSource({ dir: opts.zonesDir, log: sourceLog(log) });
  let started = false;
  return {
    zones: () => files.zones(),
    storeFor: (zone: string): ClusterStore => files.storeFor(zone),
    onZonesChanged: (l) => files.onZonesChanged(() => l()),
    // The initial load completes before start() resolves: synced from then on.
    synced: () => started,
    start: async () => {
      await files.start();
      started = true;
    },
    stop: () => files.stop(),
    describe: () => `zones from ${opts.zonesDir}`,
  };
}
