/**
 * What the API source does to slim objects before they enter the store: a slice's
 * endpoints are packed into columns (`packed.ts`: an address slot and a condition digit
 * per endpoint instead of an object, an address array and a conditions object), losing
 * the fields DNS never reads (node unless the proxy runs, zone unless `zonal` is on, the
 * pod name unless `endpointPodNames` is on); and the small, endlessly repeated parts are
 * shared: pods' node names and phases (a few hundred distinct strings across 150,000
 * objects), zone names and port lists (the same for every slice of a service, often for
 * every service of an app).
 *
 * Shared values are frozen and structurally identical to what they replace, so the store's
 * deep equality (no-op update detection) sees no difference, and is faster for them (`===`).
 * Measured on the benchmark's cluster (store heap, 150k endpoints): 38.4 MB with an object
 * per endpoint, 28.9 MB with shared conditions, 15.6 MB packed.
 * Tables are bounded: when one exceeds MAX_ENTRIES it starts over (correctness never
 * depends on a hit).
 */
import type { ClusterObject, EndpointSlice, Pod, Service } from '../model.js';
import { packEndpoints } from '../packed.js';

const MAX_ENTRIES = 20_000;

class Table<T> {
  readonly #m = new Map<string, T>();
  get(key: string, make: () => T): T {
    let v = this.#m.get(key);
    if (v === undefined) {
      if (this.#m.size >= MAX_ENTRIES) this.#m.clear();
      v = make();
      this.#m.set(key, v);
    }
    return v;
  }
  get size(): number {
    return this.#m.size;
  }
}

function freezeDeep<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) freezeDeep(x);
    Object.freeze(v);
  }
  return v;
}

export interface InternerOptions {
  /** Keep endpoints' pod names (only `endpointPodNames` reads them). */
  readonly keepPodNames: boolean;
  /** Keep endpoints' node names (the service proxy's internalTrafficPolicy: Local). */
  readonly keepNodeNames?: boolean;
  /** Keep endpoints' topology zones (only the `zonal` names read them). */
  readonly keepZones?: boolean;
}

export class Interner {
  readonly #keepPodNames: boolean;
  readonly #keepNodeNames: boolean;
  readonly #keepZones: boolean;
  readonly #strings = new Table<string>();
  readonly #json = new Table<unknown>();

  constructor(opts: InternerOptions = { keepPodNames: true }) {
    this.#keepPodNames = opts.keepPodNames;
    this.#keepNodeNames = opts.keepNodeNames === true;
    this.#keepZones = opts.keepZones === true;
  }

  /** Entries held (for tests). */
  get size(): number {
    return this.#strings.size + this.#json.size;
  }

  string(s: string): string;
  string(s: string | undefined): string | undefined;
  string(s: string | undefined): string | undefined {
    return s === undefined ? undefined : this.#strings.get(s, () => s);
  }

  /** A frozen shared copy of a small JSON-like value (ports, labels). */
  value<T>(v: T): T {
    return this.#json.get(JSON.stringify(v), () => freezeDeep(v)) as T;
  }

  // Label maps and selectors are mostly unique per service (app: <name>): sharing them
  // would cost a table key each and save nothing, so they are left alone.

  // Each returns its argument when it is already in stored form (the watcher prepares
  // list pages as they arrive, and the writer passes every write through again).

  #slice(s: EndpointSlice): EndpointSlice {
    // Only what DNS reads: addresses, conditions, hostname (and the pod name for
    // endpointPodNames), packed into columns. nodeName feeds only the service proxy and
    // zone only the `zonal` names: each is kept just when that reader is on, though an
    // API endpoint carries them always.
    const endpoints = packEndpoints(s.endpoints, this.#keepPodNames, this.#keepNodeNames, (n) => this.string(n), this.#keepZones);
    const ports = this.value(s.ports);
    return endpoints === s.endpoints && ports === s.ports ? s : { ...s, endpoints, ports };
  }

  #service(s: Service): Service {
    const ports = this.value(s.ports);
    const ipFamilies = s.ipFamilies === undefined ? undefined : this.value(s.ipFamilies);
    if (ports === s.ports && ipFamilies === s.ipFamilies) return s;
    const out: { -readonly [K in keyof Service]: Service[K] } = { ...s, ports };
    if (ipFamilies !== undefined) out.ipFamilies = ipFamilies;
    return out;
  }

  #pod(p: Pod): Pod {
    // Always a copy: strings compare by content, so whether `phase` is already the shared
    // instance cannot be told.
    const out: { -readonly [K in keyof Pod]: Pod[K] } = { ...p, phase: this.string(p.phase), containerPorts: this.value(p.containerPorts) };
    if (p.nodeName !== undefined) out.nodeName = this.string(p.nodeName);
    return out;
  }

  /** The same object, sharing its repeated parts. */
  object(o: ClusterObject): ClusterObject {
    switch (o.kind) {
      case 'EndpointSlice':
      case 'Endpoints': {
        const obj = this.#slice(o.obj);
        return obj === o.obj ? o : { kind: o.kind, obj };
      }
      case 'Service': {
        const obj = this.#service(o.obj);
        return obj === o.obj ? o : { kind: o.kind, obj };
      }
      case 'Pod': {
        const obj = this.#pod(o.obj);
        return obj === o.obj ? o : { kind: o.kind, obj };
      }
      case 'Namespace':
        return o;
      case 'ServiceImport': {
        // Ports shared like a Service's: an import repeats its exported Service's list.
        const ports = this.value(o.obj.ports);
        return ports === o.obj.ports ? o : { kind: o.kind, obj: { ...o.obj, ports } };
      }
    }
  }
}
