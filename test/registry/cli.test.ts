/**
 * The registry through the real CLI: `clusterdns serve` on a zones/ example whose
 * selector Services have no clusterIP serves stable virtual IPs (same after a restart),
 * and `clusterdns ipam` prints usage and anomalies (text and --json).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { BIN, dig, requireTool, run, startCli } from '../helpers/cli.js';
import { docs, pod, put, svc, tempDir } from './_harness.js';

const Z = 'cluster.local';

/** An example cluster: selector Services, no clusterIPs anywhere, their pods. */
function writeExample(zoneDir: string): void {
  put(
    join(zoneDir, 'shop.yaml'),
    docs(
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } },
      svc('frontend', { selector: { app: 'frontend' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] }, 'shop'),
      svc('cart', { type: 'NodePort', selector: { app: 'cart' }, ports: [{ name: 'grpc', port: 50051 }] }, 'shop'),
      svc('db', { clusterIP: 'None', selector: { app: 'db' }, ports: [{ name: 'pg', port: 5432 }] }, 'shop'),
      pod('frontend-1', { namespace: 'shop', labels: { app: 'frontend' }, ips: ['10.244.1.10'], ports: [{ name: 'http', containerPort: 8080 }] }),
      pod('frontend-2', { namespace: 'shop', labels: { app: 'frontend' }, ips: ['10.244.2.11'], ports: [{ name: 'http', containerPort: 8080 }] }),
      pod('frontend-3', { namespace: 'shop', labels: { app: 'frontend' }, ips: ['10.244.3.12'], ready: false, ports: [{ name: 'http', containerPort: 8080 }] }),
      pod('cart-1', { namespace: 'shop', labels: { app: 'cart' }, ips: ['10.244.1.30'] }),
      pod('db-0', { namespace: 'shop', labels: { app: 'db' }, ips: ['10.244.1.40'], hostname: 'db-0', subdomain: 'db' }),
      pod('db-1', { namespace: 'shop', labels: { app: 'db' }, ips: ['10.244.2.41'], hostname: 'db-1', subdomain: 'db' }),
    ),
  );
  put(join(zoneDir, 'default.yaml'), docs(svc('kubernetes', { ports: [{ name: 'https', port: 443 }] }), svc('api', { selector: { app: 'api' } })));
}

function layout(t: Parameters<typeof tempDir>[0]) {
  const root = tempDir(t, 'clusterdns-reg-cli-');
  const zones = join(root, 'zones');
  const zoneDir = join(zones, Z);
  mkdirSync(zoneDir, { recursive: true });
  const state = join(root, '.clusterdns');
  // The registry's default CIDRs, written out so `serve` and `ipam` agree however the
  // configuration is wired.
  const config = join(root, 'config.yaml');
  writeFileSync(config, 'serviceCIDRs: [10.96.0.0/12, "fd00:10:96::/112"]\nnodePortRange: "30000-32767"\n');
  return { root, zones, zoneDir, state, config };
}

function inDynamicBand(ip: string | undefined): boolean {
  // 10.96.0.0/12: static band 10.96.0.1-10.96.1.0, dynamic 10.96.1.1-10.111.255.254.
  const m = /^10\.(\d+)\.(\d+)\.(\d+)$/.exec(ip ?? '');
  if (m === null) return false;
  const v = ((Number(m[1]) - 96) << 16) + (Number(m[2]) << 8) + Number(m[3]);
  return v > 256 && v < 1 << 20;
}

t.test('serve: selector Services without clusterIPs get stable virtual IPs', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const l = layout(t);
  writeExample(l.zoneDir);
  const args = ['--zones', l.zones, '--state', l.state, '--config', l.config, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0'];
  const names = ['frontend.shop', 'cart.shop', 'kubernetes.default', 'api.default'];
  const answers = async (port: number): Promise<Record<string, string[]>> => {
    const out: Record<string, string[]> = {};
    for (const n of names) out[n] = (await dig(port, ['+short', `${n}.svc.${Z}`, 'A'])).trim().split('\n').filter(Boolean);
    return out;
  };
  let cli = await startCli(t, args);
  const first = await answers(cli.port);
  for (const n of names) {
    t.equal(first[n]?.length, 1, `${n}: one virtual IP`);
    t.ok(inDynamicBand(first[n]?.[0]), `${n}: from the dynamic band (${first[n]?.[0]})`);
  }
  t.equal(new Set(names.map((n) => first[n]?.[0])).size, names.length, 'all different');
  const short = async (port: number, name: string, type: string) => (await dig(port, ['+short', name, type])).trim().split('\n').filter(Boolean).sort();
  t.same(await short(cli.port, `_http._tcp.frontend.shop.svc.${Z}`, 'SRV'), [`0 100 80 frontend.shop.svc.${Z}.`]);
  t.same(await short(cli.port, `10-244-1-10.frontend.shop.svc.${Z}`, 'A'), ['10.244.1.10'], 'ready endpoint from the pods');
  t.same(await short(cli.port, `10-244-3-12.frontend.shop.svc.${Z}`, 'A'), [], 'not-ready pod not published');
  t.same(await short(cli.port, `db.shop.svc.${Z}`, 'A'), ['10.244.1.40', '10.244.2.41'], 'headless: the pods');
  t.same(await short(cli.port, `db-1.db.shop.svc.${Z}`, 'A'), ['10.244.2.41'], 'hostname/subdomain');
  t.same((await dig(cli.port, ['+short', '-x', first['cart.shop']?.[0] ?? ''])).trim(), `cart.shop.svc.${Z}.`, 'PTR of the virtual IP');
  t.equal(await cli.stop('SIGTERM'), 0);

  cli = await startCli(t, args);
  t.same(await answers(cli.port), first, 'the same virtual IPs after a restart');
  // A reload that touches every file keeps them too.
  writeExample(l.zoneDir);
  put(join(l.zoneDir, 'more.yaml'), docs(svc('extra')));
  const deadline = Date.now() + 10_000;
  while ((await dig(cli.port, ['+short', `extra.default.svc.${Z}`, 'A'])).trim() === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.same(await answers(cli.port), first, 'and after a reload');
  t.equal(await cli.stop('SIGTERM'), 0);
});

t.test('clusterdns ipam: usage per CIDR and every anomaly, text and --json', async (t) => {
  const l = layout(t);
  writeExample(l.zoneDir);
  put(
    join(l.zoneDir, 'problems.yaml'),
    docs(
      svc('pinned', { clusterIP: '10.96.0.50' }),
      svc('thief', { clusterIP: '10.96.0.50' }),
      svc('far', { clusterIP: '10.200.0.1' }),
      svc('manual'),
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'manual-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'manual' } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['127.0.0.1'] }, { addresses: ['10.244.7.7'] }],
      },
    ),
  );
  const ipam = (extra: string[] = []) => run(process.execPath, [BIN, 'ipam', '--zones', l.zones, '--state', l.state, '--config', l.config, ...extra], 30_000);

  // Before any server ran: read-only, nothing allocated at random.
  const before = await ipam();
  t.equal(before.code, 0, 'exit 0');
  t.match(before.stdout, /^clusterdns ipam: zones .*\/zones, state .*\/\.clusterdns \(read-only\)$/m);
  t.match(before.stdout, /^ {2}services: 2 served \(1 with cluster IPs, 1 headless, 0 ExternalName\), 2 refused, 5 pending$/m, 'dynamic ones pending: ipam does not allocate');
  t.match(before.stdout, /pending-service Service shop\/frontend .*needs a new random allocation, not made because `clusterdns ipam` only reads/);

  // A server allocates (and writes the state).
  const cli = await startCli(t, ['--zones', l.zones, '--state', l.state, '--config', l.config, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  await cli.stop('SIGTERM');

  const text = await ipam();
  t.equal(text.code, 0);
  const out = text.stdout;
  t.match(out, /^service CIDRs 10\.96\.0\.0\/12, fd00:10:96::\/112; NodePort range 30000-32767$/m);
  t.match(out, new RegExp(`^zone ${Z.replace('.', '\\.')} \\(state .*allocations\\.json, generation \\d+\\)$`, 'm'));
  t.match(out, /^ {2}IPv4 10\.96\.0\.0\/12: 6 allocated, 1048568 free, 1048574 total$/m, '5 dynamic + pinned');
  t.match(out, /^ {4}static band {2}10\.96\.0\.1-10\.96\.1\.0 1\/256 allocated$/m);
  t.match(out, /^ {4}dynamic band 10\.96\.1\.1-10\.111\.255\.254 5\/1048318 allocated$/m);
  t.match(out, /^ {2}IPv6 fd00:10:96::\/112: 0 allocated, 65535 free, 65535 total$/m);
  t.match(out, /^ {2}NodePorts 30000-32767: 1 allocated, 2767 free, 2768 total$/m);
  t.match(out, /^ {2}services: 7 served \(6 with cluster IPs, 1 headless, 0 ExternalName\), 2 refused, 0 pending$/m);
  t.match(out, /^ {4}default\/pinned +ClusterIP +10\.96\.0\.50$/m, 'allocations listed');
  t.match(out, /^ {4}shop\/cart +NodePort +10\.\d+\.\d+\.\d+ {2}nodePorts 3\d{4}$/m);
  t.match(
    out,
    /^ {4}error {3}refused-service Service default\/thief \(.*problems\.yaml#2\): Service "thief" is invalid: spec\.clusterIPs: Invalid value: \[\]string\{"10\.96\.0\.50"\}: failed to allocate IP 10\.96\.0\.50: provided IP is already allocated \[held by default\/pinned\]$/m,
    'conflict with its holder',
  );
  t.match(out, /refused-service Service default\/far .*not in the valid range\. The range of valid IPs is 10\.96\.0\.0\/12$/m);
  t.match(out, /^ {4}error {3}refused-address EndpointSlice default\/manual-1 \(.*problems\.yaml#5\): Invalid value: "127\.0\.0\.1": may not be in the loopback range \(127\.0\.0\.0\/8, ::1\/128\)$/m);

  const json = await ipam(['--json']);
  t.equal(json.code, 0);
  const report = JSON.parse(json.stdout) as {
    readOnly: boolean;
    serviceCIDRs: string[];
    zones: Array<{
      status: { zone: string; mode: string; ranges: Array<{ cidr: string; allocated: number; static: { allocated: number } }>; nodePorts: { allocated: number }; anomalies: Record<string, number> };
      allocations: Array<{ namespace: string; name: string; clusterIPs: string[] }>;
      anomalies: Array<{ kind: string; name?: string; heldBy?: string; message: string }>;
    }>;
    anomalyCount: number;
  };
  t.equal(report.readOnly, true);
  const z = report.zones[0];
  t.equal(z?.status.zone, Z);
  t.equal(z?.status.mode, 'registry');
  t.match(z?.status.ranges[0], { cidr: '10.96.0.0/12', allocated: 6, static: { allocated: 1 } });
  t.equal(z?.status.nodePorts.allocated, 1);
  t.match(z?.status.anomalies, { 'refused-service': 2, 'refused-address': 1, 'pending-service': 0 });
  t.same(z?.allocations.find((a) => a.name === 'pinned')?.clusterIPs, ['10.96.0.50']);
  t.equal(z?.anomalies.find((a) => a.name === 'thief')?.heldBy, 'default/pinned');
  t.equal(report.anomalyCount, z?.anomalies.length);

  const help = await run(process.execPath, [BIN, 'ipam', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^usage: clusterdns ipam \[--zones DIR\] \[--state DIR\] \[--config FILE\] \[--json\]/);
  const bad = await run(process.execPath, [BIN, 'ipam', '--bogus']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /Unknown option '--bogus'/);
});
