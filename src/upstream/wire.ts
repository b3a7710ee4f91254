/**
 * Wire work for forwarding, done on the bytes without a full decode:
 *
 * - build the query we send upstream: a fresh random ID (RFC 5452 §9.2), RD set, the
 *   client's question lowercased, and our own OPT (RFC 6891 §6.1.2, 1232 bytes);
 * - check an upstream reply: QR, our ID and our question (RFC 5452 §4.4: anything else
 *   is ignored, not trusted), every record readable within bounds;
 * - scan it once: where each record starts and ends and where its TTL sits (so cached
 *   copies can be served with TTLs counted down by patching, RFC 1035 §3.2.1), the
 *   smallest TTL, the SOA of a negative answer (RFC 2308 §5), the upstream OPT;
 * - prepare a reply for the cache (`prepare`): the TTL offsets and record ends as a flat
 *   number array and the header facts, so a cached answer is served (`renderEntry`) with
 *   one copy and patches, no per-record objects or closures;
 * - render it for the client: the client's ID and question bytes (its letter case),
 *   flags per RFC 1035 §4.1.1 / RFC 6840 §5.8, the upstream records cut at whole records
 *   to the client's size with TC when an answer or authority record was left out
 *   (RFC 2181 §9), and an OPT only when the client sent one (RFC 6891 §7).
 *
 * Compression pointers only point backwards, and the client's question has the same
 * length as ours (same name, other letter case), so records copied in order keep valid
 * pointers, and a prefix of the records is always a valid message.
 */
import { randomFillSync } from 'node:crypto';
import { Flag, Rcode, Type } from '../dns/constants.js';
import type { Query } from '../dns/query.js';
import { EDNS_SIZE } from '../dns/constants.js';

/** One resource record of a scanned message (OPT excluded). */
export interface RecordSpan {
  readonly start: number;
  readonly end: number;
  /** Offset of the 32-bit TTL field. */
  readonly ttlAt: number;
  readonly type: number;
  /** 0 answer, 1 authority, 2 additional. */
  readonly section: 0 | 1 | 2;
  readonly ttl: number;
}

export interface UpstreamOpt {
  readonly udpSize: number;
  /** Upper 8 bits of the extended rcode (RFC 6891 §6.1.3). */
  readonly extRcode: number;
  readonly dnssecOk: boolean;
}

/** What the forwarder needs to know about a reply, found in one pass. */
export interface Scan {
  readonly id: number;
  readonly flags: number;
  /** Full rcode: header low 4 bits plus the OPT's upper bits. */
  readonly rcode: number;
  readonly questionEnd: number;
  /**
   * Records in message order, up to the OPT record. Records after an OPT (rare: servers
   * put it last) are left out: they could compress against the OPT's position, and
   * additional records may always be omitted (RFC 2181 §9).
   */
  readonly records: readonly RecordSpan[];
  /** Count of answer-section records. */
  readonly answers: number;
  readonly opt: UpstreamOpt | undefined;
  /** Smallest TTL of the records, an SOA counting min(TTL, MINIMUM); undefined with no record. */
  readonly minTtl: number | undefined;
  /** min(TTL, MINIMUM) of the first SOA in the authority section (RFC 2308 §5). */
  readonly soaTtl: number | undefined;
}

const OPT_SIZE = 11;
const MAX_MESSAGE = 65535;

// Random IDs from a pooled buffer: one getrandom() per 2048 IDs.
const idPool = Buffer.allocUnsafe(4096);
let idPos = idPool.length;

/** A fresh unpredictable 16-bit message ID (RFC 5452 §9.2). */
export function randomId(): number {
  if (idPos >= idPool.length) {
    randomFillSync(idPool);
    idPos = 0;
  }
  const v = idPool.readUInt16BE(idPos);
  idPos += 2;
  return v;
}

/** Random lowercase hex label of `n` characters (loop probe names). */
export function randomLabel(n = 10): string {
  const b = Buffer.allocUnsafe(Math.ceil(n / 2));
  randomFillSync(b);
  return b.toString('hex').slice(0, n);
}

/** The client's question (name, type, class) as wire bytes with ASCII letters lowercased. */
export function lowerQuestion(req: Uint8Array, q: Query): Buffer {
  const n = q.questionEnd - 12;
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) {
    const c = req[12 + i]!;
    out[i] = i < n - 4 && c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  return out;
}

/**
 * Question bytes for a dotted name (no trailing dot, '' for the root), or undefined when
 * the name cannot be written (empty or long label, over 255 bytes, or text escapes).
 */
export function questionFor(name: string, qtype: number, qclass = 1): Buffer | undefined {
  const labels = name === '' ? [] : name.toLowerCase().split('.');
  let len = 1 + 4;
  for (const l of labels) {
    if (l.length === 0 || l.length > 63 || l.includes('\\') || !/^[\x21-\x7e]+$/.test(l)) return undefined;
    len += 1 + l.length;
  }
  if (len - 4 > 255) return undefined;
  const out = Buffer.allocUnsafe(len);
  let pos = 0;
  for (const l of labels) {
    out[pos++] = l.length;
    out.write(l, pos, 'latin1');
    pos += l.length;
  }
  out[pos++] = 0;
  out.writeUInt16BE(qtype, pos);
  out.writeUInt16BE(qclass, pos + 2);
  return out;
}

/**
 * The query we send upstream. RD is set (our upstreams are recursive resolvers, as in
 * CoreDNS `forward`); CD and DO follow the client. Our OPT advertises 1232 bytes (DNS
 * flag day 2020) whatever the client said: the client's size only shapes what we send
 * back to it.
 */
export function buildQuery(id: number, question: Uint8Array, opts: { dnssecOk?: boolean; checkingDisabled?: boolean } = {}): Buffer {
  const out = Buffer.allocUnsafe(12 + question.length + OPT_SIZE);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(Flag.RD | (opts.checkingDisabled ? Flag.CD : 0), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(1, 10);
  out.set(question, 12);
  let p = 12 + question.length;
  out[p++] = 0;
  out.writeUInt16BE(Type.OPT, p);
  out.writeUInt16BE(EDNS_SIZE, p + 2);
  out.writeUInt32BE(opts.dnssecOk ? 0x8000 : 0, p + 4);
  out.writeUInt16BE(0, p + 8);
  return out;
}

/** Offset after a possibly compressed name, or -1 (out of bounds, bad label, forward pointer). */
function skipName(buf: Uint8Array, pos: number): number {
  for (let guard = 0; guard < 128; guard++) {
    if (pos >= buf.length) return -1;
    const len = buf[pos]!;
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) {
      if (pos + 2 > buf.length) return -1;
      // A pointer must point backwards (RFC 1035 §4.1.4 writers only do that).
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      return target < pos ? pos + 2 : -1;
    }
    if (len > 63) return -1;
    pos += 1 + len;
  }
  return -1;
}

/**
 * Check and scan an upstream reply to `id`/`question`. Returns undefined for anything
 * that is not that reply: too short, QR clear, other ID, other question (compared
 * case-insensitively: some servers echo with 0x20 case changes), unreadable records.
 * A reply without a question is accepted only as an error rcode (FORMERR/SERVFAIL/
 * NOTIMP/REFUSED replies of servers that drop the question).
 */
export function checkReply(buf: Uint8Array, id: number, question: Uint8Array): Scan | undefined {
  if (buf.length < 12) return undefined;
  if (((buf[0]! << 8) | buf[1]!) !== id) return undefined;
  const flags = (buf[2]! << 8) | buf[3]!;
  if ((flags & Flag.QR) === 0 || ((flags >> 11) & 0xf) !== 0) return undefined;
  const qd = (buf[4]! << 8) | buf[5]!;
  if (qd === 0) {
    const rc = flags & 0xf;
    if (rc === Rcode.NOERROR || rc === Rcode.NXDOMAIN) return undefined;
    const s = scanFrom(buf, flags, 12);
    // Only the rcode (and OPT) matter: records here could not be placed after the
    // client's question without breaking their compression pointers.
    return s === undefined ? undefined : { ...s, records: [], answers: 0, minTtl: undefined, soaTtl: undefined };
  }
  if (qd !== 1 || buf.length < 12 + question.length) return undefined;
  for (let i = 0; i < question.length; i++) {
    let c = buf[12 + i]!;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== question[i]) return undefined;
  }
  return scanFrom(buf, flags, 12 + question.length);
}

function scanFrom(buf: Uint8Array, flags: number, questionEnd: number): Scan | undefined {
  const an = (buf[6]! << 8) | buf[7]!;
  const ns = (buf[8]! << 8) | buf[9]!;
  const ar = (buf[10]! << 8) | buf[11]!;
  const total = an + ns + ar;
  // Sized once (a growing array would reserve room for 17 at the first push), for no more
  // records than the bytes can hold (11 bytes at least each), whatever the counts claim.
  const records = new Array<RecordSpan>(Math.min(total, Math.floor((buf.length - questionEnd) / 11)));
  let n = 0;
  let opt: UpstreamOpt | undefined;
  let minTtl: number | undefined;
  let soaTtl: number | undefined;
  let pos = questionEnd;
  for (let i = 0; i < total; i++) {
    const start = pos;
    pos = skipName(buf, pos);
    if (pos < 0 || pos + 10 > buf.length) return undefined;
    const type = (buf[pos]! << 8) | buf[pos + 1]!;
    const ttlAt = pos + 4;
    const ttl = ((buf[ttlAt]! << 24) | (buf[ttlAt + 1]! << 16) | (buf[ttlAt + 2]! << 8) | buf[ttlAt + 3]!) >>> 0;
    const rdlen = (buf[pos + 8]! << 8) | buf[pos + 9]!;
    const end = pos + 10 + rdlen;
    if (end > buf.length) return undefined;
    pos = end;
    const section: 0 | 1 | 2 = i < an ? 0 : i < an + ns ? 1 : 2;
    if (type === Type.OPT) {
      if (section !== 2 || opt !== undefined) return undefined;
      const klass = (buf[ttlAt - 2]! << 8) | buf[ttlAt - 1]!;
      opt = { udpSize: klass, extRcode: buf[ttlAt]!, dnssecOk: (buf[ttlAt + 2]! & 0x80) !== 0 };
      continue;
    }
    if (opt !== undefined) continue; // after the OPT: dropped (see Scan.records)
    // RFC 2181 §8: a TTL with the top bit set is read as zero.
    const t = ttl > 0x7fffffff ? 0 : ttl;
    let eff = t;
    if (type === Type.SOA && rdlen >= 22) {
      const m = end - 4;
      const minimum = ((buf[m]! << 24) | (buf[m + 1]! << 16) | (buf[m + 2]! << 8) | buf[m + 3]!) >>> 0;
      eff = Math.min(t, minimum > 0x7fffffff ? 0 : minimum);
      if (section === 1 && soaTtl === undefined) soaTtl = eff;
    }
    minTtl = minTtl === undefined ? eff : Math.min(minTtl, eff);
    records[n++] = { start, end, ttlAt, type, section, ttl: t };
  }
  records.length = n;
  const rcode = ((opt?.extRcode ?? 0) << 4) | (flags & 0xf);
  return { id: (buf[0]! << 8) | buf[1]!, flags, rcode, questionEnd, records, answers: Math.min(an, records.length), opt, minTtl, soaTtl };
}

export interface RenderOptions {
  /** Largest reply the client takes: its UDP budget, or 65535 over TCP. */
  readonly maxSize: number;
  /** New TTL for a record from its upstream TTL; undefined keeps the bytes as they are. */
  readonly ttl?: ((upstreamTtl: number) => number) | undefined;
}

/**
 * The reply for the client from a scanned upstream reply `msg` (whose question has
 * the client question's length). Never throws for a scan produced by `checkReply`.
 */
export function renderReply(msg: Uint8Array, scan: Scan, req: Uint8Array, q: Query, opts: RenderOptions): Buffer {
  const clientQuestion = req.subarray(12, q.questionEnd);
  const optSize = q.edns !== undefined ? OPT_SIZE : 0;
  const limit = Math.min(opts.maxSize, MAX_MESSAGE) - optSize;
  // A reply without a question (error rcodes only) gets the client's question.
  const shift = 12 + clientQuestion.length - scan.questionEnd;
  const recs = scan.records;
  let kept = 0;
  let tc = (scan.flags & Flag.TC) !== 0;
  while (kept < recs.length && recs[kept]!.end + shift <= limit) kept++;
  if (kept < recs.length && recs[kept]!.section < 2) tc = true;
  const bodyEnd = kept > 0 ? recs[kept - 1]!.end : scan.questionEnd;
  const out = Buffer.allocUnsafe(bodyEnd + shift + optSize);
  // Header.
  out.writeUInt16BE(q.id, 0);
  let rcode = scan.rcode;
  if (q.edns === undefined && rcode > 0xf) rcode = Rcode.SERVFAIL; // no way to say it without OPT
  const wantsAd = (q.flags & Flag.AD) !== 0 || q.edns?.dnssecOk === true;
  let flags = Flag.QR | Flag.RA | (q.flags & (0x7800 | Flag.RD | Flag.CD)) | (scan.flags & Flag.AA) | (rcode & 0xf);
  if (wantsAd) flags |= scan.flags & Flag.AD;
  if (tc) flags |= Flag.TC;
  out.writeUInt16BE(flags, 2);
  const counts = [0, 0, 0];
  for (let i = 0; i < kept; i++) counts[recs[i]!.section]!++;
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(counts[0]!, 6);
  out.writeUInt16BE(counts[1]!, 8);
  out.writeUInt16BE(counts[2]! + (optSize > 0 ? 1 : 0), 10);
  out.set(clientQuestion, 12);
  if (bodyEnd > scan.questionEnd) out.set(msg.subarray(scan.questionEnd, bodyEnd), scan.questionEnd + shift);
  const ttl = opts.ttl;
  if (ttl !== undefined) {
    for (let i = 0; i < kept; i++) {
      const r = recs[i]!;
      out.writeUInt32BE(Math.max(0, Math.floor(ttl(r.ttl))) >>> 0, r.ttlAt + shift);
    }
  }
  if (optSize > 0) {
    // Our OPT (RFC 6891 §6.1.2), like writer.ts: 1232, extended rcode, DO only when the
    // client asked and the upstream answered with it (RFC 3225 §3).
    let p = bodyEnd + shift;
    out[p++] = 0;
    out.writeUInt16BE(Type.OPT, p);
    out.writeUInt16BE(EDNS_SIZE, p + 2);
    out[p + 4] = (rcode >> 4) & 0xff;
    out[p + 5] = 0;
    out.writeUInt16BE(q.edns?.dnssecOk === true && scan.opt?.dnssecOk === true ? 0x8000 : 0, p + 6);
    out.writeUInt16BE(0, p + 8);
  }
  return out;
}

/**
 * A name read from `buf` at `pos` (following pointers) as lowercase dotted text, or
 * undefined when malformed or when a label holds bytes our text form cannot carry
 * ('.', '\\', spaces, controls, non-ASCII): such names are skipped by `lookup`.
 */
export function readName(buf: Uint8Array, pos: number): string | undefined {
  let name = '';
  for (let guard = 0; guard < 128; guard++) {
    if (pos >= buf.length) return undefined;
    const len = buf[pos]!;
    if (len === 0) return name;
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) return undefined;
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (target >= pos) return undefined;
      pos = target;
      continue;
    }
    if (len > 63 || pos + 1 + len > buf.length) return undefined;
    let label = '';
    for (let i = pos + 1; i <= pos + len; i++) {
      let c = buf[i]!;
      if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) return undefined;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      label += String.fromCharCode(c);
    }
    name = name.length === 0 ? label : `${name}.${label}`;
    if (name.length > 253) return undefined;
    pos += 1 + len;
  }
  return undefined;
}

/**
 * A reply ready to be served many times (the cache's entries), in as few objects as
 * possible (each entry lives long enough to reach V8's old generation, and a stream of
 * unique names churns them):
 *
 * - `wire`: one latin1 string (on V8's heap, which its GC compacts: no malloc'd backing
 *   store per entry to fragment the C heap) holding the message as received up to the end
 *   of its kept records (`bodyEnd`), then per record four bytes: the offset of its TTL
 *   and its end, big-endian 16 bits each (see `spanTtlAt`, `spanEnd`);
 * - the question's end, the counts of answer and authority records (the rest are
 *   additional; OPT and what follows it are left out, see Scan.records), and the header
 *   facts.
 */
export interface Prepared {
  readonly wire: string;
  readonly bodyEnd: number;
  readonly questionEnd: number;
  readonly an: number;
  readonly ns: number;
  /** The upstream header flags (AA, AD matter). */
  readonly flags: number;
  /** Full rcode (≤ 15 for anything cached). */
  readonly rcode: number;
  /** The upstream OPT had DO. */
  readonly dnssecOk: boolean;
}

/** The `wire` string of a checked reply (see Prepared). */
export function preparedWire(msg: Buffer, scan: Scan): string {
  const recs = scan.records;
  const bodyEnd = recs.length > 0 ? recs[recs.length - 1]!.end : scan.questionEnd;
  // Built in a scratch buffer and decoded once: a flat string (a concatenation would
  // leave a rope of three objects behind).
  const tmp = Buffer.allocUnsafe(bodyEnd + 4 * recs.length);
  msg.copy(tmp, 0, 0, bodyEnd);
  let k = bodyEnd;
  for (const r of recs) {
    tmp[k++] = r.ttlAt >> 8;
    tmp[k++] = r.ttlAt & 0xff;
    tmp[k++] = r.end >> 8;
    tmp[k++] = r.end & 0xff;
  }
  return tmp.toString('latin1');
}

/** Counts of answer and authority records among the kept ones. */
export function sectionCounts(scan: Scan): { an: number; ns: number } {
  let an = 0;
  let ns = 0;
  for (const r of scan.records) {
    if (r.section === 0) an++;
    else if (r.section === 1) ns++;
  }
  return { an, ns };
}

/** Records in a Prepared reply. */
export function spanCount(p: Prepared): number {
  return (p.wire.length - p.bodyEnd) >> 2;
}

function spanTtlAt(wire: string, bodyEnd: number, i: number): number {
  const k = bodyEnd + 4 * i;
  return (wire.charCodeAt(k) << 8) | wire.charCodeAt(k + 1);
}

function spanEnd(wire: string, bodyEnd: number, i: number): number {
  const k = bodyEnd + 4 * i + 2;
  return (wire.charCodeAt(k) << 8) | wire.charCodeAt(k + 1);
}

const F_QR = Flag.QR;
const F_RA = Flag.RA;
const F_AA = Flag.AA;
const F_AD = Flag.AD;
const F_TC = Flag.TC;
const F_CLIENT = 0x7800 | Flag.RD | Flag.CD;

/**
 * The reply for the client from a Prepared reply whose question is the client's (same
 * name, any letter case): as `renderReply`, with every record's TTL set to `ttl` (or the
 * bytes kept as they are when `ttl` < 0). Cut at whole records to `maxSize`, with TC
 * when an answer or authority record is left out.
 */
export function renderEntry(p: Prepared, req: Uint8Array, q: Query, maxSize: number, ttl: number): Buffer {
  const qEnd = q.questionEnd;
  if (qEnd !== p.questionEnd || p.rcode > 0xf) return renderReply(bytesOf(p), scanOf(p), req, q, { maxSize, ttl: ttl < 0 ? undefined : () => ttl });
  const edns = q.edns;
  const optSize = edns !== undefined ? OPT_SIZE : 0;
  const limit = (maxSize < MAX_MESSAGE ? maxSize : MAX_MESSAGE) - optSize;
  const wire = p.wire;
  const bodyEnd = p.bodyEnd;
  let end = bodyEnd;
  let an = p.an;
  let ns = p.ns;
  let n = (wire.length - bodyEnd) >> 2;
  let ar = n - an - ns;
  let tc = false;
  if (end > limit) {
    let kept = 0;
    while (kept < n && spanEnd(wire, bodyEnd, kept) <= limit) kept++;
    tc = kept < an + ns;
    if (kept < an) an = kept;
    if (kept - an < ns) ns = kept - an;
    ar = kept - an - ns;
    n = kept;
    end = kept > 0 ? spanEnd(wire, bodyEnd, kept - 1) : p.questionEnd;
  }
  const out = Buffer.allocUnsafe(end + optSize);
  // The records are copied as they are; header and question are written over.
  out.write(wire, 0, end, 'latin1');
  for (let i = 12; i < qEnd; i++) out[i] = req[i]!;
  out[0] = req[0]!;
  out[1] = req[1]!;
  const rcode = p.rcode;
  let flags = F_QR | F_RA | (q.flags & F_CLIENT) | (p.flags & F_AA) | (rcode & 0xf);
  if ((q.flags & F_AD) !== 0 || edns?.dnssecOk === true) flags |= p.flags & F_AD;
  if (tc) flags |= F_TC;
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  out[4] = 0;
  out[5] = 1;
  out[6] = an >> 8;
  out[7] = an & 0xff;
  out[8] = ns >> 8;
  out[9] = ns & 0xff;
  const arc = ar + (optSize > 0 ? 1 : 0);
  out[10] = arc >> 8;
  out[11] = arc & 0xff;
  if (ttl >= 0) {
    const t0 = (ttl >>> 24) & 0xff;
    const t1 = (ttl >>> 16) & 0xff;
    const t2 = (ttl >>> 8) & 0xff;
    const t3 = ttl & 0xff;
    for (let i = 0; i < n; i++) {
      const at = spanTtlAt(wire, bodyEnd, i);
      out[at] = t0;
      out[at + 1] = t1;
      out[at + 2] = t2;
      out[at + 3] = t3;
    }
  }
  if (optSize > 0) {
    // Our OPT, as renderReply writes it.
    const o = end;
    out[o] = 0;
    out[o + 1] = 0;
    out[o + 2] = 41; // OPT
    out[o + 3] = EDNS_SIZE >> 8;
    out[o + 4] = EDNS_SIZE & 0xff;
    out[o + 5] = (rcode >> 4) & 0xff;
    out[o + 6] = 0;
    out[o + 7] = edns!.dnssecOk && p.dnssecOk ? 0x80 : 0;
    out[o + 8] = 0;
    out[o + 9] = 0;
    out[o + 10] = 0;
  }
  return out;
}

/**
 * The message of a Prepared reply as a buffer (the rare paths that need it): its kept
 * records, the header counting just those.
 */
export function bytesOf(p: Prepared): Buffer {
  const b = Buffer.from(p.wire.slice(0, p.bodyEnd), 'latin1');
  b.writeUInt16BE(p.an, 6);
  b.writeUInt16BE(p.ns, 8);
  b.writeUInt16BE(spanCount(p) - p.an - p.ns, 10);
  return b;
}

/** A Scan of a Prepared reply's message (the rare paths that need record types). */
export function scanOf(p: Prepared): Scan {
  const msg = bytesOf(p);
  return scanFrom(msg, (msg[2]! << 8) | msg[3]!, p.questionEnd)!;
}
