/**
 * NOTIFY (RFC 1996) to the secondaries in `transferNotify` when a cluster zone's serial
 * moves, so they transfer the new version at once instead of at the SOA refresh (2 h).
 *
 * - Debounced per zone: a change is announced `settleMs` after it (the rest of a burst
 *   of events joins it), and at most once per `debounceMs`: changes inside that window
 *   are announced together when it ends. A quiet cluster's change reaches the
 *   secondaries at once; a busy one costs each of them at most one transfer per zone per
 *   window (every NOTIFY leads to a full transfer: we keep no IXFR history).
 * - Over UDP from an ephemeral port: opcode NOTIFY, AA, the zone's SOA question, and the
 *   current SOA in the answer section as the hint RFC 1996 §3.7 allows.
 * - Retransmitted while no response comes (RFC 1996 §3.6): after `retryMs`, then
 *   doubling, at most `retries` times. A response with the same id and question from
 *   the target ends it (NOERROR: acknowledged; any other rcode: the secondary does not
 *   want it, and asking again would not change that). A newer NOTIFY for the same zone
 *   and target replaces an unanswered older one, so at most (zones × targets) are
 *   outstanding.
 * - Nothing here throws into its callers; failures are counted and reported.
 */
import dgram from 'node:dgram';
import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { Class, Flag, Rcode, Type } from '../dns/constants.js';
import type { RR } from '../dns/rr.js';
import { bytesToIP, ipToBytes, joinHostPort, unmapIPv4 } from '../net/ip.js';
import type { StoreProvider } from '../cluster/provider.js';

/** DNS opcode NOTIFY (RFC 1996 §3.1). */
export const OPCODE_NOTIFY = 4;
/** Longest wait between retransmissions (RFC 1996 §3.6's suggested interval). */
const MAX_RETRY_MS = 60_000;

export type NotifyResult = 'sent' | 'acked' | 'rejected' | 'failed';

export interface NotifyEvent {
  readonly zone: string;
  /** `HOST:PORT` of the secondary. */
  readonly target: string;
  readonly result: NotifyResult;
  readonly serial: number | undefined;
  /** Transmissions so far (1 for the first). */
  readonly attempt: number;
  /** The response's rcode (acked, rejected). */
  readonly rcode?: number;
}

export interface NotifyOptions {
  /** `HOST[:PORT]` (port 53 by default; IPv6 as `[ADDR]:PORT`), IP addresses. */
  readonly targets: readonly string[];
  /** The zone's current SOA, read when the NOTIFY is sent (undefined: send without one). */
  readonly soaOf: (zone: string) => RR | undefined;
  /** Least time between two NOTIFYs of one zone (ms). Default 1000. */
  readonly debounceMs?: number;
  /** Wait after a change before its NOTIFY, so a burst goes as one (ms). Default 100. */
  readonly settleMs?: number;
  /** First retransmission interval (ms), doubling after each. Default 2000. */
  readonly retryMs?: number;
  /** Retransmissions without a response before giving up. Default 5 (RFC 1996 §3.6). */
  readonly retries?: number;
  readonly onEvent?: ((e: NotifyEvent) => void) | undefined;
  readonly onError?: ((err: unknown, where: string) => void) | undefined;
}

interface Target {
  readonly host: string;
  readonly port: number;
  readonly key: string;
}

interface Outstanding {
  readonly zone: string;
  readonly target: Target;
  readonly id: number;
  readonly msg: Buffer;
  readonly serial: number | undefined;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
}

/** `HOST[:PORT]` / `[V6]:PORT` / bare address → host and port (53 by default). */
export function parseTarget(s: string): Target | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:]+):(\d{1,5})$/.exec(s);
  const host = m === null ? s : m[1]!;
  const port = m === null ? 53 : Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host, port, key: joinHostPort(host, port) };
}

export class Notifier {
  #targets: Target[] = [];
  readonly #soaOf: (zone: string) => RR | undefined;
  readonly #debounceMs: number;
  readonly #settleMs: number;
  /** When each zone was last announced (performance.now()). */
  readonly #lastSent = new Map<string, number>();
  readonly #retryMs: number;
  readonly #retries: number;
  readonly #onEvent: ((e: NotifyEvent) => void) | undefined;
  readonly #onError: (err: unknown, where: string) => void;
  /** Zones waiting out their debounce. */
  readonly #waiting = new Map<string, NodeJS.Timeout>();
  /** `zone|target` → the unanswered NOTIFY. */
  readonly #out = new Map<string, Outstanding>();
  /** id → outstanding, to match responses. */
  readonly #byId = new Map<number, Outstanding>();
  #udp4: dgram.Socket | undefined;
  #udp6: dgram.Socket | undefined;
  #closed = false;
  /** `zone|result` → count, for `clusterdns_notify_total`. */
  readonly #counts = new Map<string, { labels: { zone: string; result: string }; value: number }>();

  constructor(opts: NotifyOptions) {
    this.#soaOf = opts.soaOf;
    this.#debounceMs = opts.debounceMs ?? 1000;
    this.#settleMs = opts.settleMs ?? 100;
    this.#retryMs = opts.retryMs ?? 2000;
    this.#retries = opts.retries ?? 5;
    this.#onEvent = opts.onEvent;
    this.#onError = opts.onError ?? (() => {});
    this.setTargets(opts.targets);
  }

  /** New targets (configuration reload). Unanswered NOTIFYs to removed targets stop. */
  setTargets(targets: readonly string[]): void {
    const list: Target[] = [];
    for (const t of targets) {
      const p = parseTarget(t);
      if (p !== undefined && !list.some((x) => x.key === p.key)) list.push(p);
    }
    this.#targets = list;
    const keep = new Set(list.map((t) => t.key));
    for (const o of [...this.#out.values()]) if (!keep.has(o.target.key)) this.#drop(o);
  }

  get targets(): readonly string[] {
    return this.#targets.map((t) => t.key);
  }

  /** Sends so far by zone and result (a counter read on scrape). */
  counts(): { labels: { zone: string; result: string }; value: number }[] {
    return [...this.#counts.values()];
  }

  /** Zone `zone` changed: notify every target after settleMs, at most once per debounceMs. */
  changed(zone: string): void {
    if (this.#closed || this.#targets.length === 0 || this.#waiting.has(zone)) return;
    const last = this.#lastSent.get(zone);
    const wait = Math.max(this.#settleMs, last === undefined ? 0 : last + this.#debounceMs - performance.now());
    const t = setTimeout(() => {
      this.#waiting.delete(zone);
      this.notifyNow(zone);
    }, wait);
    t.unref();
    this.#waiting.set(zone, t);
  }

  /** Notify every target about `zone` now (no debounce). */
  notifyNow(zone: string): void {
    if (this.#closed) return;
    this.#lastSent.set(zone, performance.now());
    let soa: RR | undefined;
    try {
      soa = this.#soaOf(zone);
    } catch (err) {
      this.#onError(err, 'notify-soa');
    }
    for (const target of this.#targets) {
      const prev = this.#out.get(`${zone}|${target.key}`);
      if (prev !== undefined) this.#drop(prev);
      const id = this.#freeId();
      let msg: Buffer;
      try {
        msg = notifyMessage(id, zone, soa);
      } catch (err) {
        this.#onError(err, 'notify-message');
        return;
      }
      const o: Outstanding = { zone, target, id, msg, serial: soa?.type === Type.SOA ? soa.soa.serial : undefined, attempt: 0, timer: undefined };
      this.#out.set(`${zone}|${target.key}`, o);
      this.#byId.set(id, o);
      this.#transmit(o);
    }
  }

  /** Stop: pending debounces, retransmissions and the sockets. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#waiting.values()) clearTimeout(t);
    this.#waiting.clear();
    for (const o of [...this.#out.values()]) this.#drop(o);
    const socks = [this.#udp4, this.#udp6].filter((s): s is dgram.Socket => s !== undefined);
    this.#udp4 = this.#udp6 = undefined;
    await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  /** Unanswered NOTIFYs (tests, and a bound check: at most zones × targets). */
  get outstanding(): number {
    return this.#out.size;
  }

  #freeId(): number {
    for (;;) {
      const id = randomInt(0, 0x10000);
      if (!this.#byId.has(id)) return id;
    }
  }

  #transmit(o: Outstanding): void {
    o.attempt++;
    try {
      this.#socket(isIPv6(o.target.host)).send(o.msg, o.target.port, o.target.host);
    } catch (err) {
      this.#onError(err, 'notify-send');
    }
    this.#event(o, 'sent');
    // RFC 1996 §3.6 suggests 60 s between retransmissions: the interval grows to it.
    const wait = Math.min(this.#retryMs * 2 ** (o.attempt - 1), MAX_RETRY_MS);
    if (o.attempt > this.#retries) {
      // The last transmission gets one more interval to be answered.
      o.timer = setTimeout(() => {
        this.#event(o, 'failed');
        this.#drop(o);
      }, wait);
    } else {
      o.timer = setTimeout(() => this.#transmit(o), wait);
    }
    o.timer.unref();
  }

  #drop(o: Outstanding): void {
    if (o.timer !== undefined) clearTimeout(o.timer);
    o.timer = undefined;
    if (this.#byId.get(o.id) === o) this.#byId.delete(o.id);
    const key = `${o.zone}|${o.target.key}`;
    if (this.#out.get(key) === o) this.#out.delete(key);
  }

  #socket(v6: boolean): dgram.Socket {
    const have = v6 ? this.#udp6 : this.#udp4;
    if (have !== undefined) return have;
    const s = dgram.createSocket(v6 ? 'udp6' : 'udp4');
    s.on('message', (msg, rinfo) => this.#response(msg, rinfo));
    s.on('error', (err) => this.#onError(err, 'notify-socket'));
    s.bind(0);
    s.unref();
    if (v6) this.#udp6 = s;
    else this.#udp4 = s;
    return s;
  }

  /** A response: same id, from the target, QR and opcode NOTIFY, same zone (RFC 1996 §3.6). */
  #response(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    try {
      if (msg.length < 12) return;
      const o = this.#byId.get(msg.readUInt16BE(0));
      if (o === undefined) return;
      const flags = msg.readUInt16BE(2);
      if ((flags & Flag.QR) === 0 || ((flags >> 11) & 0xf) !== OPCODE_NOTIFY) return;
      if (rinfo.port !== o.target.port || !sameAddress(rinfo.address, o.target.host)) return;
      // The question, when echoed, must be ours (a response may leave it out on error).
      if (msg.readUInt16BE(4) > 0 && !sameQuestion(msg, o.msg)) return;
      const rcode = flags & 0xf;
      this.#event(o, rcode === Rcode.NOERROR ? 'acked' : 'rejected', rcode);
      this.#drop(o);
    } catch (err) {
      this.#onError(err, 'notify-response');
    }
  }

  #event(o: Outstanding, result: NotifyResult, rcode?: number): void {
    const key = `${o.zone}|${result}`;
    const c = this.#counts.get(key);
    if (c !== undefined) c.value++;
    else this.#counts.set(key, { labels: { zone: o.zone, result }, value: 1 });
    try {
      this.#onEvent?.({ zone: o.zone, target: o.target.key, result, serial: o.serial, attempt: o.attempt, ...(rcode !== undefined ? { rcode } : {}) });
    } catch (err) {
      this.#onError(err, 'notify-event');
    }
  }
}

/** Whether two address texts name one address (IPv6 spellings differ; a v4 peer may come mapped). */
function sameAddress(a: string, b: string): boolean {
  const canon = (s: string): string => {
    const bytes = ipToBytes(unmapIPv4(s));
    return bytes === undefined ? s.toLowerCase() : bytesToIP(bytes);
  };
  return canon(a) === canon(b);
}

/** Whether the response's question (after its header) is the one we sent, letter case aside. */
function sameQuestion(resp: Buffer, sent: Buffer): boolean {
  // Our question is uncompressed labels plus type and class: compare those bytes.
  let end = 12;
  while (sent[end]! !== 0) end += sent[end]! + 1;
  end += 5;
  if (resp.length < end) return false;
  for (let i = 12; i < end; i++) {
    const a = resp[i]!;
    const b = sent[i]!;
    if (a !== b && (a | 0x20) !== (b | 0x20)) return false;
  }
  return true;
}

/** The NOTIFY message (RFC 1996 §3.7): question `<zone> SOA IN`, the SOA as a hint. */
export function notifyMessage(id: number, zone: string, soa: RR | undefined): Buffer {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE((OPCODE_NOTIFY << 11) | Flag.AA, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(soa?.type === Type.SOA ? 1 : 0, 6);
  parts.push(header, wireName(zone), u16(Type.SOA), u16(Class.IN));
  if (soa?.type === Type.SOA) {
    const s = soa.soa;
    const rdata = Buffer.concat([wireName(s.mname), wireName(s.rname), u32(s.serial), u32(s.refresh), u32(s.retry), u32(s.expire), u32(s.minimum)]);
    // Owner: a pointer to the question name at offset 12 (RFC 1035 §4.1.4).
    parts.push(u16(0xc00c), u16(Type.SOA), u16(Class.IN), u32(soa.ttl), u16(rdata.length), rdata);
  }
  return Buffer.concat(parts);
}

function wireName(name: string): Buffer {
  const out: Buffer[] = [];
  if (name !== '') {
    for (const label of name.split('.')) {
      const b = Buffer.from(label, 'latin1');
      if (b.length === 0 || b.length > 63) throw new Error(`invalid name: ${name}`);
      out.push(Buffer.from([b.length]), b);
    }
  }
  out.push(Buffer.from([0]));
  return Buffer.concat(out);
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/**
 * Call `changed(zone)` after every change of every zone's store, following zones as they
 * come and go (the `--workers` primary, which holds the stores but no ClusterZone).
 * Returns the unsubscribe function.
 */
export function onStoreChanges(provider: StoreProvider, changed: (zone: string) => void): () => void {
  const subs = new Map<string, () => void>();
  const sync = (): void => {
    const zones = new Set(provider.zones());
    for (const [z, off] of subs) {
      if (!zones.has(z)) {
        off();
        subs.delete(z);
      }
    }
    for (const z of zones) {
      if (subs.has(z)) continue;
      subs.set(z, provider.storeFor(z).onChange(() => changed(z)));
      changed(z);
    }
  };
  const offZones = provider.onZonesChanged(sync);
  sync();
  return () => {
    offZones();
    for (const off of subs.values()) off();
    subs.clear();
  };
}
