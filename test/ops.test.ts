/**
 * Operations over HTTP and signals, on the real CLI: /healthz, /readyz, /metrics,
 * config reload (SIGHUP and file edit, bad config rejected), lame duck on SIGTERM,
 * the query log.
 */
import { writeFileSync, renameSync } from 'node:fs';
import t from 'tap';
import { copyZones, dig, requireTool, startCli } from './helpers/cli.js';

const Z = 'cluster.local';

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: await r.text() };
}

async function until(fn: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

t.test('health, readiness and metrics', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const zones = copyZones(t);
  const cli = await startCli(t, ['--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  const hp = cli.httpPort!;
  t.same(await get(hp, '/healthz'), { status: 200, body: 'ok\n' });
  t.same(await get(hp, '/readyz'), { status: 200, body: 'ok\n' });
  t.equal((await get(hp, '/nope')).status, 404);
  await dig(cli.port, ['+short', `kubernetes.default.svc.${Z}`]);
  await dig(cli.port, ['+short', `kubernetes.default.svc.${Z}`]);
  await dig(cli.port, ['+tcp', '+short', `nosuch.default.svc.${Z}`]);
  const m = await get(hp, '/metrics');
  t.equal(m.status, 200);
  t.match(m.body, /clusterdns_dns_requests_total\{server="dns:\/\/127\.0\.0\.1:0",zone="cluster\.local",proto="udp",family="1",type="A"\} 2/);
  t.match(m.body, /clusterdns_dns_requests_total\{[^}]*proto="tcp"[^}]*\} 1/);
  t.match(m.body, /clusterdns_dns_responses_total\{[^}]*rcode="NXDOMAIN"[^}]*\} 1/);
  t.match(m.body, /clusterdns_dns_request_duration_seconds_bucket\{[^}]*le="\+Inf"\} 3/);
  t.match(m.body, /clusterdns_dns_response_size_bytes_count\{[^}]*\} \d+/);
  t.match(m.body, /clusterdns_answer_cache_total\{result="hit"\} 1/);
  t.match(m.body, /clusterdns_kubernetes_objects\{zone="cluster\.local",kind="Service"\} \d+/);
  t.match(m.body, /process_open_fds \d+/);
  t.match(m.body, /clusterdns_tcp_connections 0/);
});

t.test('reload: SIGHUP and file edits apply; a bad config is rejected and the old one keeps running', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const zones = copyZones(t);
  const cfg = `${zones}/clusterdns.yaml`;
  writeFileSync(cfg, 'ttl: 5\n');
  const cli = await startCli(t, ['--config', cfg, '--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  const ttl = async () => Number(/\s(\d+)\s+IN\s+A/.exec(await dig(cli.port, ['+noall', '+answer', `kubernetes.default.svc.${Z}`]))?.[1]);
  t.equal(await ttl(), 5);
  writeFileSync(cfg, 'ttl: 30\n');
  cli.proc.kill('SIGHUP');
  t.ok(await until(async () => (await ttl()) === 30), 'SIGHUP: ttl 30');
  // An edit without a signal (how a ConfigMap update arrives): write a new file, rename over.
  writeFileSync(`${cfg}.tmp`, 'ttl: 12\n');
  renameSync(`${cfg}.tmp`, cfg);
  t.ok(await until(async () => (await ttl()) === 12, 6000), 'file edit: ttl 12');
  writeFileSync(cfg, 'ttl: 12\nnot_a_key: true\n');
  cli.proc.kill('SIGHUP');
  t.ok(await until(async () => /new configuration rejected/.test(cli.stderr())), 'bad config reported');
  t.match(cli.stderr(), /unknown key \\"not_a_key\\"/);
  t.equal(await ttl(), 12, 'old configuration still serving');
});

t.test('lame duck: SIGTERM keeps answering while /healthz fails, then exits 0', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const zones = copyZones(t);
  const cfg = `${zones}/clusterdns.yaml`;
  writeFileSync(cfg, 'lameduck: 1.5\n');
  const cli = await startCli(t, ['--config', cfg, '--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  const started = Date.now();
  const exited = cli.stop('SIGTERM');
  t.ok(await until(async () => (await get(cli.httpPort!, '/healthz')).status === 503, 1000), '/healthz 503 during lame duck');
  t.equal((await get(cli.httpPort!, '/readyz')).status, 503, 'not ready either');
  t.match(await dig(cli.port, ['+short', `kubernetes.default.svc.${Z}`]), /10\.96\.0\.1/, 'still answering DNS');
  t.equal(await exited, 0);
  t.ok(Date.now() - started >= 1400, 'waited for the lame-duck period');
});

t.test('query log', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const zones = copyZones(t);
  const cfg = `${zones}/clusterdns.yaml`;
  writeFileSync(cfg, 'queryLog: true\n');
  const cli = await startCli(t, ['--config', cfg, '--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  await dig(cli.port, ['+short', `web.shop.svc.${Z}`, 'AAAA']);
  t.ok(await until(async () => /"msg":"query"/.test(cli.stderr())), 'a query line');
  const line = cli.stderr().split('\n').find((l) => l.includes('"msg":"query"'))!;
  const rec = JSON.parse(line) as Record<string, unknown>;
  t.match(rec, { client: '127.0.0.1', proto: 'udp', name: `web.shop.svc.${Z}`, type: 'AAAA', rcode: 'NOERROR' });
});
