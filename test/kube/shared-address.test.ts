/**
 * One address behind two services from the Kubernetes API source (real client-node, fake
 * API server), over UDP: a PTR per service, in the initial list and as slices come and go
 * through the watch.
 */
import t from 'tap';
import { fakeServer, ns, serveDns, slice, startSource, svc, Z } from './helpers/setup.js';

t.test('API source: an address in two services\' slices has a PTR for each, following watch events', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('two'));
  s.create('Service', svc('two', 'alpha', '10.96.0.50'));
  s.create('Service', svc('two', 'beta', '10.96.0.51'));
  s.create('Service', svc('two', 'gamma', 'None'));
  s.create('EndpointSlice', slice('two', 'alpha-1', 'alpha', ['10.0.0.99']));
  s.create('EndpointSlice', slice('two', 'beta-1', 'beta', ['10.0.0.99']));
  const { source } = await startSource(t, s);
  const dns = await serveDns(t, source);
  const Q = '99.0.0.10.in-addr.arpa';
  t.equal(await dns.short(Q, 'PTR'), `NOERROR 10-0-0-99.alpha.two.svc.${Z}. 10-0-0-99.beta.two.svc.${Z}.`, 'listed: two PTRs');

  s.create('EndpointSlice', slice('two', 'gamma-1', 'gamma', ['10.0.0.99'], {}, ['db-0']));
  const three = `NOERROR 10-0-0-99.alpha.two.svc.${Z}. 10-0-0-99.beta.two.svc.${Z}. db-0.gamma.two.svc.${Z}.`;
  t.equal(await dns.until(Q, three, 'PTR'), three, 'a third service\'s slice (with a hostname) adds its PTR');

  s.delete('EndpointSlice', 'two', 'alpha-1');
  const two = `NOERROR 10-0-0-99.beta.two.svc.${Z}. db-0.gamma.two.svc.${Z}.`;
  t.equal(await dns.until(Q, two, 'PTR'), two, 'a slice deleted: only its PTR goes');
});
