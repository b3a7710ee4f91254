/**
 * fast-check arbitraries for DNS query fuzzing: well-formed queries (names we serve
 * and names we do not, odd label bytes, any qtype/qclass, OPT records with odd fields,
 * extra records in every section) and a program of mutations applied to them (bit
 * flips, truncation, extension, count fields, label lengths, compression pointers,
 * random overwrites), plus packets of random bytes.
 *
 * One generated case is a base packet and up to 3 chains of up to 8 mutations: the
 * base and every intermediate packet of every chain are tested, so a case yields 1 to
 * 25 packets (`packetsOf`).
 * Some cases are clean queries as a stub resolver sends them, so answers (and their
 * truncation) are exercised as much as the error paths.
 */
import fc from 'fast-check';
import { wireName, Z } from './_lib.js';

/** Names the fixture (plus _lib's big/huge services) serves, and some it does not. */
export const NAMES: readonly string[] = [
  `kubernetes.default.svc.${Z}`,
  `kube-dns.kube-system.svc.${Z}`,
  `svc1.testns.svc.${Z}`,
  `svc6.testns.svc.${Z}`,
  `dual.testns.svc.${Z}`,
  `hdls1.testns.svc.${Z}`,
  `web-0.hdls1.testns.svc.${Z}`,
  `big.testns.svc.${Z}`,
  `huge.testns.svc.${Z}`,
  `_http._tcp.huge.testns.svc.${Z}`,
  `_http._tcp.big.testns.svc.${Z}`,
  `_http._tcp.hdls1.testns.svc.${Z}`,
  `_dns._udp.kube-dns.kube-system.svc.${Z}`,
  `ext.testns.svc.${Z}`,
  `ext-in.testns.svc.${Z}`,
  `10-244-0-7.testns.pod.${Z}`,
  `testns.svc.${Z}`,
  `svc.${Z}`,
  Z,
  `ns.dns.${Z}`,
  `dns-version.${Z}`,
  `nope.testns.svc.${Z}`,
  '1.0.96.10.in-addr.arpa',
  '2.0.0.172.in-addr.arpa',
  '99.0.0.172.in-addr.arpa',
  '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa',
  'in-addr.arpa',
  'example.com',
  `${Z}.evil.com`,
  `svc1.testns.svc.${Z}.attacker.org`,
  '',
];

const TYPES = [1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 251, 252, 255, 0, 65535];
const CLASSES = [1, 3, 254, 255, 0, 2];

const u16 = fc.integer({ min: 0, max: 0xffff });
/** Small numbers most of the time, any 16-bit value sometimes. */
const count = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 4 }) }, { weight: 1, arbitrary: u16 });

/** A known name with random letter case, or random labels (any bytes). */
const nameArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...NAMES), fc.integer({ min: 0, max: 0x7fffffff })).map(([n, seed]) => wireName(randomCase(n, seed))) },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.oneof(fc.stringMatching(/^[a-z0-9-]{1,12}$/), fc.uint8Array({ minLength: 1, maxLength: 63 })), { minLength: 0, maxLength: 8 })
      .map((labels) => wireName(labels.map((l) => (typeof l === 'string' ? Buffer.from(l, 'latin1') : l)))),
  },
  {
    // long names near the 255-byte limit
    weight: 1,
    arbitrary: fc.array(fc.integer({ min: 1, max: 63 }), { minLength: 3, maxLength: 6 }).map((ls) => wireName(ls.map((n) => Buffer.alloc(n, 0x61)))),
  },
);

function randomCase(name: string, seed: number): string {
  let s = '';
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    s += (seed >> i % 31) & 1 ? c.toUpperCase() : c;
  }
  return s;
}

interface RRSpec {
  readonly owner: 'root' | 'name' | 'pointer';
  readonly type: number;
  readonly klass: number;
  readonly ttl: number;
  readonly rdata: Uint8Array;
  /** Added to the true rdata length (a lying RDLENGTH). */
  readonly rdlenDelta: number;
}

/** EDNS options: code, announced length (may lie), data. */
const optionsArb = fc
  .array(fc.tuple(fc.constantFrom(8, 10, 12, 15, 3, 65001, 0), fc.uint8Array({ maxLength: 24 }), fc.integer({ min: -3, max: 3 })), { maxLength: 3 })
  .map((opts) => {
    const parts: Buffer[] = [];
    for (const [code, data, lie] of opts) {
      const h = Buffer.alloc(4);
      h.writeUInt16BE(code, 0);
      h.writeUInt16BE(Math.max(0, data.length + lie) & 0xffff, 2);
      parts.push(h, Buffer.from(data));
    }
    return Buffer.concat(parts);
  });

const optArb: fc.Arbitrary<RRSpec> = fc.record({
  owner: fc.constantFrom<RRSpec['owner']>('root', 'root', 'root', 'root', 'name'),
  type: fc.constant(41),
  // UDP size: 0..65535 with the interesting values weighted in
  klass: fc.oneof(fc.constantFrom(0, 1, 511, 512, 513, 1232, 1400, 4095, 4096, 4097, 65535), u16),
  // extended rcode, version (mostly 0), DO, Z
  ttl: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 255 }) }), fc.boolean(), fc.integer({ min: 0, max: 0x7fff })).map(
    ([ext, ver, dok, z]) => (((ext << 24) | (ver << 16) | (dok ? 0x8000 : 0) | z) >>> 0),
  ),
  rdata: optionsArb,
  rdlenDelta: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 5 }) }),
});

const otherRRArb: fc.Arbitrary<RRSpec> = fc.record({
  owner: fc.constantFrom<RRSpec['owner']>('root', 'name', 'pointer'),
  type: fc.constantFrom(...TYPES),
  klass: fc.constantFrom(...CLASSES),
  ttl: fc.nat(),
  rdata: fc.uint8Array({ maxLength: 40 }),
  rdlenDelta: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 5 }) }),
});

function rrBytes(rr: RRSpec): Buffer {
  const owner = rr.owner === 'root' ? Buffer.from([0]) : rr.owner === 'pointer' ? Buffer.from([0xc0, 12]) : wireName('x.example');
  const f = Buffer.alloc(10);
  f.writeUInt16BE(rr.type, 0);
  f.writeUInt16BE(rr.klass, 2);
  f.writeUInt32BE(rr.ttl >>> 0, 4);
  f.writeUInt16BE(Math.max(0, rr.rdata.length + rr.rdlenDelta) & 0xffff, 8);
  return Buffer.concat([owner, f, Buffer.from(rr.rdata)]);
}

export interface BaseSpec {
  readonly id: number;
  /** Flags word with QR mostly clear; opcode mostly 0. */
  readonly flags: number;
  readonly name: Uint8Array;
  readonly qtype: number;
  readonly qclass: number;
  readonly answer: readonly RRSpec[];
  readonly authority: readonly RRSpec[];
  /** Additional records; OPTs are among them most of the time. */
  readonly additional: readonly RRSpec[];
}

const flagsArb = fc
  .tuple(fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(1) }), fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 15 }) }), fc.integer({ min: 0, max: 0x7ff }))
  .map(([qr, opcode, rest]) => (qr << 15) | (opcode << 11) | rest);

export const baseArb: fc.Arbitrary<BaseSpec> = fc.record({
  id: u16,
  flags: flagsArb,
  name: nameArb,
  qtype: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(1, 28, 33, 12, 255) }, { weight: 4, arbitrary: fc.constantFrom(...TYPES) }, { weight: 1, arbitrary: u16 }),
  qclass: fc.oneof({ weight: 12, arbitrary: fc.constant(1) }, { weight: 2, arbitrary: fc.constantFrom(...CLASSES) }, { weight: 1, arbitrary: u16 }),
  answer: fc.oneof({ weight: 8, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.oneof(otherRRArb, optArb), { maxLength: 2 }) }),
  authority: fc.oneof({ weight: 8, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.oneof(otherRRArb, optArb), { maxLength: 2 }) }),
  additional: fc.oneof(
    { weight: 3, arbitrary: fc.constant([]) },
    { weight: 5, arbitrary: optArb.map((o) => [o]) },
    { weight: 1, arbitrary: fc.array(fc.oneof(otherRRArb, optArb), { maxLength: 3 }) },
  ),
});

export function encodeBase(b: BaseSpec): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(b.id, 0);
  h.writeUInt16BE(b.flags, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(b.answer.length, 6);
  h.writeUInt16BE(b.authority.length, 8);
  h.writeUInt16BE(b.additional.length, 10);
  const q = Buffer.alloc(4);
  q.writeUInt16BE(b.qtype, 0);
  q.writeUInt16BE(b.qclass, 2);
  return Buffer.concat([h, Buffer.from(b.name), q, ...b.answer.map(rrBytes), ...b.authority.map(rrBytes), ...b.additional.map(rrBytes)]);
}

export type Mutation =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'set'; readonly at: number; readonly value: number }
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'extend'; readonly bytes: Uint8Array }
  | { readonly op: 'count'; readonly which: number; readonly value: number }
  | { readonly op: 'label'; readonly nth: number; readonly value: number }
  | { readonly op: 'pointer'; readonly at: number; readonly target: number }
  | { readonly op: 'splice'; readonly at: number; readonly bytes: Uint8Array };

const at = fc.nat({ max: 1 << 16 });
export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at, bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('set' as const), at, value: fc.constantFrom(0, 1, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xff, 0x2e, 0x5c, 0x41) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('count' as const), which: fc.integer({ min: 0, max: 3 }), value: count }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('label' as const), nth: fc.nat({ max: 10 }), value: fc.oneof(fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 255 })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('pointer' as const), at, target: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0x3fff })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('splice' as const), at, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
);

/** Apply one mutation (pure: returns a new buffer). Positions wrap modulo the length. */
export function mutate(buf: Buffer, m: Mutation): Buffer {
  const b = Buffer.from(buf);
  const n = b.length;
  switch (m.op) {
    case 'flip':
      if (n > 0) b[m.at % n]! ^= 1 << m.bit;
      return b;
    case 'set':
      if (n > 0) b[m.at % n] = m.value;
      return b;
    case 'truncate':
      return b.subarray(0, n === 0 ? 0 : m.at % n);
    case 'extend':
      return Buffer.concat([b, m.bytes]);
    case 'count':
      if (n >= 12) b.writeUInt16BE(m.value, 4 + 2 * m.which);
      return b;
    case 'label': {
      // the nth label length byte of the question name
      let p = 12;
      for (let i = 0; i < m.nth && p < n && b[p]! !== 0 && b[p]! <= 63; i++) p += 1 + b[p]!;
      if (p < n) b[p] = m.value;
      return b;
    }
    case 'pointer': {
      if (n < 2) return b;
      const p = m.at % (n - 1);
      b[p] = 0xc0 | ((m.target >> 8) & 0x3f);
      b[p + 1] = m.target & 0xff;
      return b;
    }
    case 'splice': {
      const p = n === 0 ? 0 : m.at % n;
      return Buffer.concat([b.subarray(0, p), m.bytes, b.subarray(p)]);
    }
  }
}

/** A base packet and chains of mutations, each chain applied from the base on. */
export type Case = { readonly kind: 'mutated'; readonly base: BaseSpec; readonly chains: readonly (readonly Mutation[])[] } | { readonly kind: 'random'; readonly bytes: Uint8Array; readonly header: boolean };

/** A query a real stub would send: a known name, a common type, class IN, maybe a clean OPT. */
const cleanArb: fc.Arbitrary<BaseSpec> = fc.record({
  id: u16,
  flags: fc.constantFrom(0, 0x0100, 0x0110, 0x0120),
  name: fc.tuple(fc.constantFrom(...NAMES), fc.integer({ min: 0, max: 0x7fffffff })).map(([n, seed]) => wireName(randomCase(n, seed))),
  qtype: fc.constantFrom(1, 28, 33, 12, 255, 16, 6, 2, 5),
  qclass: fc.constant(1),
  answer: fc.constant([]),
  authority: fc.constant([]),
  additional: fc.oneof(
    fc.constant([]),
    fc
      .tuple(fc.oneof(fc.constantFrom(0, 512, 1232, 1400, 4096, 65535), u16), fc.boolean())
      .map(([size, dok]) => [{ owner: 'root' as const, type: 41, klass: size, ttl: dok ? 0x8000 : 0, rdata: new Uint8Array(0), rdlenDelta: 0 }]),
  ),
});

export const caseArb: fc.Arbitrary<Case> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('mutated' as const), base: cleanArb, chains: fc.constant([]) }) },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('mutated' as const),
      base: baseArb,
      chains: fc.array(fc.array(mutationArb, { minLength: 1, maxLength: 8 }), { minLength: 0, maxLength: 3 }),
    }),
  },
  {
    weight: 1,
    // random bytes; `header` makes the header plausible (QR clear, qdcount 1) so the parser gets past it
    arbitrary: fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ minLength: 0, maxLength: 600 }), header: fc.boolean() }),
  },
);

/** Every packet a case stands for: the base, then each successive mutation. */
export function packetsOf(c: Case): Buffer[] {
  if (c.kind === 'random') {
    const b = Buffer.from(c.bytes);
    if (c.header && b.length >= 12) {
      b[2]! &= 0x7f;
      b.writeUInt16BE(1, 4);
    }
    return [b];
  }
  const base = encodeBase(c.base);
  const out = [base];
  for (const chain of c.chains) {
    let cur = base;
    for (const m of chain) {
      cur = mutate(cur, m);
      out.push(cur);
    }
  }
  return out;
}
