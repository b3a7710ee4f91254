/**
 * Endpoint address validation as the apiserver (ValidateEndpointIP), plus the project
 * rule "not another Service's clusterIP": refused addresses are never served, and are
 * reported with the file, the object and the reason.
 */
import { join } from 'node:path';
import t from 'tap';
import { ZONE, docs, harness, pod, svc } from './_harness.js';
import { endpointList } from '../../src/cluster/packed.js';

const slice = (name: string, service: string, type: 'IPv4' | 'IPv6', ips: string[]) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': service } },
  addressType: type,
  endpoints: ips.map((ip) => ({ addresses: [ip] })),
  ports: [{ name: 'http', port: 80 }],
});

const LOOPBACK = 'may not be in the loopback range (127.0.0.0/8, ::1/128)';
const LINK_LOCAL = 'may not be in the link-local range (169.254.0.0/16, fe80::/10)';
const MULTICAST = 'may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)';

t.test('special addresses in slices and Endpoints written in the files', async (t) => {
  const h = await harness(
    t,
    {
      'a.yaml': docs(
        svc('v4'),
        slice('v4-a', 'v4', 'IPv4', ['127.0.0.1', '10.244.0.1', '169.254.10.1', '224.0.0.251', '0.0.0.0', '239.1.1.1', '255.255.255.255']),
        svc('v6', { ipFamilies: ['IPv6'] }),
        slice('v6-a', 'v6', 'IPv6', ['::1', 'fe80::1', 'ff02::fb', '::', '2001:db8::1']),
        svc('bad-only'),
        slice('bad-only-a', 'bad-only', 'IPv4', ['127.0.0.2']),
        svc('legacy', { clusterIP: 'None' }),
        { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'legacy', namespace: 'default' }, subsets: [{ addresses: [{ ip: '10.244.0.2' }, { ip: '169.254.169.254' }], ports: [{ name: 'http', port: 80 }] }] },
      ),
    },
    { config: { serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'] } },
  );
  const addrs = (key: string) => h.slices(key).flatMap((s) => endpointList(s.endpoints).flatMap((e) => e.addresses));
  t.same(addrs('default/v4'), ['10.244.0.1', '239.1.1.1', '255.255.255.255'], 'global multicast and broadcast allowed (upstream parity)');
  t.same(addrs('default/v6'), ['2001:db8::1']);
  t.same(h.slices('default/bad-only'), [], 'a slice left empty is dropped');
  t.same(addrs('default/legacy'), ['10.244.0.2']);

  const refused = h.registry.zone(ZONE).anomalies().filter((a) => a.kind === 'refused-address');
  const file = join(h.zoneDir, 'a.yaml');
  t.same(
    refused.map((a) => `${a.objectKind} ${a.name} #${a.doc} ${a.field}: ${a.message}`),
    [
      `EndpointSlice v4-a #2 endpoints[0].addresses[0]: Invalid value: "127.0.0.1": ${LOOPBACK}`,
      `EndpointSlice v4-a #2 endpoints[2].addresses[0]: Invalid value: "169.254.10.1": ${LINK_LOCAL}`,
      `EndpointSlice v4-a #2 endpoints[3].addresses[0]: Invalid value: "224.0.0.251": ${MULTICAST}`,
      'EndpointSlice v4-a #2 endpoints[4].addresses[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
      `EndpointSlice v6-a #4 endpoints[0].addresses[0]: Invalid value: "::1": ${LOOPBACK}`,
      `EndpointSlice v6-a #4 endpoints[1].addresses[0]: Invalid value: "fe80::1": ${LINK_LOCAL}`,
      `EndpointSlice v6-a #4 endpoints[2].addresses[0]: Invalid value: "ff02::fb": ${MULTICAST}`,
      'EndpointSlice v6-a #4 endpoints[3].addresses[0]: Invalid value: "::": may not be unspecified (::)',
      `EndpointSlice bad-only-a #6 endpoints[0].addresses[0]: Invalid value: "127.0.0.2": ${LOOPBACK}`,
      `Endpoints legacy #8 subsets[].addresses[].ip: Invalid value: "169.254.169.254": ${LINK_LOCAL}`,
    ],
  );
  t.ok(refused.every((a) => a.file === file && a.severity === 'error'));
  t.equal(h.logs.filter((l) => l.msg === 'endpoint address refused').length, 10, 'each logged');
  t.match(h.logs.find((l) => l.msg === 'endpoint address refused')?.fields, { file, kind: undefined, objectKind: 'EndpointSlice', name: 'v4-a', ip: '127.0.0.1' });
  await h.reload();
  t.equal(h.logs.filter((l) => l.msg === 'endpoint address refused').length, 10, 'once');
});

t.test("another Service's clusterIP is refused as an endpoint", async (t) => {
  const h = await harness(t, {
    'a.yaml': docs(
      svc('dns', { clusterIP: '10.96.0.10' }),
      svc('loop'),
      slice('loop-a', 'loop', 'IPv4', ['10.96.0.10', '10.244.0.3']),
    ),
  });
  t.same(h.slices('default/loop').flatMap((s) => endpointList(s.endpoints).flatMap((e) => e.addresses)), ['10.244.0.3']);
  const [a] = h.registry.zone(ZONE).anomalies().filter((x) => x.kind === 'refused-address');
  t.equal(a?.message, 'Invalid value: "10.96.0.10": may not be the cluster IP of a Service (default/dns)');
  // Its own clusterIP too (a virtual IP is never a destination).
  const self = h.ips('default/loop')?.[0] ?? '';
  h.write('b.yaml', docs(slice('loop-b', 'loop', 'IPv4', [self])));
  await h.reload();
  t.ok(h.registry.zone(ZONE).anomalies().some((x) => x.message === `Invalid value: "${self}": may not be the cluster IP of a Service (default/loop)`));
  t.same(h.slices('default/loop').map((s) => s.name), ['loop-a'], 'loop-b left empty: dropped');
});

t.test('pod addresses refused in generated slices are reported against the Pod', async (t) => {
  const h = await harness(t, {
    'svc.yaml': docs(svc('web', { selector: { app: 'web' } })),
    'pods.yaml': docs(
      pod('good', { labels: { app: 'web' }, ips: ['10.244.5.1'] }),
      pod('hostnet', { labels: { app: 'web' }, ips: ['127.0.0.1'] }),
    ),
    'solo.yaml': docs(svc('solo', { selector: { app: 'solo' } }), pod('solo-0', { labels: { app: 'solo' }, ips: ['169.254.0.9'] })),
  });
  t.same(h.slices('default/web').flatMap((s) => endpointList(s.endpoints).map((e) => e.podName)), ['good']);
  t.same(h.slices('default/solo'), [], 'its only endpoint refused: the slice is dropped');
  const refused = h.registry.zone(ZONE).anomalies().filter((a) => a.kind === 'refused-address');
  t.same(
    refused.map((a) => ({ file: a.file, doc: a.doc, objectKind: a.objectKind, name: a.name, field: a.field, slice: a.slice, message: a.message })),
    [
      { file: join(h.zoneDir, 'pods.yaml'), doc: 2, objectKind: 'Pod', name: 'hostnet', field: 'status.podIPs', slice: 'web-ipv4-0', message: `Invalid value: "127.0.0.1": ${LOOPBACK}` },
      { file: join(h.zoneDir, 'solo.yaml'), doc: 2, objectKind: 'Pod', name: 'solo-0', field: 'status.podIPs', slice: 'solo-ipv4-0', message: `Invalid value: "169.254.0.9": ${LINK_LOCAL}` },
    ],
  );
  t.equal(h.registry.zone(ZONE).status().anomalies['refused-address'], 2, 'counted for metrics');
});
