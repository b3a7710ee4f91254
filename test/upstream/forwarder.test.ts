/**
 * The forwarder's miss path over real sockets to fake upstreams: identical concurrent
 * questions share one upstream query (and each client still gets its own ID and letter
 * case); maxConcurrent counts every waiting query; no timer and no socket per query
 * (deadlines in the wheel, a few sockets per server); the cache's entry and byte bounds
 * hold under a stream of unique names.
 */
import t, { type Test } from 'tap';
import * as dnsPacket from 'dns-packet';
import { parseQuery } from '../../src/dns/query.js';
import { Type } from '../../src/dns/constants.js';
import { Forwarder, type ForwarderOptions } from '../../src/upstream/index.js';
import { decode, makeQuery } from '../helpers/dns.js';
import { fakeUpstream } from '../helpers/fake-upstream.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(5);
  }
  return true;
}

function forwarder(t: Test, opts: ForwarderOptions): Forwarder {
  const f = new Forwarder({ loopDetection: false, ...opts });
  t.teardown(() => f.close());
  return f;
}

/** A query as wire bytes: `do`/`cd` set the DO bit (EDNS) and the CD flag. */
function query(name: string, type: string, id: number, o: { do?: boolean; cd?: boolean; edns?: boolean } = {}): Buffer {
  const edns = o.edns === true || o.do === true;
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED | (o.cd === true ? dnsPacket.CHECKING_DISABLED : 0),
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: o.do === true ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer] : [],
  });
}

function ask(f: Forwarder, req: Buffer): Promise<Buffer | undefined> {
  const p = parseQuery(req);
  if (p.kind !== 'query') throw new Error('bad query');
  return f.forward(p.query, req, 'udp');
}

t.test('identical concurrent misses share one upstream query; each client gets its own reply', async (t) => {
  const up = await fakeUpstream(t, { kind: 'slow', delayMs: 300, ip: '198.51.100.40' });
  const f = forwarder(t, { upstreams: [up] });
  const cases = ['www.example.org', 'WWW.Example.ORG', 'wWw.eXaMpLe.OrG'];
  const plain = Array.from({ length: 30 }, (_, i) => ({ req: query(cases[i % 3]!, 'A', 1000 + i), name: cases[i % 3]! }));
  const other = [
    { req: query('www.example.org', 'AAAA', 2000), name: 'www.example.org' },
    { req: query('www.example.org', 'AAAA', 2001), name: 'www.example.org' },
    { req: query('www.example.org', 'A', 2002, { do: true }), name: 'www.example.org' },
    { req: query('www.example.org', 'A', 2003, { do: true }), name: 'www.example.org' },
    { req: query('www.example.org', 'A', 2004, { cd: true }), name: 'www.example.org' },
  ];
  const all = [...plain, ...other];
  const pending = all.map((q) => ask(f, q.req));
  // The ExternalName chase asks the same question: it joins too.
  const looked = f.lookup('www.example.org', Type.A);
  await sleep(50);
  t.equal(f.stats().inFlight, all.length + 1, 'every waiting query counts as in flight');
  t.equal(f.stats().pendingExchanges, 4, 'four upstream queries: A, AAAA, A with DO, A with CD');
  const replies = await Promise.all(pending);
  const seen = up.received.filter((r) => r.name.toLowerCase() === 'www.example.org');
  t.equal(seen.filter((r) => r.type === 'A').length, 3, 'A three times (plain, DO, CD): DO and CD are part of the question');
  t.equal(seen.filter((r) => r.type === 'AAAA').length, 1, 'AAAA once for two clients');
  all.forEach((q, i) => {
    const d = decode(replies[i]!);
    t.equal(d.id, dnsPacket.decode(q.req).id, `client ${i}: its own ID`);
    t.equal(d.question.split(' ')[0], q.name, `client ${i}: its own letter case`);
    t.equal(d.rcode, 'NOERROR');
  });
  t.same(decode(replies[0]!).answer, ['www.example.org. 30 IN A 198.51.100.40']);
  t.same((await looked).answer.map((r) => (r.type === Type.A ? r.ip : r.type)), ['198.51.100.40'], 'the lookup shared it too');
  t.equal(f.stats().inFlight, 0);
  t.equal(f.stats().pendingExchanges, 0);
  // Then cached: no further upstream query.
  const again = await ask(f, query('WWW.EXAMPLE.ORG', 'A', 7));
  t.equal(decode(again!).id, 7);
  t.equal(up.received.filter((r) => r.name.toLowerCase() === 'www.example.org' && r.type === 'A').length, 3);
});

t.test('maxConcurrent counts every waiting query, shared or not', async (t) => {
  const up = await fakeUpstream(t, { kind: 'slow', delayMs: 300 });
  const f = forwarder(t, { upstreams: [up], maxConcurrent: 5 });
  const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => ask(f, query('same.example.org', 'A', i))));
  const rcodes = replies.map((r) => decode(r!).rcode);
  t.equal(rcodes.filter((r) => r === 'NOERROR').length, 5);
  t.equal(rcodes.filter((r) => r === 'REFUSED').length, 3);
  t.equal(up.count('same.example.org'), 1, 'the five waited on one upstream query');
  t.equal(f.stats().maxConcurrentRejects, 3);
});

t.test('no timer and no socket per query: deadlines in one wheel, a few sockets per server', async (t) => {
  const hole = await fakeUpstream(t, { kind: 'drop' });
  await sleep(50);
  const count = (kind: string): number => process.getActiveResourcesInfo().filter((r) => r === kind).length;
  const timers = count('Timeout');
  const udp = count('UDPWrap');
  const f = forwarder(t, { upstreams: [hole], timeoutMs: 800, maxFails: 0 });
  // In bursts of 50 (the fake server shares this thread: a bigger burst would overflow
  // its socket's receive buffer before it reads).
  const pending: Promise<Buffer | undefined>[] = [];
  for (let b = 0; b < 6; b++) {
    for (let i = b * 50; i < b * 50 + 50; i++) pending.push(ask(f, query(`n${i}.example.org`, 'A', i)));
    await sleep(10);
  }
  t.ok(await waitFor(() => hole.received.length === 300, 2000), `300 upstream queries out (${hole.received.length})`);
  t.equal(f.stats().pendingExchanges, 300, '300 deadlines waiting');
  t.ok(count('Timeout') - timers <= 1, `one timer for 300 deadlines (${count('Timeout') - timers})`);
  t.ok(count('UDPWrap') - udp <= 8, `at most 8 sockets for 300 queries (${count('UDPWrap') - udp})`);
  t.ok(f.stats().udpSockets <= 8);
  const replies = await Promise.all(pending);
  for (const r of replies) t.equal(decode(r!).rcode, 'SERVFAIL');
  t.equal(f.stats().upstreams[0]!.errors.timeout, 300, 'each timed out');
  t.equal(f.stats().pendingExchanges, 0);
  await sleep(50);
  t.ok(count('Timeout') <= timers, 'the wheel stopped its timer');
});

t.test('the cache stays within maxEntries and maxBytes under a stream of unique names', async (t) => {
  const up = await fakeUpstream(t, { kind: 'answer', count: 4, ttl: 300 });
  const byBytes = forwarder(t, { upstreams: [up], cache: { maxBytes: 20_000, maxEntries: 1_000_000 } });
  const byEntries = forwarder(t, { upstreams: [up], cache: { maxEntries: 50 } });
  for (let wave = 0; wave < 6; wave++) {
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const name = `u${wave}-${i}.example.org`;
        for (const f of [byBytes, byEntries]) t.equal(decode((await ask(f, query(name, 'A', i)))!).answer.length, 4);
      }),
    );
  }
  const b = byBytes.stats().cache;
  t.ok(b.bytes <= 20_000, `bytes ${b.bytes} ≤ 20000`);
  t.ok(b.size > 10 && b.evictions > 0, `${b.size} entries kept, ${b.evictions} evicted`);
  t.equal(b.entries.success, b.size);
  const e = byEntries.stats().cache;
  t.equal(e.size, 50);
  t.equal(e.evictions, 250);
  // The most recent names are the ones kept, and served from the cache.
  const before = up.received.length;
  await ask(byEntries, query('u5-49.example.org', 'A', 1));
  t.equal(up.received.length, before, 'a recent name: a hit');
  await ask(byEntries, query('u0-0.example.org', 'A', 1));
  t.equal(up.received.length, before + 1, 'the oldest: evicted, asked again');
});

t.test('a reload: queries waiting on a removed server finish; its sockets close as they drain', async (t) => {
  const a = await fakeUpstream(t, { kind: 'slow', delayMs: 300, ip: '198.51.100.50' });
  const b = await fakeUpstream(t, { kind: 'answer', ip: '198.51.100.51' });
  const f = forwarder(t, { upstreams: [a] });
  const pending = Array.from({ length: 20 }, (_, i) => ask(f, query(`r${i}.example.org`, 'A', i)));
  t.ok(await waitFor(() => a.received.length === 20, 2000));
  const before = f.stats().udpSockets;
  t.ok(before >= 1 && before <= 8, `${before} sockets to the first server`);
  f.setUpstreams([b]);
  const replies = await Promise.all(pending);
  for (const r of replies) t.same(decode(r!).answer.map((x) => x.split(' ').pop()), ['198.51.100.50'], 'answered by the removed server');
  t.ok(await waitFor(() => f.stats().udpSockets === 0, 1000), 'its sockets closed once drained');
  t.same(decode((await ask(f, query('after.example.org', 'A', 1)))!).answer.map((x) => x.split(' ').pop()), ['198.51.100.51'], 'new queries go to the new server');
  t.ok(f.stats().udpSockets >= 1);
  f.setUpstreams([b]);
  await sleep(20);
  t.equal(f.stats().udpSockets, 0, 'and a second reload leaves nothing open');
});
