/**
 * Response writer: header, the query's question copied verbatim, three record
 * sections with name compression (RFC 1035 §4.1.4), an OPT record when the query had
 * one (RFC 6891 §7), and a size budget.
 *
 * Budget rules (RFC 2181 §9, RFC 1035 §4.2.1): records that do not fit are left out,
 * whole. Leaving out answer or authority records sets TC; leaving out additional
 * records does not. Space for the OPT record is always kept.
 *
 * The question is copied from the query, and every name written later compresses
 * against it, so owner names come out in the query's letter case (RFC 4343 §4.1).
 */
import { Flag, Type } from './constants.js';
import type { Query } from './query.js';
import type { RR } from './rr.js';
import { ipToBytes } from '../net/ip.js';

export interface Answer {
  readonly rcode: number;
  readonly authoritative: boolean;
  readonly answer: readonly RR[];
  readonly authority: readonly RR[];
  readonly additional: readonly RR[];
}

export interface WriteOptions {
  /** Largest message allowed: the UDP budget, or 65535 over TCP. */
  readonly maxSize: number;
  /** Set RA (we forward for the client). */
  readonly recursionAvailable: boolean;
  /** Told whether every record made it into the message (nothing cut for the budget). */
  readonly complete?: (complete: boolean) => void;
}

const MAX_MESSAGE = 65535;
const OPT_SIZE = 11;

/**
 * One scratch buffer for every message: writing is synchronous, so it is never shared
 * between two writes, and each reply is copied out at its exact size (a reply must not
 * pin a 64 KiB buffer while it waits in a TCP send queue).
 */
const SCRATCH = Buffer.allocUnsafe(65535);

class Writer {
  readonly buf: Buffer;
  readonly limit: number;
  pos = 0;
  /** Lowercase name suffix → offset where it was written (< 0x4000). */
  readonly names = new Map<string, number>();
  added: string[] = [];

  constructor(size: number) {
    this.buf = SCRATCH;
    this.limit = size;
  }

  u8(v: number): void {
    this.need(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.need(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
  }

  u32(v: number): void {
    this.need(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
  }

  bytes(b: Uint8Array): void {
    this.need(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Dotted quad straight into the buffer (the text was validated when the record was built). */
  ipv4(ip: string): void {
    this.need(4);
    let v = 0;
    let k = this.pos;
    for (let i = 0; i < ip.length; i++) {
      const c = ip.charCodeAt(i);
      if (c === 46) {
        this.buf[k++] = v;
        v = 0;
      } else v = v * 10 + (c - 48);
    }
    this.buf[k] = v;
    this.pos += 4;
  }

  need(n: number): void {
    if (this.pos + n > this.limit) throw new Overflow();
  }

  /** Write a name, compressing any suffix already in the message. */
  name(name: string): void {
    let rest = name;
    let labels = 0;
    while (rest.length > 0) {
      const ptr = this.names.get(rest);
      if (ptr !== undefined) {
        this.u16(0xc000 | ptr);
        return;
      }
      if (this.pos < 0x4000) {
        this.names.set(rest, this.pos);
        this.added.push(rest);
      }
      const dot = rest.indexOf('.');
      const label = dot < 0 ? rest : rest.slice(0, dot);
      const len = Buffer.byteLength(label, 'latin1');
      if (len === 0 || len > 63 || ++labels > 127) throw new Error(`invalid name for the wire: ${name}`);
      this.u8(len);
      this.need(len);
      this.buf.write(label, this.pos, 'latin1');
      this.pos += len;
      rest = dot < 0 ? '' : rest.slice(dot + 1);
    }
    this.u8(0);
  }

  rr(rr: RR): void {
    this.name(rr.name);
    this.u16(rr.type);
    this.u16(1); // class IN
    this.u32(rr.ttl);
    const lenAt = this.pos;
    this.u16(0);
    const start = this.pos;
    switch (rr.type) {
      case Type.A:
        this.ipv4(rr.ip);
        break;
      case Type.AAAA:
        this.bytes(ipToBytes(rr.ip)!);
        break;
      case Type.CNAME:
      case Type.PTR:
      case Type.NS:
        this.name(rr.target);
        break;
      case Type.SOA:
        this.name(rr.soa.mname);
        this.name(rr.soa.rname);
        this.u32(rr.soa.serial);
        this.u32(rr.soa.refresh);
        this.u32(rr.soa.retry);
        this.u32(rr.soa.expire);
        this.u32(rr.soa.minimum);
        break;
      case Type.SRV:
        this.u16(rr.srv.priority);
        this.u16(rr.srv.weight);
        this.u16(rr.srv.port);
        // RFC 2782: the target "MUST NOT" be compressed... by senders that expect old
        // readers; RFC 3597 §4 lists SRV as not compressible. Write it in full.
        this.nameUncompressed(rr.srv.target);
        break;
      case Type.TXT:
        for (const s of rr.txt) {
          const b = Buffer.from(s, 'utf8');
          if (b.length > 255) throw new Error('TXT string longer than 255 bytes');
          this.u8(b.length);
          this.bytes(b);
        }
        break;
    }
    this.buf.writeUInt16BE(this.pos - start, lenAt);
  }

  nameUncompressed(name: string): void {
    if (name.length > 0) {
      for (const label of name.split('.')) {
        const len = Buffer.byteLength(label, 'latin1');
        if (len === 0 || len > 63) throw new Error(`invalid name for the wire: ${name}`);
        this.u8(len);
        this.need(len);
        this.buf.write(label, this.pos, 'latin1');
        this.pos += len;
      }
    }
    this.u8(0);
  }

  mark(): number {
    this.added = [];
    return this.pos;
  }

  rollback(pos: number): void {
    this.pos = pos;
    for (const n of this.added) this.names.delete(n);
    this.added = [];
  }
}

class Overflow extends Error {
  constructor() {
    super('message budget exceeded');
  }
}

/**
 * Encode the response to `query` (whose wire bytes are `req`). Throws only on a
 * record that cannot be represented (a bug upstream of here): callers answer SERVFAIL.
 */
export function writeResponse(req: Uint8Array, query: Query, ans: Answer, opts: WriteOptions): Buffer {
  const limit = Math.min(opts.maxSize, MAX_MESSAGE);
  const optSize = query.edns !== undefined ? OPT_SIZE : 0;
  const w = new Writer(limit);
  // Header; counts are filled in at the end.
  w.u16(query.id);
  w.u16(0);
  w.u32(0);
  w.u32(0);
  // Question, verbatim (keeps the query's letter case), registered for compression.
  w.bytes(req.subarray(12, query.questionEnd));
  let suffix = query.name;
  for (const off of query.labelOffsets) {
    if (suffix.length === 0) break;
    w.names.set(suffix, off);
    const dot = suffix.indexOf('.');
    suffix = dot < 0 ? '' : suffix.slice(dot + 1);
  }

  let tc = false;
  let cut = false;
  const counts = [0, 0, 0];
  const sections = [ans.answer, ans.authority, ans.additional];
  outer: for (let s = 0; s < 3; s++) {
    for (const rr of sections[s]!) {
      const at = w.mark();
      try {
        w.rr(rr);
        if (w.pos + optSize > limit) throw new Overflow();
      } catch (err) {
        if (!(err instanceof Overflow)) throw err;
        w.rollback(at);
        if (s < 2) tc = true;
        cut = true;
        break outer;
      }
      counts[s]!++;
    }
  }
  let rcode = ans.rcode;
  if (query.edns !== undefined) {
    // OPT pseudo-RR (RFC 6891 §6.1.2): root owner, CLASS = our UDP size, TTL carries
    // the upper 8 bits of the extended rcode and version 0, DO cleared (no DNSSEC).
    w.u8(0);
    w.u16(Type.OPT);
    w.u16(1232);
    w.u8((rcode >> 4) & 0xff);
    w.u8(0);
    w.u16(0);
    w.u16(0);
    counts[2]!++;
  }
  rcode &= 0xf;
  let flags = Flag.QR | (query.flags & (0x7800 | Flag.RD | Flag.CD)) | rcode;
  if (ans.authoritative) flags |= Flag.AA;
  if (tc) flags |= Flag.TC;
  if (opts.recursionAvailable) flags |= Flag.RA;
  w.buf.writeUInt16BE(flags, 2);
  w.buf.writeUInt16BE(1, 4);
  w.buf.writeUInt16BE(counts[0]!, 6);
  w.buf.writeUInt16BE(counts[1]!, 8);
  w.buf.writeUInt16BE(counts[2]!, 10);
  opts.complete?.(!cut);
  return Buffer.from(w.buf.subarray(0, w.pos));
}

/** A reply of just a header echoing the query's id (FORMERR/NOTIMP on unreadable questions). */
export function writeHeaderOnly(id: number, queryFlags: number, rcode: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(Flag.QR | (queryFlags & (0x7800 | Flag.RD)) | (rcode & 0xf), 2);
  return b;
}

