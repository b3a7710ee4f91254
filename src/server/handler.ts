/**
 * The query pipeline shared by the UDP and TCP listeners: wire bytes in, wire bytes
 * out (or nothing, for packets we drop). Never throws: anything unexpected becomes
 * SERVFAIL, and a packet whose header cannot be read is dropped.
 *
 * Order of checks (RFC 1035 §4.1.1, RFC 6891, RFC 8482, RFC 5936):
 *   unreadable → drop; qdcount ≠ 1 → FORMERR; opcode ≠ QUERY → NOTIMP;
 *   EDNS version > 0 → BADVERS; class ≠ IN → REFUSED; AXFR/IXFR → REFUSED;
 *   our zones → authoritative answer; anything else → the next stage (upstream,
 *   a later stage) or REFUSED.
 */
import { LRUCache } from 'lru-cache';
import { Class, Flag, Rcode, Type, UDP_MIN_SIZE } from '../dns/constants.js';
import { parseQuery, type Query } from '../dns/query.js';
import { writeHeaderOnly, writeResponse, type Answer } from '../dns/writer.js';
import type { Resolver } from '../zone/resolver.js';

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

/** A later stage for names we are not authoritative for (upstream forwarding). */
export type NextStage = (query: Query, req: Uint8Array, transport: Transport) => Promise<Answer | Buffer | undefined>;

export interface HandlerOptions {
  readonly resolver: Resolver;
  readonly next?: NextStage | undefined;
  readonly onQuery?: ((e: QueryEvent) => void) | undefined;
  readonly onError?: ((err: unknown, where: string) => void) | undefined;
  /** Answer-cache entries (wire answers of cluster names). */
  readonly cacheEntries?: number;
}

interface Cached {
  readonly buf: Buffer;
}

const REFUSED_ANSWER: Answer = { rcode: Rcode.REFUSED, authoritative: false, answer: [], authority: [], additional: [] };

export class DnsHandler {
  readonly #opts: HandlerOptions;
  #next: NextStage | undefined;
  /**
   * Encoded answers of cluster names, keyed by (EDNS?, qtype, lowercase name), with
   * the question lowercase and id 0. A hit is a copy plus id, flags and letter-case
   * patches. Cleared whenever any zone changes.
   */
  readonly #cache: LRUCache<string, Cached>;

  constructor(opts: HandlerOptions) {
    this.#opts = opts;
    this.#next = opts.next;
    this.#cache = new LRUCache({ max: opts.cacheEntries ?? 20000 });
  }

  /** Forget every cached answer (the cluster changed). */
  invalidate(): void {
    this.#cache.clear();
  }

  setNext(next: NextStage | undefined): void {
    this.#next = next;
  }

  /**
   * Handle one query. Synchronous for everything we answer ourselves; a Promise only
   * when a later stage (upstream) is involved.
   */
  handle(req: Uint8Array, transport: Transport, family: '1' | '2' = '1', client?: string): Buffer | undefined | Promise<Buffer | undefined> {
    try {
      return this.#handle(req, transport, family, client);
    } catch (err) {
      this.#opts.onError?.(err, 'handle');
      return servfail(req);
    }
  }

  #handle(req: Uint8Array, transport: Transport, family: '1' | '2', client: string | undefined): Buffer | undefined | Promise<Buffer | undefined> {
    const t0 = this.#opts.onQuery !== undefined ? performance.now() : 0;
    const parsed = parseQuery(req);
    if (parsed.kind === 'drop') return undefined;
    const emit = (name: string, qtype: number, rcode: number, size: number, source: QueryEvent['source'], cached: boolean): void => {
      const cb = this.#opts.onQuery;
      if (cb === undefined) return;
      const zone = source === 'error' ? '.' : (this.#opts.resolver.zoneName(name) ?? '.');
      cb({ transport, family, name, qtype, rcode, size, zone, source, cached, seconds: (performance.now() - t0) / 1000, client });
    };
    if (parsed.kind === 'header-only') {
      const out = writeHeaderOnly(parsed.id, parsed.flags, parsed.rcode);
      emit('', 0, parsed.rcode, out.length, 'error', false);
      return out;
    }
    const q = parsed.query;
    const maxSize = transport === 'tcp' ? 65535 : q.edns !== undefined ? Math.min(q.edns.udpSize, MAX_UDP_SIZE) : UDP_MIN_SIZE;
    const ra = this.#next !== undefined;
    const reply = (ans: Answer, source: QueryEvent['source']): Buffer => {
      const out = writeResponse(req, q, ans, { maxSize, recursionAvailable: ra });
      emit(q.name, q.qtype, ans.rcode, out.length, source, false);
      return out;
    };
    if (parsed.rcode !== Rcode.NOERROR) return reply(error(parsed.rcode), 'error');
    if (q.qclass !== Class.IN) return reply(REFUSED_ANSWER, 'error');
    if (q.qtype === Type.OPT) return reply(error(Rcode.FORMERR), 'error');
    const resolver = this.#opts.resolver;
    const owned = resolver.owns(q.name);
    if (q.qtype === Type.AXFR || q.qtype === Type.IXFR) {
      // Zone transfer is not offered (CoreDNS without the transfer plugin).
      return reply(REFUSED_ANSWER, owned ? 'cluster' : 'error');
    }
    const key = `${q.edns !== undefined ? 1 : 0}${ra ? 1 : 0}|${q.qtype}|${q.name}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined && hit.buf.length <= maxSize) {
      const out = patch(hit.buf, req, q);
      emit(q.name, q.qtype, out[3]! & 0xf, out.length, 'cluster', true);
      return out;
    }
    const ans = resolver.resolve(q.name, q.qtype);
    if (ans !== undefined) {
      const out = reply(ans, 'cluster');
      // Cache only complete answers: a truncated one depends on this client's budget.
      if ((out[2]! & (Flag.TC >> 8)) === 0 && ans.rcode !== Rcode.SERVFAIL) {
        const copy = Buffer.from(out);
        copy.writeUInt16BE(0, 0);
        lowercaseQuestion(copy, q);
        this.#cache.set(key, { buf: copy });
      }
      return out;
    }
    const next = this.#next;
    if (next === undefined) return reply(REFUSED_ANSWER, 'error');
    return next(q, req, transport).then(
      (r) => {
        if (r === undefined) return undefined;
        if (Buffer.isBuffer(r)) {
          emit(q.name, q.qtype, r[3]! & 0xf, r.length, 'forward', false);
          return r;
        }
        return reply(r, 'forward');
      },
      (err: unknown) => {
        this.#opts.onError?.(err, 'next');
        return reply(error(Rcode.SERVFAIL), 'forward');
      },
    );
  }
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
