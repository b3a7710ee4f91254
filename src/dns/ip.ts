/**
 * Addresses as DNS names: reverse names (RFC 1035 §3.5, RFC 3596 §2.5) and the dashed
 * endpoint/pod labels CoreDNS uses. Address text and bytes themselves: `src/net/ip.ts`.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { bytesToIP, ipToBytes } from '../net/ip.js';

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
  // RFC 5952 §4 text of the bytes (a zone id dropped, mapped addresses in hex groups).
  return isIPv6(ip) ? bytesToIP(ipToBytes(ip)!) : undefined;
}
