/**
 * IP addresses: the one place that reads address text and writes it back. The DNS side
 * (rdata, reverse names), the cluster model (converters), the allocator (printing), the
 * upstream side (who is ourselves), the listeners and the proxy (`host:port`) all use it.
 *
 * Canonical text ({@link canonicalIP}: what the cluster model stores and compares):
 * - IPv4: the dotted quad, as given; leading zeros are refused (Go's `net.ParseIP`,
 *   Node's `isIP`), so there is one spelling per address.
 * - IPv6: RFC 5952 §4: lowercase hex, no leading zeros, the longest run of two or more
 *   zero groups written `::` (the first run on a tie), a single zero group never.
 * - IPv4-mapped IPv6: `::ffff:a.b.c.d` (RFC 5952 §5).
 * - Zone ids (`fe80::1%eth0`) are refused: a cluster address never has one.
 *
 * The wire side reads addresses as bytes ({@link ipToBytes}, a zone is dropped there) and
 * prints bytes back with {@link bytesToIP} (RFC 5952 §4 only: a mapped address comes back
 * as `::ffff:102:304`).
 *
 * Not here: `src/ipam/ip.ts` reads addresses as Kubernetes' allocator does (Go's
 * `ParseIPSloppy`: leading zeros are decimal, an IPv4-mapped address *is* IPv4), into
 * bigints; it prints with {@link formatIPv4} and {@link formatIPv6Groups} from here.
 *
 * This module imports nothing from the project: every layer may use it.
 *
 * @module
 */
import { isIP, isIPv4, isIPv6 } from 'node:net';

export type IPFamily = 'IPv4' | 'IPv6';

/** A socket address: an IP address (or host name) and a port. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** 4 or 16 bytes, or undefined when `ip` is not an address (a zone id is dropped). */
export function ipToBytes(ip: string): Uint8Array | undefined {
  if (isIPv4(ip)) {
    const p = ip.split('.');
    return Uint8Array.from(p, (x) => Number(x));
  }
  if (!isIPv6(ip)) return undefined;
  return ipv6Bytes(stripZone(ip));
}

/** The 16 bytes of IPv6 text that Node's `isIPv6` accepted, without its zone id. */
function ipv6Bytes(text: string): Uint8Array {
  let s = text;
  const out = new Uint8Array(16);
  // An embedded dotted IPv4 tail (::ffff:1.2.3.4) fills the last 4 bytes.
  let tail: Uint8Array | undefined;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) >= 0) {
    tail = Uint8Array.from(s.slice(lastColon + 1).split('.'), (x) => Number(x));
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const [head = '', rest] = s.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const r = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  for (let i = 0; i < 8; i++) {
    const v = parseInt(groups[i] ?? '0', 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  }
  if (tail !== undefined) out.set(tail, 12);
  return out;
}

/** Text of 4 or 16 address bytes: the dotted quad, or RFC 5952 §4 (no mixed notation). */
export function bytesToIP(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  return formatIPv6Groups(g);
}

/** The dotted quad of an IPv4 address as an unsigned 32-bit number. */
export function formatIPv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * RFC 5952 §4 text of the 8 groups of an IPv6 address: lowercase hex without leading
 * zeros, the longest run of two or more zero groups (the first of equals) as `::`.
 */
export function formatIPv6Groups(g: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Canonical text of an IP address (see the module comment), or undefined when `text` is
 * not one: leading zeros in IPv4, spaces, a prefix length or a zone id make it no address.
 */
export function canonicalIP(text: string): string | undefined {
  const family = isIP(text);
  if (family === 4) return text; // isIP refuses leading zeros and spaces: already canonical.
  if (family !== 6 || text.includes('%')) return undefined;
  const b = ipv6Bytes(text);
  if (isMapped(b)) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  return bytesToIP(b);
}

/** `::ffff:0:0/96`. */
function isMapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Family of a valid IP address (any spelling); undefined for anything else. */
export function ipFamily(ip: string): IPFamily | undefined {
  const f = isIP(ip);
  return f === 4 ? 'IPv4' : f === 6 ? 'IPv6' : undefined;
}

/** A canonical dotted quad as an unsigned 32-bit integer; -1 for anything else. */
export function ipv4Key(ip: string): number {
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || ++dots > 3) return -1;
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      // Canonical text only (no leading zero): another spelling is not this address's key.
      if (digits === 1 && octet === 0) return -1;
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return n * 256 + octet;
}

/** The address without its zone id (`fe80::1%eth0` → `fe80::1`). */
export function stripZone(ip: string): string {
  const i = ip.indexOf('%');
  return i < 0 ? ip : ip.slice(0, i);
}

/**
 * The IPv4 address inside canonical IPv4-mapped text (`::ffff:1.2.3.4` → `1.2.3.4`, as a
 * dual-stack socket reports an IPv4 peer); any other text unchanged.
 */
export function unmapIPv4(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** Go's `net.JoinHostPort`: `host:port`, a host with a colon (IPv6) in brackets. */
export function joinHostPort(host: string, port: number | string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** An `address/prefix` text read by {@link parseCIDR}. */
export interface CIDRParts {
  /** The address as written. */
  readonly ip: string;
  /** Its 4 or 16 bytes. */
  readonly bytes: Uint8Array;
  /** The prefix length as written (may exceed the address width: the caller says how that is wrong). */
  readonly prefix: number;
}

/**
 * `address/prefix` with an IP address (Node's `isIP` rules: no leading zeros) and a
 * prefix of 1 to 3 digits; undefined for anything else. Host bits are not checked
 * ({@link hasHostBits}).
 */
export function parseCIDR(text: string): CIDRParts | undefined {
  const m = /^(.+)\/(\d{1,3})$/.exec(text);
  if (m === null) return undefined;
  const ip = m[1]!;
  const bytes = ipToBytes(ip);
  return bytes === undefined ? undefined : { ip, bytes, prefix: Number(m[2]) };
}

/** Whether any bit after the first `prefix` bits of the address is set (not a network address). */
export function hasHostBits(bytes: Uint8Array, prefix: number): boolean {
  for (let b = prefix; b < bytes.length * 8; b++) {
    if ((bytes[b >> 3]! >> (7 - (b & 7))) & 1) return true;
  }
  return false;
}
