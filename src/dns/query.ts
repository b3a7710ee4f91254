/**
 * Query reader: the header, the one question and the EDNS OPT record, straight from
 * the buffer with bounds checks, no allocation beyond the name string.
 *
 * Names are returned lowercase, dotted, without the trailing dot (the root is '').
 * Label bytes that could be confused with our text form ('.', '\\', controls,
 * non-ASCII) are escaped as \DDD (RFC 4343 §2.1 presentation form) so that an odd
 * query name can never collide with a real cluster name.
 */
import { Flag, Rcode, Type, UDP_MIN_SIZE } from './constants.js';

export interface Edns {
  /** Requestor's UDP payload size, raised to 512 when lower (RFC 6891 §6.2.5). */
  readonly udpSize: number;
  readonly version: number;
  readonly dnssecOk: boolean;
}

export interface Query {
  readonly id: number;
  /** The raw header flags word of the query. */
  readonly flags: number;
  readonly opcode: number;
  /** Lowercase dotted name, no trailing dot. */
  readonly name: string;
  readonly qtype: number;
  readonly qclass: number;
  /** Offset just past QTYPE/QCLASS: the question is `buf[12, questionEnd)`. */
  readonly questionEnd: number;
  /** Offsets of each label's length byte within the question, for compression. */
  readonly labelOffsets: readonly number[];
  readonly edns: Edns | undefined;
}

/** A query we can answer (possibly with an error rcode), or a packet to drop. */
export type ParseResult =
  | { readonly kind: 'query'; readonly query: Query; readonly rcode: number }
  | { readonly kind: 'header-only'; readonly id: number; readonly flags: number; readonly rcode: number }
  | { readonly kind: 'drop'; readonly reason: string };

const MAX_NAME = 255;

/**
 * Parse a query message. Never throws.
 * - shorter than a header, or a response (QR set): dropped (answering responses
 *   invites reflection loops).
 * - readable header but no usable question: FORMERR with the header only.
 * - opcode other than QUERY: NOTIMP (RFC 1035 §4.1.1).
 * - several OPT records, OPT not at the root: FORMERR (RFC 6891 §6.1.1).
 * - EDNS version above 0: BADVERS (RFC 6891 §6.1.3).
 */
export function parseQuery(buf: Uint8Array): ParseResult {
  if (buf.length < 12) return { kind: 'drop', reason: 'shorter than a DNS header' };
  const id = (buf[0]! << 8) | buf[1]!;
  const flags = (buf[2]! << 8) | buf[3]!;
  if (flags & Flag.QR) return { kind: 'drop', reason: 'not a query (QR set)' };
  const opcode = (flags >> 11) & 0xf;
  const qdcount = (buf[4]! << 8) | buf[5]!;
  if (qdcount !== 1) {
    return { kind: 'header-only', id, flags, rcode: opcode !== 0 ? Rcode.NOTIMP : Rcode.FORMERR };
  }
  // Question name: labels only. A compression pointer in the first name of a message
  // could only point into the header, so it is malformed.
  let pos = 12;
  let wireLen = 1;
  let plain = true;
  const labelOffsets: number[] = [];
  for (;;) {
    if (pos >= buf.length) return { kind: 'header-only', id, flags, rcode: Rcode.FORMERR };
    const len = buf[pos]!;
    if (len === 0) {
      pos++;
      break;
    }
    if (len > 63) return { kind: 'header-only', id, flags, rcode: Rcode.FORMERR };
    wireLen += len + 1;
    if (wireLen > MAX_NAME || pos + 1 + len > buf.length) {
      return { kind: 'header-only', id, flags, rcode: Rcode.FORMERR };
    }
    labelOffsets.push(pos);
    for (let i = pos + 1; i <= pos + len; i++) {
      const c = buf[i]!;
      if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) plain = false;
    }
    pos += 1 + len;
  }
  const name = plain ? plainName(buf, labelOffsets, pos) : escapedName(buf, labelOffsets);
  if (pos + 4 > buf.length) return { kind: 'header-only', id, flags, rcode: Rcode.FORMERR };
  const qtype = (buf[pos]! << 8) | buf[pos + 1]!;
  const qclass = (buf[pos + 2]! << 8) | buf[pos + 3]!;
  pos += 4;
  const questionEnd = pos;

  // Remaining sections: skip answer and authority records, find OPT in additional.
  const ancount = (buf[6]! << 8) | buf[7]!;
  const nscount = (buf[8]! << 8) | buf[9]!;
  const arcount = (buf[10]! << 8) | buf[11]!;
  let edns: Edns | undefined;
  let rcode: number = opcode !== 0 ? Rcode.NOTIMP : Rcode.NOERROR;
  const total = ancount + nscount + arcount;
  for (let i = 0; i < total; i++) {
    const rrStart = pos;
    pos = skipName(buf, pos);
    if (pos < 0 || pos + 10 > buf.length) {
      rcode = Rcode.FORMERR;
      break;
    }
    const type = (buf[pos]! << 8) | buf[pos + 1]!;
    const klass = (buf[pos + 2]! << 8) | buf[pos + 3]!;
    const ttl = ((buf[pos + 4]! << 24) | (buf[pos + 5]! << 16) | (buf[pos + 6]! << 8) | buf[pos + 7]!) >>> 0;
    const rdlen = (buf[pos + 8]! << 8) | buf[pos + 9]!;
    pos += 10 + rdlen;
    if (pos > buf.length) {
      rcode = Rcode.FORMERR;
      break;
    }
    if (type === Type.OPT) {
      // RFC 6891 §6.1.1: at most one OPT, only in the additional section, owner root.
      if (i < ancount + nscount || edns !== undefined || buf[rrStart] !== 0) {
        rcode = Rcode.FORMERR;
        edns = undefined;
        break;
      }
      edns = {
        udpSize: Math.max(klass, UDP_MIN_SIZE),
        version: (ttl >>> 16) & 0xff,
        dnssecOk: (ttl & 0x8000) !== 0,
      };
    }
  }
  if (rcode === Rcode.NOERROR && edns !== undefined && edns.version > 0) rcode = Rcode.BADVERS;
  return {
    kind: 'query',
    query: { id, flags, opcode, name, qtype, qclass, questionEnd, labelOffsets, edns },
    rcode,
  };
}

/** Returns the offset after a (possibly compressed) name, or -1 when malformed. */
export function skipName(buf: Uint8Array, pos: number): number {
  for (let guard = 0; guard < 128; guard++) {
    if (pos >= buf.length) return -1;
    const len = buf[pos]!;
    if (len === 0) return pos + 1;
    if ((len & 0xc0) === 0xc0) return pos + 2 <= buf.length ? pos + 2 : -1;
    if (len > 63) return -1;
    pos += 1 + len;
  }
  return -1;
}

const scratch = Buffer.allocUnsafe(256);

/**
 * The common case: printable ASCII without dots or backslashes. The wire name is
 * copied once, length bytes become dots, letters are lowercased, one latin1 decode.
 */
function plainName(buf: Uint8Array, labelOffsets: readonly number[], end: number): string {
  if (labelOffsets.length === 0) return '';
  const start = labelOffsets[0]! + 1;
  const n = end - 1 - start;
  for (let i = 0; i < n; i++) {
    const c = buf[start + i]!;
    scratch[i] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  for (let k = 1; k < labelOffsets.length; k++) scratch[labelOffsets[k]! - start] = 0x2e;
  return scratch.toString('latin1', 0, n);
}

function escapedName(buf: Uint8Array, labelOffsets: readonly number[]): string {
  let name = '';
  for (const off of labelOffsets) {
    if (name.length > 0) name += '.';
    name += labelText(buf, off + 1, buf[off]!);
  }
  return name;
}

/** One label as lowercase text, escaping bytes that are not plain LDH-ish ASCII. */
function labelText(buf: Uint8Array, start: number, len: number): string {
  let s = '';
  for (let i = start; i < start + len; i++) {
    let c = buf[i]!;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) {
      s += '\\' + String(c).padStart(3, '0');
    } else {
      s += String.fromCharCode(c);
    }
  }
  return s;
}
