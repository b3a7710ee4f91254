/**
 * Default upstreams from resolv.conf, never ourselves; `HOST[:PORT]` parsing for
 * `--upstream`.
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSelf, parseHostPort, parseResolvConf, parseStubDomains, resolvConfUpstreams } from '../../src/upstream/index.js';
import { memoryLog } from './_server.js';

const CONF = `# generated
search default.svc.cluster.local svc.cluster.local
nameserver 10.96.0.10
nameserver 127.0.0.53 ; systemd-resolved
nameserver   ::1
nameserver fe80::1%eth0
nameserver not-an-ip
options ndots:5
`;

t.test('parseResolvConf', async (t) => {
  t.same(parseResolvConf(CONF), [
    { host: '10.96.0.10', port: 53 },
    { host: '127.0.0.53', port: 53 },
    { host: '::1', port: 53 },
    { host: 'fe80::1%eth0', port: 53 },
  ]);
  t.same(parseResolvConf(''), []);
});

t.test('resolvConfUpstreams drops ourselves and logs its choice', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clusterdns-resolv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'resolv.conf');
  writeFileSync(path, CONF);
  const hosts = (self: { host: string; port: number }[]) => resolvConfUpstreams(path, self).map((u) => u.host);

  t.same(hosts([]), ['10.96.0.10', '127.0.0.53', '::1', 'fe80::1%eth0']);
  t.same(hosts([{ host: '10.96.0.10', port: 53 }]), ['127.0.0.53', '::1', 'fe80::1%eth0'], 'our exact address');
  t.same(hosts([{ host: '10.96.0.10', port: 5353 }]), ['10.96.0.10', '127.0.0.53', '::1', 'fe80::1%eth0'], 'another port is not us');
  t.same(hosts([{ host: '0.0.0.0', port: 53 }]), ['10.96.0.10', '::1', 'fe80::1%eth0'], '0.0.0.0:53 receives 127.0.0.53, not ::1');
  t.same(hosts([{ host: '::', port: 53 }]), ['10.96.0.10', 'fe80::1%eth0'], ':: receives both loopbacks');
  t.same(hosts([{ host: '127.0.0.1', port: 53 }]), ['10.96.0.10', '127.0.0.53', '::1', 'fe80::1%eth0'], '127.0.0.1:53 is not 127.0.0.53:53 (another socket)');
  t.same(hosts([{ host: '::ffff:10.96.0.10', port: 53 }]), ['127.0.0.53', '::1', 'fe80::1%eth0'], 'IPv4-mapped spelling');

  const { log, logs } = memoryLog();
  resolvConfUpstreams(path, [{ host: '0.0.0.0', port: 53 }], log);
  t.match(logs, [
    { level: 'warn', msg: /names this server/, fields: { dropped: ['127.0.0.53:53'] } },
    { level: 'info', msg: /upstreams from resolv.conf/, fields: { upstreams: ['10.96.0.10:53', '[::1]:53', '[fe80::1%eth0]:53'] } },
  ]);

  const missing = memoryLog();
  t.same(resolvConfUpstreams(join(dir, 'nope'), [], missing.log), []);
  t.match(missing.logs, [{ level: 'warn', msg: /cannot read/ }]);
  writeFileSync(path, 'nameserver 127.0.0.1\n');
  const none = memoryLog();
  t.same(resolvConfUpstreams(path, [{ host: '0.0.0.0', port: 53 }], none.log), []);
  t.match(none.logs, [{ level: 'warn' }, { level: 'warn', msg: /no upstream/ }]);
});

t.test('isSelf on a wildcard listener covers this host\'s addresses', async (t) => {
  const local = Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal);
  if (local === undefined) {
    t.pass('no non-loopback IPv4 address here');
    return;
  }
  t.ok(isSelf({ host: local.address, port: 53 }, [{ host: '0.0.0.0', port: 53 }]));
  t.notOk(isSelf({ host: local.address, port: 53 }, [{ host: '127.0.0.1', port: 53 }]));
});

t.test('isSelf compares canonical addresses', async (t) => {
  t.ok(isSelf({ host: '2001:DB8:0:0::53', port: 53 }, [{ host: '2001:db8::53', port: 53 }]), 'any IPv6 spelling');
  t.ok(isSelf({ host: '0:0:0:0:0:0:0:1', port: 53 }, [{ host: '::', port: 53 }]), 'loopback spelled out');
  t.ok(isSelf({ host: '::ffff:0a60:000a', port: 53 }, [{ host: '10.96.0.10', port: 53 }]), 'IPv4-mapped in hex');
  t.ok(isSelf({ host: 'fe80::1%eth0', port: 53 }, [{ host: 'FE80::1', port: 53 }]), 'zone index dropped');
  t.notOk(isSelf({ host: '2001:db8::54', port: 53 }, [{ host: '2001:db8::53', port: 53 }]));
});

t.test('parseHostPort', async (t) => {
  t.same(parseHostPort('10.0.0.53'), { host: '10.0.0.53', port: 53 });
  t.same(parseHostPort('10.0.0.53:5353'), { host: '10.0.0.53', port: 5353 });
  t.same(parseHostPort('[2001:db8::53]:5353'), { host: '2001:db8::53', port: 5353 });
  t.same(parseHostPort('[2001:db8::53]'), { host: '2001:db8::53', port: 53 });
  t.same(parseHostPort('2001:db8::53'), { host: '2001:db8::53', port: 53 });
  t.same(parseHostPort(' 1.1.1.1 ', 853), { host: '1.1.1.1', port: 853 });
  for (const bad of ['dns.google', '1.2.3.4:0', '1.2.3.4:70000', '[::1]:x', '', '1.2.3.4:']) t.throws(() => parseHostPort(bad), `rejects ${JSON.stringify(bad)}`);
});

t.test('parseStubDomains', async (t) => {
  t.same(parseStubDomains({ 'Acme.Internal.': ['10.0.0.53', '10.0.0.54:5353'], 'corp.example': ['[2001:db8::53]'] }), {
    'acme.internal': [
      { host: '10.0.0.53', port: 53 },
      { host: '10.0.0.54', port: 5353 },
    ],
    'corp.example': [{ host: '2001:db8::53', port: 53 }],
  });
  t.throws(() => parseStubDomains({ 'a..b': ['10.0.0.1'] }), /bad domain/);
  t.throws(() => parseStubDomains({ acme: [] }), /no servers/);
  t.throws(() => parseStubDomains({ acme: ['ns.acme'] }), /acme: not an IP address/);
});
