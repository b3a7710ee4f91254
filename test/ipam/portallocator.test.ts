/**
 * Cases K of clusterip-allocator-cases.md (NodePort allocator) plus the service wiring
 * of `initNodePorts` / `updateNodePorts`.
 */
import t from 'tap';
import type { ServicePort } from '../../src/cluster/model.js';
import { ErrFull, ErrPortAllocated, ErrPortNotInRange, ErrPortRangeMismatch, InvalidPortRangeError } from '../../src/ipam/errors.js';
import { ServiceInternalError, ServiceInvalidError } from '../../src/ipam/field.js';
import { DEFAULT_NODE_PORT_RANGE, PortAllocator, PortRange, calculatePortRangeOffset } from '../../src/ipam/portallocator.js';
import { seeded, seqRandom, throwsClass } from './fixtures/helpers.js';

t.test('K range 30000-32767', async (t) => {
  const a = new PortAllocator(DEFAULT_NODE_PORT_RANGE, { random: seeded(1) });
  t.equal(a.range.size, 2768);
  t.equal(a.offset, 86);
  t.equal(a.range.toString(), '30000-32767');
  let minSeen = Infinity;
  for (let i = 0; i < 2768 - 86; i++) minSeen = Math.min(minSeen, a.allocateNext());
  t.equal(minSeen, 30086, 'the first 2682 AN() fill exactly 30086-32767');
  t.equal(a.free(), 86);
  const b = new PortAllocator(undefined, { random: seqRandom([0]) });
  t.equal(b.allocateNext(), 30086, 'rand 0 -> first dynamic port');
  t.equal(b.allocate(30000), undefined);
  throwsClass(t, () => b.allocate(30000), ErrPortAllocated, 'provided port is already allocated');
  const nir = throwsClass(t, () => b.allocate(29999), ErrPortNotInRange, 'provided port is not in the valid range. The range of valid ports is 30000-32767');
  t.equal(nir?.validPorts, '30000-32767');
  throwsClass(t, () => b.allocate(32768), ErrPortNotInRange);
  t.equal(b.release(40000), undefined, 'R(40000) -> nil');
  t.ok(b.has(30000));
  b.release(30000);
  t.notOk(b.has(30000));

  const small = new PortAllocator('30000-30001');
  small.allocateNext();
  small.allocateNext();
  throwsClass(t, () => small.allocateNext(), ErrFull, 'range is full');

  b.allocate(30005);
  const snap = b.snapshot();
  t.equal(snap.range, '30000-32767');
  throwsClass(t, () => b.restore('30000-32766', snap.data), ErrPortRangeMismatch, 'the provided port range does not match the current port range');
  const c = PortAllocator.fromSnapshot(b.snapshotJSON());
  const seen: number[] = [];
  c.forEach((p) => seen.push(p));
  t.same(seen, [30005, 30086]);
  t.equal(c.used(), 2);
});

t.test('K band offsets', async (t) => {
  const cases: Array<[number, number]> = [[16, 0], [17, 16], [100, 16], [512, 16], [1024, 32], [2768, 86], [4096, 128], [10000, 128]];
  for (const [size, want] of cases) t.equal(calculatePortRangeOffset(size), want, `size ${size}`);
});

t.test('PortRange parsing (utilnet.PortRange.Set)', async (t) => {
  const ok: Array<[string, number, number, string]> = [
    ['30000-32767', 30000, 2768, '30000-32767'],
    ['30000+100', 30000, 101, '30000-30100'],
    ['8080', 8080, 1, '8080-8080'],
    [' 1-2 ', 1, 2, '1-2'],
    ['', 0, 0, ''],
  ];
  for (const [text, base, size, str] of ok) {
    const r = PortRange.parse(text);
    t.same([r.base, r.size, r.toString()], [base, size, str], JSON.stringify(text));
  }
  const bad: Array<[string, string]> = [
    ['1-2-3', 'strconv.Atoi: parsing "2-3": invalid syntax'],
    ['a-b', 'strconv.Atoi: parsing "a": invalid syntax'],
    ['1+2-3', 'unable to parse port range: 1+2-3'],
    ['30000-70000', 'the port range cannot be greater than 65535: 30000-70000'],
    ['200-100', 'end port cannot be less than start port: 200-100'],
  ];
  for (const [text, msg] of bad) throwsClass(t, () => PortRange.parse(text), InvalidPortRangeError, msg, text);
  t.equal(new PortAllocator('').free(), 0, 'empty range');
});

const port = (p: number, protocol: ServicePort['protocol'] = 'TCP', nodePort?: number, name = ''): ServicePort => ({
  name, port: p, protocol, ...(nodePort === undefined ? {} : { nodePort }),
});

t.test('K service wiring (create)', async (t) => {
  const a = new PortAllocator(DEFAULT_NODE_PORT_RANGE, { random: seeded(2) });
  const dns = a.allocateService({ name: 'dns', type: 'NodePort', ports: [port(53, 'TCP', undefined, 'dns-tcp'), port(53, 'UDP', undefined, 'dns')] });
  t.equal(dns.ports[0]?.nodePort, dns.ports[1]?.nodePort, '53/TCP and 53/UDP share one nodePort');
  t.equal(dns.allocated.length, 1);
  t.ok(a.has(dns.ports[0]?.nodePort ?? 0));

  const web = a.allocateService({ name: 'web', type: 'NodePort', ports: [port(80, 'TCP', 30080), port(443)] });
  t.equal(web.ports[0]?.nodePort, 30080);
  t.ok((web.ports[1]?.nodePort ?? 0) >= 30086, '443 gets a dynamic port');
  t.same(web.allocated.length, 2);

  const req = a.allocateService({ name: 'x', type: 'NodePort', ports: [port(53, 'TCP'), port(53, 'UDP', 30053)] });
  t.same(req.ports.map((p) => p.nodePort), [30053, 30053], 'a later requested nodePort for the same number is used for both');

  throwsClass(t, () => a.allocateService({ name: 'dup', type: 'NodePort', ports: [port(81), port(80, 'TCP', 30080)] }), ServiceInvalidError,
    'Service "dup" is invalid: spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated');
  throwsClass(t, () => a.allocateService({ name: 'out', type: 'NodePort', ports: [port(80, 'TCP', 8080)] }), ServiceInvalidError,
    'Service "out" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767');
  const used = a.used();
  throwsClass(t, () => a.allocateService({ name: 'two', type: 'NodePort', ports: [port(1), port(2, 'TCP', 30080)] }), ServiceInvalidError);
  t.equal(a.used(), used, 'the dynamic port taken for port 1 was rolled back');

  t.same(a.allocateService({ type: 'ClusterIP', ports: [port(80)] }).ports, [port(80)], 'ClusterIP gets none');
  throwsClass(t, () => a.allocateService({ name: 'c', type: 'ClusterIP', ports: [port(80, 'TCP', 30099)] }), ServiceInvalidError,
    'Service "c" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is \'ClusterIP\'');
  const lb = a.allocateService({ type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [port(80), port(81, 'TCP', 30081)] });
  t.same(lb.ports.map((p) => p.nodePort), [undefined, 30081], 'LB without allocateLoadBalancerNodePorts keeps only explicit ones');
  const lb2 = a.allocateService({ type: 'LoadBalancer', ports: [port(80)] });
  t.type(lb2.ports[0]?.nodePort, 'number');
  throwsClass(t, () => a.allocateService({ name: 'd', type: 'NodePort', ports: [port(80, 'TCP', 30090), port(81, 'TCP', 30090)] }), ServiceInvalidError,
    'Service "d" is invalid: spec.ports[1].nodePort: Invalid value: 30090: provided port is already allocated');
  t.notOk(a.has(30090), 'rolled back');

  const full = new PortAllocator('30000-30000');
  full.allocate(30000);
  const err = throwsClass(t, () => full.allocateService({ type: 'NodePort', ports: [port(80)] }), ServiceInternalError,
    'Internal error occurred: failed to allocate a nodePort: range is full');
  t.equal(err?.status, 500);

  // revert gives everything back
  const r = a.allocateService({ type: 'NodePort', ports: [port(9000), port(9001)] });
  r.revert();
  t.ok(r.allocated.every((p) => !a.has(p)));
  // releaseService
  t.same(a.releaseService(web), [30080, web.ports[1]?.nodePort]);
  t.notOk(a.has(30080));
});

t.test('dry-run (PortAllocationOperation)', async (t) => {
  const a = new PortAllocator();
  a.allocate(30080);
  const d = a.allocateService({ type: 'NodePort', ports: [port(80), port(443)] }, { dryRun: true });
  t.same(d.ports.map((p) => p.nodePort), [32769, 32770], 'invented ports above 32768');
  t.same([d.allocated, a.used()], [[], 1]);
  throwsClass(t, () => a.allocateService({ type: 'NodePort', ports: [port(80, 'TCP', 30080)] }, { dryRun: true }), ServiceInvalidError);
  const oor = a.allocateService({ type: 'NodePort', ports: [port(80, 'TCP', 8080)] }, { dryRun: true });
  t.equal(oor.ports[0]?.nodePort, 8080, 'upstream dry-run does no range check');
});

t.test('update (updateNodePorts, patchAllocatedValues, dropTypeDependentFields)', async (t) => {
  const a = new PortAllocator(DEFAULT_NODE_PORT_RANGE, { random: seeded(3) });
  const old = a.allocateService({ name: 's', type: 'NodePort', ports: [port(80, 'TCP', undefined, 'http'), port(443, 'TCP', 30443, 'https')] });
  const http = old.ports[0]?.nodePort ?? 0;

  const same = a.updateService({ type: 'NodePort', ports: old.ports }, { type: 'NodePort', ports: [port(80, 'TCP', undefined, 'http'), port(443, 'TCP', undefined, 'https')] });
  t.same(same.ports.map((p) => p.nodePort), [http, 30443], 'omitted nodePorts are kept (by name)');
  t.same([same.allocated, same.toRelease], [[], []]);

  const changed = a.updateService({ type: 'NodePort', ports: old.ports }, { type: 'NodePort', ports: [port(80, 'TCP', 30081, 'http')] });
  t.same(changed.ports.map((p) => p.nodePort), [30081]);
  t.same(changed.allocated, [30081]);
  t.same([...changed.toRelease].sort(), [30443, http].sort());
  t.ok(a.has(30443), 'released only on commit');
  changed.commit();
  t.notOk(a.has(30443));
  t.notOk(a.has(http));

  const toCluster = a.updateService({ type: 'NodePort', ports: changed.ports }, { type: 'ClusterIP', ports: changed.ports });
  t.same(toCluster.ports.map((p) => p.nodePort), [undefined], 'unchanged nodePorts are wiped');
  t.same(toCluster.toRelease, [30081]);
  toCluster.commit();
  t.notOk(a.has(30081));

  const sharedProto = a.allocateService({ type: 'NodePort', ports: [port(53, 'TCP', 30053), port(53, 'UDP', 30053)] });
  t.same(sharedProto.ports.map((p) => p.nodePort), [30053, 30053], 'same port number, explicit shared nodePort: allocated once');
  t.same(sharedProto.allocated, [30053]);
  throwsClass(t, () => a.allocateService({ type: 'NodePort', ports: [port(55, 'TCP', 30055), port(56, 'UDP', 30055)] }), ServiceInvalidError,
    'Service "" is invalid: spec.ports[1].nodePort: Invalid value: 30055: provided port is already allocated', 'other port number: no sharing on create');

  const fromCluster = a.updateService({ type: 'ClusterIP', ports: [port(80)] }, { type: 'NodePort', ports: [port(80), port(53, 'UDP')] });
  t.equal(fromCluster.ports.length, 2);
  t.equal(fromCluster.allocated.length, 2);
  fromCluster.revert();
  t.ok(fromCluster.allocated.every((p) => !a.has(p)));

  throwsClass(t, () => a.updateService({ type: 'NodePort', ports: [] }, { type: 'NodePort', ports: [port(80, 'TCP', 30001), port(81, 'TCP', 30001)] }), ServiceInternalError,
    'Internal error occurred: duplicate nodePort: {TCP 30001}');
  t.notOk(a.has(30001), 'rolled back');
});
