/**
 * Address text ↔ bytes for the wire side: A/AAAA rdata, reverse names (RFC 1035 §3.5,
 * RFC 3596 §2.5) and the dashed endpoint/pod labels CoreDNS uses.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** 4 or 16 bytes, or undefined when `ip` is not an address. */
export function ipToBytes(ip: string): Uint8Array | undefined {
  if (isIPv4(ip)) {
    const p = ip.split('.');
    return Uint8Array.from(p, (x) => Number(x));
  }
  if (!isIPv6(ip)) return undefined;
  let s = ip;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const out = new Uint8Array(16);
  // An embedded dotted IPv4 tail (::ffff:1.2.3.4) fills the last 4 bytes.
  let tail: Uint8Array | undefined;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) >= 0) {
    tail = ipToBytes(s.slice(lastColon + 1));
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

/** Canonical text of an address (IPv6 per RFC 5952), or undefined when invalid. */
export function canonicalIP(ip: string): string | undefined {
  const b = ipToBytes(ip);
  if (b === undefined) return undefined;
  return bytesToIP(b);
}

export function bytesToIP(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  return formatIPv6Groups(g);
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

/** `4.3.2.1.in-addr.arpa` / nibble `ip6.arpa` name of an address (no trailing dot). */
export function reverseName(ip: string): string | undefined {
  const b = ipToBytes(ip);
  if (b === undefined) return undefined;
  if (b.length === 4) return `${b[3]}.${b[2]}.${b[1]}.${b[0]}.in-addr.arpa`;
  const n: string[] = [];
  for (let i = 15; i >= 0; i--) n.push((b[i]! & 0xf).toString(16), (b[i]! >> 4).toString(16));
  return `${n.join('.')}.ip6.arpa`;
}

/**
 * Address of a reverse name, or undefined when the name is not a complete address
 * under in-addr.arpa/ip6.arpa (a shorter name is a zone cut, not an address).
 */
export function reverseToIP(name: string): string | undefined {
  if (name.endsWith('.in-addr.arpa')) {
    const p = name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (p.length !== 4 || !p.every((x) => /^(0|[1-9][0-9]{0,2})$/.test(x) && Number(x) <= 255)) return undefined;
    return p.reverse().join('.');
  }
  if (name.endsWith('.ip6.arpa')) {
    const p = name.slice(0, -'.ip6.arpa'.length).split('.');
    if (p.length !== 32 || !p.every((x) => /^[0-9a-f]$/.test(x))) return undefined;
    const b = new Uint8Array(16);
    for (let i = 0; i < 16; i++) b[i] = (parseInt(p[31 - 2 * i]!, 16) << 4) | parseInt(p[30 - 2 * i]!, 16);
    return bytesToIP(b);
  }
  return undefined;
}

/**
 * CoreDNS's endpoint label for an address without a hostname: dots or colons become
 * dashes, and a trailing dash gets a `0` (`2001-db8--0`) so the label stays valid.
 */
export function dashedIP(ip: string): string {
  const s = ip.replace(/[.:]/g, '-');
  return s.endsWith('-') ? `${s}0` : s;
}

/**
 * The address a pod label encodes (`1-2-3-4`, `fd00--1`), as CoreDNS reads it: a label
 * with exactly three dashes and no `--` is IPv4, anything else is tried as IPv6.
 */
export function podLabelToIP(label: string): string | undefined {
  const dashes = label.split('-').length - 1;
  if (dashes === 3 && !label.includes('--')) {
    const ip = label.replace(/-/g, '.');
    return isIPv4(ip) ? ip : undefined;
  }
  const ip = label.replace(/-/g, ':');
  return isIPv6(ip) ? canonicalIP(ip) : undefined;
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
