/**
 * Autopath as a pod sees it: a network namespace with the kubelet's resolv.conf (search
 * list, ndots:5), glibc's `getent` as the client, the real CLI serving the shipped zones/
 * plus a pod at the namespace's address (pods verified), and Knot inside the namespace as
 * the upstream. Each name must resolve exactly as without autopath, while the server sees
 * one query per address family instead of the client's whole search-list walk.
 *
 * The nameserver is the pod's own address, not 127.0.0.1: the kernel takes the
 * destination's address as the source of a local packet, so only then does the server see
 * the pod IP as a real pod's queries show it (from eth0 to the kube-dns ClusterIP).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { copyZones, EXAMPLE_CONFIG, requireTool, startCli, type Cli } from './helpers/cli.js';
import { KNOT_ZONE, KNOT_ZONE_TEXT, knotPrimaryConf, requireKnotd, runKnot } from './helpers/knot.js';
import { podNetns, requireRoot, type PodNetns } from './helpers/pod-netns.js';

const POD_IP = '10.244.77.7';
const POD_IP6 = 'fd00:10:244::77';
const KNOT_PORT = 5300;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Knot inside the namespace on 127.0.0.1:KNOT_PORT (asked with dig from in there), stopped at teardown. */
async function knotIn(t: Test, pod: PodNetns, bin: string): Promise<void> {
  const dig = ['dig', '@127.0.0.1', '-p', String(KNOT_PORT), '+time=1', '+tries=1', '+short'];
  await runKnot(t, bin, {
    port: KNOT_PORT,
    prefix: pod.exec,
    files: { [KNOT_ZONE]: KNOT_ZONE_TEXT },
    conf: (dir) => knotPrimaryConf(dir, KNOT_PORT, [KNOT_ZONE]),
    ready: async (zone) => (await pod.inside(dig[0]!, [...dig.slice(1), zone, 'SOA'], 10_000)).stdout.trim() !== '',
    late: 'not answering in the namespace',
  });
}

/** Query-log lines of `cli` (JSON on stderr) from character `from` on. */
function queriesSince(cli: Cli, from: number): { name: string; type: string }[] {
  return cli
    .stderr()
    .slice(from)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; name?: string; type?: string })
    .filter((e) => e.msg === 'query')
    .map((e) => ({ name: e.name!, type: e.type! }));
}

t.test('a pod: the same answers from getent, one query per address family', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils') || !requireTool(t, 'ip', 'iproute2') || !requireTool(t, 'getent', 'libc-bin')) return;
  if (!requireRoot(t)) return;
  const knotd = requireKnotd(t);
  if (knotd === undefined) return;
  // What the kubelet writes for a pod in namespace `shop` (ClusterFirst), with the pod's
  // own address as the nameserver (see the file comment). clusterdns reads this file too
  // (for the node's search domains): all of these are in its zone, so it skips them.
  const pod = await podNetns(t, {
    prefix: 'cdap-',
    resolvConf: `search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver ${POD_IP}\noptions ndots:5\n`,
    addresses: [POD_IP, POD_IP6],
  });
  if (pod === undefined) return;
  const { exec: inNs, inside } = pod;
  await knotIn(t, pod, knotd);

  const zones = copyZones(t);
  writeFileSync(
    join(zones, 'cluster.local', 'shop', 'autopath-client.yaml'),
    `apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: shop}\nspec: {nodeName: kind-worker, containers: [{name: c, image: busybox}]}\n` +
      `status: {phase: Running, podIP: ${POD_IP}, podIPs: [{ip: ${POD_IP}}, {ip: "${POD_IP6}"}]}\n`,
  );
  const cfgDir = mkdtempSync(join(tmpdir(), 'clusterdns-apcfg-'));
  t.teardown(() => rmSync(cfgDir, { recursive: true, force: true }));
  const config = (autopath: boolean): string => {
    const file = join(cfgDir, `${autopath ? 'on' : 'off'}.yaml`);
    writeFileSync(file, `${readFileSync(EXAMPLE_CONFIG, 'utf8')}\npods: verified\nqueryLog: true\nautopath: ${autopath}\n`);
    return file;
  };

  const names = [`www.${KNOT_ZONE}`, 'kubernetes.default', 'frontend', 'cart.shop'];
  /** Per name and getent database: its output and the queries the server saw for it. */
  const observe = async (autopath: boolean) => {
    const cli = await startCli(t, ['--config', config(autopath), '--zones', zones, '--dns', `${POD_IP}:53`, '--http', '127.0.0.1:0', '--upstream', `127.0.0.1:${KNOT_PORT}`], inNs);
    const out = new Map<string, { stdout: string; code: number; queries: { name: string; type: string }[] }>();
    for (const name of names) {
      for (const db of ['ahostsv4', 'ahosts']) {
        const from = cli.stderr().length;
        const r = await inside('getent', [db, name]);
        await sleep(150); // the query log is written asynchronously
        out.set(`${db} ${name}`, { stdout: r.stdout, code: r.code, queries: queriesSince(cli, from) });
      }
    }
    const fromMiss = cli.stderr().length;
    const miss = await inside('getent', ['ahostsv4', 'no-such-name']);
    await sleep(150);
    out.set('miss', { stdout: miss.stdout, code: miss.code, queries: queriesSince(cli, fromMiss) });
    const metrics = await inside(process.execPath, ['-e', `fetch('http://127.0.0.1:${cli.httpPort}/metrics').then((r) => r.text()).then((s) => process.stdout.write(s))`]);
    await cli.stop('SIGINT');
    return { out, metrics: metrics.stdout };
  };
  const off = await observe(false);
  const on = await observe(true);

  // The client's walk, per address family: first expansion, then on down the list.
  const want: Record<string, [off: number, on: number]> = {
    [`www.${KNOT_ZONE}`]: [4, 1], // 3 NXDOMAIN in the cluster, then the name itself
    'kubernetes.default': [2, 1], // found at the second search domain
    frontend: [1, 1], // a service of the pod's namespace: the first expansion
    'cart.shop': [2, 1],
  };
  for (const name of names) {
    for (const db of ['ahostsv4', 'ahosts']) {
      const key = `${db} ${name}`;
      const a = off.out.get(key)!;
      const b = on.out.get(key)!;
      t.equal(a.code, 0, `${key}: resolves without autopath`);
      t.equal(b.stdout, a.stdout, `${key}: the same getent output with autopath`);
      const families = db === 'ahostsv4' ? 1 : 2;
      const [nOff, nOn] = want[name]!;
      t.equal(a.queries.length, nOff * families, `${key}: without autopath the server sees the walk (${a.queries.map((q) => `${q.name} ${q.type}`).join(', ')})`);
      t.equal(b.queries.length, nOn * families, `${key}: with autopath one query per family (${b.queries.map((q) => `${q.name} ${q.type}`).join(', ')})`);
      t.ok(b.queries.every((q) => q.name.endsWith('.shop.svc.cluster.local')), `${key}: only first expansions asked`);
    }
  }
  // The upstream refuses `no-such-name` (not its zone): glibc asks it once more.
  const missOff = off.out.get('miss')!;
  const missOn = on.out.get('miss')!;
  t.equal(missOff.code, 2, 'a name that exists nowhere: not found');
  t.equal(missOn.code, 2, 'not found with autopath either');
  t.same(missOn.queries, missOff.queries, 'the walk found nothing: the client walks the whole list itself, as without autopath');
  t.equal(missOn.queries[3]?.name, 'no-such-name', 'down to the name itself');
  t.match(on.out.get(`ahostsv4 www.${KNOT_ZONE}`)!.stdout, /^192\.0\.2\.1\s+STREAM www\.example\.test$/m, 'the upstream address, canonical name from the CNAME');
  t.match(on.out.get('ahosts cart.shop')!.stdout, /fd00:10:96::14/, 'dual-stack: AAAA through autopath too');
  // www (A+AAAA in two getents), kubernetes.default (A twice; its AAAA is NODATA, counted
  // as CoreDNS counts it), cart.shop (A twice, AAAA once).
  const counted = Number(/^clusterdns_autopath_total (\d+)/m.exec(on.metrics)?.[1]);
  t.equal(counted, 3 + 3 + 3, 'clusterdns_autopath_total counts the queries answered from later search names');
  t.match(off.metrics, /^clusterdns_autopath_total 0$/m, 'nothing without autopath');
});
