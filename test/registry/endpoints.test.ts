/**
 * The endpoints controller: EndpointSlices for selector Services from the zone's Pods,
 * with the EndpointSlice controller's rules, and what happens to endpoints written in
 * the files.
 */
import t from 'tap';
import type { Pod, Service } from '../../src/cluster/model.js';
import { CONTROLLER_NAME, MANAGED_BY_LABEL, PodIndex, buildEndpointSlices, findPort } from '../../src/registry/endpoints.js';
import { ZONE, docs, harness, pod, svc } from './_harness.js';
import { endpointList } from '../../src/cluster/packed.js';

const DUAL = { serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'] };

type Row = string;
/** `podName addr ready/serving/terminating hostname` per endpoint, in slice order. */
function rows(slices: ReturnType<Awaited<ReturnType<typeof harness>>['slices']>): Row[] {
  return slices.flatMap((s) =>
    endpointList(s.endpoints).map((e) => `${e.podName ?? '-'} ${e.addresses.join(',')} ${+e.conditions.ready}${+e.conditions.serving}${+e.conditions.terminating}${e.hostname === undefined ? '' : ` ${e.hostname}`}`),
  );
}

t.test('selector matching, skipped pods and conditions', async (t) => {
  const app = { app: 'web' };
  const h = await harness(t, {
    'svc.yaml': docs(svc('web', { selector: app })),
    'pods.yaml': docs(
      pod('ready', { labels: { ...app, extra: 'x' }, ips: ['10.244.0.1'] }),
      pod('not-ready', { labels: app, ips: ['10.244.0.2'], ready: false }),
      pod('terminating', { labels: app, ips: ['10.244.0.3'], terminating: true }),
      pod('terminating-unready', { labels: app, ips: ['10.244.0.4'], terminating: true, ready: false }),
      pod('pending-with-ip', { labels: app, ips: ['10.244.0.5'], phase: 'Pending', ready: false }),
      pod('no-ip', { labels: app }),
      pod('succeeded', { labels: app, ips: ['10.244.0.6'], phase: 'Succeeded' }),
      pod('failed', { labels: app, ips: ['10.244.0.7'], phase: 'Failed' }),
      pod('other-labels', { labels: { app: 'db' }, ips: ['10.244.0.8'] }),
      pod('other-ns', { namespace: 'shop', labels: app, ips: ['10.244.0.9'] }),
    ),
  });
  const slices = h.slices('default/web');
  t.equal(slices.length, 1);
  t.same(rows(slices), [
    'not-ready 10.244.0.2 000',
    'pending-with-ip 10.244.0.5 000',
    'ready 10.244.0.1 110',
    'terminating 10.244.0.3 011',
    'terminating-unready 10.244.0.4 001',
  ]);
  const s = slices[0];
  t.equal(s?.name, 'web-ipv4-0', 'deterministic name');
  t.equal(s?.labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
  t.equal(s?.labels['kubernetes.io/service-name'], 'web');
  t.same(s?.ports, [{ name: 'http', port: 80, protocol: 'TCP' }]);
  // publishNotReadyAddresses: every endpoint ready.
  h.write('svc.yaml', docs(svc('web', { selector: app, publishNotReadyAddresses: true })));
  await h.reload();
  t.same(rows(h.slices('default/web')).map((r) => r.split(' ')[2]), ['100', '100', '110', '111', '101']);
});

t.test('named targetPort resolves per pod; a pod without it contributes no port for it', async (t) => {
  const h = await harness(t, {
    'a.yaml': docs(
      svc('api', {
        selector: { app: 'api' },
        ports: [
          { name: 'http', port: 80, targetPort: 'web' },
          { name: 'metrics', port: 9090, targetPort: 9100 },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' },
        ],
      }),
      pod('a1', { labels: { app: 'api' }, ips: ['10.244.1.1'], ports: [{ name: 'web', containerPort: 8080 }, { name: 'dns', containerPort: 5353, protocol: 'UDP' }] }),
      pod('a2', { labels: { app: 'api' }, ips: ['10.244.1.2'], ports: [{ name: 'web', containerPort: 8081 }, { name: 'dns', containerPort: 5353 }] }),
      pod('a3', { labels: { app: 'api' }, ips: ['10.244.1.3'], ports: [] }),
    ),
  });
  const slices = h.slices('default/api');
  const byPod = Object.fromEntries(slices.flatMap((s) => endpointList(s.endpoints).map((e) => [e.podName, s.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`).join(' ')])));
  t.same(byPod, {
    a1: 'http:8080/TCP metrics:9100/TCP dns:5353/UDP',
    a2: 'http:8081/TCP metrics:9100/TCP',
    a3: 'metrics:9100/TCP',
  }, 'a2: its "dns" port is TCP, not UDP (FindPort matches the protocol); a3: no named ports');
  t.equal(slices.length, 3, 'one slice per distinct port list');
  t.same(slices.map((s) => s.name), ['api-ipv4-0', 'api-ipv4-1', 'api-ipv4-2']);
});

t.test('hostname only when pod.subdomain is the Service name', async (t) => {
  const h = await harness(t, {
    'a.yaml': docs(
      svc('db', { clusterIP: 'None', selector: { app: 'db' } }),
      pod('db-0', { labels: { app: 'db' }, ips: ['10.244.2.1'], hostname: 'db-0', subdomain: 'db' }),
      pod('db-1', { labels: { app: 'db' }, ips: ['10.244.2.2'], hostname: 'db-1', subdomain: 'other' }),
      pod('db-2', { labels: { app: 'db' }, ips: ['10.244.2.3'], subdomain: 'db' }),
    ),
  });
  t.same(rows(h.slices('default/db')), ['db-0 10.244.2.1 110 db-0', 'db-1 10.244.2.2 110', 'db-2 10.244.2.3 110']);
  t.equal(h.slices('default/db')[0]?.labels['service.kubernetes.io/headless'], '', 'headless label');
});

t.test('at most 100 endpoints per slice, deterministic names and order', async (t) => {
  const pods = Array.from({ length: 250 }, (_, i) => pod(`p-${String(i).padStart(3, '0')}`, { labels: { app: 'big' }, ips: [`10.244.${Math.floor(i / 200)}.${(i % 200) + 1}`] }));
  const h = await harness(t, { 'svc.yaml': docs(svc('big', { selector: { app: 'big' } })), 'pods.yaml': docs(...pods) });
  const slices = h.slices('default/big');
  t.same(slices.map((s) => `${s.name}:${endpointList(s.endpoints).length}`), ['big-ipv4-0:100', 'big-ipv4-1:100', 'big-ipv4-2:50']);
  t.equal(endpointList(slices[0]!.endpoints)[0]?.podName, 'p-000');
  t.equal(endpointList(slices[2]!.endpoints)[49]?.podName, 'p-249');
  // Pods written in another order: the same slices.
  const before = JSON.stringify(slices);
  h.write('pods.yaml', docs(...[...pods].reverse()));
  await h.reload();
  t.equal(JSON.stringify(h.slices('default/big')), before);
});

t.test('dual-stack: one set of slices per family of the Service', async (t) => {
  const h = await harness(
    t,
    {
      'a.yaml': docs(
        svc('cart', { ipFamilyPolicy: 'RequireDualStack', selector: { app: 'cart' } }),
        svc('v4only', { selector: { app: 'cart' } }),
        pod('c1', { labels: { app: 'cart' }, ips: ['10.244.3.1', 'fd00:10:244::3:1'] }),
        pod('c2', { labels: { app: 'cart' }, ips: ['10.244.3.2'] }),
      ),
    },
    { config: DUAL },
  );
  const slices = h.slices('default/cart');
  t.same(slices.map((s) => `${s.name} ${s.addressType} ${endpointList(s.endpoints).map((e) => e.addresses[0]).join(',')}`), [
    'cart-ipv4-0 IPv4 10.244.3.1,10.244.3.2',
    'cart-ipv6-0 IPv6 fd00:10:244::3:1',
  ]);
  t.same(h.slices('default/v4only').map((s) => s.addressType), ['IPv4'], 'SingleStack: its family only');
});

t.test('no matching pod: one empty placeholder slice per family', async (t) => {
  const h = await harness(t, { 'a.yaml': docs(svc('lonely', { selector: { app: 'none' } })) });
  t.same(h.slices('default/lonely').map((s) => `${s.name}:${endpointList(s.endpoints).length}:${s.ports.length}`), ['lonely-ipv4-0:0:0']);
});

t.test('endpoints written in the files: the controller-labelled slices and the Endpoints of selector Services replaced (reported once), the rest kept', async (t) => {
  const slice = (name: string, service: string, ip: string, managedBy?: string) => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': service, ...(managedBy === undefined ? {} : { [MANAGED_BY_LABEL]: managedBy }) } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip] }],
    ports: [{ name: 'http', port: 80 }],
  });
  const endpoints = (name: string, ip: string) => ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses: [{ ip }], ports: [{ name: 'http', port: 80 }] }] });
  const h = await harness(t, {
    'a.yaml': docs(
      svc('sel', { selector: { app: 'sel' } }),
      pod('p', { labels: { app: 'sel' }, ips: ['10.244.4.1'] }),
      slice('sel-by-controller', 'sel', '10.244.9.1', CONTROLLER_NAME),
      slice('sel-unlabelled', 'sel', '10.244.9.2'),
      slice('sel-foreign', 'sel', '10.244.9.3', 'my-operator.example.com'),
      endpoints('sel', '10.244.9.4'),
      svc('manual'),
      slice('manual-1', 'manual', '10.244.8.1'),
      svc('legacy'),
      endpoints('legacy', '10.244.8.2'),
    ),
  });
  const sel = h.slices('default/sel');
  t.same(
    sel.map((s) => `${s.name} ${endpointList(s.endpoints).map((e) => e.addresses[0]).join(',')}`),
    ['sel-foreign 10.244.9.3', 'sel-ipv4-0 10.244.4.1', 'sel-unlabelled 10.244.9.2'],
    'generated + the foreign one + the unlabelled one (not the controller\'s: no managed-by)',
  );
  t.equal(h.store().legacyEndpoints.get('default/sel'), undefined, 'legacy Endpoints of a selector Service replaced');
  t.same(h.slices('default/manual').map((s) => s.name), ['manual-1'], 'selectorless: as written');
  t.same(h.slices('default/legacy').map((s) => `${s.legacy} ${endpointList(s.endpoints)[0]?.addresses[0]}`), ['true 10.244.8.2']);
  const replaced = h.registry.zone(ZONE).anomalies().filter((a) => a.kind === 'replaced-slice');
  t.same(replaced.map((a) => `${a.objectKind} ${a.name} ${a.severity} #${a.doc}`).sort(), [
    'EndpointSlice sel-by-controller info #3',
    'Endpoints sel info #6',
  ]);
  t.match(replaced.find((a) => a.name === 'sel-by-controller')?.message, /managed by endpointslice-controller\.k8s\.io are generated from its Pods \(remove the endpointslice\.kubernetes\.io\/managed-by label/);
  const logged = () => h.logs.filter((l) => l.msg.startsWith('endpoints written in the files replaced'));
  t.equal(logged().length, 2);
  t.equal(logged()[0]?.level, 'info');
  h.write('b.yaml', docs(svc('x')));
  await h.reload();
  t.equal(logged().length, 2, 'reported once');
});

t.test('unit: PodIndex, findPort and buildEndpointSlices on slim objects', async (t) => {
  const mk = (name: string, labels: Record<string, string>, ns = 'n'): Pod => ({
    namespace: ns,
    name,
    ips: ['10.0.0.1'],
    phase: 'Running',
    terminating: false,
    ready: true,
    labels,
    containerPorts: [{ name: 'web', containerPort: 8080, protocol: 'TCP' }],
  });
  const idx = new PodIndex([mk('a', { x: '1', y: '2' }), mk('b', { x: '1' }), mk('c', { x: '1', y: '2' }, 'other')]);
  t.same(idx.matching('n', { x: '1', y: '2' }).map((p) => p.name), ['a']);
  t.same(idx.matching('n', { x: '1' }).map((p) => p.name), ['a', 'b']);
  t.same(idx.matching('n', { z: '1' }), []);
  t.same(idx.matching('n', {}), [], 'an empty selector selects nothing (no selector)');
  const p = mk('a', {});
  t.equal(findPort(p, { name: 'h', port: 80, protocol: 'TCP', targetPort: 'web' }), 8080);
  t.equal(findPort(p, { name: 'h', port: 80, protocol: 'UDP', targetPort: 'web' }), undefined);
  t.equal(findPort(p, { name: 'h', port: 80, protocol: 'TCP', targetPort: 9000 }), 9000);
  t.equal(findPort(p, { name: 'h', port: 80, protocol: 'TCP' }), 80, 'no targetPort: the port');
  const service: Service = { namespace: 'n', name: 's', type: 'ExternalName', clusterIPs: [], headless: false, ports: [], selector: { x: '1' }, publishNotReadyAddresses: false, labels: {} };
  t.same(buildEndpointSlices(service, [p]), [], 'ExternalName: no slices');
  const small = buildEndpointSlices({ ...service, type: 'ClusterIP', clusterIPs: ['10.96.0.1'] }, Array.from({ length: 5 }, (_, i) => ({ ...p, name: `p${i}` })), 2);
  t.same(small.map((s) => endpointList(s.endpoints).length), [2, 2, 1], 'maxPerSlice honoured');
});
