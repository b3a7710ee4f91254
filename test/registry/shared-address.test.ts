/**
 * One address behind two services through the zones/ source (FileSource with the
 * embedded registry), answered by the DNS handler: a PTR per service (README "What it
 * answers"; CoreDNS's reverse lookup returns every endpoint that has the address).
 *
 * - Pods selected by two Services: the endpoints controller gives each Service its slice
 *   with the pod's address; the PTRs follow Services and Pods as the files change.
 * - Slices written in the files: a selectorless Service's, and a selector Service's
 *   custom slice (no managed-by label). The latter was replaced by the controller's
 *   output (nothing, with no matching Pod), which left such an address with one PTR.
 */
import t from 'tap';
import { DnsHandler } from '../../src/server/handler.js';
import { Resolver } from '../../src/zone/resolver.js';
import { ClusterZone } from '../../src/zone/zone.js';
import { decode, makeQuery } from '../helpers/dns.js';
import { ZONE, docs, harness, pod, svc, type Harness } from './_harness.js';

const Z = ZONE;
const PTR = '99.0.0.10.in-addr.arpa';

function ptrs(h: Harness): () => { rcode: string; targets: string[] } {
  const zone = new ClusterZone(Z, h.store(), { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined });
  const r = new Resolver();
  r.setZones([zone]);
  const handler = new DnsHandler({ resolver: r });
  zone.onUpdate = (change) => handler.invalidateChange(Z, change); // as the server does (node.ts)
  return () => {
    h.store().flush();
    const d = decode(handler.handle(makeQuery(PTR, 'PTR'), 'udp') as Buffer);
    return { rcode: d.rcode, targets: d.answer.map((a) => a.split(' ').at(-1) ?? '').sort() };
  };
}

t.test('zones/ with the endpoints controller: a pod selected by two Services has a PTR for each', async (t) => {
  const two = docs(
    svc('api', { selector: { app: 'db' } }, 'shop'),
    svc('db', { clusterIP: 'None', selector: { app: 'db' } }, 'shop'),
  );
  const pods = docs(pod('db-0', { namespace: 'shop', labels: { app: 'db' }, ips: ['10.0.0.99'], hostname: 'db-0', subdomain: 'db' }));
  const h = await harness(t, { 'svc.yaml': two, 'pods.yaml': pods });
  const ask = ptrs(h);
  t.same(ask(), { rcode: 'NOERROR', targets: [`10-0-0-99.api.shop.svc.${Z}.`, `db-0.db.shop.svc.${Z}.`] }, 'one per Service, each with its name for the pod');

  // A third Service selecting it, added while running; then one removed.
  h.write('more.yaml', docs(svc('metrics', { clusterIP: 'None', selector: { app: 'db' } }, 'shop')));
  await h.reload();
  t.same(ask().targets, [`10-0-0-99.api.shop.svc.${Z}.`, `10-0-0-99.metrics.shop.svc.${Z}.`, `db-0.db.shop.svc.${Z}.`], 'a third Service: a third PTR');
  h.write('svc.yaml', docs(svc('db', { clusterIP: 'None', selector: { app: 'db' } }, 'shop')));
  await h.reload();
  t.same(ask().targets, [`10-0-0-99.metrics.shop.svc.${Z}.`, `db-0.db.shop.svc.${Z}.`], 'api removed: its PTR goes, the others stay');

  // The pod stops matching one selector: that Service's PTR goes.
  h.write('more.yaml', docs(svc('metrics', { clusterIP: 'None', selector: { app: 'other' } }, 'shop')));
  await h.reload();
  t.same(ask().targets, [`db-0.db.shop.svc.${Z}.`]);
  h.remove('pods.yaml');
  await h.reload();
  t.equal(ask().rcode, 'REFUSED', 'no pod, no PTR (not ours: no reverseZones)');
});

t.test('zones/ with slices written in the files: a selectorless Service and a selector Service\'s custom slice', async (t) => {
  const slice = (name: string, service: string, hostname?: string): unknown => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.0.0.99'], conditions: { ready: true }, ...(hostname === undefined ? {} : { hostname }) }],
    ports: [{ name: 'http', port: 80 }],
  });
  const h = await harness(t, {
    'a.yaml': docs(
      svc('external', {}, 'shop'),
      slice('external-1', 'external'),
      // A selector that matches no Pod, and a slice written by hand (no managed-by label).
      svc('legacy-db', { clusterIP: 'None', selector: { app: 'gone' } }, 'shop'),
      slice('legacy-db-manual', 'legacy-db', 'primary'),
      svc('old', {}, 'shop'),
      { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'old', namespace: 'shop' }, subsets: [{ addresses: [{ ip: '10.0.0.99' }], ports: [{ name: 'http', port: 80 }] }] },
    ),
  });
  const ask = ptrs(h);
  t.same(ask(), {
    rcode: 'NOERROR',
    targets: [`10-0-0-99.external.shop.svc.${Z}.`, `10-0-0-99.old.shop.svc.${Z}.`, `primary.legacy-db.shop.svc.${Z}.`],
  });
  t.same(h.registry.zone(Z).anomalies(), [], 'nothing refused or replaced');
});
