/**
 * Every refusal the registry ports from the apiserver, with its exact message, as it
 * happens to a manifest in zones/: the Service is left out, the refusal is logged with
 * the file and the name, and every other Service keeps serving.
 */
import { join } from 'node:path';
import t from 'tap';
import { ZONE, docs, harness, svc } from './_harness.js';

const V4 = { serviceCIDRs: ['10.96.0.0/12'] };

/** One refusal case: the manifest and the message `Service "<name>" is invalid: ...` or the 500 text. */
const CASES: Array<{ what: string; spec: Record<string, unknown>; message: string; config?: { serviceCIDRs: string[]; nodePortRange?: string } }> = [
  {
    what: 'clusterIP outside the service CIDR',
    spec: { clusterIP: '10.200.0.1' },
    message:
      'Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.200.0.1"}: failed to allocate IP 10.200.0.1: the provided IP (10.200.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12',
  },
  {
    what: 'the network address',
    spec: { clusterIP: '10.96.0.0' },
    message:
      'Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.0"}: failed to allocate IP 10.96.0.0: the provided IP (10.96.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/12',
  },
  {
    what: 'the IPv4 broadcast address',
    spec: { clusterIP: '10.111.255.255' },
    message:
      'Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.111.255.255"}: failed to allocate IP 10.111.255.255: the provided IP (10.111.255.255) is not in the valid range. The range of valid IPs is 10.96.0.0/12',
  },
  {
    what: 'an IPv6 clusterIP on an IPv4 cluster (wrong family)',
    spec: { clusterIP: 'fd00::1' },
    message: 'Service "x" is invalid: spec.clusterIPs[0]: Invalid value: []string{"fd00::1"}: IPv6 is not configured on this cluster',
  },
  {
    what: 'ipFamilies IPv6 on an IPv4 cluster',
    spec: { ipFamilies: ['IPv6'] },
    message: 'Service "x" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster',
  },
  {
    what: 'RequireDualStack on a single-stack cluster',
    spec: { ipFamilyPolicy: 'RequireDualStack' },
    message: 'Service "x" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services',
  },
  {
    what: 'SingleStack with two clusterIPs',
    spec: { ipFamilyPolicy: 'SingleStack', clusterIPs: ['10.96.0.7', 'fd00:10:96::7'] },
    config: { serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'] },
    message: `Service "x" is invalid: spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified`,
  },
  {
    what: 'SingleStack with two ipFamilies',
    spec: { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4', 'IPv6'] },
    config: { serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'] },
    message: `Service "x" is invalid: spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified`,
  },
  {
    what: 'clusterIP of the other family than ipFamilies[0]',
    spec: { ipFamilies: ['IPv6'], clusterIP: '10.96.0.8' },
    config: { serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'] },
    message: 'Service "x" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.0.8": expected an IPv6 value as indicated by `ipFamilies[0]`',
  },
  {
    what: 'NodePort with clusterIP None',
    spec: { type: 'NodePort', clusterIP: 'None' },
    message: `Service "x" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for NodePort services`,
  },
  {
    what: 'LoadBalancer with clusterIP None',
    spec: { type: 'LoadBalancer', clusterIP: 'None' },
    message: `Service "x" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for LoadBalancer services`,
  },
  {
    what: 'ExternalName with ipFamilies',
    spec: { type: 'ExternalName', externalName: 'www.example.com', ipFamilies: ['IPv4'] },
    message: 'Service "x" is invalid: spec.ipFamilies: Forbidden: may not be set for ExternalName services',
  },
  {
    what: 'ExternalName with ipFamilyPolicy',
    spec: { type: 'ExternalName', externalName: 'www.example.com', ipFamilyPolicy: 'SingleStack' },
    message: 'Service "x" is invalid: spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services',
  },
  {
    what: 'nodePort outside the NodePort range',
    spec: { type: 'NodePort', ports: [{ port: 80, nodePort: 8080 }] },
    message: 'Service "x" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767',
  },
  {
    what: 'nodePort on a ClusterIP Service',
    spec: { type: 'ClusterIP', ports: [{ port: 80, nodePort: 30080 }] },
    message: "Service \"x\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
  },
  {
    what: 'a full range (500)',
    spec: {},
    config: { serviceCIDRs: ['10.96.0.0/30'] },
    message: 'Internal error occurred: failed to allocate a serviceIP: range is full',
  },
];

for (const c of CASES) {
  t.test(`refused: ${c.what}`, async (t) => {
    const files: Record<string, string> = {
      'a.yaml': docs(svc('keep', { clusterIP: '10.96.0.1' }), svc('dyn')),
      'b.yaml': docs(svc('x', c.spec)),
    };
    if (c.message.includes('range is full')) {
      // /30: two usable addresses, both taken by the Services of a.yaml.
      files['a.yaml'] = docs(svc('keep', { clusterIP: '10.96.0.1' }), svc('dyn', { clusterIP: '10.96.0.2' }));
    }
    const h = await harness(t, files, { config: c.config ?? V4 });
    t.equal(h.service('default/x'), undefined, 'the refused Service is not served');
    t.ok(h.ips('default/keep')?.length, 'the others keep serving');
    t.ok(h.ips('default/dyn')?.length, 'including dynamically allocated ones');
    const refusals = h.registry.zone(ZONE).anomalies().filter((a) => a.kind === 'refused-service');
    t.equal(refusals.length, 1);
    t.equal(refusals[0]?.message, c.message, 'upstream message');
    t.equal(refusals[0]?.file, join(h.zoneDir, 'b.yaml'), 'reported with the file');
    t.equal(refusals[0]?.doc, 1);
    const logged = h.logs.filter((l) => l.msg === 'service refused');
    t.equal(logged.length, 1, 'logged once');
    t.match(logged[0]?.fields, { file: join(h.zoneDir, 'b.yaml'), namespace: 'default', name: 'x', reason: c.message });
    await h.reload();
    t.equal(h.logs.filter((l) => l.msg === 'service refused').length, 1, 'not logged again on a reload');
  });
}

t.test('refused: clusterIP already allocated; the holder is named, the first in file order wins', async (t) => {
  const h = await harness(
    t,
    {
      'a.yaml': docs(svc('first', { clusterIP: '10.96.0.50' })),
      'b.yaml': docs(svc('other'), svc('second', { clusterIP: '10.96.0.50' }, 'shop')),
    },
    { config: V4 },
  );
  t.same(h.ips('default/first'), ['10.96.0.50']);
  t.equal(h.service('shop/second'), undefined);
  const [r] = h.registry.zone(ZONE).anomalies().filter((a) => a.kind === 'refused-service');
  t.equal(
    r?.message,
    'Service "second" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: failed to allocate IP 10.96.0.50: provided IP is already allocated',
  );
  t.equal(r?.heldBy, 'default/first');
  t.equal(r?.ip, '10.96.0.50');
  t.equal(r?.doc, 2, 'document index in the file');
});

t.test('refused: nodePort already allocated, holder named', async (t) => {
  const h = await harness(
    t,
    { 'a.yaml': docs(svc('np1', { type: 'NodePort', ports: [{ port: 80, nodePort: 30100 }] }), svc('np2', { type: 'NodePort', ports: [{ port: 81, nodePort: 30100 }] })) },
    { config: V4 },
  );
  t.equal(h.service('default/np1')?.ports[0]?.nodePort, 30100);
  t.equal(h.service('default/np2'), undefined);
  const [r] = h.registry.zone(ZONE).anomalies().filter((a) => a.kind === 'refused-service');
  t.equal(r?.message, 'Service "np2" is invalid: spec.ports[0].nodePort: Invalid value: 30100: provided port is already allocated');
  t.equal(r?.heldBy, 'default/np1');
});

t.test('a refused Service is served once the conflict goes away', async (t) => {
  const h = await harness(t, { 'a.yaml': docs(svc('first', { clusterIP: '10.96.0.50' })), 'b.yaml': docs(svc('second', { clusterIP: '10.96.0.50' })) }, { config: V4 });
  t.equal(h.service('default/second'), undefined);
  h.remove('a.yaml');
  await h.reload();
  t.same(h.ips('default/second'), ['10.96.0.50'], 'the IP released by the deletion is taken');
  t.same(h.registry.zone(ZONE).anomalies().filter((a) => a.kind === 'refused-service'), []);
});

t.test('an update that cannot be made keeps the stored addresses reserved', async (t) => {
  const h = await harness(t, { 'a.yaml': docs(svc('a', { clusterIP: '10.96.0.60' })), 'b.yaml': docs(svc('b', { clusterIP: '10.96.0.61' })) }, { config: V4 });
  // b asks for a's IP: refused; its old IP stays reserved for it (not handed to others).
  h.write('b.yaml', docs(svc('b', { clusterIP: '10.96.0.60' })));
  await h.reload();
  t.equal(h.service('default/b'), undefined);
  const [r] = h.registry.zone(ZONE).anomalies().filter((a) => a.kind === 'refused-service');
  t.match(r?.message, /failed to allocate IP 10\.96\.0\.60: provided IP is already allocated \(its stored addresses stay reserved\)$/);
  h.write('c.yaml', docs(svc('c', { clusterIP: '10.96.0.61' })));
  await h.reload();
  t.equal(h.service('default/c'), undefined, '10.96.0.61 is still b\'s');
  h.write('b.yaml', docs(svc('b')));
  await h.reload();
  t.same(h.ips('default/b'), ['10.96.0.61'], 'fixed manifest: b is back with its address');
});
