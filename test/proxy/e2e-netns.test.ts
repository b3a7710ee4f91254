/**
 * The proxy's command line as a node sees it (issue #11 §1, §3), the checks that are not
 * per traffic mode (those are in e2e-netns-{userspace,iptables,nftables}.test.ts):
 * - the rulesets `clusterdns rules` prints pass `iptables-restore --test` /
 *   `ip6tables-restore --test` (split at the "# ip6tables-restore" line) and `nft -c -f`,
 *   inside a scratch namespace, for the e2e view and for the shipped zones/ example
 *   (dual-stack);
 * - without CAP_NET_ADMIN (setpriv drops it from the bounding and inheritable sets)
 *   `clusterdns proxy` fails with one clear line naming CAP_NET_ADMIN, a non-zero exit
 *   and nothing installed;
 * - `clusterdns serve --proxy userspace` (DNS and proxy in one process, one view): the
 *   ClusterIP carries traffic and SIGTERM removes the rules.
 */
import { Resolver } from 'node:dns/promises';
import { join } from 'node:path';
import t from 'tap';
import {
  CLIENT_IP,
  MAIN,
  ROOT,
  VIP,
  canRun,
  cli,
  clusterView,
  dial,
  installed,
  nsRun,
  show,
  sleep,
  tempDir,
  topology,
  writeConfig,
  zonesSource,
} from './_netns.js';

t.setTimeout(180_000);

/** The backends' names and addresses as topology() makes them (be4 has no server here). */
const PODS = [1, 2, 3, 4].map((i) => ({ name: `be${i}`, ip: `10.250.${i}.2` }));

if (canRun(t, ['ip', 'iptables-save', 'iptables-restore', 'ip6tables-restore', 'nft', 'setpriv'])) {
  await t.test('printed rulesets pass iptables-restore --test and nft -c -f', { timeout: 90_000 }, async (t) => {
    const topo = await topology(t, 0);
    const mine = zonesSource(t, clusterView(PODS));
    const config = writeConfig(t);
    const views = [
      { what: 'the e2e view', args: [...mine.args, '--config', config] },
      { what: 'the shipped zones/ example', args: ['--zones', join(ROOT, 'zones'), '--state', join(tempDir(t), 'state'), '--config', join(ROOT, 'clusterdns.yaml')] },
    ];
    for (const v of views) {
      await t.test(v.what, async (t) => {
        const ipt = await cli(topo.scratch, ['rules', '--mode', 'iptables', ...v.args]);
        t.equal(ipt.code, 0, `clusterdns rules --mode iptables exits 0: ${ipt.stderr}`);
        const lines = ipt.stdout.split('\n');
        const cut = lines.findIndex((l) => /^# ip6tables-restore/.test(l));
        t.ok(cut > 0, 'an "# ip6tables-restore" line separates the families');
        const v4 = lines.slice(0, cut < 0 ? lines.length : cut).join('\n') + '\n';
        const v6 = cut < 0 ? '' : lines.slice(cut).join('\n') + '\n';
        t.match(v4, /^\*nat$/m, 'IPv4: a nat table');
        t.match(v4, /^:KUBE-SERVICES /m, 'IPv4: KUBE-SERVICES declared');
        t.match(v4, /^-A KUBE-SVC-[A-Z0-9]{16} /m, 'IPv4: KUBE-SVC- chains');
        t.match(v4, /^-A KUBE-SEP-[A-Z0-9]{16} .*-j DNAT --to-destination /m, 'IPv4: KUBE-SEP- chains DNAT');
        if (v.what === 'the e2e view') {
          t.match(v4, /"e2e\/empty:http has no endpoints".*-j REJECT/, 'IPv4: a REJECT for the Service without endpoints');
          t.match(v4, /-m recent --name KUBE-SEP-[A-Z0-9]{16} --rcheck --seconds 10800 --reap/, 'IPv4: recent for ClientIP affinity');
          t.match(v4, /-m statistic --mode random --probability 0\.3333333333 /, 'IPv4: kube-proxy\'s probability text (%0.10f)');
        } else {
          t.match(v6, /^-A KUBE-SEP-[A-Z0-9]{16} .*--to-destination \[fd00:10:244::/m, 'IPv6: the dual-stack Service has its endpoints');
        }
        const t4 = await nsRun(topo.scratch, 'iptables-restore', ['--test'], { input: v4 });
        t.equal(t4.code, 0, `iptables-restore --test accepts the IPv4 part: ${t4.stderr}`);
        const t6 = await nsRun(topo.scratch, 'ip6tables-restore', ['--test'], { input: v6 });
        t.equal(t6.code, 0, `ip6tables-restore --test accepts the IPv6 part: ${t6.stderr}`);

        const nft = await cli(topo.scratch, ['rules', '--mode', 'nftables', ...v.args]);
        t.equal(nft.code, 0, `clusterdns rules --mode nftables exits 0: ${nft.stderr}`);
        t.match(nft.stdout, /table ip clusterdns/, 'the ip table');
        t.match(nft.stdout, /table ip6 clusterdns/, 'the ip6 table');
        t.match(nft.stdout, v.what === 'the e2e view' ? /numgen random mod 3 / : /numgen random mod \d+ /, 'numgen random mod N');
        const c = await nsRun(topo.scratch, 'nft', ['-c', '-f', '-'], { input: nft.stdout });
        t.equal(c.code, 0, `nft -c -f accepts it: ${c.stderr.slice(0, 3000)}`);
      });
    }
    const left = await installed(topo.scratch);
    t.same(left, { kubeChains: [], nftTables: [] }, 'printing and checking installed nothing');
  });

  await t.test('without CAP_NET_ADMIN: one clear line, a non-zero exit, nothing installed', { timeout: 90_000 }, async (t) => {
    const topo = await topology(t, 0);
    const src = zonesSource(t, []);
    const config = writeConfig(t);
    const drop = ['setpriv', '--inh-caps=-net_admin', '--bounding-set=-net_admin', '--'];
    const sanity = await nsRun(topo.scratch, 'grep', ['^CapEff', '/proc/self/status'], { prefix: drop });
    t.match(sanity.stdout, /^CapEff:\s*[0-9a-f]+/, `setpriv runs: ${sanity.stdout.trim()}`);
    t.equal((BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(sanity.stdout)?.[1] ?? '0'}`) >> 12n) & 1n, 0n, 'and drops CAP_NET_ADMIN');
    const runs: [string, string[]][] = [
      ['proxy --mode iptables', ['proxy', '--mode', 'iptables', ...src.args, '--config', config, '--http', '127.0.0.1:0']],
      ['proxy --mode nftables', ['proxy', '--mode', 'nftables', ...src.args, '--config', config, '--http', '127.0.0.1:0']],
      ['proxy --mode userspace', ['proxy', '--mode', 'userspace', ...src.args, '--config', config, '--http', '127.0.0.1:0']],
      ['proxy --cleanup', ['proxy', '--cleanup', '--config', config]],
    ];
    for (const [what, args] of runs) {
      const r = await cli(topo.scratch, args, drop, 30_000);
      const lines = (r.stderr + r.stdout).split('\n').filter((l) => l.trim() !== '');
      t.not(r.code, 0, `${what}: exits non-zero (${r.code})`);
      t.equal(lines.filter((l) => l.includes('CAP_NET_ADMIN')).length, 1, `${what}: one line names CAP_NET_ADMIN: ${JSON.stringify(lines)}`);
      t.ok(lines.length <= 2, `${what}: and little else (${lines.length} lines)`);
      t.notMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
    }
    t.same(await installed(topo.scratch), { kubeChains: [], nftTables: [] }, 'nothing installed');
  });

  await t.test('serve --proxy userspace: DNS and the proxy in one process', { timeout: 90_000 }, async (t) => {
    const topo = await topology(t, 3);
    const view = clusterView(PODS);
    const src = zonesSource(t, view);
    const config = writeConfig(t);
    const args = ['--import', 'tsx', MAIN, 'serve', ...src.args, '--config', config, '--dns', `${topo.mgmtNode}:0`, '--http', `${topo.mgmtNode}:0`, '--no-upstream', '--proxy', 'userspace', '--node-name', 'node-a', '--log-level', 'warn'];
    const proc = topo.spawn(topo.node, process.execPath, args);
    let out = '';
    let err = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    const deadline = Date.now() + 30_000;
    while (!/^try: dig/m.test(out)) {
      if (proc.exitCode !== null) throw new Error(`serve exited ${proc.exitCode}: ${err}`);
      if (Date.now() > deadline) throw new Error(`no banner in 30 s: ${err}`);
      await sleep(25);
    }
    t.match(out, /userspace proxy on node node-a/, `banner names the proxy: ${out.split('\n')[0]}`);
    const http = Number(/http on [^ ]*?:(\d+)/.exec(out)![1]);
    let ready = 0;
    while (ready !== 200 && Date.now() < deadline) {
      ready = await fetch(`http://${topo.mgmtNode}:${http}/readyz`).then((r) => r.status, () => -1);
      if (ready !== 200) await sleep(50);
    }
    t.equal(ready, 200, '/readyz');
    // The name the DNS side answers is the address the proxy side carries.
    const dnsPort = Number(/ on [^ ]*?:(\d+) \(udp\+tcp\)/.exec(out)![1]);
    const resolver = new Resolver({ timeout: 2000, tries: 2 });
    resolver.setServers([`${topo.mgmtNode}:${dnsPort}`]);
    const addrs = await resolver.resolve4(`web.e2e.svc.cluster.local`);
    t.same(addrs, [VIP.web], `DNS: web.e2e.svc.cluster.local A ${addrs.join(' ')}`);
    const x = await dial(topo, { host: addrs[0] ?? VIP.web, port: 80, n: 30, concurrency: 3 });
    t.equal(x.ok, 30, `once /readyz is 200 the ClusterIP carries traffic: ${show(x)}`);
    t.same(Object.keys(x.answers).sort(), ['be1', 'be2', 'be3'], 'over the three endpoints');
    t.notOk(Object.keys(x.sources).includes(CLIENT_IP), 'through the userspace hop');
    proc.kill('SIGTERM');
    const code = await Promise.race([exited, sleep(20_000).then(() => 'timeout')]);
    t.equal(code, 0, `SIGTERM: exit 0; stderr: ${err.slice(-2000)}`);
    t.same(await installed(topo.node), { kubeChains: [], nftTables: [] }, 'rules gone after stop');
  });
}
