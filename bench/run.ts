/**
 * `npm run bench [-- flags]`: the benchmarks of issue 6, as steps.
 *
 *   dns   clusterdns vs Knot DNS with dnsperf (bench/dns.ts)
 *   kube  the Kubernetes-source benchmark, with --kube or --only kube: bench/kube.ts as a child
 *         process, `node --import tsx bench/kube.ts [--kube-arg=...]`, bounded by --kube-timeout; its
 *         stdout/stderr are shown as they come; if it writes JSON to $BENCH_RESULT_JSON that
 *         goes into the results file, and a string field `markdown` into the README snippet;
 *         BENCH_QUICK=1 is set with --quick)
 *   proxy the service proxy benchmark (issue 11), with --only proxy: bench/proxy.ts as a child
 *         process the same way (network namespaces, root; HAProxy, nginx, wrk), bounded by
 *         --proxy-timeout; its results are saved as bench/results/<date>-proxy.json
 *   sync  rule sync at scale (issue 11), with --only sync: bench/proxy-sync.ts as a child process
 *         the same way (a network namespace, root; iptables and nft), bounded by --sync-timeout;
 *         its results are saved as bench/results/<date>-proxy-sync.json
 *   forward  forwarding speed (issue 13), with --only forward: bench/forward.ts as a child process
 *         the same way (clusterdns and Unbound forwarding to one Knot: cache hits, misses, our
 *         authoritative rate, p99, memory), bounded by --forward-timeout; its results are saved
 *         as bench/results/<date>-forward.json
 *
 * Prints tables, writes bench/results/<date>-<host>.json and prints a Markdown snippet for
 * the README. Loopback only; every child process is stopped at the end, on failure and
 * on SIGINT. `--help` lists the flags.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { dnsMarkdown, dnsReport, runDnsBench, runDnsTune, type DnsBenchOptions, type DnsBenchResult } from './dns.js';
import { dnsperfVersion, type DnsperfSettings } from './lib/dnsperf.js';
import { machineFacts, round2, table, fmtInt, type MachineFacts } from './lib/machine.js';
import { installCleanup, interrupted, start, stopAll } from './lib/proc.js';
import { knotVersion } from './lib/servers.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const STEPS = ['dns', 'kube', 'proxy', 'sync', 'forward'] as const;
type Step = (typeof STEPS)[number];

const USAGE = `usage: npm run bench -- [flags]        (or: node --import tsx bench/run.ts [flags])

steps (default: dns only, about 2½ minutes)
  --only LIST            run only these steps (comma-separated: dns,kube,proxy,sync,forward)
  --skip LIST            leave these steps out
  --kube                 add the kube step (bench/kube.ts, about 2 more minutes): dns, then kube
  --kube-timeout S       stop the kube step after S seconds (default 300)
  --kube-arg=ARG         pass ARG to bench/kube.ts (repeatable; write --kube-arg=--flag for flags)
  --quick                short smoke run: 1 round, 3 s runs (also tells bench/kube.ts and
                         bench/proxy.ts: BENCH_QUICK=1)
  --tune                 instead of measuring, sweep dnsperf settings (-T/-c/-q) against both servers

proxy step (--only proxy: bench/proxy.ts, as root; about 5 minutes; results in <date>-proxy.json)
  --proxy-rounds N       interleaved rounds over the contenders (default 5; --quick 1)
  --proxy-duration S     each wrk run (default 3)
  --proxy-contenders L   direct,haproxy,userspace,iptables,nftables (default: all five; also haproxy-splice)
  --proxy-timeout S      stop the proxy step after S seconds (default 900)
  --proxy-arg=ARG        pass ARG to bench/proxy.ts (repeatable; \`node --import tsx bench/proxy.ts --help\`)

sync step (--only sync: bench/proxy-sync.ts, as root; a few minutes; results in <date>-proxy-sync.json)
  --sync-timeout S       stop the sync step after S seconds (default 1200)
  --sync-arg=ARG         pass ARG to bench/proxy-sync.ts (repeatable; e.g. --sync-arg=--sync-services=20000;
                         \`node --import tsx bench/proxy-sync.ts --help\`)

forward step (--only forward: bench/forward.ts; about 6 minutes; results in <date>-forward.json)
  --forward-timeout S    stop the forward step after S seconds (default 1200)
  --forward-arg=ARG      pass ARG to bench/forward.ts (repeatable; e.g. --forward-arg=--rounds=5;
                         \`node --import tsx bench/forward.ts --help\`)

cluster (dns step)
  --services N           ClusterIP services, each with named ports http/80 and metrics/9090 (default 2000)
  --headless N           headless services (default 200)
  --endpoints N          ready endpoints per headless service (default 10)
  --namespaces N         namespaces to spread them over (default 8, at most 12)
  --queries N            lines in the dnsperf query file (default 5000)
  --seed N               generator seed (default 1)

measurement (dns step)
  --rounds N             alternating rounds clusterdns, knot (default 3)
  --duration S           max-throughput run per server and round (default 10)
  --latency-duration S   fixed-rate run per server and round (default 5)
  --rate Q               fixed rate for latency, queries/s (default 20000)
  --warmup S             unrecorded run per server before round 1 (default 3)
  --threads N            dnsperf -T for max throughput (default 1)
  --clients N            dnsperf -c for max throughput (default 8)
  --outstanding N        dnsperf -q for max throughput (default 128)
  --pin                  pin the servers to CPU 1 and dnsperf to CPU 0 (taskset; with --workers all
                         workers share CPU 1)
  --workers N            pass --workers N to clusterdns (the ratio goal is for one process)
  --memory lean|fast     clusterdns's \`memory\` config key (default: its default, lean)
  --no-forward           skip the forwarded-throughput measurement
  --forward-names N      names in the Knot-only zone bench.test (default 300)
  --forward-duration S   forwarded run per round (default 5)

output
  --out DIR              results directory (default bench/results)
  --no-save              do not write the JSON file
  --keep                 keep the scratch directory (zones, zone files, query files)
  --strict               exit 3 when a goal is not met
  -h, --help             this text`;

/** A step run as a child process (kube, proxy). */
interface ChildStep {
  status: 'ok' | 'failed' | 'timed out' | 'not present' | 'skipped';
  seconds?: number;
  exitCode?: number | string;
  result?: unknown; // JSON bench/kube.ts wrote to $BENCH_RESULT_JSON, if any
  outputTail?: string[];
}

function int(v: string | undefined, flag: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} ${v}: expected an integer ${min}-${max}`);
  return n;
}

function num(v: string | undefined, flag: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${flag} ${v}: expected a number ${min}-${max}`);
  return n;
}

function stepList(v: string | undefined, flag: string): Step[] {
  if (v === undefined) return [];
  const out: Step[] = [];
  for (const s of v.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    if (!(STEPS as readonly string[]).includes(s)) throw new Error(`${flag} ${s}: unknown step (steps: ${STEPS.join(', ')})`);
    out.push(s as Step);
  }
  return out;
}

async function runChildStep(step: 'kube' | 'proxy' | 'sync' | 'forward', args: readonly string[], timeoutS: number, quick: boolean, scratch: string): Promise<ChildStep> {
  const script = join(ROOT, 'bench', step === 'sync' ? 'proxy-sync.ts' : `${step}.ts`);
  if (!existsSync(script)) return { status: 'not present' };
  const resultFile = join(scratch, `${step}-result.json`);
  const t0 = performance.now();
  const child = start(`bench/${step}.ts`, process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    env: { ...process.env, BENCH_RESULT_JSON: resultFile, ...(quick ? { BENCH_QUICK: '1' } : {}) },
  });
  const tail: string[] = [];
  const keep = (d: string, to: NodeJS.WriteStream): void => {
    to.write(d);
    for (const l of d.split('\n')) if (l !== '') tail.push(l);
    while (tail.length > 200) tail.shift();
  };
  child.proc.stdout?.setEncoding('utf8').on('data', (d: string) => keep(d, process.stdout));
  child.proc.stderr?.setEncoding('utf8').on('data', (d: string) => keep(d, process.stderr));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void child.stop('SIGINT', 5000);
  }, timeoutS * 1000);
  const code = await child.exited;
  clearTimeout(timer);
  await child.stop(); // anything left in its process group
  const seconds = round2((performance.now() - t0) / 1000);
  let result: unknown;
  try {
    result = JSON.parse(readFileSync(resultFile, 'utf8'));
  } catch {
    result = undefined;
  }
  return {
    status: timedOut ? 'timed out' : code === 0 ? 'ok' : 'failed',
    seconds,
    exitCode: code,
    result,
    outputTail: tail.slice(-60),
  };
}

function onPath(cmd: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':');
  return dirs.some((d) => d !== '' && existsSync(join(d, cmd)));
}

function resultPath(dir: string, date: string, name = hostname().replace(/[^A-Za-z0-9._-]/g, '_') || 'host'): string {
  let p = join(dir, `${date}-${name}.json`);
  for (let i = 2; existsSync(p) && i < 1000; i++) p = join(dir, `${date}-${name}-${i}.json`);
  return p;
}

/**
 * Measure what production runs: compiled JavaScript. `npm run build` writes dist/, and
 * bin/clusterdns.js runs dist/ whenever it is newer than every source file (tsx's
 * on-the-fly transform costs both CPU per query and memory).
 */
function buildDist(): void {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('npm run build failed: the benchmark measures the compiled server');
  process.stdout.write('bench: built dist/ (the server under test runs compiled JavaScript)\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      only: { type: 'string' },
      skip: { type: 'string' },
      kube: { type: 'boolean', default: false },
      'kube-timeout': { type: 'string', default: '300' },
      'kube-arg': { type: 'string', multiple: true },
      'proxy-rounds': { type: 'string' },
      'proxy-duration': { type: 'string' },
      'proxy-contenders': { type: 'string' },
      'proxy-timeout': { type: 'string', default: '900' },
      'proxy-arg': { type: 'string', multiple: true },
      'sync-timeout': { type: 'string', default: '1200' },
      'sync-arg': { type: 'string', multiple: true },
      'forward-timeout': { type: 'string', default: '1200' },
      'forward-arg': { type: 'string', multiple: true },
      quick: { type: 'boolean', default: false },
      tune: { type: 'boolean', default: false },
      services: { type: 'string', default: '2000' },
      headless: { type: 'string', default: '200' },
      endpoints: { type: 'string', default: '10' },
      namespaces: { type: 'string', default: '8' },
      queries: { type: 'string', default: '5000' },
      seed: { type: 'string', default: '1' },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      'latency-duration': { type: 'string' },
      rate: { type: 'string', default: '20000' },
      warmup: { type: 'string' },
      threads: { type: 'string', default: '1' },
      clients: { type: 'string', default: '8' },
      outstanding: { type: 'string', default: '128' },
      pin: { type: 'boolean', default: false },
      workers: { type: 'string' },
      memory: { type: 'string' },
      'no-forward': { type: 'boolean', default: false },
      'forward-names': { type: 'string', default: '300' },
      'forward-duration': { type: 'string' },
      out: { type: 'string', default: join(ROOT, 'bench', 'results') },
      'no-save': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      strict: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const quick = values.quick!;
  const only = stepList(values.only, '--only');
  const skip = stepList(values.skip, '--skip');
  // Default: dns only (about 2½ minutes). The full kube step takes about 2 more minutes and
  // loads the machine in its own way, so it runs when asked: --kube or --only kube.
  let steps: Step[] = only.length > 0 ? only : values.kube ? ['dns', 'kube'] : ['dns'];
  steps = steps.filter((s) => !skip.includes(s));
  if (values.tune) steps = ['dns'];
  try {
    buildDist();
  } catch (err) {
    // The dns step measures the compiled server and needs the build; the proxy step runs
    // bin/clusterdns.js, which falls back to the sources (through tsx) when dist/ is stale.
    if (steps.includes('dns') || steps.includes('kube') || steps.includes('forward')) throw err;
    process.stdout.write(`bench: ${(err as Error).message}; the proxy step runs the sources through tsx\n`);
  }

  const pin = values.pin!;
  const throughput: DnsperfSettings = {
    threads: int(values.threads, '--threads', 1, 16),
    clients: int(values.clients, '--clients', 1, 256),
    outstanding: int(values.outstanding, '--outstanding', 1, 10_000),
    timeoutS: 1,
    taskset: pin ? '0' : undefined,
  };
  // Fixed rate: room for 25 ms of backlog at 20,000 q/s, so a stalled server shows as
  // latency (or loss) instead of dnsperf quietly sending less (coordinated omission).
  const latency: DnsperfSettings = { threads: 1, clients: 4, outstanding: 500, timeoutS: 1, taskset: pin ? '0' : undefined };
  const dnsOpts: Omit<DnsBenchOptions, 'tmp'> = {
    root: ROOT,
    cluster: {
      services: int(values.services, '--services', 1, 50_000),
      headless: int(values.headless, '--headless', 0, 5_000),
      endpoints: int(values.endpoints, '--endpoints', 1, 1_000),
      namespaces: int(values.namespaces, '--namespaces', 1, 12),
      seed: int(values.seed, '--seed', 0, 2 ** 31 - 1),
    },
    queryLines: int(values.queries, '--queries', 100, 200_000),
    rounds: int(values.rounds ?? (quick ? '1' : '3'), '--rounds', 1, 20),
    durationS: num(values.duration ?? (quick ? '3' : '10'), '--duration', 1, 120),
    latencyDurationS: num(values['latency-duration'] ?? (quick ? '2' : '5'), '--latency-duration', 1, 120),
    rate: int(values.rate, '--rate', 100, 500_000),
    warmupS: num(values.warmup ?? (quick ? '1' : '3'), '--warmup', 0, 60),
    throughput,
    latency,
    serverCpus: pin ? '1' : undefined,
    workers: values.workers === undefined ? undefined : int(values.workers, '--workers', 1, 64),
    memory: values.memory === undefined ? undefined : memoryOption(values.memory),
    forward: !values['no-forward']!,
    forwardNames: int(values['forward-names'], '--forward-names', 1, 60_000),
    forwardDurationS: num(values['forward-duration'] ?? (quick ? '2' : '5'), '--forward-duration', 1, 120),
    spotPerKind: 6,
    log: (l) => process.stdout.write(`  ${l}\n`),
  };
  const kubeTimeout = int(values['kube-timeout'], '--kube-timeout', 1, 3600);
  const proxyTimeout = int(values['proxy-timeout'], '--proxy-timeout', 10, 3600);
  const proxyArgs = [
    ...(values['proxy-rounds'] !== undefined ? [`--rounds=${int(values['proxy-rounds'], '--proxy-rounds', 1, 50)}`] : []),
    ...(values['proxy-duration'] !== undefined ? [`--duration=${int(values['proxy-duration'], '--proxy-duration', 1, 120)}`] : []),
    ...(values['proxy-contenders'] !== undefined ? [`--contenders=${values['proxy-contenders']}`] : []),
    `--timeout=${Math.max(10, proxyTimeout - 15)}`,
    ...(values['proxy-arg'] ?? []),
  ];
  const syncTimeout = int(values['sync-timeout'], '--sync-timeout', 10, 24 * 3600);
  const syncArgs = [`--timeout=${Math.max(10, syncTimeout - 15)}`, ...(values['sync-arg'] ?? [])];
  const forwardTimeout = int(values['forward-timeout'], '--forward-timeout', 10, 24 * 3600);
  const forwardArgs = values['forward-arg'] ?? [];

  const scratch = mkdtempSync(join(tmpdir(), 'clusterdns-bench-'));
  const keep = values.keep!;
  installCleanup(() => {
    if (!keep) rmSync(scratch, { recursive: true, force: true });
  });

  if (steps.includes('dns')) {
    const missing = [
      ['knotd', 'knot'],
      ['dnsperf', 'dnsperf'],
      ['dig', 'bind9-dnsutils'],
      ['taskset', 'util-linux'],
    ].filter(([cmd]) => !onPath(cmd!) && (cmd !== 'taskset' || pin));
    if (missing.length > 0) {
      throw new Error(`the dns step needs ${missing.map(([c]) => c).join(', ')}: apt-get install ${missing.map(([, p]) => p).join(' ')}`);
    }
  }
  const [kv, dv] = await Promise.all([knotVersion(), dnsperfVersion()]);
  const machine: MachineFacts = await machineFacts(kv, dv);
  const started = new Date();
  const date = started.toISOString().slice(0, 10);
  process.stdout.write(
    `clusterdns bench ${started.toISOString()}: ${machine.nproc} × ${machine.cpuModel}, ${fmtInt(machine.memTotalMiB)} MiB, ` +
      `Node ${machine.node}, Knot ${machine.knot}, dnsperf ${machine.dnsperf}; load average ${machine.loadStart}\n`,
  );
  if (machine.loadStart > machine.nproc * 0.5) {
    process.stdout.write(`  warning: the machine is busy (load ${machine.loadStart} on ${machine.nproc} CPUs); figures will be noisy and low\n`);
  }
  process.stdout.write(`steps: ${steps.join(', ')}${keep ? `; scratch ${scratch}` : ''}\n`);

  let exit = 0;
  let dns: DnsBenchResult | undefined;
  let dnsError: string | undefined;
  let kube: ChildStep | undefined;
  let proxy: ChildStep | undefined;
  let sync: ChildStep | undefined;
  let forward: ChildStep | undefined;
  try {
    if (values.tune) {
      const grid: DnsperfSettings[] = [];
      for (const [threads, clients, outstanding] of [
        [1, 1, 128],
        [1, 4, 128],
        [1, 8, 128],
        [1, 16, 128],
        [1, 8, 200],
        [1, 16, 500],
        [2, 8, 128],
        [2, 16, 128],
      ] as const) {
        grid.push({ threads, clients, outstanding, timeoutS: 1, taskset: throughput.taskset });
      }
      process.stdout.write(`\ntuning: ${grid.length} dnsperf settings × 2 servers, ${quick ? 2 : 4} s each\n`);
      await runDnsTune({ ...dnsOpts, tmp: scratch }, grid, quick ? 2 : 4);
      return 0;
    }
    if (steps.includes('dns')) {
      process.stdout.write('\n== dns: clusterdns vs Knot DNS (dnsperf, loopback)\n');
      const t0 = performance.now();
      try {
        const dir = join(scratch, 'dns');
        mkdirSync(dir);
        dns = await runDnsBench({ ...dnsOpts, tmp: dir });
        process.stdout.write(`\n${dnsReport(dns)}\n`);
        process.stdout.write(`(dns step: ${Math.round((performance.now() - t0) / 1000)} s)\n`);
        if (values.strict && !(dns.goals.ratio.met && dns.goals.p99.met)) exit = 3;
      } catch (err) {
        dnsError = (err as Error).message;
        if (interrupted()) return 130;
        process.stderr.write(`\ndns step failed: ${dnsError}\n`);
        exit = 1;
      }
    }
    if (steps.includes('kube')) {
      process.stdout.write(`\n== kube: bench/kube.ts (at most ${kubeTimeout} s)\n`);
      kube = await runChildStep('kube', values['kube-arg'] ?? [], kubeTimeout, quick, scratch);
      process.stdout.write(`(kube step: ${kube.status}${kube.seconds !== undefined ? `, ${kube.seconds} s` : ''})\n`);
      if (kube.status === 'failed' || kube.status === 'timed out') exit = exit || 1;
    }
    if (steps.includes('proxy')) {
      process.stdout.write(`\n== proxy: bench/proxy.ts (at most ${proxyTimeout} s)\n`);
      if (process.getuid?.() !== 0) {
        process.stderr.write('proxy step: needs root (network namespaces, iptables/nftables): skipped\n');
        proxy = { status: 'skipped' };
        exit = exit || 1;
      } else {
        proxy = await runChildStep('proxy', proxyArgs, proxyTimeout, quick, scratch);
        process.stdout.write(`(proxy step: ${proxy.status}${proxy.seconds !== undefined ? `, ${proxy.seconds} s` : ''})\n`);
        if (proxy.status === 'failed' || proxy.status === 'timed out') exit = exit || 1;
        const r = proxy.result as { goalsMet?: unknown } | undefined;
        if (values.strict && r !== undefined && r.goalsMet === false) exit = exit || 3;
      }
    }
    if (steps.includes('sync')) {
      process.stdout.write(`\n== sync: bench/proxy-sync.ts (at most ${syncTimeout} s)\n`);
      if (process.getuid?.() !== 0) {
        process.stderr.write('sync step: needs root (a network namespace, iptables/nftables): skipped\n');
        sync = { status: 'skipped' };
        exit = exit || 1;
      } else {
        sync = await runChildStep('sync', syncArgs, syncTimeout, quick, scratch);
        process.stdout.write(`(sync step: ${sync.status}${sync.seconds !== undefined ? `, ${sync.seconds} s` : ''})\n`);
        if (sync.status === 'failed' || sync.status === 'timed out') exit = exit || 1;
        const r = sync.result as { goalsMet?: unknown } | undefined;
        if (values.strict && r !== undefined && r.goalsMet === false) exit = exit || 3;
      }
    }
    if (steps.includes('forward')) {
      process.stdout.write(`\n== forward: bench/forward.ts (at most ${forwardTimeout} s)\n`);
      forward = await runChildStep('forward', forwardArgs, forwardTimeout, quick, scratch);
      process.stdout.write(`(forward step: ${forward.status}${forward.seconds !== undefined ? `, ${forward.seconds} s` : ''})\n`);
      if (forward.status === 'failed' || forward.status === 'timed out') exit = exit || 1;
      const r = forward.result as { goalsMet?: unknown } | undefined;
      if (values.strict && r !== undefined && r.goalsMet === false) exit = exit || 3;
    }
  } finally {
    await stopAll();
  }
  machine.loadEnd = round2(loadavg()[0] ?? 0);

  const markdown: string[] = [];
  if (dns !== undefined) markdown.push(dnsMarkdown(dns, machine, date));
  if (kube !== undefined && kube.status === 'ok') {
    const r = kube.result as { markdown?: unknown } | undefined;
    if (r !== undefined && typeof r.markdown === 'string') markdown.push(r.markdown);
  }
  let proxyMarkdown: string | undefined;
  if (proxy !== undefined && proxy.result !== undefined) {
    const r = proxy.result as { markdown?: unknown };
    if (typeof r.markdown === 'string') markdown.push((proxyMarkdown = r.markdown));
  }
  let syncMarkdown: string | undefined;
  if (sync !== undefined && sync.result !== undefined) {
    const r = sync.result as { markdown?: unknown };
    if (typeof r.markdown === 'string') markdown.push((syncMarkdown = r.markdown));
  }
  let forwardMarkdown: string | undefined;
  if (forward !== undefined && forward.result !== undefined) {
    const r = forward.result as { markdown?: unknown };
    if (typeof r.markdown === 'string') markdown.push((forwardMarkdown = r.markdown));
  }
  const record = {
    date: started.toISOString(),
    argv: process.argv.slice(2),
    machine,
    steps,
    dns: dns ?? (dnsError !== undefined ? { error: dnsError } : undefined),
    kube,
    markdown: markdown.filter((m) => m !== proxyMarkdown && m !== syncMarkdown && m !== forwardMarkdown).join('\n\n'),
  };
  if (!values['no-save'] && (dns !== undefined || kube !== undefined || dnsError !== undefined)) {
    mkdirSync(values.out!, { recursive: true });
    const file = resultPath(values.out!, date);
    writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
    process.stdout.write(`\nresults: ${relative(process.cwd(), file) || file}\n`);
  }
  // The proxy step has a file of its own (its machine facts and tool versions inside).
  if (!values['no-save'] && proxy !== undefined && proxy.status !== 'skipped' && proxy.status !== 'not present') {
    mkdirSync(values.out!, { recursive: true });
    const file = resultPath(values.out!, date, 'proxy');
    const proxyRecord = { date: started.toISOString(), argv: process.argv.slice(2), machine, steps: ['proxy'], proxy, markdown: proxyMarkdown ?? '' };
    writeFileSync(file, `${JSON.stringify(proxyRecord, null, 2)}\n`);
    process.stdout.write(`\nresults: ${relative(process.cwd(), file) || file}\n`);
  }
  // So does the sync step.
  if (!values['no-save'] && sync !== undefined && sync.status !== 'skipped' && sync.status !== 'not present') {
    mkdirSync(values.out!, { recursive: true });
    const file = resultPath(values.out!, date, 'proxy-sync');
    const syncRecord = { date: started.toISOString(), argv: process.argv.slice(2), machine, steps: ['sync'], sync, markdown: syncMarkdown ?? '' };
    writeFileSync(file, `${JSON.stringify(syncRecord, null, 2)}\n`);
    process.stdout.write(`\nresults: ${relative(process.cwd(), file) || file}\n`);
  }
  // So does the forward step.
  if (!values['no-save'] && forward !== undefined && forward.status !== 'skipped' && forward.status !== 'not present') {
    mkdirSync(values.out!, { recursive: true });
    const file = resultPath(values.out!, date, 'forward');
    const forwardRecord = { date: started.toISOString(), argv: process.argv.slice(2), machine, steps: ['forward'], forward, markdown: forwardMarkdown ?? '' };
    writeFileSync(file, `${JSON.stringify(forwardRecord, null, 2)}\n`);
    process.stdout.write(`\nresults: ${relative(process.cwd(), file) || file}\n`);
  }
  process.stdout.write(
    `\nmachine: ${table(
      ['nproc', 'CPU', 'memory', 'kernel', 'node', 'knot', 'dnsperf', 'load start/end'],
      [[String(machine.nproc), machine.cpuModel, `${fmtInt(machine.memTotalMiB)} MiB`, machine.kernel, machine.node, machine.knot, machine.dnsperf, `${machine.loadStart}/${machine.loadEnd}`]],
    ).replace(/\n/g, '\n         ')}\n`,
  );
  if (markdown.length > 0) process.stdout.write(`\n---- README snippet ----\n${markdown.join('\n\n')}\n---- end ----\n`);
  return exit;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    await stopAll().catch(() => undefined);
    process.exitCode = 1;
  },
);

function memoryOption(v: string): 'lean' | 'fast' {
  if (v !== 'lean' && v !== 'fast') throw new Error(`--memory ${v}: must be lean or fast`);
  return v;
}
