/**
 * IPv4/IPv6 addresses and CIDRs as `bigint`, with Go's parsing and printing rules.
 *
 * Kubernetes parses with `netutils.ParseIPSloppy` / `ParseCIDRSloppy` (a fork of the
 * Go 1.16 `net` parser) and prints with `net.IP.String()`. This module reproduces the
 * parts that change allocator results:
 *
 * - IPv4 octets may carry leading zeros and are read as **decimal** (`010.0.0.1` is
 *   10.0.0.1), as in `ParseIPSloppy`.
 * - An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, any spelling) **is** IPv4: Go's
 *   `To4()` succeeds, `utilnet.IsIPv6` is false, and `String()` prints dotted IPv4.
 * - IPv6 is printed per RFC 5952 (what Go prints): lowercase, no leading zeros, the
 *   longest run of two or more zero groups compressed to `::` (the first on a tie), by
 *   `src/net/ip.ts`, which also makes the cluster model's canonical text. That module
 *   reads addresses strictly (no leading zeros, IPv4-mapped stays IPv6): the allocator
 *   reads them here, as Kubernetes does.
 * - No zones (`fe80::1%eth0`) and no surrounding whitespace.
 *
 * Deviation: an IPv6 group must have 1 to 4 hex digits (the old Go parser also accepted
 * `00001`). Nobody writes that, and RFC 4291 does not allow it.
 *
 * @module
 */
import { formatIPv4, formatIPv6Groups, type IPFamily } from '../net/ip.js';
import { InvalidCidrError, InvalidIPError } from './errors.js';

const V4_MAX = (1n << 32n) - 1n;
const V6_MAX = (1n << 128n) - 1n;

/** `math.MaxInt64`: Go's `RangeSize` cap. */
export const MAX_INT64 = (1n << 63n) - 1n;

/** Address width in bits for a family. */
export function familyBits(family: IPFamily): 32 | 128 {
  return family === 'IPv4' ? 32 : 128;
}

/** An immutable IP address: family plus value (`0 <= value < 2^bits`). */
export class IP {
  readonly family: IPFamily;
  readonly value: bigint;
  #text: string | undefined;

  private constructor(family: IPFamily, value: bigint) {
    this.family = family;
    this.value = value;
  }

  /**
   * Builds an address from a number. An IPv6 value inside `::ffff:0:0/96` becomes
   * IPv4, as Go would treat it. Throws RangeError when the value does not fit.
   */
  static from(family: IPFamily, value: bigint): IP {
    if (value < 0n || value > (family === 'IPv4' ? V4_MAX : V6_MAX)) {
      throw new RangeError(`value ${value} does not fit an ${family} address`);
    }
    if (family === 'IPv6' && value >> 32n === 0xffffn) return new IP('IPv4', value & V4_MAX);
    return new IP(family, value);
  }

  /** Parses like `netutils.ParseIPSloppy`; undefined when the text is not an IP. */
  static parse(text: string): IP | undefined {
    if (text.includes(':')) {
      const v = parseIPv6(text);
      return v === undefined ? undefined : IP.from('IPv6', v);
    }
    const v = parseIPv4(text);
    return v === undefined ? undefined : new IP('IPv4', v);
  }

  /** Like {@link IP.parse} but throws {@link InvalidIPError}. */
  static mustParse(text: string): IP {
    const ip = IP.parse(text);
    if (ip === undefined) throw new InvalidIPError(text);
    return ip;
  }

  get bits(): 32 | 128 {
    return familyBits(this.family);
  }

  equals(other: IP): boolean {
    return this.family === other.family && this.value === other.value;
  }

  /** `this + n` in the same family; undefined on overflow or underflow. */
  add(n: bigint): IP | undefined {
    const v = this.value + n;
    if (v < 0n || v > (this.family === 'IPv4' ? V4_MAX : V6_MAX)) return undefined;
    return IP.from(this.family, v);
  }

  /** Canonical text, as Go's `net.IP.String()`. */
  toString(): string {
    this.#text ??= this.family === 'IPv4' ? formatIPv4(Number(this.value)) : formatIPv6(this.value);
    return this.#text;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** Parses an IP, or undefined (see {@link IP.parse}). */
export function parseIP(text: string): IP | undefined {
  return IP.parse(text);
}

/** `netutils.IsIPv6String`: parses and is not IPv4 (IPv4-mapped counts as IPv4). */
export function isIPv6String(text: string): boolean {
  return IP.parse(text)?.family === 'IPv6';
}

function parseIPv4(s: string): bigint | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^[0-9]+$/.test(p)) return undefined;
    const n = Number.parseInt(p, 10); // leading zeros are decimal (ParseIPSloppy)
    if (n > 255) return undefined;
    v = v * 256 + n;
  }
  return BigInt(v);
}

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Parses the groups on one side of `::`; an embedded IPv4 is allowed only as the last element. */
function parseGroups(side: string, mayEndWithV4: boolean): number[] | undefined {
  if (side === '') return [];
  const parts = side.split(':');
  const out: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] ?? '';
    if (p.includes('.')) {
      if (!mayEndWithV4 || i !== parts.length - 1) return undefined;
      const v4 = parseIPv4(p);
      if (v4 === undefined) return undefined;
      const n = Number(v4);
      out.push(Math.floor(n / 65536), n % 65536);
      continue;
    }
    if (!HEX_GROUP.test(p)) return undefined;
    out.push(Number.parseInt(p, 16));
  }
  return out;
}

function parseIPv6(s: string): bigint | undefined {
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseGroups(halves[0] ?? '', false);
    const tail = parseGroups(halves[1] ?? '', true);
    if (head === undefined || tail === undefined) return undefined;
    // `::` must stand for at least one zero group.
    if (head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = parseGroups(s, true);
    if (all === undefined || all.length !== 8) return undefined;
    groups = all;
  }
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  return v;
}

function formatIPv6(v: bigint): string {
  if (v >> 32n === 0xffffn) return formatIPv4(Number(v & V4_MAX)); // defensive: IP.from normalises these
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  return formatIPv6Groups(g);
}

/**
 * An IP network: the masked network address and the prefix length, like Go's
 * `*net.IPNet` returned by `ParseCIDRSloppy` (`192.168.1.1/24` becomes `192.168.1.0/24`).
 */
export class Cidr {
  readonly family: IPFamily;
  readonly prefix: number;
  /** The network (all host bits zero). */
  readonly network: IP;

  private constructor(network: IP, prefix: number) {
    this.family = network.family;
    this.network = network;
    this.prefix = prefix;
  }

  /** Builds from an address and prefix length; host bits of `ip` are masked off. */
  static of(ip: IP, prefix: number): Cidr {
    const bits = ip.bits;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) {
      throw new RangeError(`prefix length ${prefix} out of range for ${ip.family} (0-${bits})`);
    }
    const host = BigInt(bits - prefix);
    return new Cidr(IP.from(ip.family, (ip.value >> host) << host), prefix);
  }

  /** Parses `addr/len`; throws {@link InvalidCidrError} with the reason. */
  static parse(text: string): Cidr {
    const slash = text.indexOf('/');
    if (slash < 0) throw new InvalidCidrError(text, 'missing "/<prefix length>"');
    const addrText = text.slice(0, slash);
    const lenText = text.slice(slash + 1);
    const ip = IP.parse(addrText);
    if (ip === undefined) throw new InvalidCidrError(text, `${JSON.stringify(addrText)} is not an IP address`);
    if (!/^[0-9]{1,3}$/.test(lenText)) throw new InvalidCidrError(text, `${JSON.stringify(lenText)} is not a prefix length`);
    let prefix = Number.parseInt(lenText, 10);
    let bits: number = ip.bits;
    // Go sizes the mask by the *text* family: `::ffff:10.0.0.0/120` is a 128-bit mask,
    // which Go prints (and we treat) as 10.0.0.0/24. Shorter prefixes would mix families.
    if (ip.family === 'IPv4' && addrText.includes(':')) {
      if (prefix > 128) throw new InvalidCidrError(text, 'prefix length must be 0-128 for IPv6');
      if (prefix < 96) throw new InvalidCidrError(text, 'IPv4-mapped IPv6 prefix must be /96 or longer');
      prefix -= 96;
      bits = 32;
    }
    if (prefix > bits) throw new InvalidCidrError(text, `prefix length must be 0-${bits} for ${ip.family}`);
    return Cidr.of(ip, prefix);
  }

  get bits(): 32 | 128 {
    return familyBits(this.family);
  }

  /** Host bits: `bits - prefix`. */
  get hostBits(): number {
    return this.bits - this.prefix;
  }

  /** Exact number of addresses, `2^hostBits` (no cap; see {@link rangeSize}). */
  get size(): bigint {
    return 1n << BigInt(this.hostBits);
  }

  /** The last address (all host bits one): the IPv4 broadcast. */
  get last(): IP {
    return IP.from(this.family, this.network.value + this.size - 1n);
  }

  /** `IPNet.Contains`: same family and inside the prefix. */
  contains(ip: IP): boolean {
    if (ip.family !== this.family) return false;
    return ip.value >> BigInt(this.hostBits) === this.network.value >> BigInt(this.hostBits);
  }

  equals(other: Cidr): boolean {
    return this.prefix === other.prefix && this.network.equals(other.network);
  }

  /** `IPNet.String()`: `10.0.0.0/24`, `2001:db8::/64`. */
  toString(): string {
    return `${this.network.toString()}/${this.prefix}`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** Parses a CIDR (see {@link Cidr.parse}); throws {@link InvalidCidrError}. */
export function parseCidr(text: string): Cidr {
  return Cidr.parse(text);
}

/**
 * `k8s.io/utils/net.RangeSize`: the number of addresses in the CIDR, capped at
 * `MaxInt64` (so 63 or more host bits give 2^63-1).
 */
export function rangeSize(cidr: Cidr): bigint {
  return cidr.hostBits >= 63 ? MAX_INT64 : cidr.size;
}

/** Accepts an `IP` or its text; throws {@link InvalidIPError} for unparseable text. */
export function toIP(ip: IP | string): IP {
  return typeof ip === 'string' ? IP.mustParse(ip) : ip;
}

/** Accepts a `Cidr` or its text; throws {@link InvalidCidrError}. */
export function toCidr(cidr: Cidr | string): Cidr {
  return typeof cidr === 'string' ? Cidr.parse(cidr) : cidr;
}
