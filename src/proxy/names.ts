/**
 * kube-proxy's rule names, computed exactly as it does, so chains and sets are the
 * ones an operator (or a test written against kube-proxy) expects for the same Service.
 */
import { createHash } from 'node:crypto';
import type { Protocol } from '../cluster/model.js';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 (standard alphabet), padding omitted: only prefixes are used. */
export function base32(buf: Uint8Array): string {
  let v = 0;
  let n = 0;
  let s = '';
  for (const b of buf) {
    v = ((v << 8) | b) & 0xffff;
    n += 8;
    while (n >= 5) {
      s += B32[(v >>> (n - 5)) & 31];
      n -= 5;
    }
  }
  return n > 0 ? s + B32[(v << (5 - n)) & 31] : s;
}

function sha256b32(s: string): string {
  return base32(createHash('sha256').update(s).digest());
}

export function lowerProto(p: Protocol): string {
  return p.toLowerCase();
}

/** iptables `portProtoHash`: 16 base32 chars of sha256(spn + proto). */
export function portProtoHash(spn: string, protocol: Protocol): string {
  return sha256b32(spn + lowerProto(protocol)).slice(0, 16);
}

export const svcChain = (spn: string, p: Protocol): string => `KUBE-SVC-${portProtoHash(spn, p)}`;
export const svlChain = (spn: string, p: Protocol): string => `KUBE-SVL-${portProtoHash(spn, p)}`;
export const extChain = (spn: string, p: Protocol): string => `KUBE-EXT-${portProtoHash(spn, p)}`;
export const fwChain = (spn: string, p: Protocol): string => `KUBE-FW-${portProtoHash(spn, p)}`;

/** KUBE-SEP-: sha256(spn + proto + "ip:port"), also the xt_recent list name for affinity. */
export function sepChain(spn: string, p: Protocol, endpointKey: string): string {
  return `KUBE-SEP-${sha256b32(spn + lowerProto(p) + endpointKey).slice(0, 16)}`;
}

/** nftables `hashAndTruncate`: hash8 + "-" + name, at most 240 chars ("..." suffix). */
function hashAndTruncate(name: string): string {
  const s = `${sha256b32(name).slice(0, 8)}-${name}`;
  return s.length > 240 ? `${s.slice(0, 237)}...` : s;
}

/** nftables service chain base: `<ns>/<name>/<proto>/<portName>`. */
export function nftServiceBase(namespace: string, name: string, p: Protocol, portName: string): string {
  return hashAndTruncate(`${namespace}/${name}/${lowerProto(p)}/${portName}`);
}

/** nftables endpoint chain base: `<ns>/<name>/<proto>/<portName>__<ip>/<port>`, IPv6 ':' as '.'. */
export function nftEndpointBase(namespace: string, name: string, p: Protocol, portName: string, ip: string, port: number): string {
  return hashAndTruncate(`${namespace}/${name}/${lowerProto(p)}/${portName}__${ip.replaceAll(':', '.')}/${port}`);
}

const probabilities = new Map<number, string>();

/**
 * `1/k` as Go's `%0.10f` (kube-proxy computeProbability). JS toFixed agrees except on
 * exact binary ties (only k = 2048 in range), where Go rounds half to even.
 */
export function probability(k: number): string {
  let s = probabilities.get(k);
  if (s === undefined) {
    s = k === 2048 ? '0.0004882812' : (1 / k).toFixed(10);
    probabilities.set(k, s);
  }
  return s;
}
