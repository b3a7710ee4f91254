/**
 * The answer table: every rule of the Kubernetes DNS spec and of CoreDNS's de-facto
 * behaviour, as {qname, qtype, rcode, answer, ns, extra} with records in zone-file
 * text. Each case runs three ways: through the handler in-process, over UDP and over
 * TCP on real sockets; the replies are decoded by dns-packet (an independent decoder).
 */
import t from 'tap';
import { DnsHandler } from '../src/server/handler.js';
import { Resolver } from '../src/zone/resolver.js';
import { ClusterZone } from '../src/zone/zone.js';
import type { ZoneOptions } from '../src/zone/build.js';
import { reverseZonesOf } from '../src/config.js';
import { fixtureStore } from './helpers/cluster.js';
import { decode, makeQuery } from './helpers/dns.js';
import { runTable, zoneExpectations, type Case } from './helpers/answer-table.js';

const Z = 'cluster.local';
const { SOA, NODATA, NX } = zoneExpectations(Z);

const base: ZoneOptions = { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined };

const cases: Case[] = [
  // §2.3.1 ClusterIP A/AAAA, case-insensitive (§2.1)
  { q: `kubernetes.default.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`kubernetes.default.svc.${Z}. 5 IN A 10.96.0.1`] },
  { q: `KuBeRnEtEs.DeFaUlT.SVC.Cluster.Local`, type: 'A', rcode: 'NOERROR', answer: [`kubernetes.default.svc.${Z}. 5 IN A 10.96.0.1`] },
  { q: `kubernetes.default.svc.${Z}`, type: 'AAAA', ...NODATA },
  { q: `svc1.testns.svc.${Z}`, type: 'TXT', ...NODATA },
  { q: `svc1.testns.svc.${Z}`, type: 'MX', ...NODATA },
  { q: `svc0.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `svc0.testns.svc.${Z}`, type: 'AAAA', ...NX },
  { q: `svc6.testns.svc.${Z}`, type: 'AAAA', rcode: 'NOERROR', answer: [`svc6.testns.svc.${Z}. 5 IN AAAA 1234:abcd::1`] },
  { q: `svc6.testns.svc.${Z}`, type: 'A', ...NODATA },
  // C3 dual-stack
  { q: `dual.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`dual.testns.svc.${Z}. 5 IN A 10.0.0.3`] },
  { q: `dual.testns.svc.${Z}`, type: 'AAAA', rcode: 'NOERROR', answer: [`dual.testns.svc.${Z}. 5 IN AAAA 1234:abcd::3`] },
  // §2.3.2 SRV: service port, target the service, CoreDNS weights, address in additional
  {
    q: `_http._tcp.svc1.testns.svc.${Z}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [`_http._tcp.svc1.testns.svc.${Z}. 5 IN SRV 0 100 80 svc1.testns.svc.${Z}.`],
    extra: [`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`],
  },
  {
    q: `svc1.testns.svc.${Z}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [`svc1.testns.svc.${Z}. 5 IN SRV 0 100 80 svc1.testns.svc.${Z}.`],
    extra: [`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`],
  },
  {
    q: `_http._tcp.dual.testns.svc.${Z}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [`_http._tcp.dual.testns.svc.${Z}. 5 IN SRV 0 50 80 dual.testns.svc.${Z}.`],
    extra: [`dual.testns.svc.${Z}. 5 IN A 10.0.0.3`, `dual.testns.svc.${Z}. 5 IN AAAA 1234:abcd::3`],
  },
  {
    // kube-dns: dns/UDP and dns-tcp/TCP share port 53, so the bare name gives 2 SRVs weighing 33.
    q: `kube-dns.kube-system.svc.${Z}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [`kube-dns.kube-system.svc.${Z}. 5 IN SRV 0 33 53 kube-dns.kube-system.svc.${Z}.`, `kube-dns.kube-system.svc.${Z}. 5 IN SRV 0 33 9153 kube-dns.kube-system.svc.${Z}.`],
    extra: [`kube-dns.kube-system.svc.${Z}. 5 IN A 10.96.0.10`],
  },
  {
    q: `_dns._udp.kube-dns.kube-system.svc.${Z}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [`_dns._udp.kube-dns.kube-system.svc.${Z}. 5 IN SRV 0 100 53 kube-dns.kube-system.svc.${Z}.`],
    extra: [`kube-dns.kube-system.svc.${Z}. 5 IN A 10.96.0.10`],
  },
  { q: `_dns._tcp.kube-dns.kube-system.svc.${Z}`, type: 'SRV', ...NX },
  { q: `_HTTP._TCP.svc1.testns.svc.${Z}`, type: 'SRV', rcode: 'NOERROR', answer: [`_http._tcp.svc1.testns.svc.${Z}. 5 IN SRV 0 100 80 svc1.testns.svc.${Z}.`], extra: [`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`] },
  { q: `_https._tcp.svc1.testns.svc.${Z}`, type: 'SRV', ...NX },
  { q: `_tcp.svc1.testns.svc.${Z}`, type: 'SRV', ...NODATA },
  // The port names below a service are answered on demand: only real ones exist.
  { q: `_tcp.svc1.testns.svc.${Z}`, type: 'A', ...NODATA },
  { q: `_udp.svc1.testns.svc.${Z}`, type: 'SRV', ...NX },
  { q: `_http.svc1.testns.svc.${Z}`, type: 'SRV', ...NX },
  { q: `_http._udp.svc1.testns.svc.${Z}`, type: 'SRV', ...NX },
  { q: `x._http._tcp.svc1.testns.svc.${Z}`, type: 'SRV', ...NX },
  { q: `_x._http._tcp.svc1.testns.svc.${Z}`, type: 'SRV', ...NX },
  { q: `_http._tcp.svc1.testns.svc.${Z}`, type: 'A', ...NODATA },
  { q: `_tcp.hdls1.testns.svc.${Z}`, type: 'SRV', ...NODATA },
  { q: `_http._tcp.nosuch.testns.svc.${Z}`, type: 'SRV', ...NX },
  // C6 unnamed ports: no _port name, but the bare-name SRV lists them (CoreDNS)
  { q: `unnamed.testns.svc.${Z}`, type: 'SRV', rcode: 'NOERROR', answer: [`unnamed.testns.svc.${Z}. 5 IN SRV 0 100 80 unnamed.testns.svc.${Z}.`], extra: [`unnamed.testns.svc.${Z}. 5 IN A 10.0.0.4`] },
  { q: `noports.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`noports.testns.svc.${Z}. 5 IN A 10.0.0.5`] },
  { q: `noports.testns.svc.${Z}`, type: 'SRV', ...NODATA },
  // Endpoint names under a ClusterIP service (CoreDNS)
  { q: `ep1a.svc1.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`ep1a.svc1.testns.svc.${Z}. 5 IN A 172.0.0.1`] },
  { q: `172-0-0-2.svc1.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`172-0-0-2.svc1.testns.svc.${Z}. 5 IN A 172.0.0.2`] },
  { q: `bogus.svc1.testns.svc.${Z}`, type: 'A', ...NX },
  // §2.4 headless: ready endpoints only, de-duplicated, per-hostname names
  {
    q: `hdls1.testns.svc.${Z}`,
    type: 'A',
    rcode: 'NOERROR',
    answer: ['172.0.0.2', '172.0.0.3', '172.0.0.4', '172.0.0.5'].map((ip) => `hdls1.testns.svc.${Z}. 5 IN A ${ip}`),
  },
  { q: `hdls1.testns.svc.${Z}`, type: 'AAAA', rcode: 'NOERROR', answer: ['5678:abcd::1', '5678:abcd::2'].map((ip) => `hdls1.testns.svc.${Z}. 5 IN AAAA ${ip}`) },
  { q: `web-0.hdls1.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`web-0.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.3`] },
  { q: `web-0.hdls1.testns.svc.${Z}`, type: 'AAAA', rcode: 'NOERROR', answer: [`web-0.hdls1.testns.svc.${Z}. 5 IN AAAA 5678:abcd::2`] },
  { q: `dup-name.hdls1.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`dup-name.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.4`, `dup-name.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.5`] },
  { q: `5678-abcd--1.hdls1.testns.svc.${Z}`, type: 'AAAA', rcode: 'NOERROR', answer: [`5678-abcd--1.hdls1.testns.svc.${Z}. 5 IN AAAA 5678:abcd::1`] },
  { q: `web-9.hdls1.testns.svc.${Z}`, type: 'A', ...NX },
  {
    // 6 candidates (addresses × ports) → weight 16; one SRV per distinct (name, port).
    q: `_http._tcp.hdls1.testns.svc.${Z}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: ['172-0-0-2', 'web-0', 'dup-name', '5678-abcd--1'].map((n) => `_http._tcp.hdls1.testns.svc.${Z}. 5 IN SRV 0 16 80 ${n}.hdls1.testns.svc.${Z}.`),
    extra: [
      `172-0-0-2.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.2`,
      `web-0.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.3`,
      `dup-name.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.4`,
      `dup-name.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.5`,
      `5678-abcd--1.hdls1.testns.svc.${Z}. 5 IN AAAA 5678:abcd::1`,
      `web-0.hdls1.testns.svc.${Z}. 5 IN AAAA 5678:abcd::2`,
    ],
  },
  // Endpoint names are answered on demand below the service name: the label must be
  // exactly the dashed canonical address or a known hostname; nothing exists below them.
  { q: `172-0-0-2.hdls1.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`172-0-0-2.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.2`] },
  { q: `172-0-0-2.hdls1.testns.svc.${Z}`, type: 'AAAA', ...NODATA },
  { q: `172-0-0-2.hdls1.testns.svc.${Z}`, type: 'TXT', ...NODATA },
  { q: `172-000-0-2.hdls1.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `172-0-0-9.hdls1.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `172-0-0-3.hdls1.testns.svc.${Z}`, type: 'A', ...NX }, // known as web-0, not by its address
  { q: `x.172-0-0-2.hdls1.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `5678-abcd--1.hdls1.testns.svc.${Z}`, type: 'AAAA', rcode: 'NOERROR', answer: [`5678-abcd--1.hdls1.testns.svc.${Z}. 5 IN AAAA 5678:abcd::1`] },
  { q: `5678-abcd-0-0-0-0-0-1.hdls1.testns.svc.${Z}`, type: 'AAAA', ...NX },
  { q: `web-0.hdls1.testns.svc.${Z}`, type: 'ANY', rcode: 'NOERROR', answer: [`web-0.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.3`] },
  // H2: no ready endpoint → NXDOMAIN; publishNotReadyAddresses serves not-ready ones
  { q: `hdls-empty.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `_http._tcp.hdls-empty.testns.svc.${Z}`, type: 'SRV', ...NX },
  { q: `hdls-pub.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`hdls-pub.testns.svc.${Z}. 5 IN A 172.0.2.1`] },
  { q: `pub-0.hdls-pub.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`pub-0.hdls-pub.testns.svc.${Z}. 5 IN A 172.0.2.1`] },
  { q: `hdls-pub.testns.svc.${Z}`, type: 'SRV', ...NODATA },
  // §2.5 ExternalName
  { q: `ext.testns.svc.${Z}`, type: 'CNAME', rcode: 'NOERROR', answer: [`ext.testns.svc.${Z}. 5 IN CNAME ext.interwebs.test.`] },
  { q: `ext.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`ext.testns.svc.${Z}. 5 IN CNAME ext.interwebs.test.`] },
  { q: `ext.testns.svc.${Z}`, type: 'SRV', ...NODATA },
  { q: `x.ext.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `_http._tcp.ext.testns.svc.${Z}`, type: 'SRV', ...NX },
  {
    q: `ext-in.testns.svc.${Z}`,
    type: 'A',
    rcode: 'NOERROR',
    answer: [`ext-in.testns.svc.${Z}. 5 IN CNAME svc1.testns.svc.${Z}.`, `svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`],
  },
  { q: `ext-in.testns.svc.${Z}`, type: 'AAAA', rcode: 'NOERROR', answer: [`ext-in.testns.svc.${Z}. 5 IN CNAME svc1.testns.svc.${Z}.`], ns: [SOA] },
  { q: `ext-ip.testns.svc.${Z}`, type: 'A', ...NX },
  // Legacy Endpoints for a service without slices; ignored once a slice exists
  { q: `legacy.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`legacy.testns.svc.${Z}. 5 IN A 10.0.0.6`] },
  { q: `old-0.legacy.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`old-0.legacy.testns.svc.${Z}. 5 IN A 172.0.3.1`] },
  { q: `172-0-3-2.legacy.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `legacy2.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`legacy2.testns.svc.${Z}. 5 IN A 172.0.4.2`] },
  // B1: apex, empty non-terminals, namespaces, invalid shapes
  { q: Z, type: 'A', ...NODATA },
  { q: `svc.${Z}`, type: 'A', ...NODATA },
  { q: `pod.${Z}`, type: 'A', ...NODATA },
  { q: `testns.svc.${Z}`, type: 'A', ...NODATA },
  { q: `emptyns.svc.${Z}`, type: 'A', ...NODATA },
  { q: `nons.svc.${Z}`, type: 'A', ...NX },
  { q: `foo.${Z}`, type: 'A', ...NX },
  { q: `a.b.c.d.e.svc.${Z}`, type: 'A', ...NX },
  { q: `svc1.testns.${Z}`, type: 'A', ...NX },
  // B2: SOA, NS with glue from kube-dns, dns-version
  { q: Z, type: 'SOA', rcode: 'NOERROR', answer: [SOA] },
  { q: Z, type: 'NS', rcode: 'NOERROR', answer: [`${Z}. 5 IN NS ns.dns.${Z}.`], extra: [`ns.dns.${Z}. 5 IN A 10.96.0.10`] },
  { q: `ns.dns.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`ns.dns.${Z}. 5 IN A 10.96.0.10`] },
  { q: `svc1.testns.svc.${Z}`, type: 'SOA', ...NODATA },
  { q: `svc1.testns.svc.${Z}`, type: 'NS', ...NODATA },
  { q: `dns-version.${Z}`, type: 'TXT', rcode: 'NOERROR', answer: [`dns-version.${Z}. 28800 IN TXT "1.1.0"`] },
  { q: `dns-version.${Z}`, type: 'A', ...NODATA },
  // Pod records (pods insecure): the namespace must exist, the label must be an address
  { q: `10-244-0-7.testns.pod.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`10-244-0-7.testns.pod.${Z}. 5 IN A 10.244.0.7`] },
  { q: `1-2-3-4.testns.pod.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`1-2-3-4.testns.pod.${Z}. 5 IN A 1.2.3.4`] },
  { q: `1-2-3-4.testns.pod.${Z}`, type: 'AAAA', ...NODATA },
  { q: `fd00--1.testns.pod.${Z}`, type: 'AAAA', rcode: 'NOERROR', answer: [`fd00--1.testns.pod.${Z}. 5 IN AAAA fd00::1`] },
  { q: `1-2-3-4.nons.pod.${Z}`, type: 'A', ...NX },
  { q: `not-an-ip.testns.pod.${Z}`, type: 'A', ...NX },
  { q: `testns.pod.${Z}`, type: 'A', ...NODATA },
  // PTR §2.3.3 / §2.4.3: ClusterIPs, endpoints of any service; two services, two PTRs
  { q: '1.0.96.10.in-addr.arpa', type: 'PTR', rcode: 'NOERROR', answer: [`1.0.96.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.${Z}.`] },
  { q: '1.0.0.172.in-addr.arpa', type: 'PTR', rcode: 'NOERROR', answer: [`1.0.0.172.in-addr.arpa. 5 IN PTR ep1a.svc1.testns.svc.${Z}.`] },
  { q: '3.0.0.172.in-addr.arpa', type: 'PTR', rcode: 'NOERROR', answer: [`3.0.0.172.in-addr.arpa. 5 IN PTR web-0.hdls1.testns.svc.${Z}.`] },
  {
    q: '2.0.0.172.in-addr.arpa',
    type: 'PTR',
    rcode: 'NOERROR',
    answer: [`2.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-2.hdls1.testns.svc.${Z}.`, `2.0.0.172.in-addr.arpa. 5 IN PTR 172-0-0-2.svc1.testns.svc.${Z}.`],
  },
  {
    q: '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa',
    type: 'PTR',
    rcode: 'NOERROR',
    answer: [`1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa. 5 IN PTR svc6.testns.svc.${Z}.`],
  },
  {
    // A pod's address selected by two services (ClusterIP shared-a, headless shared-b with
    // the pod's hostname): a PTR per service, each with that service's name for it.
    q: '99.0.0.10.in-addr.arpa',
    type: 'PTR',
    rcode: 'NOERROR',
    answer: [`99.0.0.10.in-addr.arpa. 5 IN PTR 10-0-0-99.shared-a.testns.svc.${Z}.`, `99.0.0.10.in-addr.arpa. 5 IN PTR db-0.shared-b.testns.svc.${Z}.`],
  },
  { q: `db-0.shared-b.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`db-0.shared-b.testns.svc.${Z}. 5 IN A 10.0.0.99`] },
  { q: `10-0-0-99.shared-a.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: [`10-0-0-99.shared-a.testns.svc.${Z}. 5 IN A 10.0.0.99`] },
  { q: '21.0.0.10.in-addr.arpa', type: 'PTR', rcode: 'NOERROR', answer: [`21.0.0.10.in-addr.arpa. 5 IN PTR shared-a.testns.svc.${Z}.`] },
  { q: '9.0.0.172.in-addr.arpa', type: 'PTR', rcode: 'REFUSED', answer: [], ns: [] },
  // Not ours (no upstream yet): REFUSED
  { q: 'example.com', type: 'A', rcode: 'REFUSED', answer: [], ns: [] },
  // RFC 8482: ANY gets one RRset
  { q: `svc1.testns.svc.${Z}`, type: 'ANY', rcode: 'NOERROR', answer: [`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`] },
  { q: `svc0.testns.svc.${Z}`, type: 'ANY', ...NX },
  { q: Z, type: 'AXFR', rcode: 'REFUSED', answer: [], ns: [] },
];

function setup(opts: ZoneOptions, reverse: string[] = []): DnsHandler {
  const store = fixtureStore();
  const zone = new ClusterZone(Z, store, opts);
  const resolver = new Resolver();
  resolver.setZones([zone]);
  resolver.setReverseZones(reverse.flatMap((c) => reverseZonesOf(c, 'test')).map((name) => ({ name })));
  const handler = new DnsHandler({ resolver });
  zone.onUpdate = () => handler.invalidate();
  return handler;
}

runTable(t, 'answer table', () => setup(base), cases);

t.test('owner names keep the query letter case (RFC 4343)', async (t) => {
  const h = setup(base);
  for (let i = 0; i < 2; i++) {
    const out = h.handle(makeQuery('HDLS1.TestNS.svc.CLUSTER.local', 'A'), 'udp') as Buffer;
    const text = out.toString('latin1');
    t.ok(text.includes('HDLS1') && text.includes('TestNS') && text.includes('CLUSTER'), 'case echoed in question and owners');
    t.notOk(text.includes('hdls1'), 'no lowercase copy of the name');
  }
});

t.test('zone options', async (t) => {
  const ask = (h: DnsHandler, q: string, type = 'A') => decode(h.handle(makeQuery(q, type), 'udp') as Buffer);

  t.test('pods disabled: everything under <ns>.pod is NXDOMAIN, pod.<zone> NODATA', async (t) => {
    const h = setup({ ...base, pods: 'disabled' });
    t.equal(ask(h, `10-244-0-7.testns.pod.${Z}`).rcode, 'NXDOMAIN');
    t.equal(ask(h, `testns.pod.${Z}`).rcode, 'NXDOMAIN');
    t.equal(ask(h, `pod.${Z}`).rcode, 'NOERROR');
  });
  t.test('pods verified: only addresses of pods in that namespace', async (t) => {
    const h = setup({ ...base, pods: 'verified' });
    t.same(ask(h, `10-244-0-7.testns.pod.${Z}`).answer, [`10-244-0-7.testns.pod.${Z}. 5 IN A 10.244.0.7`]);
    t.equal(ask(h, `10-244-0-8.testns.pod.${Z}`).rcode, 'NXDOMAIN');
    t.equal(ask(h, `10-244-0-7.default.pod.${Z}`).rcode, 'NXDOMAIN');
  });
  t.test('ignoreEmptyService: a ClusterIP service without ready endpoints is NXDOMAIN', async (t) => {
    const h = setup({ ...base, ignoreEmptyService: true });
    t.equal(ask(h, `noports.testns.svc.${Z}`).rcode, 'NXDOMAIN');
    t.equal(ask(h, `svc1.testns.svc.${Z}`).rcode, 'NOERROR');
    t.equal(ask(h, `ext.testns.svc.${Z}`, 'CNAME').answer.length, 1, 'ExternalName unaffected (coredns#2688)');
  });
  t.test('endpointPodNames: the pod name replaces the dashed address', async (t) => {
    const store = fixtureStore();
    store.upsert({
      kind: 'EndpointSlice',
      obj: {
        namespace: 'testns', name: 'named-a', serviceName: 'hdls1', addressType: 'IPv4', legacy: false, labels: {},
        endpoints: [{ addresses: ['172.0.0.20'], podName: 'my-pod-xyz', conditions: { ready: true, serving: true, terminating: false } }],
        ports: [],
      },
    });
    store.flush();
    const zone = new ClusterZone(Z, store, { ...base, endpointPodNames: true });
    const r = new Resolver();
    r.setZones([zone]);
    const h = new DnsHandler({ resolver: r });
    t.same(ask(h, `my-pod-xyz.hdls1.testns.svc.${Z}`).answer, [`my-pod-xyz.hdls1.testns.svc.${Z}. 5 IN A 172.0.0.20`]);
    t.equal(ask(h, `web-0.hdls1.testns.svc.${Z}`).rcode, 'NOERROR', 'explicit hostname still wins');
  });
  t.test('noEndpoints: headless names vanish, ClusterIPs stay', async (t) => {
    const h = setup({ ...base, noEndpoints: true });
    t.equal(ask(h, `hdls1.testns.svc.${Z}`).rcode, 'NXDOMAIN');
    t.equal(ask(h, `ep1a.svc1.testns.svc.${Z}`).rcode, 'NXDOMAIN');
    t.equal(ask(h, `svc1.testns.svc.${Z}`).rcode, 'NOERROR');
    t.equal(ask(h, '1.0.0.172.in-addr.arpa', 'PTR').rcode, 'REFUSED', 'no endpoint PTRs');
  });
  t.test('namespaces: other namespaces do not exist', async (t) => {
    const h = setup({ ...base, namespaces: new Set(['default']) });
    t.equal(ask(h, `svc1.testns.svc.${Z}`).rcode, 'NXDOMAIN');
    t.equal(ask(h, `testns.svc.${Z}`).rcode, 'NXDOMAIN');
    t.equal(ask(h, `kubernetes.default.svc.${Z}`).rcode, 'NOERROR');
    t.equal(ask(h, '1.0.0.10.in-addr.arpa', 'PTR').rcode, 'REFUSED', 'no PTR for hidden services');
  });
  t.test('ttl: records, SOA TTL min(ttl,300) and SOA minimum', async (t) => {
    const h = setup({ ...base, ttl: 600 });
    t.same(ask(h, `svc1.testns.svc.${Z}`).answer, [`svc1.testns.svc.${Z}. 600 IN A 10.0.0.1`]);
    const soa = ask(h, Z, 'SOA').answer[0]!;
    t.match(soa, new RegExp(`^${Z}\\. 300 IN SOA .* 600$`));
  });
  t.test('reverseZones: unknown addresses inside are NXDOMAIN with the reverse SOA', async (t) => {
    const h = setup(base, ['172.0.0.0/24', '10.96.0.0/12']);
    const d = ask(h, '9.0.0.172.in-addr.arpa', 'PTR');
    t.equal(d.rcode, 'NXDOMAIN');
    t.match(d.ns[0], /^0\.0\.172\.in-addr\.arpa\. 5 IN SOA ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\./);
    t.equal(ask(h, '1.0.0.172.in-addr.arpa', 'PTR').answer.length, 1, 'known addresses still answered');
    t.equal(ask(h, '0.0.172.in-addr.arpa', 'PTR').rcode, 'NOERROR', 'zone apex: NODATA');
    t.equal(ask(h, '0.0.172.in-addr.arpa', 'SOA').answer.length, 1, 'apex SOA');
    t.equal(ask(h, '99.99.96.10.in-addr.arpa', 'PTR').rcode, 'NXDOMAIN', 'the /12 covers 96-111');
    t.equal(ask(h, '1.1.112.10.in-addr.arpa', 'PTR').rcode, 'REFUSED', 'outside the /12');
  });
});

t.test('live updates change answers without stale cache', async (t) => {
  const store = fixtureStore();
  const zone = new ClusterZone(Z, store, base);
  const r = new Resolver();
  r.setZones([zone]);
  const h = new DnsHandler({ resolver: r });
  zone.onUpdate = () => h.invalidate();
  const ask = (q: string) => decode(h.handle(makeQuery(q, 'A'), 'udp') as Buffer);
  t.equal(ask(`new.testns.svc.${Z}`).rcode, 'NXDOMAIN');
  store.upsert({ kind: 'Service', obj: { namespace: 'testns', name: 'new', type: 'ClusterIP', clusterIPs: ['10.0.0.77'], headless: false, ports: [], publishNotReadyAddresses: false, labels: {} } });
  store.flush();
  t.same(ask(`new.testns.svc.${Z}`).answer, [`new.testns.svc.${Z}. 5 IN A 10.0.0.77`]);
  // ExternalName switched to ClusterIP (spec E4): no stale CNAME.
  store.upsert({ kind: 'Service', obj: { namespace: 'testns', name: 'ext', type: 'ClusterIP', clusterIPs: ['10.0.0.78'], headless: false, ports: [], publishNotReadyAddresses: false, labels: {} } });
  store.flush();
  t.same(ask(`ext.testns.svc.${Z}`).answer, [`ext.testns.svc.${Z}. 5 IN A 10.0.0.78`]);
  store.remove('Service', 'testns/new');
  store.flush();
  t.equal(ask(`new.testns.svc.${Z}`).rcode, 'NXDOMAIN');
  // The last ready endpoint of a headless service goes: NXDOMAIN (H9).
  store.remove('EndpointSlice', 'testns/hdls1-a');
  store.remove('EndpointSlice', 'testns/hdls1-v6');
  store.flush();
  t.equal(ask(`hdls1.testns.svc.${Z}`).rcode, 'NXDOMAIN');
  t.equal(ask(`testns.svc.${Z}`).rcode, 'NOERROR', 'namespace still exists');
});
