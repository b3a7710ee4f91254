/**
 * Cases H of clusterip-allocator-cases.md: upstream `TestValidateEndpoints`
 * (pkg/apis/core/validation), the derived special-IP table, and the project rule
 * "an endpoint may not be a Service's cluster IP".
 */
import t from 'tap';
import type { EndpointSlice } from '../../src/cluster/model.js';
import { ClusterIPAllocator } from '../../src/ipam/allocator.js';
import { type FieldError, formatFieldError } from '../../src/ipam/field.js';
import {
  type EndpointsJSON,
  MSG_LINK_LOCAL,
  MSG_LINK_LOCAL_MULTICAST,
  MSG_LOOPBACK,
  clusterIPOwners,
  isDNS1123Label,
  isDNS1123Subdomain,
  validateEndpointIP,
  validateEndpointSliceAddresses,
  validateEndpoints,
  validateEndpointsUpdate,
} from '../../src/ipam/validate.js';

t.test('H special IPs (derived table)', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['127.0.0.1', [MSG_LOOPBACK]],
    ['127.255.255.254', [MSG_LOOPBACK]],
    ['::1', [MSG_LOOPBACK]],
    ['::2', []],
    ['::ffff:127.0.0.1', [MSG_LOOPBACK]],
    ['169.254.0.1', [MSG_LINK_LOCAL]],
    ['169.254.169.254', [MSG_LINK_LOCAL]],
    ['fe80::1', [MSG_LINK_LOCAL]],
    ['febf::1', [MSG_LINK_LOCAL]],
    ['fec0::1', []],
    ['224.0.0.1', [MSG_LINK_LOCAL_MULTICAST]],
    ['224.0.0.251', [MSG_LINK_LOCAL_MULTICAST]],
    ['224.0.1.1', []],
    ['239.255.255.250', []],
    ['ff02::1', [MSG_LINK_LOCAL_MULTICAST]],
    ['ff12::1', [MSG_LINK_LOCAL_MULTICAST]],
    ['ff05::1', []],
    ['0.0.0.0', ['may not be unspecified (0.0.0.0)']],
    ['::', ['may not be unspecified (::)']],
    ['::ffff:0.0.0.0', ['may not be unspecified (::ffff:0.0.0.0)']],
    ['255.255.255.255', []],
    ['10.0.0.10', []],
    ['2001:db8::1', []],
    ['', ['must be a valid IP address']],
    ['[2001:0db8:85a3:0042:1000:8a2e:0370:7334]', ['must be a valid IP address']],
    ['fe80::1%eth0', ['must be a valid IP address']],
  ];
  for (const [ip, want] of cases) t.same(validateEndpointIP(ip), want, JSON.stringify(ip));
  t.equal(MSG_LOOPBACK, 'may not be in the loopback range (127.0.0.0/8, ::1/128)');
  t.equal(MSG_LINK_LOCAL, 'may not be in the link-local range (169.254.0.0/16, fe80::/10)');
  t.equal(MSG_LINK_LOCAL_MULTICAST, 'may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)');
});

t.test('project rule: not another Service\'s cluster IP', async (t) => {
  const owners = clusterIPOwners([
    { namespace: 'kube-system', name: 'kube-dns', clusterIPs: ['10.96.0.10'] },
    { namespace: 'default', name: 'web', clusterIPs: ['10.96.0.20', '2001:DB8::20'] },
    { namespace: 'default', name: 'headless', clusterIPs: ['None'] },
    { name: 'dup', clusterIPs: ['10.96.0.10'] },
  ]);
  t.same([...owners], [['10.96.0.10', 'kube-system/kube-dns'], ['10.96.0.20', 'default/web'], ['2001:db8::20', 'default/web']]);
  t.same(validateEndpointIP('10.96.0.10', { clusterIPOwner: owners }), ['may not be the cluster IP of a Service (kube-system/kube-dns)']);
  t.same(validateEndpointIP('2001:db8:0::20', { clusterIPOwner: owners }), ['may not be the cluster IP of a Service (default/web)'], 'canonical lookup');
  t.same(validateEndpointIP('10.96.0.11', { clusterIPOwner: owners }), [], 'inside the service CIDR but not allocated: accepted (as upstream)');
  t.same(validateEndpointIP('10.96.0.10'), [], 'rule off without a lookup');
  // A function lookup, e.g. backed by the allocator plus a service index.
  const alloc = new ClusterIPAllocator('10.96.0.0/24');
  alloc.allocateSpecific('10.96.0.10');
  const fn = (ip: string) => (alloc.has(ip) ? owners.get(ip) ?? 'unknown/unknown' : undefined);
  t.same(validateEndpointIP('10.96.0.10', { clusterIPOwner: fn }), ['may not be the cluster IP of a Service (kube-system/kube-dns)']);
  t.same(validateEndpointIP('10.96.0.20', { clusterIPOwner: fn }), []);
});

const ep = (subsets: EndpointsJSON['subsets'], metadata: EndpointsJSON['metadata'] = { name: 'mysvc', namespace: 'namespace' }): EndpointsJSON => ({ metadata, subsets });
const first = (errs: FieldError[]) => errs[0];

t.test('H TestValidateEndpoints success cases', async (t) => {
  t.same(validateEndpoints(ep([
    { addresses: [{ ip: '10.10.1.1' }, { ip: '10.10.2.2' }], ports: [{ name: 'a', port: 8675, protocol: 'TCP' }, { name: 'b', port: 309, protocol: 'TCP' }] },
    { addresses: [{ ip: '10.10.3.3' }], ports: [{ name: 'a', port: 93, protocol: 'TCP' }, { name: 'b', port: 76, protocol: 'TCP' }] },
  ])), [], 'two subsets');
  t.same(validateEndpoints(ep([])), [], 'empty subsets');
  t.same(validateEndpoints(ep([{ addresses: [{ ip: '10.10.1.1' }], ports: [{ port: 8675, protocol: 'TCP' }] }])), [], 'single unnamed port');
  t.same(validateEndpoints(ep([{ addresses: [{ ip: '10.10.3.3' }] }])), [], 'no ports');
  t.same(validateEndpoints(ep([{ addresses: [{ ip: '10.10.1.1', nodeName: '10.10.1.1', hostname: 'pod-0' }] }])), [], 'nodeName may be an IP');
});

t.test('H TestValidateEndpoints error cases', async (t) => {
  const cases: Array<[string, EndpointsJSON, FieldError['type'], string]> = [
    ['missing namespace', ep([], { name: 'mysvc' }), 'Required', ''],
    ['missing name', ep([], { namespace: 'namespace' }), 'Required', ''],
    ['invalid namespace', ep([], { name: 'mysvc', namespace: 'no@#invalid.;chars"allowed' }), 'Invalid', 'RFC 1123 label'],
    ['invalid name', ep([], { name: '-_Invliad^&Characters', namespace: 'namespace' }), 'Invalid', 'RFC 1123 subdomain'],
    ['empty addresses', ep([{ ports: [{ port: 93, protocol: 'TCP' }] }]), 'Required', ''],
    ['invalid IP', ep([{ addresses: [{ ip: '[2001:0db8:85a3:0042:1000:8a2e:0370:7334]' }], ports: [{ name: 'a', port: 93, protocol: 'TCP' }] }]), 'Invalid', 'must be a valid IP address'],
    ['multiple ports, one without name', ep([{ addresses: [{ ip: '10.10.1.1' }], ports: [{ port: 8675, protocol: 'TCP' }, { name: 'b', port: 309, protocol: 'TCP' }] }]), 'Required', ''],
    ['invalid port', ep([{ addresses: [{ ip: '10.10.1.1' }], ports: [{ name: 'a', port: 66000, protocol: 'TCP' }] }]), 'Invalid', 'between'],
    ['invalid protocol', ep([{ addresses: [{ ip: '10.10.1.1' }], ports: [{ name: 'a', port: 93, protocol: 'Protocol' }] }]), 'NotSupported', ''],
    ['address missing IP', ep([{ addresses: [{}], ports: [{ name: 'a', port: 93, protocol: 'TCP' }] }]), 'Invalid', 'must be a valid IP address'],
    ['port missing number', ep([{ addresses: [{ ip: '10.10.1.1' }], ports: [{ name: 'a', protocol: 'TCP' }] }]), 'Invalid', 'between'],
    ['port missing protocol', ep([{ addresses: [{ ip: '10.10.1.1' }], ports: [{ name: 'a', port: 93 }] }]), 'Required', ''],
    ['address is loopback', ep([{ addresses: [{ ip: '127.0.0.1' }], ports: [{ name: 'p', port: 93, protocol: 'TCP' }] }]), 'Invalid', 'loopback'],
    ['address is link-local', ep([{ addresses: [{ ip: '169.254.169.254' }], ports: [{ name: 'p', port: 93, protocol: 'TCP' }] }]), 'Invalid', 'link-local'],
    ['address is link-local multicast', ep([{ addresses: [{ ip: '224.0.0.1' }], ports: [{ name: 'p', port: 93, protocol: 'TCP' }] }]), 'Invalid', 'link-local multicast'],
    ['invalid nodeName', ep([{ addresses: [{ ip: '10.10.1.1', nodeName: 'illegal*.nodename' }] }]), 'Invalid', 'RFC 1123 subdomain'],
  ];
  for (const [name, obj, type, detail] of cases) {
    const errs = validateEndpoints(obj);
    t.equal(first(errs)?.type, type, `${name}: type`);
    t.ok((first(errs)?.detail ?? '').includes(detail), `${name}: detail contains ${JSON.stringify(detail)} (${first(errs)?.detail})`);
  }
});

t.test('exact upstream texts of endpoint errors', async (t) => {
  const f = (obj: EndpointsJSON) => validateEndpoints(obj).map(formatFieldError);
  t.same(f(ep([], { namespace: 'ns' })), ['metadata.name: Required value: name or generateName is required']);
  t.same(f(ep([], { name: 'x' })), ['metadata.namespace: Required value']);
  t.same(f(ep([{ ports: [] }])), ['subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`']);
  t.same(f(ep([{ addresses: [{ ip: '1.2.3' }] }])), ['subsets[0].addresses[0].ip: Invalid value: "1.2.3": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']);
  t.same(f(ep([{ notReadyAddresses: [{ ip: '127.0.0.1' }] }])), ['subsets[0].notReadyAddresses[0].ip: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)'], 'notReadyAddresses get identical checks');
  t.same(f(ep([{ addresses: [{ ip: '0.0.0.0' }] }])), [
    'subsets[0].addresses[0].ip: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)',
  ]);
  t.same(f(ep([{ addresses: [{ ip: '10.0.0.1' }], ports: [{ name: 'a', port: 0, protocol: 'ICMP' }] }])), [
    'subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive',
    'subsets[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"',
  ]);
  t.same(f(ep([{ addresses: [{ ip: '10.0.0.1' }], ports: [{ port: 1, protocol: 'TCP' }, { name: 'b', port: 2, protocol: 'UDP' }] }])), [
    'subsets[0].ports[0].name: Required value',
  ]);
  t.same(f(ep([{ addresses: [{ ip: '127.0.0.1', hostname: 'Bad_Host' }] }])), [
    "subsets[0].addresses[0].hostname: Invalid value: \"Bad_Host\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
  ], 'special-IP checks are skipped when hostname/nodeName/IP already failed');
  t.same(f(ep([{ addresses: [{ ip: '10.96.0.10' }] }])), []);
  const owners = new Map([['10.96.0.10', 'kube-system/kube-dns']]);
  t.same(validateEndpoints(ep([{ addresses: [{ ip: '10.96.0.10' }] }]), { clusterIPOwner: owners }).map(formatFieldError), [
    'subsets[0].addresses[0].ip: Invalid value: "10.96.0.10": may not be the cluster IP of a Service (kube-system/kube-dns)',
  ]);
  t.same(isDNS1123Label('a'.repeat(64)).length, 1);
  t.same(isDNS1123Label('a'.repeat(64))[0], 'must be no more than 63 characters');
  t.same(isDNS1123Subdomain(`${'a'.repeat(250)}.com`)[0], 'must be no more than 253 characters');
  t.same(isDNS1123Subdomain('example.com'), []);
});

t.test('H nodeName may not change on update', async (t) => {
  const old = ep([{ addresses: [{ ip: '10.10.1.1', nodeName: 'node-a' }] }]);
  t.same(validateEndpointsUpdate(ep([{ addresses: [{ ip: '10.10.1.1', nodeName: 'node-b' }] }]), old).map(formatFieldError), [
    'subsets[0].addresses[0].nodeName: Forbidden: Cannot change NodeName for 10.10.1.1 to node-b',
  ]);
  t.same(validateEndpointsUpdate(ep([{ addresses: [{ ip: '10.10.1.1', nodeName: 'node-a' }] }]), old), []);
  t.same(validateEndpointsUpdate(ep([{ addresses: [{ ip: '10.10.1.1' }] }]), old), [], 'dropping nodeName is allowed');
  t.same(validateEndpointsUpdate(ep([{ addresses: [{ ip: '10.10.1.2', nodeName: 'node-b' }] }]), old), [], 'a new IP may use any node');
});

t.test('EndpointSlice addresses', async (t) => {
  const slice = (addressType: EndpointSlice['addressType'], addresses: string[]): EndpointSlice => ({
    namespace: 'ns', name: 's', serviceName: 'svc', addressType, ports: [], legacy: false, labels: {},
    endpoints: [{ addresses, conditions: { ready: true, serving: true, terminating: false } }],
  });
  t.same(validateEndpointSliceAddresses(slice('IPv4', ['10.0.0.1', '127.0.0.1', '2001:db8::1', '::ffff:10.0.0.2'])).map(formatFieldError), [
    'endpoints[0].addresses[1]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)',
    'endpoints[0].addresses[2]: Invalid value: "2001:db8::1": must be a valid IPv4 address',
  ]);
  t.same(validateEndpointSliceAddresses(slice('IPv6', ['2001:db8::1', 'fe80::1', '10.0.0.1', '::ffff:10.0.0.1'])).map(formatFieldError), [
    'endpoints[0].addresses[1]: Invalid value: "fe80::1": may not be in the link-local range (169.254.0.0/16, fe80::/10)',
    'endpoints[0].addresses[2]: Invalid value: "10.0.0.1": must be a valid IPv6 address',
    'endpoints[0].addresses[3]: Invalid value: "::ffff:10.0.0.1": must be a valid IPv6 address',
  ]);
  t.same(validateEndpointSliceAddresses(slice('FQDN', ['example.com'])), []);
  t.same(validateEndpointSliceAddresses(slice('IPv4', ['10.96.0.10']), { clusterIPOwner: new Map([['10.96.0.10', 'a/b']]) }).map(formatFieldError), [
    'endpoints[0].addresses[0]: Invalid value: "10.96.0.10": may not be the cluster IP of a Service (a/b)',
  ]);
});
