/**
 * The small parts of the API source on their own: backoff arithmetic, token files,
 * label-selector syntax, the interner, the namespace gate of the store writer.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Backoff } from '../../src/cluster/kube/backoff.js';
import { Interner } from '../../src/cluster/kube/intern.js';
import { labelSelectorError } from '../../src/cluster/kube/selector.js';
import { TokenFile } from '../../src/cluster/kube/token.js';
import { StoreWriter } from '../../src/cluster/kube/writer.js';
import { deepEqual } from '../../src/cluster/equal.js';
import { endpointList, isPacked } from '../../src/cluster/packed.js';
import { ClusterStore } from '../../src/cluster/store.js';
import { ep, slice, svc } from '../helpers/cluster.js';
import { tempDir } from './helpers/setup.js';

t.test('Backoff: capped exponential, equal jitter, reset', async (t) => {
  const lo = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
  t.same([1, 2, 3, 4, 5, 6].map(() => lo.next()), [50, 100, 200, 400, 500, 500], 'lower bound: half the nominal step');
  const hi = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
  t.same([1, 2, 3, 4, 5, 6].map(() => hi.next()), [100, 200, 400, 800, 1000, 1000], 'upper bound: the nominal step, capped');
  t.equal(hi.failures, 6);
  hi.reset();
  t.equal(hi.next(), 100, 'reset starts over');
  const many = new Backoff({ initialMs: 1, maxMs: 30_000, random: () => 0.5 });
  for (let i = 0; i < 2000; i++) many.next();
  t.equal(many.next(), 22_500, 'no overflow after many failures');
  t.equal(new Backoff().initialMs, 500);
  t.equal(new Backoff().maxMs, 30_000);
});

t.test('TokenFile: trims, re-reads on change or invalidate, keeps the last good token', async (t) => {
  const dir = tempDir(t);
  const p = join(dir, 'token');
  const tf = new TokenFile(p);
  t.equal(tf.get(), undefined, 'missing file: no token');
  t.match(tf.lastError, /ENOENT/);
  writeFileSync(p, '  abc\n');
  t.equal(tf.get(), 'abc');
  writeFileSync(p, 'abcd');
  t.equal(tf.get(), 'abcd', 'size changed: re-read');
  t.equal(tf.rotations, 1);
  writeFileSync(join(dir, 'new'), 'rotated');
  renameSync(join(dir, 'new'), p);
  t.equal(tf.get(), 'rotated', 'atomic replace (new inode): re-read');
  writeFileSync(p, '');
  t.equal(tf.get(), 'rotated', 'an empty file (write in progress) keeps the last good token');
  t.match(tf.lastError, /empty/);
  writeFileSync(p, 'after');
  tf.invalidate();
  t.equal(tf.get(), 'after');
  const now = Date.now();
  t.equal(tf.get(now + 61_000), 'after', 'read again after a minute regardless');
});

t.test('label selector syntax', async (t) => {
  for (const ok of ['', 'app', '!app', 'app=web', 'app==web', 'app!=web', 'app=', 'app in (a, b)', 'app notin (a)', 'k8s.io/name=v', 'a=b,!c,d in (e),f>3', 'x < -1', ' a = b , c ']) {
    t.equal(labelSelectorError(ok), undefined, `valid: ${JSON.stringify(ok)}`);
  }
  for (const [bad, why] of [
    ['app in web', /parenthesised/],
    ['app in ()', /at least one value/],
    ['app in (a', /unterminated/],
    ['=web', /expected a label key/],
    ['a b', /unexpected "b"/],
    ['-app=x', /label key "-app"/],
    ['Bad_Prefix/x=1', /prefix must be a DNS subdomain/],
    ['app=has space', /unexpected "space"/],
    ['app=' + 'x'.repeat(64), /at most 63/],
    ['a>b', /integer/],
    ['a,', /expected a label key/],
  ] as const) {
    t.match(labelSelectorError(bad), why, `invalid: ${JSON.stringify(bad)}`);
  }
});

t.test('Interner: endpoints packed, shared parts, frozen', async (t) => {
  const i = new Interner();
  const mk = (ip: string) => slice('a', 'web', `web-${ip}`, [ep(ip), ep(`${ip}9`, { ready: false })], [{ name: 'http', port: 80, protocol: 'TCP' }]);
  const s1 = mk('10.0.0.1');
  const a = i.object({ kind: 'EndpointSlice', obj: s1 });
  const b = i.object({ kind: 'EndpointSlice', obj: mk('10.0.0.2') });
  if (a.kind !== 'EndpointSlice' || b.kind !== 'EndpointSlice') throw new Error('kind');
  t.ok(isPacked(a.obj.endpoints), 'one address per endpoint: packed');
  t.ok(deepEqual({ ...a.obj, endpoints: endpointList(a.obj.endpoints) }, s1), 'unpacked, the same structure as the original');
  t.ok(deepEqual(a.obj, i.object({ kind: 'EndpointSlice', obj: mk('10.0.0.1') }).obj), 'packing is deterministic (no-op updates stay no-ops)');
  t.notOk(deepEqual(a.obj, b.obj), 'a changed address is a change');
  t.equal(endpointList(a.obj.endpoints)[0]!.conditions, endpointList(b.obj.endpoints)[0]!.conditions, 'conditions shared');
  t.not(endpointList(a.obj.endpoints)[0]!.conditions, endpointList(a.obj.endpoints)[1]!.conditions, 'different conditions, different objects');
  t.equal(a.obj.ports, b.obj.ports, 'ports shared');
  t.ok(Object.isFrozen(a.obj.ports) && Object.isFrozen(a.obj.ports[0]));
  const s = i.object({ kind: 'Service', obj: svc('a', 'x', { ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }) });
  t.ok(deepEqual(s.obj, svc('a', 'x', { ports: [{ name: 'http', port: 80, protocol: 'TCP' }] })));
});

t.test('StoreWriter: the namespace gate parks and unparks, replace is a diff', async (t) => {
  const store = new ClusterStore();
  const w = new StoreWriter(store, true);
  w.upsert({ kind: 'Service', obj: svc('a', 'web') });
  t.equal(store.services.size, 0, 'namespace a does not exist (yet)');
  t.equal(w.parkedCount, 1);
  w.upsert({ kind: 'Namespace', obj: { name: 'a', labels: {} } });
  t.ok(store.services.has('a/web'), 'unparked when the namespace appears');
  w.upsert({ kind: 'EndpointSlice', obj: slice('a', 'web', 'web-1', [ep('10.1.0.1')], []) });
  w.remove('Namespace', 'a');
  t.equal(store.services.size + store.slices.size, 0, 'parked when it goes');
  t.equal(w.parkedCount, 2);
  w.remove('Service', 'a/web');
  t.equal(w.parkedCount, 1, 'deleting a parked object forgets it');
  w.replace('Namespace', [{ kind: 'Namespace', obj: { name: 'a', labels: {} } }]);
  t.ok(store.slices.has('a/web-1'), 'a namespace relist unparks too');
  w.replace('EndpointSlice', [{ kind: 'EndpointSlice', obj: slice('b', 'x', 'x-1', [ep('10.1.0.2')], []) }]);
  t.equal(store.slices.size, 0);
  t.equal(w.parkedCount, 1, 'replace re-parks by namespace');

  const open = new StoreWriter(new ClusterStore(), false);
  open.upsert({ kind: 'Service', obj: svc('nowhere', 'web') });
  t.ok(open.store.services.has('nowhere/web'), 'without namespaceLabels everything goes in');
});
