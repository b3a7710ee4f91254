/**
 * Autopath (src/server/autopath.ts, CoreDNS `autopath @kubernetes`) through the real
 * pipeline and sockets: clients bound to 127.0.0.x addresses play pods (the store has
 * pods at those addresses) or strangers, Knot is the upstream.
 *
 *   127.0.0.2  pod testns/client        127.0.0.3  pod default/client
 *   127.0.0.4  two kube-system pods (hostNetwork-like: one address, several pods)
 *   127.0.0.1  no pod
 */
import t, { type Test } from 'tap';
import type { Pod } from '../src/cluster/model.js';
import { Autopath, parseResolvSearch } from '../src/server/autopath.js';
import { DnsHandler, type ChaseStage } from '../src/server/handler.js';
import { listen } from '../src/server/listen.js';
import { Forwarder } from '../src/upstream/index.js';
import { Resolver } from '../src/zone/resolver.js';
import { ClusterZone } from '../src/zone/zone.js';
import type { ZoneOptions } from '../src/zone/build.js';
import { fixtureStore, svc } from './helpers/cluster.js';
import { decode, makeQuery, tcpExchange, udpExchange, type Decoded } from './helpers/dns.js';
import { sharedKnot } from './helpers/knot.js';

const Z = 'cluster.local';
const TESTNS_POD = '127.0.0.2';
const DEFAULT_POD = '127.0.0.3';
const SHARED = '127.0.0.4';
const STRANGER = '127.0.0.1';
const opts: ZoneOptions = { ttl: 5, pods: 'verified', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined };

const pod = (ns: string, name: string, ip: string, phase = 'Running'): Pod => ({ namespace: ns, name, ips: [ip], phase, terminating: false, ready: true, labels: {}, containerPorts: [] });

interface Setup {
  readonly ap: Autopath;
  /** Upstream lookups made (autopath's upstream steps and ExternalName chases). */
  readonly lookups: string[];
  ask(from: string, name: string, type?: string, edns?: number | false): Promise<Decoded>;
  askTcp(from: string, name: string, type?: string): Promise<Decoded>;
}

async function setup(t: Test, upstream: { host: string; port: number } | undefined, search: string[] = []): Promise<Setup> {
  const store = fixtureStore();
  store.batch(() => {
    store.upsert({ kind: 'Pod', obj: pod('testns', 'client', TESTNS_POD) });
    store.upsert({ kind: 'Pod', obj: pod('default', 'client', DEFAULT_POD) });
    store.upsert({ kind: 'Pod', obj: pod('kube-system', 'proxy-a', SHARED) });
    store.upsert({ kind: 'Pod', obj: pod('kube-system', 'cni-a', SHARED) });
    store.upsert({ kind: 'Service', obj: svc('testns', 'kn', { type: 'ExternalName', externalName: 'alias.example.test' }) });
  });
  store.flush();
  const zone = new ClusterZone(Z, store, opts);
  const resolver = new Resolver();
  resolver.setZones([zone]);
  const ap = new Autopath(resolver, search);
  const lookups: string[] = [];
  let fwd: Forwarder | undefined;
  let chase: ChaseStage | undefined;
  if (upstream !== undefined) {
    const f = new Forwarder({ upstreams: [upstream], loopDetection: false });
    fwd = f;
    chase = (n, ty) => {
      lookups.push(n);
      return f.lookup(n, ty);
    };
  }
  const h = new DnsHandler({ resolver, next: fwd === undefined ? undefined : (q, r, tr) => fwd!.forward(q, r, tr), chase, autopath: ap });
  const l = await listen(h, { host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await l.close();
    await fwd?.close();
  });
  return {
    ap,
    lookups,
    ask: async (from, name, type = 'A', edns = 1232) => decode(await udpExchange(l.udpPort, makeQuery(name, type, { edns }), '127.0.0.1', 4000, from)),
    askTcp: async (from, name, type = 'A') => decode((await tcpExchange(l.tcpPort, [makeQuery(name, type)], '127.0.0.1', 4000, from))[0]!),
  };
}

const needKnot = sharedKnot(t);

t.test('a pod in the namespace of the first expansion gets the walk in one answer', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const s = await setup(t, knot);

  const cluster = await s.ask(TESTNS_POD, `kubernetes.default.testns.svc.${Z}`);
  t.equal(cluster.rcode, 'NOERROR', 'found at <name>.svc.<zone>');
  t.same(cluster.answer, [`kubernetes.default.testns.svc.${Z}. 5 IN CNAME kubernetes.default.svc.${Z}.`, `kubernetes.default.svc.${Z}. 5 IN A 10.96.0.1`]);
  t.ok(cluster.aa, 'our own records: authoritative');
  t.same(s.lookups, [], 'found in our zones: nothing asked upstream');

  const apex = await s.ask(TESTNS_POD, `ns.dns.testns.svc.${Z}`);
  t.same(apex.answer, [`ns.dns.testns.svc.${Z}. 5 IN CNAME ns.dns.${Z}.`, `ns.dns.${Z}. 5 IN A 10.96.0.10`], 'found at <name>.<zone>');
  const txt = await s.ask(TESTNS_POD, `dns-version.testns.svc.${Z}`, 'TXT');
  t.same(txt.answer, [`dns-version.testns.svc.${Z}. 28800 IN CNAME dns-version.${Z}.`, `dns-version.${Z}. 28800 IN TXT "1.1.0"`], 'every qtype, as CoreDNS');

  const ext = await s.ask(TESTNS_POD, `www.example.test.testns.svc.${Z}`);
  t.equal(ext.rcode, 'NOERROR', 'found upstream as the name itself');
  t.same(ext.answer, [`www.example.test.testns.svc.${Z}. 30 IN CNAME www.example.test.`, 'www.example.test. 30 IN A 192.0.2.1']);
  t.notOk(ext.aa, 'upstream data: not authoritative');
  t.ok(ext.ra);
  t.same(s.lookups, ['www.example.test']);
  const six = await s.ask(TESTNS_POD, `www.example.test.testns.svc.${Z}`, 'AAAA');
  t.same(six.answer, [`www.example.test.testns.svc.${Z}. 30 IN CNAME www.example.test.`, 'www.example.test. 30 IN AAAA 2001:db8::1']);
  const chain = await s.ask(TESTNS_POD, `chain.example.test.testns.svc.${Z}`);
  t.same(chain.answer, [
    `chain.example.test.testns.svc.${Z}. 30 IN CNAME chain.example.test.`,
    'chain.example.test. 30 IN CNAME alias.example.test.',
    'alias.example.test. 30 IN CNAME www.example.test.',
    'www.example.test. 30 IN A 192.0.2.1',
  ], 'an upstream CNAME chain follows ours');

  const srv = await s.ask(DEFAULT_POD, `_http._tcp.svc1.testns.default.svc.${Z}`, 'SRV');
  t.same(srv.answer, [`_http._tcp.svc1.testns.default.svc.${Z}. 5 IN CNAME _http._tcp.svc1.testns.svc.${Z}.`, `_http._tcp.svc1.testns.svc.${Z}. 5 IN SRV 0 100 80 svc1.testns.svc.${Z}.`]);
  t.same(srv.extra, [`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`], 'the found answer keeps its additional section');

  const kn = await s.ask(DEFAULT_POD, `kn.testns.default.svc.${Z}`);
  t.same(kn.answer, [
    `kn.testns.default.svc.${Z}. 5 IN CNAME kn.testns.svc.${Z}.`,
    `kn.testns.svc.${Z}. 5 IN CNAME alias.example.test.`,
    'alias.example.test. 30 IN CNAME www.example.test.',
    'www.example.test. 30 IN A 192.0.2.1',
  ], 'an ExternalName found on the way is chased upstream, as a direct query is');

  const mixed = await s.ask(TESTNS_POD, `WWW.Example.Test.TestNS.svc.${Z}`);
  t.equal(mixed.question, `WWW.Example.Test.TestNS.svc.${Z} IN A`, 'the question keeps its letter case');
  t.equal(mixed.answer.length, 2);
  t.ok(s.ap.answered >= 8, `answered counter (${s.ap.answered})`);
});

t.test('the plain answer stands when autopath does not apply', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const s = await setup(t, knot);
  const name = `kubernetes.default.testns.svc.${Z}`;

  const stranger = await s.ask(STRANGER, name);
  t.equal(stranger.rcode, 'NXDOMAIN', 'a client that is no pod: the plain NXDOMAIN');
  t.same(stranger.answer, []);
  t.match(stranger.ns[0], /^cluster\.local\. 5 IN SOA /);
  t.equal((await s.ask(DEFAULT_POD, name)).rcode, 'NXDOMAIN', 'a pod of another namespace: plain (its list starts elsewhere)');
  t.equal((await s.ask(SHARED, `kubernetes.default.kube-system.svc.${Z}`)).rcode, 'NXDOMAIN', 'an address of several pods (hostNetwork): plain');

  const first = await s.ask(TESTNS_POD, `svc1.testns.svc.${Z}`);
  t.same(first.answer, [`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`], 'the first name exists: its plain answer, no CNAME');

  const nothing = await s.ask(TESTNS_POD, `nope.example.test.testns.svc.${Z}`);
  t.equal(nothing.rcode, 'NXDOMAIN', 'nothing anywhere: the plain NXDOMAIN of the asked name');
  t.same(nothing.answer, []);
  t.ok(nothing.aa);
  t.match(nothing.ns[0], /^cluster\.local\. 5 IN SOA /, 'with our SOA, as the plain answer');
  t.same(s.lookups, ['nope.example.test'], 'the upstream was asked for the last name');

  const failed = await s.ask(TESTNS_POD, `elsewhere.invalid.testns.svc.${Z}`);
  t.equal(failed.rcode, 'NXDOMAIN', 'upstream REFUSED (not its zone): the plain NXDOMAIN, the client asks on itself');

  const mx = await s.ask(TESTNS_POD, `www.example.test.testns.svc.${Z}`, 'MX');
  t.equal(mx.rcode, 'NXDOMAIN', 'MX: no upstream step (not a record type the lookup returns): plain');

  const fqdn = await s.ask(TESTNS_POD, `testns.svc.${Z}`);
  t.equal(fqdn.rcode, 'NOERROR', 'the first search domain itself: plain NODATA');
  t.same(fqdn.answer, []);
  t.equal(s.ap.answered, 0, 'nothing counted');
});

t.test('NODATA stops the walk, as in CoreDNS, without a CNAME', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const s = await setup(t, knot);
  // `testns.svc.<zone>` exists (the namespace) with no A: the walk stops there.
  const ns = await s.ask(TESTNS_POD, `testns.testns.svc.${Z}`);
  t.equal(ns.rcode, 'NOERROR');
  t.same(ns.answer, [], 'no CNAME: a client that goes on after NODATA (glibc) walks on by itself');
  t.match(ns.ns[0], /^cluster\.local\. 5 IN SOA /);
  t.same(s.lookups, [], 'the upstream is not asked for `testns`');
  const up = await s.ask(TESTNS_POD, `txtonly.example.test.testns.svc.${Z}`);
  t.equal(up.rcode, 'NOERROR', 'NODATA upstream');
  t.same(up.answer, []);
  const kube = await s.ask(TESTNS_POD, `kubernetes.default.testns.svc.${Z}`, 'AAAA');
  t.equal(kube.rcode, 'NOERROR', 'a service without IPv6: NODATA from <name>.svc.<zone>');
  t.same(kube.answer, []);
});

t.test('the answer cache never hands a client-dependent answer to another client', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const s = await setup(t, knot);
  const name = `kubernetes.default.testns.svc.${Z}`;
  t.equal((await s.ask(STRANGER, name)).rcode, 'NXDOMAIN', 'stranger first: NXDOMAIN, now cached');
  t.equal((await s.ask(STRANGER, name)).rcode, 'NXDOMAIN');
  const pod = await s.ask(TESTNS_POD, name);
  t.equal(pod.answer.length, 2, 'then the pod: the walk, not the cached NXDOMAIN');
  t.equal((await s.ask(STRANGER, name)).rcode, 'NXDOMAIN', 'then the stranger again: still plain');
  t.equal((await s.ask(TESTNS_POD, name)).answer.length, 2, 'and the pod again');
  t.equal((await s.ask(DEFAULT_POD, name)).rcode, 'NXDOMAIN', 'another namespace: plain');

  const ext = `www.example.test.testns.svc.${Z}`;
  t.equal((await s.ask(TESTNS_POD, ext)).answer.length, 2, 'pod first (upstream walk)');
  t.equal((await s.ask(STRANGER, ext)).rcode, 'NXDOMAIN', 'then a stranger: plain');
  t.equal((await s.askTcp(TESTNS_POD, ext)).answer.length, 2, 'over TCP too: the client address is known there');
  t.equal((await s.askTcp(STRANGER, ext)).rcode, 'NXDOMAIN');
  t.equal((await s.ask(STRANGER, ext, 'A', false)).rcode, 'NXDOMAIN', 'a 512-byte stranger (another cache slot)');
  t.equal((await s.ask(TESTNS_POD, ext, 'A', false)).answer.length, 2, 'a 512-byte pod');
});

t.test('size limits: the walked answer is cut as any other, with TC', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  const s = await setup(t, knot);
  const big = await s.ask(TESTNS_POD, `big.example.test.testns.svc.${Z}`, 'A', false);
  t.ok(big.tc, '101 records in 512 bytes: TC');
  t.ok(big.size <= 512, `size ${big.size}`);
  t.equal(big.answer[0], `big.example.test.testns.svc.${Z}. 30 IN CNAME big.example.test.`, 'the CNAME first, whole records after');
  const tcp = await s.askTcp(TESTNS_POD, `big.example.test.testns.svc.${Z}`);
  t.notOk(tcp.tc);
  t.equal(tcp.answer.length, 101, 'over TCP: the CNAME and all 100 records');
});

t.test('the node search domains of /etc/resolv.conf come before the name itself', async (t) => {
  const knot = await needKnot(t);
  if (knot === undefined) return;
  // svc.cluster.local: a domain of our zone in our own resolv.conf (a pod's list): skipped.
  const s = await setup(t, knot, parseResolvSearch(`# node\nsearch svc.${Z} Example.Test.\nnameserver 10.0.0.1\n`));
  const r = await s.ask(TESTNS_POD, `www.testns.svc.${Z}`);
  t.same(r.answer, [`www.testns.svc.${Z}. 30 IN CNAME www.example.test.`, 'www.example.test. 30 IN A 192.0.2.1'], '<name>.<search domain> found upstream');
  t.same(s.lookups, ['www.example.test'], 'found before asking `www` itself');
});

t.test('without an upstream the walk stays in our zones', async (t) => {
  const s = await setup(t, undefined);
  t.equal((await s.ask(TESTNS_POD, `kubernetes.default.testns.svc.${Z}`)).answer.length, 2);
  t.equal((await s.ask(TESTNS_POD, `www.example.test.testns.svc.${Z}`)).rcode, 'NXDOMAIN', 'the client asks the upstream step itself (REFUSED there)');
});

t.test('resolv.conf search parsing', async (t) => {
  t.same(parseResolvSearch('search a.example b.example.\nnameserver 1.1.1.1\n'), ['a.example', 'b.example']);
  t.same(parseResolvSearch('search a\ndomain corp.example\n'), ['corp.example'], 'the last of search/domain wins');
  t.same(parseResolvSearch('domain x\nsearch  c d ; comment\n'), ['c', 'd']);
  t.same(parseResolvSearch('nameserver 1.1.1.1\n'), []);
});
