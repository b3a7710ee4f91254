import t from 'tap';
import {
  isIANAServiceName,
  objectRef,
  toClusterObject,
  toEndpoints,
  toEndpointSlice,
  toNamespace,
  toPod,
  toService,
  type ConvertResult,
} from '../../src/cluster/convert.js';
import { endpointList } from '../../src/cluster/packed.js';

function value<T>(r: ConvertResult<T>): T {
  if (!r.ok) throw new Error(`expected ok, got error: ${r.error}`);
  return r.value;
}

function error(r: { ok: boolean; error?: string }): string {
  if (r.ok) throw new Error('expected an error');
  return r.error ?? '';
}

/** Paths of every undefined-valued key (the store compares structurally). */
function undefinedKeys(v: unknown, path = ''): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => undefinedKeys(x, `${path}[${i}]`));
  if (typeof v !== 'object' || v === null) return [];
  return Object.entries(v).flatMap(([k, x]) => (x === undefined ? [`${path}.${k}`] : undefinedKeys(x, `${path}.${k}`)));
}

const svc = (spec: Record<string, unknown>, metadata: Record<string, unknown> = {}): unknown => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'shop', ...metadata },
  spec,
});

const slice = (extra: Record<string, unknown>, labels: Record<string, string> = { 'kubernetes.io/service-name': 'web' }): unknown => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'web-abc', namespace: 'shop', labels },
  addressType: 'IPv4',
  ...extra,
});

// Canonical address text: test/net/ip.test.ts.

t.test('isIANAServiceName', async (t) => {
  for (const ok of ['http', 'dns-tcp', 'h2c', 'a1234567890bcde']) t.ok(isIANAServiceName(ok), ok);
  for (const bad of ['', '8080', '-http', 'http-', 'dns--tcp', 'HTTP', 'a1234567890bcdef', 'my_port']) t.notOk(isIANAServiceName(bad), bad);
});

t.test('toNamespace', async (t) => {
  t.strictSame(
    value(toNamespace({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'a' }, uid: 'x', managedFields: [{}] }, status: { phase: 'Active' } })),
    { name: 'shop', labels: { team: 'a' } },
  );
  t.strictSame(value(toNamespace({ metadata: { name: '1st' } })), { name: '1st', labels: {} }, 'DNS-1123 label may start with a digit');
  t.equal(
    error(toNamespace({ metadata: { name: 'Shop' } })),
    'metadata.name: must be a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit), got "Shop"',
  );
  t.match(error(toNamespace({ metadata: { name: 'a'.repeat(64) } })), /^metadata\.name: must be a DNS-1123 label/);
  t.equal(error(toNamespace({ metadata: { name: 'a.b' } })).startsWith('metadata.name: must be a DNS-1123 label'), true);
  t.equal(error(toNamespace({})), 'metadata: required');
  t.equal(error(toNamespace({ metadata: {} })), 'metadata.name: required');
  t.equal(error(toNamespace({ metadata: { name: 5 } })).startsWith('metadata.name: must be a DNS-1123 label'), true);
  t.equal(error(toNamespace({ metadata: { name: 'x', labels: { v: 1 } } })), 'metadata.labels["v"]: must be a string, got 1');
  t.equal(error(toNamespace({ metadata: { name: 'x', labels: ['a'] } })), 'metadata.labels: must be an object, got an array');
  t.equal(error(toNamespace('nope')), 'expected a Kubernetes object (a mapping), got "nope"');
  t.equal(error(toNamespace(null)), 'expected a Kubernetes object (a mapping), got null');
  // "__proto__" stays a plain key: no prototype pollution from a label.
  const ns = value(toNamespace(JSON.parse('{"metadata":{"name":"x","labels":{"__proto__":"y"}}}')));
  t.equal(Object.getPrototypeOf(ns.labels), Object.prototype);
  t.equal(Object.keys(ns.labels).length, 1);
});

t.test('toService: full object is slimmed to the model', async (t) => {
  const raw = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'frontend',
      namespace: 'shop',
      uid: '0b6e8c1e-1',
      resourceVersion: '123',
      creationTimestamp: '2024-01-01T00:00:00Z',
      labels: { app: 'frontend' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      managedFields: [{ manager: 'kubectl', operation: 'Update', fieldsV1: {} }],
    },
    spec: {
      type: 'NodePort',
      clusterIP: '10.96.10.10',
      clusterIPs: ['10.96.10.10'],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      internalTrafficPolicy: 'Cluster',
      sessionAffinity: 'None',
      selector: { app: 'frontend' },
      ports: [
        { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP', nodePort: 30080 },
        { name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' },
      ],
    },
    status: { loadBalancer: {} },
  };
  const s = value(toService(raw));
  t.strictSame(s, {
    namespace: 'shop',
    name: 'frontend',
    type: 'NodePort',
    clusterIPs: ['10.96.10.10'],
    headless: false,
    ports: [
      { name: 'http', port: 80, protocol: 'TCP', targetPort: 'http', nodePort: 30080 },
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
    ],
    selector: { app: 'frontend' },
    publishNotReadyAddresses: false,
    labels: { app: 'frontend' },
    ipFamilies: ['IPv4'],
    ipFamilyPolicy: 'SingleStack',
    clusterIPsRequested: true,
  });
  t.strictSame(undefinedKeys(s), []);
});

t.test('toService: defaults', async (t) => {
  const s = value(toService({ metadata: { name: 'web' }, spec: { ports: [{ port: 8080 }] } }));
  t.strictSame(s, {
    namespace: 'default',
    name: 'web',
    type: 'ClusterIP',
    clusterIPs: [],
    headless: false,
    ports: [{ name: '', port: 8080, protocol: 'TCP', targetPort: 8080 }],
    publishNotReadyAddresses: false,
    labels: {},
    clusterIPsRequested: false,
  });
  t.notOk('selector' in s, 'no selector key when absent');
  t.notOk('selector' in value(toService(svc({ selector: {} }))), 'empty selector is no selector');
  t.notOk('externalName' in s);
  t.notOk('ipFamilies' in s);
  t.notOk('ipFamilyPolicy' in s);
  t.strictSame(undefinedKeys(s), []);
  t.strictSame(value(toService({ metadata: { name: 'web' } })).ports, [], 'no spec at all');
  t.strictSame(value(toService({ metadata: { name: 'web' }, spec: null })).ports, [], 'spec: null');
  t.equal(value(toService(svc({ ports: [{ port: 80, targetPort: 0 }] }))).ports[0]?.targetPort, 80, 'targetPort 0 means unset');
  t.notOk('nodePort' in (value(toService(svc({ ports: [{ port: 80, nodePort: 0 }] }))).ports[0] ?? {}), 'nodePort 0 means unset');
});

t.test('toService: cluster IPs', async (t) => {
  const h = value(toService(svc({ clusterIP: 'None', clusterIPs: ['None'] })));
  t.equal(h.headless, true);
  t.strictSame(h.clusterIPs, []);
  t.equal(h.clusterIPsRequested, false);
  t.equal(value(toService(svc({ clusterIP: 'None' }))).headless, true);

  const dual = value(toService(svc({ clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'FD00:10:96:0:0:0:0:14'] })));
  t.strictSame(dual.clusterIPs, ['10.96.0.20', 'fd00:10:96::14'], 'IPv6 canonicalised, order kept');
  t.equal(dual.clusterIPsRequested, true);
  t.strictSame(value(toService(svc({ clusterIPs: ['fd00::1', '10.0.0.1'] }))).clusterIPs, ['fd00::1', '10.0.0.1'], 'IPv6 primary');
  t.strictSame(value(toService(svc({ clusterIP: '10.0.0.7' }))).clusterIPs, ['10.0.0.7'], 'from spec.clusterIP');
  t.strictSame(value(toService(svc({ clusterIP: '' }))).clusterIPs, [], 'empty clusterIP is unset');
  t.equal(value(toService(svc({ clusterIP: '' }))).clusterIPsRequested, false);

  t.equal(error(toService(svc({ clusterIP: '10.0.0.300' }))), 'spec.clusterIP: must be a valid IP address, got "10.0.0.300"');
  t.equal(error(toService(svc({ clusterIPs: ['10.0.0.1', 'x'] }))), 'spec.clusterIPs[1]: must be a valid IP address, got "x"');
  t.equal(error(toService(svc({ clusterIPs: ['10.0.0.1', ''] }))), 'spec.clusterIPs[1]: must not be empty');
  t.equal(error(toService(svc({ clusterIP: 7 }))), 'spec.clusterIP: must be a string, got 7');
  t.equal(
    error(toService(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.2'] }))),
    'spec.clusterIPs[0]: must equal spec.clusterIP ("10.0.0.1"), got "10.0.0.2"',
  );
  t.equal(error(toService(svc({ clusterIPs: ['10.0.0.1', '10.0.0.2'] }))), 'spec.clusterIPs: must be one IPv4 and one IPv6 address, got "10.0.0.1" and "10.0.0.2"');
  t.equal(error(toService(svc({ clusterIPs: ['10.0.0.1', 'fd00::1', '10.0.0.2'] }))), 'spec.clusterIPs: must have at most 2 entries, got 3');
  t.equal(error(toService(svc({ clusterIPs: ['None', '10.0.0.1'] }))), 'spec.clusterIPs: must be ["None"] for a headless service, got 2 entries');
  t.equal(error(toService(svc({ clusterIPs: '10.0.0.1' }))), 'spec.clusterIPs: must be an array, got "10.0.0.1"');
});

t.test('toService: ExternalName', async (t) => {
  const e = value(toService(svc({ type: 'ExternalName', externalName: 'WWW.Example.COM.', clusterIP: '10.0.0.1' })));
  t.equal(e.type, 'ExternalName');
  t.equal(e.externalName, 'www.example.com', 'lowercased, trailing dot stripped');
  t.strictSame(e.clusterIPs, [], 'clusterIP ignored');
  t.equal(e.headless, false);
  t.equal(e.clusterIPsRequested, false);
  t.equal(error(toService(svc({ type: 'ExternalName' }))), 'spec.externalName: required for type ExternalName');
  t.equal(
    error(toService(svc({ type: 'ExternalName', externalName: 'bad_name.example.com' }))),
    'spec.externalName: must be a DNS-1123 subdomain (at most 253 characters, lowercase DNS-1123 labels separated by "."), got "bad_name.example.com"',
  );
  t.notOk('externalName' in value(toService(svc({ type: 'ClusterIP', externalName: 'x.example.com' }))), 'ignored for other types');
});

t.test('toService: ports', async (t) => {
  t.equal(error(toService(svc({ ports: [{ port: 80 }, { name: 'b', port: 70000 }] }))), 'spec.ports[1].port: must be 1-65535, got 70000');
  t.equal(error(toService(svc({ ports: [{ port: 0 }] }))), 'spec.ports[0].port: must be 1-65535, got 0');
  t.equal(error(toService(svc({ ports: [{ port: '80' }] }))), 'spec.ports[0].port: must be an integer, got "80"');
  t.equal(error(toService(svc({ ports: [{ port: 80.5 }] }))), 'spec.ports[0].port: must be an integer, got 80.5');
  t.equal(error(toService(svc({ ports: [{ name: 'http' }] }))), 'spec.ports[0].port: required');
  t.equal(error(toService(svc({ ports: [{ port: 80, protocol: 'tcp' }] }))), 'spec.ports[0].protocol: must be one of TCP, UDP, SCTP, got "tcp"');
  t.equal(
    error(toService(svc({ ports: [{ port: 80, name: 'Http' }] }))),
    'spec.ports[0].name: must be a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit), got "Http"',
  );
  t.equal(
    error(toService(svc({ ports: [{ port: 80, targetPort: '8080' }] }))),
    'spec.ports[0].targetPort: must be a port number or an IANA service name (at most 15 lowercase letters, digits or "-", with at least one letter and no leading, trailing or double "-"), got "8080"',
  );
  t.equal(error(toService(svc({ ports: [{ port: 80, targetPort: 99999 }] }))), 'spec.ports[0].targetPort: must be 1-65535, got 99999');
  t.equal(error(toService(svc({ ports: [{ port: 80, nodePort: 70000 }] }))), 'spec.ports[0].nodePort: must be 1-65535, got 70000');
  t.equal(error(toService(svc({ ports: [80] }))), 'spec.ports[0]: must be an object, got 80');
  t.equal(error(toService(svc({ ports: { http: 80 } }))), 'spec.ports: must be an array, got an object');
  const sctp = value(toService(svc({ ports: [{ name: 'assoc', port: 9999, protocol: 'SCTP', targetPort: 'assoc' }] })));
  t.strictSame(sctp.ports, [{ name: 'assoc', port: 9999, protocol: 'SCTP', targetPort: 'assoc' }]);
});

t.test('toService: names, type, flags, families', async (t) => {
  // KEP-5311 (GA in Kubernetes 1.37): Service names are DNS-1123 labels, a leading digit allowed.
  t.equal(value(toService(svc({}, { name: '1web' }))).name, '1web');
  t.equal(value(toService(svc({}, { name: '123' }))).name, '123', 'all digits is a DNS-1123 label too');
  t.equal(value(toService(svc({}, { name: `9${'a'.repeat(62)}` }))).name.length, 63, '63 characters');
  t.equal(
    error(toService(svc({}, { name: '-web' }))),
    'metadata.name: must be a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit), got "-web"',
  );
  t.match(error(toService(svc({}, { name: 'web-' }))), /^metadata\.name: must be a DNS-1123 label .* got "web-"$/);
  t.match(error(toService(svc({}, { name: `1${'a'.repeat(63)}` }))), /^metadata\.name: must be a DNS-1123 label .* got "1a{63}"$/, '64 characters');
  t.match(error(toService(svc({}, { name: 'my_svc' }))), /^metadata\.name: must be a DNS-1123 label .* got "my_svc"$/);
  t.match(error(toService(svc({}, { name: 'Web' }))), /^metadata\.name: must be a DNS-1123 label/);
  t.match(error(toService(svc({}, { name: '1.web' }))), /^metadata\.name: must be a DNS-1123 label .* got "1\.web"$/, 'a label, not a subdomain');
  t.match(error(toService(svc({}, { namespace: 'Shop' }))), /^metadata\.namespace: must be a DNS-1123 label .* got "Shop"$/);
  t.equal(error(toService(svc({ type: 'Foo' }))), 'spec.type: must be one of ClusterIP, NodePort, LoadBalancer, ExternalName, got "Foo"');

  t.equal(value(toService(svc({ publishNotReadyAddresses: true }))).publishNotReadyAddresses, true);
  t.equal(
    value(toService(svc({}, { annotations: { 'service.alpha.kubernetes.io/tolerate-unready-endpoints': 'true' } }))).publishNotReadyAddresses,
    true,
    'legacy annotation honoured',
  );
  t.equal(
    value(toService(svc({}, { annotations: { 'service.alpha.kubernetes.io/tolerate-unready-endpoints': 'false' } }))).publishNotReadyAddresses,
    false,
  );
  t.equal(error(toService(svc({ publishNotReadyAddresses: 'yes' }))), 'spec.publishNotReadyAddresses: must be true or false, got "yes"');
  t.equal(error(toService(svc({ selector: { app: 3 } }))), 'spec.selector["app"]: must be a string, got 3');

  const fam = value(toService(svc({ ipFamilies: ['IPv6', 'IPv4'], ipFamilyPolicy: 'PreferDualStack' })));
  t.strictSame(fam.ipFamilies, ['IPv6', 'IPv4']);
  t.equal(fam.ipFamilyPolicy, 'PreferDualStack');
  t.equal(error(toService(svc({ ipFamilies: ['IPv5'] }))), 'spec.ipFamilies[0]: must be one of IPv4, IPv6, got "IPv5"');
  t.equal(error(toService(svc({ ipFamilies: ['IPv4', 'IPv4'] }))), 'spec.ipFamilies[1]: must differ from spec.ipFamilies[0], got "IPv4"');
  t.equal(error(toService(svc({ ipFamilyPolicy: 'DualStack' }))), 'spec.ipFamilyPolicy: must be one of SingleStack, PreferDualStack, RequireDualStack, got "DualStack"');
});

t.test('toEndpointSlice: full object is slimmed to the model', async (t) => {
  const raw = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: 'web-abc',
      namespace: 'shop',
      generateName: 'web-',
      labels: { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      ownerReferences: [{ kind: 'Service', name: 'web' }],
      managedFields: [{ manager: 'kube-controller-manager' }],
    },
    addressType: 'IPv6',
    endpoints: [
      {
        addresses: ['FD00:10:244:0:0:0:1:1E'],
        hostname: 'web-0',
        conditions: { ready: true, serving: true, terminating: false },
        targetRef: { kind: 'Pod', namespace: 'shop', name: 'web-0', uid: 'u' },
        nodeName: 'node-a',
        zone: 'zone-a',
        hints: { forZones: [{ name: 'zone-a' }] },
      },
      { addresses: ['fd00:10:244::2'], targetRef: { kind: 'Node', name: 'n' } },
    ],
    ports: [{ name: 'http', port: 80, protocol: 'TCP', appProtocol: 'http' }, { port: 81 }, { name: 'all' }],
  };
  const s = value(toEndpointSlice(raw));
  t.strictSame(s, {
    namespace: 'shop',
    name: 'web-abc',
    serviceName: 'web',
    addressType: 'IPv6',
    endpoints: [
      {
        addresses: ['fd00:10:244::1:1e'],
        hostname: 'web-0',
        conditions: { ready: true, serving: true, terminating: false },
        podName: 'web-0',
        nodeName: 'node-a',
        zone: 'zone-a',
      },
      { addresses: ['fd00:10:244::2'], conditions: { ready: true, serving: true, terminating: false } },
    ],
    ports: [
      { name: 'http', port: 80, protocol: 'TCP' },
      { name: '', port: 81, protocol: 'TCP' },
    ],
    legacy: false,
    labels: { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
  });
  t.strictSame(undefinedKeys(s), []);
});

t.test('toEndpointSlice: conditions', async (t) => {
  const conds = (c: unknown): unknown => endpointList(value(toEndpointSlice(slice({ endpoints: [{ addresses: ['10.0.0.1'], ...(c === undefined ? {} : { conditions: c }) }] }))).endpoints)[0]?.conditions;
  t.strictSame(conds(undefined), { ready: true, serving: true, terminating: false }, 'all nil');
  t.strictSame(conds({}), { ready: true, serving: true, terminating: false });
  t.strictSame(conds({ ready: null }), { ready: true, serving: true, terminating: false }, 'null is nil');
  t.strictSame(conds({ ready: false }), { ready: false, serving: false, terminating: false }, 'serving nil follows ready');
  t.strictSame(conds({ ready: false, serving: true, terminating: true }), { ready: false, serving: true, terminating: true });
  t.equal(
    error(toEndpointSlice(slice({ endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: 'true' } }] }))),
    'endpoints[0].conditions.ready: must be true or false, got "true"',
  );
});

t.test('toEndpointSlice: validation', async (t) => {
  t.equal(error(toEndpointSlice(slice({ endpoints: [] }, {}))), 'metadata.labels["kubernetes.io/service-name"]: required (names the Service this slice belongs to)');
  t.equal(error(toEndpointSlice(slice({ addressType: undefined }))), 'addressType: required');
  t.equal(error(toEndpointSlice(slice({ addressType: 'IPv5' }))), 'addressType: must be one of IPv4, IPv6, FQDN, got "IPv5"');
  t.equal(
    error(toEndpointSlice(slice({ endpoints: [{ addresses: ['10.0.0.1'] }, { addresses: ['10.0.0.2', 'fd00::1'] }] }))),
    'endpoints[1].addresses[1]: must be an IPv4 address, got "fd00::1"',
  );
  t.equal(
    error(toEndpointSlice(slice({ addressType: 'IPv6', endpoints: [{ addresses: ['10.0.0.1'] }] }))),
    'endpoints[0].addresses[0]: must be an IPv6 address, got "10.0.0.1"',
  );
  t.equal(error(toEndpointSlice(slice({ endpoints: [{ addresses: ['10.0.0.999'] }] }))), 'endpoints[0].addresses[0]: must be a valid IP address, got "10.0.0.999"');
  t.equal(error(toEndpointSlice(slice({ endpoints: [{ addresses: [] }] }))), 'endpoints[0].addresses: must have at least 1 address');
  t.equal(error(toEndpointSlice(slice({ endpoints: [{}] }))), 'endpoints[0].addresses: must have at least 1 address');
  t.equal(
    error(toEndpointSlice(slice({ endpoints: [{ addresses: ['10.0.0.1'], hostname: 'Web_0' }] }))),
    'endpoints[0].hostname: must be a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit), got "Web_0"',
  );
  t.equal(error(toEndpointSlice(slice({ endpoints: [{ addresses: ['10.0.0.1'] }], ports: [{ port: 65536 }] }))), 'ports[0].port: must be 1-65535, got 65536');
  t.equal(error(toEndpointSlice(slice({ ports: [{ port: 53, protocol: 'ICMP' }] }))), 'ports[0].protocol: must be one of TCP, UDP, SCTP, got "ICMP"');
  t.equal(error(toEndpointSlice(slice({ endpoints: 'x' }))), 'endpoints: must be an array, got "x"');
});

t.test('toEndpointSlice: no endpoints, no ports, FQDN', async (t) => {
  const empty = value(toEndpointSlice(slice({})));
  t.strictSame(empty.endpoints, []);
  t.strictSame(empty.ports, [], 'a slice without ports is fine');
  const fqdn = value(toEndpointSlice(slice({ addressType: 'FQDN', endpoints: [{ addresses: ['DB.Example.com.'] }] })));
  t.strictSame(endpointList(fqdn.endpoints)[0]?.addresses, ['db.example.com']);
  t.equal(error(toEndpointSlice(slice({ addressType: 'FQDN', endpoints: [{ addresses: ['a b'] }] }))).startsWith('endpoints[0].addresses[0]: must be a DNS-1123 subdomain'), true);
});

t.test('toEndpoints: legacy v1 Endpoints', async (t) => {
  const raw = {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'db', namespace: 'data', labels: { app: 'db' }, annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': 'x' } },
    subsets: [
      {
        addresses: [
          { ip: '192.168.0.1', hostname: 'db-0', nodeName: 'n1', targetRef: { kind: 'Pod', name: 'db-0', namespace: 'data' } },
          { ip: '2001:DB8::5' },
        ],
        notReadyAddresses: [{ ip: '192.168.0.3', hostname: 'db-2' }],
        ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }],
      },
      {
        addresses: [{ ip: '192.168.0.4' }],
        ports: [{ name: 'pg', port: 5432 }, { name: 'metrics', port: 9187 }],
      },
    ],
  };
  const e = value(toEndpoints(raw));
  t.strictSame(e, {
    namespace: 'data',
    name: 'db',
    serviceName: 'db',
    addressType: 'IPv4',
    endpoints: [
      { addresses: ['192.168.0.1'], hostname: 'db-0', conditions: { ready: true, serving: true, terminating: false }, podName: 'db-0', nodeName: 'n1' },
      { addresses: ['2001:db8::5'], conditions: { ready: true, serving: true, terminating: false } },
      { addresses: ['192.168.0.3'], hostname: 'db-2', conditions: { ready: false, serving: false, terminating: false } },
      { addresses: ['192.168.0.4'], conditions: { ready: true, serving: true, terminating: false } },
    ],
    ports: [
      { name: 'pg', port: 5432, protocol: 'TCP' },
      { name: 'metrics', port: 9187, protocol: 'TCP' },
    ],
    legacy: true,
    labels: { app: 'db' },
  });
  t.strictSame(undefinedKeys(e), []);

  const v6 = value(toEndpoints({ metadata: { name: 'x' }, subsets: [{ addresses: [{ ip: 'fd00::1' }, { ip: '10.0.0.1' }] }] }));
  t.equal(v6.addressType, 'IPv6', 'addressType from the first address');
  t.equal(v6.namespace, 'default');
  t.strictSame(endpointList(v6.endpoints).map((x) => x.addresses[0]), ['fd00::1', '10.0.0.1'], 'both families kept');

  const none = value(toEndpoints({ metadata: { name: 'x', namespace: 'a' } }));
  t.equal(none.addressType, 'IPv4');
  t.strictSame(none.endpoints, []);
  t.strictSame(none.ports, []);

  t.equal(
    error(toEndpoints({ metadata: { name: 'x' }, subsets: [{ addresses: [{ ip: '10.0.0.1' }], notReadyAddresses: [{ ip: '10.0.0.2' }, { ip: 'nope' }] }] })),
    'subsets[0].notReadyAddresses[1].ip: must be a valid IP address, got "nope"',
  );
  t.equal(error(toEndpoints({ metadata: { name: 'x' }, subsets: [{ addresses: [{}] }] })), 'subsets[0].addresses[0].ip: required');
  t.equal(error(toEndpoints({ metadata: { name: 'x' }, subsets: [{ ports: [{ name: 'a' }] }] })), 'subsets[0].ports[0].port: required');
  t.match(error(toEndpoints({ metadata: { name: 'X' } })), /^metadata\.name: must be a DNS-1123 subdomain/);
});

t.test('toPod', async (t) => {
  const raw = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'web-0',
      namespace: 'shop',
      labels: { app: 'web' },
      deletionTimestamp: '2024-01-01T00:00:00Z',
      ownerReferences: [{ kind: 'StatefulSet', name: 'web' }],
      managedFields: [{}],
    },
    spec: {
      hostname: 'web-0',
      subdomain: 'web',
      nodeName: 'node-a',
      initContainers: [
        { name: 'init', ports: [{ containerPort: 1 }] },
        { name: 'proxy', restartPolicy: 'Always', ports: [{ name: 'proxy', containerPort: 15001 }] },
      ],
      containers: [
        { name: 'nginx', image: 'nginx', env: [{ name: 'A', value: 'b' }], ports: [{ name: 'http', containerPort: 80 }, { containerPort: 53, protocol: 'UDP' }] },
        { name: 'sidecar' },
        { name: 'metrics', ports: [{ name: 'metrics', containerPort: 9090, protocol: 'TCP', hostPort: 9090 }] },
      ],
    },
    status: {
      phase: 'Running',
      podIP: '10.244.1.5',
      podIPs: [{ ip: '10.244.1.5' }, { ip: 'FD00:10:244::5' }],
      hostIP: '172.18.0.3',
      conditions: [
        { type: 'Initialized', status: 'True' },
        { type: 'Ready', status: 'True' },
      ],
      containerStatuses: [{ name: 'nginx', ready: true }],
    },
  };
  const p = value(toPod(raw));
  t.strictSame(p, {
    namespace: 'shop',
    name: 'web-0',
    ips: ['10.244.1.5', 'fd00:10:244::5'],
    phase: 'Running',
    terminating: true,
    ready: true,
    hostname: 'web-0',
    subdomain: 'web',
    labels: { app: 'web' },
    containerPorts: [
      { name: 'http', containerPort: 80, protocol: 'TCP' },
      { name: '', containerPort: 53, protocol: 'UDP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
      { name: 'proxy', containerPort: 15001, protocol: 'TCP' },
    ],
    nodeName: 'node-a',
  });
  t.strictSame(undefinedKeys(p), []);

  const bare = value(toPod({ metadata: { name: 'p' } }));
  t.strictSame(bare, { namespace: 'default', name: 'p', ips: [], phase: 'Pending', terminating: false, ready: false, labels: {}, containerPorts: [] });
  t.strictSame(value(toPod({ metadata: { name: 'p' }, status: { podIP: '10.0.0.9' } })).ips, ['10.0.0.9'], 'podIP when no podIPs');
  t.equal(value(toPod({ metadata: { name: 'p' }, status: { conditions: [{ type: 'Ready', status: 'False' }] } })).ready, false);
  t.equal(value(toPod({ metadata: { name: 'p', deletionTimestamp: null } })).terminating, false);
  t.equal(error(toPod({ metadata: { name: 'p' }, status: { podIPs: [{ ip: '10.0.0.1' }, { ip: '10.0.0.x' }] } })), 'status.podIPs[1].ip: must be a valid IP address, got "10.0.0.x"');
  t.equal(error(toPod({ metadata: { name: 'p' }, status: { podIP: 'x' } })), 'status.podIP: must be a valid IP address, got "x"');
  t.equal(
    error(toPod({ metadata: { name: 'p' }, spec: { containers: [{ ports: [{ containerPort: 80 }] }, { ports: [{ containerPort: 70000 }] }] } })),
    'spec.containers[1].ports[0].containerPort: must be 1-65535, got 70000',
  );
  t.equal(
    error(toPod({ metadata: { name: 'p' }, spec: { containers: [{ ports: [{ name: 'http-metrics-port', containerPort: 80 }] }] } })),
    'spec.containers[0].ports[0].name: must be an IANA service name (at most 15 lowercase letters, digits or "-", with at least one letter and no leading, trailing or double "-"), got "http-metrics-port"',
  );
  t.match(error(toPod({ metadata: { name: 'p' }, spec: { hostname: 'Web.0' } })), /^spec\.hostname: must be a DNS-1123 label/);
  t.match(error(toPod({ metadata: { name: 'p' }, spec: { subdomain: 'a.b' } })), /^spec\.subdomain: must be a DNS-1123 label/);
  t.ok(value(toPod({ metadata: { name: 'web.example-1' } })), 'pod names are DNS-1123 subdomains');
});

t.test('toClusterObject: dispatch', async (t) => {
  const ns = toClusterObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } });
  t.strictSame(ns, { ok: true, value: { kind: 'Namespace', obj: { name: 'a', labels: {} } } });
  t.equal(value(toClusterObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' } }) as ConvertResult<{ kind: string }>).kind, 'Service');
  t.equal(value(toClusterObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a' } }) as ConvertResult<{ kind: string }>).kind, 'Pod');
  const ep = toClusterObject({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'a' } });
  t.ok(ep.ok && ep.value.kind === 'Endpoints' && ep.value.obj.legacy);
  const sl = toClusterObject(slice({}));
  t.ok(sl.ok && sl.value.kind === 'EndpointSlice' && !sl.value.obj.legacy);

  // API list items carry neither kind nor apiVersion.
  const item = toClusterObject({ metadata: { name: 'a', namespace: 'b' }, spec: { clusterIP: '10.0.0.1' } }, 'Service');
  t.ok(item.ok && item.value.kind === 'Service' && item.value.obj.clusterIPs[0] === '10.0.0.1');
  t.ok(toClusterObject({ kind: 'Service', metadata: { name: 'a' } }, 'Service').ok, 'matching kinds');
  t.ok(toClusterObject({ kind: 'Service', metadata: { name: 'a' } }).ok, 'missing apiVersion accepted');

  t.equal(error(toClusterObject({ kind: 'Pod', metadata: { name: 'a' } }, 'Service')), 'kind: must be Service, got "Pod"');
  t.equal(error(toClusterObject({ metadata: { name: 'a' } })), 'kind: required');
  t.equal(error(toClusterObject({ kind: 3, metadata: { name: 'a' } })), 'kind: must be a string, got 3');
  t.equal(error(toClusterObject({ apiVersion: 1, kind: 'Pod' })), 'apiVersion: must be a string, got 1');
  t.equal(
    error(toClusterObject({ apiVersion: 'discovery.k8s.io/v1beta1', kind: 'EndpointSlice', metadata: { name: 'a' } })),
    'apiVersion: must be discovery.k8s.io/v1 for kind EndpointSlice, got "discovery.k8s.io/v1beta1"',
  );
  t.equal(error(toClusterObject({ apiVersion: 'apps/v1', kind: 'Service', metadata: { name: 'a' } })), 'apiVersion: must be v1 for kind Service, got "apps/v1"');
  t.equal(error(toClusterObject([1])), 'expected a Kubernetes object (a mapping), got an array');

  const dep = toClusterObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'a' } });
  t.strictSame(dep, {
    ok: false,
    unsupported: true,
    error: 'kind: apps/v1 Deployment is not used by clusterdns (it reads v1 Namespace, Service, Endpoints, Pod, discovery.k8s.io/v1 EndpointSlice and multicluster.x-k8s.io/v1alpha1 ServiceImport)',
  });
  const bad = toClusterObject(svc({ ports: [{ port: 70000 }] }));
  t.strictSame(bad, { ok: false, error: 'spec.ports[0].port: must be 1-65535, got 70000' }, 'invalid is not unsupported');
});

t.test('objectRef', async (t) => {
  t.strictSame(objectRef({ kind: 'Service', metadata: { name: 'a' } }), { kind: 'Service', namespace: 'default', name: 'a' });
  t.strictSame(objectRef({ kind: 'Service', metadata: { name: 'a', namespace: 'b' } }), { kind: 'Service', namespace: 'b', name: 'a' });
  t.strictSame(objectRef({ kind: 'Namespace', metadata: { name: 'a', namespace: 'b' } }), { kind: 'Namespace', name: 'a' });
  t.strictSame(objectRef({ metadata: { name: 'a' } }, 'Pod'), { kind: 'Pod', namespace: 'default', name: 'a' });
  t.strictSame(objectRef({ kind: 'ConfigMap', metadata: { name: 'a' } }), { kind: 'ConfigMap', name: 'a' });
  t.strictSame(objectRef({ kind: 'Service', metadata: { name: 7 } }), { kind: 'Service', namespace: 'default' });
  t.strictSame(objectRef(null), {});
  t.strictSame(objectRef('x', 'Pod'), { kind: 'Pod' });
});

t.test('nothing throws on hostile input', async (t) => {
  const inputs: unknown[] = [undefined, null, 0, 'x', [], {}, { metadata: null }, { metadata: [] }, { metadata: { name: 'a' }, spec: 5 }, { metadata: { name: 'a' }, status: [] },
    { metadata: { name: 'a', labels: null } }, { metadata: { name: 'a' }, spec: { ports: [null] } }, { metadata: { name: 'a' }, subsets: [null] }, { metadata: { name: 'a' }, endpoints: [null] },
    Object.create(null) as unknown, { metadata: { name: 'toString' } }, { metadata: { name: 'a' }, spec: { containers: [{ ports: [{}] }] } }];
  for (const input of inputs) {
    for (const kind of ['Namespace', 'Service', 'EndpointSlice', 'Endpoints', 'Pod'] as const) {
      const r = toClusterObject(input, kind);
      t.ok(typeof r.ok === 'boolean', `${kind} ${JSON.stringify(input) ?? 'undefined'}`);
      if (!r.ok) t.notMatch(r.error, /internal error/);
    }
  }
});
