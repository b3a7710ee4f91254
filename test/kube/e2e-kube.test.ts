/**
 * End to end against the Kubernetes API source: the shipped zones/cluster.local/ example
 * loaded into a fake API server (TLS, bearer token), the real CLI started with
 * `--kubeconfig`, and the same dig checks as test/e2e.test.ts runs against `--zones`; then
 * changes made through the API server show up in dig.
 *
 * Needs the CLI flags --kubeconfig/--context/--in-cluster/--domain (wired by app.ts).
 */
import { join } from 'node:path';
import { exampleNameChecks } from '../helpers/example.js';
import t from 'tap';
import { dig, requireTool, ROOT, startCli } from '../helpers/cli.js';
import { loadManifests } from './helpers/manifests.js';
import { fakeServer, sleep, tempDir } from './helpers/setup.js';

const Z = 'cluster.local';

t.test('dig against the Kubernetes API source', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const s = await fakeServer(t, { tls: true, token: 'e2e-token' });
  const counts = loadManifests(s, join(ROOT, 'zones', Z));
  t.ok((counts['Service'] ?? 0) >= 8 && (counts['EndpointSlice'] ?? 0) >= 6, `manifests loaded: ${JSON.stringify(counts)}`);
  const kubeconfig = s.writeKubeconfig(tempDir(t));
  const cli = await startCli(t, ['--kubeconfig', kubeconfig, '--domain', Z, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0']);
  t.match(cli.stdout(), /try: dig @127\.0\.0\.1 -p \d+ kubernetes\.default\.svc\.cluster\.local/, 'banner prints a dig line');

  const short = async (name: string, type = 'A', extra: string[] = []) =>
    (await dig(cli.port, ['+short', ...extra, name, type])).trim().split('\n').filter(Boolean).sort();
  // Ready once synced: before that, misses are SERVFAIL (never NXDOMAIN).
  const deadline = Date.now() + 10_000;
  while ((await short(`kubernetes.default.svc.${Z}`)).join() !== '10.96.0.1' && Date.now() < deadline) await sleep(50);
  if (cli.httpPort !== undefined) {
    const res = await fetch(`http://127.0.0.1:${cli.httpPort}/readyz`);
    t.equal(res.status, 200, '/readyz once synced');
  }

  exampleNameChecks(t, cli.port);

  t.test('changes through the API server show in dig', async (t) => {
    const until = async (name: string, type: string, want: string[]): Promise<string[]> => {
      const end = Date.now() + 5000;
      let got = await short(name, type);
      while (got.join() !== want.join() && Date.now() < end) {
        await sleep(20);
        got = await short(name, type);
      }
      return got;
    };
    const front = s.get('Service', 'shop', 'frontend')!;
    const spec = front['spec'] as Record<string, unknown>;
    s.update('Service', { ...front, metadata: { ...front.metadata, resourceVersion: undefined }, spec: { ...spec, clusterIP: '10.96.10.11', clusterIPs: ['10.96.10.11'] } });
    t.same(await until(`frontend.shop.svc.${Z}`, 'A', ['10.96.10.11']), ['10.96.10.11'], 'clusterIP update');

    const sl = s.get('EndpointSlice', 'shop', 'web-5zq8m')!;
    const eps = (sl['endpoints'] as { conditions: Record<string, boolean> }[]).map((e) => ({ ...e, conditions: { ...e.conditions, ready: true } }));
    s.update('EndpointSlice', { ...sl, metadata: { ...sl.metadata, resourceVersion: undefined }, endpoints: eps });
    t.same(await until(`web-2.web.shop.svc.${Z}`, 'A', ['10.244.3.22']), ['10.244.3.22'], 'web-2 became ready');
    t.same(await short(`web.shop.svc.${Z}`), ['10.244.1.20', '10.244.2.21', '10.244.3.22']);

    s.create('Service', { metadata: { name: 'fresh', namespace: 'shop' }, spec: { clusterIP: '10.96.10.99', ports: [{ name: 'http', port: 80 }] } });
    t.same(await until(`fresh.shop.svc.${Z}`, 'A', ['10.96.10.99']), ['10.96.10.99'], 'new service');

    s.delete('Service', 'shop', 'cart');
    const end = Date.now() + 5000;
    let out = '';
    while (Date.now() < end) {
      out = await dig(cli.port, ['+norec', `cart.shop.svc.${Z}`, 'A']);
      if (/status: NXDOMAIN/.test(out)) break;
      await sleep(20);
    }
    t.match(out, /status: NXDOMAIN/, 'deleted service: NXDOMAIN');

    s.dropWatches(); // a dropped watch resumes without losing anything
    s.create('Service', { metadata: { name: 'after-drop', namespace: 'shop' }, spec: { clusterIP: '10.96.10.98' } });
    t.same(await until(`after-drop.shop.svc.${Z}`, 'A', ['10.96.10.98']), ['10.96.10.98'], 'after a dropped watch');
  });

  t.test('SIGTERM stops it cleanly', async (t) => {
    t.equal(await cli.stop('SIGTERM'), 0);
  });
});

t.test('dig against the Kubernetes API source with --workers 2', async (t) => {
  // The API source stores slices packed (src/cluster/packed.ts); workers get them by
  // structured clone over IPC and must serve the same names from them.
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const s = await fakeServer(t, { tls: true, token: 'e2e-token' });
  loadManifests(s, join(ROOT, 'zones', Z));
  const kubeconfig = s.writeKubeconfig(tempDir(t));
  const cli = await startCli(t, ['--kubeconfig', kubeconfig, '--domain', Z, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--workers', '2']);
  t.match(cli.stdout(), /with 2 workers/);
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && (await fetch(`http://127.0.0.1:${cli.httpPort}/readyz`)).status !== 200) await sleep(50);
  // Both workers answer: ask enough times that each one is asked.
  const answers = await Promise.all(Array.from({ length: 20 }, () => dig(cli.port, ['+short', `web-0.web.shop.svc.${Z}`, 'A'])));
  t.same([...new Set(answers.map((a) => a.trim()))], ['10.244.1.20'], 'an endpoint name from every worker');
  exampleNameChecks(t, cli.port);
  t.test('SIGTERM stops it cleanly', async (t) => {
    t.equal(await cli.stop('SIGTERM'), 0);
  });
});
