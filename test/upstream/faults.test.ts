/**
 * Upstream faults, over real sockets through a real DnsHandler + listen(): servers that
 * are down (closed port, black hole), slow, truncating, returning garbage or SERVFAIL,
 * or forwarding back to us (a loop); the concurrency limit; serve-stale; prefetch;
 * close(). Knot is the healthy server where one is needed.
 *
 * The test servers check health every 100 ms with 200 ms timeouts (see _server.ts) so
 * that "down" is reached quickly; timing bounds are generous (CI machines are slow).
 */
import t from 'tap';
import { parseQuery } from '../../src/dns/query.js';
import { Rcode } from '../../src/dns/constants.js';
import { Forwarder } from '../../src/upstream/index.js';
import { makeQuery, decode } from '../helpers/dns.js';
import { closedPort, fakeUpstream } from '../helpers/fake-upstream.js';
import { KNOT_ZONE, sharedKnot } from '../helpers/knot.js';
import { memoryLog, sleep, startServer, ttlOf, waitFor } from './_server.js';

const Z = KNOT_ZONE;
const needKnot = sharedKnot(t);

t.test('a closed port fails over at once to the next server', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const K = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const dead = { host: '127.0.0.1', port: await closedPort() };
  const s = await startServer(t, { upstreams: [dead, K()], policy: 'sequential', loopDetection: false });
  const a = await s.udp(`www.${Z}`);
  t.equal(a.rcode, 'NOERROR');
  t.same(a.answer, [`www.${Z}. 30 IN A 192.0.2.1`]);
  t.ok(a.ms < 500, `answered in ${a.ms.toFixed(0)} ms (port unreachable is immediate)`);
  const st = s.fwd.stats().upstreams;
  t.equal(st[0]!.errors.unreachable, 1);
  t.equal(st[1]!.responses.NOERROR, 1);
  t.ok(await waitFor(() => !s.fwd.stats().upstreams[0]!.healthy), 'health checks mark it down');
});

t.test('a black hole: failover within the timeout, then health checks skip it', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const K = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const hole = await fakeUpstream(t, { kind: 'drop' });
  const s = await startServer(t, { upstreams: [hole, K()], policy: 'sequential', loopDetection: false });
  const a = await s.udp(`www.${Z}`);
  t.same(a.answer, [`www.${Z}. 30 IN A 192.0.2.1`]);
  t.ok(a.ms > 800 && a.ms < 1800, `first query waits its share of 2 s on the black hole, then Knot (${a.ms.toFixed(0)} ms)`);
  t.equal(s.fwd.stats().upstreams[0]!.errors.timeout, 1);
  t.ok(await waitFor(() => !s.fwd.stats().upstreams[0]!.healthy), 'down after 2 failed `. NS` checks');
  t.ok(hole.count('.') >= 2, `health checks are \`. IN NS\` queries (${hole.count('.')})`);
  const b = await s.udp(`alias.${Z}`);
  t.equal(b.rcode, 'NOERROR');
  t.ok(b.ms < 300, `next query goes straight to the healthy server (${b.ms.toFixed(0)} ms)`);
  t.equal(hole.count(`alias.${Z}`), 0, 'the down server was not asked');
  t.match(s.logs, [{ level: 'warn', msg: /upstream down/ }]);

  // It comes back: checks go on until one is answered.
  hole.mode = { kind: 'answer' };
  t.ok(await waitFor(() => s.fwd.stats().upstreams[0]!.healthy), 'healthy again after an answered check');
  t.equal(s.fwd.stats().upstreams[0]!.fails, 0);
  t.match(s.logs, [{ level: 'warn', msg: /upstream down/ }, { level: 'info', msg: /answering again/ }]);
});

t.test('every server down: SERVFAIL in about 2 s, never a hang', async (t) => {
  const h1 = await fakeUpstream(t, { kind: 'drop' });
  const h2 = await fakeUpstream(t, { kind: 'drop' });
  const s = await startServer(t, { upstreams: [h1, h2], loopDetection: false });
  const [a, b] = await Promise.all([s.udp('down.example.org'), s.tcp('down2.example.org', 'AAAA')]);
  for (const r of [a, b]) {
    t.equal(r.rcode, 'SERVFAIL');
    t.ok(r.ms > 1000 && r.ms < 3500, `SERVFAIL after ${r.ms.toFixed(0)} ms`);
  }
  t.equal(h1.count('down.example.org') + h2.count('down.example.org'), 2, 'both servers were tried');
  t.equal(s.fwd.stats().failures, 2);
  // Both are down now; they are tried anyway (maybe the marks are stale).
  await waitFor(() => s.fwd.stats().upstreams.every((u) => !u.healthy));
  h2.mode = { kind: 'answer' };
  const c = await s.udp('back.example.org');
  t.equal(c.rcode, 'NOERROR', 'all down: all are tried anyway, and one answers');
  // Cluster names never depended on upstreams.
  t.equal((await s.udp('kubernetes.default.svc.cluster.local')).rcode, 'NOERROR');

  const closed = await startServer(t, { upstreams: [{ host: '127.0.0.1', port: await closedPort() }], loopDetection: false });
  const c2 = await closed.udp('x.example.org');
  t.equal(c2.rcode, 'SERVFAIL');
  t.ok(c2.ms < 500, `unreachable only: SERVFAIL at once (${c2.ms.toFixed(0)} ms)`);
});

t.test('slow servers', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const K = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const slow = await fakeUpstream(t, { kind: 'slow', delayMs: 600 });
  const s = await startServer(t, { upstreams: [slow], loopDetection: false });
  const a = await s.udp('slow.example.org');
  t.equal(a.rcode, 'NOERROR');
  t.ok(a.ms >= 550 && a.ms < 1500, `a slow answer within the timeout is taken (${a.ms.toFixed(0)} ms)`);

  const slower = await fakeUpstream(t, { kind: 'slow', delayMs: 3000 });
  const s2 = await startServer(t, { upstreams: [slower, K()], policy: 'sequential', loopDetection: false });
  const b = await s2.udp(`www.${Z}`);
  t.same(b.answer, [`www.${Z}. 30 IN A 192.0.2.1`]);
  t.ok(b.ms > 800 && b.ms < 1800, `too slow: failover to the next server (${b.ms.toFixed(0)} ms)`);
});

t.test('garbage replies are ignored, never trusted, never a crash', async (t) => {
  await Promise.all(
    (['random', 'wrong-id', 'wrong-question', 'all'] as const).map(async (variant) => {
      const g = await fakeUpstream(t, { kind: 'garbage', variant });
      const s = await startServer(t, { upstreams: [g], loopDetection: false, timeoutMs: 1200 });
      const [a, tcp] = await Promise.all([s.udp('junk.example.org'), s.tcp('junk2.example.org')]);
      t.equal(a.rcode, 'SERVFAIL', `${variant}: SERVFAIL`);
      t.ok(a.ms > 1000 && a.ms < 2500, `${variant}: after the timeout (${a.ms.toFixed(0)} ms)`);
      t.ok(s.fwd.stats().upstreams[0]!.ignored >= 2, `${variant}: counted as ignored`);
      t.equal(tcp.rcode, 'SERVFAIL', `${variant}: SERVFAIL to a TCP client too`);
      t.equal((await s.udp('kubernetes.default.svc.cluster.local')).rcode, 'NOERROR', `${variant}: the server is fine`);
    }),
  );
  // An off-path spoofer racing the real answer (RFC 5452): the real one is taken.
  const g = await fakeUpstream(t, { kind: 'garbage', variant: 'then-answer', ip: '198.51.100.7' });
  const s = await startServer(t, { upstreams: [g], loopDetection: false });
  const a = await s.udp('spoofed.example.org');
  t.same(a.answer, ['spoofed.example.org. 30 IN A 198.51.100.7']);
  t.ok(a.ms < 500);
  t.equal(s.fwd.stats().upstreams[0]!.ignored, 3, 'random bytes, wrong ID and wrong question ignored');
});

t.test('SERVFAIL from a server: the next one is tried; alone, it is passed on and not cached', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const K = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  const bad = await fakeUpstream(t, { kind: 'rcode', rcode: Rcode.SERVFAIL });
  const s = await startServer(t, { upstreams: [bad, K()], policy: 'sequential', loopDetection: false });
  const a = await s.udp(`www.${Z}`);
  t.same(a.answer, [`www.${Z}. 30 IN A 192.0.2.1`]);
  t.ok(a.ms < 500, 'failover on SERVFAIL is immediate');
  t.equal(s.fwd.stats().upstreams[0]!.errors.servfail, 1);

  const only = await startServer(t, { upstreams: [bad], loopDetection: false });
  const b1 = await only.udp('sf.example.org');
  const b2 = await only.udp('sf.example.org');
  t.equal(b1.rcode, 'SERVFAIL');
  t.equal(b2.rcode, 'SERVFAIL');
  t.equal(bad.count('sf.example.org'), 2, 'SERVFAIL is never cached');
  const refused = await fakeUpstream(t, { kind: 'rcode', rcode: Rcode.REFUSED });
  const r = await startServer(t, { upstreams: [refused], loopDetection: false });
  t.equal((await r.udp('rf.example.org')).rcode, 'REFUSED', "an upstream's REFUSED, when no server does better");
});

t.test('a server that always truncates over UDP is asked over TCP', async (t) => {
  const tr = await fakeUpstream(t, { kind: 'truncate', ip: '198.51.100.10', count: 3 });
  const s = await startServer(t, { upstreams: [tr], loopDetection: false });
  const a = await s.udp('trunc.example.org', 'A', { edns: false });
  t.equal(a.rcode, 'NOERROR');
  t.notOk(a.tc);
  t.same(a.answer, ['trunc.example.org. 30 IN A 198.51.100.10', 'trunc.example.org. 30 IN A 198.51.100.11', 'trunc.example.org. 30 IN A 198.51.100.12']);
  t.same(
    tr.received.filter((q) => q.name === 'trunc.example.org').map((q) => q.transport),
    ['udp', 'tcp'],
  );
  // TCP broken: the truncated reply is passed on (TC tells the client to use TCP) rather than SERVFAIL.
  tr.mode = { kind: 'truncate', tcp: 'close' };
  const b = await s.udp('trunc2.example.org', 'A', { edns: false });
  t.equal(b.rcode, 'NOERROR');
  t.ok(b.tc, 'TC passed on');
  t.equal(s.fwd.stats().upstreams[0]!.errors.truncated, 1);
  await s.udp('trunc2.example.org', 'A', { edns: false });
  t.equal(tr.count('trunc2.example.org'), 4, 'a truncated reply is not cached (UDP+TCP twice)');
  // Garbage over TCP is not taken either.
  tr.mode = { kind: 'truncate', tcp: 'garbage' };
  const c = await s.udp('trunc3.example.org', 'A', { edns: false });
  t.ok(c.tc, 'garbage over TCP: the truncated UDP reply is what we have');
  t.equal(c.answer.length, 0);
  t.equal(s.fwd.stats().upstreams[0]!.errors.truncated, 3);
});

t.test('maxConcurrent: queries beyond the limit are REFUSED at once', async (t) => {
  const slow = await fakeUpstream(t, { kind: 'slow', delayMs: 800 });
  const s = await startServer(t, { upstreams: [slow], maxConcurrent: 3, loopDetection: false });
  const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => s.udp(`c${i}.example.org`)));
  const refused = replies.filter((r) => r.rcode === 'REFUSED');
  const answered = replies.filter((r) => r.rcode === 'NOERROR');
  t.equal(refused.length, 3, 'three over the limit');
  t.equal(answered.length, 3);
  for (const r of refused) t.ok(r.ms < 400, `REFUSED without waiting (${r.ms.toFixed(0)} ms)`);
  for (const r of answered) t.ok(r.ms >= 700, 'the others waited for the slow server');
  t.equal(s.fwd.stats().maxConcurrentRejects, 3);
  t.equal(s.fwd.stats().inFlight, 0);
  // Cached names do not count against the limit.
  const hold = Promise.all(Array.from({ length: 3 }, (_, i) => s.udp(`d${i}.example.org`)));
  await sleep(100);
  t.equal((await s.udp('c0.example.org')).rcode, 'NOERROR', 'a cache hit is served while the limit is reached');
  await hold;
});

t.test('serve-stale: expired answers are served (TTL 30) when every server fails', async (t) => {
  const f = await fakeUpstream(t, { kind: 'answer', ip: '198.51.100.20', ttl: 1 });
  const s = await startServer(t, { upstreams: [f], loopDetection: false, timeoutMs: 1000 });
  const a = await s.udp('stale.example.org');
  t.same(a.answer, ['stale.example.org. 1 IN A 198.51.100.20']);
  await sleep(1100);
  f.mode = { kind: 'drop' };
  const b = await s.udp('stale.example.org');
  t.equal(b.rcode, 'NOERROR');
  t.same(b.answer, ['stale.example.org. 30 IN A 198.51.100.20'], 'stale, TTL 30 (RFC 8767 §4)');
  t.ok(b.ms > 900 && b.ms < 2500, `after the upstream timeout (${b.ms.toFixed(0)} ms)`);
  t.equal(s.fwd.stats().cache.staleServed, 1);
  await f.close();
  const c = await s.tcp('stale.example.org');
  t.same(c.answer, ['stale.example.org. 30 IN A 198.51.100.20']);
  t.ok(c.ms < 500, 'unreachable: stale at once');
  // The server recovers: fresh answers again.
  const f2 = await fakeUpstream(t, { kind: 'answer', ip: '198.51.100.21', ttl: 1 });
  s.fwd.setUpstreams([f2]);
  t.same((await s.udp('stale.example.org')).answer, ['stale.example.org. 1 IN A 198.51.100.21']);

  const off = await fakeUpstream(t, { kind: 'answer', ttl: 1 });
  const s2 = await startServer(t, { upstreams: [off], loopDetection: false, cache: { serveStale: 0 } });
  await s2.udp('nostale.example.org');
  await sleep(1100);
  await off.close();
  t.equal((await s2.udp('nostale.example.org')).rcode, 'SERVFAIL', 'serveStale: 0 turns it off');
});

t.test('prefetch refreshes a popular entry before it expires', async (t) => {
  const f = await fakeUpstream(t, { kind: 'answer', ip: '198.51.100.30', ttl: 300 });
  const s = await startServer(t, { upstreams: [f], loopDetection: false, cache: { maxTTL: 2, prefetch: { amount: 3, percentage: 50 } } });
  for (let i = 0; i < 3; i++) await s.udp('hot.example.org');
  t.equal(f.count('hot.example.org'), 1);
  await sleep(1100); // less than 50% of the 2 s lifetime left
  const a = await s.udp('hot.example.org');
  t.equal(ttlOf(a.answer[0]), 1, 'served from the cache, counted down');
  t.ok(await waitFor(() => f.count('hot.example.org') === 2, 1000), 'refreshed in the background');
  t.equal(s.fwd.stats().cache.prefetches, 1);
  await sleep(1000); // the old entry has expired; the prefetched one has not
  const b = await s.udp('hot.example.org');
  t.equal(b.rcode, 'NOERROR');
  t.equal(s.fwd.stats().cache.misses, 1, 'no miss after the first');
  t.equal(f.count('hot.example.org'), 2);
  // A cold entry (one hit) is not prefetched.
  await s.udp('cold.example.org');
  await sleep(1100);
  await s.udp('cold.example.org');
  await sleep(50);
  t.equal(f.count('cold.example.org'), 1);
  t.equal(s.fwd.stats().cache.prefetches, 1);
});

t.test('a forwarding loop is detected, reported and not used', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const K = (): { host: string; port: number } => ({ host: knot.host, port: knot.port });
  // The looping server relays to our port, so it is made once we listen; setUpstreams()
  // on a started forwarder probes again.
  const s = await startServer(t, { upstreams: [], policy: 'sequential' });
  const back = await fakeUpstream(t, { kind: 'forward', port: s.port });
  const loopAddr = `127.0.0.1:${back.port}`;
  s.fwd.setUpstreams([back, K()]);
  t.ok(await waitFor(() => s.fwd.loopDetected().length === 1, 5000), 'the probe came back to us');
  t.same(s.fwd.loopDetected(), [loopAddr]);
  t.match(s.logs, [{ level: 'error', msg: /forwarding loop detected/, fields: { upstream: loopAddr } }]);
  const st = s.fwd.stats().upstreams.find((u) => u.address === loopAddr)!;
  t.equal(st.loop, true);
  t.equal(st.healthy, false);
  const a = await s.udp(`www.${Z}`);
  t.same(a.answer, [`www.${Z}. 30 IN A 192.0.2.1`], 'answered by the other server');
  t.ok(a.ms < 300);
  t.equal(back.count(`www.${Z}`), 0, 'the looping server is not used');

  // Only a looping server: SERVFAIL at once, nothing sent round the loop.
  const s2 = await startServer(t, { upstreams: [], loopDetection: true });
  const back2 = await fakeUpstream(t, { kind: 'forward', port: s2.port });
  s2.fwd.setUpstreams([back2]);
  t.ok(await waitFor(() => s2.fwd.loopDetected().length === 1, 5000));
  const before = back2.received.length;
  const b = await s2.udp('anything.example.org');
  t.equal(b.rcode, 'SERVFAIL');
  t.ok(b.ms < 300);
  t.equal(back2.received.length, before, 'no query went to the loop');
});

t.test('upstreams that are this server are dropped', async (t) => {
  const { log, logs } = memoryLog();
  const fwd = new Forwarder({ upstreams: [{ host: '127.0.0.1', port: 5353 }], selfAddresses: [{ host: '0.0.0.0', port: 5353 }], log });
  t.teardown(() => fwd.close());
  t.equal(fwd.hasUpstreams, false);
  t.match(logs, [{ level: 'error', msg: /this server itself/ }]);
  const req = makeQuery('x.example.org', 'A');
  const p = parseQuery(req);
  if (p.kind !== 'query') throw new Error('bad query');
  const out = await fwd.forward(p.query, req, 'udp');
  t.equal(decode(out!).rcode, 'REFUSED', 'no upstream: REFUSED (as --no-upstream)');
});

t.test('close() ends pending queries with SERVFAIL and leaves no sockets or timers', async (t) => {
  const hole = await fakeUpstream(t, { kind: 'drop' });
  const count = (): number => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap' || r === 'TCPWrap' || r === 'Timeout').length;
  await sleep(100); // earlier tests' teardowns settle
  const before = count();
  const fwd = new Forwarder({ upstreams: [hole], healthCheckIntervalMs: 50 });
  fwd.start();
  const reqs = ['a.example.org', 'b.example.org'].map((n) => makeQuery(n, 'A', { edns: 1232 }));
  const pending = reqs.map((req) => {
    const p = parseQuery(req);
    if (p.kind !== 'query') throw new Error('bad query');
    return fwd.forward(p.query, req, 'udp');
  });
  await sleep(50);
  t.ok(count() > before, 'sockets and timers in use');
  const t0 = performance.now();
  await fwd.close();
  const outs = await Promise.all(pending);
  t.ok(performance.now() - t0 < 200, 'close does not wait for the timeout');
  for (const o of outs) t.equal(decode(o!).rcode, 'SERVFAIL');
  await sleep(20);
  t.ok(count() <= before, `nothing left behind (${count()} handles, ${before} before)`);
  const req = makeQuery('c.example.org', 'A');
  const p = parseQuery(req);
  if (p.kind === 'query') t.equal(decode((await fwd.forward(p.query, req, 'udp'))!).rcode, 'SERVFAIL', 'closed: SERVFAIL');
});
