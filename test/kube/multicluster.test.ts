/**
 * ServiceImports from the Kubernetes API (config `multicluster`), with the real
 * client-node against the fake API server: the fake serves the MCS-API group as a CRD
 * (list with resourceVersion and paging, watch, 404 when not installed); the source
 * watches it only when asked, feeds the multicluster zone over UDP (imports added and
 * deleted through the watch, their slices), and keeps serving everything else, with one
 * warning, when the CRD is absent, until it appears.
 */
import t, { type Test } from 'tap';
import type { KubeSource } from '../../src/cluster/kube/index.js';
import type { FakeApiServer } from '../helpers/fake-apiserver.js';
import { fakeServer, makeSource, ns, serveDns, sleep, slice, startSource, svc, until, watching, Z, type Dns } from './helpers/setup.js';

const MC = 'clusterset.local';
const GROUP = '/apis/multicluster.x-k8s.io/v1alpha1';

function serviceImport(namespace: string, name: string, spec: Record<string, unknown>): object {
  return { metadata: { name, namespace }, spec: { ports: [{ name: 'http', port: 80, protocol: 'TCP' }], ...spec } };
}

/** An EndpointSlice as an MCS controller writes it in the importing cluster. */
function mcSlice(namespace: string, name: string, importName: string, cluster: string, ips: string[], hostnames: (string | undefined)[] = []): object {
  return {
    metadata: {
      name,
      namespace,
      labels: {
        'multicluster.kubernetes.io/service-name': importName,
        'multicluster.kubernetes.io/source-cluster': cluster,
        'endpointslice.kubernetes.io/managed-by': 'mcs-controller.example.com',
      },
    },
    addressType: 'IPv4',
    endpoints: ips.map((ip, i) => ({ addresses: [ip], conditions: { ready: true }, ...(hostnames[i] === undefined ? {} : { hostname: hostnames[i] }) })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

/** GET with the server's token; the parsed body (or text) and the status. */
async function get(s: FakeApiServer, path: string): Promise<{ status: number; body: unknown; text: string }> {
  const r = await fetch(`${s.url}${path}`, { headers: { authorization: `Bearer ${s.currentToken}` } });
  const text = await r.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: r.status, body, text };
}

/** cluster.local and clusterset.local over the source's store, on a UDP port (serveDns); `short` answers. */
async function serve(t: Test, source: KubeSource): Promise<Dns> {
  return serveDns(t, source, {}, [MC]);
}

t.test('the fake API server serves the ServiceImport CRD like kube-apiserver', async (t) => {
  const off = await fakeServer(t);
  t.notOk(((await get(off, '/apis')).body as { groups: { name: string }[] }).groups.some((g) => g.name === 'multicluster.x-k8s.io'), 'not installed: not in /apis');
  for (const path of [GROUP, `${GROUP}/serviceimports`, `${GROUP}/namespaces/a/serviceimports`, '/apis/multicluster.x-k8s.io']) {
    const r = await get(off, path);
    t.equal(r.status, 404, `${path}: 404`);
    t.match(r.body, { kind: 'Status', reason: 'NotFound', code: 404, message: 'the server could not find the requested resource' });
  }
  t.throws(() => off.create('ServiceImport', serviceImport('a', 'x', { type: 'Headless' })), /could not find the requested resource/, 'no objects without the CRD');

  const s = await fakeServer(t, { serviceImports: true });
  t.ok(((await get(s, '/apis')).body as { groups: { name: string }[] }).groups.some((g) => g.name === 'multicluster.x-k8s.io'), 'listed in /apis');
  t.match((await get(s, GROUP)).body, { kind: 'APIResourceList', groupVersion: 'multicluster.x-k8s.io/v1alpha1', resources: [{ name: 'serviceimports', namespaced: true, kind: 'ServiceImport' }] });
  for (let i = 0; i < 5; i++) s.create('ServiceImport', serviceImport(i % 2 ? 'a' : 'b', `s${i}`, { type: 'ClusterSetIP', ips: [`10.100.0.${i + 1}`] }));
  // Paging with a continue token; one snapshot resourceVersion; items keep kind/apiVersion (a CRD's are unstructured).
  const p1 = (await get(s, `${GROUP}/serviceimports?limit=2`)).body as { metadata: { resourceVersion: string; continue?: string; remainingItemCount?: number }; items: { kind?: string; apiVersion?: string; metadata: { name: string } }[] };
  t.equal(p1.items.length, 2);
  t.equal(p1.metadata.remainingItemCount, 3);
  t.match(p1.items[0], { kind: 'ServiceImport', apiVersion: 'multicluster.x-k8s.io/v1alpha1' });
  s.create('ServiceImport', serviceImport('c', 'late', { type: 'Headless' }));
  const p2 = (await get(s, `${GROUP}/serviceimports?limit=10&continue=${encodeURIComponent(p1.metadata.continue!)}`)).body as typeof p1;
  t.equal(p2.items.length, 3, 'the rest of the snapshot, not the object created after it');
  t.equal(p2.metadata.resourceVersion, p1.metadata.resourceVersion, 'same snapshot RV');
  const inA = (await get(s, `${GROUP}/namespaces/a/serviceimports`)).body as typeof p1;
  t.same(inA.items.map((i) => i.metadata.name), ['s1', 's3'], 'namespaced list');
  // Watch from the list RV: the object created after the snapshot, then a delete.
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const res = await fetch(`${s.url}${GROUP}/serviceimports?watch=true&resourceVersion=${p1.metadata.resourceVersion}`, {
    headers: { authorization: `Bearer ${s.currentToken}` },
    signal: ac.signal,
  });
  t.equal(res.status, 200);
  s.delete('ServiceImport', 'a', 's1');
  const reader = res.body!.getReader();
  let buf = '';
  while (buf.split('\n').filter((l) => l !== '').length < 2) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += Buffer.from(value).toString();
  }
  const events = buf.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { type: string; object: { kind: string; metadata: { name: string } } });
  t.same(events.map((e) => [e.type, e.object.kind, e.object.metadata.name]), [['ADDED', 'ServiceImport', 'late'], ['DELETED', 'ServiceImport', 's1']]);
  ac.abort();
});

t.test('without multicluster the source never asks for ServiceImports', async (t) => {
  const s = await fakeServer(t, { serviceImports: true });
  s.create('Namespace', ns('a'));
  const { source } = await startSource(t, s);
  t.equal(source.status().serviceImports, 'off');
  t.same(s.requests.filter((r) => r.path.startsWith('/apis/multicluster.x-k8s.io')), [], 'no request to the group');
});

t.test('imports and their slices from list and watch: added, changed, deleted', async (t) => {
  const s = await fakeServer(t, { serviceImports: true });
  s.create('Namespace', ns('shop'));
  s.create('Service', svc('shop', 'cart', '10.96.0.20'));
  s.create('EndpointSlice', slice('shop', 'cart-local', 'cart', ['10.244.0.5']));
  s.create('ServiceImport', serviceImport('shop', 'cart', { type: 'ClusterSetIP', ips: ['10.100.0.20'] }));
  s.create('EndpointSlice', mcSlice('shop', 'cart-east', 'cart', 'east', ['10.1.0.5'], ['cart-0']));
  s.create('ServiceImport', { metadata: { name: 'bad', namespace: 'shop' }, spec: { type: 'LoadBalancer' } });
  const { source, log } = await startSource(t, s, { multicluster: true, pageSize: 1 });
  t.equal(source.status().serviceImports, 'watching');
  t.ok(source.status().resources.some((r) => r.resource === 'serviceimports' && r.synced), 'a synced serviceimports watcher');
  t.match(log.lines.find((l) => /skipped/.test(l.msg)), { level: 'warn', fields: { resource: 'serviceimports', kind: 'ServiceImport', namespace: 'shop', name: 'bad', reason: /^spec\.type: must be one of ClusterSetIP, Headless, got "LoadBalancer"/ } }, 'an invalid import is named and skipped');
  const dns = await serve(t, source);
  const q = dns.short;
  t.equal(await q(`cart.shop.svc.${MC}`), 'NOERROR 10.100.0.20', 'listed import');
  t.equal(await q(`cart-0.east.cart.shop.svc.${MC}`), 'NOERROR 10.1.0.5', 'its slice');
  t.equal(await q(`cart.shop.svc.${Z}`), 'NOERROR 10.96.0.20', 'the Service beside it');
  t.equal(await q(`10-244-0-5.cart.shop.svc.${Z}`), 'NOERROR 10.244.0.5');
  t.equal(await q(`10-1-0-5.cart.shop.svc.${Z}`), 'NXDOMAIN', 'the imported slice is not the Service\'s');

  // Through the watch.
  s.create('ServiceImport', serviceImport('shop', 'db', { type: 'Headless' }));
  s.create('EndpointSlice', mcSlice('shop', 'db-west', 'db', 'west', ['10.2.0.7', '10.2.0.8'], ['db-0', 'db-1']));
  t.equal(await dns.until(`db.shop.svc.${MC}`, 'NOERROR 10.2.0.7 10.2.0.8'), 'NOERROR 10.2.0.7 10.2.0.8', 'import added by the watch');
  t.equal(await q(`db-1.west.db.shop.svc.${MC}`), 'NOERROR 10.2.0.8');
  t.equal(await q(`_http._tcp.db.shop.svc.${MC}`, 'SRV'), 'NOERROR 0 50 8080 db-0.west.db.shop.svc.clusterset.local. 0 50 8080 db-1.west.db.shop.svc.clusterset.local.');
  s.update('ServiceImport', serviceImport('shop', 'cart', { type: 'ClusterSetIP', ips: ['10.100.0.21'] }));
  t.equal(await dns.until(`cart.shop.svc.${MC}`, 'NOERROR 10.100.0.21'), 'NOERROR 10.100.0.21', 'import changed by the watch');
  s.update('EndpointSlice', mcSlice('shop', 'db-west', 'db', 'west', ['10.2.0.7'], ['db-0']));
  t.equal(await dns.until(`db.shop.svc.${MC}`, 'NOERROR 10.2.0.7'), 'NOERROR 10.2.0.7', 'slice changed by the watch');
  s.delete('ServiceImport', 'shop', 'cart');
  t.equal(await dns.until(`cart.shop.svc.${MC}`, 'NXDOMAIN'), 'NXDOMAIN', 'import deleted by the watch');
  t.equal(await q(`cart-0.east.cart.shop.svc.${MC}`), 'NXDOMAIN', 'its endpoint names with it');
  t.equal(await q(`cart.shop.svc.${Z}`), 'NOERROR 10.96.0.20', 'the Service stays');
  // A relist (410) applies the difference: nothing vanishes meanwhile.
  s.compact();
  s.dropWatches();
  s.create('ServiceImport', serviceImport('shop', 'after', { type: 'ClusterSetIP', ips: ['10.100.0.30'] }));
  t.equal(await dns.until(`after.shop.svc.${MC}`, 'NOERROR 10.100.0.30'), 'NOERROR 10.100.0.30', 'after a relist');
  t.equal(await q(`db-0.west.db.shop.svc.${MC}`), 'NOERROR 10.2.0.7');
  t.equal(source.store.serviceImports.size, 2, 'db and after (the invalid one is not stored)');
});

t.test('no ServiceImport CRD: one warning, every other name served; the CRD installed later is picked up', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('shop'));
  s.create('Service', svc('shop', 'cart', '10.96.0.20'));
  const { source, log } = makeSource(t, s, { multicluster: true, backoff: { initialMs: 20, maxMs: 40 } });
  await source.start();
  t.ok(source.synced(), 'synced without it (nothing to list)');
  await watching(source);
  t.equal(source.status().serviceImports, 'absent');
  const dns = await serve(t, source);
  const q = dns.short;
  t.equal(await q(`cart.shop.svc.${Z}`), 'NOERROR 10.96.0.20', 'the cluster zone answers');
  t.equal(await q(`nope.shop.svc.${Z}`), 'NXDOMAIN', 'and its misses are NXDOMAIN, not SERVFAIL');
  t.equal(await q(`cart.shop.svc.${MC}`), 'NXDOMAIN', 'the multicluster zone is served, empty');
  t.equal(await q(`shop.svc.${MC}`), 'NOERROR', 'with the namespaces');
  // Several retries later: still one warning, no outage.
  await until(() => s.requests.filter((r) => r.path === GROUP).length >= 4, 'discovery retried with backoff');
  t.equal(log.count('warn', /ServiceImport CRD .*not installed/), 1, 'one warning');
  t.equal(log.count('warn', /unreachable or failing/), 0, 'not an API outage');
  t.notOk(source.status().outage);

  s.setServiceImports(true);
  s.create('ServiceImport', serviceImport('shop', 'cart', { type: 'ClusterSetIP', ips: ['10.100.0.20'] }));
  t.equal(await dns.until(`cart.shop.svc.${MC}`, 'NOERROR 10.100.0.20'), 'NOERROR 10.100.0.20', 'installed: listed and watched');
  t.equal(source.status().serviceImports, 'watching');
  t.equal(log.count('info', /CRD is installed now/), 1);
  s.create('ServiceImport', serviceImport('shop', 'db', { type: 'ClusterSetIP', ips: ['10.100.0.21'] }));
  t.equal(await dns.until(`db.shop.svc.${MC}`, 'NOERROR 10.100.0.21'), 'NOERROR 10.100.0.21', 'and watched');

  // The CRD removed under the watch: its objects go (DELETED), then 404s: one warning, no outage.
  s.setServiceImports(false);
  t.equal(await dns.until(`db.shop.svc.${MC}`, 'NXDOMAIN'), 'NXDOMAIN', 'deleted with the CRD');
  await until(() => log.count('warn', /not served any more/) === 1, 'the removal noticed');
  await sleep(200);
  t.equal(log.count('warn', /not served any more/), 1, 'once');
  t.equal(log.count('warn', /unreachable or failing/), 0, 'still not an outage');
  t.equal(await q(`cart.shop.svc.${Z}`), 'NOERROR 10.96.0.20', 'the rest keeps serving');
  s.setServiceImports(true);
  s.create('ServiceImport', serviceImport('shop', 'back', { type: 'ClusterSetIP', ips: ['10.100.0.22'] }));
  t.equal(await dns.until(`back.shop.svc.${MC}`, 'NOERROR 10.100.0.22', 'A', 5000), 'NOERROR 10.100.0.22', 'back');
  await until(() => log.count('info', /served again/) === 1, 'recovery logged');
});

t.test('a discovery failure other than 404 holds the first sync back, then the imports are there', async (t) => {
  const s = await fakeServer(t, { serviceImports: true });
  s.create('Namespace', ns('shop'));
  s.create('ServiceImport', serviceImport('shop', 'cart', { type: 'ClusterSetIP', ips: ['10.100.0.20'] }));
  s.failNext(3, 503, { filter: (r) => r.path === GROUP });
  const { source } = makeSource(t, s, { multicluster: true });
  await source.start();
  t.ok(source.synced());
  t.ok(source.store.serviceImports.has('shop/cart'), 'synced means the imports were listed too (never an NXDOMAIN for an existing import)');
});

t.test('namespaceLabels: imports in a namespace that does not match do not exist, and follow its labels', async (t) => {
  const s = await fakeServer(t, { serviceImports: true });
  s.create('Namespace', ns('shop'));
  s.create('ServiceImport', serviceImport('shop', 'cart', { type: 'ClusterSetIP', ips: ['10.100.0.20'] }));
  const { source } = await startSource(t, s, { multicluster: true, namespaceLabels: 'dns=on' });
  const dns = await serve(t, source);
  const q = dns.short;
  t.equal(await q(`cart.shop.svc.${MC}`), 'NXDOMAIN');
  s.update('Namespace', ns('shop', { dns: 'on' }));
  t.equal(await dns.until(`cart.shop.svc.${MC}`, 'NOERROR 10.100.0.20'), 'NOERROR 10.100.0.20', 'appears with the label');
  s.update('Namespace', ns('shop', {}));
  t.equal(await dns.until(`cart.shop.svc.${MC}`, 'NXDOMAIN'), 'NXDOMAIN', 'and leaves without it');
});
