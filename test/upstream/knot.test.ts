/**
 * Forwarding to a real resolver: Knot DNS serving `example.test` on a loopback port,
 * queried through a real DnsHandler + listen() over UDP and TCP. Covers answers,
 * cache hits with TTLs counted down, negative caching (RFC 2308), TCP retry on TC and
 * the client's own size limit, lookup() for the ExternalName chase, stub domains and
 * the cache bounds.
 */
import t from 'tap';
import { Rcode, Type } from '../../src/dns/constants.js';
import { rrText } from '../../src/dns/rr.js';
import { fakeUpstream } from '../helpers/fake-upstream.js';
import { KNOT_ZONE, sharedKnot } from '../helpers/knot.js';
import { sleep, startServer, ttlOf } from './_server.js';

const Z = KNOT_ZONE;
const needKnot = sharedKnot(t);

t.test('names served by Knot resolve over UDP and TCP, uncached then cached', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const up = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const s = await startServer(t, { upstreams: [up()] });
  const a1 = await s.udp(`www.${Z}`, 'A');
  t.equal(a1.rcode, 'NOERROR');
  t.same(a1.answer, [`www.${Z}. 30 IN A 192.0.2.1`], 'TTL 300 capped at cache.maxTTL 30');
  t.equal(a1.id, 4242, 'client id');
  t.ok(a1.ra, 'RA set');
  t.ok(a1.aa, 'AA as the upstream set it (Knot is authoritative for example.test)');
  t.ok(a1.opt, 'the client sent EDNS: the reply has an OPT');
  const st1 = s.fwd.stats();
  t.equal(st1.cache.misses, 1);
  t.equal(st1.cache.hits.success, 0);

  const a2 = await s.tcp(`www.${Z}`, 'A', { edns: false });
  t.same(a2.answer, [`www.${Z}. 30 IN A 192.0.2.1`], 'same answer over TCP from the cache');
  t.equal(a2.opt, undefined, 'no EDNS from the client: no OPT');
  t.equal(s.fwd.stats().cache.hits.success, 1, 'cache hit counted');
  t.equal(s.fwd.stats().upstreams[0]!.requests, 1, 'Knot asked once');

  const six = await s.tcp(`www.${Z}`, 'AAAA');
  t.same(six.answer, [`www.${Z}. 30 IN AAAA 2001:db8::1`]);
  const chain = await s.udp(`chain.${Z}`, 'A');
  t.same(chain.answer, [`chain.${Z}. 30 IN CNAME alias.${Z}.`, `alias.${Z}. 30 IN CNAME www.${Z}.`, `www.${Z}. 30 IN A 192.0.2.1`], 'CNAME chain as Knot gives it');

  // The client's letter case comes back in the question (0x20 clients rely on it).
  const mixed = await s.udp(`WwW.ExAmPlE.TeSt`, 'A');
  t.equal(mixed.question, 'WwW.ExAmPlE.TeSt IN A');
  t.equal(mixed.answer.length, 1);
  t.equal(s.fwd.stats().cache.hits.success, 2, 'the mixed-case query hit the same entry');

  // Cluster names are still ours, authoritative, not forwarded.
  const k8s = await s.udp('kubernetes.default.svc.cluster.local', 'A');
  t.same(k8s.answer, ['kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1']);
  t.ok(k8s.aa);
  t.equal(s.fwd.stats().upstreams[0]!.requests, 3, 'www A, www AAAA, chain A: three upstream queries');
});

t.test('cached answers are served with TTLs counted down', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const up = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const s = await startServer(t, { upstreams: [up()], cache: { maxTTL: 600 } });
  const a1 = await s.udp(`www.${Z}`);
  t.equal(ttlOf(a1.answer[0]), 300, 'first answer: the upstream TTL (under maxTTL)');
  await sleep(1100);
  const a2 = await s.udp(`www.${Z}`);
  t.ok(ttlOf(a2.answer[0]) <= 299 && ttlOf(a2.answer[0]) >= 297, `after ~1 s the TTL is counted down (${ttlOf(a2.answer[0])})`);
  t.equal(s.fwd.stats().cache.hits.success, 1);
  const sh = await s.udp(`short.${Z}`);
  t.equal(ttlOf(sh.answer[0]), 5, 'a record TTL below maxTTL is kept');
});

t.test('negative answers are cached from the SOA, capped at maxNegativeTTL', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const up = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const s = await startServer(t, { upstreams: [up()] });
  const nx = await s.udp(`nope.${Z}`);
  t.equal(nx.rcode, 'NXDOMAIN');
  t.equal(ttlOf(nx.ns[0]), 5, 'SOA TTL min(3600, MINIMUM 60) capped at 5');
  t.match(nx.ns[0], / SOA ns\.example\.test\. /);
  const nodata = await s.tcp(`txtonly.${Z}`, 'A');
  t.equal(nodata.rcode, 'NOERROR');
  t.same(nodata.answer, []);
  t.equal(ttlOf(nodata.ns[0]), 5);
  await s.udp(`nope.${Z}`);
  await s.udp(`txtonly.${Z}`);
  t.equal(s.fwd.stats().cache.hits.denial, 2, 'both negative answers came from the cache');
  t.equal(s.fwd.stats().cache.entries.denial, 2);

  // With a 1 s cap, the entry is gone after a second.
  const s1 = await startServer(t, { upstreams: [up()], cache: { maxNegativeTTL: 1 } });
  await s1.udp(`nope.${Z}`);
  await s1.udp(`nope.${Z}`);
  t.equal(s1.fwd.stats().upstreams[0]!.requests, 1);
  await sleep(1050);
  const again = await s1.udp(`nope.${Z}`);
  t.equal(again.rcode, 'NXDOMAIN');
  t.equal(s1.fwd.stats().upstreams[0]!.requests, 2, 'expired: asked Knot again');
});

t.test('truncation: TCP retry upstream, and the client gets what fits its size', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const up = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const s = await startServer(t, { upstreams: [up()] });
  // 100 A records (~1.6 KB): Knot truncates over UDP (1232), the forwarder asks over TCP.
  const big = await s.udp(`big.${Z}`, 'A', { edns: 4096 });
  t.equal(big.answer.length, 100, 'all 100 records to a 4096-byte EDNS client');
  t.notOk(big.tc);
  const st = s.fwd.stats().upstreams[0]!;
  t.equal(st.tcpRequests, 1, 'one TCP retry');
  t.equal(st.requests, 2, 'UDP, then TCP');

  const plain = await s.udp(`big.${Z}`, 'A', { edns: false });
  t.ok(plain.tc, 'a 512-byte client gets TC');
  t.ok(plain.size <= 512, `reply within 512 bytes (${plain.size})`);
  t.ok(plain.answer.length > 0 && plain.answer.length < 100, `cut at whole records (${plain.answer.length} kept)`);
  t.equal(plain.opt, undefined, 'and no OPT');
  const e1232 = await s.udp(`big.${Z}`, 'A', { edns: 1232 });
  t.ok(e1232.tc);
  t.ok(e1232.size <= 1232);
  t.ok(e1232.opt, 'an EDNS client keeps its OPT in a truncated reply');
  const tcp = await s.tcp(`big.${Z}`, 'A', { edns: false });
  t.equal(tcp.answer.length, 100, 'TCP client: everything, from the cache');
  t.equal(s.fwd.stats().upstreams[0]!.requests, 2, 'no more upstream queries');

  // 40 records (~700 B) fit Knot's UDP reply: no TCP upstream, but TC to a 512 client.
  const mid = await s.udp(`mid.${Z}`, 'A', { edns: false });
  t.ok(mid.tc);
  t.equal(s.fwd.stats().upstreams[0]!.tcpRequests, 1, 'mid needed no TCP upstream');
  const midAll = await s.udp(`mid.${Z}`, 'A', { edns: 1232 });
  t.equal(midAll.answer.length, 40);
  t.notOk(midAll.tc);
});

t.test('lookup() for the ExternalName chase', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const up = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const s = await startServer(t, { upstreams: [up()] });
  const r = await s.fwd.lookup(`alias.${Z}.`, Type.A);
  t.equal(r.rcode, Rcode.NOERROR);
  t.notOk(r.tc);
  t.same(r.answer.map(rrText), [`alias.${Z}.\t30\tIN\tCNAME\twww.${Z}.`, `www.${Z}.\t30\tIN\tA\t192.0.2.1`]);
  const six = await s.fwd.lookup(`WWW.${Z}`, Type.AAAA);
  t.same(six.answer.map(rrText), [`www.${Z}.\t30\tIN\tAAAA\t2001:db8::1`]);
  const big = await s.fwd.lookup(`big.${Z}`, Type.A);
  t.equal(big.answer.length, 100, 'a big answer comes whole (TCP upstream)');
  const nx = await s.fwd.lookup(`nope.${Z}`, Type.A);
  t.equal(nx.rcode, Rcode.NXDOMAIN);
  t.same(nx.answer, []);
  await s.fwd.lookup(`alias.${Z}`, Type.A);
  t.equal(s.fwd.stats().cache.hits.success, 1, 'lookup goes through the cache');
  // A client query for the same name shares the entry.
  const viaClient = await s.udp(`alias.${Z}`, 'A', { edns: false });
  t.equal(viaClient.answer.length, 2);
  t.equal(s.fwd.stats().cache.hits.success, 2);
  const bad = await s.fwd.lookup('a..b', Type.A);
  t.equal(bad.rcode, Rcode.SERVFAIL, 'an unwritable name fails without a query');
});

t.test('stub domains: the longest suffix picks the servers', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const up = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const root = await fakeUpstream(t, { kind: 'answer', ip: '198.51.100.1' });
  const deep = await fakeUpstream(t, { kind: 'answer', ip: '198.51.100.2' });
  const s = await startServer(t, {
    upstreams: [root],
    stubDomains: { 'Example.TEST.': [up()], [`deep.${Z}`]: [deep] },
  });
  t.same((await s.udp(`www.${Z}`)).answer, [`www.${Z}. 30 IN A 192.0.2.1`], 'example.test → Knot');
  t.same((await s.udp(`x.deep.${Z}`)).answer, [`x.deep.${Z}. 30 IN A 198.51.100.2`], 'deep.example.test → its own server');
  t.same((await s.udp(`deep.${Z}`)).answer, [`deep.${Z}. 30 IN A 198.51.100.2`], 'the domain name itself too');
  t.same((await s.udp('elsewhere.org')).answer, ['elsewhere.org. 30 IN A 198.51.100.1'], 'the rest → default upstreams');
  t.same((await s.udp(`notexample.test`)).answer, ['notexample.test. 30 IN A 198.51.100.1'], 'a suffix match is on label boundaries');
  t.equal(root.count(`www.${Z}`), 0);
  t.equal(deep.count(`www.${Z}`), 0);
  const byDomain = Object.fromEntries(s.fwd.stats().upstreams.map((u) => [u.domain, u.requests]));
  t.same(byDomain, { '.': 2, [Z]: 1, [`deep.${Z}`]: 2 });
  const r = await s.fwd.lookup(`www.${Z}`, Type.A);
  t.same(r.answer.map(rrText), [`www.${Z}.\t30\tIN\tA\t192.0.2.1`], 'lookup() follows stub domains too');
});

t.test('the cache stays within its entry and byte bounds', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const up = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const byEntries = await startServer(t, { upstreams: [up()], cache: { maxEntries: 20 } });
  for (let i = 0; i < 60; i++) await byEntries.udp(`n${i}.wild.${Z}`);
  const e = byEntries.fwd.stats().cache;
  t.equal(e.size, 20, 'at most maxEntries');
  t.equal(e.evictions, 40);
  t.equal(e.entries.success, 20);
  // The newest are kept (LRU), the oldest went.
  await byEntries.udp(`n59.wild.${Z}`);
  await byEntries.udp(`n0.wild.${Z}`);
  t.equal(byEntries.fwd.stats().cache.hits.success, 1);

  const byBytes = await startServer(t, { upstreams: [up()], cache: { maxBytes: 3000 } });
  for (let i = 0; i < 60; i++) await byBytes.udp(`n${i}.wild.${Z}`);
  const b = byBytes.fwd.stats().cache;
  t.ok(b.bytes <= 3000, `bytes within maxBytes (${b.bytes})`);
  t.ok(b.size > 0 && b.size < 60, `some entries kept (${b.size})`);
  t.ok(b.evictions > 0);
  // An entry bigger than the whole cache is served but not kept.
  const big = await byBytes.udp(`big.${Z}`, 'A', { edns: 4096 });
  t.equal(big.answer.length, 100);
  t.ok(byBytes.fwd.stats().cache.bytes <= 3000);
});
