/**
 * BoundedFrequencyRunner (src/proxy/runner.ts): kube-proxy's sync pacing. Requests
 * coalesce, at most `burst` runs back to back then one per minInterval, one run at a
 * time, a failure retried after retryMs, an idle resync after maxInterval. Timing is
 * checked by counting runs within generous windows, never by exact durations.
 */
import t from 'tap';
import { BoundedFrequencyRunner } from '../../src/proxy/runner.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('requests coalesce and are rate limited with a burst of 2', async (t) => {
  let runs = 0;
  const r = new BoundedFrequencyRunner(async () => {
    runs++;
  }, { minIntervalMs: 300, maxIntervalMs: 60_000, retryMs: 60_000 });
  r.start(); // the initial run
  await sleep(30);
  t.equal(runs, 1);
  for (let i = 0; i < 50; i++) r.run();
  await sleep(30);
  t.equal(runs, 2, 'fifty requests: one more run (burst token 2)');
  r.run();
  await sleep(100);
  t.equal(runs, 2, 'no token left: the next run waits for minInterval');
  await sleep(400);
  t.equal(runs, 3, 'then runs once');
  r.stop();
  r.run();
  await sleep(350);
  t.equal(runs, 3, 'stopped: nothing runs');
});

t.test('one run at a time; a request during a run gives exactly one more', async (t) => {
  let running = 0;
  let overlap = false;
  let runs = 0;
  const r = new BoundedFrequencyRunner(async () => {
    running++;
    if (running > 1) overlap = true;
    runs++;
    await sleep(80);
    running--;
  }, { minIntervalMs: 0, maxIntervalMs: 60_000, retryMs: 60_000 });
  r.start();
  await sleep(10);
  r.run();
  r.run();
  r.run();
  await sleep(250);
  t.notOk(overlap, 'never two runs at once');
  t.equal(runs, 2, 'three requests during a run: one follow-up run');
  await r.idle();
  r.stop();
});

t.test('a failure is retried after retryMs; idle resync after maxInterval', async (t) => {
  let runs = 0;
  let fail = true;
  const r = new BoundedFrequencyRunner(async () => {
    runs++;
    if (fail) throw new Error('boom');
  }, { minIntervalMs: 0, maxIntervalMs: 400, retryMs: 100 });
  r.start();
  await sleep(50);
  t.equal(runs, 1);
  await sleep(120);
  t.ok(runs >= 2, `retried after the failure (runs ${runs})`);
  fail = false;
  await sleep(150);
  const settled = runs;
  await sleep(250);
  t.equal(runs, settled, 'no run before maxInterval after a success');
  await sleep(250);
  t.equal(runs, settled + 1, 'a resync after maxInterval');
  r.stop();
});
