/**
 * Multicluster zones (CoreDNS `multicluster`, MCS-API KEP-1645): a zone such as
 * `clusterset.local` served from `multicluster.x-k8s.io/v1alpha1` ServiceImports and the
 * EndpointSlices labelled `multicluster.kubernetes.io/service-name`, instead of from
 * Services. CoreDNS kubernetes.go findMultiClusterServices and parse.go are the model:
 *
 * - `<svc>.<ns>.svc.<zone>`: a ClusterSetIP import answers its `spec.ips` (A/AAAA); a
 *   Headless one the ready addresses of its slices, every source cluster merged and
 *   de-duplicated (none ready: NXDOMAIN, as a headless Service). `ignoreEmptyService`
 *   makes a ClusterSetIP import without a ready endpoint NXDOMAIN.
 * - `<ep>.<clusterid>.<svc>.<ns>.svc.<zone>`: the endpoint names, one level per source
 *   cluster (the slice's `multicluster.kubernetes.io/source-cluster`), under both import
 *   types as CoreDNS answers them; `<clusterid>.<svc>...` is an empty non-terminal
 *   (NODATA, our RFC 8020 rule) and an endpoint name without the cluster id does not
 *   exist.
 * - SRV at the import's name (every port) and at `_<port>._<proto>.<svc>...`: targets the
 *   import name with its IPs as additional (ClusterSetIP), or the endpoint names
 *   `<ep>.<clusterid>.<svc>...` with their addresses (Headless); CoreDNS's weights.
 * - Namespaces exist as in the cluster zone (`<ns>.svc.<zone>` NODATA when the namespace
 *   exists and is exposed); the apex has its own SOA, whose serial is the time of the last
 *   change to imports, their slices or namespaces (the store's `lastImportChange`; CoreDNS
 *   ModifiedMultiCluster), NS with the same glue as the cluster zone, and `dns-version`.
 *
 * Not here, by design: pod names (`pod.<zone>` does not exist), zonal names (parse.go
 * does not define them in multicluster zones), ExternalName, and PTR: CoreDNS's reverse
 * lookup reads Services and ordinary endpoints only, never ServiceImports, so an import's
 * IPs and its slices' addresses get no PTR (the reverse tree of this zone stays empty).
 *
 * The zone is a ClusterZone (the Resolver, the answer cache, metrics and the zone
 * transfer listing all read that type and its NameTable) that builds import records
 * instead of service records, one import at a time as the store names the changed ones.
 */
import { Type } from '../dns/constants.js';
import type { RR } from '../dns/rr.js';
import type { EndpointSlice, Service, ServiceImport } from '../cluster/model.js';
import type { ClusterChange } from '../cluster/store.js';
import {
  addressSets,
  clusterIPSrvSet,
  endpointSrvSet,
  servedEndpoints,
  srvCandidates,
  srvNames,
  srvRels,
  type ServedEndpoint,
  type SrvCandidate,
  type ZoneOptions,
} from './build.js';
import { EndpointNames } from './endpoints.js';
import { exists, type ChildNames, type RecordSet, type TypeEntry } from './table.js';
import { ClusterZone, type OwnerKind, type ZoneStats } from './zone.js';

/** The service whose ClusterIPs are the NS glue (as in the cluster zone). */
const KUBE_DNS = 'kube-system/kube-dns';
const NONE: readonly RR[] = Object.freeze([]);

/**
 * What `servedEndpoints` needs to know of an import: nothing but that not-ready
 * endpoints are left out. A ServiceImport has no `publishNotReadyAddresses`, and CoreDNS
 * keeps only ready addresses of multicluster slices.
 */
const IMPORT_AS_SERVICE: Service = Object.freeze({
  namespace: '',
  name: '',
  type: 'ClusterIP',
  clusterIPs: [],
  headless: true,
  ports: [],
  publishNotReadyAddresses: false,
  labels: {},
});

/** One source cluster's slices of an import, and (when computed) its served endpoints. */
interface ClusterSlices {
  readonly cluster: string;
  readonly slices: readonly EndpointSlice[];
}

interface ClusterServed {
  readonly cluster: string;
  readonly eps: readonly ServedEndpoint[];
}

/** The slices grouped by source cluster, clusters in name order (stable answers). */
function byCluster(slices: readonly EndpointSlice[]): ClusterSlices[] {
  const m = new Map<string, EndpointSlice[]>();
  for (const s of slices) {
    const c = s.sourceCluster;
    if (c === undefined) continue;
    let l = m.get(c);
    if (l === undefined) m.set(c, (l = []));
    l.push(s);
  }
  return [...m.keys()].sort().map((cluster) => ({ cluster, slices: m.get(cluster)! }));
}

function served(clusters: readonly ClusterSlices[], opts: ZoneOptions): ClusterServed[] {
  if (opts.noEndpoints) return [];
  const out: ClusterServed[] = [];
  for (const c of clusters) {
    const eps = servedEndpoints(IMPORT_AS_SERVICE, c.slices, opts);
    if (eps.length > 0) out.push({ cluster: c.cluster, eps });
  }
  return out;
}

/**
 * Records of one import in `zone`: none when the import has no name (a Headless import
 * without a ready endpoint, a ClusterSetIP import without an address or, with
 * `ignoreEmptyService`, without a ready endpoint).
 */
export function importRecords(zone: string, imp: ServiceImport, slices: readonly EndpointSlice[], opts: ZoneOptions): RecordSet[] {
  const base = `${imp.name}.${imp.namespace}.svc.${zone}`;
  const ttl = opts.ttl;
  const clusters = byCluster(slices);
  const now = served(clusters, opts);
  const count = now.reduce((n, c) => n + c.eps.length, 0);
  const headless = imp.type === 'Headless';
  if (headless ? count === 0 : imp.ips.length === 0 || (opts.ignoreEmptyService && count === 0)) return [];

  const forward: RecordSet[] = [];
  const ips = headless ? [...new Set(now.flatMap((c) => c.eps.map((e) => e.ip)))] : imp.ips;
  forward.push(...addressSets(base, ttl, ips));
  // `<clusterid>.<svc>...`: an empty non-terminal whose directory answers the endpoint names.
  for (const c of now) {
    const names = new EndpointNames(ttl);
    for (const e of c.eps) names.add(e.label, e.ip);
    const parent = `${c.cluster}.${base}`;
    forward.push({ name: parent, type: 0, rrs: NONE, children: new ClusterEndpoints(parent, names) });
  }
  const children = new ImportChildren(base, ttl, imp, clusters, opts, now);
  if (children.hasSrv) forward.push({ name: base, type: Type.SRV, rrs: NONE, build: () => children.srv(base, undefined) });
  if (children.size > 0) forward.push({ name: base, type: 0, rrs: NONE, children });
  return forward;
}

/** One source cluster's endpoint names below an import (`<ep>.<clusterid>.<svc>...`). */
class ClusterEndpoints implements ChildNames {
  readonly #parent: string;
  readonly #names: EndpointNames;

  constructor(parent: string, names: EndpointNames) {
    this.#parent = parent;
    this.#names = names;
  }

  get size(): number {
    return this.#names.size;
  }

  lookup(rel: string, name: string): Map<number, TypeEntry> | undefined {
    return rel.includes('.') ? undefined : this.#names.lookup(rel, name);
  }

  records(): Generator<RR> {
    return this.#names.records(this.#parent);
  }
}

/**
 * The `_<port>._<proto>` SRV names below an import and their `_<proto>` parents, answered
 * on demand from the (immutable) store objects, as ServiceChildren does for a Service.
 * Endpoint names are not here: they hang one level lower, below their cluster's name.
 */
class ImportChildren implements ChildNames {
  readonly size: number;
  readonly hasSrv: boolean;
  readonly #base: string;
  readonly #ttl: number;
  readonly #imp: ServiceImport;
  readonly #clusters: readonly ClusterSlices[];
  readonly #opts: ZoneOptions;

  /** `now`: the served endpoints as computed now (not kept). */
  constructor(base: string, ttl: number, imp: ServiceImport, clusters: readonly ClusterSlices[], opts: ZoneOptions, now: readonly ClusterServed[]) {
    this.#base = base;
    this.#ttl = ttl;
    this.#imp = imp;
    this.#clusters = clusters;
    this.#opts = opts;
    const rels = this.#rels(now);
    this.hasSrv = rels.length > 0;
    this.size = srvNames(rels).size;
  }

  #served(): ClusterServed[] | undefined {
    return this.#imp.type === 'Headless' ? served(this.#clusters, this.#opts) : undefined;
  }

  /** The SRV ports' relative names (srvRels); a Headless import's come from `now`. */
  #rels(now: readonly ClusterServed[] | undefined): string[] {
    const imp = this.#imp;
    return srvRels(imp.type === 'Headless' ? undefined : imp.ports, now?.flatMap((c) => c.eps) ?? []);
  }

  lookup(rel: string, name: string): Map<number, TypeEntry> | undefined {
    // Two labels not starting with '_' are `<ep>.<clusterid>` (parse.go), answered by the
    // cluster's own node; anything else that does not start with '_' does not exist.
    if (rel.charCodeAt(0) !== 95 /* _ */) return undefined;
    const now = this.#served();
    const srv = srvNames(this.#rels(now));
    if (srv.has(rel)) return new Map([[Type.SRV as number, this.srv(name, rel, now)]]);
    for (const proto of srv.values()) if (proto === rel) return new Map();
    return undefined;
  }

  /** The SRV sets below the import (zone transfer); `_proto` parents have no records. */
  *records(): Generator<RR> {
    const now = this.#served();
    for (const rel of srvNames(this.#rels(now)).keys()) yield* this.srv(`${rel}.${this.#base}`, rel, now).rrs;
  }

  /** The SRV set at `name`: every port, or those whose relative name is `rel`. */
  srv(name: string, rel: string | undefined, now?: readonly ClusterServed[]): TypeEntry {
    const base = this.#base;
    const ttl = this.#ttl;
    const imp = this.#imp;
    // findMultiClusterServices' ClusterIP branch, as a ClusterIP Service's, over spec.ips.
    if (imp.type !== 'Headless') return clusterIPSrvSet(name, base, ttl, imp.ports, imp.ips, rel);
    // One SRV per distinct (cluster, endpoint name, port), target `<ep>.<clusterid>.<svc>...`.
    const cands: SrvCandidate[] = [];
    for (const c of now ?? this.#served() ?? []) srvCandidates(cands, c.eps, `${c.cluster}.${base}`, rel);
    return endpointSrvSet(name, ttl, cands);
  }
}

/**
 * A multicluster zone over one ClusterStore (the primary cluster domain's: the imports
 * and their slices live beside that cluster's Services). The store's change names the
 * imports that changed (`ClusterChange.imports`); only those are rebuilt.
 */
export class MulticlusterZone extends ClusterZone {
  // No fields and no #private members: ClusterZone's constructor runs the first full
  // rebuild through ownerKinds() before a subclass's own members would exist.

  override stats(): ZoneStats {
    return { ...super.stats(), services: this.store.serviceImports.size };
  }

  /** Apply one store change: rebuild the named imports and namespaces only. */
  override apply(change: ClusterChange): void {
    if (change.full) {
      this.rebuildAll();
      return;
    }
    const glue = change.services.has(KUBE_DNS);
    // Services, pods: nothing of this zone (but the NS glue) can have changed.
    if (change.imports.size === 0 && change.namespaces.size === 0 && !glue) return;
    for (const key of change.imports) this.buildImport(key);
    for (const ns of change.namespaces) this.buildNamespace(ns);
    // The answer cache drops entries per `<zone>|<ns>/<name>` of `services`: here those
    // are the imports (the names below an import depend on it alone).
    this.updated({ ...change, services: change.imports });
  }

  protected override ownerKinds(): OwnerKind[] {
    return [
      { prefix: 'imp', keys: this.store.serviceImports.keys(), build: (key) => this.buildImport(key) },
      { prefix: 'ns', keys: this.store.namespaces.keys(), build: (ns) => this.buildNamespace(ns) },
    ];
  }

  private buildImport(key: string): void {
    const owner = `imp:${key}`;
    const imp = this.store.serviceImports.get(key);
    if (imp === undefined || !this.exposed(imp.namespace)) {
      this.forward.set(owner, []);
      return;
    }
    let sets: RecordSet[];
    try {
      sets = importRecords(this.name, imp, this.store.importSlicesOf(key), this.options);
    } catch (err) {
      // One import we cannot build must not take the zone down: left out, reported.
      process.emitWarning(`clusterdns: cannot build records of ServiceImport ${key}: ${String(err)}`);
      sets = [];
    }
    this.forward.set(owner, sets);
  }

  private buildNamespace(ns: string): void {
    const owner = `ns:${ns}`;
    // No `<ns>.pod.<zone>`: pod names are not served in multicluster zones.
    this.forward.set(owner, this.store.namespaces.has(ns) && this.exposed(ns) ? [exists(`${ns}.svc.${this.name}`)] : []);
  }

  /**
   * SOA, NS with glue, dns-version and `svc.<zone>` (no `pod`). The serial is the store's
   * `lastImportChange` as is (the store moves it forward for every change of imports, their
   * slices or namespaces, and `--workers` replicas copy it, so every worker serves one
   * serial per version). A new NS glue (kube-dns's ClusterIPs) does not move it, as
   * CoreDNS's ModifiedMultiCluster does not.
   */
  protected override apex(): void {
    this.setApex(this.store.lastImportChange, ['svc']);
  }
}

/** How a served zone is made: its name, the cluster domain whose store feeds it, its kind. */
export interface ZonePlan {
  readonly name: string;
  /** The cluster domain whose store it reads (StoreProvider.storeFor). */
  readonly store: string;
  readonly multicluster: boolean;
}

/**
 * The zones a node serves, from the provider's cluster domains and the `multicluster`
 * list. A multicluster zone that is not a cluster domain is served beside them from the
 * store of the primary cluster domain (the first one that is not itself multicluster;
 * the only one with the API source, the first folder by name with zones/); without one
 * it is not served. A multicluster zone that is also a cluster domain is served from its
 * own store's ServiceImports only, as CoreDNS does: its Services are not (the caller warns).
 */
export function planZones(clusterDomains: readonly string[], multicluster: readonly string[]): ZonePlan[] {
  const mc = new Set(multicluster.map((z) => z.toLowerCase()));
  const out: ZonePlan[] = clusterDomains.map((name) => ({ name, store: name, multicluster: mc.has(name) }));
  const primary = clusterDomains.find((d) => !mc.has(d));
  if (primary !== undefined) {
    for (const name of mc) if (!clusterDomains.includes(name)) out.push({ name, store: primary, multicluster: true });
  }
  return out;
}
