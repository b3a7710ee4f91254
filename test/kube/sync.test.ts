/**
 * KubeSource against the fake API server (real client-node 1.4.0, nothing mocked):
 * initial sync through paging, watch events into the store and into DNS answers over
 * UDP, no-op updates, invalid objects, labels, namespaceLabels, legacy Endpoints, Pods.
 */
import t from 'tap';
import type { ClusterChange } from '../../src/cluster/store.js';
import { fakeServer, makeSource, ns, pod, serveDns, slice, startSource, svc, until, Z } from './helpers/setup.js';
import { endpointList } from '../../src/cluster/packed.js';

t.test('initial sync pages through every list (limit/continue), then watches from the list RV with bookmarks', async (t) => {
  const s = await fakeServer(t, { tls: true });
  s.create('Namespace', ns('a'));
  s.create('Namespace', ns('b'));
  for (let i = 0; i < 23; i++) s.create('Service', svc(i % 2 ? 'a' : 'b', `s${i}`, `10.0.0.${i + 1}`));
  for (let i = 0; i < 5; i++) s.create('EndpointSlice', slice('a', `s1-${i}`, 's1', [`10.1.0.${i + 1}`]));
  const { source } = await startSource(t, s, { pageSize: 4 });
  t.equal(source.store.services.size, 23);
  t.equal(source.store.namespaces.size, 2);
  t.equal(source.store.slices.size, 5);
  t.equal(source.store.services.get('a/s1')?.clusterIPs[0], '10.0.0.2');

  const lists = s.requests.filter((r) => !r.watch && r.path === '/api/v1/services');
  t.equal(lists.length, 6, '23 services in pages of 4');
  t.ok(lists.every((r) => r.query['limit'] === '4'));
  t.equal(lists.filter((r) => r.query['continue'] !== undefined).length, 5, 'continue tokens followed');
  t.ok(lists.every((r) => r.query['resourceVersion'] === undefined), 'consistent (quorum) lists, never a stale cache read');
  t.ok(lists.every((r) => r.authorization === `Bearer ${s.currentToken}`), 'bearer token on every request');

  const watches = s.requests.filter((r) => r.watch);
  t.equal(watches.length, 3, 'namespaces, services, endpointslices');
  for (const w of watches) {
    t.equal(w.query['allowWatchBookmarks'], 'true', `${w.path} asks for bookmarks`);
    t.ok(Number(w.query['resourceVersion']) > 0, 'resumes from the list RV');
  }
  t.ok(s.requests.some((r) => r.path === '/apis/discovery.k8s.io/v1'), 'discovery asked once');

  // A bookmark advances the RV: the next watch resumes from it.
  s.create('Namespace', ns('other')); // moves the global RV
  await until(() => source.store.namespaces.has('other'), 'namespace event');
  s.sendBookmark();
  const want = s.resourceVersion;
  await until(() => source.status().resources.every((r) => r.resourceVersion === want), 'bookmarks applied');
  s.dropWatches();
  await until(() => s.requests.filter((r) => r.watch).length >= 6 && s.watchCount() === 3, 're-watch');
  const rewatches = s.requests.filter((r) => r.watch).slice(3);
  t.ok(rewatches.every((r) => r.query['resourceVersion'] === want), 're-watch resumes from the bookmark RV');
  t.equal(s.requests.filter((r) => !r.watch && r.path === '/api/v1/services').length, 6, 'no relist after a dropped watch');
});

t.test('create, update and delete of Services and EndpointSlices show in the store and in DNS answers', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('shop'));
  s.create('Service', svc('shop', 'web', '10.96.0.20'));
  const { source } = await startSource(t, s);
  const dns = await serveDns(t, source);
  t.equal(await dns.short(`web.shop.svc.${Z}`), 'NOERROR 10.96.0.20');
  t.equal(await dns.short(`db.shop.svc.${Z}`), 'NXDOMAIN');

  s.create('Service', svc('shop', 'db', '10.96.0.30'));
  t.equal(await dns.until(`db.shop.svc.${Z}`, 'NOERROR 10.96.0.30'), 'NOERROR 10.96.0.30', 'created service answers');

  s.update('Service', svc('shop', 'db', '10.96.0.31'));
  t.equal(await dns.until(`db.shop.svc.${Z}`, 'NOERROR 10.96.0.31'), 'NOERROR 10.96.0.31', 'updated clusterIP answers');

  // Headless service and its slices.
  s.create('Service', svc('shop', 'hs', 'None'));
  s.create('EndpointSlice', slice('shop', 'hs-1', 'hs', ['10.244.0.1', '10.244.0.2'], {}, ['web-0', undefined]));
  t.equal(await dns.until(`hs.shop.svc.${Z}`, 'NOERROR 10.244.0.1 10.244.0.2'), 'NOERROR 10.244.0.1 10.244.0.2', 'headless A records from the slice');
  t.equal(await dns.short(`web-0.hs.shop.svc.${Z}`), 'NOERROR 10.244.0.1', 'endpoint hostname');
  s.create('EndpointSlice', slice('shop', 'hs-2', 'hs', ['10.244.0.3']));
  t.equal(await dns.until(`hs.shop.svc.${Z}`, 'NOERROR 10.244.0.1 10.244.0.2 10.244.0.3'), 'NOERROR 10.244.0.1 10.244.0.2 10.244.0.3', 'a second slice adds to the answer');
  s.update('EndpointSlice', slice('shop', 'hs-1', 'hs', ['10.244.0.2'], {}, []));
  t.equal(await dns.until(`hs.shop.svc.${Z}`, 'NOERROR 10.244.0.2 10.244.0.3'), 'NOERROR 10.244.0.2 10.244.0.3', 'slice update removes an endpoint');
  t.equal(await dns.short(`web-0.hs.shop.svc.${Z}`), 'NXDOMAIN', 'its name is gone');
  s.delete('EndpointSlice', 'shop', 'hs-1');
  s.delete('EndpointSlice', 'shop', 'hs-2');
  t.equal(await dns.until(`hs.shop.svc.${Z}`, 'NXDOMAIN'), 'NXDOMAIN', 'headless service without endpoints: NXDOMAIN');

  s.delete('Service', 'shop', 'db');
  t.equal(await dns.until(`db.shop.svc.${Z}`, 'NXDOMAIN'), 'NXDOMAIN', 'deleted service is gone');
  t.equal(await dns.short(`web.shop.svc.${Z}`), 'NOERROR 10.96.0.20', 'the others are untouched');
  t.equal((await dns.q(`shop.svc.${Z}`)).rcode, 'NOERROR', 'namespace exists');
  s.delete('Namespace', undefined, 'shop');
  await until(() => !source.store.namespaces.has('shop'), 'namespace deleted');
});

t.test('updates DNS cannot see (resourceVersion, managedFields, annotations, status) change nothing in the store', async (t) => {
  const s = await fakeServer(t);
  s.create('Service', svc('a', 'web', '10.0.0.1'));
  s.create('EndpointSlice', slice('a', 'web-1', 'web', ['10.1.0.1']));
  const { source } = await startSource(t, s);
  const changes: ClusterChange[] = [];
  source.store.onChange((c) => changes.push(c));
  let events = 0;
  source.on('event', (e) => {
    if (e.type === 'MODIFIED') events++;
  });
  const base = svc('a', 'web', '10.0.0.1') as { metadata: Record<string, unknown>; spec: object };
  s.update('Service', { ...base, metadata: { ...base.metadata, annotations: { 'deployment.kubernetes.io/revision': '7' } } });
  s.update('Service', { ...base, metadata: { ...base.metadata, annotations: { 'deployment.kubernetes.io/revision': '7' } }, status: { loadBalancer: { ingress: [{ ip: '1.2.3.4' }] } } });
  const sl = slice('a', 'web-1', 'web', ['10.1.0.1']) as { metadata: Record<string, unknown> };
  s.update('EndpointSlice', { ...sl, metadata: { ...sl.metadata, annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': '2024-01-01T00:00:00Z' } } });
  await until(() => events === 3, 'three MODIFIED events');
  await new Promise((r) => setTimeout(r, 50));
  t.same(changes, [], 'no store change, so no rebuild');
  s.update('Service', { ...base, spec: { ...base.spec, clusterIP: '10.0.0.9', clusterIPs: ['10.0.0.9'] } });
  await until(() => changes.length === 1, 'a real change is delivered');
  t.same([...changes[0]!.services], ['a/web']);
});

t.test('invalid objects are logged (kind/namespace/name/reason) and skipped, never fatal', async (t) => {
  const s = await fakeServer(t);
  s.create('Service', svc('a', 'good', '10.0.0.1'));
  s.create('Service', { metadata: { name: 'bad', namespace: 'a' }, spec: { clusterIP: '10.0.0.2', ports: [{ port: 70000 }] } });
  s.create('EndpointSlice', { metadata: { name: 'orphan', namespace: 'a' }, addressType: 'IPv4', endpoints: [] });
  const { source, log } = await startSource(t, s);
  t.ok(source.store.services.has('a/good'));
  t.notOk(source.store.services.has('a/bad'));
  t.equal(source.store.slices.size, 0);
  const skipped = log.lines.filter((l) => /skipped/.test(l.msg));
  t.match(skipped, [
    { level: 'warn', fields: { resource: 'services', kind: 'Service', namespace: 'a', name: 'bad', reason: /spec\.ports\[0\]\.port: must be 1-65535/ } },
    { level: 'warn', fields: { resource: 'endpointslices', kind: 'EndpointSlice', namespace: 'a', name: 'orphan', reason: /kubernetes\.io\/service-name/ } },
  ]);
  // A good object that turns bad over a watch leaves the store (as a relist would leave it out).
  s.update('Service', { metadata: { name: 'good', namespace: 'a' }, spec: { clusterIP: 'not-an-ip' } });
  await until(() => !source.store.services.has('a/good'), 'invalidated service removed');
  s.update('Service', svc('a', 'bad', '10.0.0.2'));
  await until(() => source.store.services.has('a/bad'), 'repaired service added');
  t.equal(log.count('error'), 0, 'nothing treated as an internal error');
});

t.test('large lists arrive gzipped and are decoded', async (t) => {
  const s = await fakeServer(t, { gzipThreshold: 2000 });
  for (let i = 0; i < 60; i++) s.create('Service', svc('a', `s${i}`, `10.0.1.${i + 1}`));
  const { source } = await startSource(t, s);
  t.equal(source.store.services.size, 60);
  t.ok(s.requests.some((r) => r.path === '/api/v1/services' && r.gzip === true), 'the list was gzipped');
});

t.test('an expired continue token (410) restarts the list from scratch', async (t) => {
  const s = await fakeServer(t);
  for (let i = 0; i < 10; i++) s.create('Service', svc('a', `s${i}`, `10.0.2.${i + 1}`));
  let compacted = false;
  // Compact the history just before the first continued page is served.
  s.failNext(1, 500, {
    filter: (r) => {
      if (!compacted && r.path === '/api/v1/services' && r.query['continue'] !== undefined) {
        compacted = true;
        s.compact();
        s.create('Service', svc('a', 'late', '10.0.2.99'));
      }
      return false;
    },
  });
  const { source } = await startSource(t, s, { pageSize: 3 });
  t.ok(compacted);
  const lists = s.requests.filter((r) => r.path === '/api/v1/services' && !r.watch);
  t.ok(lists.some((r) => r.status === 410), 'the continued page got 410 Expired');
  t.equal(lists.filter((r) => r.query['continue'] === undefined).length, 2, 'the list started over');
  t.equal(source.store.services.size, 11, 'complete, including what changed meanwhile');
  t.equal(source.status().resources.find((r) => r.resource === 'services')?.relists, 1);
});

t.test('labels: only matching Services and EndpointSlices; leaving the selector removes them', async (t) => {
  const s = await fakeServer(t);
  s.create('Service', svc('a', 'in', '10.0.0.1', { dns: 'yes' }));
  s.create('Service', svc('a', 'out', '10.0.0.2', { dns: 'no' }));
  s.create('EndpointSlice', slice('a', 'in-1', 'in', ['10.1.0.1'], { dns: 'yes' }));
  s.create('EndpointSlice', slice('a', 'out-1', 'out', ['10.1.0.2'], { dns: 'no' }));
  const { source } = await startSource(t, s, { labels: 'dns=yes' });
  t.same([...source.store.services.keys()], ['a/in']);
  t.same([...source.store.slices.keys()], ['a/in-1']);
  for (const r of s.requests.filter((q) => /services|endpointslices/.test(q.path))) {
    if (r.path.endsWith('/v1')) continue;
    t.equal(r.query['labelSelector'], 'dns=yes', `${r.path} ${r.watch ? 'watch' : 'list'} carries the selector`);
  }
  t.notOk(s.requests.some((r) => r.path === '/api/v1/namespaces' && r.query['labelSelector'] !== undefined), 'not on namespaces');
  s.update('Service', svc('a', 'out', '10.0.0.2', { dns: 'yes' }));
  await until(() => source.store.services.has('a/out'), 'entering the selector adds');
  s.update('Service', svc('a', 'in', '10.0.0.1', { dns: 'no' }));
  await until(() => !source.store.services.has('a/in'), 'leaving the selector removes');
  t.throws(() => makeSource(t, s, { labels: 'app in web' }), /labels: label selector "app in web"/, 'a bad selector is refused up front');
});

t.test('namespaceLabels: other namespaces count as nonexistent, and follow label changes', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('on', { dns: 'on' }));
  s.create('Namespace', ns('off'));
  s.create('Service', svc('on', 'web', '10.0.0.1'));
  s.create('Service', svc('off', 'web', '10.0.0.2'));
  s.create('Service', svc('off', 'hs', 'None'));
  s.create('EndpointSlice', slice('off', 'hs-1', 'hs', ['10.1.0.1']));
  const { source } = await startSource(t, s, { namespaceLabels: 'dns=on' });
  const dns = await serveDns(t, source);
  t.same([...source.store.namespaces.keys()], ['on']);
  t.same([...source.store.services.keys()], ['on/web'], 'services of other namespaces are not in the store');
  t.equal(source.store.slices.size, 0);
  t.equal(source.status().parked, 3);
  t.equal(await dns.short(`web.on.svc.${Z}`), 'NOERROR 10.0.0.1');
  t.equal(await dns.short(`web.off.svc.${Z}`), 'NXDOMAIN');
  t.equal((await dns.q(`off.svc.${Z}`)).rcode, 'NXDOMAIN', 'the namespace itself does not exist');
  s.create('Service', svc('off', 'later', '10.0.0.3'));
  await until(() => source.status().parked === 4, 'new service in a non-matching namespace is held aside');

  s.update('Namespace', ns('off', { dns: 'on' }));
  await until(() => source.store.services.has('off/web') && source.store.slices.has('off/hs-1'), 'namespace now matches');
  t.equal(await dns.until(`hs.off.svc.${Z}`, 'NOERROR 10.1.0.1'), 'NOERROR 10.1.0.1', 'its headless service answers');
  t.ok(source.store.services.has('off/later'));
  t.equal(source.status().parked, 0);

  s.update('Namespace', ns('on', { dns: 'no' }));
  await until(() => !source.store.services.has('on/web'), 'namespace no longer matches');
  t.equal(await dns.until(`web.on.svc.${Z}`, 'NXDOMAIN'), 'NXDOMAIN');
  t.same([...source.store.namespaces.keys()], ['off']);

  // A relist of namespaces (410) applies the same rule.
  s.hangWatches(true);
  s.update('Namespace', ns('on', { dns: 'on' }));
  s.compact();
  s.hangWatches(false);
  s.dropWatches();
  await until(() => source.store.services.has('on/web'), 'relisted namespaces unpark their services');
  t.ok(source.status().resources.find((r) => r.resource === 'namespaces')!.relists >= 1);
});

t.test('legacy v1 Endpoints are watched only when discovery.k8s.io/v1 is not served', async (t) => {
  const s = await fakeServer(t, { endpointSlices: false });
  s.create('Namespace', ns('a'));
  s.create('Service', svc('a', 'hs', 'None'));
  s.create('Endpoints', {
    metadata: { name: 'hs', namespace: 'a' },
    subsets: [{ addresses: [{ ip: '10.1.0.1', hostname: 'hs-0' }, { ip: '10.1.0.2' }], notReadyAddresses: [{ ip: '10.1.0.3' }], ports: [{ name: 'http', port: 80 }] }],
  });
  const { source, log } = await startSource(t, s);
  t.equal(source.status().endpoints, 'Endpoints');
  t.equal(source.store.legacyEndpoints.size, 1);
  t.ok(s.requests.some((r) => r.path === '/api/v1/endpoints' && r.watch), 'Endpoints watched');
  t.notOk(s.requests.some((r) => r.path.includes('endpointslices')), 'no EndpointSlice request at all');
  t.equal(log.count('info', /legacy v1 Endpoints/), 1);
  const dns = await serveDns(t, source);
  t.equal(await dns.short(`hs.a.svc.${Z}`), 'NOERROR 10.1.0.1 10.1.0.2');
  t.equal(await dns.short(`hs-0.hs.a.svc.${Z}`), 'NOERROR 10.1.0.1');
  s.update('Endpoints', { metadata: { name: 'hs', namespace: 'a' }, subsets: [{ addresses: [{ ip: '10.1.0.9' }] }] });
  t.equal(await dns.until(`hs.a.svc.${Z}`, 'NOERROR 10.1.0.9'), 'NOERROR 10.1.0.9');

  const s2 = await fakeServer(t);
  const { source: s2src } = await startSource(t, s2);
  t.equal(s2src.status().endpoints, 'EndpointSlice');
  t.notOk(s2.requests.some((r) => r.path === '/api/v1/endpoints'), 'no legacy Endpoints when slices are served');
});

t.test('Pods are listed and watched only when asked, without finished pods', async (t) => {
  const s = await fakeServer(t);
  s.create('Pod', pod('a', 'run', '10.244.0.1'));
  s.create('Pod', pod('a', 'done', '10.244.0.2', 'Succeeded'));
  const { source: without } = await startSource(t, s);
  t.equal(without.store.pods.size, 0);
  t.notOk(s.requests.some((r) => r.path === '/api/v1/pods'), 'no pod request without watchPods');

  const { source } = await startSource(t, s, { watchPods: true });
  t.same([...source.store.pods.keys()], ['a/run']);
  const podReq = s.requests.find((r) => r.path === '/api/v1/pods' && !r.watch);
  t.equal(podReq?.query['fieldSelector'], 'status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown');
  s.create('Pod', pod('a', 'new', '10.244.0.3'));
  await until(() => source.store.podsByIP.has('10.244.0.3'), 'pod added over the watch');
  s.update('Pod', pod('a', 'run', '10.244.0.1', 'Failed'));
  await until(() => !source.store.pods.has('a/run'), 'a pod that finished leaves (the server sends DELETED)');
});

t.test('endpoints keep only what DNS reads; pod names only with endpointPodNames', async (t) => {
  const withPod = (podName: string): object => {
    const sl = slice('a', 'web-1', 'web', ['10.1.0.1']) as { endpoints: Record<string, unknown>[] };
    sl.endpoints[0] = { ...sl.endpoints[0], nodeName: 'node-7', zone: 'zone-a', targetRef: { kind: 'Pod', namespace: 'a', name: podName } };
    return sl;
  };
  for (const endpointPodNames of [false, true]) {
    await t.test(`endpointPodNames ${endpointPodNames}`, async (t) => {
      const s = await fakeServer(t);
      s.create('Namespace', ns('a'));
      s.create('Service', svc('a', 'web', 'None'));
      s.create('EndpointSlice', withPod('web-5d8f-abcde'));
      const { source } = await startSource(t, s, { endpointPodNames });
      const ep = endpointList(source.store.slices.get('a/web-1')!.endpoints)[0];
      t.same(ep?.addresses, ['10.1.0.1']);
      t.equal(ep?.nodeName, undefined, 'nodeName dropped (topology, not DNS)');
      t.equal(ep?.zone, undefined, 'zone dropped');
      t.equal(ep?.podName, endpointPodNames ? 'web-5d8f-abcde' : undefined);
      const dns = await serveDns(t, source, { endpointPodNames });
      t.equal(await dns.short(`web-5d8f-abcde.web.a.svc.${Z}`), endpointPodNames ? 'NOERROR 10.1.0.1' : 'NXDOMAIN');
      t.equal(await dns.short(`10-1-0-1.web.a.svc.${Z}`), endpointPodNames ? 'NXDOMAIN' : 'NOERROR 10.1.0.1');
      // A change DNS cannot see (the endpoint moved node) is not a store change.
      let changes = 0;
      let events = 0;
      source.store.onChange(() => changes++);
      source.on('event', (e) => {
        if (e.type === 'MODIFIED') events++;
      });
      const moved = withPod('web-5d8f-abcde') as { endpoints: Record<string, unknown>[] };
      moved.endpoints[0] = { ...moved.endpoints[0], nodeName: 'node-8' };
      s.update('EndpointSlice', moved);
      await until(() => events === 1, 'the MODIFIED event');
      await new Promise((r) => setTimeout(r, 50));
      source.store.flush();
      t.equal(changes, 0, 'nodeName-only update changes nothing');
    });
  }
});
