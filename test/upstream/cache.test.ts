/**
 * The answer cache on a fake clock: what is cached and for how long (maxTTL, RFC 2308
 * negative TTLs, never errors or TC), TTL countdown, serve-stale windows, entry and
 * byte bounds, prefetch decisions.
 */
import t from 'tap';
import * as dnsPacket from 'dns-packet';
import { Rcode, Type } from '../../src/dns/constants.js';
import { AnswerCache, cacheSlot, countdown, lifetime } from '../../src/upstream/cache.js';
import { checkReply, questionFor, type Scan } from '../../src/upstream/wire.js';

const NAME = 'www.example.org';
const Q = questionFor(NAME, Type.A)!;

function msg(p: { rcode?: number; tc?: boolean; answers?: dnsPacket.Answer[]; authorities?: dnsPacket.Answer[] }): { buf: Buffer; scan: Scan } {
  const buf = dnsPacket.encode({
    type: 'response',
    id: 1,
    flags: 0x8180 | (p.tc === true ? 0x200 : 0) | (p.rcode ?? 0),
    questions: [{ name: NAME, type: 'A', class: 'IN' }],
    answers: p.answers ?? [],
    authorities: p.authorities ?? [],
  });
  return { buf, scan: checkReply(buf, 1, Q)! };
}
const A = (ttl: number, ip = '192.0.2.1'): dnsPacket.Answer => ({ name: NAME, type: 'A', ttl, data: ip });
const SOA = (ttl: number, minimum: number): dnsPacket.Answer => ({
  name: 'example.org',
  type: 'SOA',
  ttl,
  data: { mname: 'ns.example.org', rname: 'h.example.org', serial: 1, refresh: 1, retry: 1, expire: 1, minimum },
});
const NS: dnsPacket.Answer = { name: 'example.org', type: 'NS', ttl: 300, data: 'ns.example.org' };

t.test('what is cached, and for how long', async (t) => {
  const life = (m: { scan: Scan }, maxTTL = 30, maxNeg = 5) => lifetime(m.scan, maxTTL, maxNeg);
  t.same(life(msg({ answers: [A(300), A(100, '192.0.2.2')] })), { ttl: 30, kind: 'success' }, 'capped at maxTTL');
  t.same(life(msg({ answers: [A(300), A(12, '192.0.2.2')] })), { ttl: 12, kind: 'success' }, 'the smallest record TTL');
  t.same(life(msg({ rcode: Rcode.NXDOMAIN, authorities: [SOA(3600, 60)] })), { ttl: 5, kind: 'denial' }, 'NXDOMAIN: min(SOA TTL, MINIMUM) capped at 5');
  t.same(life(msg({ rcode: Rcode.NXDOMAIN, authorities: [SOA(3600, 2)] })), { ttl: 2, kind: 'denial' }, 'SOA MINIMUM below the cap');
  t.same(life(msg({ rcode: Rcode.NXDOMAIN, authorities: [SOA(3, 60)] })), { ttl: 3, kind: 'denial' }, 'SOA TTL below MINIMUM');
  t.same(life(msg({ authorities: [SOA(3600, 60)] })), { ttl: 5, kind: 'denial' }, 'NODATA');
  t.same(life(msg({ rcode: Rcode.NXDOMAIN, authorities: [SOA(3600, 60)] }), 30, 600), { ttl: 60, kind: 'denial' });
  t.equal(life(msg({ rcode: Rcode.NXDOMAIN })), undefined, 'negative without SOA: not cached (RFC 2308 §5)');
  t.equal(life(msg({ authorities: [NS] })), undefined, 'a referral: not cached');
  t.equal(life(msg({ answers: [A(0)] })), undefined, 'TTL 0: not cached');
  for (const rcode of [Rcode.SERVFAIL, Rcode.REFUSED, Rcode.FORMERR, Rcode.NOTIMP]) {
    t.equal(life(msg({ rcode, authorities: [SOA(3600, 60)] })), undefined, `rcode ${rcode}: never cached`);
  }
  t.equal(life(msg({ tc: true, answers: [A(300)] })), undefined, 'truncated: never cached');
});

t.test('TTL countdown, expiry, serve-stale window', async (t) => {
  let now = 1_000_000;
  const c = new AnswerCache({ maxTTL: 30, serveStale: 60 });
  const slot = cacheSlot(Type.A, 1, false, false);
  const m = msg({ answers: [A(300), A(20, '192.0.2.2')] });
  const e = c.store(slot, NAME, m.buf, m.scan, now)!;
  t.equal(e.ttl, 20);
  t.equal(c.get(slot, NAME, now), e);
  now += 1999;
  const ttl = countdown(c.get(slot, NAME, now)!, now);
  t.equal(ttl(300), 19, 'whole seconds elapsed: 1');
  t.equal(ttl(20), 19);
  t.equal(ttl(5), 4, 'a record below the lifetime keeps counting from its own TTL');
  t.equal(ttl(1), 0, 'never negative');
  now += 18_001; // 20 s after storing: expired
  t.equal(c.get(slot, NAME, now), undefined, 'expired: a miss');
  t.equal(c.stale(slot, NAME, now), e, 'but servable stale');
  now += 59_999;
  t.equal(c.stale(slot, NAME, now), e, 'until serveStale seconds after expiry');
  now += 1;
  t.equal(c.stale(slot, NAME, now), undefined);
  t.equal(c.get(slot, NAME, now), undefined);
  t.equal(c.stats().size, 0, 'an entry past the stale window is deleted when seen');
  const s = c.stats();
  t.equal(s.hits.success, 2);
  t.equal(s.misses, 2);
  t.equal(s.staleServed, 2);

  const noStale = new AnswerCache({ serveStale: 0 });
  noStale.store(slot, NAME, m.buf, m.scan, 1);
  t.equal(noStale.stale(slot, NAME, 100_000), undefined, 'serveStale 0: off');
  t.not(cacheSlot(1, 1, true, false), cacheSlot(1, 1, false, false), 'DO is part of the key');
  t.not(cacheSlot(1, 1, false, true), cacheSlot(1, 1, false, false), 'CD is part of the key');
  t.not(cacheSlot(1, 3, false, false), cacheSlot(1, 1, false, false), 'so is the class');
  const off = new AnswerCache({ maxEntries: 0 });
  t.equal(off.store(slot, NAME, m.buf, m.scan, 1), undefined);
  t.equal(off.enabled, false, 'maxEntries 0 turns the cache off');
});

t.test('bounded by entries and by bytes', async (t) => {
  const m = msg({ answers: [A(300)] });
  const byCount = new AnswerCache({ maxEntries: 100 });
  for (let i = 0; i < 1000; i++) byCount.store(1, `k${i}`, m.buf, m.scan, 1);
  t.equal(byCount.stats().size, 100);
  t.equal(byCount.stats().evictions, 900);
  t.equal(byCount.stats().entries.success, 100);
  t.ok(byCount.get(1, 'k999', 2));
  t.equal(byCount.get(1, 'k0', 2), undefined, 'least recently used went first');

  const byBytes = new AnswerCache({ maxBytes: 10_000 });
  for (let i = 0; i < 1000; i++) byBytes.store(1, `k${i}`, m.buf, m.scan, 1);
  const s = byBytes.stats();
  t.ok(s.bytes <= 10_000 && s.bytes > 9_000, `bytes within the bound (${s.bytes})`);
  t.ok(s.size > 10 && s.size < 100, `${s.size} entries`);
  t.equal(s.entries.success, s.size);
  const big = msg({ answers: Array.from({ length: 400 }, (_, i) => A(300, `10.0.${i >> 8}.${i & 255}`)) });
  t.ok(byBytes.store(1, 'big', big.buf, big.scan, 1), 'an entry bigger than the cache is still returned for serving');
  t.equal(byBytes.get(1, 'big', 2), undefined, 'but not kept');
  t.ok(byBytes.stats().bytes <= 10_000);
  byBytes.clear();
  t.same(byBytes.stats().entries, { success: 0, denial: 0 });
  t.equal(byBytes.stats().bytes, 0);
});

t.test('prefetch: popular and nearly expired', async (t) => {
  const m = msg({ answers: [A(100)] });
  const c = new AnswerCache({ maxTTL: 100, prefetch: true });
  const e = c.store(1, 'k', m.buf, m.scan, 1)!;
  let now = 1;
  for (let i = 0; i < 9; i++) t.equal(c.wantsPrefetch(e, (now += 1000)), false);
  now = 1 + 91_000; // 9 s left < 10% of 100 s
  t.equal(c.wantsPrefetch(e, now), false, 'window of 60 s passed: hits counted afresh');
  const e2 = c.store(1, 'k2', m.buf, m.scan, 1)!;
  // The first hit after the 60 s window starts a new one (70 s); ten hits in it.
  for (let i = 0; i < 9; i++) c.wantsPrefetch(e2, 70_000 + i);
  t.equal(c.wantsPrefetch(e2, 70_010), false, '10 hits but 30% left');
  t.equal(c.wantsPrefetch(e2, 91_000), true, '11 hits in the window, under 10% left');
  e2.prefetching = true;
  t.equal(c.wantsPrefetch(e2, 91_001), false, 'one refresh at a time');
  const off = new AnswerCache({});
  t.equal(off.prefetchEnabled, false, 'off by default');
  t.equal(off.wantsPrefetch(e2, 91_002), false);
});
