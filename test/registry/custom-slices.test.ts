/**
 * EndpointSlices written in zones/ for a Service with a selector, through the files
 * source and the embedded endpoints controller, answered by the DNS handler. Kubernetes'
 * EndpointSlice controller owns only the slices labelled
 * `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`; a slice
 * without that label (or with another manager's) is custom and served beside the
 * controller's, as on a real cluster. A slice that carries the controller's label is the
 * controller's to rewrite: its content is replaced by what the Pods say.
 */
import t from 'tap';
import { DnsHandler } from '../../src/server/handler.js';
import { Resolver } from '../../src/zone/resolver.js';
import { ClusterZone } from '../../src/zone/zone.js';
import { CONTROLLER_NAME, MANAGED_BY_LABEL } from '../../src/registry/endpoints.js';
import { decode, makeQuery } from '../helpers/dns.js';
import { ZONE, docs, harness, pod, svc, type Harness } from './_harness.js';

const Z = ZONE;

function slice(name: string, service: string, endpoints: Array<{ ip: string; hostname?: string }>, managedBy?: string): unknown {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': service, ...(managedBy === undefined ? {} : { [MANAGED_BY_LABEL]: managedBy }) } },
    addressType: 'IPv4',
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: { ready: true }, ...(e.hostname === undefined ? {} : { hostname: e.hostname }) })),
    ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
  };
}

function dns(h: Harness): (q: string, type?: string) => { rcode: string; answer: string[] } {
  const zone = new ClusterZone(Z, h.store(), { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined });
  const r = new Resolver();
  r.setZones([zone]);
  const handler = new DnsHandler({ resolver: r });
  zone.onUpdate = () => handler.invalidate();
  return (q, type = 'A') => {
    h.store().flush(); // deliver a reload's changes to the zone now (they are batched to the next tick)
    const d = decode(handler.handle(makeQuery(q, type), 'udp') as Buffer);
    return { rcode: d.rcode, answer: [...d.answer].sort() };
  };
}

const files = (customLabel: string | undefined, staleLabel: string | undefined): string =>
  docs(
    svc('web', { clusterIP: 'None', selector: { app: 'web' } }),
    pod('web-0', { labels: { app: 'web' }, ips: ['10.244.0.10'], hostname: 'web-0', subdomain: 'web' }),
    // A member outside the cluster, added by hand (no managed-by label).
    slice('web-external', 'web', [{ ip: '192.0.2.10', hostname: 'ext-0' }], customLabel),
    // A copy of an old controller slice: the controller owns it and rewrites it from the Pods.
    slice('web-stale', 'web', [{ ip: '10.244.0.99' }], staleLabel),
  );

t.test('zones/: a slice without managed-by is served beside the controller\'s; a controller-labelled one is replaced', async (t) => {
  const h = await harness(t, { 'web.yaml': files(undefined, CONTROLLER_NAME) });
  const ask = dns(h);
  t.same(
    h.slices('default/web').map((s) => s.name),
    ['web-external', 'web-ipv4-0'],
    'the custom slice and the generated one; the controller-labelled copy is not served',
  );
  t.same(ask(`web.default.svc.${Z}`).answer, [`web.default.svc.${Z}. 5 IN A 10.244.0.10`, `web.default.svc.${Z}. 5 IN A 192.0.2.10`]);
  t.same(ask(`ext-0.web.default.svc.${Z}`).answer, [`ext-0.web.default.svc.${Z}. 5 IN A 192.0.2.10`], 'its hostname is a name');
  t.same(ask(`web-0.web.default.svc.${Z}`).answer, [`web-0.web.default.svc.${Z}. 5 IN A 10.244.0.10`], 'the pod\'s name from the controller');
  t.same(ask(`_http._tcp.web.default.svc.${Z}`, 'SRV').answer, [
    `_http._tcp.web.default.svc.${Z}. 5 IN SRV 0 50 80 ext-0.web.default.svc.${Z}.`,
    `_http._tcp.web.default.svc.${Z}. 5 IN SRV 0 50 80 web-0.web.default.svc.${Z}.`,
  ]);
  t.same(ask('10.2.0.192.in-addr.arpa', 'PTR').answer, [`10.2.0.192.in-addr.arpa. 5 IN PTR ext-0.web.default.svc.${Z}.`]);
  t.equal(ask('99.0.244.10.in-addr.arpa', 'PTR').rcode, 'REFUSED', 'the replaced slice\'s address is nowhere (not ours: no reverseZones)');
  t.same(
    h.registry.zone(Z).anomalies().map((a) => `${a.kind} ${a.name}`),
    ['replaced-slice web-stale'],
    'only the controller-labelled slice is reported as replaced',
  );
  t.notOk(h.logs.some((l) => l.msg.startsWith('endpoints written in the files replaced') && l.fields['name'] === 'web-external'), 'the custom slice is not reported');

  // Labels swapped while running: the one now labelled as the controller's goes, the other comes.
  h.write('web.yaml', files(CONTROLLER_NAME, undefined));
  await h.reload();
  t.same(h.slices('default/web').map((s) => s.name), ['web-ipv4-0', 'web-stale']);
  t.same(ask(`web.default.svc.${Z}`).answer, [`web.default.svc.${Z}. 5 IN A 10.244.0.10`, `web.default.svc.${Z}. 5 IN A 10.244.0.99`]);
  t.equal(ask(`ext-0.web.default.svc.${Z}`).rcode, 'NXDOMAIN');

  // Another manager's label: custom too.
  h.write('web.yaml', files('my-operator.example.com', CONTROLLER_NAME));
  await h.reload();
  t.same(h.slices('default/web').map((s) => s.name), ['web-external', 'web-ipv4-0']);
  t.same(ask(`ext-0.web.default.svc.${Z}`).answer, [`ext-0.web.default.svc.${Z}. 5 IN A 192.0.2.10`]);
});

t.test('zones/: custom slices of a selector Service with no matching Pod still serve', async (t) => {
  // The controller writes its empty placeholder; the hand-written members are the Service's endpoints.
  const h = await harness(t, {
    'db.yaml': docs(svc('db', { clusterIP: '10.96.0.60', selector: { app: 'db' } }), slice('db-external', 'db', [{ ip: '192.0.2.20' }])),
  });
  const ask = dns(h);
  t.same(h.slices('default/db').map((s) => s.name), ['db-external', 'db-ipv4-0']);
  t.same(ask(`db.default.svc.${Z}`).answer, [`db.default.svc.${Z}. 5 IN A 10.96.0.60`]);
  t.same(ask(`192-0-2-20.db.default.svc.${Z}`).answer, [`192-0-2-20.db.default.svc.${Z}. 5 IN A 192.0.2.20`]);
  t.same(ask('20.2.0.192.in-addr.arpa', 'PTR').answer, [`20.2.0.192.in-addr.arpa. 5 IN PTR 192-0-2-20.db.default.svc.${Z}.`]);
});
