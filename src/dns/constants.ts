/** DNS wire constants (RFC 1035 §3.2, RFC 6891, RFC 6895 registries). */

export const Type = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  NULL: 10,
  PTR: 12,
  HINFO: 13,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
  DS: 43,
  DNSKEY: 48,
  SVCB: 64,
  HTTPS: 65,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
  CAA: 257,
} as const;

export const Class = { IN: 1, CH: 3, NONE: 254, ANY: 255 } as const;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended rcode 16 (RFC 6891 §6.1.3): upper 8 bits in OPT, lower 4 in the header. */
  BADVERS: 16,
} as const;

export const Opcode = { QUERY: 0 } as const;

/** Header flag bits within the 16-bit flags word (RFC 1035 §4.1.1, RFC 4035 §3.2). */
export const Flag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

/** Largest UDP reply without EDNS (RFC 1035 §4.2.1). */
export const UDP_MIN_SIZE = 512;
/** Our advertised EDNS buffer size (DNS flag day 2020 recommendation). */
export const EDNS_SIZE = 1232;

const typeNames: Record<number, string> = Object.fromEntries(Object.entries(Type).map(([k, v]) => [v, k]));

/** Mnemonic of a type code, `TYPEnnn` for unknown ones (RFC 3597 §5). */
export function typeName(t: number): string {
  return typeNames[t] ?? `TYPE${t}`;
}

const rcodeNames: Record<number, string> = Object.fromEntries(Object.entries(Rcode).map(([k, v]) => [v, k]));

export function rcodeName(r: number): string {
  return rcodeNames[r] ?? `RCODE${r}`;
}
