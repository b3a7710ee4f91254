/**
 * LoadBalancerRR (src/proxy/userspace/lb.ts), kube-proxy's userspace roundrobin.go:
 * exact round robin after a shuffle, ClientIP affinity (source IP only, sliding TTL in
 * whole seconds, `reset` moving on), endpoint changes (rotation restarts, only stale
 * affinity dropped, identical sets ignored), and the affinity bound.
 */
import t from 'tap';
import { LoadBalancerRR, type LbEndpoint } from '../../src/proxy/userspace/lb.js';

const ep = (n: number): LbEndpoint => ({ ip: `10.1.0.${n}`, port: 80, key: `10.1.0.${n}:80` });
const eps = (...ns: number[]): LbEndpoint[] => ns.map(ep);

/** Deterministic [0, 1) source (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('round robin is exact over k endpoints after a shuffle', async (t) => {
  for (const k of [1, 2, 3, 5, 7]) {
    for (const n of [1, 10, 99, 1000]) {
      const lb = new LoadBalancerRR({ random: seeded(k * 1000 + n) });
      lb.newService('s', 0);
      lb.updateEndpoints('s', eps(...Array.from({ length: k }, (_, i) => i + 1)));
      const counts = new Map<string, number>();
      const seq: string[] = [];
      for (let i = 0; i < n; i++) {
        const e = lb.nextEndpoint('s', `192.168.0.${i % 250}`)!;
        counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
        seq.push(e.key);
      }
      for (const c of counts.values()) t.ok(c === Math.floor(n / k) || c === Math.ceil(n / k), `k=${k} n=${n}: ${c}`);
      if (n >= k) t.equal(counts.size, k, `k=${k} n=${n}: every endpoint used`);
      // Strictly cyclic: pick i equals pick i-k.
      for (let i = k; i < n; i++) if (seq[i] !== seq[i - k]) t.fail(`not cyclic at ${i}`);
      // The cycle is the shuffled list, from index 0.
      t.same(seq.slice(0, Math.min(n, k)), lb.inspect('s')!.endpoints.slice(0, Math.min(n, k)));
    }
  }
});

t.test('the shuffle is a permutation and varies', async (t) => {
  const orders = new Set<string>();
  const lb = new LoadBalancerRR();
  lb.newService('s', 0);
  for (let i = 0; i < 200; i++) {
    // Alternate sets so each update is a change.
    lb.updateEndpoints('s', i % 2 === 0 ? eps(1, 2, 3) : eps(1, 2, 3, 4));
    const order = lb.inspect('s')!.endpoints;
    t.same([...order].sort(), (i % 2 === 0 ? eps(1, 2, 3) : eps(1, 2, 3, 4)).map((e) => e.key).sort());
    if (i % 2 === 0) orders.add(order.join(','));
  }
  t.equal(orders.size, 6, 'all 3! orders of three endpoints seen in 100 shuffles');
});

t.test('missing service or no endpoints: undefined at once', async (t) => {
  const lb = new LoadBalancerRR();
  t.equal(lb.nextEndpoint('nope', '1.2.3.4'), undefined, 'missing service entry');
  lb.newService('s', 10);
  t.equal(lb.nextEndpoint('s', '1.2.3.4'), undefined, 'missing endpoints');
  lb.updateEndpoints('s', eps(1));
  t.equal(lb.nextEndpoint('s', '1.2.3.4')?.key, '10.1.0.1:80');
  lb.deleteService('s');
  t.equal(lb.nextEndpoint('s', '1.2.3.4'), undefined);
});

t.test('ClientIP affinity: per source IP, sliding TTL in whole seconds', async (t) => {
  let now = 1_000_000;
  const lb = new LoadBalancerRR({ now: () => now, random: seeded(7) });
  lb.newService('s', 3);
  lb.updateEndpoints('s', eps(1, 2, 3));
  const first = lb.nextEndpoint('s', '192.168.1.1')!;
  // Other clients advance the shared rotation; the pinned one stays.
  const b = lb.nextEndpoint('s', '192.168.1.2')!;
  const c = lb.nextEndpoint('s', '192.168.1.3')!;
  t.not(b.key, first.key);
  t.not(c.key, first.key);
  for (let i = 0; i < 10; i++) t.equal(lb.nextEndpoint('s', '192.168.1.1')!.key, first.key, 'same client IP, any port: same endpoint');
  t.equal(lb.inspect('s')!.index, 0, 'sticky hits do not advance the rotation');

  // Sliding: a pick every 2.9 s keeps the pin far beyond 3 s.
  for (let i = 0; i < 5; i++) {
    now += 2900;
    t.equal(lb.nextEndpoint('s', '192.168.1.1')!.key, first.key, `refreshed at +${(i + 1) * 2.9}s`);
  }
  // floor(2.999) = 2 < 3: still pinned; floor(3.0) = 3: expired.
  now += 2999;
  t.equal(lb.nextEndpoint('s', '192.168.1.1')!.key, first.key, '2.999 s idle: pinned');
  const before = lb.inspect('s')!.index;
  now += 3000;
  const after = lb.nextEndpoint('s', '192.168.1.1')!;
  t.equal(lb.inspect('s')!.index, (before + 1) % 3, '3.000 s idle: expired, the rotation advances');
  t.equal(after.key, lb.inspect('s')!.endpoints[before], 'and the client gets the next endpoint in turn');
  t.equal(lb.inspect('s')!.affinity.get('192.168.1.1'), after.key, 're-pinned');
});

t.test('reset after a failed dial moves on and re-pins', async (t) => {
  const now = 0;
  const lb = new LoadBalancerRR({ now: () => now, random: seeded(3) });
  lb.newService('s', 100);
  lb.updateEndpoints('s', eps(1, 2, 3));
  const a = lb.nextEndpoint('s', '10.0.0.1')!;
  const b = lb.nextEndpoint('s', '10.0.0.1', true)!;
  t.not(b.key, a.key, 'reset skips the pin');
  t.equal(lb.nextEndpoint('s', '10.0.0.1')!.key, b.key, 'and pins the new endpoint');
  const c = lb.nextEndpoint('s', '10.0.0.1', true)!;
  t.not(c.key, b.key);
  t.not(c.key, a.key, 'three resets walk the three endpoints');
});

t.test('endpoint change: rotation restarts, only stale affinity dropped', async (t) => {
  const now = 0;
  const lb = new LoadBalancerRR({ now: () => now, random: seeded(11) });
  lb.newService('s', 100);
  lb.updateEndpoints('s', eps(1, 2, 3));
  const pins = new Map<string, string>();
  for (let i = 1; i <= 6; i++) pins.set(`10.9.0.${i}`, lb.nextEndpoint('s', `10.9.0.${i}`)!.key);
  t.equal(lb.inspect('s')!.index, 0, 'six picks over three: back at 0');
  lb.nextEndpoint('s', '10.9.9.9');
  t.equal(lb.inspect('s')!.index, 1);

  // The same set in another order is no change: index and pins stay.
  lb.updateEndpoints('s', eps(3, 1, 2));
  t.equal(lb.inspect('s')!.index, 1, 'identical set: rotation untouched');

  // Remove endpoint 2, add 4.
  lb.updateEndpoints('s', eps(1, 3, 4));
  const st = lb.inspect('s')!;
  t.equal(st.index, 0, 'changed set: index reset');
  t.same([...st.endpoints].sort(), ['10.1.0.1:80', '10.1.0.3:80', '10.1.0.4:80']);
  for (const [ip, key] of pins) {
    if (key === '10.1.0.2:80') t.notOk(st.affinity.has(ip), `${ip} pinned to the removed endpoint: dropped`);
    else t.equal(st.affinity.get(ip), key, `${ip} keeps its pin`);
  }
  for (const [ip, key] of pins) if (key !== '10.1.0.2:80') t.equal(lb.nextEndpoint('s', ip)!.key, key);
  // The rotation after the change starts at the new list's head.
  t.equal(lb.nextEndpoint('s', '10.8.0.1')!.key, st.endpoints[0]);

  // Empty: everything dropped (resetService).
  lb.updateEndpoints('s', []);
  t.equal(lb.inspect('s')!.affinity.size, 0);
  t.equal(lb.nextEndpoint('s', '10.9.0.1'), undefined);
});

t.test('affinity off, TTL change, expiry sweep, bound', async (t) => {
  let now = 0;
  const lb = new LoadBalancerRR({ now: () => now, maxAffinity: 3 });
  lb.newService('s', 5);
  lb.updateEndpoints('s', eps(1, 2));
  for (const ip of ['a', 'b', 'c']) lb.nextEndpoint('s', ip);
  t.equal(lb.inspect('s')!.affinity.size, 3);
  now += 1000;
  lb.nextEndpoint('s', 'a'); // refresh a: b is now least recently used
  lb.nextEndpoint('s', 'd');
  t.same([...lb.inspect('s')!.affinity.keys()].sort(), ['a', 'c', 'd'], 'bound 3: the least recently used client evicted');

  now += 4500; // c at 5.5 s idle (expired), a/d at 4.5 s
  t.equal(lb.cleanupStaleStickySessions(), 1, 'sweep drops the expired entry only');
  t.same([...lb.inspect('s')!.affinity.keys()].sort(), ['a', 'd']);

  lb.newService('s', 1); // TTL shortened: applies at once
  t.equal(lb.cleanupStaleStickySessions(), 2);

  lb.nextEndpoint('s', 'x');
  lb.newService('s', 0); // affinity off: entries dropped, picks rotate
  t.equal(lb.inspect('s')!.affinity.size, 0);
  const k1 = lb.nextEndpoint('s', 'x')!.key;
  const k2 = lb.nextEndpoint('s', 'x')!.key;
  t.not(k1, k2, 'no affinity: the same client rotates');
  t.equal(lb.inspect('s')!.affinity.size, 0, 'and nothing is recorded');
});
