/**
 * LoadBalancerRR: kube-proxy's userspace round robin with ClientIP session affinity
 * (pkg/proxy/userspace/roundrobin.go, ≤ v1.25), one state per service port.
 *
 * - Endpoints are shuffled whenever the set changes and the rotation restarts at 0
 *   (`OnEndpointsUpdate`); between changes the sequence is strictly cyclic, and the
 *   index is shared by every client and advanced by every pick, including picks whose
 *   dial later fails (`NextEndpoint`).
 * - Affinity is keyed by the source IP only (the port is dropped), with a sliding TTL
 *   compared in whole seconds (`floor(elapsed) < ttl`); `reset` (after a failed dial)
 *   skips the lookup, advances the rotation and re-pins the client.
 * - On a change only affinity entries whose endpoint disappeared are dropped
 *   (`removeStaleAffinity`); an empty endpoint list drops them all (`resetService`).
 *
 * Differences from kube-proxy, on purpose:
 * - The affinity map is bounded (`maxAffinity`, default 16,384 clients per service port;
 *   kube-proxy's is unbounded). Entries are kept in least-recently-used order, so the
 *   bound evicts the client idle longest and the expiry sweep stops at the first live one.
 * - A TTL change applies at once (`newServiceInternal` only updates the affinity type).
 */

/** The part of an endpoint the balancer needs: its `ip:port` identity and where to dial. */
export interface LbEndpoint {
  readonly key: string;
  readonly ip: string;
  readonly port: number;
}

/** Affinity entries kept per service port (kube-proxy: unbounded). */
export const DEFAULT_MAX_AFFINITY = 16_384;

export interface LoadBalancerOptions {
  /** Monotonic clock in milliseconds (tests inject one). Default `performance.now`. */
  readonly now?: () => number;
  /** Uniform [0, 1) source for the shuffle (tests inject one). Default `Math.random`. */
  readonly random?: () => number;
  /** Affinity entries per service port; the least recently used is evicted beyond it. */
  readonly maxAffinity?: number;
}

interface Affinity {
  endpoint: LbEndpoint;
  /** `now()` at the last pick for this client (ms). */
  lastUsed: number;
}

interface ServiceState {
  endpoints: LbEndpoint[];
  index: number;
  /** 0 = no affinity (type None). */
  ttlSeconds: number;
  /** clientIP → entry, in least-recently-used-first order. */
  affinity: Map<string, Affinity>;
  /** Counts endpoint changes, so a UDP flow re-checks its endpoint only after one. */
  gen?: number;
}

export class LoadBalancerRR {
  readonly #services = new Map<string, ServiceState>();
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #maxAffinity: number;

  constructor(opts: LoadBalancerOptions = {}) {
    this.#now = opts.now ?? (() => performance.now());
    this.#random = opts.random ?? Math.random;
    this.#maxAffinity = Math.max(1, opts.maxAffinity ?? DEFAULT_MAX_AFFINITY);
  }

  /**
   * Create the state of a service port, or update the affinity of an existing one
   * (`NewService` / `newServiceInternal`). `affinitySeconds` 0 means no affinity (the
   * view has already applied the API default of 10800 s); turning affinity off drops
   * the entries.
   */
  newService(key: string, affinitySeconds: number): void {
    const ttl = affinitySeconds > 0 ? affinitySeconds : 0;
    const s = this.#services.get(key);
    if (s === undefined) {
      this.#services.set(key, { endpoints: [], index: 0, ttlSeconds: ttl, affinity: new Map() });
      return;
    }
    if (ttl === 0) s.affinity.clear();
    s.ttlSeconds = ttl;
  }

  /** Forget a service port entirely (`DeleteService`). */
  deleteService(key: string): void {
    this.#services.delete(key);
  }

  has(key: string): boolean {
    return this.#services.has(key);
  }

  /** Endpoint changes of a service port so far (-1: unknown port). */
  generation(key: string): number {
    const s = this.#services.get(key);
    return s === undefined ? -1 : (s.gen ?? 0);
  }

  /** Whether `endpointKey` is among the port's endpoints now. */
  hasEndpoint(key: string, endpointKey: string): boolean {
    return this.#services.get(key)?.endpoints.some((e) => e.key === endpointKey) ?? false;
  }

  /** Keys of the service ports with state. */
  keys(): IterableIterator<string> {
    return this.#services.keys();
  }

  /**
   * Set the endpoints of a service port (`OnEndpointsUpdate` for one port). An identical
   * set (compared by key, order ignored) changes nothing; otherwise stale affinity is
   * dropped, the list is shuffled and the rotation restarts. Creates the state (without
   * affinity) when missing, as `OnEndpointsAdd` does.
   */
  updateEndpoints(key: string, endpoints: readonly LbEndpoint[]): void {
    let s = this.#services.get(key);
    if (s === undefined) {
      s = { endpoints: [], index: 0, ttlSeconds: 0, affinity: new Map() };
      this.#services.set(key, s);
    }
    if (sameSet(s.endpoints, endpoints)) return;
    s.gen = (s.gen ?? 0) + 1;
    if (endpoints.length === 0) {
      // resetService: no endpoints left, every affinity entry goes.
      s.endpoints = [];
      s.index = 0;
      s.affinity.clear();
      return;
    }
    const keep = new Set(endpoints.map((e) => e.key));
    // removeStaleAffinity: only clients pinned to an endpoint that left lose their pin.
    for (const [ip, a] of s.affinity) if (!keep.has(a.endpoint.key)) s.affinity.delete(ip);
    s.endpoints = this.#shuffle(endpoints);
    s.index = 0;
    // Pins that survive must point at the current objects (same key, maybe new fields).
    const byKey = new Map(s.endpoints.map((e) => [e.key, e]));
    for (const a of s.affinity.values()) a.endpoint = byKey.get(a.endpoint.key) ?? a.endpoint;
  }

  /**
   * The endpoint for a new connection or flow (`NextEndpoint`), or undefined when the
   * service port is unknown ("missing service entry") or has no endpoints ("missing
   * endpoints"): the caller gives up at once, without retries. `client` is the source
   * address without port (or a function giving it, called only when the port has
   * affinity). `reset` is set after a failed dial.
   */
  nextEndpoint(key: string, client: string | (() => string), reset = false): LbEndpoint | undefined {
    const s = this.#services.get(key);
    if (s === undefined || s.endpoints.length === 0) return undefined;
    const sticky = s.ttlSeconds > 0;
    const now = sticky ? this.#now() : 0;
    // The source address costs a getpeername(2) per connection: asked for only with affinity.
    const clientIP = !sticky ? '' : typeof client === 'string' ? client : client();
    if (sticky && !reset) {
      const a = s.affinity.get(clientIP);
      if (a !== undefined) {
        if (Math.floor((now - a.lastUsed) / 1000) < s.ttlSeconds) {
          // Sliding window; delete+set keeps the map in least-recently-used order.
          a.lastUsed = now;
          s.affinity.delete(clientIP);
          s.affinity.set(clientIP, a);
          return a.endpoint;
        }
      }
    }
    const ep = s.endpoints[s.index] as LbEndpoint;
    s.index = (s.index + 1) % s.endpoints.length;
    if (sticky) {
      s.affinity.delete(clientIP);
      if (s.affinity.size >= this.#maxAffinity) this.#evict(s, now);
      s.affinity.set(clientIP, { endpoint: ep, lastUsed: now });
    }
    return ep;
  }

  /**
   * Drop expired affinity entries of every service port (`CleanupStaleStickySessions`,
   * run by the proxier at each update). Returns how many were dropped.
   */
  cleanupStaleStickySessions(): number {
    const now = this.#now();
    let n = 0;
    for (const s of this.#services.values()) n += this.#sweep(s, now);
    return n;
  }

  /** Endpoint keys in rotation order, the next index, and pinned clients (tests, debugging). */
  inspect(key: string): { endpoints: string[]; index: number; affinity: Map<string, string> } | undefined {
    const s = this.#services.get(key);
    if (s === undefined) return undefined;
    return {
      endpoints: s.endpoints.map((e) => e.key),
      index: s.index,
      affinity: new Map([...s.affinity].map(([ip, a]) => [ip, a.endpoint.key])),
    };
  }

  #sweep(s: ServiceState, now: number): number {
    if (s.ttlSeconds === 0) return 0;
    let n = 0;
    // Least recently used first: the first live entry ends the sweep.
    for (const [ip, a] of s.affinity) {
      if (Math.floor((now - a.lastUsed) / 1000) < s.ttlSeconds) break;
      s.affinity.delete(ip);
      n++;
    }
    return n;
  }

  #evict(s: ServiceState, now: number): void {
    if (this.#sweep(s, now) > 0 && s.affinity.size < this.#maxAffinity) return;
    while (s.affinity.size >= this.#maxAffinity) {
      const oldest = s.affinity.keys().next();
      if (oldest.done === true) return;
      s.affinity.delete(oldest.value);
    }
  }

  /** Fisher–Yates (kube-proxy's `shuffleStrings`), on a copy. */
  #shuffle(eps: readonly LbEndpoint[]): LbEndpoint[] {
    const a = eps.slice();
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.#random() * (i + 1));
      const t = a[i] as LbEndpoint;
      a[i] = a[j] as LbEndpoint;
      a[j] = t;
    }
    return a;
  }
}

/** Same endpoints as multisets of keys (kube-proxy sorts both and compares). */
function sameSet(a: readonly LbEndpoint[], b: readonly LbEndpoint[]): boolean {
  if (a.length !== b.length) return false;
  const ka = a.map((e) => e.key).sort();
  const kb = b.map((e) => e.key).sort();
  for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return false;
  return true;
}
