/**
 * Reply size and data exposure (issue 6, Hardness; RFC 1035 §4.2.1, RFC 2181 §9,
 * RFC 6891 §6.2.5, RFC 8482):
 * - replies never exceed the requested size: no EDNS and every EDNS size 0..4096 (and
 *   beyond) over a headless service with 300 endpoints (A and SRV, 300 targets in
 *   additional), in-process and over the real UDP socket;
 * - TC is set exactly when answer (or authority) records were left out; what is sent
 *   is a prefix of the complete (TCP) answer, whole records only; additional records
 *   may be cut without TC but never while the next one would still fit;
 * - the answer cache never serves a reply cut for one budget to a client with a larger one;
 * - ANY gets one RRset (RFC 8482 §4.1), never more than the direct query for that type;
 * - names we are not authoritative for (other zones, our zone as a prefix or inside a
 *   label, unknown reverse names, other classes) never carry any cluster data: no
 *   service, namespace or endpoint name, no cluster address, anywhere after the question.
 */
import t from 'tap';
import * as dnsPacket from 'dns-packet';
import { DnsHandler } from '../../src/server/handler.js';
import { decode, makeQuery, tcpExchange, udpExchange } from '../helpers/dns.js';
import { buildServer, endpoints, listenOn, rawQuery, shapeOf, Z, type Server } from './_lib.js';
import { ipToBytes } from '../../src/net/ip.js';
import { port, slice, svc } from '../helpers/cluster.js';
import { endpointList } from '../../src/cluster/packed.js';

const T = { A: 1, AAAA: 28, SRV: 33, PTR: 12, ANY: 255, TXT: 16, SOA: 6, NS: 2, CNAME: 5, MX: 15 } as const;

function budgetOf(edns: number | undefined): number {
  return edns === undefined ? 512 : Math.min(Math.max(edns, 512), 4096);
}

interface Sections {
  tc: boolean;
  answer: string[];
  ns: string[];
  extra: string[];
  size: number;
}

function sections(buf: Buffer): Sections {
  const d = decode(buf);
  return { tc: d.tc, answer: d.answer, ns: d.ns, extra: d.extra, size: buf.length };
}

/** Upper bound of a record's wire size from its text (owner uncompressed): A/AAAA only. */
function maxWireSize(rrText: string): number {
  const [owner = '', , , type] = rrText.split(' ');
  return owner.length + 1 + 10 + (type === 'AAAA' ? 16 : type === 'A' ? 4 : 1000);
}

function isPrefix(a: readonly string[], full: readonly string[]): boolean {
  return a.length <= full.length && a.every((x, i) => x === full[i]);
}

/** The service `testns/mid`: 20 endpoints, so its SRV answer fits in 1232 bytes but its additional does not. */
function addMid(s: Server): void {
  s.store.upsert({ kind: 'Service', obj: svc('testns', 'mid', { headless: true, ports: [port('http', 80)] }) });
  s.store.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'mid', 'mid-a', endpoints(20, 3, true), [{ name: 'http', port: 80, protocol: 'TCP' }]) });
  s.store.flush();
}

const SWEEP_NAMES: [string, number][] = [
  [`_http._tcp.huge.testns.svc.${Z}`, T.SRV],
  [`huge.testns.svc.${Z}`, T.A],
  [`_http._tcp.mid.testns.svc.${Z}`, T.SRV],
  [`_http._tcp.hdls1.testns.svc.${Z}`, T.SRV],
  [`nope.testns.svc.${Z}`, T.A],
];

const EDNS_SIZES: (number | undefined)[] = [undefined, 0, 1, 100, 511, ...Array.from({ length: 4096 - 512 + 1 }, (_, i) => 512 + i), 4097, 8192, 65535];

t.test('replies fit the budget; TC exactly when answer records were left out (in-process, every EDNS size)', async (t) => {
  const s = buildServer();
  addMid(s);
  // reference: complete answers from a separate handler, over TCP (no budget that matters)
  const ref = new DnsHandler({ resolver: s.resolver });
  let checked = 0;
  let truncated = 0;
  let extraCut = 0;
  const bad: string[] = [];
  // first pass: every reply built afresh (the writer's budget logic); second: through the answer cache
  for (const [pass, [name, qtype]] of [...SWEEP_NAMES.map((x) => ['fresh', x] as const), ...SWEEP_NAMES.map((x) => ['cached', x] as const)]) {
    const full = sections(ref.handle(rawQuery({ name, qtype }), 'tcp') as Buffer);
    if (full.tc) bad.push(`${name}: TC over TCP`);
    for (const edns of EDNS_SIZES) {
      const q = rawQuery({ name, qtype, edns, id: checked & 0xffff });
      if (pass === 'fresh') s.handler.invalidate();
      const out = s.handler.handle(q, 'udp') as Buffer;
      checked++;
      const budget = budgetOf(edns);
      const r = sections(out);
      const label = `${name}/${qtype} EDNS ${edns ?? 'none'} (${pass})`;
      if (out.length > budget) bad.push(`${label}: ${out.length} > ${budget}`);
      if (!isPrefix(r.answer, full.answer)) bad.push(`${label}: answer is not a prefix of the complete answer`);
      if (!isPrefix(r.ns, full.ns)) bad.push(`${label}: authority is not a prefix of the complete one`);
      const cut = r.answer.length < full.answer.length || r.ns.length < full.ns.length;
      if (r.tc !== cut) bad.push(`${label}: TC ${r.tc} but answer ${r.answer.length}/${full.answer.length}, authority ${r.ns.length}/${full.ns.length}`);
      if (cut && r.extra.length > 0) bad.push(`${label}: answer cut yet additional records sent`);
      if (!cut && !isPrefix(r.extra, full.extra)) bad.push(`${label}: additional is not a prefix of the complete one`);
      const next = full.extra[r.extra.length];
      if (pass === 'fresh' && !cut && next !== undefined && out.length + maxWireSize(next) <= budget) {
        bad.push(`${label}: additional cut at ${r.extra.length}/${full.extra.length} although the next one fits (${out.length} bytes of ${budget})`);
      }
      if (r.tc && r.answer.length === 0 && full.answer.length > 0) bad.push(`${label}: TC with an empty answer although one record fits`);
      if (cut) truncated++;
      if (!cut && r.extra.length < full.extra.length) extraCut++;
      if (bad.length > 20) break;
    }
  }
  t.comment(`${checked} replies checked: ${truncated} with TC, ${extraCut} with additional records cut (no TC)`);
  t.same(bad, [], 'every reply within budget, TC exactly when answer/authority records were left out');
  t.ok(truncated > 1000 && extraCut > 100, 'the sweep exercises both cuts');
  t.same(s.errors, [], 'no internal error');
});

t.test('over the real UDP socket: every 37th EDNS size, budget and TC rules hold', async (t) => {
  const s = buildServer();
  addMid(s);
  const l = await listenOn(s);
  t.teardown(() => l.close());
  const bad: string[] = [];
  let n = 0;
  for (const [name, qtype] of SWEEP_NAMES) {
    const [fullBuf] = await tcpExchange(l.tcpPort, [rawQuery({ name, qtype })]);
    const full = sections(fullBuf!);
    for (const edns of EDNS_SIZES.filter((_, i) => i % 37 === 0 || i < 5)) {
      const out = await udpExchange(l.udpPort, rawQuery({ name, qtype, edns }));
      n++;
      const r = sections(out);
      const label = `${name}/${qtype} EDNS ${edns ?? 'none'}`;
      if (out.length > budgetOf(edns)) bad.push(`${label}: ${out.length} > ${budgetOf(edns)}`);
      const cut = r.answer.length < full.answer.length || r.ns.length < full.ns.length;
      if (r.tc !== cut) bad.push(`${label}: TC ${r.tc}, answer ${r.answer.length}/${full.answer.length}`);
      if (!isPrefix(r.answer, full.answer)) bad.push(`${label}: answer not a prefix`);
    }
  }
  t.comment(`${n} UDP replies`);
  t.same(bad, [], 'every UDP reply within budget, TC exactly when records were left out');
});

t.test('the answer cache never hands a reply cut for a small budget to a larger one', async (t) => {
  const s = buildServer();
  addMid(s);
  const name = `_http._tcp.mid.testns.svc.${Z}`;
  const ref = new DnsHandler({ resolver: s.resolver });
  const full = sections(ref.handle(rawQuery({ name, qtype: T.SRV }), 'tcp') as Buffer);
  t.equal(full.answer.length, 20);
  t.equal(full.extra.length, 20);
  // a small-budget UDP client first: the 20 SRVs fit in 1232 bytes, their 20 addresses do not
  const small = sections(s.handler.handle(rawQuery({ name, qtype: T.SRV, edns: 1232 }), 'udp') as Buffer);
  t.notOk(small.tc, 'EDNS 1232: no TC (only additional records were cut)');
  t.ok(small.extra.length < 20, `EDNS 1232: ${small.extra.length} of 20 additional records`);
  // then clients with room for everything
  const tcp = sections(s.handler.handle(rawQuery({ name, qtype: T.SRV, edns: 1232 }), 'tcp') as Buffer);
  t.equal(tcp.extra.length, 20, `TCP after it: all 20 additional records (got ${tcp.extra.length})`);
  const big = sections(s.handler.handle(rawQuery({ name, qtype: T.SRV, edns: 4096 }), 'udp') as Buffer);
  t.equal(big.extra.length, 20, `EDNS 4096 after it: all 20 additional records (got ${big.extra.length})`);
});

t.test('ANY: one RRset (RFC 8482), never larger than the direct query', async (t) => {
  const s = buildServer();
  const cases: [string, number][] = [
    [Z, T.SOA],
    [`huge.testns.svc.${Z}`, T.A],
    [`_http._tcp.huge.testns.svc.${Z}`, T.SRV],
    [`dual.testns.svc.${Z}`, T.A],
    [`svc1.testns.svc.${Z}`, T.A],
    [`ext.testns.svc.${Z}`, T.CNAME],
    ['1.0.96.10.in-addr.arpa', T.PTR],
    [`dns-version.${Z}`, T.TXT],
  ];
  for (const [name, expectType] of cases) {
    for (const edns of [undefined, 1232, 4096]) {
      for (const transport of ['udp', 'tcp'] as const) {
        const out = s.handler.handle(rawQuery({ name, qtype: T.ANY, edns }), transport) as Buffer;
        const direct = s.handler.handle(rawQuery({ name, qtype: expectType, edns }), transport) as Buffer;
        const d = dnsPacket.decode(out);
        const rrsets = new Set((d.answers ?? []).map((a) => `${a.name.toLowerCase()}|${a.type}`));
        const label = `ANY ${name} ${transport} EDNS ${edns ?? 'none'}`;
        t.equal(rrsets.size, 1, `${label}: one RRset (${[...rrsets].join(', ')})`);
        t.equal(dnsPacket.decode(out).answers?.[0]?.type, dnsPacket.decode(direct).answers?.[0]?.type, `${label}: the ${expectType} RRset`);
        t.same((d.additionals ?? []).filter((a) => a.type !== 'OPT'), [], `${label}: no additional records`);
        t.ok(out.length <= direct.length, `${label}: ${out.length} bytes ≤ ${direct.length} of the direct query`);
        if (transport === 'udp') t.ok(out.length <= budgetOf(edns), `${label}: within the UDP budget`);
      }
    }
  }
  // apex: SOA only, not SOA + NS + glue
  const apex = decode(s.handler.handle(rawQuery({ name: Z, qtype: T.ANY }), 'udp') as Buffer);
  t.same(apex.answer.map((r) => r.split(' ')[3]), ['SOA'], 'apex ANY: just the SOA');
});

/* -------------------------------------------------------------------- leaks */

/** Every piece of cluster data a reply could leak: names (as wire labels) and addresses (as rdata bytes). */
function clusterSignatures(s: Server): { labels: Buffer[]; addrs: Buffer[]; texts: string[] } {
  const names = new Set<string>();
  const ips = new Set<string>();
  for (const v of s.store.services.values()) {
    names.add(v.name);
    v.clusterIPs.forEach((ip) => ips.add(ip));
  }
  for (const ns of s.store.namespaces.keys()) names.add(ns);
  for (const sl of [...s.store.slices.values(), ...s.store.legacyEndpoints.values()]) {
    for (const e of endpointList(sl.endpoints)) {
      e.addresses.forEach((ip) => ips.add(ip));
      if (e.hostname !== undefined) names.add(e.hostname);
    }
  }
  for (const p of s.store.pods.values()) p.ips.forEach((ip) => ips.add(ip));
  names.add('svc');
  names.add('pod');
  const labels = [...names].filter((n) => n.length >= 3).map((n) => Buffer.concat([Buffer.from([n.length]), Buffer.from(n, 'latin1')]));
  const addrs = [...ips].map((ip) => Buffer.from(ipToBytes(ip)!));
  // addresses as text too (dashed labels, reverse names, TXT)
  const texts = [...ips].flatMap((ip) => (ip.includes(':') ? [] : [ip.split('.').join('-'), ip.split('.').reverse().join('.')]));
  return { labels, addrs, texts };
}

function leaks(sig: ReturnType<typeof clusterSignatures>, q: Buffer, out: Buffer): string[] {
  const shape = shapeOf(q);
  const qd = out.readUInt16BE(4);
  const body = out.subarray(qd === 1 && shape.questionLen !== undefined ? 12 + shape.questionLen : 12);
  const low = Buffer.from(body.toString('latin1').toLowerCase(), 'latin1');
  const found: string[] = [];
  for (const l of sig.labels) if (low.includes(l)) found.push(`label ${l.subarray(1).toString('latin1')}`);
  for (const a of sig.addrs) if (body.includes(a)) found.push(`address bytes ${a.toString('hex')}`);
  for (const x of sig.texts) if (low.includes(Buffer.from(x, 'latin1'))) found.push(`address text ${x}`);
  // and no records at all in answer or additional (OPT aside)
  const d = dnsPacket.decode(out);
  if ((d.answers ?? []).length > 0) found.push(`${d.answers!.length} answer records`);
  if ((d.additionals ?? []).some((a) => a.type !== 'OPT')) found.push('additional records');
  for (const a of d.authorities ?? []) if (a.type !== 'SOA') found.push(`authority ${a.type}`);
  return found;
}

const lbl = (s: string) => Buffer.from(s, 'latin1');
const FOREIGN: { name: string | Buffer[]; why: string }[] = [
  { name: 'example.com', why: 'another zone' },
  { name: `${Z}.evil.com`, why: 'our zone as a prefix' },
  { name: `*.${Z}.evil.com`, why: 'wildcard under our zone-as-prefix' },
  { name: `svc1.testns.svc.${Z}.evil.com`, why: 'a service name under another zone' },
  { name: `SVC1.TestNS.svc.Cluster.Local.attacker.org`, why: 'mixed case, another zone' },
  { name: `kubernetes.default.svc.${Z}.attacker.org`, why: 'our zone as a prefix' },
  { name: `${Z}.attacker.org`, why: 'our zone as a prefix' },
  { name: `svc1.testns.svc.x${Z}`, why: 'our zone as a suffix, not at a label boundary' },
  { name: `svc1.testns.svc.${Z}s`, why: 'our zone with a letter appended' },
  { name: 'local', why: 'the parent of our zone' },
  { name: '', why: 'the root' },
  { name: [lbl('svc1'), lbl('testns'), lbl('svc'), lbl(Z)], why: 'our zone as one label with a dot inside' },
  { name: [lbl(`svc1.testns.svc.${Z}`)], why: 'a whole service name as one label' },
  { name: [lbl('svc1'), lbl('testns'), lbl('svc'), lbl('cluster'), lbl('local\0')], why: 'a NUL byte in the last label' },
  { name: [lbl('svc1'), lbl('testns'), lbl('svc'), lbl('cluster'), lbl('loca\u00ec')], why: 'a non-ASCII byte in the last label' },
  { name: '99.99.99.99.in-addr.arpa', why: 'reverse name of an unknown address' },
  { name: '3.2.1.10.in-addr.arpa', why: 'reverse name of an unknown address beside ours' },
  { name: '99.0.0.172.in-addr.arpa', why: 'unknown address inside a reverseZones CIDR' },
  { name: '250.255.111.10.in-addr.arpa', why: 'unknown address inside the service CIDR reverse zone' },
  { name: '172.in-addr.arpa', why: 'an ancestor of our reverse names' },
  { name: '0.172.in-addr.arpa', why: 'an ancestor of our reverse zone' },
  { name: 'in-addr.arpa', why: 'the reverse tree root' },
  { name: '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.2.ip6.arpa', why: 'unknown IPv6 reverse name' },
  { name: 'd.c.b.a.4.3.2.1.ip6.arpa', why: 'ancestor of a known IPv6 reverse name' },
  { name: '1.0.96.10.in-addr.arpa.evil.com', why: 'a known reverse name under another zone' },
];
/** Names we do serve in class IN, asked in other classes. */
const OTHER_CLASSES: { name: string; qclass: number }[] = [3, 4, 254, 255, 0, 2, 0xffff].flatMap((qclass) =>
  [`svc1.testns.svc.${Z}`, `_http._tcp.huge.testns.svc.${Z}`, Z, '1.0.96.10.in-addr.arpa', `huge.testns.svc.${Z}`].map((name) => ({ name, qclass })),
);
const LEAK_TYPES = [T.A, T.AAAA, T.SRV, T.PTR, T.ANY, T.TXT, T.SOA, T.NS, T.CNAME, T.MX, 252, 251];

t.test('names we are not authoritative for never carry cluster data', async (t) => {
  const s = buildServer();
  const sig = clusterSignatures(s);
  t.ok(sig.labels.length > 20 && sig.addrs.length > 300, `${sig.labels.length} name labels, ${sig.addrs.length} addresses to look for`);
  const l = await listenOn(s);
  t.teardown(() => l.close());
  // the scan itself works: an in-zone answer is full of cluster data
  const own = makeQuery(`_http._tcp.hdls1.testns.svc.${Z}`, 'SRV');
  t.ok(leaks(sig, own, s.handler.handle(own, 'udp') as Buffer).length > 0, 'the scan finds cluster data in a real answer');
  const bad: string[] = [];
  const rcodes = new Map<string, number>();
  let n = 0;
  const check = async (q: Buffer, label: string) => {
    for (const transport of ['udp', 'tcp'] as const) {
      const out = s.handler.handle(q, transport) as Buffer;
      n++;
      const rc = decode(out).rcode;
      rcodes.set(rc, (rcodes.get(rc) ?? 0) + 1);
      const f = leaks(sig, q, out);
      if (f.length > 0) bad.push(`${label} ${transport}: ${f.join(', ')}`);
    }
    // and through the sockets
    const u = await udpExchange(l.udpPort, q);
    const [tc] = await tcpExchange(l.tcpPort, [q]);
    n += 2;
    for (const [via, out] of [['udp socket', u], ['tcp socket', tc!]] as const) {
      const f = leaks(sig, q, out);
      if (f.length > 0) bad.push(`${label} ${via}: ${f.join(', ')}`);
    }
  };
  for (const f of FOREIGN) {
    for (const qtype of LEAK_TYPES) {
      for (const edns of [undefined, 4096]) {
        await check(rawQuery({ name: f.name, qtype, edns }), `${typeof f.name === 'string' ? f.name : f.name.map((x) => x.toString('latin1')).join('|')} (${f.why}) type ${qtype}`);
      }
    }
  }
  for (const c of OTHER_CLASSES) {
    for (const qtype of LEAK_TYPES) await check(rawQuery({ name: c.name, qtype, qclass: c.qclass }), `${c.name} class ${c.qclass} type ${qtype}`);
  }
  t.comment(`${n} replies scanned; rcodes ${JSON.stringify(Object.fromEntries(rcodes))}`);
  t.same(bad.slice(0, 30), [], 'no reply to a foreign name or class carries cluster data');
  t.same(s.errors, [], 'no internal error');
});
