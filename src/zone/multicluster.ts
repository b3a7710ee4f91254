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
import { addressRR, type RR } from '../dns/rr.js';
import type { EndpointSlice, Service, ServiceImport } from '../cluster/model.js';
import type { ClusterChange, ClusterStore } from '../cluster/store.js';
import { addressSets, nameOf, servedEndpoints, srvRel, srvWeight, type ServedEndpoint, type ZoneOptions } from './build.js';
import { EndpointNames } from './endpoints.js';
import { exists, type ChildNames, type RecordSet, type TypeEntry } from './table.js';
import { ClusterZone, DNS_SCHEMA_VERSION, type ZoneStats } from './zone.js';

const VERSION_TTL = 28800;
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

  *records(): Generator<RR> {
    for (const label of this.#names.labels()) {
      const sets = this.#names.lookup(label, `${label}.${this.#parent}`);
      if (sets === undefined) continue;
      for (const e of sets.values()) yield* e.rrs;
    }
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

  /** One entry per port an SRV record is made of: `_http._tcp`, or '' when unnamed. */
  #rels(now: readonly ClusterServed[] | undefined): string[] {
    const out: string[] = [];
    if (this.#imp.type !== 'Headless') {
      for (const p of this.#imp.ports) out.push(p.name === '' ? '' : srvRel(p));
      return out;
    }
    const seen = new Set<EndpointSlice['ports']>();
    for (const c of now ?? []) {
      for (const e of c.eps) {
        if (seen.has(e.ports)) continue;
        seen.add(e.ports);
        for (const p of e.ports) if (p.port >= 1) out.push(p.name === '' ? '' : srvRel(p));
      }
    }
    return out;
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
    if (imp.type !== 'Headless') {
      // `0 w port <svc>.`, the clusterset IPs as additional (findMultiClusterServices'
      // ClusterIP branch: one candidate per port × IP).
      const ports = imp.ports.filter((p) => rel === undefined || (p.name !== '' && srvRel(p) === rel));
      const w = srvWeight(ports.length * imp.ips.length);
      const seen = new Set<number>();
      const rrs: RR[] = [];
      for (const p of ports) {
        if (seen.has(p.port)) continue;
        seen.add(p.port);
        rrs.push({ name, type: Type.SRV, ttl, srv: { priority: 0, weight: w, port: p.port, target: base } });
      }
      return { rrs, extra: imp.ips.map((ip) => addressRR(base, ttl, ip)) };
    }
    // One SRV per distinct (cluster, endpoint name, port), target `<ep>.<clusterid>.<svc>...`.
    type Cand = { target: string; ip: string; port: number };
    const cands: Cand[] = [];
    for (const c of now ?? this.#served() ?? []) {
      for (const e of c.eps) {
        for (const p of e.ports) {
          if (p.port < 1) continue;
          if (rel !== undefined && (p.name === '' || srvRel(p) !== rel)) continue;
          cands.push({ target: `${nameOf(e)}.${c.cluster}.${base}`, ip: e.ip, port: p.port });
        }
      }
    }
    const w = srvWeight(cands.length);
    const seen = new Set<string>();
    const seenExtra = new Set<string>();
    const rrs: RR[] = [];
    const extra: RR[] = [];
    for (const c of cands) {
      const k = `${c.target}|${c.port}`;
      if (!seen.has(k)) {
        seen.add(k);
        rrs.push({ name, type: Type.SRV, ttl, srv: { priority: 0, weight: w, port: c.port, target: c.target } });
      }
      const ke = `${c.target}|${c.ip}`;
      if (!seenExtra.has(ke)) {
        seenExtra.add(ke);
        extra.push(addressRR(c.target, ttl, c.ip));
      }
    }
    return { rrs, extra };
  }
}

/** Relative SRV names (`_http._tcp`) → their `_proto` parent. */
function srvNames(rels: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const rel of rels) if (rel !== '') out.set(rel, rel.slice(rel.indexOf('.') + 1));
  return out;
}

/**
 * A multicluster zone over one ClusterStore (the primary cluster domain's: the imports
 * and their slices live beside that cluster's Services). The store's change names the
 * imports that changed (`ClusterChange.imports`); only those are rebuilt.
 */
export class MulticlusterZone extends ClusterZone {
  #fallbackNS: readonly string[];
  #rebuilds = 0;

  constructor(name: string, store: ClusterStore, opts: ZoneOptions, fallbackNS: readonly string[] = []) {
    // ClusterZone's constructor subscribes to the store and calls rebuildAll() before this
    // class's fields exist; that call does nothing (see rebuildAll) and this one builds.
    super(name, store, opts, fallbackNS);
    this.#fallbackNS = fallbackNS;
    this.rebuildAll();
  }

  override setOptions(opts: ZoneOptions, fallbackNS: readonly string[] = this.#fallbackNS): void {
    this.#fallbackNS = fallbackNS;
    super.setOptions(opts, fallbackNS);
  }

  override stats(): ZoneStats {
    return { services: this.store.serviceImports.size, names: this.forward.size, reverseNames: 0, rebuilds: this.#rebuilds };
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
    for (const key of change.imports) this.#import(key);
    for (const ns of change.namespaces) this.#namespace(ns);
    this.#apex();
    this.#rebuilds++;
    // The answer cache drops entries per `<zone>|<ns>/<name>` of `services`: here those
    // are the imports (the names below an import depend on it alone).
    this.onUpdate?.({ ...change, services: change.imports });
  }

  override rebuildAll(): void {
    // Called by ClusterZone's constructor before this class is initialized: skipped there.
    if (!(#rebuilds in this)) return;
    const wanted = new Set<string>();
    for (const key of this.store.serviceImports.keys()) {
      wanted.add(`imp:${key}`);
      this.#import(key);
    }
    for (const ns of this.store.namespaces.keys()) {
      wanted.add(`ns:${ns}`);
      this.#namespace(ns);
    }
    for (const owner of [...this.forward.owners()]) {
      if (owner !== 'apex' && !wanted.has(owner)) this.forward.set(owner, []);
    }
    this.#apex();
    this.#rebuilds++;
    this.onUpdate?.(undefined);
  }

  override soa(owner: string = this.name): RR {
    const ttl = this.options.ttl;
    return {
      name: owner,
      type: Type.SOA,
      ttl: Math.min(ttl, 300),
      soa: {
        mname: `ns.dns.${this.name}`,
        rname: `hostmaster.${this.name}`,
        serial: this.serial >>> 0,
        refresh: 7200,
        retry: 1800,
        expire: 86400,
        minimum: ttl,
      },
    };
  }

  #exposed(ns: string): boolean {
    const only = this.options.namespaces;
    return only === undefined || only.has(ns);
  }

  #import(key: string): void {
    const owner = `imp:${key}`;
    const imp = this.store.serviceImports.get(key);
    if (imp === undefined || !this.#exposed(imp.namespace)) {
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

  #namespace(ns: string): void {
    const owner = `ns:${ns}`;
    // No `<ns>.pod.<zone>`: pod names are not served in multicluster zones.
    this.forward.set(owner, this.store.namespaces.has(ns) && this.#exposed(ns) ? [exists(`${ns}.svc.${this.name}`)] : []);
  }

  /**
   * SOA, NS with glue, dns-version and `svc.<zone>`. The serial is the store's
   * `lastImportChange` as is (the store moves it forward for every change of imports, their
   * slices or namespaces, and `--workers` replicas copy it, so every worker serves one
   * serial per version). A new NS glue (kube-dns's ClusterIPs) does not move it, as
   * CoreDNS's ModifiedMultiCluster does not.
   */
  #apex(): void {
    const z = this.name;
    const nsName = `ns.dns.${z}`;
    const ttl = this.options.ttl;
    this.serial = this.store.lastImportChange >>> 0;
    const glue = this.#nsAddresses().map((ip) => addressRR(nsName, ttl, ip));
    const sets: RecordSet[] = [
      { name: z, type: Type.SOA, rrs: [this.soa()] },
      { name: z, type: Type.NS, rrs: [{ name: z, type: Type.NS, ttl, target: nsName }], extra: glue },
      { name: `dns-version.${z}`, type: Type.TXT, rrs: [{ name: `dns-version.${z}`, type: Type.TXT, ttl: VERSION_TTL, txt: [DNS_SCHEMA_VERSION] }] },
      exists(`svc.${z}`),
    ];
    const a = glue.filter((r) => r.type === Type.A);
    const aaaa = glue.filter((r) => r.type === Type.AAAA);
    if (a.length > 0) sets.push({ name: nsName, type: Type.A, rrs: a });
    if (aaaa.length > 0) sets.push({ name: nsName, type: Type.AAAA, rrs: aaaa });
    if (glue.length === 0) sets.push(exists(nsName));
    this.forward.set('apex', sets);
  }

  /** As the cluster zone: kube-system/kube-dns's ClusterIPs, else the addresses we listen on. */
  #nsAddresses(): readonly string[] {
    const svc = this.store.services.get(KUBE_DNS);
    if (svc !== undefined && svc.clusterIPs.length > 0) return svc.clusterIPs;
    return this.#fallbackNS;
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
