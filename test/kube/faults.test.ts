/**
 * Every fault of issue #3 and of client-node 1.4.0's traps, with the real client against
 * the fake API server (and a TCP proxy for the faults the fake cannot make): 410 Gone
 * relists with no spurious NXDOMAIN while they run, dropped connections, 500s with backoff,
 * streams that end at once, hung watches with and without headers (watchdog), abandoned
 * requests that must never deliver, the API down before and after sync, throwing hooks.
 */
import t from 'tap';
import type { FakeApiServer } from '../helpers/fake-apiserver.js';
import { TcpProxy } from './helpers/proxy.js';
import {
  fakeServer,
  makeSource,
  ns,
  serveDns,
  sleep,
  slice,
  startSource,
  svc,
  tempDir,
  until,
  watching,
  Z,
  type Dns,
} from './helpers/setup.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const watchReqs = (s: FakeApiServer, path?: string) => s.requests.filter((r) => r.watch && (path === undefined || r.path === path));
const listReqs = (s: FakeApiServer, path: string) => s.requests.filter((r) => !r.watch && r.path === path);

/** Query `names` round-robin until stopped; collect every answer that is not NOERROR. */
function sampler(dns: Dns, names: readonly string[]) {
  const bad: string[] = [];
  let n = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const name = names[n++ % names.length]!;
      const d = await dns.q(name, 'A');
      if (d.rcode !== 'NOERROR' || d.answer.length === 0) bad.push(`${name} ${d.rcode} ${d.answer.length}`);
    }
  })();
  return {
    bad,
    get count() {
      return n;
    },
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

for (const mode of ['event', 'http'] as const) {
  t.test(`410 Gone as ${mode === 'event' ? 'an ERROR event' : 'HTTP 410'}: relist as a diff, no spurious NXDOMAIN meanwhile`, async (t) => {
    const s = await fakeServer(t, { expiredWatch: mode });
    s.create('Namespace', ns('a'));
    const names: string[] = [];
    for (let i = 0; i < 150; i++) {
      s.create('Service', svc('a', `s${i}`, `10.0.${i >> 8}.${i & 255}`));
      names.push(`s${i}.a.svc.${Z}`);
    }
    for (let i = 0; i < 20; i++) {
      s.create('Service', svc('a', `h${i}`, 'None'));
      s.create('EndpointSlice', slice('a', `h${i}-x`, `h${i}`, [`10.1.${i}.1`, `10.1.${i}.2`]));
      names.push(`h${i}.a.svc.${Z}`);
    }
    s.create('Service', svc('a', 'doomed', '10.0.9.9'));
    const { source } = await startSource(t, s, { pageSize: 5 });
    const dns = await serveDns(t, source);
    const relists: string[] = [];
    source.on('relist', (e) => relists.push(e.resource));

    // The watches go deaf, the cluster changes, history is compacted: the resumed watches
    // must get 410 and relist (in pages of 5: many round trips while DNS keeps answering).
    s.hangWatches(true);
    s.create('Service', svc('a', 'born', '10.0.8.8'));
    s.delete('Service', 'a', 'doomed');
    s.update('EndpointSlice', slice('a', 'h0-x', 'h0', ['10.1.0.1', '10.1.0.3']));
    s.compact();
    s.hangWatches(false);
    const sample = sampler(dns, names);
    const listsBefore = listReqs(s, '/api/v1/services').length;
    s.dropWatches();
    await until(() => relists.includes('services') && relists.includes('endpointslices') && relists.includes('namespaces'), 'relists');
    await watching(source);
    await sleep(50);
    await sample.stop();
    t.same(sample.bad, [], `no name that exists before and after the relist ever failed (${sample.count} queries)`);
    t.ok(sample.count > 20, 'answers were sampled during the relist');
    t.equal(listReqs(s, '/api/v1/services').length - listsBefore, 35, 'a full paged relist of 171 services');
    const expired = watchReqs(s, '/api/v1/services').filter((r) => (mode === 'http' ? r.status === 410 : false));
    if (mode === 'http') t.ok(expired.length >= 1, 'the resumed watch got HTTP 410');
    t.equal(await dns.until(`born.a.svc.${Z}`, 'NOERROR 10.0.8.8'), 'NOERROR 10.0.8.8', 'created while deaf: present after relist');
    t.equal(await dns.until(`doomed.a.svc.${Z}`, 'NXDOMAIN'), 'NXDOMAIN', 'deleted while deaf: gone after relist');
    t.equal(await dns.until(`h0.a.svc.${Z}`, 'NOERROR 10.1.0.1 10.1.0.3'), 'NOERROR 10.1.0.1 10.1.0.3', 'slice changed while deaf');
    const st = source.status().resources.find((r) => r.resource === 'services')!;
    t.equal(st.relists, 1);
    t.equal(st.synced, true);
  });
}

t.test('a dropped connection resumes from the last resourceVersion: nothing lost, no relist', async (t) => {
  const s = await fakeServer(t);
  s.create('Service', svc('a', 'one', '10.0.0.1'));
  const { source } = await startSource(t, s, { backoff: { initialMs: 100, maxMs: 400 } });
  const lists = listReqs(s, '/api/v1/services').length;
  for (let round = 0; round < 3; round++) {
    s.dropWatches();
    // Changes while the client is between connections are replayed from history.
    s.create('Service', svc('a', `gap${round}`, `10.0.1.${round + 1}`));
    await until(() => source.store.services.has(`a/gap${round}`), `gap${round} replayed`);
  }
  t.equal(listReqs(s, '/api/v1/services').length, lists, 'never relisted');
  const st = source.status().resources.find((r) => r.resource === 'services')!;
  t.equal(st.restarts, 3);
  t.ok(st.failures >= 3, 'each drop counted as a failure');
  const ws = watchReqs(s, '/api/v1/services');
  for (let i = 1; i < ws.length; i++) {
    const gap = ws[i]!.time - ws[i - 1]!.time;
    t.ok(gap >= 45, `reconnect ${i} waited for the backoff (${gap} ms ≥ initialMs/2)`);
  }
});

t.test('500s on watch and list: restarts with capped exponential backoff and jitter (counted requests)', async (t) => {
  const s = await fakeServer(t);
  s.create('Service', svc('a', 'one', '10.0.0.1'));
  const { source, log } = await startSource(t, s, { backoff: { initialMs: 40, maxMs: 320 } });
  let failing = true;
  s.failNext(1_000_000, 500, { filter: (r) => failing && r.path === '/api/v1/services' });
  const t0 = Date.now();
  const before = watchReqs(s, '/api/v1/services').length;
  s.dropWatches();
  await sleep(2500);
  failing = false;
  const during = s.requests.filter((r) => r.path === '/api/v1/services' && r.time >= t0 && r.status === 500);
  // Nominal delays 40, 80, 160, 320, 320… halved at worst: ≥ 20+40+80+160+160·k ms.
  t.ok(during.length >= 4 && during.length <= 16, `${during.length} failing requests in 2.5 s (a tight loop makes thousands)`);
  const gaps = during.slice(1).map((r, i) => r.time - during[i]!.time);
  t.ok(gaps.slice(3).every((g) => g >= 150), `delays reached the cap: ${gaps.join(', ')} ms`);
  t.ok(gaps[3]! > gaps[0]!, 'and grew on the way');
  t.ok(gaps.every((g) => g <= 320 + 400), 'never far beyond the cap (timers only fire late, never early)');
  s.create('Service', svc('a', 'after', '10.0.0.2'));
  await until(() => source.store.services.has('a/after'), 'recovered once the 500s stop', 3000);
  t.ok(watchReqs(s, '/api/v1/services').length > before);
  t.equal(log.count('warn', /unreachable or failing/), 1, 'one warning for the whole outage, not one per retry');
  t.equal(log.count('info', /reachable again/), 1, 'and one line when it ends');
  t.ok(source.synced(), 'still synced: the last state kept serving');

  // List failures at start are retried the same way.
  const s2 = await fakeServer(t);
  s2.create('Service', svc('a', 'x', '10.0.0.1'));
  s2.failNext(3, 500, '/api/v1/services');
  const { source: src2 } = await startSource(t, s2);
  t.ok(src2.store.services.has('a/x'));
  t.equal(listReqs(s2, '/api/v1/services').filter((r) => r.status === 500).length, 3);
});

t.test('a server that ends every watch at once gets backoff, not a tight loop (kubernetes-client/javascript#1933)', async (t) => {
  const s = await fakeServer(t);
  const { source } = await startSource(t, s, { backoff: { initialMs: 40, maxMs: 320 } });
  const before = watchReqs(s).length;
  let running = true;
  const ender = (async () => {
    while (running) {
      s.endWatches();
      await new Promise((r) => setImmediate(r));
    }
  })();
  await sleep(2000);
  running = false;
  await ender;
  const n = watchReqs(s).length - before;
  t.ok(n >= 3 && n <= 60, `${n} watch requests in 2 s over 3 resources`);
  await watching(source);
  s.create('Service', svc('a', 'ok', '10.0.0.3'));
  await until(() => source.store.services.has('a/ok'), 'works again');
});

t.test('bookmarks keep a quiet watch alive under a short watchdog', async (t) => {
  const s = await fakeServer(t, { bookmarkIntervalMs: 100 });
  const { source } = await startSource(t, s, { watchTimeoutMs: 1000 });
  await sleep(2500);
  const st = source.status().resources;
  t.ok(st.every((r) => r.restarts === 0), `no watch restarted: ${st.map((r) => r.restarts).join(',')}`);
  t.ok(st.every((r) => r.events >= 5), 'bookmarks arrived');
});

t.test('a hung watch with headers: the watchdog abandons and restarts it', async (t) => {
  const s = await fakeServer(t);
  const { source } = await startSource(t, s, { watchTimeoutMs: 400 });
  const restarts: string[] = [];
  source.on('restart', (e) => restarts.push(`${e.resource}:${e.reason}`));
  s.hangWatches(true); // the open watches go silent, new ones get headers then nothing
  s.create('Service', svc('a', 'unseen', '10.0.0.5'));
  await until(() => restarts.filter((r) => r.endsWith(':silent')).length >= 3, `watchdog fired on all three (${restarts.join(' ')})`, 3000);
  t.notOk(source.store.services.has('a/unseen'), 'the hung stream delivered nothing');
  s.hangWatches(false);
  await until(() => source.store.services.has('a/unseen'), 'a fresh watch catches up from the last RV', 4000);
  await watching(source);
  await until(() => s.watchCount() === 3, 'abandoned watches are closed on the server side too');
});

t.test('a hung watch without headers: abandoned (request destroyed), and it can never deliver later', async (t) => {
  const s = await fakeServer(t);
  const proxy = await new TcpProxy(Number(new URL(s.url).port)).start();
  t.teardown(() => proxy.close());
  const dir = tempDir(t);
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, proxy.kubeconfig(s.kubeconfig()));
  const { source } = makeSource(t, { kubeconfigPath }, { watchTimeoutMs: 500 });
  await source.start();
  await watching(source);

  // 1. The fake's own no-headers hang: the request is accepted, never answered.
  s.hangWatches('no-headers');
  s.dropWatches();
  await until(() => s.watchCount() === 3, 'three unanswered watch requests');
  const pending = s.requests.filter((r) => r.watch && r.status === undefined).length;
  t.ok(pending >= 3);
  s.hangWatches(false);
  await until(() => source.status().resources.every((r) => r.connected) && s.requests.filter((r) => r.watch && r.status === undefined).length >= 3, 'reconnected', 4000);
  await until(() => s.watchCount() === 3, 'the unanswered requests were destroyed (server saw them close)');

  // 2. A response held back in the network: headers and an event reach the client only
  //    after the client gave up. They must not be applied.
  proxy.stallNew = true;
  s.dropWatches();
  await until(() => proxy.stalledOpen().length >= 3 && s.watchCount() === 3, 'three stalled watches');
  s.create('Service', svc('a', 'ghost', '10.0.0.66')); // travels in the held-back responses
  proxy.stallNew = false;
  await until(() => source.store.services.has('a/ghost'), 'after the watchdog, a new watch replays the ghost', 4000);
  s.delete('Service', 'a', 'ghost');
  await until(() => !source.store.services.has('a/ghost'), 'ghost deleted');
  const stalled = proxy.history.filter((c) => c.stalled);
  t.ok(stalled.length >= 3 && stalled.every((c) => c.clientClosed), 'the client closed every abandoned connection');
  proxy.release(); // the old ADDED ghost, 2 seconds late
  await sleep(300);
  t.notOk(source.store.services.has('a/ghost'), 'the late ADDED never reached the store');
  t.equal(source.status().resources.reduce((n, r) => n + r.relists, 0), 0, 'no relist was needed');
});

t.test('the API down after sync: the last state keeps serving; one warning, one recovery line', async (t) => {
  const s = await fakeServer(t, { tls: true });
  s.create('Namespace', ns('a'));
  s.create('Service', svc('a', 'web', '10.0.0.1'));
  const proxy = await new TcpProxy(Number(new URL(s.url).port)).start();
  t.teardown(() => proxy.close());
  const kubeconfigPath = join(tempDir(t), 'kubeconfig');
  writeFileSync(kubeconfigPath, proxy.kubeconfig(s.kubeconfig()));
  const { source, log } = makeSource(t, { kubeconfigPath }, { backoff: { initialMs: 50, maxMs: 200 } });
  await source.start();
  await watching(source);
  const dns = await serveDns(t, source);
  const outages: string[] = [];
  source.on('outage', (e) => outages.push(e.error));

  await proxy.down();
  s.create('Service', svc('a', 'meanwhile', '10.0.0.2'));
  await until(() => outages.length === 1, 'outage noticed');
  await sleep(800); // several retries
  t.equal(await dns.short(`web.a.svc.${Z}`), 'NOERROR 10.0.0.1', 'known names keep answering');
  t.equal(await dns.short(`nope.a.svc.${Z}`), 'NXDOMAIN', 'still synced: a miss is a real NXDOMAIN');
  t.ok(source.synced());
  t.equal(log.count('warn', /unreachable or failing: serving the last known state/), 1, 'one warning for the outage');
  t.match(log.lines.find((l) => l.level === 'warn')?.fields, { error: /ECONNREFUSED|ECONNRESET|socket hang up|closed/ });
  t.ok(source.status().outage);
  t.ok(source.status().resources.some((r) => r.lastError !== undefined));

  await proxy.up();
  t.equal(await dns.until(`meanwhile.a.svc.${Z}`, 'NOERROR 10.0.0.2', 'A', 4000), 'NOERROR 10.0.0.2', 'caught up after recovery');
  await until(() => log.count('info', /reachable again/) === 1, 'recovery logged');
  t.equal(log.count('warn'), 1, 'still only one warning');
  t.notOk(source.status().outage);
});

t.test('the API down at start: start() resolves after startupTimeout, SERVFAIL not NXDOMAIN until synced', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('a'));
  s.create('Service', svc('a', 'web', '10.0.0.1'));
  const proxy = await new TcpProxy(Number(new URL(s.url).port)).start();
  t.teardown(() => proxy.close());
  const kubeconfigPath = join(tempDir(t), 'kubeconfig');
  writeFileSync(kubeconfigPath, proxy.kubeconfig(s.kubeconfig()));
  await proxy.down();
  const { source, log } = makeSource(t, { kubeconfigPath }, { startupTimeoutMs: 700, backoff: { initialMs: 50, maxMs: 200 } });
  const dns = await serveDns(t, source);
  const t0 = Date.now();
  await source.start();
  const took = Date.now() - t0;
  t.ok(took >= 650 && took < 3000, `start() resolved at the startup timeout (${took} ms)`);
  t.notOk(source.synced());
  t.equal((await dns.q(`web.a.svc.${Z}`)).rcode, 'SERVFAIL', 'a name that may exist: SERVFAIL');
  t.equal((await dns.q(`anything.a.svc.${Z}`)).rcode, 'SERVFAIL', 'never NXDOMAIN before sync');
  t.equal(log.count('warn', /not synced within the startup timeout/), 1);
  t.equal(log.count('warn', /unreachable or failing: not synced yet/), 1);

  await proxy.up();
  await until(() => source.synced(), 'synced once the API is back', 4000);
  t.equal(await dns.until(`web.a.svc.${Z}`, 'NOERROR 10.0.0.1'), 'NOERROR 10.0.0.1');
  t.equal((await dns.q(`anything.a.svc.${Z}`)).rcode, 'NXDOMAIN', 'now a miss is NXDOMAIN');
});

t.test('a list that never completes times out and is retried', async (t) => {
  const s = await fakeServer(t);
  s.create('Service', svc('a', 'web', '10.0.0.1'));
  const proxy = await new TcpProxy(Number(new URL(s.url).port)).start();
  t.teardown(() => proxy.close());
  const kubeconfigPath = join(tempDir(t), 'kubeconfig');
  writeFileSync(kubeconfigPath, proxy.kubeconfig(s.kubeconfig()));
  proxy.stallNew = true;
  const { source } = makeSource(t, { kubeconfigPath }, { listTimeoutMs: 300, startupTimeoutMs: 5000 });
  const started = source.start();
  await until(() => proxy.stalledOpen().length >= 2, 'lists stalled');
  proxy.stallNew = false;
  await started;
  t.ok(source.synced(), 'synced after the stalled lists timed out');
  t.match(source.status().resources.map((r) => r.failures), [1, 1], 'one timeout each');
});

t.test('a throwing event listener is isolated: events still apply, nothing escapes', async (t) => {
  const s = await fakeServer(t);
  const { source, log } = await startSource(t, s);
  const escaped: unknown[] = [];
  const onRej = (e: unknown): void => {
    escaped.push(e);
  };
  process.on('unhandledRejection', onRej);
  process.on('uncaughtException', onRej);
  t.teardown(() => {
    process.off('unhandledRejection', onRej);
    process.off('uncaughtException', onRej);
  });
  source.on('event', () => {
    throw new Error('metrics exploded');
  });
  let seen = 0;
  source.on('event', () => seen++);
  source.store.onChange(() => {
    throw new Error('listener exploded');
  });
  for (let i = 0; i < 5; i++) s.create('Service', svc('a', `s${i}`, `10.0.0.${i + 1}`));
  await until(() => source.store.services.size === 5, 'all five applied');
  await sleep(50);
  t.equal(seen, 5, 'the other listener saw every event');
  t.same(escaped, [], 'no unhandled rejection or exception');
  t.equal(log.count('error', /event listener failed/), 1, 'reported once');
});
