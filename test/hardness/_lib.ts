/**
 * Shared pieces of the hardness tests (not a test file itself: tap runs `*.test.ts`).
 *
 * - `checkReply`: an oracle for "every reply is well-formed", written independently
 *   of src/dns/query.ts: its own walk of the query finds the question's extent and the
 *   EDNS budget, and dns-packet decodes the reply.
 * - `buildServer`: the fixture cluster (test/helpers/cluster.ts) plus bigger services,
 *   a handler and (optionally) a loopback listener.
 * - `UdpPipe`: a UDP client that keeps a bounded window of queries in flight.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import * as dnsPacket from 'dns-packet';
import { DnsHandler, type QueryEvent } from '../../src/server/handler.js';
import { listen, type Listener, type ListenOptions } from '../../src/server/listen.js';
import { Resolver } from '../../src/zone/resolver.js';
import { ClusterZone } from '../../src/zone/zone.js';
import type { ZoneOptions } from '../../src/zone/build.js';
import type { ClusterStore } from '../../src/cluster/store.js';
import { ep, fixtureStore, port, slice, svc } from '../helpers/cluster.js';

export const Z = 'cluster.local';
export const FULL = process.env.HARDNESS_FULL === '1' || process.env.HARDNESS_FULL === 'true';

export const ZONE_OPTS: ZoneOptions = {
  ttl: 5,
  pods: 'insecure',
  ignoreEmptyService: false,
  endpointPodNames: false,
  noEndpoints: false,
  namespaces: undefined,
};

/* ------------------------------------------------------------------ oracle */

export interface QueryShape {
  /** Length of the question (name + type + class), when the question is readable. */
  readonly questionLen: number | undefined;
  /** UDP budget the query asks for: 512, or min(max(OPT class, 512), 4096). */
  readonly udpBudget: number;
  /** The query carries an OPT record (seen before any parse failure). */
  readonly sawOpt: boolean;
  /** The whole message parses, with exactly one OPT, at the root, in additional. */
  readonly cleanEdns: boolean;
  readonly qdcount: number;
  readonly opcode: number;
}

/** Independent walk of a query (RFC 1035 §4.1, RFC 6891 §6.1). */
export function shapeOf(req: Uint8Array): QueryShape {
  const r = { questionLen: undefined as number | undefined, udpBudget: 512, sawOpt: false, cleanEdns: false, qdcount: 0, opcode: 0 };
  if (req.length < 12) return r;
  r.qdcount = (req[4]! << 8) | req[5]!;
  r.opcode = (req[2]! >> 3) & 0xf;
  if (r.qdcount !== 1) return r;
  let p = 12;
  let wire = 1;
  for (;;) {
    if (p >= req.length) return r;
    const l = req[p]!;
    if (l === 0) {
      p++;
      break;
    }
    if (l > 63) return r; // pointers and reserved label types are not allowed here
    wire += l + 1;
    if (wire > 255 || p + 1 + l > req.length) return r;
    p += 1 + l;
  }
  if (p + 4 > req.length) return r;
  p += 4;
  r.questionLen = p - 12;
  const an = (req[6]! << 8) | req[7]!;
  const ns = (req[8]! << 8) | req[9]!;
  const ar = (req[10]! << 8) | req[11]!;
  let opts = 0;
  let optOk = true;
  for (let i = 0; i < an + ns + ar; i++) {
    const owner = p;
    // skip a name, pointers allowed (a pointer ends it)
    let hops = 0;
    for (;;) {
      if (p >= req.length || ++hops > 128) return r;
      const l = req[p]!;
      if (l === 0) {
        p++;
        break;
      }
      if ((l & 0xc0) === 0xc0) {
        if (p + 2 > req.length) return r;
        p += 2;
        break;
      }
      if (l > 63) return r;
      p += 1 + l;
    }
    if (p + 10 > req.length) return r;
    const type = (req[p]! << 8) | req[p + 1]!;
    const klass = (req[p + 2]! << 8) | req[p + 3]!;
    const rdlen = (req[p + 8]! << 8) | req[p + 9]!;
    if (type === 41) {
      opts++;
      if (i < an + ns || req[owner] !== 0) optOk = false;
      if (!r.sawOpt) {
        r.sawOpt = true;
        r.udpBudget = Math.min(Math.max(klass, 512), 4096);
      }
    }
    p += 10 + rdlen;
    if (p > req.length) return r;
  }
  r.cleanEdns = opts === 1 && optOk;
  return r;
}

const RCODE_FORMERR = 1;
const RCODE_SERVFAIL = 2;
const RCODE_NOTIMP = 4;

/**
 * Everything a reply to `req` must satisfy, whatever `req` is. Returns a list of
 * violations (empty when the reply is well-formed).
 */
export function checkReply(req: Uint8Array, out: Uint8Array | undefined, transport: 'udp' | 'tcp'): string[] {
  const errs: string[] = [];
  const droppable = req.length < 12 || (req[2]! & 0x80) !== 0;
  if (out === undefined) {
    if (!droppable) errs.push('no reply to a packet with a readable header');
    return errs;
  }
  if (droppable) errs.push('replied to a packet that must be dropped (short, or QR set)');
  if (out.length < 12) return [...errs, `reply shorter than a header (${out.length})`];
  const shape = shapeOf(req);
  if (out[0] !== req[0] || out[1] !== req[1]) errs.push('id not echoed');
  if ((out[2]! & 0x80) === 0) errs.push('QR not set');
  if (((out[2]! >> 3) & 0xf) !== shape.opcode) errs.push('opcode not echoed');
  const budget = transport === 'tcp' ? 65535 : shape.udpBudget;
  if (out.length > budget) errs.push(`reply ${out.length} bytes over the ${transport} budget ${budget}`);
  let dec: dnsPacket.DecodedPacket;
  try {
    dec = dnsPacket.decode(Buffer.from(out.buffer, out.byteOffset, out.length));
    const used = (dnsPacket.decode as unknown as { bytes: number }).bytes;
    if (used !== out.length) errs.push(`dns-packet used ${used} of ${out.length} bytes`);
  } catch (err) {
    return [...errs, `reply does not decode: ${String(err)}`];
  }
  const rcode = out[3]! & 0xf;
  if (rcode === RCODE_SERVFAIL) errs.push('SERVFAIL (an exception inside the pipeline)');
  const qd = (out[4]! << 8) | out[5]!;
  if (qd > 1) errs.push(`reply qdcount ${qd}`);
  if (qd === 1) {
    if (shape.questionLen === undefined) errs.push('reply has a question but the query has none readable');
    else if (Buffer.compare(Buffer.from(out.subarray(12, 12 + shape.questionLen)), Buffer.from(req.subarray(12, 12 + shape.questionLen))) !== 0) {
      errs.push('question not echoed byte for byte');
    }
  } else if (rcode !== RCODE_FORMERR && rcode !== RCODE_NOTIMP) {
    errs.push(`reply without a question has rcode ${rcode}`);
  }
  if (shape.qdcount !== 1 && qd !== 0) errs.push('qdcount != 1 answered with a question');
  if (shape.qdcount !== 1 && rcode !== (shape.opcode !== 0 ? RCODE_NOTIMP : RCODE_FORMERR)) errs.push(`qdcount ${shape.qdcount}: rcode ${rcode}`);
  // owner names equal to the question name keep the query's letter case (RFC 4343 §4.1)
  const qname = dec.questions?.[0]?.name;
  if (qname !== undefined) {
    for (const a of [...(dec.answers ?? []), ...(dec.authorities ?? [])]) {
      if (a.name !== qname && a.name.toLowerCase() === qname.toLowerCase()) errs.push(`owner ${a.name} lost the query's case ${qname}`);
    }
  }
  const hasOpt = (dec.additionals ?? []).some((a) => a.type === 'OPT');
  if (hasOpt && !shape.sawOpt) errs.push('OPT in the reply, none in the query');
  if (!hasOpt && shape.cleanEdns && qd === 1) errs.push('query had one clean OPT, the reply none');
  return errs;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}

/* ------------------------------------------------------------------ server */

export interface Server {
  readonly store: ClusterStore;
  readonly zone: ClusterZone;
  readonly resolver: Resolver;
  readonly handler: DnsHandler;
  /** Errors the handler reported (each one is a SERVFAIL). */
  readonly errors: unknown[];
}

/** `count` IPv4 endpoints 10.200.x.y, optionally with hostnames `host-<i>`. */
export function endpoints(count: number, base = 200, hostnames = false) {
  return Array.from({ length: count }, (_, i) => ep(`10.${base}.${Math.floor(i / 250)}.${(i % 250) + 1}`, hostnames ? { hostname: `host-${i}` } : {}));
}

/** reverseZones 172.0.0.0/24 and 10.96.0.0/12 (the fixture's endpoint and service ranges). */
export const REVERSE_ZONES: readonly string[] = ['0.0.172.in-addr.arpa', ...Array.from({ length: 16 }, (_, i) => `${96 + i}.10.in-addr.arpa`)];

/**
 * The fixture cluster plus `testns/big` (headless, 100 endpoints), `testns/huge`
 * (headless, 300 endpoints, hostnames) and reverse zones over the fixture's ranges.
 */
export function buildServer(opts: { onQuery?: (e: QueryEvent) => void } = {}): Server {
  const store = fixtureStore();
  const p = [{ name: 'http', port: 80, protocol: 'TCP' as const }];
  store.upsert({ kind: 'Service', obj: svc('testns', 'big', { headless: true, ports: [port('http', 80)] }) });
  store.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'big', 'big-a', endpoints(100, 1), p) });
  store.upsert({ kind: 'Service', obj: svc('testns', 'huge', { headless: true, ports: [port('http', 80)] }) });
  store.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'huge', 'huge-a', endpoints(300, 2, true), p) });
  store.flush();
  const zone = new ClusterZone(Z, store, ZONE_OPTS);
  const resolver = new Resolver();
  resolver.setZones([zone]);
  resolver.setReverseZones(REVERSE_ZONES.map((name) => ({ name })));
  const errors: unknown[] = [];
  const handler = new DnsHandler({ resolver, onError: (err) => errors.push(err), onQuery: opts.onQuery });
  zone.onUpdate = () => handler.invalidate();
  return { store, zone, resolver, handler, errors };
}

export async function listenOn(s: Server, opts: Partial<ListenOptions> = {}): Promise<Listener> {
  return listen(s.handler, { host: '127.0.0.1', port: 0, ...opts });
}

/* ------------------------------------------------------------------ wire helpers */

/** Wire form of a dotted name (labels as latin1), or of raw label byte strings. */
export function wireName(name: string | readonly Uint8Array[]): Buffer {
  const labels = typeof name === 'string' ? (name === '' || name === '.' ? [] : name.replace(/\.$/, '').split('.').map((l) => Buffer.from(l, 'latin1'))) : name;
  const parts: Buffer[] = [];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export interface RawQuery {
  id?: number;
  flags?: number;
  name: string | readonly Uint8Array[];
  qtype: number;
  qclass?: number;
  /** EDNS UDP size; undefined: no OPT. */
  edns?: number;
}

export function rawQuery(q: RawQuery): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(q.id ?? 0x1234, 0);
  h.writeUInt16BE(q.flags ?? 0x0100, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(q.edns !== undefined ? 1 : 0, 10);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(q.qtype, 0);
  tail.writeUInt16BE(q.qclass ?? 1, 2);
  const parts = [h, wireName(q.name), tail];
  if (q.edns !== undefined) {
    const opt = Buffer.alloc(11);
    opt.writeUInt16BE(41, 1);
    opt.writeUInt16BE(q.edns, 3);
    parts.push(opt);
  }
  return Buffer.concat(parts);
}

/* ------------------------------------------------------------------ UDP pipeline */

/** Linux UDP counters (/proc/net/snmp), to tell receive-buffer overflows from server faults. */
export function udpCounters(): Record<string, number> {
  try {
    const lines = readFileSync('/proc/net/snmp', 'latin1').split('\n').filter((x) => x.startsWith('Udp:'));
    const keys = lines[0]!.split(/\s+/).slice(1);
    const vals = lines[1]!.split(/\s+/).slice(1).map(Number);
    return Object.fromEntries(keys.map((k, i) => [k, vals[i] ?? 0]));
  } catch {
    return {};
  }
}

export function counterDelta(a: Record<string, number>, b: Record<string, number>, keys = ['RcvbufErrors', 'SndbufErrors', 'InErrors']): string {
  return keys.map((k) => `${k} +${(b[k] ?? 0) - (a[k] ?? 0)}`).join(', ');
}

export interface PipeResult {
  readonly sent: number;
  readonly replies: number;
  /** Queries without a reply after the final grace period. */
  readonly lost: number;
  readonly ms: number;
}

/** A reply (undefined on timeout), its latency, and the bytes actually sent (id rewritten). */
export type Done = (reply: Buffer | undefined, ms: number, sent: Buffer) => void;

/**
 * Sends queries over one UDP socket with at most `window` in flight, matching replies
 * by id (ids cycle through 1..65535). A query that expects no reply, or
 * whose reply does not come within `timeoutMs`, frees its slot.
 */
export class UdpPipe {
  readonly #sock: dgram.Socket;
  readonly #port: number;
  readonly #inflight = new Map<number, { msg: Buffer; sentAt: number; seq: number; done: Done }>();
  /** Replies that matched nothing in flight (late, or to a query that expected none). */
  onUnmatched: ((reply: Buffer) => void) | undefined;
  #nextId = 0;
  /** Send order, to free the slots of no-reply packets once a later reply arrives. */
  #seq = 0;
  readonly #held: { seq: number; timer: NodeJS.Timeout | undefined }[] = [];
  #waiters: (() => void)[] = [];

  private constructor(port: number, sock: dgram.Socket, readonly window: number, readonly timeoutMs: number) {
    this.#port = port;
    this.#sock = sock;
    this.#sock.on('message', (m) => this.#onMessage(m));
    this.#sock.on('error', () => {});
  }

  static async open(port: number, window = 200, timeoutMs = 1000): Promise<UdpPipe> {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    try {
      sock.setRecvBufferSize(4 << 20);
      sock.setSendBufferSize(4 << 20);
    } catch {
      /* best effort: the kernel caps these */
    }
    return new UdpPipe(port, sock, window, timeoutMs);
  }

  #onMessage(m: Buffer): void {
    if (m.length < 2) return;
    const id = m.readUInt16BE(0);
    const e = this.#inflight.get(id);
    if (e === undefined) {
      this.onUnmatched?.(m);
      return;
    }
    this.#release(id);
    while (this.#held.length > 0 && this.#held[0]!.seq < e.seq) this.#unhold(this.#held[0]!);
    e.done(m, performance.now() - e.sentAt, e.msg);
  }

  #release(id: number): void {
    if (!this.#inflight.delete(id)) return;
    const w = this.#waiters.shift();
    if (w !== undefined) w();
  }

  get inflight(): number {
    return this.#inflight.size;
  }

  #takeId(): number {
    // ids cycle through 1..65535 (skipping ones in flight), so a late reply to a
    // timed-out query cannot be taken for the reply to a recent one
    let id: number;
    do {
      this.#nextId = (this.#nextId % 65535) + 1;
      id = this.#nextId;
    } while (this.#inflight.has(id));
    return id;
  }

  /**
   * Send `msg` with its id replaced; resolves (after a free slot) once sent. `done`
   * gets the reply (undefined after `timeoutMs`) and the bytes sent.
   */
  async send(msg: Buffer, done: Done, timeoutMs = this.timeoutMs, beforeSend?: () => void): Promise<void> {
    while (!this.trySend(msg, done, timeoutMs, beforeSend)) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** `send` without waiting: false (nothing sent) when the window is full. `beforeSend` runs just before sending. */
  trySend(msg: Buffer, done: Done, timeoutMs = this.timeoutMs, beforeSend?: () => void): boolean {
    if (this.#inflight.size + this.#held.length >= this.window) return false;
    beforeSend?.();
    const id = this.#takeId();
    const out = Buffer.from(msg);
    if (out.length >= 2) out.writeUInt16BE(id, 0);
    const e = { msg: out, sentAt: performance.now(), seq: this.#seq++, done };
    this.#inflight.set(id, e);
    const timer = setTimeout(() => {
      if (this.#inflight.get(id) === e) {
        this.#release(id);
        done(undefined, timeoutMs, out);
      }
    }, timeoutMs);
    timer.unref();
    this.#sock.send(out, this.#port, '127.0.0.1');
    return true;
  }

  /**
   * Send a packet that must get no reply. It takes a slot (so the window still bounds
   * what the server has queued) until a reply to a packet sent after it arrives (the
   * server reads one socket in order, so by then it has dropped this one) or
   * `holdMs` passes. Its id is not in flight, so a reply to it reaches `onUnmatched`.
   */
  async sendNoReply(msg: Buffer, holdMs = 200): Promise<Buffer> {
    while (this.#inflight.size + this.#held.length >= this.window) {
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    const out = Buffer.from(msg);
    if (out.length >= 2) out.writeUInt16BE(this.#takeId(), 0);
    const token = { seq: this.#seq++, timer: undefined as NodeJS.Timeout | undefined };
    token.timer = setTimeout(() => this.#unhold(token), holdMs);
    token.timer.unref();
    this.#held.push(token);
    this.#sock.send(out, this.#port, '127.0.0.1');
    return out;
  }

  #unhold(token: { seq: number; timer: NodeJS.Timeout | undefined }): void {
    const i = this.#held.indexOf(token);
    if (i < 0) return;
    this.#held.splice(i, 1);
    clearTimeout(token.timer);
    const w = this.#waiters.shift();
    if (w !== undefined) w();
  }

  /** Resolves when nothing is in flight (and, after `settleMs`, stray replies had time to arrive). */
  async drain(settleMs = 0): Promise<void> {
    while (this.#inflight.size > 0 || this.#held.length > 0) await new Promise((r) => setTimeout(r, 10));
    if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
  }

  close(): void {
    this.#sock.close();
  }
}
