/**
 * The proxy's view of the store (src/proxy/view.ts): which Services kube-proxy would
 * program, how slices merge into per-port endpoint lists (named ports per slice,
 * families, duplicates, order), the new Service fields, and that only changed services
 * are reported after a store change. Also categorize() (KEP-1669 fallback, Local policy).
 */
import t from 'tap';
import { toEndpointSlice, toService } from '../../src/cluster/convert.js';
import type { EndpointSlice, Service } from '../../src/cluster/model.js';
import { packEndpoints } from '../../src/cluster/packed.js';
import { ClusterStore } from '../../src/cluster/store.js';
import { categorize } from '../../src/proxy/categorize.js';
import { ProxyView, servicePorts } from '../../src/proxy/view.js';
import type { ProxyPort } from '../../src/proxy/types.js';

function svc(json: Record<string, unknown>): Service {
  const r = toService({ apiVersion: 'v1', kind: 'Service', ...json });
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

function slice(name: string, service: string, addressType: string, endpoints: unknown[], ports: unknown[], labels: Record<string, string> = {}): EndpointSlice {
  const r = toEndpointSlice({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'ns1', labels: { 'kubernetes.io/service-name': service, ...labels } },
    addressType,
    endpoints,
    ports,
  });
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

const web = (extra: Record<string, unknown> = {}): Service =>
  svc({
    metadata: { name: 'web', namespace: 'ns1' },
    spec: {
      type: 'NodePort',
      clusterIPs: ['10.96.0.10', 'fd00::10'],
      ipFamilies: ['IPv4', 'IPv6'],
      ports: [
        { name: 'http', port: 80, targetPort: 'http', nodePort: 30080 },
        { name: 'dns', port: 53, protocol: 'UDP' },
      ],
      ...extra,
    },
  });

t.test('Service proxy fields are converted, defaults left out', async (t) => {
  const plain = web();
  t.equal(plain.affinitySeconds, undefined);
  t.equal(plain.internalTrafficPolicyLocal, undefined);
  t.equal(plain.externalIPs, undefined);
  const s = web({ sessionAffinity: 'ClientIP', internalTrafficPolicy: 'Local', externalTrafficPolicy: 'Local', externalIPs: ['192.0.2.7'] });
  t.equal(s.affinitySeconds, 10800, 'ClientIP without a config: the API default, 3 hours');
  t.equal(s.internalTrafficPolicyLocal, true);
  t.equal(s.externalTrafficPolicyLocal, true);
  t.same(s.externalIPs, ['192.0.2.7']);
  t.equal(web({ sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }).affinitySeconds, 60);
  const bad = toService({ metadata: { name: 'x', namespace: 'ns1' }, spec: { clusterIP: '10.96.0.1', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } } });
  t.notOk(bad.ok);
  t.match(!bad.ok && bad.error, /timeoutSeconds: must be a whole number of seconds from 1 to 86400/);
  const bad2 = toService({ metadata: { name: 'x', namespace: 'ns1' }, spec: { clusterIP: '10.96.0.1', internalTrafficPolicy: 'Nearby' } });
  t.match(!bad2.ok && bad2.error, /internalTrafficPolicy: must be one of Cluster, Local/);
});

t.test('ports per family, named target ports resolved per slice, sorted by ip:port text', async (t) => {
  const slices = [
    slice('web-a', 'web', 'IPv4', [
      { addresses: ['10.244.0.2'], nodeName: 'node-a' },
      { addresses: ['10.244.0.10'], conditions: { ready: false } },
    ], [{ name: 'http', port: 8080 }, { name: 'dns', port: 5353, protocol: 'UDP' }]),
    // Another slice of the same service whose pods name the port differently.
    slice('web-b', 'web', 'IPv4', [{ addresses: ['10.244.1.3'], nodeName: 'node-b' }], [{ name: 'http', port: 9090 }]),
    slice('web-6', 'web', 'IPv6', [{ addresses: ['fd00:244::2'] }], [{ name: 'http', port: 8080 }]),
    slice('web-fqdn', 'web', 'FQDN', [{ addresses: ['example.com'] }], [{ name: 'http', port: 8080 }]),
  ];
  const ports = servicePorts(web(), slices, 'node-a');
  const byKey = new Map(ports.map((p) => [`${p.family} ${p.spn} ${p.protocol}`, p]));
  t.same([...byKey.keys()].sort(), ['4 ns1/web:dns UDP', '4 ns1/web:http TCP', '6 ns1/web:dns UDP', '6 ns1/web:http TCP']);
  const http4 = byKey.get('4 ns1/web:http TCP')!;
  t.same(
    http4.endpoints.map((e) => e.key),
    ['10.244.0.10:8080', '10.244.0.2:8080', '10.244.1.3:9090'],
    'string order (kube-proxy writes rules in it): 10.244.0.10 before 10.244.0.2',
  );
  t.same(http4.endpoints.map((e) => [e.ready, e.local]), [[false, false], [true, true], [true, false]]);
  t.equal(http4.nodePort, 30080);
  t.equal(http4.clusterIP, '10.96.0.10');
  t.same(byKey.get('4 ns1/web:dns UDP')!.endpoints.map((e) => e.key), ['10.244.0.10:5353', '10.244.0.2:5353'], 'slice web-b has no dns port');
  t.same(byKey.get('6 ns1/web:http TCP')!.endpoints.map((e) => e.key), ['[fd00:244::2]:8080'], 'IPv6 keys bracketed');
  t.same(byKey.get('6 ns1/web:dns UDP')!.endpoints, []);
});

t.test('packed slices (API source) read the same, with node names kept for the proxy', async (t) => {
  const s = slice('web-a', 'web', 'IPv4', [{ addresses: ['10.244.0.2'], nodeName: 'node-a' }, { addresses: ['10.244.0.3'], nodeName: 'node-b' }], [{ name: 'http', port: 8080 }]);
  const packed = { ...s, endpoints: packEndpoints(s.endpoints, false, true) };
  const dropped = { ...s, endpoints: packEndpoints(s.endpoints, false, false) };
  const local = (x: EndpointSlice) => servicePorts(web(), [x], 'node-a')[0]!.endpoints.map((e) => e.local);
  t.same(local(s), [true, false]);
  t.same(local(packed), [true, false]);
  t.same(local(dropped), [false, false], 'without node names nothing is local');
});

t.test('duplicates across slices: first kept, replaced by a later non-terminating one', async (t) => {
  const a = slice('a', 'web', 'IPv4', [{ addresses: ['10.244.0.2'], conditions: { ready: false, serving: true, terminating: true } }], [{ name: 'http', port: 8080 }]);
  const b = slice('b', 'web', 'IPv4', [{ addresses: ['10.244.0.2'], conditions: { ready: true } }], [{ name: 'http', port: 8080 }]);
  const c = slice('c', 'web', 'IPv4', [{ addresses: ['10.244.0.2'], conditions: { ready: false } }], [{ name: 'http', port: 8080 }]);
  const eps = (slices: EndpointSlice[]) => servicePorts(web(), slices, 'n')[0]!.endpoints;
  t.same(eps([a, b]).map((e) => e.ready), [true]);
  t.same(eps([b, c]).map((e) => e.ready), [true], 'a later non-terminating one does not replace a non-terminating one');
});

t.test('services kube-proxy ignores', async (t) => {
  const none = (s: Service) => servicePorts(s, [], 'n').length;
  t.equal(none(svc({ metadata: { name: 'h', namespace: 'ns1' }, spec: { clusterIP: 'None', ports: [{ port: 80 }] } })), 0, 'headless');
  t.equal(none(svc({ metadata: { name: 'e', namespace: 'ns1' }, spec: { type: 'ExternalName', externalName: 'example.com' } })), 0, 'ExternalName');
  t.equal(none(svc({ metadata: { name: 'o', namespace: 'ns1', labels: { 'service.kubernetes.io/service-proxy-name': 'other' } }, spec: { clusterIP: '10.96.0.3', ports: [{ port: 80 }] } })), 0, 'another proxy');
  t.equal(none(svc({ metadata: { name: 'p', namespace: 'ns1' }, spec: { clusterIP: '10.96.0.3', ports: [{ port: 80 }] } })), 1);
  const unnamed = servicePorts(svc({ metadata: { name: 'p', namespace: 'ns1' }, spec: { clusterIP: '10.96.0.3', ports: [{ port: 80 }] } }), [], 'n')[0]!;
  t.equal(unnamed.spn, 'ns1/p', 'an unnamed port: ServicePortName without ":"');
});

t.test('ProxyView reports only services whose ports changed', async (t) => {
  const store = new ClusterStore();
  store.upsert({ kind: 'Service', obj: web() });
  store.upsert({ kind: 'EndpointSlice', obj: slice('web-a', 'web', 'IPv4', [{ addresses: ['10.244.0.2'] }], [{ name: 'http', port: 8080 }]) });
  store.upsert({ kind: 'Service', obj: svc({ metadata: { name: 'other', namespace: 'ns1' }, spec: { clusterIP: '10.96.0.11', ports: [{ port: 80 }] } }) });
  store.flush();
  const view = new ProxyView(store, 'node-a');
  t.equal(view.size, 2);
  t.equal(view.ports(4).length, 3);
  t.equal(view.ports(6).length, 2);
  // A label-only change leaves the proxy's ports as they were.
  const changes: Set<string>[] = [];
  store.onChange((c) => changes.push(view.update(c.services)));
  store.upsert({ kind: 'Service', obj: svc({ metadata: { name: 'other', namespace: 'ns1', labels: { team: 'x' } }, spec: { clusterIP: '10.96.0.11', ports: [{ port: 80 }] } }) });
  store.flush();
  t.same(changes.map((c) => [...c]), [[]]);
  store.upsert({ kind: 'EndpointSlice', obj: slice('web-a', 'web', 'IPv4', [{ addresses: ['10.244.0.2'] }, { addresses: ['10.244.0.3'] }], [{ name: 'http', port: 8080 }]) });
  store.flush();
  t.same([...changes[1]!], ['ns1/web']);
  t.same(view.portsOf('ns1/web').find((p) => p.family === 4 && p.portName === 'http')!.endpoints.length, 2);
  store.remove('Service', 'ns1/other');
  store.flush();
  t.same([...changes[2]!], ['ns1/other']);
  t.equal(view.size, 1);
});

const ep = (ip: string, o: Partial<{ ready: boolean; serving: boolean; terminating: boolean; local: boolean }> = {}) => ({
  ip,
  port: 80,
  key: `${ip}:80`,
  ready: o.ready ?? true,
  serving: o.serving ?? o.ready ?? true,
  terminating: o.terminating ?? false,
  local: o.local ?? false,
});
const port = (endpoints: ReturnType<typeof ep>[], o: Partial<ProxyPort> = {}): ProxyPort => ({
  service: 'ns1/a', namespace: 'ns1', name: 'a', portName: '', spn: 'ns1/a', protocol: 'TCP', family: 4, clusterIP: '10.96.0.1', port: 80,
  nodePort: 0, externalIPs: [], affinitySeconds: 0, internalLocal: false, externalLocal: false, endpoints, ...o,
});

t.test('categorize: ready ones; serving-terminating only when none is ready (KEP-1669)', async (t) => {
  const keys = (c: readonly { key: string }[]) => c.map((e) => e.key);
  const mixed = port([ep('10.0.0.1'), ep('10.0.0.2', { ready: false, serving: true, terminating: true }), ep('10.0.0.3', { ready: false })]);
  t.same(keys(categorize(mixed).cluster), ['10.0.0.1:80']);
  const draining = port([ep('10.0.0.2', { ready: false, serving: true, terminating: true }), ep('10.0.0.3', { ready: false })]);
  t.same(keys(categorize(draining).cluster), ['10.0.0.2:80'], 'falls back to serving-terminating');
  t.equal(categorize(draining).hasAny, true);
  const dead = port([ep('10.0.0.3', { ready: false })]);
  t.same(categorize(dead).cluster, []);
  t.equal(categorize(dead).hasAny, false);
  const local = port([ep('10.0.0.1'), ep('10.0.0.2', { local: true })], { internalLocal: true });
  const c = categorize(local);
  t.same(keys(c.local), ['10.0.0.2:80']);
  t.same(keys(c.allReachable), ['10.0.0.2:80'], 'iTP=Local without external access uses local endpoints only');
  t.equal(c.hasAny, true);
  const remoteOnly = categorize(port([ep('10.0.0.1')], { internalLocal: true }));
  t.same(remoteOnly.local, []);
  t.equal(remoteOnly.hasAny, true, 'endpoints exist, none local: DROP, not REJECT');
  const np = categorize(port([ep('10.0.0.1'), ep('10.0.0.2', { local: true })], { externalLocal: true, nodePort: 30001 }));
  t.same(keys(np.cluster), ['10.0.0.1:80', '10.0.0.2:80']);
  t.same(keys(np.local), ['10.0.0.2:80']);
  t.same(keys(np.allReachable), ['10.0.0.1:80', '10.0.0.2:80']);
});
