/**
 * Resource records as built by the zone side and written by `writer.ts`.
 *
 * Owner names and name-valued rdata are lowercase, dotted, without the trailing dot.
 * Address records keep only their canonical text: at 150k endpoints a bytes array per
 * record would cost ~180 B each, and writing happens only when the answer cache misses.
 */
import { Type } from './constants.js';
import { bytesToIP, ipToBytes } from '../net/ip.js';

export interface SoaData {
  readonly mname: string;
  readonly rname: string;
  readonly serial: number;
  readonly refresh: number;
  readonly retry: number;
  readonly expire: number;
  readonly minimum: number;
}

export interface SrvData {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target: string;
}

export type RR =
  | { readonly name: string; readonly type: typeof Type.A | typeof Type.AAAA; readonly ttl: number; readonly ip: string }
  | { readonly name: string; readonly type: typeof Type.CNAME | typeof Type.PTR | typeof Type.NS; readonly ttl: number; readonly target: string }
  | { readonly name: string; readonly type: typeof Type.SOA; readonly ttl: number; readonly soa: SoaData }
  | { readonly name: string; readonly type: typeof Type.SRV; readonly ttl: number; readonly srv: SrvData }
  | { readonly name: string; readonly type: typeof Type.TXT; readonly ttl: number; readonly txt: readonly string[] };

/** An A or AAAA record for `ip` (family chosen from the text). Throws on a bad address. */
export function addressRR(name: string, ttl: number, ip: string): RR {
  const bytes = ipToBytes(ip);
  if (bytes === undefined) throw new Error(`not an IP address: ${ip}`);
  return { name, type: bytes.length === 4 ? Type.A : Type.AAAA, ttl, ip: bytes.length === 4 ? ip : bytesToIP(bytes) };
}

/** Zone-file text of a record (for logs and tests), RFC 1035 §5.1 presentation. */
export function rrText(rr: RR): string {
  const head = `${rr.name}.\t${rr.ttl}\tIN\t`;
  switch (rr.type) {
    case Type.A:
      return `${head}A\t${rr.ip}`;
    case Type.AAAA:
      return `${head}AAAA\t${rr.ip}`;
    case Type.CNAME:
      return `${head}CNAME\t${rr.target}.`;
    case Type.PTR:
      return `${head}PTR\t${rr.target}.`;
    case Type.NS:
      return `${head}NS\t${rr.target}.`;
    case Type.SOA: {
      const s = rr.soa;
      return `${head}SOA\t${s.mname}. ${s.rname}. ${s.serial} ${s.refresh} ${s.retry} ${s.expire} ${s.minimum}`;
    }
    case Type.SRV: {
      const s = rr.srv;
      return `${head}SRV\t${s.priority} ${s.weight} ${s.port} ${s.target}.`;
    }
    case Type.TXT:
      return `${head}TXT\t${rr.txt.map((t) => JSON.stringify(t)).join(' ')}`;
  }
}
