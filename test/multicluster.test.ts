/**
 * Multicluster zones (config `multicluster`, CoreDNS `multicluster`): the answer table of
 * `clusterset.local` served beside `cluster.local` from one store, through the DnsNode
 * as the server wires it (planZones, MulticlusterZone, the answer cache), run in-process,
 * over UDP and over TCP; then what the table cannot show: serials, incremental rebuilds,
 * options, the no-op check, the worker IPC and a multicluster zone that is a cluster domain.
 */
import { pino } from 'pino';
import t from 'tap';
import type { EndpointSlice, ServiceImport } from '../src/cluster/model.js';
import type { StoreProvider } from '../src/cluster/provider.js';
import type { ClusterChange, ClusterStore } from '../src/cluster/store.js';
import { parseConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { DnsNode } from '../src/node.js';
import { Metrics } from '../src/ops/metrics.js';
import { ReplicaFeed, ReplicaProvider, type ReplicaMessage } from '../src/replica.js';
import type { DnsHandler } from '../src/server/handler.js';
import { MulticlusterZone, planZones } from '../src/zone/multicluster.js';
import { snapshotZone } from '../src/zone/transfer.js';
import { ClusterZone } from '../src/zone/zone.js';
import { runTable, zoneExpectations, type Case } from './helpers/answer-table.js';
import { ep, fixtureStore } from './helpers/cluster.js';
import { decode, makeQuery } from './helpers/dns.js';

const Z = 'cluster.local';
const MC = 'clusterset.local';
const { SOA, NODATA, NX } = zoneExpectations(MC);
const CL = zoneExpectations(Z);

function imp(ns: string, name: string, p: Partial<ServiceImport> = {}): ServiceImport {
  return { namespace: ns, name, type: 'ClusterSetIP', ips: [], ports: [], ...p };
}

/** A multicluster slice: labelled with the import's name and its source cluster. */
function mcSlice(ns: string, importName: string, cluster: string, name: string, endpoints: EndpointSlice['endpoints'], ports: EndpointSlice['ports'], addressType: EndpointSlice['addressType'] = 'IPv4'): EndpointSlice {
  return {
    namespace: ns,
    name,
    serviceName: importName,
    addressType,
    endpoints,
    ports,
    legacy: false,
    labels: { 'multicluster.kubernetes.io/service-name': importName, 'multicluster.kubernetes.io/source-cluster': cluster },
    sourceCluster: cluster,
  };
}

const HTTP = [{ name: 'http', port: 80, protocol: 'TCP' as const }];

/** The answer tables' cluster (cluster.local), plus imports and their slices. */
function mcStore(): ClusterStore {
  const s = fixtureStore();
  s.batch(() => {
    // Same name as the cluster's own testns/svc1: the two must not mix.
    s.upsert({ kind: 'ServiceImport', obj: imp('testns', 'svc1', { ips: ['10.100.0.1'], ports: HTTP }) });
    s.upsert({ kind: 'EndpointSlice', obj: mcSlice('testns', 'svc1', 'east', 'svc1-east', [ep('10.1.0.1', { hostname: 'ep1' }), ep('10.1.0.2')], [{ name: 'http', port: 8080, protocol: 'TCP' }]) });
    s.upsert({ kind: 'EndpointSlice', obj: mcSlice('testns', 'svc1', 'west', 'svc1-west', [ep('10.2.0.1')], [{ name: 'http', port: 8080, protocol: 'TCP' }]) });
    s.upsert({ kind: 'ServiceImport', obj: imp('testns', 'dual', { ips: ['10.100.0.3', 'fd00:100::3'], ports: HTTP }) });
    s.upsert({ kind: 'ServiceImport', obj: imp('testns', 'empty', { ips: ['10.100.0.9'], ports: [{ name: '', port: 9, protocol: 'UDP' }] }) });
    s.upsert({ kind: 'ServiceImport', obj: imp('testns', 'hdls', { type: 'Headless', ports: HTTP }) });
    s.upsert({
      kind: 'EndpointSlice',
      obj: mcSlice('testns', 'hdls', 'east', 'hdls-east', [ep('10.1.1.1', { hostname: 'web-0' }), ep('10.1.1.2'), ep('10.1.1.9', { hostname: 'web-9', ready: false })], HTTP),
    });
    s.upsert({ kind: 'EndpointSlice', obj: mcSlice('testns', 'hdls', 'west', 'hdls-west', [ep('10.2.1.1', { hostname: 'web-0' })], HTTP) });
    s.upsert({ kind: 'EndpointSlice', obj: mcSlice('testns', 'hdls', 'west', 'hdls-west-v6', [ep('fd00:2::1')], HTTP, 'IPv6') });
    s.upsert({ kind: 'ServiceImport', obj: imp('testns', 'hdls-none', { type: 'Headless', ports: HTTP }) });
    s.upsert({ kind: 'EndpointSlice', obj: mcSlice('testns', 'hdls-none', 'east', 'hdls-none-east', [ep('10.1.2.1', { ready: false })], HTTP) });
  });
  s.flush();
  return s;
}

function provider(store: ClusterStore, zones = [Z]): StoreProvider {
  return { zones: () => zones, storeFor: () => store, onZonesChanged: () => () => {}, synced: () => true };
}

/** A DnsNode over `store` with `config`, as app.ts makes one (no listeners, no upstream). */
function node(t: Tap, store: ClusterStore, config: Record<string, unknown> = {}, zones = [Z]): DnsNode {
  const n = new DnsNode(parseConfig({ multicluster: [MC], ...config }, 'test'), [{ host: '127.0.0.1', port: 0 }], silentLogger(), new Metrics('dns://:53', false));
  n.attach(provider(store, zones));
  t.teardown(() => n.close());
  return n;
}

interface Tap {
  teardown(fn: () => unknown): void;
}

const svc1 = `svc1.testns.svc.${MC}`;
const hdls = `hdls.testns.svc.${MC}`;

const cases: Case[] = [
  // ClusterSetIP: the import's IPs, SRV to the import name with the IPs as additional.
  { q: svc1, type: 'A', rcode: 'NOERROR', answer: [`${svc1}. 5 IN A 10.100.0.1`] },
  { q: 'SVC1.TestNS.svc.ClusterSet.Local', type: 'A', rcode: 'NOERROR', answer: [`${svc1}. 5 IN A 10.100.0.1`] },
  { q: svc1, type: 'AAAA', ...NODATA },
  { q: svc1, type: 'TXT', ...NODATA },
  { q: `_http._tcp.${svc1}`, type: 'SRV', rcode: 'NOERROR', answer: [`_http._tcp.${svc1}. 5 IN SRV 0 100 80 ${svc1}.`], extra: [`${svc1}. 5 IN A 10.100.0.1`] },
  { q: svc1, type: 'SRV', rcode: 'NOERROR', answer: [`${svc1}. 5 IN SRV 0 100 80 ${svc1}.`], extra: [`${svc1}. 5 IN A 10.100.0.1`] },
  { q: `_tcp.${svc1}`, type: 'SRV', ...NODATA },
  { q: `_https._tcp.${svc1}`, type: 'SRV', ...NX },
  // Endpoint names carry the cluster id, under ClusterSetIP imports too (CoreDNS answers them).
  { q: `ep1.east.${svc1}`, type: 'A', rcode: 'NOERROR', answer: [`ep1.east.${svc1}. 5 IN A 10.1.0.1`] },
  { q: `10-1-0-2.east.${svc1}`, type: 'A', rcode: 'NOERROR', answer: [`10-1-0-2.east.${svc1}. 5 IN A 10.1.0.2`] },
  { q: `10-2-0-1.west.${svc1}`, type: 'A', rcode: 'NOERROR', answer: [`10-2-0-1.west.${svc1}. 5 IN A 10.2.0.1`] },
  { q: `ep1.west.${svc1}`, type: 'A', ...NX },
  { q: `ep1.${svc1}`, type: 'A', ...NX },
  { q: `east.${svc1}`, type: 'A', ...NODATA },
  { q: `a.b.east.${svc1}`, type: 'A', ...NX },
  // Dual-stack clusterset IPs: each family, SRV weight 100/(1 port × 2 IPs).
  { q: `dual.testns.svc.${MC}`, type: 'A', rcode: 'NOERROR', answer: [`dual.testns.svc.${MC}. 5 IN A 10.100.0.3`] },
  { q: `dual.testns.svc.${MC}`, type: 'AAAA', rcode: 'NOERROR', answer: [`dual.testns.svc.${MC}. 5 IN AAAA fd00:100::3`] },
  {
    q: `_http._tcp.dual.testns.svc.${MC}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [`_http._tcp.dual.testns.svc.${MC}. 5 IN SRV 0 50 80 dual.testns.svc.${MC}.`],
    extra: [`dual.testns.svc.${MC}. 5 IN A 10.100.0.3`, `dual.testns.svc.${MC}. 5 IN AAAA fd00:100::3`],
  },
  // No endpoint anywhere: still its IP (ignoreEmptyService is off); an unnamed port: bare-name SRV only.
  { q: `empty.testns.svc.${MC}`, type: 'A', rcode: 'NOERROR', answer: [`empty.testns.svc.${MC}. 5 IN A 10.100.0.9`] },
  { q: `empty.testns.svc.${MC}`, type: 'SRV', rcode: 'NOERROR', answer: [`empty.testns.svc.${MC}. 5 IN SRV 0 100 9 empty.testns.svc.${MC}.`], extra: [`empty.testns.svc.${MC}. 5 IN A 10.100.0.9`] },
  // Headless: ready endpoints of every cluster, de-duplicated; not-ready left out.
  { q: hdls, type: 'A', rcode: 'NOERROR', answer: [`${hdls}. 5 IN A 10.1.1.1`, `${hdls}. 5 IN A 10.1.1.2`, `${hdls}. 5 IN A 10.2.1.1`] },
  { q: hdls, type: 'AAAA', rcode: 'NOERROR', answer: [`${hdls}. 5 IN AAAA fd00:2::1`] },
  { q: `web-0.east.${hdls}`, type: 'A', rcode: 'NOERROR', answer: [`web-0.east.${hdls}. 5 IN A 10.1.1.1`] },
  { q: `WEB-0.West.${hdls}`, type: 'A', rcode: 'NOERROR', answer: [`web-0.west.${hdls}. 5 IN A 10.2.1.1`] },
  { q: `web-0.west.${hdls}`, type: 'AAAA', ...NODATA },
  { q: `fd00-2--1.west.${hdls}`, type: 'AAAA', rcode: 'NOERROR', answer: [`fd00-2--1.west.${hdls}. 5 IN AAAA fd00:2::1`] },
  { q: `web-9.east.${hdls}`, type: 'A', ...NX },
  { q: `web-0.${hdls}`, type: 'A', ...NX },
  { q: `web-0.north.${hdls}`, type: 'A', ...NX },
  { q: `west.${hdls}`, type: 'A', ...NODATA },
  {
    // One SRV per (cluster, endpoint name, port), targets `<ep>.<clusterid>.<svc>...`, weight 100/4.
    q: `_http._tcp.${hdls}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [
      `_http._tcp.${hdls}. 5 IN SRV 0 25 80 web-0.east.${hdls}.`,
      `_http._tcp.${hdls}. 5 IN SRV 0 25 80 10-1-1-2.east.${hdls}.`,
      `_http._tcp.${hdls}. 5 IN SRV 0 25 80 web-0.west.${hdls}.`,
      `_http._tcp.${hdls}. 5 IN SRV 0 25 80 fd00-2--1.west.${hdls}.`,
    ],
    extra: [`web-0.east.${hdls}. 5 IN A 10.1.1.1`, `10-1-1-2.east.${hdls}. 5 IN A 10.1.1.2`, `web-0.west.${hdls}. 5 IN A 10.2.1.1`, `fd00-2--1.west.${hdls}. 5 IN AAAA fd00:2::1`],
  },
  { q: `hdls-none.testns.svc.${MC}`, type: 'A', ...NX },
  // Nothing else: a Service is not an import, no ExternalName, no pods.
  { q: `nope.testns.svc.${MC}`, type: 'A', ...NX },
  { q: `kubernetes.default.svc.${MC}`, type: 'A', ...NX },
  { q: `ext.testns.svc.${MC}`, type: 'CNAME', ...NX },
  { q: `10-244-0-7.testns.pod.${MC}`, type: 'A', ...NX },
  { q: `pod.${MC}`, type: 'A', ...NX },
  // Namespaces exist as in the cluster zone.
  { q: `testns.svc.${MC}`, type: 'A', ...NODATA },
  { q: `emptyns.svc.${MC}`, type: 'A', ...NODATA },
  { q: `ghostns.svc.${MC}`, type: 'A', ...NX },
  { q: `svc.${MC}`, type: 'A', ...NODATA },
  { q: `foo.${MC}`, type: 'A', ...NX },
  // Apex: its own SOA, NS with the kube-dns glue, dns-version.
  { q: MC, type: 'SOA', rcode: 'NOERROR', answer: [SOA] },
  { q: MC, type: 'NS', rcode: 'NOERROR', answer: [`${MC}. 5 IN NS ns.dns.${MC}.`], extra: [`ns.dns.${MC}. 5 IN A 10.96.0.10`] },
  { q: `ns.dns.${MC}`, type: 'A', rcode: 'NOERROR', answer: [`ns.dns.${MC}. 5 IN A 10.96.0.10`] },
  { q: MC, type: 'A', ...NODATA },
  { q: `dns-version.${MC}`, type: 'TXT', rcode: 'NOERROR', answer: [`dns-version.${MC}. 28800 IN TXT "1.1.0"`] },
  // cluster.local beside it, unchanged: the imports' slices never join the Service of that name.
  { q: `svc1.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`] },
  { q: `ep1a.svc1.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`ep1a.svc1.testns.svc.${Z}. 5 IN A 172.0.0.1`] },
  { q: `ep1.svc1.testns.svc.${Z}`, type: 'A', ...CL.NX },
  { q: `10-1-0-1.svc1.testns.svc.${Z}`, type: 'A', ...CL.NX },
  { q: `hdls.testns.svc.${Z}`, type: 'A', ...CL.NX },
  // No PTR from imports (CoreDNS reverse.go reads Services and ordinary endpoints only).
  { q: '1.0.100.10.in-addr.arpa', type: 'PTR', rcode: 'REFUSED', answer: [], ns: [] },
  { q: '1.1.1.10.in-addr.arpa', type: 'PTR', rcode: 'REFUSED', answer: [], ns: [] },
  { q: '1.0.0.172.in-addr.arpa', type: 'PTR', rcode: 'NOERROR', answer: [`1.0.0.172.in-addr.arpa. 5 IN PTR ep1a.svc1.testns.svc.${Z}.`] },
];

runTable(t, 'multicluster answer table', () => node(t, mcStore()).handler, cases);

// ignoreEmptyService: a ClusterSetIP import with no ready endpoint in any cluster is NXDOMAIN
// (CoreDNS counts the ready addresses of every slice of the import); headless ones as before.
runTable(t, 'multicluster answer table, ignoreEmptyService', () => node(t, mcStore(), { ignoreEmptyService: true }).handler, [
  { q: `empty.testns.svc.${MC}`, type: 'A', ...NX },
  { q: `empty.testns.svc.${MC}`, type: 'SRV', ...NX },
  { q: `dual.testns.svc.${MC}`, type: 'AAAA', ...NX },
  { q: svc1, type: 'A', rcode: 'NOERROR', answer: [`${svc1}. 5 IN A 10.100.0.1`] },
  { q: hdls, type: 'A', rcode: 'NOERROR', answer: [`${hdls}. 5 IN A 10.1.1.1`, `${hdls}. 5 IN A 10.1.1.2`, `${hdls}. 5 IN A 10.2.1.1`] },
  { q: `hdls-none.testns.svc.${MC}`, type: 'A', ...NX },
  { q: `noports.testns.svc.${Z}`, type: 'A', ...CL.NX },
]);

const ask = (h: DnsHandler, q: string, type = 'A') => decode(h.handle(makeQuery(q, type), 'udp') as Buffer);

t.test('the zones a node serves (planZones)', async (t) => {
  t.same(planZones([Z], [MC]), [{ name: Z, store: Z, multicluster: false }, { name: MC, store: Z, multicluster: true }], 'beside the cluster domain, from its store');
  t.same(planZones(['a.local', 'b.local'], [MC]).at(-1), { name: MC, store: 'a.local', multicluster: true }, 'several domains: the first (zones/ sorts them) feeds it');
  t.same(planZones([Z], []), [{ name: Z, store: Z, multicluster: false }], 'none configured');
  t.same(planZones([], [MC]), [], 'no cluster domain yet: nothing to serve it from');
  t.same(planZones([Z, MC], [MC]), [{ name: Z, store: Z, multicluster: false }, { name: MC, store: MC, multicluster: true }], 'a listed cluster domain is served from its own store');
  t.same(planZones([Z], [Z]), [{ name: Z, store: Z, multicluster: true }], 'the only cluster domain listed: imports only (as CoreDNS)');
});

t.test('a multicluster zone that is the cluster domain serves ServiceImports only (as CoreDNS)', async (t) => {
  const lines: { level: number; msg: string; zone?: string }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
  const n = new DnsNode(parseConfig({ multicluster: [Z] }, 'test'), [{ host: '127.0.0.1', port: 0 }], log, new Metrics('dns://:53', false));
  n.attach(provider(mcStore()));
  t.teardown(() => n.close());
  t.same(n.zones().map((z) => [z.name, z instanceof MulticlusterZone]), [[Z, true]]);
  t.match(lines.filter((l) => l.level === 40), [{ zone: Z, msg: /also a cluster domain: served from its ServiceImports only.*Services are not served/ }], 'one warning says so');
  t.same(ask(n.handler, `svc1.testns.svc.${Z}`).answer, [`svc1.testns.svc.${Z}. 5 IN A 10.100.0.1`], 'the import, not the Service');
  t.equal(ask(n.handler, `kubernetes.default.svc.${Z}`).rcode, 'NXDOMAIN', 'Services are not served');
  t.equal(ask(n.handler, `10-244-0-7.testns.pod.${Z}`).rcode, 'NXDOMAIN', 'nor pod names');
});

t.test('the multicluster list follows a reload; options apply to the multicluster zone', async (t) => {
  const store = mcStore();
  const n = new DnsNode(parseConfig({}, 'test'), [{ host: '127.0.0.1', port: 0 }], silentLogger(), new Metrics('dns://:53', false));
  n.attach(provider(store));
  t.teardown(() => n.close());
  t.equal(ask(n.handler, svc1).rcode, 'REFUSED', 'not configured: not ours');
  n.setConfig(parseConfig({ multicluster: [MC], ignoreEmptyService: true, ttl: 30 }, 'test'));
  t.same(ask(n.handler, svc1).answer, [`${svc1}. 30 IN A 10.100.0.1`], 'added by a reload, with the ttl');
  t.equal(ask(n.handler, `empty.testns.svc.${MC}`).rcode, 'NXDOMAIN', 'ignoreEmptyService: a ClusterSetIP import without a ready endpoint');
  t.equal(ask(n.handler, hdls).rcode, 'NOERROR', 'headless imports unaffected');
  n.setConfig(parseConfig({ multicluster: [MC], namespaces: ['default'] }, 'test'));
  t.equal(ask(n.handler, svc1).rcode, 'NXDOMAIN', 'namespaces: other namespaces do not exist');
  t.equal(ask(n.handler, `testns.svc.${MC}`).rcode, 'NXDOMAIN');
  n.setConfig(parseConfig({ multicluster: [MC], noEndpoints: true }, 'test'));
  t.equal(ask(n.handler, hdls).rcode, 'NXDOMAIN', 'noEndpoints: headless imports vanish');
  t.equal(ask(n.handler, `ep1.east.${svc1}`).rcode, 'NXDOMAIN', 'and endpoint names');
  t.equal(ask(n.handler, svc1).rcode, 'NOERROR', 'clusterset IPs stay');
  n.setConfig(parseConfig({ multicluster: [MC], pods: 'verified', endpointPodNames: true }, 'test'));
  t.equal(ask(n.handler, `10-244-0-7.testns.pod.${MC}`).rcode, 'NXDOMAIN', 'no pod names, whatever the pods mode');
  n.setConfig(parseConfig({}, 'test'));
  t.equal(ask(n.handler, svc1).rcode, 'REFUSED', 'removed by a reload');
  t.equal(ask(n.handler, `svc1.testns.svc.${Z}`).rcode, 'NOERROR', 'the cluster zone stays');
});

t.test('live changes: only the changed import is rebuilt, the cache follows, each zone keeps its own serial', async (t) => {
  const store = mcStore();
  const n = node(t, store);
  const [cl, mc] = [n.zones().find((z) => z.name === Z)!, n.zones().find((z) => z.name === MC)!];
  t.ok(mc instanceof MulticlusterZone && !(cl instanceof MulticlusterZone));
  const changes: (ClusterChange | undefined)[] = [];
  const prev = mc.onUpdate;
  mc.onUpdate = (c) => {
    changes.push(c);
    prev?.(c);
  };
  // The decoder writes serials as SERIAL: read them from the zones, and check the wire's match.
  const serial = (h: DnsHandler, zone: string): number => {
    const z = n.zones().find((x) => x.name === zone)!;
    t.equal(ask(h, zone, 'SOA').rcode, 'NOERROR');
    return z.serial;
  };
  const s0 = { cl: serial(n.handler, Z), mc: serial(n.handler, MC) };
  t.same(ask(n.handler, hdls).answer.length, 3, 'cached before the change');

  // A new endpoint in a new cluster of one import.
  store.upsert({ kind: 'EndpointSlice', obj: mcSlice('testns', 'hdls', 'south', 'hdls-south', [ep('10.3.1.1', { hostname: 'web-0' })], HTTP) });
  store.flush();
  t.same(changes.map((c) => (c === undefined ? 'all' : [...c.services])), [['testns/hdls']], 'one rebuild, naming only that import');
  t.ok(ask(n.handler, hdls).answer.includes(`${hdls}. 5 IN A 10.3.1.1`), 'the cached answer was dropped');
  t.same(ask(n.handler, `web-0.south.${hdls}`).answer, [`web-0.south.${hdls}. 5 IN A 10.3.1.1`]);
  const s1 = { cl: serial(n.handler, Z), mc: serial(n.handler, MC) };
  t.ok(s1.mc > s0.mc, 'the multicluster serial moved');
  t.equal(s1.cl, s0.cl, 'the cluster zone serial did not (nothing it serves changed)');

  // A Service change: the cluster zone moves, the multicluster zone does not rebuild.
  changes.length = 0;
  store.upsert({ kind: 'Service', obj: { ...store.services.get('testns/svc1')!, clusterIPs: ['10.0.0.11'] } });
  store.flush();
  t.same(changes, [], 'no multicluster rebuild for a Service');
  t.equal(serial(n.handler, MC), s1.mc, 'multicluster serial unchanged');
  t.ok(serial(n.handler, Z) > s1.cl, 'cluster serial moved');
  t.same(ask(n.handler, svc1).answer, [`${svc1}. 5 IN A 10.100.0.1`], 'the import is not the Service');

  // The import itself: type, IPs, deletion.
  store.upsert({ kind: 'ServiceImport', obj: imp('testns', 'svc1', { ips: ['10.100.0.2'], ports: HTTP }) });
  store.flush();
  t.same(ask(n.handler, svc1).answer, [`${svc1}. 5 IN A 10.100.0.2`]);
  store.remove('ServiceImport', 'testns/svc1');
  store.flush();
  t.equal(ask(n.handler, svc1).rcode, 'NXDOMAIN', 'deleted import: gone');
  t.equal(ask(n.handler, `ep1.east.${svc1}`).rcode, 'NXDOMAIN', 'with its endpoint names');
  // A slice moving from an import to a Service (its labels changed): both sides follow.
  const moved = store.get('EndpointSlice', 'testns/hdls-south')!;
  const { sourceCluster: _c, ...plain } = moved;
  store.upsert({ kind: 'EndpointSlice', obj: { ...plain, serviceName: 'hdls1', labels: { 'kubernetes.io/service-name': 'hdls1' } } });
  store.flush();
  t.equal(ask(n.handler, `web-0.south.${hdls}`).rcode, 'NXDOMAIN', 'left the import');
  t.ok(ask(n.handler, `hdls1.testns.svc.${Z}`).answer.includes(`hdls1.testns.svc.${Z}. 5 IN A 10.3.1.1`), 'joined the Service');
  // Namespaces: existence decides NODATA vs NXDOMAIN here too.
  store.upsert({ kind: 'Namespace', obj: { name: 'newns', labels: {} } });
  store.flush();
  t.equal(ask(n.handler, `newns.svc.${MC}`).rcode, 'NOERROR');
  store.remove('Namespace', 'newns');
  store.flush();
  t.equal(ask(n.handler, `newns.svc.${MC}`).rcode, 'NXDOMAIN');
});

t.test('store: the deep-equal no-op check, the import index and stats', async (t) => {
  const store = mcStore();
  const again = mcStore();
  let changed = 0;
  store.onChange(() => changed++);
  for (const o of again.snapshot()) t.notOk(store.upsert(o), `${o.kind} ${'namespace' in o.obj ? `${o.obj.namespace}/` : ''}${o.obj.name}: an equal copy is a no-op`);
  store.flush();
  t.equal(changed, 0, 'no notification');
  t.same([...store.slicesByImport.keys()].sort(), ['testns/hdls', 'testns/hdls-none', 'testns/svc1']);
  t.notOk(store.slicesByService.has('testns/hdls'), 'multicluster slices are not indexed for Services');
  t.same(store.endpointsOf('testns/svc1').map((s) => s.name), ['svc1-abc'], 'the Service keeps only its own slices');
  t.same(store.importSlicesOf('testns/svc1').map((s) => s.name).sort(), ['svc1-east', 'svc1-west']);
  const z = new MulticlusterZone(MC, store, { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined });
  t.teardown(() => z.close());
  t.match(z.stats(), { services: 5, reverseNames: 0 }, 'stats count imports; no reverse names');
  t.equal(z.reverse.size, 0);
  t.ok(z instanceof ClusterZone, 'a ClusterZone to the Resolver, the cache and the transfer listing');
});

t.test('a zone transfer lists the multicluster zone from its NameTable', async (t) => {
  const n = node(t, mcStore());
  const mc = n.zones().find((z) => z.name === MC)!;
  const snap = snapshotZone(mc);
  t.equal(snap.serial, mc.serial, 'at the zone\'s own serial');
  const names = new Set<string>();
  for (const rr of snap.records()) names.add(`${rr.name} ${rr.type}`);
  for (const want of [
    `${MC} 2`, // NS
    `dns-version.${MC} 16`,
    `${svc1} 1`,
    `${svc1} 33`,
    `_http._tcp.${svc1} 33`,
    `ep1.east.${svc1} 1`,
    `10-2-0-1.west.${svc1} 1`,
    `dual.testns.svc.${MC} 28`,
    `${hdls} 1`,
    `${hdls} 28`,
    `web-0.east.${hdls} 1`,
    `fd00-2--1.west.${hdls} 28`,
    `_http._tcp.${hdls} 33`,
  ]) {
    t.ok(names.has(want), want);
  }
  t.notOk([...names].some((x) => x.includes('hdls-none') || x.includes(`.${Z} `)), 'nothing that does not resolve, nothing of cluster.local');
});

t.test('worker IPC: a replica gets the imports, their slices and the multicluster serial', async (t) => {
  const primary = mcStore();
  primary.lastImportChange = 1_700_000_123;
  const sent: ReplicaMessage[] = [];
  const feed = new ReplicaFeed(provider(primary), (m) => sent.push(structuredClone(m)));
  t.teardown(() => feed.close());
  const replica = new ReplicaProvider();
  for (const m of feed.snapshot()) replica.handle(structuredClone(m));
  const copy = replica.storeFor(Z);
  copy.flush();
  t.equal(copy.serviceImports.size, primary.serviceImports.size, 'imports in the snapshot');
  t.same(copy.serviceImports.get('testns/hdls'), primary.serviceImports.get('testns/hdls'));
  t.same([...copy.slicesByImport.keys()].sort(), [...primary.slicesByImport.keys()].sort(), 'slices indexed for imports on the replica too');
  t.equal(copy.lastImportChange, 1_700_000_123, 'the primary\'s multicluster serial');
  const n = node(t, copy);
  t.same(ask(n.handler, `web-0.east.${hdls}`).answer, [`web-0.east.${hdls}. 5 IN A 10.1.1.1`], 'a worker answers from it');

  sent.length = 0;
  primary.upsert({ kind: 'ServiceImport', obj: imp('testns', 'late', { ips: ['10.100.0.50'] }) });
  primary.remove('EndpointSlice', 'testns/hdls-west');
  await new Promise((r) => setImmediate(r));
  const ops = sent.filter((m) => m.t === 'ops');
  t.equal(ops.length, 1, 'one batch');
  for (const m of ops) replica.handle(m);
  copy.flush();
  t.equal(copy.lastImportChange, primary.lastImportChange, 'serial carried with the ops');
  t.same(ask(n.handler, `late.testns.svc.${MC}`).answer, [`late.testns.svc.${MC}. 5 IN A 10.100.0.50`]);
  t.equal(ask(n.handler, `web-0.west.${hdls}`).rcode, 'NXDOMAIN');
});
