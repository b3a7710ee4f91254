/**
 * Lifecycle: stop() leaves nothing running (no timer, socket or request; the AbortError
 * it causes restarts nothing), and reconnects do not leak sockets (client-node 1.4.0 makes
 * a new agent per request, kubernetes-client/javascript#2893, and cannot abort a watch
 * that never got headers).
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { TcpProxy } from './helpers/proxy.js';
import { fakeServer, makeSource, sleep, startSource, svc, tempDir, until, watching } from './helpers/setup.js';

/** Handles and timers alive in this process, by kind. */
function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

t.test('stop() leaves nothing running and restarts nothing', async (t) => {
  const s = await fakeServer(t, { tls: true });
  await sleep(20);
  const baseline = resources();
  const { source, log } = await startSource(t, s, { watchPods: true });
  const failures: string[] = [];
  source.on('failure', (e) => failures.push(e.error));
  source.on('restart', (e) => failures.push(`restart ${e.resource}`));
  t.equal(s.watchCount(), 4);
  const requests = s.requests.length;
  await source.stop();
  await until(() => s.openConnections() === 0, 'every socket closed (server side)');
  t.equal(s.watchCount(), 0);
  await sleep(300);
  t.equal(s.requests.length, requests, 'no request after stop');
  t.same(failures, [], 'the AbortError of our own stop() is no failure and restarts nothing');
  t.equal(log.count('warn') + log.count('error'), 0, 'nothing logged as a problem');
  t.same(resources(), baseline, 'no timer, socket or handle left behind');
  t.equal(source.status().resources.every((r) => r.state === 'stopped'), true);
  await source.stop(); // idempotent
});

t.test('stop() in every state: before start, while backing off, while listing, before sync', async (t) => {
  const s = await fakeServer(t);
  await sleep(20);
  const baseline = resources();
  const never = makeSource(t, s).source;
  await never.stop();

  // Backing off (every request fails) and not synced: start() must settle on stop().
  s.failNext(1_000_000, 503);
  const { source: failing } = makeSource(t, s, { backoff: { initialMs: 5000, maxMs: 5000 }, startupTimeoutMs: 60_000 });
  const started = failing.start();
  await until(() => failing.status().resources.length >= 2 && failing.status().resources.every((r) => r.state === 'backoff'), 'backing off');
  const t0 = Date.now();
  await failing.stop();
  await started;
  t.ok(Date.now() - t0 < 1000, 'stop() cuts a 5 s backoff short');
  t.notOk(failing.synced());

  // Lists and discovery in flight, their responses held back by the network.
  const proxy = await new TcpProxy(Number(new URL(s.url).port)).start();
  const kubeconfigPath = join(tempDir(t), 'kubeconfig');
  writeFileSync(kubeconfigPath, proxy.kubeconfig(s.kubeconfig()));
  proxy.stallNew = true;
  const { source: listing } = makeSource(t, { kubeconfigPath }, { listTimeoutMs: 60_000, startupTimeoutMs: 60_000 });
  const started2 = listing.start();
  await until(() => proxy.stalledOpen().length >= 3, 'two lists and discovery in flight');
  t.ok(listing.status().resources.every((r) => r.state === 'listing'));
  const t1 = Date.now();
  await listing.stop();
  await started2;
  t.ok(Date.now() - t1 < 1000, 'stop() aborts lists and discovery in flight');
  await until(() => proxy.openCount() === 0, 'their connections closed');
  await proxy.close();
  await sleep(20);
  t.same(resources(), baseline, 'nothing left behind');
});

t.test('100 forced reconnects do not grow the number of open sockets', async (t) => {
  const s = await fakeServer(t, { tls: true });
  s.create('Service', svc('a', 'x', '10.0.0.1'));
  const { source } = await startSource(t, s, { backoff: { initialMs: 4, maxMs: 20 } });
  await until(() => s.openConnections() === 3, 'three watch sockets');
  const before = { server: s.openConnections(), client: source.socketCount() };
  t.equal(before.client, 3, 'the client holds exactly the three watch sockets');
  for (let i = 0; i < 100; i++) {
    s.dropWatches();
    await until(() => s.watchCount() === 3 && source.status().resources.every((r) => r.connected), `reconnect ${i}`);
  }
  s.create('Service', svc('a', 'y', '10.0.0.2'));
  await until(() => source.store.services.has('a/y'), 'still working');
  await until(() => s.openConnections() === before.server, 'server-side sockets back to the baseline', 2000).catch(() => {});
  t.equal(s.openConnections(), before.server, `server side: ${before.server} sockets before and after`);
  t.equal(source.socketCount(), before.client, 'client side: same');
  t.ok(source.status().resources.every((r) => r.restarts === 100), '100 restarts each');
});

t.test('watches abandoned without headers do not leak sockets either (and the control does)', async (t) => {
  const s = await fakeServer(t);
  const { source } = await startSource(t, s, { watchTimeoutMs: 150, backoff: { initialMs: 4, maxMs: 20 } });
  await until(() => s.openConnections() === 3, 'three watch sockets');
  s.hangWatches('no-headers');
  s.dropWatches();
  let restarts = 0;
  source.on('restart', (e) => {
    if (e.reason === 'silent') restarts++;
  });
  await until(() => restarts >= 30, '10 abandon rounds on each resource', 10_000);
  t.ok(s.openConnections() <= 3, `at most the 3 current requests are open (${s.openConnections()})`);
  s.hangWatches(false);
  await watching(source);
  await until(() => s.openConnections() === 3, 'back to three');

  // Control: the same with client-node alone (no way to abort before headers) leaks one
  // socket per abandoned watch.
  s.hangWatches('no-headers');
  const kc = new KubeConfig();
  kc.loadFromString(s.kubeconfig());
  const base = s.openConnections();
  for (let i = 0; i < 5; i++) void new Watch(kc).watch('/api/v1/services', {}, () => {}, () => {});
  await until(() => s.openConnections() === base + 5, 'control: five sockets stuck');
  t.pass('control: the naive restart leaks a socket per abandoned watch; ours does not');
  s.hangWatches(false);
  s.dropWatches(); // frees the control's sockets
});
