/**
 * The query pipeline shared by the UDP and TCP listeners: wire bytes in, wire bytes
 * out (or nothing, for packets we drop). Never throws: anything unexpected becomes
 * SERVFAIL, and a packet whose header cannot be read is dropped.
 *
 * Order of checks (RFC 1035 §4.1.1, RFC 6891, RFC 8482, RFC 5936):
 *   unreadable → drop; qdcount ≠ 1 → FORMERR; opcode ≠ QUERY → NOTIMP;
 *   EDNS version > 0 → BADVERS; class ≠ IN → REFUSED; AXFR/IXFR → the transfer
 *   stage (transfer.ts; REFUSED without one);
 *   our zones → authoritative answer; anything else → the next stage (upstream,
 *   a later stage) or REFUSED.
 */
import { Class, Flag, Rcode, Type, UDP_MIN_SIZE } from '../dns/constants.js';
import { parseQuery, skipName, type Query } from '../dns/query.js';
import { writeHeaderOnly, writeResponse, type Answer } from '../dns/writer.js';
import type { Resolver } from '../zone/resolver.js';
import type { ClusterZone } from '../zone/zone.js';
import type { ClusterChange } from '../cluster/store.js';
import type { RR } from '../dns/rr.js';
import type { Autopath, Walked } from './autopath.js';
import type { ReplyStream, ZoneTransfer } from './transfer.js';

export type Transport = 'udp' | 'tcp';

/** Largest UDP reply we send even when a client advertises more (RFC 6891 §6.2.5). */
export const MAX_UDP_SIZE = 4096;

/** What the pipeline reports per query (metrics and the query log hang off this). */
export interface QueryEvent {
  readonly transport: Transport;
  /** Client address family as CoreDNS labels it: '1' IPv4, '2' IPv6. */
  readonly family: '1' | '2';
  readonly name: string;
  readonly qtype: number;
  readonly rcode: number;
  readonly size: number;
  /** The zone that answered: a cluster domain, a reverse tree, or '.' for the rest. */
  readonly zone: string;
  /** Who produced the answer. */
  readonly source: 'cluster' | 'forward' | 'error';
  readonly cached: boolean;
  /** Seconds since the query was read. */
  readonly seconds: number;
  /** Client address, when the listener knows it. */
  readonly client: string | undefined;
}

/** Upstream resolution of an ExternalName target outside our zones (Forwarder.lookup); also autopath's upstream step. */
export type ChaseStage = (name: string, qtype: number) => Promise<{ readonly rcode?: number; readonly answer: readonly RR[]; readonly tc: boolean }>;

/** A later stage for names we are not authoritative for (upstream forwarding). */
export type NextStage = (query: Query, req: Uint8Array, transport: Transport) => Promise<Answer | Buffer | undefined>;

export interface HandlerOptions {
  readonly resolver: Resolver;
  readonly next?: NextStage | undefined;
  /** Chase out-of-zone ExternalName targets for A/AAAA (spec §2.5; CoreDNS copies TC). */
  readonly chase?: ChaseStage | undefined;
  readonly onQuery?: ((e: QueryEvent) => void) | undefined;
  readonly onError?: ((err: unknown, where: string) => void) | undefined;
  /** Answer-cache entries (wire answers of cluster names). */
  readonly cacheEntries?: number;
  /** Walk a pod's search list for it (CoreDNS `autopath @kubernetes`); see autopath.ts. */
  readonly autopath?: Autopath | undefined;
}

interface Cached {
  readonly buf: Buffer;
  /** The zone that answered (for metrics without a second lookup). */
  readonly zone: string;
  /**
   * Offset of the SOA serial in `buf` (a negative answer under a service, kept across
   * changes), and the zone whose current serial is written there on a hit; -1: none.
   */
  readonly serialAt: number;
  readonly soaZone: ClusterZone | undefined;
  /**
   * An NXDOMAIN that may be a pod's first search expansion: a client that is a pod of
   * that namespace gets the autopath walk instead (the one check a hit pays for it).
   */
  readonly ap: boolean;
}

/** Budgets below this (every UDP one) have their own slots for cut answers. */
const CUT_BUDGETS = 8192;

/** The slot of answers cut for `budget` (negative: apart from complete answers' slots). */
function cutSlot(slot: number, budget: number): number {
  return -(slot * CUT_BUDGETS + budget) - 1;
}

/** A cached entry's place: (slot, name). */
type EntryRef = readonly [slot: number, name: string];

const REFUSED_ANSWER: Answer = { rcode: Rcode.REFUSED, authoritative: false, answer: [], authority: [], additional: [] };
// Module-level copies: the hot path reads plain locals, not imported bindings.
const T_OPT = Type.OPT;
const T_AXFR = Type.AXFR;
const T_IXFR = Type.IXFR;
const C_IN = Class.IN;
const NOERROR = Rcode.NOERROR;
const NXDOMAIN = Rcode.NXDOMAIN;
const SERVFAIL = Rcode.SERVFAIL;
const TC_BYTE = Flag.TC >> 8;

/** Per-query facts the accounting needs, passed along instead of captured in closures. */
interface Ctx {
  readonly transport: Transport;
  readonly family: '1' | '2';
  readonly client: string | undefined;
  readonly t0: number;
  /** The caller sends multi-message replies (a TCP connection: zone transfers). */
  readonly stream?: boolean;
}

export class DnsHandler {
  readonly #resolver: Resolver;
  readonly #onQuery: ((e: QueryEvent) => void) | undefined;
  readonly #onError: ((err: unknown, where: string) => void) | undefined;
  #next: NextStage | undefined;
  #chase: ChaseStage | undefined;
  #autopath: Autopath | undefined;
  #transfer: ZoneTransfer | undefined;
  /** A transfer's stream, handed from the AXFR/IXFR branch to handleTcp (set and taken synchronously). */
  #stream: ReplyStream | undefined;
  /**
   * Encoded answers of cluster names with the question lowercase and id 0, per
   * (qtype, EDNS?, RA?) and lowercase name. A hit is a copy plus id, flags and
   * letter-case patches. Cleared when full (a bound, not an eviction policy).
   *
   * A change drops only what it can have changed (`invalidateChange`): the entries of
   * the changed services' names (`<...>.<svc>.<ns>.svc.<zone>`, indexed in #byService),
   * and every "volatile" entry: names outside any service (apex, namespaces, pods,
   * reverse) and answers that follow a CNAME into another service. Negative answers
   * carry the zone's SOA, whose serial moves with every change; they stay cached and get
   * the current serial written in on a hit.
   */
  #cache = new Map<number, Map<string, Cached>>();
  #cacheSize = 0;
  /** `<zone>|<ns>/<svc>` → entries of names under that service. */
  #byService = new Map<string, EntryRef[]>();
  #volatile: EntryRef[] = [];
  /** References in #byService and #volatile (an entry stored again adds one). */
  #refs = 0;
  readonly #cacheMax: number;
  /** Set by the writer through #onComplete (no closure per query). */
  #complete = true;
  readonly #onComplete = (complete: boolean): void => {
    this.#complete = complete;
  };

  constructor(opts: HandlerOptions) {
    this.#resolver = opts.resolver;
    this.#onQuery = opts.onQuery;
    this.#onError = opts.onError;
    this.#next = opts.next;
    this.#chase = opts.chase;
    this.#cacheMax = opts.cacheEntries ?? 50_000;
    this.#autopath = opts.autopath;
  }

  /** Turn autopath on (or off); cached answers were flagged under the old setting, so they go. */
  setAutopath(autopath: Autopath | undefined): void {
    if (autopath === this.#autopath) return;
    this.#autopath = autopath;
    this.invalidate();
  }

  /** Forget every cached answer. */
  invalidate(): void {
    this.#cache = new Map();
    this.#cacheSize = 0;
    this.#byService = new Map();
    this.#volatile = [];
    this.#refs = 0;
  }

  /** Zone `zone` applied `change` (undefined: rebuilt whole): forget what it can have changed. */
  invalidateChange(zone: string, change: ClusterChange | undefined): void {
    // Namespace existence decides NXDOMAIN vs NODATA for every name in it.
    if (change === undefined || change.full || change.namespaces.size > 0) {
      this.invalidate();
      return;
    }
    for (const e of this.#volatile) this.#drop(e);
    this.#refs -= this.#volatile.length;
    this.#volatile = [];
    for (const key of change.services) {
      const dep = `${zone}|${key}`;
      const list = this.#byService.get(dep);
      if (list === undefined) continue;
      for (const e of list) this.#drop(e);
      this.#refs -= list.length;
      this.#byService.delete(dep);
    }
  }

  #drop([slot, name]: EntryRef): void {
    if (this.#cache.get(slot)?.delete(name) === true) this.#cacheSize--;
  }

  setNext(next: NextStage | undefined, chase?: ChaseStage): void {
    this.#next = next;
    this.#chase = chase;
  }

  /**
   * Handle one query. Synchronous for everything we answer ourselves; a Promise only
   * when a later stage (upstream) is involved.
   */
  /** Zone transfers out (RFC 5936, RFC 1995); undefined: AXFR/IXFR REFUSED. */
  setTransfer(transfer: ZoneTransfer | undefined): void {
    this.#transfer = transfer;
  }

  /**
   * A query read from a TCP connection: as `handle`, except that a zone transfer is
   * answered with a ReplyStream of messages (RFC 5936 §2.2), which the listener sends
   * as the socket drains.
   */
  handleTcp(req: Uint8Array, family: '1' | '2' = '1', client?: string): Buffer | undefined | Promise<Buffer | undefined> | ReplyStream {
    const ctx: Ctx = { transport: 'tcp', family, client, t0: this.#onQuery !== undefined ? performance.now() : 0, stream: true };
    this.#stream = undefined;
    let out: Buffer | undefined | Promise<Buffer | undefined>;
    try {
      out = this.#handle(req, ctx);
    } catch (err) {
      this.#onError?.(err, 'handle');
      out = servfail(req);
    }
    const s = this.#stream;
    if (s === undefined) return out;
    this.#stream = undefined;
    return s;
  }

  handle(req: Uint8Array, transport: Transport, family: '1' | '2' = '1', client?: string): Buffer | undefined | Promise<Buffer | undefined> {
    const ctx: Ctx = { transport, family, client, t0: this.#onQuery !== undefined ? performance.now() : 0 };
    try {
      return this.#handle(req, ctx);
    } catch (err) {
      this.#onError?.(err, 'handle');
      return servfail(req);
    }
  }

  #handle(req: Uint8Array, ctx: Ctx): Buffer | undefined | Promise<Buffer | undefined> {
    const parsed = parseQuery(req);
    if (parsed.kind === 'drop') return undefined;
    if (parsed.kind === 'header-only') {
      const out = writeHeaderOnly(parsed.id, parsed.flags, parsed.rcode);
      this.#emit(ctx, '', 0, parsed.rcode, out.length, 'error', false, '.');
      return out;
    }
    const q = parsed.query;
    const ra = this.#next !== undefined;
    if (parsed.rcode !== NOERROR) return this.#reply(req, q, ctx, error(parsed.rcode), 'error');
    if (q.qclass !== C_IN) return this.#reply(req, q, ctx, REFUSED_ANSWER, 'error');
    if (q.qtype === T_OPT) return this.#reply(req, q, ctx, error(Rcode.FORMERR), 'error');
    if (q.qtype === T_AXFR || q.qtype === T_IXFR) return this.#transferOf(req, q, ctx);
    const slot = q.qtype * 4 + (q.edns !== undefined ? 2 : 0) + (ra ? 1 : 0);
    const budget = maxSize(q, ctx.transport);
    let hit = this.#cache.get(slot)?.get(q.name);
    if ((hit === undefined || hit.buf.length > budget) && budget < CUT_BUDGETS) hit = this.#cache.get(cutSlot(slot, budget))?.get(q.name);
    if (hit !== undefined && hit.buf.length <= budget) {
      if (hit.ap) {
        const walked = this.#autopathed(req, q, ctx);
        if (walked !== undefined) return walked;
      }
      const out = patch(hit.buf, req, q);
      if (hit.serialAt >= 0) out.writeUInt32BE(hit.soaZone!.serial >>> 0, hit.serialAt);
      this.#emit(ctx, q.name, q.qtype, out[3]! & 0xf, out.length, 'cluster', true, hit.zone);
      return out;
    }
    const ans = this.#resolver.resolve(q.name, q.qtype);
    if (ans !== undefined) {
      if (ans.rcode === NXDOMAIN && this.#autopath !== undefined) {
        const walked = this.#autopathed(req, q, ctx);
        if (walked !== undefined) return walked;
      }
      const target = this.#chase !== undefined ? chaseTarget(ans, q.qtype, this.#resolver) : undefined;
      if (target !== undefined) return this.#chased(req, q, ctx, ans, target);
      this.#complete = true;
      const out = this.#reply(req, q, ctx, ans, 'cluster');
      // A complete answer serves every budget it fits. One cut for this client's budget
      // (TC, or additional records left out) must not reach a client with a larger
      // budget: it is kept for exactly this budget (a 512-byte client asking for a
      // large headless SRV set would otherwise re-resolve and re-encode every time).
      if (ans.rcode !== SERVFAIL) {
        if (this.#complete) this.#store(slot, q, ans, out);
        else if (budget < CUT_BUDGETS) this.#store(cutSlot(slot, budget), q, ans, out);
      }
      return out;
    }
    const next = this.#next;
    if (next === undefined) return this.#reply(req, q, ctx, REFUSED_ANSWER, 'error');
    return next(q, req, ctx.transport).then(
      (r) => {
        if (r === undefined) return undefined;
        if (Buffer.isBuffer(r)) {
          this.#emit(ctx, q.name, q.qtype, r[3]! & 0xf, r.length, 'forward', false, undefined);
          return r;
        }
        return this.#reply(req, q, ctx, r, 'forward');
      },
      (err: unknown) => {
        this.#onError?.(err, 'next');
        return this.#reply(req, q, ctx, error(SERVFAIL), 'forward');
      },
    );
  }

  /**
   * AXFR/IXFR: REFUSED unless transfers are configured (CoreDNS without the transfer
   * plugin); else the transfer stage's one-message answer, or its stream (TCP), which
   * is counted as one query when it ends, with the bytes of all its messages.
   */
  #transferOf(req: Uint8Array, q: Query, ctx: Ctx): Buffer | undefined {
    const source = this.#resolver.owns(q.name) ? 'cluster' : 'error';
    const xfr = this.#transfer;
    if (xfr === undefined) return this.#reply(req, q, ctx, REFUSED_ANSWER, source);
    const onEnd = (bytes: number, rcode: number): void => this.#emit(ctx, q.name, q.qtype, rcode, bytes, 'cluster', false, undefined);
    const r = xfr.request(q, req, ctx.transport, ctx.client, ctx.stream === true, this.#next !== undefined, onEnd);
    if (!('next' in r)) return this.#reply(req, q, ctx, r, source);
    this.#stream = r;
    return undefined;
  }

  /** CNAME from our zone + the target's records from upstream; not wire-cached (the forwarder caches with TTLs). */
  #chased(req: Uint8Array, q: Query, ctx: Ctx, ans: Answer, target: string): Promise<Buffer> {
    return this.#chase!(target, q.qtype).then(
      (r) => {
        const full = r.answer.length > 0 ? { ...ans, answer: [...ans.answer, ...r.answer] } : ans;
        const out = this.#reply(req, q, ctx, full, 'cluster');
        if (r.tc) out[2] = out[2]! | TC_BYTE;
        return out;
      },
      (err: unknown) => {
        this.#onError?.(err, 'chase');
        return this.#reply(req, q, ctx, ans, 'cluster');
      },
    );
  }

  /**
   * The autopath walk for an NXDOMAIN of ours (autopath.ts), or undefined when the plain
   * answer stands (not a pod of that namespace, nothing found in our zones). Its replies
   * depend on the client, so they are never cached; a walk through the upstream that finds
   * nothing gets the plain answer, resolved again.
   */
  #autopathed(req: Uint8Array, q: Query, ctx: Ctx): Buffer | Promise<Buffer> | undefined {
    const w = this.#autopath?.walk(q.name, q.qtype, ctx.client, this.#chase);
    if (w === undefined) return undefined;
    if (!(w instanceof Promise)) return this.#walked(req, q, ctx, w);
    const plain = (): Buffer => this.#reply(req, q, ctx, this.#resolver.resolve(q.name, q.qtype) ?? error(SERVFAIL), 'cluster');
    return w.then(
      (r) => (r === undefined ? plain() : this.#walked(req, q, ctx, r)),
      (err: unknown) => {
        this.#onError?.(err, 'autopath');
        return plain();
      },
    );
  }

  #walked(req: Uint8Array, q: Query, ctx: Ctx, w: Walked): Buffer {
    const out = this.#reply(req, q, ctx, w.answer, w.source);
    if (w.tc) out[2] = out[2]! | TC_BYTE;
    return out;
  }

  #reply(req: Uint8Array, q: Query, ctx: Ctx, ans: Answer, source: QueryEvent['source']): Buffer {
    const out = writeResponse(req, q, ans, { maxSize: maxSize(q, ctx.transport), recursionAvailable: this.#next !== undefined, complete: this.#onComplete });
    this.#emit(ctx, q.name, q.qtype, ans.rcode, out.length, source, false, source === 'error' ? '.' : undefined);
    return out;
  }

  #store(slot: number, q: Query, ans: Answer, out: Buffer): void {
    // Both bounds: entries, and references to them (an entry stored again adds one).
    if (this.#cacheSize >= this.#cacheMax || this.#refs >= 2 * this.#cacheMax) this.invalidate();
    let byName = this.#cache.get(slot);
    if (byName === undefined) this.#cache.set(slot, (byName = new Map()));
    const copy = Buffer.from(out);
    copy.writeUInt16BE(0, 0);
    lowercaseQuestion(copy, q);
    const zone = this.#resolver.zoneOf(q.name);
    const dep = zone === undefined || ans.answer.some(isCname) ? undefined : serviceDep(q.name, zone.name);
    // Only entries that survive changes need the serial patched (volatile ones are
    // dropped at every change, and positive answers carry no SOA).
    const serialAt = dep !== undefined && ans.answer.length === 0 ? soaSerialOffset(copy) : -1;
    if (!byName.has(q.name)) this.#cacheSize++;
    const ap = ans.rcode === NXDOMAIN && this.#autopath !== undefined && this.#autopath.candidate(q.name);
    byName.set(q.name, { buf: copy, zone: zone?.name ?? this.#resolver.zoneName(q.name) ?? '.', serialAt, soaZone: serialAt >= 0 ? zone : undefined, ap });
    const ref: EntryRef = [slot, q.name];
    this.#refs++;
    if (dep === undefined) this.#volatile.push(ref);
    else {
      const list = this.#byService.get(dep);
      if (list === undefined) this.#byService.set(dep, [ref]);
      else list.push(ref);
    }
  }

  #emit(ctx: Ctx, name: string, qtype: number, rcode: number, size: number, source: QueryEvent['source'], cached: boolean, zone: string | undefined): void {
    const cb = this.#onQuery;
    if (cb === undefined) return;
    const z = zone ?? this.#resolver.zoneName(name) ?? '.';
    cb({ transport: ctx.transport, family: ctx.family, name, qtype, rcode, size, zone: z, source, cached, seconds: (performance.now() - ctx.t0) / 1000, client: ctx.client });
  }
}

function isCname(rr: RR): boolean {
  return rr.type === Type.CNAME;
}

/**
 * `<zone>|<ns>/<svc>` for a name at or below a service (`[<...>.]<svc>.<ns>.svc.<zone>`):
 * what it depends on. Undefined for every other name of the zone.
 */
function serviceDep(name: string, zone: string): string | undefined {
  const suffix = `.svc.${zone}`;
  if (!name.endsWith(suffix)) return undefined;
  const rel = name.slice(0, name.length - suffix.length);
  const nsDot = rel.lastIndexOf('.');
  if (nsDot <= 0) return undefined;
  const svcDot = rel.lastIndexOf('.', nsDot - 1);
  return `${zone}|${rel.slice(nsDot + 1)}/${rel.slice(svcDot + 1, nsDot)}`;
}

/** Offset of the serial of the first SOA in the authority section (RFC 1035 §3.3.13), or -1. */
export function soaSerialOffset(buf: Buffer): number {
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  let off = 12;
  for (let i = 0; i < qd && off >= 0; i++) off = skipName(buf, off) + 4;
  for (let i = 0; i < an && off >= 0; i++) {
    off = skipName(buf, off);
    if (off < 0 || off + 10 > buf.length) return -1;
    off += 10 + buf.readUInt16BE(off + 8);
  }
  for (let i = 0; i < ns && off >= 0; i++) {
    off = skipName(buf, off);
    if (off < 0 || off + 10 > buf.length) return -1;
    const type = buf.readUInt16BE(off);
    const rdata = off + 10;
    if (type === Type.SOA) {
      const mname = skipName(buf, rdata);
      const serial = mname < 0 ? -1 : skipName(buf, mname);
      return serial >= 0 && serial + 4 <= buf.length ? serial : -1;
    }
    off = rdata + buf.readUInt16BE(off + 8);
  }
  return -1;
}

/** The out-of-zone CNAME target an A/AAAA answer ends with, if any. */
function chaseTarget(ans: Answer, qtype: number, resolver: Resolver): string | undefined {
  if ((qtype !== Type.A && qtype !== Type.AAAA) || ans.rcode !== NOERROR) return undefined;
  const last = ans.answer[ans.answer.length - 1];
  if (last === undefined || last.type !== Type.CNAME) return undefined;
  return resolver.owns(last.target) ? undefined : last.target;
}

/** The reply budget: 65535 over TCP; over UDP the client's EDNS size (≤ 4096) or 512. */
function maxSize(q: Query, transport: Transport): number {
  if (transport === 'tcp') return 65535;
  return q.edns !== undefined ? Math.min(q.edns.udpSize, MAX_UDP_SIZE) : UDP_MIN_SIZE;
}

function error(rcode: number): Answer {
  return { rcode, authoritative: false, answer: [], authority: [], additional: [] };
}

/** Copy a cached answer for this query: id, RD/CD/opcode bits, and the question's case. */
function patch(cached: Buffer, req: Uint8Array, q: Query): Buffer {
  const out = Buffer.allocUnsafe(cached.length);
  cached.copy(out);
  out.writeUInt16BE(q.id, 0);
  const flags = (cached.readUInt16BE(2) & ~(0x7800 | Flag.RD | Flag.CD)) | (q.flags & (0x7800 | Flag.RD | Flag.CD));
  out.writeUInt16BE(flags, 2);
  out.set(req.subarray(12, q.questionEnd), 12);
  return out;
}

function lowercaseQuestion(buf: Buffer, q: Query): void {
  for (let i = 12; i < q.questionEnd - 4; i++) {
    const c = buf[i]!;
    if (c >= 0x41 && c <= 0x5a) buf[i] = c | 0x20;
  }
}

/** Best-effort SERVFAIL for a query that blew up in the pipeline. */
function servfail(req: Uint8Array): Buffer | undefined {
  const p = parseQuery(req);
  if (p.kind === 'drop') return undefined;
  if (p.kind === 'header-only') return writeHeaderOnly(p.id, p.flags, Rcode.SERVFAIL);
  try {
    return writeResponse(req, p.query, error(Rcode.SERVFAIL), { maxSize: UDP_MIN_SIZE, recursionAvailable: false });
  } catch {
    return writeHeaderOnly(p.query.id, p.query.flags, Rcode.SERVFAIL);
  }
}
