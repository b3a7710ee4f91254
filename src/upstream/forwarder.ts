/**
 * The forwarder: names we are not authoritative for go to upstream resolvers through
 * a cache, as CoreDNS `forward . /etc/resolv.conf { max_concurrent 1000 }` plus
 * `cache 30` plus `loop` do in the default Corefile.
 *
 * One query, in order:
 *  1. a returning loop probe of ours → SERVFAIL (see loop.ts);
 *  2. the pool: the longest matching stub domain, else the default upstreams (none →
 *     REFUSED, as `--no-upstream`);
 *  3. the cache (cache.ts): a fresh entry is served with TTLs counted down, and maybe
 *     refreshed in the background (prefetch);
 *  4. more than `maxConcurrent` queries waiting on upstreams → REFUSED at once (CoreDNS
 *     `max_concurrent`);
 *  5. identical questions already in flight share one upstream query (so a burst, or a
 *     query looping back through us, costs one upstream query): one "flight" per
 *     (slot, name), which every waiting query joins;
 *  6. the servers of the pool in `policy` order (healthy ones; all when none is), each
 *     try getting an equal share of what is left of `timeoutMs`, so a dead first server
 *     still leaves time for the next. UDP first, on the server's socket set (sockets.ts:
 *     random ports and IDs, RFC 5452), with deadlines in one timer wheel (timers.ts);
 *     a truncated reply is asked again over TCP (RFC 7766 §5). A timeout or network
 *     error moves to the next server and starts health checks of the failed one
 *     (health.ts). SERVFAIL, REFUSED, FORMERR and NOTIMP
 *     from a server also move on (CoreDNS would return them; another server may well
 *     answer) and are returned only if no server does better;
 *  7. nothing usable: a stale cache entry (RFC 8767) with TTL 30, else the last error
 *     reply of a server, else SERVFAIL. The client never waits much longer than
 *     `timeoutMs`.
 *
 * The reply keeps the client's ID, question bytes and EDNS presence, and fits its size
 * (wire.ts `renderEntry` for cached answers, `renderReply` for the rest).
 *
 * A hit costs a Map lookup by (numeric slot, the parser's lowercase name), one copy
 * and patches; a miss costs the flight, one datagram out and one in, and the render:
 * no timer, promise chain or socket per query (one Promise per client query, which the
 * handler's `next` stage requires).
 */
import { Flag, Rcode, Type, UDP_MIN_SIZE } from '../dns/constants.js';
import { bytesToIP, type HostPort } from '../net/ip.js';
import type { Query } from '../dns/query.js';
import { addressRR, type RR } from '../dns/rr.js';
import { writeResponse } from '../dns/writer.js';
import type { SourceLog } from '../log.js';
import { MAX_UDP_SIZE, type Transport } from '../server/handler.js';
import { AnswerCache, cacheSlot, countdown, STALE_TTL, type CacheEntry, type CacheOptions, type CacheStats } from './cache.js';
import { tcpExchange, type ExchangeError, type ExchangeResult, type Tracker } from './exchange.js';
import { HealthChecker } from './health.js';
import { LoopDetector } from './loop.js';
import { normalizeDomain, Pool, routeName, type ErrorKind, type Policy, type Upstream, type UpstreamStats } from './pool.js';
import { isSelf } from './resolvconf.js';
import { UdpSockets, type UdpSocketOptions } from './sockets.js';
import { TimerWheel } from './timers.js';
import { buildQuery, bytesOf, lowerQuestion, questionFor, randomId, readName, renderEntry, renderReply, scanOf, type Scan } from './wire.js';

export interface ForwarderOptions {
  /** Default upstream servers (`--upstream`, or resolvConfUpstreams()). */
  readonly upstreams: readonly HostPort[];
  /** kube-dns style stub domains: domain → its own servers; the longest suffix wins. */
  readonly stubDomains?: Readonly<Record<string, readonly HostPort[]>> | undefined;
  /** Most queries waiting on upstreams at once; more get REFUSED (default 1000). */
  readonly maxConcurrent?: number | undefined;
  /** Longest a query waits for upstreams in all, ms (default 2000). */
  readonly timeoutMs?: number | undefined;
  /** Time between health checks of a failing server, ms (default 500, CoreDNS). */
  readonly healthCheckIntervalMs?: number | undefined;
  /** Wait for a health check reply, ms (default 1000, CoreDNS). */
  readonly healthCheckTimeoutMs?: number | undefined;
  /** Failed health checks after which a server is down (default 2; 0: never down). */
  readonly maxFails?: number | undefined;
  /** Server order per query (default 'random', CoreDNS). */
  readonly policy?: Policy | undefined;
  readonly cache?: CacheOptions | undefined;
  /** The UDP sockets per upstream server (sockets.ts; defaults there). */
  readonly udpSockets?: UdpSocketOptions | undefined;
  readonly log?: SourceLog | undefined;
  /** Our listen addresses: upstreams that are us are dropped (with an error log). */
  readonly selfAddresses?: readonly HostPort[] | undefined;
  /** Send loop probes on start() and setUpstreams() (default true). */
  readonly loopDetection?: boolean | undefined;
  /** Clock for cache ages, ms (tests). */
  readonly now?: (() => number) | undefined;
  /**
   * Called after every exchange with an upstream (for latency histograms). The event
   * object is reused: read it during the call, do not keep it.
   */
  readonly onUpstream?: ((e: UpstreamEvent) => void) | undefined;
}

/** One exchange with one upstream server. */
export interface UpstreamEvent {
  /** `host:port`. */
  readonly upstream: string;
  /** `.` or the stub domain. */
  readonly domain: string;
  readonly transport: Transport;
  /** Reply rcode, when a reply came. */
  readonly rcode: number | undefined;
  readonly error: ExchangeError | undefined;
  readonly seconds: number;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export interface ForwarderStats {
  /** Queries waiting on upstreams now. */
  readonly inFlight: number;
  /** Queries refused because `maxConcurrent` were in flight. */
  readonly maxConcurrentRejects: number;
  /** Queries answered SERVFAIL (or an upstream error reply) because no server answered usefully. */
  readonly failures: number;
  /** Upstream queries now waiting for a reply or their deadline (one per flight). */
  readonly pendingExchanges: number;
  /** UDP sockets open to upstream servers now. */
  readonly udpSockets: number;
  readonly loopDetected: readonly string[];
  readonly upstreams: readonly UpstreamStats[];
  readonly cache: CacheStats;
}

/** Answer records of an upstream lookup (ExternalName chase). */
export interface LookupResult {
  readonly rcode: number;
  /** A, AAAA and CNAME records of the answer section, TTLs as they would be served. */
  readonly answer: RR[];
  /** The upstream reply had TC (CoreDNS copies it onto the CNAME answer). */
  readonly tc: boolean;
}

export const FORWARD_DEFAULTS = {
  maxConcurrent: 1000,
  timeoutMs: 2000,
  healthCheckIntervalMs: 500,
  healthCheckTimeoutMs: 1000,
  maxFails: 2,
  policy: 'random' as Policy,
} as const;

/** Shortest try at one server, ms, unless less time is left in all. */
const MIN_TRY_MS = 250;

/** A client query waiting on a flight. */
interface ClientWaiter {
  readonly resolve: (b: Buffer | undefined) => void;
  readonly q: Query;
  readonly req: Uint8Array;
  readonly maxSize: number;
}

/** A `lookup` (ExternalName chase) waiting on a flight. */
interface LookupWaiter {
  readonly resolve: (r: LookupResult) => void;
  readonly q: undefined;
}

type Waiter = ClientWaiter | LookupWaiter;

interface Reply {
  readonly msg: Buffer;
  readonly scan: Scan;
}

/** One upstream resolution of (slot, name), shared by every query that waits for it. */
class Flight {
  /** The first query waiting, and any that joined it (an array only when shared). */
  first: Waiter | undefined = undefined;
  more: Waiter[] | undefined = undefined;
  /** Queries waiting (each counted in flight). */
  waiting = 0;
  /** Servers to try, and the next one's index. */
  list: readonly Upstream[] = [];
  next = 0;
  /** performance.now() ms: end of the whole flight, and of the current try. */
  deadline = 0;
  tryEnd = 0;
  /** The server of the current try, and when its exchange started. */
  up: Upstream | undefined = undefined;
  t0 = 0;
  /** The truncated UDP reply while TCP is asked. */
  truncated: Reply | undefined = undefined;
  /** An error reply (SERVFAIL, …, or truncated) to pass on if nothing better comes. */
  fallback: Reply | undefined = undefined;
  /** The entry a prefetch refreshes (counted as one in flight). */
  prefetch: CacheEntry | undefined = undefined;
  done = false;

  constructor(
    readonly slot: number,
    readonly name: string,
    readonly question: Buffer,
    readonly dnssecOk: boolean,
    readonly cd: boolean,
    readonly pool: Pool,
  ) {}
}

const noLog: SourceLog = { info: () => {}, warn: () => {}, error: () => {} };

export class Forwarder {
  readonly #maxConcurrent: number;
  readonly #timeoutMs: number;
  readonly #maxFails: number;
  readonly #policy: Policy;
  readonly #log: SourceLog;
  readonly #self: readonly HostPort[];
  readonly #now: () => number;
  readonly #onUpstream: ForwarderOptions['onUpstream'];
  readonly #event: Mutable<UpstreamEvent> = { upstream: '', domain: '', transport: 'udp', rcode: undefined, error: undefined, seconds: 0 };
  readonly #loopDetection: boolean;
  readonly #cache: AnswerCache;
  readonly #udpOptions: UdpSocketOptions | undefined;
  readonly #live: Tracker = new Set();
  readonly #wheel = new TimerWheel();
  readonly #sockets = new Map<Upstream, UdpSockets<Flight>>();
  readonly #health: HealthChecker;
  readonly #loop: LoopDetector;
  /** Flights by slot, then name. */
  readonly #flights = new Map<number, Map<string, Flight>>();
  readonly #onUdp = (f: Flight, r: ExchangeResult): void => this.#guard(f, r, 'udp');
  #root: Pool | undefined;
  #stubs: Pool[] = [];
  #inFlight = 0;
  #rejects = 0;
  #failures = 0;
  #started = false;
  #closed = false;

  constructor(opts: ForwarderOptions) {
    this.#maxConcurrent = opts.maxConcurrent ?? FORWARD_DEFAULTS.maxConcurrent;
    this.#timeoutMs = opts.timeoutMs ?? FORWARD_DEFAULTS.timeoutMs;
    this.#maxFails = opts.maxFails ?? FORWARD_DEFAULTS.maxFails;
    this.#policy = opts.policy ?? FORWARD_DEFAULTS.policy;
    this.#log = opts.log ?? noLog;
    this.#self = opts.selfAddresses ?? [];
    this.#now = opts.now ?? Date.now;
    this.#onUpstream = opts.onUpstream;
    this.#loopDetection = opts.loopDetection ?? true;
    this.#cache = new AnswerCache(opts.cache);
    this.#udpOptions = opts.udpSockets;
    this.#health = new HealthChecker({
      intervalMs: opts.healthCheckIntervalMs ?? FORWARD_DEFAULTS.healthCheckIntervalMs,
      timeoutMs: opts.healthCheckTimeoutMs ?? FORWARD_DEFAULTS.healthCheckTimeoutMs,
      maxFails: this.#maxFails,
      live: this.#live,
      log: this.#log,
    });
    this.#loop = new LoopDetector({ live: this.#live, log: this.#log });
    this.#setPools(opts.upstreams, opts.stubDomains);
  }

  /** Begin background work that sends queries: loop probes. Call once our listeners are up. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#probeAll();
  }

  /** Replace the upstreams (config reload). Health and loop findings start afresh; the cache stays. */
  setUpstreams(upstreams: readonly HostPort[], stubDomains?: Readonly<Record<string, readonly HostPort[]>>): void {
    for (const p of this.#pools()) {
      for (const u of p.upstreams) {
        u.retired = true;
        // Queries still waiting on it finish; its sockets close as they drain.
        this.#sockets.get(u)?.retireAll();
      }
    }
    // Forget the socket sets of servers retired earlier whose sockets have all closed.
    for (const [u, s] of this.#sockets) if (u.retired && s.openSockets === 0) this.#sockets.delete(u);
    this.#loop.reset();
    this.#setPools(upstreams, stubDomains);
    if (this.#started) this.#probeAll();
  }

  /** Whether any upstream is configured (else every query is REFUSED). */
  get hasUpstreams(): boolean {
    return this.#pools().some((p) => p.upstreams.length > 0);
  }

  /**
   * Answer `query` (wire bytes `req`) from the cache or the upstreams. Always resolves
   * with a complete reply for the client; never rejects.
   */
  forward(query: Query, req: Uint8Array, transport: Transport): Promise<Buffer | undefined> {
    const maxSize = transport === 'tcp' ? 65535 : query.edns !== undefined ? Math.min(query.edns.udpSize, MAX_UDP_SIZE) : UDP_MIN_SIZE;
    try {
      const name = query.name;
      if (this.#closed || this.#loop.incoming(name)) return Promise.resolve(errorReply(req, query, Rcode.SERVFAIL, maxSize));
      const pool = routeName(name, this.#stubs, this.#root);
      if (pool === undefined || pool.upstreams.length === 0) return Promise.resolve(errorReply(req, query, Rcode.REFUSED, maxSize));
      const dnssecOk = query.edns !== undefined && query.edns.dnssecOk;
      const cd = (query.flags & Flag.CD) !== 0;
      const slot = cacheSlot(query.qtype, query.qclass, dnssecOk, cd);
      const now = this.#now();
      const hit = this.#cache.get(slot, name, now);
      if (hit !== undefined) {
        if (this.#cache.prefetchEnabled && this.#cache.wantsPrefetch(hit, now)) this.#prefetch(hit, req, query, pool, dnssecOk, cd);
        return Promise.resolve(renderEntry(hit, req, query, maxSize, hit.ttlAt(now)));
      }
      if (!this.#admit()) return Promise.resolve(errorReply(req, query, Rcode.REFUSED, maxSize));
      const shared = this.#flights.get(slot)?.get(name);
      const f = shared ?? this.#open(slot, name, lowerQuestion(req, query), dnssecOk, cd, pool);
      this.#inFlight++;
      const p = new Promise<Buffer | undefined>((resolve) => {
        addWaiter(f, { resolve, q: query, req, maxSize });
      });
      if (shared === undefined) this.#start(f);
      return p;
    } catch (err) {
      this.#log.error('forwarding failed', { name: query.name, error: err instanceof Error ? err.message : String(err) });
      return Promise.resolve(errorReply(req, query, Rcode.SERVFAIL, maxSize));
    }
  }

  /**
   * Resolve `name` (dotted, no trailing dot needed) for the ExternalName chase: the A,
   * AAAA and CNAME records of the upstream answer, through the cache. Never rejects.
   */
  lookup(name: string, qtype: number): Promise<LookupResult> {
    const n = name.toLowerCase().replace(/\.$/, '');
    const fail = (rcode: number): Promise<LookupResult> => Promise.resolve({ rcode, answer: [], tc: false });
    try {
      if (this.#closed) return fail(Rcode.SERVFAIL);
      const question = questionFor(n, qtype);
      if (question === undefined) return fail(Rcode.SERVFAIL);
      const pool = routeName(n, this.#stubs, this.#root);
      if (pool === undefined || pool.upstreams.length === 0) return fail(Rcode.REFUSED);
      const slot = cacheSlot(qtype, 1, false, false);
      const now = this.#now();
      const hit = this.#cache.get(slot, n, now);
      if (hit !== undefined) {
        const scan = scanOf(hit);
        return Promise.resolve({ rcode: scan.rcode, answer: answerRecords(bytesOf(hit), scan, countdown(hit, now)), tc: (scan.flags & Flag.TC) !== 0 });
      }
      if (!this.#admit()) return fail(Rcode.REFUSED);
      const shared = this.#flights.get(slot)?.get(n);
      const f = shared ?? this.#open(slot, n, question, false, false, pool);
      this.#inFlight++;
      const p = new Promise<LookupResult>((resolve) => {
        addWaiter(f, { resolve, q: undefined });
      });
      if (shared === undefined) this.#start(f);
      return p;
    } catch (err) {
      this.#log.error('upstream lookup failed', { name: n, error: err instanceof Error ? err.message : String(err) });
      return fail(Rcode.SERVFAIL);
    }
  }

  /** Upstreams found in a forwarding loop (`host:port`). */
  loopDetected(): string[] {
    return this.#loop.detected();
  }

  stats(): ForwarderStats {
    let sockets = 0;
    for (const s of this.#sockets.values()) sockets += s.openSockets;
    return {
      inFlight: this.#inFlight,
      maxConcurrentRejects: this.#rejects,
      failures: this.#failures,
      pendingExchanges: this.#wheel.live,
      udpSockets: sockets,
      loopDetected: this.#loop.detected(),
      upstreams: this.#pools().flatMap((p) => p.upstreams.map((u) => u.stats(this.#maxFails))),
      cache: this.#cache.stats(),
    };
  }

  /** Forget every cached answer. */
  clearCache(): void {
    this.#cache.clear();
  }

  /** Stop: pending queries end with SERVFAIL, sockets and timers are released. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#health.close();
    this.#loop.close();
    for (const s of this.#sockets.values()) s.close();
    this.#sockets.clear();
    for (const abort of [...this.#live]) abort();
    // TCP exchanges end through their promises: let them settle, then end what is left.
    await new Promise<void>((r) => setImmediate(r));
    for (const byName of [...this.#flights.values()]) for (const f of [...byName.values()]) this.#fail(f);
    this.#wheel.close();
    this.#cache.clear();
  }

  #pools(): Pool[] {
    return this.#root === undefined ? this.#stubs : [this.#root, ...this.#stubs];
  }

  #setPools(upstreams: readonly HostPort[], stubDomains: Readonly<Record<string, readonly HostPort[]>> | undefined): void {
    this.#root = new Pool('', this.#notSelf(upstreams, '.'));
    const stubs: Pool[] = [];
    for (const [domain, servers] of Object.entries(stubDomains ?? {})) {
      const d = normalizeDomain(domain);
      stubs.push(new Pool(d, this.#notSelf(servers, d === '' ? '.' : d)));
    }
    // Longest first, so the first match in routeName is the longest suffix.
    this.#stubs = stubs.sort((a, b) => b.domain.length - a.domain.length);
  }

  #notSelf(servers: readonly HostPort[], domain: string): HostPort[] {
    return servers.filter((s) => {
      if (!isSelf(s, this.#self)) return true;
      this.#log.error('upstream is this server itself: not forwarding to it', { upstream: `${s.host}:${s.port}`, domain });
      return false;
    });
  }

  #probeAll(): void {
    if (!this.#loopDetection) return;
    for (const p of this.#pools()) for (const u of p.upstreams) this.#loop.probe(u);
  }

  // ------------------------------------------------------------------ misses

  /** Room for one more query waiting on upstreams (else it is counted as rejected). */
  #admit(): boolean {
    if (this.#inFlight < this.#maxConcurrent) return true;
    this.#rejects++;
    return false;
  }

  /** A new flight for (slot, name), registered so that identical questions join it. */
  #open(slot: number, name: string, question: Buffer, dnssecOk: boolean, cd: boolean, pool: Pool): Flight {
    const f = new Flight(slot, name, question, dnssecOk, cd, pool);
    let byName = this.#flights.get(slot);
    if (byName === undefined) this.#flights.set(slot, (byName = new Map()));
    byName.set(name, f);
    return f;
  }

  #prefetch(entry: CacheEntry, req: Uint8Array, q: Query, pool: Pool, dnssecOk: boolean, cd: boolean): void {
    if (this.#closed || this.#inFlight >= this.#maxConcurrent) return;
    if (this.#flights.get(entry.slot)?.has(entry.name) === true) return;
    const f = this.#open(entry.slot, entry.name, lowerQuestion(req, q), dnssecOk, cd, pool);
    f.prefetch = entry;
    entry.prefetching = true;
    this.#cache.notePrefetch();
    this.#inFlight++;
    this.#start(f);
  }

  #start(f: Flight): void {
    f.deadline = performance.now() + this.#timeoutMs;
    f.list = f.pool.candidates(this.#policy, this.#maxFails);
    this.#nextServer(f);
  }

  /** Try the next server, or end the flight when none is left or time is up. */
  #nextServer(f: Flight): void {
    if (f.done) return;
    const now = performance.now();
    const left = f.deadline - now;
    if (this.#closed || f.next >= f.list.length || left <= 1) {
      this.#fail(f);
      return;
    }
    const up = f.list[f.next]!;
    const share = Math.max(Math.min(left, MIN_TRY_MS), left / (f.list.length - f.next));
    f.next++;
    f.up = up;
    f.tryEnd = now + share;
    f.t0 = now;
    up.requests++;
    this.#socketsOf(up).send(f.question, f.dnssecOk, f.cd, share, f);
  }

  #socketsOf(up: Upstream): UdpSockets<Flight> {
    let s = this.#sockets.get(up);
    if (s === undefined) {
      this.#sockets.set(up, (s = new UdpSockets<Flight>(up.addr, this.#wheel, this.#onUdp, up, this.#udpOptions)));
      // A flight still trying a server a reload removed: sockets that close once used.
      if (up.retired) s.retireAll();
    }
    return s;
  }

  /** Callbacks from sockets and TCP land here: an exception ends the flight, never the process. */
  #guard(f: Flight, r: ExchangeResult, transport: Transport): void {
    try {
      if (transport === 'udp') this.#udpResult(f, r);
      else this.#tcpResult(f, r);
    } catch (err) {
      this.#log.error('forwarding failed', { name: f.name, error: err instanceof Error ? err.message : String(err) });
      if (!f.done) this.#end(f, undefined, undefined, Rcode.SERVFAIL);
    }
  }

  #udpResult(f: Flight, r: ExchangeResult): void {
    if (f.done) return;
    const up = f.up!;
    this.#account(up, 'udp', r, f.t0);
    if (!r.ok) {
      up.errors[r.error]++;
      if (r.error === 'closed') this.#fail(f);
      else {
        this.#health.kick(up);
        this.#nextServer(f);
      }
      return;
    }
    if ((r.scan.flags & Flag.TC) === 0) {
      this.#reply(f, up, r);
      return;
    }
    // RFC 7766 §5 / RFC 1035 §4.2.1: the full answer over TCP, within this try's share
    // (at least MIN_TRY_MS when the overall deadline allows).
    const now = performance.now();
    const tcpMs = Math.min(Math.max(f.tryEnd - now, MIN_TRY_MS), f.deadline - now);
    if (tcpMs <= 1 || this.#closed) {
      up.errors.truncated++;
      f.fallback = r;
      this.#nextServer(f);
      return;
    }
    f.truncated = r;
    f.t0 = now;
    up.requests++;
    up.tcpRequests++;
    const id = randomId();
    const msg = buildQuery(id, f.question, { dnssecOk: f.dnssecOk, checkingDisabled: f.cd });
    void tcpExchange(up.addr, msg, id, f.question, tcpMs, this.#live, this.#wheel).then((t) => this.#guard(f, t, 'tcp'));
  }

  #tcpResult(f: Flight, t: ExchangeResult): void {
    if (f.done) return;
    const up = f.up!;
    this.#account(up, 'tcp', t, f.t0);
    if (t.ok) {
      this.#reply(f, up, t);
      return;
    }
    if (t.error === 'closed') {
      up.errors.closed++;
      this.#fail(f);
      return;
    }
    up.errors.truncated++;
    f.fallback = f.truncated;
    this.#nextServer(f);
  }

  /** A reply from `up`: an error rcode moves on to the next server; anything else is the answer. */
  #reply(f: Flight, up: Upstream, r: Reply): void {
    const kind = rcodeError(r.scan.rcode);
    if (kind !== undefined) {
      up.errors[kind]++;
      f.fallback = r;
      this.#nextServer(f);
      return;
    }
    const now = this.#now();
    const entry = this.#closed ? undefined : this.#cache.store(f.slot, f.name, r.msg, r.scan, now);
    this.#end(f, r, entry, 0, now);
  }

  /** Nothing usable: stale, else the last error reply, else SERVFAIL. */
  #fail(f: Flight): void {
    if (f.done) return;
    this.#end(f, undefined, undefined, Rcode.SERVFAIL);
  }

  /**
   * End the flight and answer its waiters: with `r` (and its cache entry) when it
   * succeeded, else each with a stale entry, the fallback reply, or `rcode`.
   */
  #end(f: Flight, r: Reply | undefined, entry: CacheEntry | undefined, rcode: number, now = this.#now()): void {
    f.done = true;
    // (An emptied per-slot map stays: slots are few, and remaking it per flight costs more.)
    const byName = this.#flights.get(f.slot);
    if (byName?.get(f.name) === f) byName.delete(f.name);
    this.#inFlight -= f.waiting;
    if (f.prefetch !== undefined) {
      this.#inFlight--;
      f.prefetch.prefetching = false;
    }
    const ttl = entry === undefined ? -1 : entry.ttlAt(now);
    const first = f.first;
    if (first === undefined) return;
    this.#deliver(f, first, r, entry, ttl, rcode, now);
    if (f.more !== undefined) for (const w of f.more) this.#deliver(f, w, r, entry, ttl, rcode, now);
  }

  /** One waiter's reply; an exception gives that waiter SERVFAIL and the others their answer. */
  #deliver(f: Flight, w: Waiter, r: Reply | undefined, entry: CacheEntry | undefined, ttl: number, rcode: number, now: number): void {
    try {
      if (r !== undefined) this.#answer(w, r, entry, ttl);
      else this.#failed(w, f, rcode, now);
    } catch (err) {
      this.#log.error('forwarding failed', { name: f.name, error: err instanceof Error ? err.message : String(err) });
      if (w.q === undefined) w.resolve({ rcode: Rcode.SERVFAIL, answer: [], tc: false });
      else w.resolve(errorReply(w.req, w.q, Rcode.SERVFAIL, w.maxSize));
    }
  }

  /** Answer one waiter with a reply (cached as `entry`, TTLs set to `ttl`; -1: as received). */
  #answer(w: Waiter, r: Reply, entry: CacheEntry | undefined, ttl: number): void {
    if (w.q === undefined) {
      w.resolve({ rcode: r.scan.rcode, answer: answerRecords(r.msg, r.scan, ttl < 0 ? undefined : () => ttl), tc: (r.scan.flags & Flag.TC) !== 0 });
    } else if (entry !== undefined) {
      w.resolve(renderEntry(entry, w.req, w.q, w.maxSize, ttl));
    } else {
      w.resolve(renderReply(r.msg, r.scan, w.req, w.q, { maxSize: w.maxSize, ttl: undefined }));
    }
  }

  #failed(w: Waiter, f: Flight, rcode: number, now: number): void {
    this.#failures++;
    const stale = this.#closed ? undefined : this.#cache.stale(f.slot, f.name, now);
    if (stale !== undefined) {
      if (w.q === undefined) {
        const scan = scanOf(stale);
        w.resolve({ rcode: scan.rcode, answer: answerRecords(bytesOf(stale), scan, () => STALE_TTL), tc: false });
      } else w.resolve(renderEntry(stale, w.req, w.q, w.maxSize, STALE_TTL));
      return;
    }
    const fb = f.fallback;
    if (w.q === undefined) {
      w.resolve(fb === undefined ? { rcode, answer: [], tc: false } : { rcode: fb.scan.rcode, answer: answerRecords(fb.msg, fb.scan, undefined), tc: (fb.scan.flags & Flag.TC) !== 0 });
    } else if (fb !== undefined) {
      w.resolve(renderReply(fb.msg, fb.scan, w.req, w.q, { maxSize: w.maxSize, ttl: undefined }));
    } else {
      w.resolve(errorReply(w.req, w.q, rcode, w.maxSize));
    }
  }

  /** Counters and the onUpstream event for one exchange (no allocation). */
  #account(up: Upstream, transport: Transport, r: ExchangeResult, t0: number): void {
    const seconds = (performance.now() - t0) / 1000;
    up.ignored += r.ignored;
    up.latencyCount++;
    up.latencySum += seconds;
    if (r.ok) up.responses.set(r.scan.rcode, (up.responses.get(r.scan.rcode) ?? 0) + 1);
    const cb = this.#onUpstream;
    if (cb !== undefined) {
      const e = this.#event;
      e.upstream = up.address;
      e.domain = up.domain;
      e.transport = transport;
      e.rcode = r.ok ? r.scan.rcode : undefined;
      e.error = r.ok ? undefined : r.error;
      e.seconds = seconds;
      cb(e);
    }
  }
}

function addWaiter(f: Flight, w: Waiter): void {
  f.waiting++;
  if (f.first === undefined) f.first = w;
  else (f.more ??= []).push(w);
}

function rcodeError(rcode: number): ErrorKind | undefined {
  switch (rcode) {
    case Rcode.SERVFAIL:
      return 'servfail';
    case Rcode.REFUSED:
      return 'refused';
    case Rcode.FORMERR:
      return 'formerr';
    case Rcode.NOTIMP:
      return 'notimp';
    default:
      return undefined;
  }
}

function errorReply(req: Uint8Array, query: Query, rcode: number, maxSize: number): Buffer {
  return writeResponse(req, query, { rcode, authoritative: false, answer: [], authority: [], additional: [] }, { maxSize, recursionAvailable: true });
}

/** A, AAAA and CNAME records of the answer section as `RR`s (others are skipped). */
function answerRecords(msg: Buffer, scan: Scan, ttl: ((t: number) => number) | undefined): RR[] {
  const out: RR[] = [];
  for (const r of scan.records) {
    if (r.section !== 0) break;
    if (r.type !== Type.A && r.type !== Type.AAAA && r.type !== Type.CNAME) continue;
    // Class must be IN (2 bytes before the TTL).
    if (msg.readUInt16BE(r.ttlAt - 2) !== 1) continue;
    const owner = readName(msg, r.start);
    if (owner === undefined) continue;
    const t = Math.max(0, Math.floor(ttl === undefined ? r.ttl : ttl(r.ttl)));
    const rdata = r.ttlAt + 6;
    const rdlen = r.end - rdata;
    if (r.type === Type.CNAME) {
      const target = readName(msg, rdata);
      if (target !== undefined) out.push({ name: owner, type: Type.CNAME, ttl: t, target });
    } else if (rdlen === (r.type === Type.A ? 4 : 16)) {
      out.push(addressRR(owner, t, bytesToIP(msg.subarray(rdata, r.end))));
    }
  }
  return out;
}
