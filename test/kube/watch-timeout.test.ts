/**
 * The `watchTimeout` configuration key (seconds a watch may stay silent) reaches the
 * Kubernetes API source as the composition root builds it (kubeSources with the parsed
 * Config, as app.ts does), against the fake API server with the real client-node:
 * the watches ask the server to end them within the timeout, and a watch that goes
 * silent for longer is abandoned and restarted.
 */
import t from 'tap';
import type { Test } from 'tap';
import { DEFAULT_CONFIG, parseConfig, type Config } from '../../src/config.js';
import { kubeSources, type KubeSources, type KubeSourcesOptions } from '../../src/cluster/kube/sources.js';
import { silentLogger } from '../../src/log.js';
import type { FakeApiServer } from '../helpers/fake-apiserver.js';
import { fakeServer, ns, sleep, svc, tempDir, until, watching } from './helpers/setup.js';

/** kubeSources as app.ts's createSources calls it: the parsed Config as `config`. */
async function start(t: Test, s: FakeApiServer, config: Config, tuning: NonNullable<KubeSourcesOptions['tuning']> = {}): Promise<KubeSources> {
  const src = kubeSources(
    {
      kubeconfig: s.writeKubeconfig(tempDir(t)),
      context: undefined,
      inCluster: false,
      domain: 'cluster.local',
      config,
      tuning: { backoff: { initialMs: 20, maxMs: 200 }, ...tuning },
    },
    silentLogger(),
  );
  t.teardown(() => src.stop());
  await src.start();
  t.ok(src.synced(), 'synced');
  await watching(src.source);
  return src;
}

/** `timeoutSeconds` of every watch request so far. */
function timeouts(s: FakeApiServer): (number | undefined)[] {
  return s.requests.filter((r) => r.watch).map((r) => (r.query['timeoutSeconds'] === undefined ? undefined : Number(r.query['timeoutSeconds'])));
}

t.test('watchTimeout from the configuration sets how long the server may keep a watch open', async (t) => {
  // The watcher asks for 50-90% of the timeout (timeoutSeconds), so a healthy quiet
  // watch is ended cleanly by the server before our watchdog would abandon it.
  const dflt = await fakeServer(t);
  dflt.create('Namespace', ns('a'));
  await start(t, dflt, DEFAULT_CONFIG);
  const d = timeouts(dflt);
  t.equal(d.length, 3, 'namespaces, services, endpointslices');
  t.ok(d.every((x) => x !== undefined && x >= 75 && x <= 135), `default 150 s: timeoutSeconds 75..135, got ${d.join(',')}`);

  const short = await fakeServer(t);
  short.create('Namespace', ns('a'));
  await start(t, short, parseConfig({ watchTimeout: 10 }, 'cfg'));
  const s = timeouts(short);
  t.ok(s.length === 3 && s.every((x) => x !== undefined && x >= 5 && x <= 9), `watchTimeout 10: timeoutSeconds 5..9, got ${s.join(',')}`);

  // Tests and benchmarks still override it in milliseconds (tuning wins over the key).
  const tuned = await fakeServer(t);
  tuned.create('Namespace', ns('a'));
  await start(t, tuned, parseConfig({ watchTimeout: 10 }, 'cfg'), { watchTimeoutMs: 60_000 });
  const u = timeouts(tuned);
  t.ok(u.every((x) => x !== undefined && x >= 30 && x <= 54), `tuning watchTimeoutMs 60000: timeoutSeconds 30..54, got ${u.join(',')}`);
});

t.test('a watch silent longer than watchTimeout (10 s, the lowest the key allows) is abandoned and restarted', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('a'));
  const src = await start(t, s, parseConfig({ watchTimeout: 10 }, 'cfg'));
  const silent: string[] = [];
  src.source.on('restart', (e) => {
    if (e.reason === 'silent') silent.push(e.resource);
  });
  const t0 = Date.now();
  // The open watches go silent (a half-open connection: no event, bookmark or end), and
  // the server would never end them itself.
  s.hangWatches(true);
  s.create('Service', svc('a', 'late', '10.96.0.5'));
  await sleep(8000);
  t.same(silent, [], 'nothing abandoned in the first 8 s: a watch is given the whole 10 s');
  t.notOk(src.source.store.services.has('a/late'), 'the silent stream delivered nothing');
  s.hangWatches(false);
  await until(() => silent.length >= 3, `watchdog fired on all three watches (${silent.join(' ')})`, 6000);
  const after = (Date.now() - t0) / 1000;
  t.ok(after < 14, `abandoned about 10 s after the watches last spoke (${after.toFixed(1)} s after the hang)`);
  t.same([...new Set(silent)].sort(), ['endpointslices', 'namespaces', 'services'], 'each resource\'s watch restarted for silence');
  // The restarted watch resumes from the last resourceVersion and catches up.
  await until(() => src.source.store.services.has('a/late'), 'the new watch delivers the Service created meanwhile', 4000);
  t.ok(src.source.store.services.has('a/late'), 'the restarted watch caught up from the last resourceVersion');
  await watching(src.source);
});
