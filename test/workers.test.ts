/**
 * `--workers N`: several processes answer on the same sockets, fed by the primary's
 * sources; every worker sees every change; metrics are summed; signals stop them all.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { copyZones, dig, requireTool, startCli } from './helpers/cli.js';

const Z = 'cluster.local';

/**
 * Worker processes of `pid`, from /proc (no procps needed): children whose environment
 * marks them as workers (run from a checkout, tsx's esbuild service is a child too).
 */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && readFileSync(`/proc/${d}/environ`, 'latin1').split('\0').includes('CLUSTERDNS_WORKER=1')) out.push(Number(d));
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/** A process's command line arguments. */
function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
}

t.test('two workers share the sockets and the view', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const zones = copyZones(t);
  const cli = await startCli(t, ['--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--workers', '2', '--log-level', 'warn']);
  t.match(cli.stdout(), /with 2 workers/);
  const pids = children(cli.proc.pid!);
  t.equal(pids.length, 2, `two worker processes (${pids.join(', ')})`);
  for (const p of pids) t.ok(cmdline(p).includes('--optimize-for-size'), `worker ${p} runs with the lean memory profile's V8 flag`);

  for (const transport of ['+notcp', '+tcp']) {
    t.same((await dig(cli.port, ['+short', transport, `web.shop.svc.${Z}`])).trim().split('\n').sort(), ['10.244.1.20', '10.244.2.21'], transport);
  }
  // A change reaches every worker: ask many times in parallel so both workers answer.
  writeFileSync(
    `${zones}/cluster.local/shop/extra.yaml`,
    'apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: shop}\nspec: {clusterIP: 10.96.10.77}\n',
  );
  const deadline = Date.now() + 5000;
  let seen = false;
  while (!seen && Date.now() < deadline) {
    const answers = await Promise.all(Array.from({ length: 20 }, () => dig(cli.port, ['+short', `extra.shop.svc.${Z}`])));
    seen = answers.every((a) => a.trim() === '10.96.10.77');
    if (!seen) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(seen, 'every answer from every worker has the new service');
  const metrics = await (await fetch(`http://127.0.0.1:${cli.httpPort}/metrics`)).text();
  const total = [...metrics.matchAll(/^clusterdns_dns_requests_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  t.ok(total >= 22, `requests summed across workers (${total})`);
  t.equal((await fetch(`http://127.0.0.1:${cli.httpPort}/readyz`)).status, 200);
  // A killed worker is replaced.
  process.kill(pids[0]!, 'SIGKILL');
  const back = Date.now() + 20000;
  let count = 0;
  while (Date.now() < back) {
    count = children(cli.proc.pid!).length;
    if (count === 2) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  t.equal(count, 2, 'a dead worker is replaced');
  t.match(await dig(cli.port, ['+short', `kubernetes.default.svc.${Z}`]), /10\.96\.0\.1/);
  cli.proc.kill('SIGINT');
  t.equal(await new Promise((r) => cli.proc.once('exit', (code) => r(code))), 0, 'SIGINT stops the primary and its workers');
  t.same(children(cli.proc.pid!), [], 'no worker left');
});
