/**
 * Service names that start with a digit (KEP-5311, GA in Kubernetes 1.37: a Service name
 * is a DNS-1123 label) from the Kubernetes API source, real client-node against the fake
 * API server, answered over UDP: listed at start and added by a watch event, A, SRV and
 * the PTR of the ClusterIP and of an endpoint. A name no apiserver would store is
 * skipped and reported, and the rest of the list serves.
 */
import t from 'tap';
import { fakeServer, ns, serveDns, slice, startSource, svc, until, Z } from './helpers/setup.js';

t.test('API source: 1web.web.svc answers A, SRV and PTR, listed and watched', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('web'));
  s.create('Service', svc('web', '1web', '10.96.0.77'));
  s.create('EndpointSlice', slice('web', '1web-abcde', '1web', ['10.244.0.5']));
  const { source, log } = await startSource(t, s);
  t.ok(source.store.services.has('web/1web'), 'listed');
  t.equal(log.count('warn', /skipped/), 0, 'nothing skipped');
  const dns = await serveDns(t, source);
  t.equal(await dns.short(`1web.web.svc.${Z}`), 'NOERROR 10.96.0.77');
  const srv = await dns.q(`_http._tcp.1web.web.svc.${Z}`, 'SRV');
  t.same(srv.answer, [`_http._tcp.1web.web.svc.${Z}. 5 IN SRV 0 100 80 1web.web.svc.${Z}.`]);
  t.same(srv.extra, [`1web.web.svc.${Z}. 5 IN A 10.96.0.77`]);
  t.equal(await dns.short('77.0.96.10.in-addr.arpa', 'PTR'), `NOERROR 1web.web.svc.${Z}.`, 'ClusterIP PTR');
  t.equal(await dns.short('5.0.244.10.in-addr.arpa', 'PTR'), `NOERROR 10-244-0-5.1web.web.svc.${Z}.`, 'endpoint PTR');

  // Created later: through the watch.
  s.create('Service', svc('web', '42', '10.96.0.42'));
  t.equal(await dns.until(`42.web.svc.${Z}`, 'NOERROR 10.96.0.42'), 'NOERROR 10.96.0.42', 'an all-digit name from a watch event');
  t.equal(await dns.short('42.0.96.10.in-addr.arpa', 'PTR'), `NOERROR 42.web.svc.${Z}.`);
});

t.test('API source: a Service name that is not a DNS-1123 label is skipped with the reason', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('web'));
  s.create('Service', svc('web', '-web', '10.96.0.78'));
  s.create('Service', svc('web', '3ok', '10.96.0.79'));
  const { source, log } = await startSource(t, s);
  await until(() => log.count('warn', /skipped/) >= 1, 'the bad Service reported');
  t.same([...source.store.services.keys()], ['web/3ok'], 'the valid one serves');
  const line = log.lines.find((l) => /skipped/.test(l.msg));
  t.match(line?.fields, { namespace: 'web', name: '-web', reason: /^metadata\.name: must be a DNS-1123 label .* got "-web"$/ });
  const dns = await serveDns(t, source);
  t.equal(await dns.short(`3ok.web.svc.${Z}`), 'NOERROR 10.96.0.79');
});
