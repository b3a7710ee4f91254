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
 *     query looping back through us, costs one upstream query);
 *  6. the servers of the pool in `policy` order (healthy ones; all when none is), each
 *     try getting an equal share of what is left of `timeoutMs`, so a dead first server
 *     still leaves time for the next. UDP first; a truncated reply is asked again over
 *     TCP (RFC 7766 §5). A timeout or network error moves to the next server and starts
 *     health checks of the failed one (health.ts). SERVFAIL, REFUSED, FORMERR and NOTIMP
 *     from a server also move on (CoreDNS would return them; another server may well
 *     answer) and are returned only if no server does better;
 *  7. nothing usable: a stale cache entry (RFC 8767) with TTL 30, else the last error
 *     reply of a server, else SERVFAIL. The client never waits much longer than
 *     `timeoutMs`.
 *
 * The reply keeps the client's ID, question bytes and EDNS presence, and fits its size
 * (wire.ts `renderReply`).
 */
import { Flag, Rcode, Type, UDP_MIN_SIZE } from '../dns/constants.js';
import { bytesToIP, type HostPort } from '../net/ip.js';
import type { Query } from '../dns/query.js';
import { addressRR, type RR } from '../dns/rr.js';
import { writeResponse } from '../dns/writer.js';
import type { SourceLog } from '../log.js';
import { MAX_UDP_SIZE, type Transport } from '../server/handler.js';
import { AnswerCache, cacheKey, countdown, staleTtl, type CacheEntry, type CacheOptions, type CacheStats } from './cache.js';
import { tcpExchange, udpExchange, type ExchangeError, type ExchangeResult, type Tracker } from './exchange.js';
import { HealthChecker } from './health.js';
import { LoopDetector } from './loop.js';
import { normalizeDomain, Pool, routeName, type ErrorKind, type Policy, type Upstream, type UpstreamStats } from './pool.js';
import { isSelf } from './resolvconf.js';
import { buildQuery, lowerQuestion, questionFor, randomId, readName, renderReply, type Scan } from './wire.js';

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
  readonly log?: SourceLog | undefined;
  /** Our listen addresses: upstreams that are us are dropped (with an error log). */
  readonly selfAddresses?: readonly HostPort[] | undefined;
  /** Send loop probes on start() and setUpstreams() (default true). */
  readonly loopDetection?: boolean | undefined;
  /** Clock for cache ages, ms (tests). */
  readonly now?: (() => number) | undefined;
  /** Called after every exchange with an upstream (for latency histograms). */
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

export interface ForwarderStats {
  /** Queries waiting on upstreams now. */
  readonly inFlight: number;
  /** Queries refused because `maxConcurrent` were in flight. */
  readonly maxConcurrentRejects: number;
  /** Queries answered SERVFAIL (or an upstream error reply) because no server answered usefully. */
  readonly failures: number;
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

interface Ask {
  readonly key: string;
  readonly pool: Pool;
  readonly question: Buffer;
  readonly dnssecOk: boolean;
  readonly cd: boolean;
}

type Fetched =
  | { readonly ok: true; readonly msg: Buffer; readonly scan: Scan; readonly entry: CacheEntry | undefined }
  | { readonly ok: false; readonly reply: { readonly msg: Buffer; readonly scan: Scan } | undefined };

type Resolved =
  | { readonly kind: 'answer'; readonly msg: Buffer; readonly scan: Scan; readonly ttl: ((t: number) => number) | undefined }
  | { readonly kind: 'error'; readonly rcode: number };

type TryResult = ExchangeResult & { readonly truncated?: boolean };

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
  readonly #loopDetection: boolean;
  readonly #cache: AnswerCache;
  readonly #live: Tracker = new Set();
  readonly #health: HealthChecker;
  readonly #loop: LoopDetector;
  readonly #shared = new Map<string, Promise<Fetched>>();
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
    for (const p of this.#pools()) for (const u of p.upstreams) u.retired = true;
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
  async forward(query: Query, req: Uint8Array, transport: Transport): Promise<Buffer | undefined> {
    const maxSize = transport === 'tcp' ? 65535 : query.edns !== undefined ? Math.min(query.edns.udpSize, MAX_UDP_SIZE) : UDP_MIN_SIZE;
    try {
      if (this.#closed || this.#loop.incoming(query.name)) return errorReply(req, query, Rcode.SERVFAIL, maxSize);
      const pool = routeName(query.name, this.#stubs, this.#root);
      if (pool === undefined || pool.upstreams.length === 0) return errorReply(req, query, Rcode.REFUSED, maxSize);
      const dnssecOk = query.edns?.dnssecOk === true;
      const cd = (query.flags & Flag.CD) !== 0;
      const ask: Ask = { key: cacheKey(query.name, query.qtype, query.qclass, dnssecOk, cd), pool, question: lowerQuestion(req, query), dnssecOk, cd };
      const r = await this.#resolve(ask);
      if (r.kind === 'error') return errorReply(req, query, r.rcode, maxSize);
      return renderReply(r.msg, r.scan, req, query, { maxSize, ttl: r.ttl });
    } catch (err) {
      this.#log.error('forwarding failed', { name: query.name, error: err instanceof Error ? err.message : String(err) });
      return errorReply(req, query, Rcode.SERVFAIL, maxSize);
    }
  }

  /**
   * Resolve `name` (dotted, no trailing dot needed) for the ExternalName chase: the A,
   * AAAA and CNAME records of the upstream answer, through the cache. Never rejects.
   */
  async lookup(name: string, qtype: number): Promise<LookupResult> {
    const n = name.toLowerCase().replace(/\.$/, '');
    const fail = (rcode: number): LookupResult => ({ rcode, answer: [], tc: false });
    try {
      if (this.#closed) return fail(Rcode.SERVFAIL);
      const question = questionFor(n, qtype);
      if (question === undefined) return fail(Rcode.SERVFAIL);
      const pool = routeName(n, this.#stubs, this.#root);
      if (pool === undefined || pool.upstreams.length === 0) return fail(Rcode.REFUSED);
      const r = await this.#resolve({ key: cacheKey(n, qtype, 1, false, false), pool, question, dnssecOk: false, cd: false });
      if (r.kind === 'error') return fail(r.rcode);
      return { rcode: r.scan.rcode, answer: answerRecords(r.msg, r.scan, r.ttl), tc: (r.scan.flags & Flag.TC) !== 0 };
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
    return {
      inFlight: this.#inFlight,
      maxConcurrentRejects: this.#rejects,
      failures: this.#failures,
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
    for (const abort of [...this.#live]) abort();
    await Promise.allSettled([...this.#shared.values()]);
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

  /** Cache, then (bounded, shared) upstream fetch, then stale, then the best error. */
  async #resolve(ask: Ask): Promise<Resolved> {
    const now = this.#now();
    const hit = this.#cache.get(ask.key, now);
    if (hit !== undefined) {
      if (this.#cache.wantsPrefetch(hit, now)) this.#prefetch(ask, hit);
      return { kind: 'answer', msg: hit.msg, scan: hit.scan, ttl: countdown(hit, now) };
    }
    if (this.#inFlight >= this.#maxConcurrent) {
      this.#rejects++;
      return { kind: 'error', rcode: Rcode.REFUSED };
    }
    this.#inFlight++;
    let f: Fetched;
    try {
      f = await this.#fetchShared(ask);
    } finally {
      this.#inFlight--;
    }
    if (f.ok) return { kind: 'answer', msg: f.msg, scan: f.scan, ttl: f.entry === undefined ? undefined : countdown(f.entry, this.#now()) };
    this.#failures++;
    const stale = this.#closed ? undefined : this.#cache.stale(ask.key, this.#now());
    if (stale !== undefined) return { kind: 'answer', msg: stale.msg, scan: stale.scan, ttl: staleTtl };
    if (f.reply !== undefined) return { kind: 'answer', msg: f.reply.msg, scan: f.reply.scan, ttl: undefined };
    return { kind: 'error', rcode: Rcode.SERVFAIL };
  }

  #fetchShared(ask: Ask): Promise<Fetched> {
    const key = `${ask.pool.domain}|${ask.key}`;
    let p = this.#shared.get(key);
    if (p === undefined) {
      p = this.#fetch(ask).finally(() => this.#shared.delete(key));
      this.#shared.set(key, p);
    }
    return p;
  }

  #prefetch(ask: Ask, entry: CacheEntry): void {
    if (this.#closed || this.#inFlight >= this.#maxConcurrent) return;
    entry.prefetching = true;
    this.#cache.notePrefetch();
    this.#inFlight++;
    void this.#fetchShared(ask).finally(() => {
      this.#inFlight--;
      entry.prefetching = false;
    });
  }

  async #fetch(ask: Ask): Promise<Fetched> {
    const deadline = performance.now() + this.#timeoutMs;
    const list = ask.pool.candidates(this.#policy, this.#maxFails);
    let fallback: { msg: Buffer; scan: Scan } | undefined;
    for (let i = 0; i < list.length && !this.#closed; i++) {
      const left = deadline - performance.now();
      if (left <= 1) break;
      const up = list[i]!;
      const share = Math.max(Math.min(left, MIN_TRY_MS), left / (list.length - i));
      const r = await this.#try(up, ask, share, deadline);
      if (!r.ok) {
        up.errors[r.error]++;
        if (r.error === 'closed') break;
        this.#health.kick(up);
        continue;
      }
      if (r.truncated === true) {
        up.errors.truncated++;
        fallback = r;
        continue;
      }
      const kind = rcodeError(r.scan.rcode);
      if (kind !== undefined) {
        up.errors[kind]++;
        fallback = r;
        continue;
      }
      const entry = this.#closed ? undefined : this.#cache.store(ask.key, r.msg, r.scan, this.#now());
      return { ok: true, msg: r.msg, scan: r.scan, entry };
    }
    return { ok: false, reply: fallback };
  }

  /** One server: UDP, then TCP when the UDP reply is truncated. */
  async #try(up: Upstream, ask: Ask, ms: number, deadline: number): Promise<TryResult> {
    const tryEnd = performance.now() + ms;
    const r = await this.#exchange(up, ask, 'udp', ms);
    if (!r.ok || (r.scan.flags & Flag.TC) === 0) return r;
    // RFC 7766 §5 / RFC 1035 §4.2.1: the full answer over TCP, within this try's share
    // (at least MIN_TRY_MS when the overall deadline allows).
    const now = performance.now();
    const tcpMs = Math.min(Math.max(tryEnd - now, MIN_TRY_MS), deadline - now);
    if (tcpMs <= 1 || this.#closed) return { ...r, truncated: true };
    const t = await this.#exchange(up, ask, 'tcp', tcpMs);
    if (t.ok) return t;
    if (t.error === 'closed') return t;
    return { ...r, truncated: true };
  }

  async #exchange(up: Upstream, ask: Ask, transport: Transport, ms: number): Promise<ExchangeResult> {
    const id = randomId();
    const msg = buildQuery(id, ask.question, { dnssecOk: ask.dnssecOk, checkingDisabled: ask.cd });
    const t0 = performance.now();
    up.requests++;
    if (transport === 'tcp') up.tcpRequests++;
    const r = transport === 'udp' ? await udpExchange(up.addr, msg, id, ask.question, ms, this.#live) : await tcpExchange(up.addr, msg, id, ask.question, ms, this.#live);
    const seconds = (performance.now() - t0) / 1000;
    up.ignored += r.ignored;
    up.latencyCount++;
    up.latencySum += seconds;
    if (r.ok) up.responses.set(r.scan.rcode, (up.responses.get(r.scan.rcode) ?? 0) + 1);
    this.#onUpstream?.({ upstream: up.address, domain: up.domain, transport, rcode: r.ok ? r.scan.rcode : undefined, error: r.ok ? undefined : r.error, seconds });
    return r;
  }
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
