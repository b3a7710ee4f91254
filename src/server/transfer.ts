/**
 * Zone transfer out: AXFR (RFC 5936) and IXFR (RFC 1995) of the cluster zones to the
 * clients the `transfer` CIDRs allow (CoreDNS's `transfer { to ... }`).
 *
 * - Who: a client whose address is inside a `transfer` CIDR; everyone else REFUSED
 *   (RFC 5936 §5 leaves the policy to the operator; an empty list allows nobody).
 *   AXFR over UDP is always REFUSED (RFC 5936 §4.2: AXFR runs over TCP).
 * - What: the zone whose apex is the question; a name that is not the apex of a zone we
 *   serve is NOTAUTH (RFC 5936 §2.2.1). Before the sources' first sync, SERVFAIL: a
 *   partial zone would become a secondary's authoritative NXDOMAINs.
 * - AXFR: the SOA, every record (src/zone/transfer.ts), the SOA again (RFC 5936 §2.2),
 *   in as many messages as needed, each at most {@link MESSAGE_SIZE} bytes with many
 *   records and name compression (the response writer's). Messages are made one at a
 *   time as the listener's socket drains (ReplyStream), from a snapshot taken when the
 *   transfer starts: memory is one message plus one service's records, whatever the zone
 *   size, and the records are those of one serial.
 * - IXFR: we keep no history, so a client whose serial (the SOA in the query's
 *   authority section, RFC 1995 §3) is current or newer gets the current SOA alone
 *   (RFC 1995 §2), and any other gets the whole zone AXFR-style (RFC 1995 §4). Over UDP
 *   the answer is always the current SOA alone: for an out-of-date client that says
 *   "use TCP" (RFC 1995 §2).
 * - Bounds: at most `maxTransfers` transfers at once per process (BIND's `transfers-out`
 *   answers REFUSED beyond it too).
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { Flag, Rcode, Type } from '../dns/constants.js';
import { skipName, type Query } from '../dns/query.js';
import type { RR } from '../dns/rr.js';
import { writeResponse, type Answer } from '../dns/writer.js';
import { parseCIDR, stripZone, unmapIPv4 } from '../net/ip.js';
import type { Resolver } from '../zone/resolver.js';
import { snapshotZone, type ZoneSnapshot } from '../zone/transfer.js';
import type { ClusterZone } from '../zone/zone.js';

/**
 * A reply of several messages on one TCP connection (a zone transfer, RFC 5936 §2.2),
 * produced one message at a time so the sender can wait for the socket to drain.
 */
export interface ReplyStream {
  /** The next message, or undefined when the reply is complete. Never throws. */
  next(): Buffer | undefined;
  /** Stop (the connection went away) and release what the reply holds. Idempotent. */
  close(): void;
}

export function isReplyStream(x: unknown): x is ReplyStream {
  return typeof x === 'object' && x !== null && typeof (x as ReplyStream).next === 'function' && typeof (x as ReplyStream).close === 'function';
}

/**
 * Bytes per transfer message. Well under the 65535 a TCP message may hold (RFC 5936
 * §2.2 lets the server choose), and small enough that every name written in a message
 * can be a compression target (pointers reach offsets below 16 KiB, RFC 1035 §4.1.4).
 */
export const MESSAGE_SIZE = 16384;
/**
 * Records handed to the writer per message: more than fit in MESSAGE_SIZE (the smallest
 * record, an A whose owner compresses to a pointer, is 16 bytes), so each message is full.
 */
const BATCH = Math.ceil(MESSAGE_SIZE / 16) + 1;
/** RFC 5936 §2.2.1: the server is not authoritative for the zone asked for. */
const NOTAUTH = 9;

export type TransferResult = 'served' | 'soa-only' | 'refused' | 'notauth' | 'formerr' | 'servfail' | 'aborted';

/** One transfer request, as counted and logged. */
export interface TransferEvent {
  readonly zone: string;
  readonly qtype: 'AXFR' | 'IXFR';
  readonly result: TransferResult;
  readonly client: string | undefined;
  /** Serial sent (0 when none was). */
  readonly serial: number;
  readonly messages: number;
  readonly records: number;
  readonly bytes: number;
}

export interface TransferOptions {
  readonly resolver: Resolver;
  /** CIDRs allowed to transfer (config `transfer`). */
  readonly allow: readonly string[];
  /** Transfers at once in this process; beyond it REFUSED. Default 10. */
  readonly maxTransfers?: number;
  readonly onTransfer?: ((e: TransferEvent) => void) | undefined;
  readonly onError?: ((err: unknown, where: string) => void) | undefined;
}

const CLIENT_ERROR = (rcode: number): Answer => ({ rcode, authoritative: false, answer: [], authority: [], additional: [] });

export class ZoneTransfer {
  readonly #resolver: Resolver;
  readonly #maxTransfers: number;
  readonly #onTransfer: ((e: TransferEvent) => void) | undefined;
  readonly #onError: (err: unknown, where: string) => void;
  #acl = new BlockList();
  #aclSize = 0;
  #active = 0;
  /** `zone|type|result` → count, for `clusterdns_zone_transfers_total`. */
  readonly #counts = new Map<string, { labels: { zone: string; type: string; result: string }; value: number }>();

  constructor(opts: TransferOptions) {
    this.#resolver = opts.resolver;
    this.#maxTransfers = opts.maxTransfers ?? 10;
    this.#onTransfer = opts.onTransfer;
    this.#onError = opts.onError ?? (() => {});
    this.setAllowed(opts.allow);
  }

  /** New `transfer` CIDRs (configuration reload); transfers under way continue. */
  setAllowed(cidrs: readonly string[]): void {
    const acl = new BlockList();
    let n = 0;
    for (const c of cidrs) {
      const p = parseCIDR(c);
      if (p === undefined) continue;
      acl.addSubnet(p.ip, p.prefix, p.bytes.length === 4 ? 'ipv4' : 'ipv6');
      n++;
    }
    this.#acl = acl;
    this.#aclSize = n;
  }

  /** Whether `client` (a socket's remote address) may transfer. */
  allowed(client: string | undefined): boolean {
    if (client === undefined || this.#aclSize === 0) return false;
    // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    const ip = unmapIPv4(stripZone(client));
    if (isIPv4(ip)) return this.#acl.check(ip, 'ipv4');
    return isIPv6(ip) && this.#acl.check(ip, 'ipv6');
  }

  /** Transfers being sent now. */
  get active(): number {
    return this.#active;
  }

  /** Requests so far by zone, type and result (a counter read on scrape). */
  counts(): { labels: { zone: string; type: string; result: string }; value: number }[] {
    return [...this.#counts.values()];
  }

  /**
   * Answer an AXFR or IXFR query: one message (an error, or the SOA alone), or, over a
   * TCP connection that can take one (`canStream`), a stream of the whole zone.
   * `onEnd` is told the stream's total size when it ends (sent or aborted).
   */
  request(
    q: Query,
    req: Uint8Array,
    transport: 'udp' | 'tcp',
    client: string | undefined,
    canStream: boolean,
    recursionAvailable: boolean,
    onEnd?: (bytes: number, rcode: number) => void,
  ): Answer | ReplyStream {
    const type = q.qtype === Type.AXFR ? 'AXFR' : 'IXFR';
    const zone = this.#resolver.zones.find((z) => z.name === q.name);
    const label = zone?.name ?? this.#resolver.zoneName(q.name) ?? '.';
    const done = (result: TransferResult, ans: Answer, serial = 0): Answer => {
      this.#event({ zone: label, qtype: type, result, client, serial, messages: 1, records: ans.answer.length, bytes: 0 });
      return ans;
    };
    if (!this.allowed(client)) return done('refused', CLIENT_ERROR(Rcode.REFUSED));
    // RFC 5936 §4.2: AXFR is a TCP exchange.
    if (transport === 'udp' && type === 'AXFR') return done('refused', CLIENT_ERROR(Rcode.REFUSED));
    if (zone === undefined) return done('notauth', CLIENT_ERROR(NOTAUTH));
    if (!this.#resolver.synced()) return done('servfail', CLIENT_ERROR(Rcode.SERVFAIL));
    if (type === 'IXFR') {
      const theirs = ixfrSerial(req, q);
      // RFC 1995 §3: the query carries the client's SOA in its authority section.
      if (theirs === undefined) return done('formerr', CLIENT_ERROR(Rcode.FORMERR));
      const soa = currentSoa(zone);
      // RFC 1995 §2: current (or newer) → the SOA alone; over UDP the SOA alone also
      // tells an out-of-date client to ask again over TCP.
      if (!serialNewer(soa.soa.serial, theirs) || transport === 'udp') {
        return done('soa-only', { rcode: Rcode.NOERROR, authoritative: true, answer: [soa], authority: [], additional: [] }, soa.soa.serial);
      }
    }
    // The listener sends streams; a caller that cannot (handle() over TCP) gets SERVFAIL.
    if (!canStream) return done('servfail', CLIENT_ERROR(Rcode.SERVFAIL));
    if (this.#active >= this.#maxTransfers) return done('refused', CLIENT_ERROR(Rcode.REFUSED));
    const snap = snapshotZone(zone, this.#onError);
    this.#active++;
    return new TransferStream(snap, Buffer.from(req), q, recursionAvailable, this.#onError, (stats, result, rcode) => {
      this.#active--;
      this.#event({ zone: label, qtype: type, result, client, serial: snap.serial, ...stats });
      onEnd?.(stats.bytes, rcode);
    });
  }

  #event(e: TransferEvent): void {
    const key = `${e.zone}|${e.qtype}|${e.result}`;
    const c = this.#counts.get(key);
    if (c !== undefined) c.value++;
    else this.#counts.set(key, { labels: { zone: e.zone, type: e.qtype, result: e.result }, value: 1 });
    try {
      this.#onTransfer?.(e);
    } catch (err) {
      this.#onError(err, 'transfer-event');
    }
  }
}

/** The zone's SOA as a query for it is answered now. */
function currentSoa(zone: ClusterZone): RR & { readonly type: typeof Type.SOA } {
  const rr = zone.forward.lookup(zone.name)?.get(Type.SOA)?.rrs[0] ?? zone.soa();
  return rr as RR & { readonly type: typeof Type.SOA };
}

/** Whether serial `a` is later than `b` (RFC 1982 §3.2). */
export function serialNewer(a: number, b: number): boolean {
  const d = (a - b) >>> 0;
  return d !== 0 && d < 0x80000000;
}

/**
 * The serial of the SOA in an IXFR query's authority section (RFC 1995 §3), or
 * undefined when there is none or the message is malformed.
 */
export function ixfrSerial(buf: Uint8Array, q: Query): number | undefined {
  if (buf.length < 12) return undefined;
  const an = (buf[6]! << 8) | buf[7]!;
  const ns = (buf[8]! << 8) | buf[9]!;
  let off = q.questionEnd;
  for (let i = 0; i < an + ns; i++) {
    off = skipName(buf, off);
    if (off < 0 || off + 10 > buf.length) return undefined;
    const type = (buf[off]! << 8) | buf[off + 1]!;
    const rdlen = (buf[off + 8]! << 8) | buf[off + 9]!;
    const rdata = off + 10;
    if (rdata + rdlen > buf.length) return undefined;
    if (i >= an && type === Type.SOA) {
      let p = skipName(buf, rdata);
      if (p >= 0) p = skipName(buf, p);
      if (p < 0 || p + 4 > rdata + rdlen) return undefined;
      return ((buf[p]! << 24) | (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!) >>> 0;
    }
    off = rdata + rdlen;
  }
  return undefined;
}

interface StreamStats {
  readonly messages: number;
  readonly records: number;
  readonly bytes: number;
}

/**
 * The messages of one transfer: SOA, the snapshot's records, SOA, packed by the
 * response writer (compression against the question and earlier names of the message).
 * At most BATCH records are held between messages.
 */
class TransferStream implements ReplyStream {
  #it: Generator<RR> | undefined;
  #pending: RR[] = [];
  #ended = false;
  #messages = 0;
  #records = 0;
  #bytes = 0;
  readonly #req: Buffer;
  readonly #q: Query;
  readonly #ra: boolean;
  readonly #onError: (err: unknown, where: string) => void;
  readonly #onDone: (stats: StreamStats, result: TransferResult, rcode: number) => void;

  constructor(
    snap: ZoneSnapshot,
    req: Buffer,
    q: Query,
    ra: boolean,
    onError: (err: unknown, where: string) => void,
    onDone: (stats: StreamStats, result: TransferResult, rcode: number) => void,
  ) {
    this.#it = all(snap);
    this.#req = req;
    this.#q = q;
    this.#ra = ra;
    this.#onError = onError;
    this.#onDone = onDone;
  }

  next(): Buffer | undefined {
    if (this.#ended) return undefined;
    try {
      const out = this.#message();
      if (out === undefined) this.#end('served', Rcode.NOERROR);
      else this.#count(out);
      return out;
    } catch (err) {
      // RFC 5936 §2.2: an error ends the transfer with a message carrying an error rcode.
      this.#onError(err, 'transfer');
      let out: Buffer | undefined;
      try {
        out = this.#write([], 512, Rcode.SERVFAIL);
        this.#count(out);
      } catch {
        out = undefined;
      }
      this.#end('aborted', Rcode.SERVFAIL);
      return out;
    }
  }

  close(): void {
    if (!this.#ended) this.#end('aborted', Rcode.NOERROR);
  }

  #count(out: Buffer): void {
    this.#messages++;
    this.#records += out.readUInt16BE(6);
    this.#bytes += out.length;
  }

  #end(result: TransferResult, rcode: number): void {
    this.#ended = true;
    // Release the snapshot (its owner lists) at once, not when the connection goes.
    this.#it?.return(undefined);
    this.#it = undefined;
    this.#pending = [];
    this.#onDone({ messages: this.#messages, records: this.#records, bytes: this.#bytes }, result, rcode);
  }

  /** The next full message, or undefined when every record was sent. */
  #message(): Buffer | undefined {
    for (;;) {
      const it = this.#it;
      while (it !== undefined && this.#pending.length < BATCH) {
        const r = it.next();
        if (r.done === true) {
          this.#it = undefined;
          break;
        }
        this.#pending.push(r.value);
      }
      const pending = this.#pending;
      if (pending.length === 0) return undefined;
      let out: Buffer;
      try {
        out = this.#write(pending);
      } catch (err) {
        // A record the writer refuses (a bug upstream of here, as in a query for it):
        // left out with a report, the rest of the zone still goes.
        const bad = pending.findIndex((rr) => !writable(() => this.#write([rr])));
        if (bad < 0) throw err;
        this.#onError(err, `transfer record ${pending[bad]!.name}`);
        if (bad === 0) {
          pending.shift();
          continue;
        }
        out = this.#write(pending.slice(0, bad));
      }
      let n = out.readUInt16BE(6);
      if (n === 0) {
        // One record larger than MESSAGE_SIZE (none of ours is near it): on its own, at
        // the largest size a TCP message has.
        out = this.#write([pending[0]!], 65535);
        n = out.readUInt16BE(6);
        if (n === 0) throw new Error(`record of ${pending[0]!.name} does not fit in a message`);
      }
      this.#pending = n === pending.length ? [] : pending.slice(n);
      // The writer marks a message that left records out as truncated; here the rest
      // follows in the next message (RFC 5936 §2.2.1: TC is not set in a transfer).
      out[2] = out[2]! & ~(Flag.TC >> 8);
      return out;
    }
  }

  #write(rrs: readonly RR[], size = MESSAGE_SIZE, rcode: number = Rcode.NOERROR): Buffer {
    return writeResponse(this.#req, this.#q, { rcode, authoritative: rcode === Rcode.NOERROR, answer: rrs, authority: [], additional: [] }, { maxSize: size, recursionAvailable: this.#ra });
  }
}

function writable(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}

/** SOA, records, SOA (RFC 5936 §2.2). */
function* all(snap: ZoneSnapshot): Generator<RR> {
  yield snap.soa;
  yield* snap.records();
  yield snap.soa;
}
