/**
 * The UDP sockets queries to one upstream server go out on (RFC 5452).
 *
 * A new socket per query (what exchange.ts `udpExchange` does for health checks and loop
 * probes) costs a socket, a bind, a connect and a close per query: most of a miss's CPU
 * in Node. Here each upstream has a small set of sockets instead, used in turn and
 * replaced often, so the source port stays unpredictable:
 *
 * - each socket is connected to the server (only its datagrams reach us, and an ICMP
 *   port unreachable comes back as ECONNREFUSED at once) on a port the kernel picks at
 *   random (RFC 6056);
 * - a query goes out on a randomly chosen socket of the set, with a fresh random ID
 *   (RFC 5452 §9.2) not in use on that socket;
 * - a socket takes at most `uses` queries, and none once it is `maxAgeMs` old; then it is
 *   retired (a new one takes its place, on a new random port) and closed once its
 *   last query is done. An attacker must so guess one of a handful of ports that change
 *   every few hundred queries, and the ID: the same order of guessing as a port per query;
 * - a datagram that is not the reply to a pending query (unknown ID, other question,
 *   unreadable) is ignored and counted (RFC 5452 §4.4): the query keeps waiting;
 * - a socket error (ICMP unreachable, …) ends every query pending on that socket with
 *   the error, and the socket is replaced;
 * - deadlines are in a shared TimerWheel (no timer per query).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { HostPort } from '../net/ip.js';
import { stripZone } from '../net/ip.js';
import { errorKind, type ExchangeError, type ExchangeResult } from './exchange.js';
import type { Timed, TimerWheel } from './timers.js';
import { buildQuery, checkReply, randomId } from './wire.js';

/** Called once per query with its result (possibly synchronously from `send`, for 'closed'). */
export type UdpDone<C> = (ctx: C, r: ExchangeResult) => void;

export interface UdpSocketOptions {
  /** Sockets per server (default 8). */
  readonly sockets?: number | undefined;
  /** Queries per socket before it is replaced (default 100). */
  readonly uses?: number | undefined;
  /** Age after which a socket takes no new query, ms (default 10000). */
  readonly maxAgeMs?: number | undefined;
}

export const UDP_SOCKET_DEFAULTS = { sockets: 8, uses: 100, maxAgeMs: 10_000 } as const;

/** Results without a reply are shared, never allocated per query. */
const RESULT: Record<ExchangeError, ExchangeResult> = {
  timeout: Object.freeze({ ok: false, error: 'timeout', ignored: 0 }),
  unreachable: Object.freeze({ ok: false, error: 'unreachable', ignored: 0 }),
  network: Object.freeze({ ok: false, error: 'network', ignored: 0 }),
  closed: Object.freeze({ ok: false, error: 'closed', ignored: 0 }),
};

/** Address literals only (no DNS lookup, no deferral): upstreams are always IP addresses. */
function literalLookup(address: string, family: unknown, cb: (err: Error | null, address: string, family: number) => void): void {
  cb(null, address, family === 6 || family === 'IPv6' ? 6 : 4);
}

class Pending<C> implements Timed {
  deadline = 0;
  wheelState = 0;
  constructor(
    readonly sock: PooledSocket<C>,
    readonly id: number,
    readonly question: Uint8Array,
    readonly ctx: C,
  ) {}

  expire(): void {
    this.sock.finish(this, RESULT.timeout);
  }
}

class PooledSocket<C> {
  readonly #set: UdpSockets<C>;
  readonly #sock: dgram.Socket;
  readonly pending = new Map<number, Pending<C>>();
  readonly born = performance.now();
  uses = 0;
  retired = false;
  #connected = false;
  #closed = false;
  /** Queries sent before the connect completed. */
  #queue: Buffer[] = [];

  constructor(set: UdpSockets<C>, addr: HostPort) {
    this.#set = set;
    const v6 = net.isIPv6(stripZone(addr.host));
    this.#sock = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', lookup: literalLookup as dgram.SocketOptions['lookup'] });
    this.#sock.on('message', (m: Buffer) => this.#onMessage(m));
    this.#sock.on('error', (err: NodeJS.ErrnoException) => this.#fail(RESULT[errorKind(err)]));
    this.#sock.connect(addr.port, addr.host, () => {
      if (this.#closed) return;
      this.#connected = true;
      const q = this.#queue;
      this.#queue = [];
      for (const m of q) this.#sock.send(m);
    });
  }

  send(msg: Buffer): void {
    this.uses++;
    // No send callback: with one Node queues a nextTick per datagram. A failed send
    // leaves the query to its deadline (a socket error also fails it at once).
    if (this.#connected) this.#sock.send(msg);
    else this.#queue.push(msg);
  }

  #onMessage(m: Buffer): void {
    if (m.length < 12) {
      this.#set.ignored();
      return;
    }
    const p = this.pending.get((m[0]! << 8) | m[1]!);
    const scan = p === undefined ? undefined : checkReply(m, p.id, p.question);
    if (scan === undefined) {
      this.#set.ignored();
      return;
    }
    this.finish(p!, { ok: true, msg: m, scan, ignored: 0 });
  }

  /** End one query: off the socket and the wheel, then its callback. */
  finish(p: Pending<C>, r: ExchangeResult): void {
    if (this.pending.get(p.id) !== p) return;
    this.pending.delete(p.id);
    this.#set.wheel.cancel(p);
    if (this.retired && this.pending.size === 0) this.#set.drained(this);
    this.#set.done(p.ctx, r);
  }

  /** Every pending query ends with `r`; the socket is replaced. */
  #fail(r: ExchangeResult): void {
    this.#set.retire(this);
    const all = [...this.pending.values()];
    for (const p of all) this.finish(p, r);
    this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#sock.close();
    } catch {
      // already closed
    }
  }

  /** Close now, ending pending queries with 'closed'. */
  abort(): void {
    this.retired = true;
    const all = [...this.pending.values()];
    for (const p of all) this.finish(p, RESULT.closed);
    this.close();
  }

  get open(): boolean {
    return !this.#closed;
  }
}

/** The sockets to one upstream server. `C` is the caller's context, handed back to `done`. */
export class UdpSockets<C> {
  readonly wheel: TimerWheel;
  readonly done: UdpDone<C>;
  readonly #addr: HostPort;
  readonly #stats: { ignored: number };
  readonly #slots: (PooledSocket<C> | undefined)[];
  #uses: number;
  readonly #maxAge: number;
  /** Retired sockets still waiting for replies. */
  readonly #draining = new Set<PooledSocket<C>>();
  #closed = false;
  /** Sockets opened so far (tests, metrics). */
  opened = 0;

  constructor(addr: HostPort, wheel: TimerWheel, done: UdpDone<C>, stats: { ignored: number }, opts: UdpSocketOptions = {}) {
    this.#addr = addr;
    this.wheel = wheel;
    this.done = done;
    this.#stats = stats;
    this.#slots = new Array<PooledSocket<C> | undefined>(Math.max(1, opts.sockets ?? UDP_SOCKET_DEFAULTS.sockets)).fill(undefined);
    this.#uses = Math.max(1, opts.uses ?? UDP_SOCKET_DEFAULTS.uses);
    this.#maxAge = opts.maxAgeMs ?? UDP_SOCKET_DEFAULTS.maxAgeMs;
  }

  /**
   * Send the query for `question` (lowercase wire question) with a fresh ID; `done(ctx, r)`
   * follows with the reply, or 'timeout' after `timeoutMs`, or the socket's error.
   */
  send(question: Uint8Array, dnssecOk: boolean, checkingDisabled: boolean, timeoutMs: number, ctx: C): void {
    if (this.#closed) {
      this.done(ctx, RESULT.closed);
      return;
    }
    const sock = this.#pick();
    let id = randomId();
    while (sock.pending.has(id)) id = randomId();
    const p = new Pending(sock, id, question, ctx);
    sock.pending.set(id, p);
    p.deadline = performance.now() + timeoutMs;
    this.wheel.add(p);
    sock.send(buildQuery(id, question, { dnssecOk, checkingDisabled }));
  }

  #pick(): PooledSocket<C> {
    const i = (Math.random() * this.#slots.length) | 0;
    let s = this.#slots[i];
    if (s !== undefined && (s.uses >= this.#uses || performance.now() - s.born > this.#maxAge)) {
      this.retire(s);
      s = undefined;
    }
    if (s === undefined) {
      s = new PooledSocket(this, this.#addr);
      this.opened++;
      this.#slots[i] = s;
    }
    return s;
  }

  /** Take `s` out of use; it closes once nothing is pending on it. */
  retire(s: PooledSocket<C>): void {
    if (s.retired) return;
    s.retired = true;
    const i = this.#slots.indexOf(s);
    if (i >= 0) this.#slots[i] = undefined;
    if (s.pending.size === 0) s.close();
    else this.#draining.add(s);
  }

  /** A retired socket's last query is done: close it. */
  drained(s: PooledSocket<C>): void {
    this.#draining.delete(s);
    s.close();
  }

  ignored(): void {
    this.#stats.ignored++;
  }

  /** Sockets open now (in use or draining). */
  get openSockets(): number {
    let n = 0;
    for (const s of this.#slots) if (s?.open === true) n++;
    for (const s of this.#draining) if (s.open) n++;
    return n;
  }

  /**
   * No more reuse (the server left the configuration): sockets close as their queries
   * end, and a query sent from now on gets a socket of its own.
   */
  retireAll(): void {
    this.#uses = 1;
    for (const s of this.#slots) if (s !== undefined) this.retire(s);
  }

  /** Close every socket; pending queries end with 'closed'. */
  close(): void {
    this.#closed = true;
    for (let i = 0; i < this.#slots.length; i++) {
      this.#slots[i]?.abort();
      this.#slots[i] = undefined;
    }
    for (const s of this.#draining) s.abort();
    this.#draining.clear();
  }
}
