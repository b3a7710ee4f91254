/**
 * Kubernetes mode: the mirror checks the clusterIPs and nodePorts the API reports
 * (read-only, nothing allocated), on a timer; its status and the registry's feed the
 * metrics gauges.
 */
import t from 'tap';
import { ClusterStore } from '../../src/cluster/store.js';
import type { Service } from '../../src/cluster/model.js';
import { silentLogger } from '../../src/log.js';
import { Metrics } from '../../src/ops/metrics.js';
import { createMirror } from '../../src/registry/mirror.js';
import { ipamMetrics } from '../../src/registry/metrics.js';
import { ZONE, docs, harness, svc } from './_harness.js';

function service(name: string, clusterIPs: string[], nodePorts: number[] = [], namespace = 'default'): Service {
  return {
    namespace,
    name,
    type: nodePorts.length > 0 ? 'NodePort' : 'ClusterIP',
    clusterIPs,
    headless: false,
    ports: nodePorts.length > 0 ? nodePorts.map((n, i) => ({ name: `p${i}`, port: 80 + i, protocol: 'TCP' as const, nodePort: n })) : [{ name: 'http', port: 80, protocol: 'TCP' as const }],
    publishNotReadyAddresses: false,
    labels: {},
  };
}

t.test('mirror: duplicates, out-of-range and unconfigured-family IPs, nodePort conflicts; read-only', async (t) => {
  const store = new ClusterStore();
  store.batch(() => {
    store.upsert({ kind: 'Service', obj: service('kubernetes', ['10.96.0.1']) });
    store.upsert({ kind: 'Service', obj: service('a', ['10.96.5.5'], [30100]) });
    store.upsert({ kind: 'Service', obj: service('b', ['10.96.5.5'], [30100]) });
    store.upsert({ kind: 'Service', obj: service('far', ['10.200.0.1']) });
    store.upsert({ kind: 'Service', obj: service('v6', ['fd00::1']) });
    store.upsert({ kind: 'Service', obj: service('lowport', ['10.96.5.6'], [8080]) });
    store.upsert({ kind: 'Service', obj: { ...service('hl', []), headless: true } });
  });
  const mirror = createMirror(store, { serviceCIDRs: ['10.96.0.0/12'] }, silentLogger(), { intervalMs: 0, zone: 'cluster.local' });
  t.equal(mirror.lastReport(), undefined);
  t.equal(mirror.status().ranges[0]?.allocated, 0, 'empty status before the first check');
  const report = mirror.runOnce();
  t.same(
    report.anomalies.map((a) => `${a.reason} ${a.namespace}/${a.name}: ${a.message}`),
    [
      'ClusterIPAlreadyAllocated default/b: the cluster IP 10.96.5.5 for service default/b was assigned to multiple services',
      'ClusterIPOutOfRange default/far: Cluster IP [IPv4]:10.200.0.1 is not within the service CIDR 10.96.0.0/12; please recreate service',
      'ClusterIPNotValid default/v6: Cluster IP fd00::1(IPv6) is of ip family that is no longer configured on cluster; please recreate service',
      'PortAlreadyAllocated default/b: Port 30100 was assigned to multiple services; please recreate service',
      'PortOutOfRange default/lowport: Port 8080 is not within the port range 30000-32767; please recreate service',
    ],
  );
  t.equal(report.ips.readOnly, true);
  t.equal(report.services, 7);
  const st = mirror.status();
  t.equal(st.mode, 'mirror');
  t.equal(st.zone, 'cluster.local');
  t.match(st.ranges[0], { cidr: '10.96.0.0/12', allocated: 3, static: { allocated: 1 }, dynamic: { allocated: 2 } });
  t.equal(st.nodePorts.allocated, 1);
  t.equal(st.anomalies.repair, 5);
  // Nothing was changed: a second run reports the same (no leak counting, no repair).
  t.same(mirror.runOnce().anomalies, report.anomalies);
  store.remove('Service', 'default/b');
  t.equal(mirror.runOnce().anomalies.length, 3, 'follows the store');
});

t.test('mirror: start() checks now and on its timer', async (t) => {
  const store = new ClusterStore();
  store.upsert({ kind: 'Service', obj: service('a', ['10.96.0.2']) });
  const mirror = createMirror(store, undefined, silentLogger(), { intervalMs: 30 });
  mirror.start();
  t.teardown(() => mirror.stop());
  const first = mirror.lastReport();
  t.ok(first, 'a check at start');
  t.same(mirror.settings.serviceCIDRs, ['10.96.0.0/12'], 'the configuration defaults without a config');
  store.upsert({ kind: 'Service', obj: service('b', ['10.96.0.2']) });
  const deadline = Date.now() + 2000;
  while (mirror.lastReport()?.anomalies.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(mirror.lastReport()?.anomalies[0]?.reason, 'ClusterIPAlreadyAllocated', 'the timer ran again');
});

t.test('metrics: gauges from the registry and the mirror', async (t) => {
  const h = await harness(t, { 'a.yaml': docs(svc('a', { clusterIP: '10.96.0.9' }), svc('b'), svc('c', { clusterIP: '10.200.0.1' }), svc('np', { type: 'NodePort' })) }, { config: { serviceCIDRs: ['10.96.0.0/12'] } });
  const store = new ClusterStore();
  store.upsert({ kind: 'Service', obj: service('x', ['10.96.0.2']) });
  const mirror = createMirror(store, { serviceCIDRs: ['10.96.0.0/12'] }, silentLogger(), { intervalMs: 0, zone: 'api' });
  mirror.runOnce();
  const metrics = new Metrics('dns://:53', false);
  for (const m of ipamMetrics(() => [...h.registry.status(), mirror.status()])) metrics.register(m);
  const text = await metrics.text();
  t.match(text, /clusterdns_ipam_allocated_ips\{zone="cluster\.local",cidr="10\.96\.0\.0\/12",band="static"\} 1/);
  t.match(text, /clusterdns_ipam_allocated_ips\{zone="cluster\.local",cidr="10\.96\.0\.0\/12",band="dynamic"\} 2/);
  t.match(text, /clusterdns_ipam_available_ips\{zone="cluster\.local",cidr="10\.96\.0\.0\/12"\} 1048571/);
  t.match(text, /clusterdns_ipam_allocated_nodeports\{zone="cluster\.local",range="30000-32767"\} 1/);
  t.match(text, /clusterdns_ipam_anomalies\{zone="cluster\.local",kind="refused-service"\} 1/);
  t.match(text, /clusterdns_ipam_anomalies\{zone="cluster\.local",kind="refused-address"\} 0/);
  t.match(text, /clusterdns_ipam_state_write_ok\{zone="cluster\.local"\} 1/);
  t.match(text, /clusterdns_ipam_allocated_ips\{zone="api",cidr="10\.96\.0\.0\/12",band="static"\} 1/);
  t.notMatch(text, /clusterdns_ipam_state_write_ok\{zone="api"\}/, 'the mirror writes nothing');
  t.match(h.registry.zone(ZONE).status(), { mode: 'registry', persistence: { ok: true, generation: 1 }, services: { total: 3, refused: 1 } });
});
