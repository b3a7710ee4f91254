/**
 * Cases F of clusterip-allocator-cases.md: upstream
 * `pkg/registry/core/service/ipallocator/controller/repair_test.go`, with the derived
 * anomaly reports, leak counting and read-only mode.
 */
import t from 'tap';
import { type ClusterIPSnapshot, ClusterIPAllocator } from '../../src/ipam/allocator.js';
import { Range } from '../../src/ipam/range.js';
import { ClusterIPRepair, type RepairService, RepairError, formatRepairReport } from '../../src/ipam/repair.js';
import { throwsClass } from './fixtures/helpers.js';

/** The upstream mockRangeRegistry: Get returns the item, CreateOrUpdate records it and returns updateErr. */
class MockStore {
  item: ClusterIPSnapshot;
  updated: ClusterIPSnapshot | undefined;
  updateCalls = 0;
  updateErr: Error | undefined;
  constructor(item: ClusterIPSnapshot) {
    this.item = item;
  }
  snapshot(): ClusterIPSnapshot {
    return this.item;
  }
  restore(snap: ClusterIPSnapshot): void {
    this.updateCalls++;
    this.updated = snap;
    if (this.updateErr !== undefined) throw this.updateErr;
    this.item = snap;
  }
}

/** A stored snapshot with `ips` allocated in `cidr`. */
function stored(...ranges: Array<[string, string[]]>): ClusterIPSnapshot {
  return {
    ranges: ranges.map(([cidr, ips]) => {
      const r = new Range(cidr);
      for (const ip of ips) r.allocate(ip);
      return { family: r.family, range: cidr, data: Buffer.from(r.snapshot().data).toString('base64') };
    }),
  };
}

function has(snap: ClusterIPSnapshot | undefined, range: string, ip: string): boolean {
  const entry = snap?.ranges.find((r) => r.range === range);
  if (entry === undefined) return false;
  return Range.fromSnapshot({ range: entry.range, data: new Uint8Array(Buffer.from(entry.data, 'base64')) }).has(ip);
}

function free(snap: ClusterIPSnapshot | undefined, range: string): number {
  const entry = snap?.ranges.find((r) => r.range === range);
  if (entry === undefined) return -1;
  return Range.fromSnapshot({ range: entry.range, data: new Uint8Array(Buffer.from(entry.data, 'base64')) }).free();
}

const svc = (ns: string, ips: string[]): RepairService => ({ namespace: ns, name: ns, clusterIP: ips[0] ?? '', clusterIPs: ips });

t.test('F1 TestRepair: an empty registry is written back', async (t) => {
  const store = new MockStore({ ranges: [{ family: 'IPv4', range: '192.168.1.0/24', data: '' }] });
  const r = new ClusterIPRepair('192.168.1.0/24');
  const report = r.runOnce(store, []);
  t.equal(store.updateCalls, 1, 'CreateOrUpdate called');
  t.equal(store.updated?.ranges[0]?.range, '192.168.1.0/24');
  t.same(report.anomalies, []);
  t.equal(report.changed, false);
  // An uninitialised (empty) Range is filled with the configured network.
  const fresh = new MockStore({ ranges: [{ family: 'IPv4', range: '', data: '' }] });
  r.runOnce(fresh, []);
  t.equal(fresh.updated?.ranges[0]?.range, '192.168.1.0/24');
  const missing = new MockStore({ ranges: [] });
  r.runOnce(missing, []);
  t.equal(missing.updated?.ranges[0]?.range, '192.168.1.0/24');
});

t.test('F2 update error', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', []]));
  store.updateErr = new Error('test error');
  const err = throwsClass(t, () => new ClusterIPRepair('192.168.1.0/24').runOnce(store, []), RepairError,
    'unable to persist the updated service IP allocations: test error');
  t.match(err?.message, /: test error/);
  t.equal(err?.code, 'ERR_IPAM_REPAIR');
  const bad = { snapshot: () => { throw new Error('boom'); }, restore: () => undefined };
  throwsClass(t, () => new ClusterIPRepair('192.168.1.0/24').runOnce(bad, []), RepairError, 'unable to refresh the service IP block: boom');
  const corrupt = new MockStore({ ranges: [{ family: 'IPv4', range: 'nope', data: '' }] });
  throwsClass(t, () => new ClusterIPRepair('192.168.1.0/24').runOnce(corrupt, []), RepairError);
});

t.test('F3 TestRepairLeak: freed on the 3rd pass', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', ['192.168.1.10']]));
  const r = new ClusterIPRepair('192.168.1.0/24');
  for (let pass = 1; pass <= 2; pass++) {
    const report = r.runOnce(store, []);
    t.ok(has(store.updated, '192.168.1.0/24', '192.168.1.10'), `still allocated after pass ${pass}`);
    t.same(report.anomalies, [{
      kind: 'leak-suspected', reason: 'ClusterIPLeaked', ip: '192.168.1.10', family: 'IPv4', passes: pass,
      message: 'the cluster IP 192.168.1.10 may have leaked: flagging for later clean up',
    }]);
    t.equal(r.leaks('IPv4').get('192.168.1.10'), 2 - pass);
  }
  const third = r.runOnce(store, []);
  t.notOk(has(store.updated, '192.168.1.0/24', '192.168.1.10'), 'freed after the 3rd pass');
  t.same(third.anomalies, [{
    kind: 'leak-cleaned', reason: 'ClusterIPLeaked', ip: '192.168.1.10', family: 'IPv4', passes: 3,
    message: 'the cluster IP 192.168.1.10 appears to have leaked: cleaning up',
  }]);
  t.equal(third.changed, true);
  t.same(third.families, [{ family: 'IPv4', cidr: '192.168.1.0/24', usedBefore: 1, usedAfter: 0, free: 254 }]);
  t.equal(r.leaks('IPv4').get('192.168.1.10'), 0, 'the entry stays at 0 (upstream)');
});

t.test('leak counter resets when a Service uses the IP again', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', ['192.168.1.10']]));
  const r = new ClusterIPRepair('192.168.1.0/24');
  r.runOnce(store, []);
  r.runOnce(store, []);
  r.runOnce(store, [svc('a', ['192.168.1.10'])]);
  t.equal(r.leaks('IPv4').has('192.168.1.10'), false);
  const again = r.runOnce(store, []);
  t.equal(again.anomalies[0]?.passes, 1, 'counting starts over');
  t.ok(has(store.updated, '192.168.1.0/24', '192.168.1.10'));
});

t.test('a second leak of an already cleaned IP goes on first detection (derived)', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', ['192.168.1.10']]));
  const r = new ClusterIPRepair('192.168.1.0/24');
  for (let i = 0; i < 3; i++) r.runOnce(store, []);
  store.item = stored(['192.168.1.0/24', ['192.168.1.10']]);
  const report = r.runOnce(store, []);
  t.equal(report.anomalies[0]?.kind, 'leak-cleaned');
  t.notOk(has(store.updated, '192.168.1.0/24', '192.168.1.10'));
});

const F4_SERVICES: RepairService[] = [
  svc('one', ['192.168.1.1']),
  svc('two', ['192.168.1.100']),
  svc('three', ['192.168.0.1']),
  { namespace: 'four', name: 'four', clusterIP: '', clusterIPs: [] },
  svc('five', ['192.168.1.1']),
  { namespace: 'six', name: 'six', clusterIP: 'None', clusterIPs: ['None'] },
];

t.test('F4 TestRepairWithExisting', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', []]));
  const report = new ClusterIPRepair('192.168.1.0/24').runOnce(store, F4_SERVICES);
  t.ok(has(store.updated, '192.168.1.0/24', '192.168.1.1'));
  t.ok(has(store.updated, '192.168.1.0/24', '192.168.1.100'));
  t.equal(free(store.updated, '192.168.1.0/24'), 252);
  t.same(report.anomalies.map((a) => [a.kind, a.reason, a.service, a.ip, a.message]), [
    ['not-allocated', 'ClusterIPNotAllocated', 'one/one', '192.168.1.1', 'Cluster IP [IPv4]:192.168.1.1 is not allocated; repairing'],
    ['not-allocated', 'ClusterIPNotAllocated', 'two/two', '192.168.1.100', 'Cluster IP [IPv4]:192.168.1.100 is not allocated; repairing'],
    ['out-of-range', 'ClusterIPOutOfRange', 'three/three', '192.168.0.1', 'Cluster IP [IPv4]:192.168.0.1 is not within the service CIDR 192.168.1.0/24; please recreate service'],
    ['duplicate', 'ClusterIPAlreadyAllocated', 'five/five', '192.168.1.1', 'the cluster IP 192.168.1.1 for service five/five was assigned to multiple services'],
  ]);
  t.equal(report.changed, true);
});

t.test('F5 ShouldWorkOnSecondary', async (t) => {
  const cases: Array<[string[], string[]]> = [
    [['10.0.0.0/16'], ['IPv4']],
    [['2000::/120'], ['IPv6']],
    [['10.0.0.0/16', '2000::/120'], ['IPv4', 'IPv6']],
    [['2000::/120', '10.0.0.0/16'], ['IPv6', 'IPv4']],
  ];
  for (const [cidrs, families] of cases) {
    const r = new ClusterIPRepair(cidrs);
    t.same(r.families, families, cidrs.join(','));
    for (const f of families) {
      t.ok(r.network(f as 'IPv4' | 'IPv6'), `network for ${f}`);
      t.same([...r.leaks(f as 'IPv4' | 'IPv6')], [], `leak map for ${f}`);
    }
    for (const f of ['IPv4', 'IPv6'] as const) {
      if (!families.includes(f)) t.equal(r.network(f), undefined, `no network for ${f}`);
    }
    t.same(families.map((f) => r.network(f as 'IPv4' | 'IPv6')?.toString()), cidrs);
  }
  throwsClass(t, () => new ClusterIPRepair(['10.0.0.0/16', '10.1.0.0/16']), RepairError);
  throwsClass(t, () => new ClusterIPRepair([]), RepairError);
});

t.test('F6 dual-stack', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', []], ['2000::/108', []]));
  new ClusterIPRepair('192.168.1.0/24,2000::/108').runOnce(store, []);
  t.same(store.updated?.ranges.map((r) => [r.family, r.range]), [['IPv4', '192.168.1.0/24'], ['IPv6', '2000::/108']]);
  store.updateErr = new Error('test error');
  throwsClass(t, () => new ClusterIPRepair('192.168.1.0/24,2000::/108').runOnce(store, []), RepairError,
    'unable to persist the updated service IP allocations: test error');
});

t.test('F7 dual-stack leak', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', ['192.168.1.10']], ['2000::/108', ['2000::1']]));
  const r = new ClusterIPRepair(['192.168.1.0/24', '2000::/108']);
  for (let i = 0; i < 2; i++) {
    r.runOnce(store, []);
    t.ok(has(store.updated, '192.168.1.0/24', '192.168.1.10') && has(store.updated, '2000::/108', '2000::1'), `present after pass ${i + 1}`);
  }
  r.runOnce(store, []);
  t.notOk(has(store.updated, '192.168.1.0/24', '192.168.1.10'));
  t.notOk(has(store.updated, '2000::/108', '2000::1'));
});

t.test('F8 dual-stack with existing services', async (t) => {
  const services: RepairService[] = [
    svc('one-v4-v6', ['192.168.1.1', '2000::1']),
    svc('one-v6-v4', ['2000::1', '192.168.1.100']),
    svc('three', ['2000::2']),
    svc('four', ['192.168.1.90']),
    svc('out-v4', ['192.168.0.1']),
    svc('out-v6', ['3000::1']),
    svc('out-v4-v6', ['192.168.0.1', '3000::1']),
    svc('out-v6-v4', ['3000::1', '192.168.0.1']),
    { namespace: 'empty', name: 'empty', clusterIP: '', clusterIPs: [] },
    svc('dup-v4', ['192.168.1.1']),
    svc('dup-v6', ['2000::2']),
    { namespace: 'none', name: 'none', clusterIP: 'None', clusterIPs: ['None'] },
  ];
  const store = new MockStore(stored(['192.168.1.0/24', []], ['2000::/108', []]));
  const report = new ClusterIPRepair('192.168.1.0/24,2000::/108').runOnce(store, services);
  for (const ip of ['192.168.1.1', '192.168.1.100', '192.168.1.90']) t.ok(has(store.updated, '192.168.1.0/24', ip), ip);
  t.equal(free(store.updated, '192.168.1.0/24'), 251);
  t.ok(has(store.updated, '2000::/108', '2000::1'));
  t.ok(has(store.updated, '2000::/108', '2000::2'));
  t.equal(free(store.updated, '2000::/108'), 65533);
  const dups = report.anomalies.filter((a) => a.kind === 'duplicate').map((a) => `${a.service} ${a.ip}`);
  t.same(dups, ['one-v6-v4/one-v6-v4 2000::1', 'dup-v4/dup-v4 192.168.1.1', 'dup-v6/dup-v6 2000::2'], 'the later Service loses, its other IP is kept');
  t.equal(report.anomalies.filter((a) => a.kind === 'out-of-range').length, 6);
  t.same(report.families.map((f) => [f.family, f.usedAfter, f.free]), [['IPv4', 3, 251], ['IPv6', 2, 65533]]);
});

t.test('invalid IPs and unconfigured families', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', []]));
  const report = new ClusterIPRepair('192.168.1.0/24').runOnce(store, [
    svc('bad', ['not-an-ip']),
    svc('v6', ['2000::1']),
    { name: 'cluster-scoped', clusterIPs: ['192.168.1.7'] },
  ]);
  t.same(report.anomalies.map((a) => [a.kind, a.reason, a.service, a.ip, a.family, a.message]), [
    ['invalid', 'ClusterIPNotValid', 'bad/bad', 'not-an-ip', undefined, 'Cluster IP not-an-ip is not a valid IP; please recreate service'],
    ['family-not-configured', 'ClusterIPNotValid', 'v6/v6', '2000::1', 'IPv6', 'Cluster IP 2000::1(IPv6) is of ip family that is no longer configured on cluster; please recreate service'],
    ['not-allocated', 'ClusterIPNotAllocated', 'cluster-scoped', '192.168.1.7', 'IPv4', 'Cluster IP [IPv4]:192.168.1.7 is not allocated; repairing'],
  ]);
});

t.test('read-only mode changes neither the store nor the leak counters', async (t) => {
  const store = new MockStore(stored(['192.168.1.0/24', ['192.168.1.10']]));
  const r = new ClusterIPRepair('192.168.1.0/24');
  for (let i = 0; i < 5; i++) {
    const report = r.runOnce(store, [svc('a', ['192.168.1.20'])], { readOnly: true });
    t.equal(report.readOnly, true);
    t.same(report.anomalies.map((a) => [a.kind, a.passes]), [['not-allocated', undefined], ['leak-suspected', 1]]);
  }
  t.equal(store.updateCalls, 0);
  t.equal(r.leaks('IPv4').size, 0);
});

t.test('against a real ClusterIPAllocator, with JSON report and CLI lines', async (t) => {
  const alloc = new ClusterIPAllocator('10.96.0.0/24,fd00::/120');
  alloc.allocateSpecific('10.96.0.10'); // kube-dns
  alloc.allocateSpecific('10.96.0.99'); // leaked
  const services: RepairService[] = [
    { namespace: 'kube-system', name: 'kube-dns', clusterIPs: ['10.96.0.10'] },
    { namespace: 'default', name: 'web', clusterIPs: ['10.96.0.20', 'fd00::20'] },
    { namespace: 'default', name: 'copy', clusterIPs: ['10.96.0.20'] },
  ];
  const r = new ClusterIPRepair(alloc.ranges.map((x) => x.cidr));
  const report = r.runOnce(alloc, services);
  t.ok(alloc.has('10.96.0.20') && alloc.has('fd00::20'), 'repaired into the allocator');
  t.ok(alloc.has('10.96.0.99'), 'leak kept for now');
  const json = JSON.parse(JSON.stringify(report));
  t.same(json.anomalies.map((a: { kind: string }) => a.kind), ['not-allocated', 'not-allocated', 'duplicate', 'leak-suspected']);
  t.same(formatRepairReport(report), [
    'ClusterIPNotAllocated default/web 10.96.0.20: Cluster IP [IPv4]:10.96.0.20 is not allocated; repairing',
    'ClusterIPNotAllocated default/web fd00::20: Cluster IP [IPv6]:fd00::20 is not allocated; repairing',
    'ClusterIPAlreadyAllocated default/copy 10.96.0.20: the cluster IP 10.96.0.20 for service default/copy was assigned to multiple services',
    'ClusterIPLeaked - 10.96.0.99: the cluster IP 10.96.0.99 may have leaked: flagging for later clean up',
    'IPv4 10.96.0.0/24: 2 allocated before, 3 after, 251 free',
    'IPv6 fd00::/120: 0 allocated before, 1 after, 254 free',
  ]);
  r.runOnce(alloc, services);
  const last = r.runOnce(alloc, services);
  t.notOk(alloc.has('10.96.0.99'), 'leak freed on the 3rd pass');
  t.same(last.anomalies.map((a) => a.kind), ['duplicate', 'leak-cleaned']);
  const clean = r.runOnce(alloc, services, { readOnly: true });
  t.same(clean.anomalies.map((a) => a.kind), ['duplicate']);
  t.equal(clean.changed, false);
  t.match(formatRepairReport(clean).at(-1), /\(read-only, not saved\)$/);
});
