/**
 * The UDP sockets forwarded queries go out on (sockets.ts), against a real UDP server
 * that records the source port and ID of every query and answers when told to:
 * RFC 5452 (a fresh random ID per query, a few sockets on kernel-chosen ports, each
 * replaced after `uses` queries and closed once drained), replies matched by ID and
 * question (out of order, spoofed or garbled datagrams ignored and counted), deadlines
 * through the timer wheel, ICMP port unreachable, close().
 */
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { UdpSockets } from '../../src/upstream/sockets.js';
import { TimerWheel } from '../../src/upstream/timers.js';
import { questionFor } from '../../src/upstream/wire.js';
import type { ExchangeResult } from '../../src/upstream/exchange.js';
import { closedPort } from '../helpers/fake-upstream.js';

interface Seen {
  readonly port: number;
  readonly id: number;
  readonly name: string;
  readonly msg: Buffer;
}

/** A server that records queries and answers only when `reply` is called. */
async function recorder(t: Test): Promise<{ port: number; seen: Seen[]; reply: (s: Seen, opts?: { id?: number; name?: string }) => void; raw: (s: Seen, b: Buffer) => void }> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const seen: Seen[] = [];
  sock.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    seen.push({ port: rinfo.port, id: q.id ?? -1, name: q.questions?.[0]?.name ?? '', msg });
  });
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  const raw = (s: Seen, b: Buffer): void => void sock.send(b, s.port, '127.0.0.1');
  const reply = (s: Seen, opts: { id?: number; name?: string } = {}): void => {
    const name = opts.name ?? s.name;
    raw(
      s,
      dnsPacket.encode({
        type: 'response',
        id: opts.id ?? s.id,
        flags: 0x8180,
        questions: [{ name, type: 'A', class: 'IN' }],
        answers: [{ name, type: 'A', ttl: 60, data: '192.0.2.7' }],
      }),
    );
  };
  return { port: sock.address().port, seen, reply, raw };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(5);
  }
  return true;
}

function pool(port: number, opts: { sockets?: number; uses?: number } = {}) {
  const wheel = new TimerWheel();
  const results = new Map<string, ExchangeResult>();
  const stats = { ignored: 0 };
  const s = new UdpSockets<string>({ host: '127.0.0.1', port }, wheel, (ctx, r) => void results.set(ctx, r), stats, opts);
  const ask = (name: string, ms = 2000): void => s.send(questionFor(name, 1)!, false, false, ms, name);
  return { s, wheel, results, stats, ask };
}

const udpHandles = (): number => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;

t.test('random IDs, a few sockets, each replaced after `uses` queries and closed once drained', async (t) => {
  const srv = await recorder(t);
  const p = pool(srv.port, { sockets: 4, uses: 10 });
  t.teardown(() => p.s.close());
  const names = Array.from({ length: 200 }, (_, i) => `q${i}.example.org`);
  // In waves of 20 concurrent queries, each answered.
  for (let w = 0; w < 10; w++) {
    const from = srv.seen.length;
    for (const n of names.slice(w * 20, w * 20 + 20)) p.ask(n);
    t.ok(await until(() => srv.seen.length === from + 20), `wave ${w} sent`);
    for (const q of srv.seen.slice(from)) srv.reply(q);
    t.ok(await until(() => p.results.size === w * 20 + 20), `wave ${w} answered`);
    t.ok(p.s.openSockets <= 4 + 4, `sockets open at most the set plus those draining (${p.s.openSockets})`);
  }
  for (const n of names) t.equal(p.results.get(n)?.ok, true, `${n} answered`);
  const ports = new Set(srv.seen.map((q) => q.port));
  const ids = new Set(srv.seen.map((q) => q.id));
  t.ok(ports.size >= 200 / 10, `${ports.size} source ports for 200 queries (a socket takes at most 10)`);
  t.equal(p.s.opened, ports.size, 'one port per socket opened');
  for (const port of ports) t.ok(srv.seen.filter((q) => q.port === port).length <= 10, `port ${port}: at most 10 queries`);
  t.ok(ids.size >= 195, `IDs random (${ids.size} distinct of 200)`);
  t.notOk(srv.seen.every((q, i) => i === 0 || q.id === ((srv.seen[i - 1]!.id + 1) & 0xffff)), 'not sequential');
  t.equal(p.stats.ignored, 0);
  t.ok(await until(() => p.s.openSockets <= 4), 'retired sockets closed once drained');
});

t.test('replies out of order are matched by ID; spoofed and garbled ones ignored and counted', async (t) => {
  const srv = await recorder(t);
  const p = pool(srv.port, { sockets: 1, uses: 1000 });
  t.teardown(() => p.s.close());
  for (const n of ['a.example.org', 'b.example.org', 'c.example.org']) p.ask(n);
  t.ok(await until(() => srv.seen.length === 3));
  t.equal(new Set(srv.seen.map((q) => q.port)).size, 1, 'one socket');
  const [a, b, c] = srv.seen as [Seen, Seen, Seen];
  // For a: garbage, another ID, another question — all ignored; then its reply.
  srv.raw(a, Buffer.from('not dns at all'));
  srv.reply(a, { id: (a.id ^ 0x5555) & 0xffff });
  srv.reply(a, { name: 'evil.example.org' });
  srv.reply(c);
  srv.reply(b);
  t.ok(await until(() => p.results.has('c.example.org') && p.results.has('b.example.org')));
  t.notOk(p.results.has('a.example.org'), 'a still waits');
  t.ok(await until(() => p.stats.ignored === 3), `3 datagrams ignored (${p.stats.ignored})`);
  srv.reply(a);
  t.ok(await until(() => p.results.has('a.example.org')));
  for (const n of ['a', 'b', 'c']) {
    const r = p.results.get(`${n}.example.org`)!;
    t.equal(r.ok, true);
    if (r.ok) t.equal(dnsPacket.decode(r.msg).questions?.[0]?.name, `${n}.example.org`, `${n}: its own reply`);
  }
  // A late reply to a query already answered: ignored too.
  srv.reply(a);
  t.ok(await until(() => p.stats.ignored === 4));
});

t.test('deadlines through the wheel: a black hole times out, one timer for all', async (t) => {
  const srv = await recorder(t); // never replies
  const p = pool(srv.port);
  t.teardown(() => p.s.close());
  const timersBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const t0 = performance.now();
  for (let i = 0; i < 100; i++) p.ask(`hole${i}.example.org`, 300);
  t.equal(p.wheel.live, 100, '100 deadlines in the wheel');
  t.ok(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length - timersBefore <= 1, 'one timer, not one per query');
  t.ok(await until(() => p.results.size === 100, 3000));
  const ms = performance.now() - t0;
  t.ok(ms >= 290, `not before the deadline (${ms.toFixed(0)} ms)`);
  for (const r of p.results.values()) t.same(r, { ok: false, error: 'timeout', ignored: 0 });
  t.ok(await until(() => !p.wheel.armed, 500), 'nothing waits: the timer is stopped');
});

t.test('ICMP port unreachable: the queries on that socket fail at once, the socket is replaced', async (t) => {
  const port = await closedPort();
  const p = pool(port, { sockets: 1 });
  t.teardown(() => p.s.close());
  const t0 = performance.now();
  p.ask('x.example.org');
  t.ok(await until(() => p.results.has('x.example.org'), 1500));
  t.same(p.results.get('x.example.org'), { ok: false, error: 'unreachable', ignored: 0 });
  t.ok(performance.now() - t0 < 1000, 'long before the 2 s deadline');
  p.ask('y.example.org');
  t.ok(await until(() => p.results.has('y.example.org'), 1500));
  t.equal(p.results.get('y.example.org')?.ok, false);
  t.equal(p.s.opened, 2, 'a new socket after the error');
});

t.test('close(): pending queries end with "closed", every socket is closed', async (t) => {
  const srv = await recorder(t);
  await sleep(20);
  const before = udpHandles();
  const p = pool(srv.port, { sockets: 3 });
  for (let i = 0; i < 30; i++) p.ask(`p${i}.example.org`);
  t.ok(await until(() => srv.seen.length === 30));
  t.ok(udpHandles() > before);
  p.s.close();
  t.equal(p.results.size, 30);
  for (const r of p.results.values()) t.same(r, { ok: false, error: 'closed', ignored: 0 });
  p.ask('after.example.org');
  t.same(p.results.get('after.example.org'), { ok: false, error: 'closed', ignored: 0 }, 'closed: at once');
  t.ok(await until(() => udpHandles() <= before), 'no UDP handle left');
  p.wheel.close();
});
