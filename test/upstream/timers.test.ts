/**
 * The timer wheel that holds every upstream deadline (timers.ts): items expire once, at
 * or after their deadline (at most a tick late, bounds here generous for slow machines);
 * cancelled items never expire; deadlines more than one turn of the wheel ahead still
 * expire on time; the wheel holds no timer while nothing waits; close() expires what waits.
 */
import t from 'tap';
import { TimerWheel, type Timed } from '../../src/upstream/timers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function item(ms: number, fired: Map<Timed, number>): Timed {
  const it: Timed = {
    deadline: performance.now() + ms,
    wheelState: 0,
    expire: () => {
      fired.set(it, (fired.get(it) ?? 0) + 1);
      late.set(it, performance.now() - it.deadline);
    },
  };
  return it;
}
const late = new Map<Timed, number>();

t.test('items expire once, not before their deadline; cancelled ones never', async (t) => {
  const w = new TimerWheel(5);
  const fired = new Map<Timed, number>();
  const items = [0, 7, 20, 33, 60].map((ms) => item(ms, fired));
  const cancelled = [item(10, fired), item(40, fired)];
  for (const it of [...items, ...cancelled]) w.add(it);
  t.equal(w.live, 7);
  t.ok(w.armed, 'one timer while items wait');
  w.cancel(cancelled[0]!);
  await sleep(25);
  w.cancel(cancelled[1]!);
  await sleep(120);
  for (const it of items) {
    t.equal(fired.get(it), 1, 'expired once');
    t.ok(late.get(it)! >= 0, `not early (${late.get(it)!.toFixed(1)} ms after)`);
  }
  for (const it of cancelled) t.equal(fired.get(it), undefined, 'cancelled: never expires');
  t.equal(w.live, 0);
  // Cancelling or expiring twice changes nothing.
  w.cancel(items[0]!);
  t.equal(w.live, 0);
  await sleep(30);
  t.notOk(w.armed, 'nothing waits: no timer');
});

t.test('a deadline more than one turn ahead (256 ticks) expires on time', async (t) => {
  const w = new TimerWheel(1);
  const fired = new Map<Timed, number>();
  const far = item(700, fired); // ~2.7 turns of 256 ms
  const near = item(50, fired);
  w.add(far);
  w.add(near);
  await sleep(300);
  t.equal(fired.get(near), 1);
  t.equal(fired.get(far), undefined, 'not at the first turn');
  await sleep(600);
  t.equal(fired.get(far), 1, 'expired after its deadline');
  t.ok(late.get(far)! >= 0);
  await sleep(20);
  t.notOk(w.armed);
});

t.test('an item added from expire() (the next try) is placed and expires too', async (t) => {
  const w = new TimerWheel(5);
  const fired = new Map<Timed, number>();
  const second = item(20, fired);
  const first: Timed = {
    deadline: performance.now() + 10,
    wheelState: 0,
    expire: () => {
      second.deadline = performance.now() + 20;
      w.add(second);
    },
  };
  w.add(first);
  await sleep(100);
  t.equal(fired.get(second), 1);
  t.equal(w.live, 0);
});

t.test('close() expires what waits and every later add at once; no timer left', async (t) => {
  const w = new TimerWheel(5);
  const fired = new Map<Timed, number>();
  const a = item(10_000, fired);
  const b = item(20_000, fired);
  w.add(a);
  w.add(b);
  w.close();
  t.equal(fired.get(a), 1);
  t.equal(fired.get(b), 1);
  t.notOk(w.armed);
  const c = item(10_000, fired);
  w.add(c);
  t.equal(fired.get(c), 1, 'closed: expires at once');
  t.equal(w.live, 0);
});

t.test('many items, one timer', async (t) => {
  const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const w = new TimerWheel();
  const fired = new Map<Timed, number>();
  const items = Array.from({ length: 5000 }, (_, i) => item(20 + (i % 50), fired));
  for (const it of items) w.add(it);
  const during = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  t.equal(during - before, 1, '5000 deadlines, one Timeout');
  for (let i = 0; i < items.length; i += 2) w.cancel(items[i]!);
  await sleep(150);
  t.equal(fired.size, 2500, 'the uncancelled half expired');
  t.equal(w.live, 0);
  await sleep(30);
  t.equal(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length, before, 'and the timer is gone');
});
