/**
 * What the readers of cluster stores (the DNS node, the proxy, a worker's replica) see of
 * the sources that feed them, and what a source (the zones/ folder, the Kubernetes API)
 * offers the composition root. Kept here, below both, so that a source never imports
 * the composition root (src/sources.ts builds on {@link StoreSources}).
 *
 * @module
 */
import type { ClusterStore } from './store.js';

/** Where a node gets its cluster stores from. */
export interface StoreProvider {
  /** Cluster domains currently served. */
  zones(): string[];
  storeFor(zone: string): ClusterStore;
  onZonesChanged(listener: () => void): () => void;
  /** Every source has completed its first full sync. */
  synced(): boolean;
}

/** A running source of cluster stores. */
export interface StoreSources extends StoreProvider {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Human description for logs and the banner. */
  describe(): string;
}
