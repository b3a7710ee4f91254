/**
 * Store replication for `--workers`: the primary runs the sources and sends every
 * applied change to each worker over IPC; a worker replays them into its own stores.
 *
 * Every worker receives the same ops in the same order, so each one's view is always
 * a state the primary's store has been in (never a mix), a few milliseconds apart.
 * A new worker first gets a snapshot of every zone, then the stream.
 */
import type { ClusterObject, Kind } from './cluster/model.js';
import { ClusterStore, type StoreOp } from './cluster/store.js';
import type { StoreProvider } from './cluster/provider.js';

// `lastImportChange` travels with `lastChange`: every worker serves the primary's serials
// (the multicluster zones' own one too), never the second it happened to replay a change in.
export type ReplicaMessage =
  | { readonly t: 'zones'; readonly zones: string[] }
  | { readonly t: 'snapshot'; readonly zone: string; readonly objs: ClusterObject[]; readonly lastChange: number; readonly lastImportChange: number }
  | { readonly t: 'ops'; readonly zone: string; readonly ops: StoreOp[]; readonly lastChange: number; readonly lastImportChange: number }
  | { readonly t: 'synced'; readonly synced: boolean };

/** Every kind a snapshot carries, in the order a replica applies them (namespaces first). */
const SNAPSHOT_KINDS: readonly Kind[] = ['Namespace', 'Service', 'EndpointSlice', 'Endpoints', 'Pod', 'ServiceImport'];

/** Primary side: turns a provider's changes into messages (batched per macrotask). */
export class ReplicaFeed {
  readonly #provider: StoreProvider;
  readonly #send: (m: ReplicaMessage) => void;
  readonly #pending = new Map<string, StoreOp[]>();
  readonly #subs = new Map<string, () => void>();
  #scheduled = false;
  #unsubscribe: () => void;

  constructor(provider: StoreProvider, send: (m: ReplicaMessage) => void) {
    this.#provider = provider;
    this.#send = send;
    this.#unsubscribe = provider.onZonesChanged(() => this.#zones());
    this.#zones();
  }

  /** Everything a new worker needs to catch up. */
  snapshot(): ReplicaMessage[] {
    const zones = this.#provider.zones();
    const out: ReplicaMessage[] = [{ t: 'zones', zones }];
    for (const z of zones) {
      const s = this.#provider.storeFor(z);
      out.push({ t: 'snapshot', zone: z, objs: s.snapshot(), lastChange: s.lastChange, lastImportChange: s.lastImportChange });
    }
    out.push({ t: 'synced', synced: this.#provider.synced() });
    return out;
  }

  /** Tell workers the sync state (call when it changes). */
  synced(value: boolean): void {
    this.#send({ t: 'synced', synced: value });
  }

  close(): void {
    this.#unsubscribe();
    for (const u of this.#subs.values()) u();
    this.#subs.clear();
  }

  #zones(): void {
    const zones = this.#provider.zones();
    for (const z of zones) {
      if (this.#subs.has(z)) continue;
      const store = this.#provider.storeFor(z);
      this.#subs.set(
        z,
        store.onOp((op) => {
          let l = this.#pending.get(z);
          if (l === undefined) this.#pending.set(z, (l = []));
          l.push(op);
          this.#schedule();
        }),
      );
      // A zone that appears after workers started: they need its current content.
      this.#send({ t: 'snapshot', zone: z, objs: store.snapshot(), lastChange: store.lastChange, lastImportChange: store.lastImportChange });
    }
    for (const [z, u] of this.#subs) {
      if (!zones.includes(z)) {
        u();
        this.#subs.delete(z);
      }
    }
    this.#send({ t: 'zones', zones });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      for (const [zone, ops] of this.#pending) {
        const s = this.#provider.storeFor(zone);
        this.#send({ t: 'ops', zone, ops, lastChange: s.lastChange, lastImportChange: s.lastImportChange });
      }
      this.#pending.clear();
    });
  }
}

/** Worker side: stores fed by the primary's messages. */
export class ReplicaProvider implements StoreProvider {
  readonly #stores = new Map<string, ClusterStore>();
  #zones: string[] = [];
  #synced = false;
  #listeners: (() => void)[] = [];

  zones(): string[] {
    return this.#zones;
  }

  storeFor(zone: string): ClusterStore {
    let s = this.#stores.get(zone);
    if (s === undefined) this.#stores.set(zone, (s = new ClusterStore()));
    return s;
  }

  onZonesChanged(listener: () => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  synced(): boolean {
    return this.#synced;
  }

  handle(m: ReplicaMessage): void {
    switch (m.t) {
      case 'zones':
        this.#zones = m.zones;
        for (const z of [...this.#stores.keys()]) if (!m.zones.includes(z)) this.#stores.delete(z);
        for (const l of this.#listeners) l();
        break;
      case 'snapshot': {
        const s = this.storeFor(m.zone);
        for (const kind of SNAPSHOT_KINDS) {
          s.replace(kind, m.objs.filter((o) => o.kind === kind));
        }
        s.lastChange = m.lastChange;
        s.lastImportChange = m.lastImportChange;
        break;
      }
      case 'ops':
        this.storeFor(m.zone).apply(m.ops, m.lastChange, m.lastImportChange);
        break;
      case 'synced':
        this.#synced = m.synced;
        break;
    }
  }
}
