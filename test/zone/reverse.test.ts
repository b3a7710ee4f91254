/**
 * ReverseIndex over PtrSources (spec §2.3.3, §2.4.3): ClusterIP PTRs win and are
 * exclusive, endpoint PTRs merge across services, and updates that keep, drop and add
 * addresses leave exactly the current owners behind.
 */
import t from 'tap';
import { ReverseIndex } from '../../src/zone/reverse.js';
import { EndpointNames } from '../../src/zone/endpoints.js';
import type { PtrSource } from '../../src/zone/build.js';

function src(base: string, clusterIPs: string[], eps: [label: string, ip: string, dashed: boolean][]): PtrSource {
  const names = new EndpointNames(5);
  for (const [label, ip, dashed] of eps) names.add(dashed ? undefined : label, ip);
  return { base, clusterIPs, endpoints: eps.length > 0 ? names : undefined };
}

function ptr(idx: ReverseIndex, name: string): string[] | undefined {
  const m = idx.lookup(name);
  if (m === undefined) return undefined;
  return (m.get(12)?.rrs ?? []).map((r) => (r as { target: string }).target).sort();
}

t.test('ClusterIP wins; endpoints merge across services; updates keep, drop and add', async (t) => {
  const idx = new ReverseIndex();
  idx.set('svc:a/web', src('web.a.svc.z', ['10.96.0.10'], [['10-1-0-1', '10.1.0.1', true], ['web-0', '10.1.0.2', false]]));
  idx.set('svc:a/alt', src('alt.a.svc.z', [], [['10-1-0-1', '10.1.0.1', true]]));
  t.same(ptr(idx, '10.0.96.10.in-addr.arpa'), ['web.a.svc.z']);
  t.same(ptr(idx, '1.0.1.10.in-addr.arpa'), ['10-1-0-1.alt.a.svc.z', '10-1-0-1.web.a.svc.z']);
  t.same(ptr(idx, '2.0.1.10.in-addr.arpa'), ['web-0.web.a.svc.z']);
  t.same(ptr(idx, '0.1.10.in-addr.arpa'), [], 'an ancestor exists (NODATA)');
  t.equal(idx.size, 3);

  // web keeps 10.1.0.1, drops 10.1.0.2, adds 10.1.0.3 (as a hostname) and changes its ClusterIP.
  idx.set('svc:a/web', src('web.a.svc.z', ['10.96.0.11'], [['10-1-0-1', '10.1.0.1', true], ['web-1', '10.1.0.3', false]]));
  t.equal(ptr(idx, '10.0.96.10.in-addr.arpa'), undefined);
  t.same(ptr(idx, '11.0.96.10.in-addr.arpa'), ['web.a.svc.z']);
  t.same(ptr(idx, '1.0.1.10.in-addr.arpa'), ['10-1-0-1.alt.a.svc.z', '10-1-0-1.web.a.svc.z']);
  t.equal(ptr(idx, '2.0.1.10.in-addr.arpa'), undefined);
  t.same(ptr(idx, '3.0.1.10.in-addr.arpa'), ['web-1.web.a.svc.z']);

  // An endpoint address equal to another service's ClusterIP: the ClusterIP alone answers.
  idx.set('svc:b/db', src('db.b.svc.z', [], [['10-96-0-11', '10.96.0.11', true]]));
  t.same(ptr(idx, '11.0.96.10.in-addr.arpa'), ['web.a.svc.z']);
  idx.set('svc:a/web', undefined);
  t.same(ptr(idx, '11.0.96.10.in-addr.arpa'), ['10-96-0-11.db.b.svc.z'], 'the endpoint PTR shows once the ClusterIP is gone');
  t.same(ptr(idx, '1.0.1.10.in-addr.arpa'), ['10-1-0-1.alt.a.svc.z']);

  idx.set('svc:a/alt', undefined);
  idx.set('svc:b/db', undefined);
  t.equal(idx.size, 0);
  t.equal(ptr(idx, '1.0.1.10.in-addr.arpa'), undefined);
  t.equal(ptr(idx, '0.1.10.in-addr.arpa'), undefined, 'ancestors vanish with the last address');
});

t.test('EndpointNames: dashed labels map back to the exact canonical address only', async (t) => {
  const n = new EndpointNames(5);
  n.add(undefined, '10.1.0.1');
  n.add(undefined, 'fd00::1');
  n.add('web-0', '10.1.0.2');
  n.add('web-0', '10.1.0.4');
  t.same(n.addresses('10-1-0-1'), ['10.1.0.1']);
  t.same(n.addresses('fd00--1'), ['fd00::1']);
  t.same(n.addresses('fd00-0-0-0-0-0-0-1'), []);
  t.same(n.addresses('010-1-0-1'), []);
  t.same(n.addresses('10-1-0-2'), [], 'known by its hostname only');
  t.same(n.addresses('web-0'), ['10.1.0.2', '10.1.0.4']);
  t.same(n.labelsOf('10.1.0.4'), ['web-0']);
  t.same(n.labelsOf('fd00::1'), ['fd00--1']);
  t.equal(n.size, 3);
  t.same([...n.allAddresses()].sort(), ['10.1.0.1', '10.1.0.2', '10.1.0.4', 'fd00::1']);
  t.equal(n.lookup('nope', 'nope.web.a.svc.z'), undefined);
  t.same([...(n.lookup('web-0', 'web-0.web.a.svc.z')?.keys() ?? [])], [1]);
});

t.test('EndpointNames: a large service finds its dashed names (the Set made on first lookup)', async (t) => {
  const n = new EndpointNames(5);
  for (let i = 0; i < 300; i++) n.add(undefined, `10.2.${i >> 8}.${i & 255}`);
  n.add('db-0', '10.2.0.7');
  n.add(undefined, '10.02.0.1');
  t.equal(n.size, 302);
  t.same(n.addresses('10-2-1-43'), ['10.2.1.43']);
  t.same(n.addresses('10-2-1-44'), [], 'one past the last');
  t.same(n.labelsOf('10.2.0.7').sort(), ['10-2-0-7', 'db-0'], 'dashed and hostname names of one address');
  t.same(n.addresses('10-02-0-1'), ['10.02.0.1'], 'a non-canonical address keeps its dashed label as text');
  t.equal([...n.allAddresses()].length, 301);
});
