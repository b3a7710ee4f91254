/**
 * The `proxy:` configuration keys (kube-proxy's names and defaults) and the
 * CAP_NET_ADMIN check that turns a missing permission into one clear line.
 */
import t from 'tap';
import { ConfigError, DEFAULT_CONFIG, parseConfig, parseDuration } from '../../src/config.js';
import { hasNetAdmin, requireNetAdmin } from '../../src/proxy/caps.js';
import { resolveNodeName, rulesOptions } from '../../src/proxy/service.js';

function caught(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

t.test('defaults are kube-proxy\'s', async (t) => {
  t.same(DEFAULT_CONFIG.proxy, {
    syncPeriod: 30_000,
    minSyncPeriod: 1_000,
    udpIdleTimeout: 250,
    nodePortAddresses: [],
    clusterCIDR: [],
    masqueradeAll: false,
    maxConnections: 10_000,
    nodeName: '',
  });
});

t.test('keys parse; bad values name the key, the value and what is allowed', async (t) => {
  const c = parseConfig({ proxy: { syncPeriod: '1m30s', minSyncPeriod: '100ms', udpIdleTimeout: 1, clusterCIDR: '10.244.0.0/16,fd00:10:244::/56', nodePortAddresses: ['192.168.1.0/24'], masqueradeAll: true, maxConnections: 50, nodeName: 'node-a' } });
  t.same(c.proxy, { syncPeriod: 90_000, minSyncPeriod: 100, udpIdleTimeout: 1000, clusterCIDR: ['10.244.0.0/16', 'fd00:10:244::/56'], nodePortAddresses: ['192.168.1.0/24'], masqueradeAll: true, maxConnections: 50, nodeName: 'node-a' });
  const bad: [unknown, RegExp][] = [
    [{ syncPeriod: '30 s' }, /proxy\.syncPeriod: must be a duration .* got "30 s"/],
    [{ syncPeriod: '100ms' }, /proxy\.syncPeriod: must be a duration from 1000ms/],
    [{ minSyncPeriod: '1m', syncPeriod: '30s' }, /proxy\.minSyncPeriod: must not exceed syncPeriod/],
    [{ clusterCIDR: '10.244.0.1/16' }, /proxy\.clusterCIDR\[0\]: "10\.244\.0\.1\/16" has host bits set/],
    [{ clusterCIDR: ['10.244.0.0/16', '10.245.0.0/16'] }, /proxy\.clusterCIDR: at most one CIDR per IP family/],
    [{ nodePortAddresses: ['eth0'] }, /proxy\.nodePortAddresses\[0\]: must be a CIDR/],
    [{ masqueradeAll: 'yes' }, /proxy\.masqueradeAll: must be true or false/],
    [{ maxConnections: 0 }, /proxy\.maxConnections: must be a whole number from 1/],
    [{ nodeName: 'Node_A' }, /proxy\.nodeName: must be a node name/],
    [{ mode: 'iptables' }, /proxy: unknown key "mode"; allowed keys: syncPeriod, minSyncPeriod/],
    ['fast', /proxy: must be a mapping/],
  ];
  for (const [v, re] of bad) {
    const err = caught(() => parseConfig({ proxy: v }));
    t.ok(err instanceof ConfigError, `${JSON.stringify(v)}: a ConfigError`);
    t.match(err?.message, re);
  }
  t.equal(parseDuration('2h', 'x', 0, 1e9), 7_200_000);
  t.equal(parseDuration(0.25, 'x', 0, 1e9), 250, 'a number is seconds');
});

t.test('per-family rules options; node name precedence', async (t) => {
  const c = parseConfig({ serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'], proxy: { clusterCIDR: ['10.244.0.0/16', 'fd00:10:244::/56'], nodePortAddresses: ['192.168.1.0/24'] } });
  t.same(rulesOptions(c, 4, true), { family: 4, clusterCIDRs: ['10.244.0.0/16'], masqueradeAll: false, nodePortAddresses: ['192.168.1.0/24'], serviceCIDRs: ['10.96.0.0/12'] });
  t.same(rulesOptions(c, 6, false), { family: 6, clusterCIDRs: ['fd00:10:244::/56'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: [] }, 'service CIDRs only when authoritative');
  const named = parseConfig({ proxy: { nodeName: 'from-config' } });
  t.equal(resolveNodeName('from-flag', named, { NODE_NAME: 'from-env' }), 'from-flag');
  t.equal(resolveNodeName(undefined, named, { NODE_NAME: 'from-env' }), 'from-config');
  t.equal(resolveNodeName(undefined, DEFAULT_CONFIG, { NODE_NAME: 'from-env' }), 'from-env');
  t.ok(resolveNodeName(undefined, DEFAULT_CONFIG, {}).length > 0, 'else the hostname');
});

t.test('CAP_NET_ADMIN from /proc/self/status', async (t) => {
  t.equal(hasNetAdmin('Name:\tnode\nCapEff:\t000001ffffffffff\n'), true);
  t.equal(hasNetAdmin('CapEff:\t0000000000000000\n'), false);
  t.equal(hasNetAdmin('CapEff:\t0000000000001000\n'), true, 'bit 12 alone');
  t.equal(hasNetAdmin('nothing here'), undefined);
  const err = caught(() => requireNetAdmin('the iptables proxy', 'CapEff:\t0000000000000000\n'));
  t.equal((err as { code?: string } | undefined)?.code, 'EPROXYPERM');
  t.match(err?.message, /^the iptables proxy needs CAP_NET_ADMIN .*run it as root.*NET_ADMIN/);
  t.doesNotThrow(() => requireNetAdmin('x', 'CapEff:\t0000000000001000\n'));
});
