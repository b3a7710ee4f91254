/**
 * ClusterStore: the one cluster view every source writes into and the DNS side reads.
 *
 * Sources (zones/ files, the Kubernetes API) call `upsert`/`remove`/`replace`; the
 * store drops no-op updates (structural equality of slim objects), keeps the indexes
 * DNS needs (slices by service, multicluster slices by ServiceImport, pods by IP), and
 * tells listeners *which services* (and which ServiceImports) changed, coalesced per
 * macrotask, so the zone side rebuilds only those names. Nothing here knows about DNS.
 */
import { deepEqual } from './equal.js';
import type { ClusterObject, EndpointSlice, Kind, Namespace, Pod, Service, ServiceImport } from './model.js';
import { objectKey } from './model.js';

/** What changed in one flush. Service keys are `namespace/name`. */
export interface ClusterChange {
  /** Services whose own spec, slices, endpoints or (for endpointPodNames/verified) pods changed. */
  readonly services: ReadonlySet<string>;
  /** Namespaces created or deleted (namespace existence decides NXDOMAIN vs NODATA). */
  readonly namespaces: ReadonlySet<string>;
  /** Pods changed (pods verified mode, NS glue, embedded endpoints controller). */
  readonly pods: boolean;
  /** A full replace happened (initial sync, relist): consumers may rebuild everything. */
  readonly full: boolean;
  /**
   * ServiceImports (`namespace/name`) whose own spec or multicluster slices changed: only
   * the multicluster zones read them, and rebuild just these.
   */
  readonly imports: ReadonlySet<string>;
}

export type ChangeListener = (change: ClusterChange) => void;

/** One applied change, as replicas (DNS worker processes) replay it. */
export type StoreOp = { readonly op: 'upsert'; readonly obj: ClusterObject } | { readonly op: 'remove'; readonly kind: Kind; readonly key: string };

type KindMap = {
  Namespace: Namespace;
  Service: Service;
  EndpointSlice: EndpointSlice;
  Endpoints: EndpointSlice;
  Pod: Pod;
  ServiceImport: ServiceImport;
};

export class ClusterStore {
  readonly namespaces = new Map<string, Namespace>();
  readonly services = new Map<string, Service>();
  readonly slices = new Map<string, EndpointSlice>();
  /** Legacy v1 Endpoints in slice shape, keyed `ns/name` (name = service name). */
  readonly legacyEndpoints = new Map<string, EndpointSlice>();
  readonly pods = new Map<string, Pod>();
  readonly serviceImports = new Map<string, ServiceImport>();
  /** Service key → slice keys (from the `kubernetes.io/service-name` label). */
  readonly slicesByService = new Map<string, Set<string>>();
  /** ServiceImport key → keys of its multicluster slices (`sourceCluster` set). */
  readonly slicesByImport = new Map<string, Set<string>>();
  /** Pod IP → pod keys (pods verified, endpoints controller). */
  readonly podsByIP = new Map<string, Set<string>>();

  #listeners: ChangeListener[] = [];
  #opListeners: ((op: StoreOp) => void)[] = [];
  #pendingServices = new Set<string>();
  #pendingNamespaces = new Set<string>();
  #pendingImports = new Set<string>();
  #pendingPods = false;
  #pendingFull = false;
  #scheduled = false;
  /** `lastChange` / `lastImportChange` moved for the changes not yet delivered (once per flush). */
  #clusterMoved = false;
  #importsMoved = false;
  #batchDepth = 0;
  /** Unix seconds of the last DNS-relevant change (SOA serial, as CoreDNS). */
  lastChange = Math.floor(Date.now() / 1000);
  /**
   * Unix seconds of the last change the multicluster zones can see (a ServiceImport, a
   * multicluster slice, a namespace): their own SOA serial, as CoreDNS keeps one apart
   * (ModifiedMultiCluster). Import changes leave `lastChange` alone, so the cluster
   * zone's serial (and its secondaries) do not move for what it does not serve.
   */
  lastImportChange = Math.floor(Date.now() / 1000);

  onChange(listener: ChangeListener): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  /** Every applied (non no-op) upsert and remove, synchronously, for replication. */
  onOp(listener: (op: StoreOp) => void): () => void {
    this.#opListeners.push(listener);
    return () => {
      this.#opListeners = this.#opListeners.filter((l) => l !== listener);
    };
  }

  /** Every object, for a replica's initial state. */
  snapshot(): ClusterObject[] {
    const out: ClusterObject[] = [];
    for (const obj of this.namespaces.values()) out.push({ kind: 'Namespace', obj });
    for (const obj of this.services.values()) out.push({ kind: 'Service', obj });
    for (const obj of this.slices.values()) out.push({ kind: 'EndpointSlice', obj });
    for (const obj of this.legacyEndpoints.values()) out.push({ kind: 'Endpoints', obj });
    for (const obj of this.pods.values()) out.push({ kind: 'Pod', obj });
    for (const obj of this.serviceImports.values()) out.push({ kind: 'ServiceImport', obj });
    return out;
  }

  /** Replay ops from a primary store (see `onOp`), as one batch. */
  apply(ops: readonly StoreOp[], lastChange?: number, lastImportChange?: number): void {
    this.batch(() => {
      for (const op of ops) {
        if (op.op === 'upsert') this.upsert(op.obj);
        else this.remove(op.kind, op.key);
      }
    });
    if (lastChange !== undefined) this.lastChange = lastChange;
    if (lastImportChange !== undefined) this.lastImportChange = lastImportChange;
  }

  #map<K extends Kind>(kind: K): Map<string, KindMap[K]> {
    switch (kind) {
      case 'Namespace':
        return this.namespaces as Map<string, KindMap[K]>;
      case 'Service':
        return this.services as Map<string, KindMap[K]>;
      case 'EndpointSlice':
        return this.slices as Map<string, KindMap[K]>;
      case 'Endpoints':
        return this.legacyEndpoints as Map<string, KindMap[K]>;
      case 'ServiceImport':
        return this.serviceImports as Map<string, KindMap[K]>;
      default:
        return this.pods as Map<string, KindMap[K]>;
    }
  }

  get<K extends Kind>(kind: K, key: string): KindMap[K] | undefined {
    return this.#map(kind).get(key);
  }

  /** Insert or replace one object. Returns false when nothing DNS-visible changed. */
  upsert(o: ClusterObject): boolean {
    const map = this.#map(o.kind) as Map<string, unknown>;
    const key = objectKey(o.obj);
    const prev = map.get(key);
    if (prev !== undefined && deepEqual(prev, o.obj)) return false;
    if (prev !== undefined) this.#unindex(o.kind, key, prev);
    map.set(key, o.obj);
    this.#index(o.kind, key, o.obj);
    this.#touch(o.kind, o.obj, prev);
    for (const l of this.#opListeners) l({ op: 'upsert', obj: o });
    return true;
  }

  /** Delete one object by kind and key. Returns false when it was not there. */
  remove(kind: Kind, key: string): boolean {
    const map = this.#map(kind) as Map<string, unknown>;
    const prev = map.get(key);
    if (prev === undefined) return false;
    map.delete(key);
    this.#unindex(kind, key, prev);
    this.#touch(kind, prev, undefined);
    for (const l of this.#opListeners) l({ op: 'remove', kind, key });
    return true;
  }

  /**
   * Make the objects of one kind exactly `objs` (a relist, or a zones/ reload), as a
   * diff: unchanged objects are untouched, so no name ever vanishes in between.
   * `filter` limits the replace to a subset (e.g. the objects one source owns).
   */
  replace(kind: Kind, objs: Iterable<ClusterObject>, filter?: (key: string) => boolean): void {
    this.batch(() => {
      const map = this.#map(kind) as Map<string, unknown>;
      const seen = new Set<string>();
      for (const o of objs) {
        if (o.kind !== kind) continue;
        seen.add(objectKey(o.obj));
        this.upsert(o);
      }
      for (const key of [...map.keys()]) {
        if (!seen.has(key) && (filter === undefined || filter(key))) this.remove(kind, key);
      }
      // No `full` flag: upsert/remove above already recorded exactly which services
      // changed, so a relist of 10k services costs what changed, not a zone rebuild.
    });
  }

  /** Group several changes into one notification (listeners still run asynchronously). */
  batch(fn: () => void): void {
    this.#batchDepth++;
    try {
      fn();
    } finally {
      this.#batchDepth--;
    }
  }

  /** Slices (or, when a service has none, its legacy Endpoints) of one service. */
  endpointsOf(serviceKey: string): EndpointSlice[] {
    const keys = this.slicesByService.get(serviceKey);
    if (keys !== undefined && keys.size > 0) {
      const out: EndpointSlice[] = [];
      for (const k of keys) {
        const s = this.slices.get(k);
        if (s !== undefined) out.push(s);
      }
      return out;
    }
    const legacy = this.legacyEndpoints.get(serviceKey);
    return legacy === undefined ? [] : [legacy];
  }

  /** The multicluster slices of one ServiceImport (every source cluster). */
  importSlicesOf(importKey: string): EndpointSlice[] {
    const out: EndpointSlice[] = [];
    for (const k of this.slicesByImport.get(importKey) ?? []) {
      const s = this.slices.get(k);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  /** Whether a Namespace object exists (the file source synthesizes ones manifests leave out). */
  namespaceExists(ns: string): boolean {
    return this.namespaces.has(ns);
  }

  /**
   * Something outside the store changed what DNS makes of its objects (a configuration
   * reload): the change times move as for a delivered change, so the zones' SOA serials
   * move and secondaries transfer again.
   */
  touchTimes(): void {
    const now = Math.floor(Date.now() / 1000);
    this.lastChange = Math.max(now, this.lastChange + 1);
    this.lastImportChange = Math.max(now, this.lastImportChange + 1);
  }

  /** Deliver pending changes now (tests and sources that need a synchronous view). */
  flush(): void {
    this.#scheduled = false;
    this.#clusterMoved = false;
    this.#importsMoved = false;
    if (
      this.#pendingServices.size === 0 &&
      this.#pendingNamespaces.size === 0 &&
      this.#pendingImports.size === 0 &&
      !this.#pendingPods &&
      !this.#pendingFull
    ) {
      return;
    }
    const change: ClusterChange = {
      services: this.#pendingServices,
      namespaces: this.#pendingNamespaces,
      pods: this.#pendingPods,
      full: this.#pendingFull,
      imports: this.#pendingImports,
    };
    this.#pendingServices = new Set();
    this.#pendingNamespaces = new Set();
    this.#pendingImports = new Set();
    this.#pendingPods = false;
    this.#pendingFull = false;
    for (const l of this.#listeners) {
      // A listener's failure must not stop the others or escape into a source's
      // event handler (client-node turns that into an unhandled rejection).
      try {
        l(change);
      } catch (err) {
        process.emitWarning(`clusterdns: change listener failed: ${String(err)}`);
      }
    }
  }

  /** `cluster`/`imports`: which serials the change moves (see `lastImportChange`). */
  #schedule(cluster: boolean, imports: boolean): void {
    // Each delivered change names a later second than the one before, even for two
    // changes in one second or after the clock stepped back (BIND's unixtime serial
    // rule): these times are the zones' SOA serials (zone.ts), which secondaries follow
    // (RFC 1996, RFC 1995), and `--workers` replicas copy them, so every worker serves
    // one serial for one version.
    const now = Math.floor(Date.now() / 1000);
    if (cluster) {
      this.lastChange = Math.max(now, this.#clusterMoved ? this.lastChange : this.lastChange + 1);
      this.#clusterMoved = true;
    }
    if (imports) {
      this.lastImportChange = Math.max(now, this.#importsMoved ? this.lastImportChange : this.lastImportChange + 1);
      this.#importsMoved = true;
    }
    if (this.#scheduled) return;
    this.#scheduled = true;
    // setImmediate coalesces a burst of watch events (or a whole reload) into one
    // rebuild, while keeping the event-to-answer latency well under a millisecond.
    setImmediate(() => this.flush());
  }

  #touch(kind: Kind, obj: unknown, prev: unknown): void {
    // Which serials move: namespaces are seen by both kinds of zone (NODATA vs NXDOMAIN).
    let cluster = true;
    let imports = false;
    switch (kind) {
      case 'Namespace':
        this.#pendingNamespaces.add((obj as Namespace).name);
        imports = true;
        break;
      case 'Service': {
        const s = obj as Service;
        this.#pendingServices.add(`${s.namespace}/${s.name}`);
        break;
      }
      case 'ServiceImport': {
        const s = obj as ServiceImport;
        this.#pendingImports.add(`${s.namespace}/${s.name}`);
        cluster = false;
        imports = true;
        break;
      }
      case 'EndpointSlice':
      case 'Endpoints': {
        // A slice that moved between a Service and a ServiceImport (its labels changed)
        // touches both owners and both serials.
        const s = obj as EndpointSlice;
        const p = prev as EndpointSlice | undefined;
        cluster = false;
        for (const x of p === undefined ? [s] : [s, p]) {
          const owner = `${x.namespace}/${x.serviceName}`;
          if (x.sourceCluster === undefined) {
            this.#pendingServices.add(owner);
            cluster = true;
          } else {
            this.#pendingImports.add(owner);
            imports = true;
          }
        }
        break;
      }
      default:
        this.#pendingPods = true;
    }
    this.#schedule(cluster, imports);
  }

  #index(kind: Kind, key: string, obj: unknown): void {
    if (kind === 'EndpointSlice') {
      const s = obj as EndpointSlice;
      const owner = `${s.namespace}/${s.serviceName}`;
      const index = s.sourceCluster === undefined ? this.slicesByService : this.slicesByImport;
      let set = index.get(owner);
      if (set === undefined) index.set(owner, (set = new Set()));
      set.add(key);
    } else if (kind === 'Pod') {
      for (const ip of (obj as Pod).ips) {
        let set = this.podsByIP.get(ip);
        if (set === undefined) this.podsByIP.set(ip, (set = new Set()));
        set.add(key);
      }
    }
  }

  #unindex(kind: Kind, key: string, obj: unknown): void {
    if (kind === 'EndpointSlice') {
      const s = obj as EndpointSlice;
      const owner = `${s.namespace}/${s.serviceName}`;
      const index = s.sourceCluster === undefined ? this.slicesByService : this.slicesByImport;
      const set = index.get(owner);
      if (set !== undefined) {
        set.delete(key);
        if (set.size === 0) index.delete(owner);
      }
    } else if (kind === 'Pod') {
      for (const ip of (obj as Pod).ips) {
        const set = this.podsByIP.get(ip);
        if (set !== undefined) {
          set.delete(key);
          if (set.size === 0) this.podsByIP.delete(ip);
        }
      }
    }
  }
}
