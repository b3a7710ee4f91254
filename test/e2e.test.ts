/**
 * End to end: the CLI started as a user would (`clusterdns serve`) on the shipped
 * zones/ example, queried with dig over UDP and TCP, plus a pod-like network namespace
 * whose resolv.conf is the kubelet's (search list, ndots:5) for `dig +search` and
 * glibc's `getent`.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { exampleNameChecks } from './helpers/example.js';
import t from 'tap';
import { copyZones, dig, digStatus, EXAMPLE_CONFIG, requireTool, run, startCli } from './helpers/cli.js';
import { podNetns, requireRoot } from './helpers/pod-netns.js';

const Z = 'cluster.local';

t.test('dig against the shipped example', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const zones = copyZones(t);
  const cli = await startCli(t, ['--config', EXAMPLE_CONFIG, '--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--no-upstream']);
  t.match(cli.stdout(), /try: dig @127\.0\.0\.1 -p \d+ kubernetes\.default\.svc\.cluster\.local/, 'banner prints a dig line');

  const short = async (name: string, type = 'A', extra: string[] = []) => (await dig(cli.port, ['+short', ...extra, name, type])).trim().split('\n').filter(Boolean).sort();
  exampleNameChecks(t, cli.port);

  t.test('NXDOMAIN vs NODATA as dig shows them', async (t) => {
    const full = (name: string, type = 'A') => dig(cli.port, ['+norec', name, type]);
    const nx = await full(`nosuch.default.svc.${Z}`);
    t.equal(digStatus(nx), 'NXDOMAIN');
    t.match(nx, /AUTHORITY: 1/, 'SOA in authority');
    t.match(nx, /flags: qr aa/, 'authoritative');
    const nodata = await full(`kubernetes.default.svc.${Z}`, 'AAAA');
    t.equal(digStatus(nodata), 'NOERROR');
    t.match(nodata, /ANSWER: 0, AUTHORITY: 1/);
    t.equal(digStatus(await full(`web-2.web.shop.svc.${Z}`)), 'NXDOMAIN');
    t.equal(digStatus(await full(`shop.svc.${Z}`)), 'NOERROR');
    t.equal(digStatus(await full(`nope.svc.${Z}`)), 'NXDOMAIN');
    t.equal(digStatus(await full('example.org')), 'REFUSED', 'outside our zones with --no-upstream');
  });

  t.test('reverse lookups with dig -x', async (t) => {
    t.same(await short('', '', ['-x', '10.96.0.1']), [`kubernetes.default.svc.${Z}.`]);
    t.same(await short('', '', ['-x', '10.244.1.20']), [`web-0.web.shop.svc.${Z}.`]);
    t.same(await short('', '', ['-x', 'fd00:10:96::14']), [`cart.shop.svc.${Z}.`]);
  });

  t.test('SRV additional section carries target addresses', async (t) => {
    const out = await dig(cli.port, ['+noall', '+additional', `_http._tcp.web.shop.svc.${Z}`, 'SRV']);
    t.match(out, /web-0\.web\.shop\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.244\.1\.20/);
    t.match(out, /web-1\.web\.shop\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.244\.2\.21/);
  });

  t.test('SOA and NS at the apex', async (t) => {
    t.match(await short(Z, 'SOA'), [/^ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\. \d+ 7200 1800 86400 5$/]);
    t.same(await short(Z, 'NS'), ['ns.dns.cluster.local.']);
    t.same(await short(`ns.dns.${Z}`), ['10.96.0.10'], 'glue from kube-dns');
  });

  t.test('SIGTERM stops it cleanly', async (t) => {
    t.equal(await cli.stop('SIGTERM'), 0);
  });
});

t.test('a pod: kubelet resolv.conf in a network namespace, dig +search and getent', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils') || !requireTool(t, 'ip', 'iproute2')) return;
  if (!requireRoot(t)) return;
  const pod = await podNetns(t, {
    prefix: 'cdns-e2e-',
    // What the kubelet writes for a pod in namespace `shop` (ClusterFirst).
    resolvConf: `search shop.svc.${Z} svc.${Z} ${Z}\nnameserver 127.0.0.1\noptions ndots:5\n`,
    addresses: ['10.244.9.9', 'fd00:10:244::9'],
  });
  if (pod === undefined) return;
  const zones = copyZones(t);
  const cli = await startCli(t, ['--config', EXAMPLE_CONFIG, '--zones', zones, '--dns', '127.0.0.1:53', '--http', '127.0.0.1:0', '--no-upstream'], pod.exec);
  t.equal(cli.port, 53);

  const search = async (name: string, type = 'A') => {
    const r = await pod.inside('dig', ['+search', '+time=2', '+tries=1', '+noall', '+answer', name, type]);
    return r.stdout.trim();
  };
  t.match(await search('frontend'), /^frontend\.shop\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.96\.10\.10$/m, 'same namespace: first search domain');
  t.match(await search('kubernetes.default'), /^kubernetes\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.96\.0\.1$/m, 'second search domain');
  t.match(await search('kube-dns.kube-system.svc'), /10\.96\.0\.10/, 'third search domain');
  t.match(await search('web-0.web'), /10\.244\.1\.20/, 'StatefulSet pod by hostname.subdomain');
  t.match(await search(`zk-hs.data.svc.${Z}`), /10\.244\.1\.40/, 'absolute name after the walk');

  const getent = async (db: string, name: string) => (await pod.inside('getent', [db, name])).stdout;
  t.match(await getent('hosts', 'frontend'), /^10\.96\.10\.10\s+frontend\.shop\.svc\.cluster\.local/m, 'glibc walks the search list');
  t.match(await getent('ahostsv4', 'cart'), /10\.96\.10\.20/);
  t.match(await getent('ahostsv6', 'cart'), /fd00:10:96::14/, 'AAAA of the dual-stack service');
  t.match(await getent('hosts', 'kubernetes.default'), /10\.96\.0\.1\s/);
  t.equal((await pod.inside('getent', ['hosts', 'no-such-service'])).code, 2, 'unknown name: getent exit 2 after the whole walk');
});

t.test('the CLI refuses bad input with one clear line', async (t) => {
  const node = process.execPath;
  const bin = new URL('../bin/clusterdns.js', import.meta.url).pathname;
  const dir = copyZones(t);
  const cfg = `${dir}/bad.yaml`;
  writeFileSync(cfg, 'ttl: 5\nbogus: 1\n');
  const bad = await run(node, [bin, 'serve', '--config', cfg, '--zones', dir, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  t.not(bad.code, 0);
  t.match(bad.stderr, /unknown key "bogus"; allowed keys: ttl, namespaces, pods/);
  writeFileSync(cfg, 'pods: maybe\n');
  const badVal = await run(node, [bin, 'serve', '--config', cfg, '--zones', dir, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  t.not(badVal.code, 0);
  t.match(badVal.stderr, /pods: must be one of disabled, insecure, verified; got "maybe"/);
  writeFileSync(cfg, 'ttl: 9999\n');
  t.match((await run(node, [bin, 'serve', '--config', cfg, '--zones', dir])).stderr, /ttl: must be a whole number of seconds from 0 to 3600, got 9999/);

  const first = await startCli(t, ['--zones', dir, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  const clash = await run(node, [bin, 'serve', '--zones', dir, '--dns', `127.0.0.1:${first.port}`, '--http', '127.0.0.1:0']);
  t.not(clash.code, 0, 'address in use: non-zero exit');
  const human = clash.stderr.trim().split('\n').filter((l) => !l.startsWith('{'));
  t.equal(human.length, 1, 'one line besides the JSON log');
  t.match(clash.stderr, /cannot listen on tcp 127\.0\.0\.1:\d+: address already in use/);
  const usage = await run(node, [bin, 'serve', '--dns', 'nonsense']);
  t.not(usage.code, 0);
  t.match(usage.stderr, /--dns nonsense: expected HOST:PORT/);
});

t.test('hot reload seen through dig: add, change, break and fix a manifest', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const zones = copyZones(t);
  const cli = await startCli(t, ['--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  const file = `${zones}/cluster.local/shop/new.yaml`;
  const svc = (ip: string) => `apiVersion: v1\nkind: Service\nmetadata: {name: fresh, namespace: shop}\nspec: {clusterIP: ${ip}, ports: [{name: http, port: 80}]}\n`;
  const answer = async () => (await dig(cli.port, ['+short', `fresh.shop.svc.${Z}`])).trim();
  const waitFor = async (want: string) => {
    const start = Date.now();
    while (Date.now() - start < 3000) {
      if ((await answer()) === want) return Date.now() - start;
      await new Promise((r) => setTimeout(r, 50));
    }
    return -1;
  };
  writeFileSync(file, svc('10.96.10.99'));
  const added = await waitFor('10.96.10.99');
  t.ok(added >= 0 && added < 1500, `new service visible after ${added} ms`);
  writeFileSync(file, svc('10.96.10.98'));
  t.ok((await waitFor('10.96.10.98')) >= 0, 'changed address visible');
  writeFileSync(file, 'apiVersion: v1\nkind: Service\nmetadata: {name: fresh\n  broken: [yaml');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await answer(), '10.96.10.98', 'a broken file keeps its last good version serving');
  t.match(cli.stderr(), /new\.yaml/, 'the broken file is reported by name');
  rmSync(file);
  t.ok((await waitFor('')) >= 0, 'deleting the file removes the service');
  t.match(await dig(cli.port, ['+short', `kubernetes.default.svc.${Z}`]), /10\.96\.0\.1/, 'other names never affected');
});
