/**
 * Protocol rules over real sockets: EDNS0 (RFC 6891), truncation (RFC 1035 §4.2.1,
 * RFC 2181 §9), error rcodes, TCP framing and connection handling (RFC 7766), and
 * malformed input.
 */
import net from 'node:net';
import dgram from 'node:dgram';
import t, { type Test } from 'tap';
import * as dnsPacket from 'dns-packet';
import { DnsHandler } from '../src/server/handler.js';
import { listen, type Listener } from '../src/server/listen.js';
import { Resolver } from '../src/zone/resolver.js';
import { ClusterZone } from '../src/zone/zone.js';
import { fixtureStore, slice, ep, svc, port } from './helpers/cluster.js';
import { decode, makeQuery, tcpExchange, udpExchange } from './helpers/dns.js';

const Z = 'cluster.local';

async function server(t: Test, opts: { idle?: number; maxConns?: number } = {}): Promise<Listener> {
  const store = fixtureStore();
  // A headless service with 100 ready endpoints: 1.6 KB of A records.
  const eps = Array.from({ length: 100 }, (_, i) => ep(`10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`));
  store.upsert({ kind: 'Service', obj: svc('testns', 'big', { headless: true, ports: [port('http', 80)] }) });
  store.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'big', 'big-a', eps, [{ name: 'http', port: 80, protocol: 'TCP' }]) });
  store.upsert({ kind: 'Service', obj: svc('testns', 'mid', { headless: true, ports: [port('http', 80)] }) });
  store.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'mid', 'mid-a', eps.slice(0, 60), [{ name: 'http', port: 80, protocol: 'TCP' }]) });
  store.flush();
  const zone = new ClusterZone(Z, store, { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined });
  const r = new Resolver();
  r.setZones([zone]);
  const h = new DnsHandler({ resolver: r });
  const l = await listen(h, { host: '127.0.0.1', port: 0, tcpIdleTimeout: opts.idle ?? 10_000, maxTcpConnections: opts.maxConns ?? 1000 });
  t.teardown(() => l.close());
  return l;
}

/** Send raw bytes over UDP; resolves undefined when no reply comes within `ms`. */
function udpRaw(port: number, msg: Buffer, ms = 300): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, ms);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(msg, port, '127.0.0.1');
  });
}

t.test('EDNS0: OPT echoed with our size; none without', async (t) => {
  const l = await server(t);
  const with_ = decode(await udpExchange(l.udpPort, makeQuery(`svc1.testns.svc.${Z}`, 'A', { edns: 4096 })));
  t.same(with_.opt, { udpPayloadSize: 1232, extendedRcode: 0 });
  const without = decode(await udpExchange(l.udpPort, makeQuery(`svc1.testns.svc.${Z}`, 'A')));
  t.equal(without.opt, undefined);
});

t.test('EDNS0: version 1 gets BADVERS (RFC 6891 §6.1.3)', async (t) => {
  const l = await server(t);
  const q = dnsPacket.encode({
    type: 'query',
    id: 7,
    questions: [{ name: `svc1.testns.svc.${Z}`, type: 'A' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, ednsVersion: 1, flags: 0 } as unknown as dnsPacket.Answer],
  });
  const raw = await udpExchange(l.udpPort, q);
  const d = decode(raw);
  t.equal(raw[3]! & 0xf, 0, 'low 4 bits of BADVERS (16) are 0');
  t.equal(d.opt?.extendedRcode, 1, 'upper bits in OPT: 1 → rcode 16');
  t.same(d.answer, []);
});

t.test('EDNS0: two OPT records are FORMERR', async (t) => {
  const l = await server(t);
  const opt = { type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0 } as unknown as dnsPacket.Answer;
  const q = dnsPacket.encode({ type: 'query', id: 8, questions: [{ name: `svc1.testns.svc.${Z}`, type: 'A' }], additionals: [opt, opt] });
  t.equal(decode(await udpExchange(l.udpPort, q)).rcode, 'FORMERR');
});

t.test('truncation: 512 bytes without EDNS, the advertised size with it, all over TCP', async (t) => {
  const l = await server(t);
  const name = `big.testns.svc.${Z}`;
  const plain = await udpExchange(l.udpPort, makeQuery(name, 'A'));
  const dp = decode(plain);
  t.ok(plain.length <= 512, `UDP reply ${plain.length} ≤ 512`);
  t.ok(dp.tc, 'TC set');
  t.ok(dp.answer.length > 0 && dp.answer.length < 100, `partial answer (${dp.answer.length} records, whole RRs)`);
  const e1232 = await udpExchange(l.udpPort, makeQuery(name, 'A', { edns: 1232 }));
  t.ok(e1232.length <= 1232 && decode(e1232).tc, `EDNS 1232: ${e1232.length} bytes, TC`);
  const e4096 = await udpExchange(l.udpPort, makeQuery(name, 'A', { edns: 4096 }));
  t.notOk(decode(e4096).tc, 'EDNS 4096: fits, no TC');
  t.equal(decode(e4096).answer.length, 100);
  const small = await udpExchange(l.udpPort, makeQuery(name, 'A', { edns: 100 }));
  t.ok(small.length <= 512 && decode(small).tc, 'advertised size below 512 counts as 512');
  const [tcp] = await tcpExchange(l.tcpPort, [makeQuery(name, 'A')]);
  t.notOk(decode(tcp!).tc, 'TCP: no TC');
  t.equal(decode(tcp!).answer.length, 100, 'TCP: the whole answer');
});

t.test('truncation: dropping additional records does not set TC (RFC 2181 §9)', async (t) => {
  const l = await server(t);
  // SRV targets are written uncompressed (RFC 2782), about 57 bytes each.
  const mid = decode(await udpExchange(l.udpPort, makeQuery(`_http._tcp.mid.testns.svc.${Z}`, 'SRV', { edns: 4096 })));
  t.notOk(mid.tc, 'the 60 SRVs fit: no TC');
  t.equal(mid.answer.length, 60);
  t.ok(mid.extra.length > 0 && mid.extra.length < 60, `additional cut to ${mid.extra.length} without TC`);
  const big = decode(await udpExchange(l.udpPort, makeQuery(`_http._tcp.big.testns.svc.${Z}`, 'SRV', { edns: 4096 })));
  t.ok(big.tc, '100 SRVs do not fit in 4096: TC');
  t.same(big.extra, [], 'when the answer is cut, nothing goes in additional');
  const [tcp] = await tcpExchange(l.tcpPort, [makeQuery(`_http._tcp.big.testns.svc.${Z}`, 'SRV')]);
  t.equal(decode(tcp!).answer.length, 100, 'TCP: every SRV');
  t.equal(decode(tcp!).extra.length, 100, 'TCP: every target address');
});

t.test('name compression keeps replies small', async (t) => {
  const l = await server(t);
  const raw = await udpExchange(l.udpPort, makeQuery(`big.testns.svc.${Z}`, 'A', { edns: 4096 }));
  const qlen = makeQuery(`big.testns.svc.${Z}`, 'A').length;
  // 11 bytes of OPT; each A record: 2-byte pointer + 10 + 4 = 16 bytes.
  t.equal(raw.length, qlen + 11 + 100 * 16);
});

t.test('error rcodes', async (t) => {
  const l = await server(t);
  const q = makeQuery(`svc1.testns.svc.${Z}`, 'A');
  const noQ = Buffer.from(q);
  noQ.writeUInt16BE(0, 4);
  t.equal(decode((await udpRaw(l.udpPort, noQ.subarray(0, 12)))!).rcode, 'FORMERR', 'qdcount 0');
  const twoQ = Buffer.from(q);
  twoQ.writeUInt16BE(2, 4);
  t.equal(decode((await udpRaw(l.udpPort, twoQ))!).rcode, 'FORMERR', 'qdcount 2');
  t.equal((await udpRaw(l.udpPort, q.subarray(0, q.length - 3)))![3]! & 0xf, 1, 'truncated question: FORMERR');
  const status = Buffer.from(q);
  status[2] = (status[2]! & 0x87) | (2 << 3);
  const st = await udpRaw(l.udpPort, status);
  t.equal(st![3]! & 0xf, 4, 'opcode STATUS: NOTIMP');
  t.equal(decode(await udpExchange(l.udpPort, makeQuery(`svc1.testns.svc.${Z}`, 'A', { qclass: 'CH' }))).rcode, 'REFUSED', 'class CH');
  t.equal(decode(await udpExchange(l.udpPort, makeQuery(`svc1.testns.svc.${Z}`, 'IXFR'))).rcode, 'REFUSED', 'IXFR');
  const label64 = Buffer.from(q);
  label64[12] = 64;
  t.equal((await udpRaw(l.udpPort, label64))![3]! & 0xf, 1, 'label over 63: FORMERR');
  const ptr = Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  t.equal((await udpRaw(l.udpPort, ptr))![3]! & 0xf, 1, 'compression pointer in the question: FORMERR');
});

t.test('dropped: shorter than a header, or a response', async (t) => {
  const l = await server(t);
  t.equal(await udpRaw(l.udpPort, Buffer.from([1, 2, 3])), undefined, 'short packet dropped');
  const resp = makeQuery(`svc1.testns.svc.${Z}`, 'A');
  resp[2]! |= 0x80;
  t.equal(await udpRaw(l.udpPort, resp), undefined, 'QR set: dropped');
  t.equal(decode(await udpExchange(l.udpPort, makeQuery(`svc1.testns.svc.${Z}`, 'A'))).rcode, 'NOERROR', 'still serving');
});

t.test('random and mutated packets never crash the server; replies echo id and question', async (t) => {
  const l = await server(t);
  const seed = makeQuery(`_http._tcp.hdls1.testns.svc.${Z}`, 'SRV', { edns: 1232 });
  let replies = 0;
  for (let i = 0; i < 900; i++) {
    let msg: Buffer;
    if (i % 3 === 0) {
      msg = Buffer.from(Array.from({ length: 1 + Math.floor(Math.random() * 80) }, () => Math.floor(Math.random() * 256)));
    } else {
      msg = Buffer.from(seed);
      for (let k = 0; k < 1 + (i % 4); k++) msg[12 + Math.floor(Math.random() * (msg.length - 12))] = Math.floor(Math.random() * 256);
      if (i % 5 === 0) msg = msg.subarray(0, 12 + Math.floor(Math.random() * (msg.length - 12)));
      msg[2]! &= 0x7f;
    }
    const out = await udpRaw(l.udpPort, msg, 40);
    if (out === undefined) continue;
    replies++;
    t.equal(out.readUInt16BE(0), msg.readUInt16BE(0), 'id echoed');
    const dec = dnsPacket.decode(out);
    const qd = out.readUInt16BE(4);
    if (qd === 1) t.equal(dec.questions?.[0]?.type !== undefined, true, 'question decodes');
  }
  t.ok(replies > 300, `${replies} replies`);
  t.equal(decode(await udpExchange(l.udpPort, makeQuery(`svc1.testns.svc.${Z}`, 'A'))).rcode, 'NOERROR', 'still serving');
});

t.test('TCP: pipelined queries on one connection, answered in order', async (t) => {
  const l = await server(t);
  const names = ['svc1', 'svc6', 'dual', 'hdls1', 'nope'].map((n) => `${n}.testns.svc.${Z}`);
  const msgs = names.map((n, i) => makeQuery(n, 'A', { id: 100 + i }));
  const replies = await tcpExchange(l.tcpPort, msgs);
  t.same(replies.map((r) => decode(r).id), [100, 101, 102, 103, 104]);
  t.same(replies.map((r) => decode(r).rcode), ['NOERROR', 'NOERROR', 'NOERROR', 'NOERROR', 'NXDOMAIN']);
});

t.test('TCP: a query split across segments, byte by byte', async (t) => {
  const l = await server(t);
  const q = makeQuery(`svc1.testns.svc.${Z}`, 'A');
  const frame = Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
  const sock = net.connect(l.tcpPort, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  for (const b of frame) {
    sock.write(Buffer.from([b]));
    await new Promise((r) => setImmediate(r));
  }
  const reply = await new Promise<Buffer>((r) => sock.once('data', r));
  sock.destroy();
  t.equal(decode(reply.subarray(2)).rcode, 'NOERROR');
});

t.test('TCP: idle connections are closed; a bad length closes; the cap holds', async (t) => {
  const l = await server(t, { idle: 200, maxConns: 3 });
  const closed = (s: net.Socket) => new Promise<void>((r) => s.once('close', () => r()));
  const s1 = net.connect(l.tcpPort, '127.0.0.1');
  const start = Date.now();
  await closed(s1);
  t.ok(Date.now() - start >= 150, 'idle connection closed after the timeout');
  const s2 = net.connect(l.tcpPort, '127.0.0.1');
  s2.write(Buffer.from([0, 5, 1, 2, 3, 4, 5]));
  await closed(s2);
  t.pass('a frame shorter than a header closes the connection');
  const held = [1, 2, 3].map(() => net.connect(l.tcpPort, '127.0.0.1'));
  await Promise.all(held.map((s) => new Promise((r) => s.once('connect', r))));
  await new Promise((r) => setTimeout(r, 50));
  t.equal(l.tcpConnections(), 3);
  const extra = net.connect(l.tcpPort, '127.0.0.1');
  await closed(extra);
  t.pass('a fourth connection is closed at once');
  held.forEach((s) => s.destroy());
});
