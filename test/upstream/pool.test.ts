/**
 * Server selection (CoreDNS `forward` policies and health) and stub-domain routing,
 * without sockets.
 */
import t from 'tap';
import { normalizeDomain, Pool, routeName } from '../../src/upstream/pool.js';

const servers = [1, 2, 3].map((i) => ({ host: `10.0.0.${i}`, port: 53 }));
const hosts = (p: Pool, policy: 'random' | 'round_robin' | 'sequential', maxFails = 2) => p.candidates(policy, maxFails).map((u) => u.addr.host.slice(-1)).join('');

t.test('policies', async (t) => {
  const p = new Pool('', servers);
  t.equal(hosts(p, 'sequential'), '123');
  t.same([hosts(p, 'round_robin'), hosts(p, 'round_robin'), hosts(p, 'round_robin'), hosts(p, 'round_robin')], ['123', '231', '312', '123']);
  const firsts = new Set(Array.from({ length: 200 }, () => hosts(p, 'random')[0]));
  t.same([...firsts].sort(), ['1', '2', '3'], 'random: every server comes first sometimes');
  t.ok(Array.from({ length: 50 }, () => hosts(p, 'random')).every((s) => [...s].sort().join('') === '123'), 'random: a permutation');
});

t.test('down and looping servers', async (t) => {
  const p = new Pool('', servers);
  p.upstreams[0]!.fails = 2;
  t.equal(hosts(p, 'sequential'), '23', 'down (2 failed checks) is skipped');
  t.equal(p.upstreams[0]!.down(2), true);
  t.equal(p.upstreams[0]!.down(0), false, 'maxFails 0: never down');
  p.upstreams[1]!.fails = 5;
  p.upstreams[2]!.fails = 2;
  t.equal(hosts(p, 'sequential'), '123', 'all down: all tried anyway');
  p.upstreams[1]!.loop = true;
  t.equal(hosts(p, 'sequential'), '13', 'a looping server never');
  p.upstreams[0]!.loop = true;
  p.upstreams[2]!.loop = true;
  t.same(p.candidates('random', 2), [], 'all looping: nothing to try');
  t.equal(p.upstreams[0]!.stats(2).healthy, false);
  t.equal(new Pool('acme.internal', servers).upstreams[0]!.domain, 'acme.internal');
  t.equal(new Pool('', servers).upstreams[0]!.address, '10.0.0.1:53');
  t.equal(new Pool('', [{ host: '::1', port: 53 }]).upstreams[0]!.address, '[::1]:53');
});

t.test('routeName: longest suffix, on label boundaries', async (t) => {
  const stubs = [{ domain: 'b.acme.internal' }, { domain: 'acme.internal' }, { domain: 'corp' }];
  const root = { domain: '' };
  t.equal(routeName('x.b.acme.internal', stubs, root), stubs[0]);
  t.equal(routeName('b.acme.internal', stubs, root), stubs[0]);
  t.equal(routeName('c.acme.internal', stubs, root), stubs[1]);
  t.equal(routeName('acme.internal', stubs, root), stubs[1]);
  t.equal(routeName('xacme.internal', stubs, root), root);
  t.equal(routeName('corp', stubs, root), stubs[2]);
  t.equal(routeName('example.org', stubs, undefined), undefined);
  t.equal(normalizeDomain(' Acme.Internal.. '), 'acme.internal');
});
