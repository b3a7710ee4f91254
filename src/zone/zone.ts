/**
 * ClusterZone: the names of one cluster domain, kept in step with one ClusterStore.
 *
 * Each store change names the services that changed; only their record sets are
 * rebuilt (the CoreDNS/Knot "precompute when the data changes" rule), so a query is
 * a Map lookup and an update costs the size of one service, not of the cluster.
 */
import { Type } from '../dns/constants.js';
import { addressRR, type RR } from '../dns/rr.js';
import type { ClusterChange, ClusterStore } from '../cluster/store.js';
import { serviceRecords, type ZoneOptions } from './build.js';
import { exists, NameTable, type RecordSet } from './table.js';
import { ReverseIndex } from './reverse.js';

/** Version of the Kubernetes DNS schema we implement (spec §2.2). */
export const DNS_SCHEMA_VERSION = '1.1.0';
const VERSION_TTL = 28800;

export interface ZoneStats {
  readonly services: number;
  readonly names: number;
  readonly reverseNames: number;
  readonly rebuilds: number;
}

/**
 * One kind of owner in the forward table (`<prefix>:<key>`): the keys the store holds
 * now and how one owner is (re)built, its records or none when it is gone or hidden.
 */
export interface OwnerKind {
  readonly prefix: string;
  readonly keys: Iterable<string>;
  readonly build: (key: string) => void;
}

export class ClusterZone {
  readonly name: string;
  readonly forward: NameTable;
  readonly reverse: ReverseIndex;
  readonly store: ClusterStore;
  #opts: ZoneOptions;
  /** Addresses for `ns.dns.<zone>` when no kube-system/kube-dns service exists. */
  #fallbackNS: readonly string[];
  #rebuilds = 0;
  #unsubscribe: () => void;
  /**
   * Called after every applied change (answer caches hang off this): with the change,
   * or undefined when everything was rebuilt.
   */
  onUpdate: ((change: ClusterChange | undefined) => void) | undefined;
  /**
   * The SOA serial served now: the store's `lastChange`, the time of the last
   * DNS-visible change, which the store moves to a later second for every change (two
   * in one second, a clock stepped back: BIND's unixtime rule), so a secondary, which
   * transfers when the serial is newer (RFC 1035 §4.3.5), sees every change. Taken as
   * is, not counted here: `--workers` replicas copy the primary's time, so every worker
   * serves the same serial for the same version (a count per zone would differ between
   * workers that applied the same changes in different batches).
   */
  serial = 0;

  constructor(name: string, store: ClusterStore, opts: ZoneOptions, fallbackNS: readonly string[] = []) {
    this.name = name.toLowerCase();
    this.store = store;
    this.#opts = opts;
    this.#fallbackNS = fallbackNS;
    this.forward = new NameTable(this.name);
    this.reverse = new ReverseIndex();
    this.reverse.ttl = opts.ttl;
    this.#unsubscribe = store.onChange((c) => this.apply(c));
    this.rebuildAll();
  }

  get options(): ZoneOptions {
    return this.#opts;
  }

  /** New options (config reload): everything is rebuilt. */
  setOptions(opts: ZoneOptions, fallbackNS: readonly string[] = this.#fallbackNS): void {
    this.#opts = opts;
    this.#fallbackNS = fallbackNS;
    this.reverse.ttl = opts.ttl;
    this.rebuildAll();
  }

  close(): void {
    this.#unsubscribe();
  }

  stats(): ZoneStats {
    return { services: this.store.services.size, names: this.forward.size, reverseNames: this.reverse.size, rebuilds: this.#rebuilds };
  }

  /** Apply one store change: rebuild the named services and namespaces only. */
  apply(change: ClusterChange): void {
    if (change.full) {
      this.rebuildAll();
      return;
    }
    for (const key of change.services) this.#service(key);
    for (const ns of change.namespaces) this.#namespace(ns);
    this.updated(change);
  }

  rebuildAll(): void {
    const wanted = new Set<string>();
    for (const kind of this.ownerKinds()) {
      for (const key of kind.keys) {
        wanted.add(`${kind.prefix}:${key}`);
        kind.build(key);
      }
    }
    for (const owner of [...this.forward.owners()]) {
      if (owner !== 'apex' && !wanted.has(owner)) this.forward.set(owner, []);
    }
    for (const owner of [...this.reverse.owners()]) {
      if (!wanted.has(owner)) this.reverse.set(owner, undefined);
    }
    this.updated(undefined);
  }

  /**
   * The kinds of owner a full rebuild walks: services and namespaces. A zone served from
   * other objects (MulticlusterZone: ServiceImports) names its own. Called from the
   * constructor, so an override must not reach a subclass's own fields or #private
   * members (they do not exist yet then).
   */
  protected ownerKinds(): OwnerKind[] {
    return [
      { prefix: 'svc', keys: this.store.services.keys(), build: (key) => this.#service(key) },
      { prefix: 'ns', keys: this.store.namespaces.keys(), build: (ns) => this.#namespace(ns) },
    ];
  }

  /** After a change was applied (undefined: everything rebuilt): apex, count, listeners. */
  protected updated(change: ClusterChange | undefined): void {
    this.apex();
    this.#rebuilds++;
    this.onUpdate?.(change);
  }

  /** Whether `ns` is served (`namespaces`). */
  protected exposed(ns: string): boolean {
    return this.#opts.namespaces === undefined || this.#opts.namespaces.has(ns);
  }

  #service(key: string): void {
    const owner = `svc:${key}`;
    const svc = this.store.services.get(key);
    if (svc === undefined || !this.exposed(svc.namespace)) {
      this.forward.set(owner, []);
      this.reverse.set(owner, undefined);
      return;
    }
    let recs;
    try {
      recs = serviceRecords(this.name, svc, this.store.endpointsOf(key), this.#opts);
    } catch (err) {
      // A record we cannot build (bad address that slipped through) must not take
      // the rest of the zone down: the service is left out and the cause reported.
      process.emitWarning(`clusterdns: cannot build records of service ${key}: ${String(err)}`);
      recs = { forward: [], ptr: undefined };
    }
    this.forward.set(owner, recs.forward);
    this.reverse.set(owner, recs.ptr);
  }

  #namespace(ns: string): void {
    const owner = `ns:${ns}`;
    if (!this.store.namespaces.has(ns) || !this.exposed(ns)) {
      this.forward.set(owner, []);
      return;
    }
    const sets: RecordSet[] = [exists(`${ns}.svc.${this.name}`)];
    // `<ns>.pod.<zone>` exists when pod names can exist below it (pods insecure/verified).
    if (this.#opts.pods !== 'disabled') sets.push(exists(`${ns}.pod.${this.name}`));
    this.forward.set(owner, sets);
  }

  /** Apex: the serial is the time of the last DNS-visible change; `svc` and `pod` always exist. */
  protected apex(): void {
    this.setApex(this.store.lastChange, ['svc', 'pod']);
  }

  /**
   * The apex owner at `serial`: SOA, NS with the `ns.dns.<zone>` glue, dns-version, and
   * the names always present below the apex (`below`: `svc`, `pod`).
   */
  protected setApex(serial: number, below: readonly string[]): void {
    const z = this.name;
    const nsName = `ns.dns.${z}`;
    const ttl = this.#opts.ttl;
    this.serial = serial >>> 0;
    const glue = this.#nsAddresses().map((ip) => addressRR(nsName, ttl, ip));
    const sets: RecordSet[] = [
      { name: z, type: Type.SOA, rrs: [this.soa()] },
      { name: z, type: Type.NS, rrs: [{ name: z, type: Type.NS, ttl, target: nsName }], extra: glue },
      { name: `dns-version.${z}`, type: Type.TXT, rrs: [{ name: `dns-version.${z}`, type: Type.TXT, ttl: VERSION_TTL, txt: [DNS_SCHEMA_VERSION] }] },
      ...below.map((label) => exists(`${label}.${z}`)),
    ];
    const a = glue.filter((r) => r.type === Type.A);
    const aaaa = glue.filter((r) => r.type === Type.AAAA);
    if (a.length > 0) sets.push({ name: nsName, type: Type.A, rrs: a });
    if (aaaa.length > 0) sets.push({ name: nsName, type: Type.AAAA, rrs: aaaa });
    if (glue.length === 0) sets.push(exists(nsName));
    this.forward.set('apex', sets);
  }

  /**
   * The name server's addresses: the ClusterIPs of kube-system/kube-dns (what pods
   * have as nameserver), else the addresses we listen on (CoreDNS nsAddrs).
   */
  #nsAddresses(): readonly string[] {
    const svc = this.store.services.get('kube-system/kube-dns');
    if (svc !== undefined && svc.clusterIPs.length > 0) return svc.clusterIPs;
    return this.#fallbackNS;
  }

  /**
   * `<zone> SOA ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 <ttl>`,
   * TTL min(ttl, 300), serial = time of the last DNS-visible change (CoreDNS backend_lookup.go).
   */
  soa(owner: string = this.name): RR {
    const ttl = this.#opts.ttl;
    return {
      name: owner,
      type: Type.SOA,
      ttl: Math.min(ttl, 300),
      soa: {
        mname: `ns.dns.${this.name}`,
        rname: `hostmaster.${this.name}`,
        serial: this.serial,
        refresh: 7200,
        retry: 1800,
        expire: 86400,
        minimum: ttl,
      },
    };
  }
}

/**
 * `t` when it is later than `prev` in RFC 1982 §3.2 serial order, else `prev + 1` (mod
 * 2^32): for a serial counted by its zone. ClusterZone takes the store's time as is (the
 * store already moves it forward per change, and replicas copy it).
 */
export function nextSerial(t: number, prev: number): number {
  const d = (t - prev) >>> 0;
  return d !== 0 && d < 0x80000000 ? t >>> 0 : (prev + 1) >>> 0;
}
