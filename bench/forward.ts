/**
 * Forwarding benchmark (issue 13 §1, "Forwarding speed"): `npm run bench -- --only forward`,
 * or alone:
 *
 *   node --import tsx bench/forward.ts [--quick] [--rounds N] [--duration S] ...   (--help)
 *
 * One Knot DNS (one UDP worker) is the upstream of both forwarders, authoritative for
 * `bench.test` with `--names` names (default 10,000) and a wildcard `*.w.bench.test`.
 * Contenders, each one process, forwarding `bench.test` to that Knot:
 *
 *   clusterdns  the compiled server (`bin/clusterdns.js serve --upstream`, default
 *               configuration) with a generated cluster zone, so the same process also
 *               gives its own authoritative rate
 *   unbound     Unbound with one thread, validation off (iterator only, no trust anchor)
 *   baseline    (with --baseline-root DIR) another clusterdns build, e.g. a copy of the
 *               previous commit's bin/ and dist/, for before/after in the same run
 *
 * Per round, the contenders alternating (their order reversed every other round), each
 * run `dnsperf -c 4 -T 1 -q 100` for `--duration` seconds:
 *
 *   hits    the --names names, all cached (one pass over them just before, unrecorded;
 *           clusterdns's cache misses during the run are read from /metrics and shown)
 *   p99     right after, the hits at a fixed `--rate` (default 10,000 q/s, `-Q`, every
 *           latency kept), for `--latency-duration` seconds
 *   auth    clusterdns only: A queries for its own cluster's services (its authoritative rate)
 *   misses  (after every contender's hits) every name new (never asked before in the whole
 *           bench), NXDOMAIN from Knot
 *
 * Then memory, in one clusterdns: a stream of unique names under the wildcard (positive
 * answers, cached for 30 s) for `--rss-duration` seconds without a cache (the base: what the
 * process holds under that load anyway), then, after a reload (SIGHUP) that turns on a cache
 * bounded only by bytes (`cache.maxBytes` `--rss-max-bytes`, maxEntries 10,000,000), the
 * same stream with new names; the resident set is sampled every 200 ms.
 *
 * Ratios are taken per round (side by side) and their median and spread reported, with the
 * goals of issue 13: hits ≥ 0.6 × Unbound and ≥ 0.9 × our authoritative rate, misses ≥ 0.8 ×
 * Unbound, p99 of hits at 10,000 q/s under 1.5 ms, peak resident set at most the no-cache
 * peak + maxBytes.
 * With $BENCH_RESULT_JSON set the results go there as JSON (with a `markdown` field);
 * bench/run.ts saves them as bench/results/<date>-forward.json. Every child process is
 * stopped at the end, on failure and on SIGINT.
 */
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { clusterQueries, generateCluster, writeManifests, writeQueryFile } from './lib/cluster.js';
import { dnsperfVersion, runDnsperf, type DnsperfResult, type DnsperfSettings } from './lib/dnsperf.js';
import { fmtInt, fmtMs, machineFacts, mdTable, median, round2, table, type MachineFacts } from './lib/machine.js';
import { CLK_TCK, cpuTicks, installCleanup, run, sleep, statusKiB, stopAll } from './lib/proc.js';
import { knotVersion, startClusterdns, startKnot, type ServerHandle } from './lib/servers.js';
import { startUnbound, unboundVersion, UNBOUND } from './lib/unbound.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const ZONE = 'bench.test';
const WILD = `w.${ZONE}`;

export const GOALS = { hitsVsUnbound: 0.6, hitsVsAuth: 0.9, missesVsUnbound: 0.8, p99Ms: 1.5 } as const;

const USAGE = `usage: node --import tsx bench/forward.ts [flags]     (or: npm run bench -- --only forward)

  --rounds N            alternating rounds (default 3; --quick 1)
  --duration S          each max-throughput run (default 10; --quick 3)
  --names N             names in bench.test, all cached for the hit runs (default 10000)
  --rate Q              fixed rate of the latency runs, queries/s (default 10000)
  --latency-duration S  each fixed-rate run (default 5; --quick 2)
  --rss-duration S      the unique-name stream of the memory run (default 20; --quick 5; 0: no memory run)
  --rss-max-bytes B     cache.maxBytes of the memory run (default 16777216)
  --root DIR            the clusterdns to measure (default: this checkout; bin/clusterdns.js runs dist/
                        when \`npm run build\` is newer than src/, as bench/run.ts makes sure)
  --baseline-root DIR   also measure the clusterdns in DIR (its bin/clusterdns.js and dist/)
  --no-unbound          leave Unbound out
  --clients N --outstanding N --threads N   dnsperf -c/-q/-T (default 4/100/1)
  --keep                keep the scratch directory
  --quick               1 round of 3 s (also BENCH_QUICK=1)
  -h, --help`;

type Key = 'clusterdns' | 'unbound' | 'baseline';
type Kind = 'hits' | 'auth' | 'misses' | 'p99';

interface Contender {
  readonly key: Key;
  readonly handle: ServerHandle;
  /** clusterdns: the metrics port. */
  readonly httpPort: number | undefined;
}

interface RunRecord {
  contender: Key;
  round: number;
  kind: Kind;
  qps: number;
  completed: number;
  lost: number;
  avgMs: number;
  p50Ms?: number | undefined;
  p99Ms?: number | undefined;
  p999Ms?: number | undefined;
  serverCpuPct: number;
  cpuUsPerQuery: number;
  clientCpuPct: number;
  rcodes: Record<string, number>;
  load: number;
  /** clusterdns hit runs: cache misses during the run (should be 0). */
  cacheMisses?: number | undefined;
  /** misses runs: queries sent beyond the file's unique names (then not all were new). */
  repeated?: number | undefined;
}

interface Spread {
  median: number;
  min: number;
  max: number;
  perRound: number[];
}

function spread(xs: readonly number[]): Spread {
  const ok = xs.filter((x) => Number.isFinite(x));
  return { median: round3(median(ok)), min: round3(Math.min(...ok)), max: round3(Math.max(...ok)), perRound: xs.map(round3) };
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

function int(v: string | undefined, flag: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} ${v}: expected an integer ${min}-${max}`);
  return n;
}

// ---------------------------------------------------------------- files

function zoneText(names: number): string {
  const out = [
    `$ORIGIN ${ZONE}.`,
    '$TTL 300',
    `${ZONE}. 300 IN SOA ns.${ZONE}. hostmaster.${ZONE}. 1 7200 1800 86400 60`,
    `${ZONE}. 300 IN NS ns.${ZONE}.`,
    `ns.${ZONE}. 300 IN A 127.0.0.1`,
  ];
  // 198.18.0.0/15: the benchmarking range (RFC 2544).
  for (let i = 0; i < names; i++) out.push(`${hostName(i)}. 300 IN A 198.18.${(i + 1) >> 8}.${(i + 1) & 255}`);
  // Unique names with a positive answer of 4 records (the memory run).
  for (let i = 1; i <= 4; i++) out.push(`*.${WILD}. 300 IN A 198.19.0.${i}`);
  return `${out.join('\n')}\n`;
}

const hostName = (i: number): string => `host-${String(i).padStart(5, '0')}.${ZONE}`;

/** `count` lines of names never used before (`tag` makes them unique across runs). */
function uniqueFile(path: string, tag: string, count: number, parent: string): void {
  const fd = openSync(path, 'w');
  try {
    const chunk: string[] = [];
    for (let i = 0; i < count; i++) {
      chunk.push(`${tag}-${i.toString(36)}.${parent} A`);
      if (chunk.length === 10_000) {
        writeSync(fd, `${chunk.join('\n')}\n`);
        chunk.length = 0;
      }
    }
    if (chunk.length > 0) writeSync(fd, `${chunk.join('\n')}\n`);
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------- measuring

async function metric(c: Contender, name: string): Promise<number | undefined> {
  if (c.httpPort === undefined) return undefined;
  try {
    const text = await (await fetch(`http://127.0.0.1:${c.httpPort}/metrics`, { signal: AbortSignal.timeout(3000) })).text();
    let sum: number | undefined;
    for (const line of text.split('\n')) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  } catch {
    return undefined;
  }
}

/** One pass over `file` (unrecorded): every name asked once. */
async function warm(c: Contender, file: string, o: Options): Promise<void> {
  const r = await run('dnsperf', ['-s', c.handle.host, '-p', String(c.handle.port), '-d', file, '-n', '1', '-c', String(o.dnsperf.clients), '-q', String(o.dnsperf.outstanding), '-t', '2'], {
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`warm-up of ${c.key} failed: ${r.stderr.slice(0, 500)}`);
}

async function measure(o: Options, c: Contender, round: number, kind: Kind, file: string, durationS: number, rate?: number): Promise<RunRecord> {
  const pids = c.handle.pids();
  const load = round2(loadavg()[0] ?? 0);
  const misses0 = kind === 'hits' || kind === 'p99' ? await metric(c, 'clusterdns_cache_misses_total') : undefined;
  const t0 = performance.now();
  const c0 = cpuTicks(pids);
  let r: DnsperfResult;
  try {
    r = await runDnsperf({
      host: c.handle.host,
      port: c.handle.port,
      file,
      durationS,
      settings: rate === undefined ? o.dnsperf : o.latency,
      rate,
      latencies: rate !== undefined,
      outDir: o.tmp,
    });
  } catch (err) {
    if (c.handle.child.exitedAlready()) throw new Error(`${c.key} died during the run:\n${c.handle.tail()}`);
    throw err;
  }
  if (c.handle.child.exitedAlready()) throw new Error(`${c.key} died during the run:\n${c.handle.tail()}`);
  const c1 = cpuTicks(pids);
  const wall = (performance.now() - t0) / 1000;
  const misses1 = misses0 === undefined ? undefined : await metric(c, 'clusterdns_cache_misses_total');
  return {
    contender: c.key,
    round,
    kind,
    qps: r.qps,
    completed: r.completed,
    lost: r.lost,
    avgMs: r.avgLatencyMs,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    p999Ms: r.p999Ms,
    serverCpuPct: ((c1 - c0) / CLK_TCK / wall) * 100,
    cpuUsPerQuery: r.completed > 0 ? ((c1 - c0) / CLK_TCK / r.completed) * 1e6 : NaN,
    clientCpuPct: r.clientCpuPct,
    rcodes: r.rcodes,
    load,
    cacheMisses: misses0 === undefined || misses1 === undefined ? undefined : misses1 - misses0,
  };
}

function vmRssKiB(pids: readonly number[]): number {
  return statusKiB(pids, 'VmRSS');
}

// ---------------------------------------------------------------- servers

/** The metrics port from the banner clusterdns printed (`…, http on 127.0.0.1:PORT`). */
function httpPortOf(h: ServerHandle): number | undefined {
  const m = /http on [^\s:]+:(\d+)/.exec(h.tail());
  return m === null ? undefined : Number(m[1]);
}

async function startCd(o: Options, key: 'clusterdns' | 'baseline', root: string, knot: ServerHandle, config: string): Promise<Contender> {
  const handle = await startClusterdns({ root, zonesDir: o.zonesDir, upstream: `${knot.host}:${knot.port}`, config, label: key });
  return { key, handle, httpPort: httpPortOf(handle) };
}

// ---------------------------------------------------------------- main

interface Options {
  tmp: string;
  zonesDir: string;
  rounds: number;
  durationS: number;
  names: number;
  rate: number;
  latencyDurationS: number;
  rssDurationS: number;
  rssMaxBytes: number;
  root: string;
  baselineRoot: string | undefined;
  unbound: boolean;
  dnsperf: DnsperfSettings;
  latency: DnsperfSettings;
}

function cmd(s: DnsperfSettings, rate?: number): string {
  return `dnsperf -T ${s.threads} -c ${s.clients} -q ${s.outstanding}${rate !== undefined ? ` -Q ${rate}` : ''}`;
}

async function main(): Promise<number> {
  const { values: a } = parseArgs({
    args: process.argv.slice(2),
    options: {
      rounds: { type: 'string' },
      duration: { type: 'string' },
      names: { type: 'string', default: '10000' },
      rate: { type: 'string', default: '10000' },
      'latency-duration': { type: 'string' },
      'rss-duration': { type: 'string' },
      'rss-max-bytes': { type: 'string', default: String(16 * 1024 * 1024) },
      root: { type: 'string', default: ROOT },
      'baseline-root': { type: 'string' },
      'no-unbound': { type: 'boolean', default: false },
      clients: { type: 'string', default: '4' },
      outstanding: { type: 'string', default: '100' },
      threads: { type: 'string', default: '1' },
      keep: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: process.env['BENCH_QUICK'] === '1' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (a.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const quick = a.quick!;
  const tmp = mkdtempSync(join(tmpdir(), 'clusterdns-forward-'));
  installCleanup(() => {
    if (!a.keep) rmSync(tmp, { recursive: true, force: true });
  });
  const o: Options = {
    tmp,
    zonesDir: join(tmp, 'zones'),
    rounds: int(a.rounds ?? (quick ? '1' : '3'), '--rounds', 1, 20),
    durationS: int(a.duration ?? (quick ? '3' : '10'), '--duration', 1, 120),
    names: int(a.names, '--names', 100, 60_000),
    rate: int(a.rate, '--rate', 100, 200_000),
    latencyDurationS: int(a['latency-duration'] ?? (quick ? '2' : '5'), '--latency-duration', 1, 120),
    rssDurationS: int(a['rss-duration'] ?? (quick ? '5' : '20'), '--rss-duration', 0, 600),
    rssMaxBytes: int(a['rss-max-bytes'], '--rss-max-bytes', 1 << 20, 2 ** 34),
    root: a.root!,
    baselineRoot: a['baseline-root'],
    unbound: !a['no-unbound'] && existsSync(UNBOUND),
    dnsperf: { threads: int(a.threads, '--threads', 1, 16), clients: int(a.clients, '--clients', 1, 256), outstanding: int(a.outstanding, '--outstanding', 1, 10_000), timeoutS: 1 },
    // Fixed rate: room for backlog, so a stall shows as latency, not as fewer queries sent.
    latency: { threads: 1, clients: 4, outstanding: 500, timeoutS: 1 },
  };
  if (o.baselineRoot !== undefined && !existsSync(join(o.baselineRoot, 'bin', 'clusterdns.js'))) throw new Error(`--baseline-root ${o.baselineRoot}: no bin/clusterdns.js there`);
  const log = (l: string): void => void process.stdout.write(`  ${l}\n`);
  const t0 = performance.now();
  const [kv, dv, uv] = await Promise.all([knotVersion(), dnsperfVersion(), o.unbound ? unboundVersion() : Promise.resolve('n/a')]);
  const machine: MachineFacts = await machineFacts(kv, dv);
  process.stdout.write(
    `forward bench: ${machine.nproc} × ${machine.cpuModel}, Node ${machine.node}, Knot ${kv}, Unbound ${uv}, dnsperf ${dv}; load ${machine.loadStart}\n`,
  );

  // Files: Knot's zone, the hit names, the cluster and its queries, configurations.
  const hitsFile = join(tmp, 'hits.txt');
  writeFileSync(hitsFile, `${Array.from({ length: o.names }, (_, i) => `${hostName(i)} A`).sort(() => Math.random() - 0.5).join('\n')}\n`);
  const cluster = generateCluster({ services: 2000, headless: 0, endpoints: 1, namespaces: 8, seed: 1 });
  writeManifests(cluster, o.zonesDir);
  const authFile = join(tmp, 'auth.txt');
  writeQueryFile(authFile, clusterQueries(cluster, 10_000, { clusterA: 1, headlessA: 0, srv: 0, nxdomain: 0 }, 1));
  // TTL 300 as Knot's, so the hit names stay cached for the whole run (default 30 s).
  const cdConfig = join(tmp, 'clusterdns.yaml');
  writeFileSync(cdConfig, 'cache:\n  maxTTL: 300\n');
  const rssConfig = join(tmp, 'clusterdns-rss.yaml');
  writeFileSync(rssConfig, `cache:\n  maxTTL: 30\n  maxEntries: 10000000\n  maxBytes: ${o.rssMaxBytes}\n`);
  const noCacheConfig = join(tmp, 'clusterdns-nocache.yaml');
  writeFileSync(noCacheConfig, 'cache:\n  maxEntries: 0\n');

  mkdirSync(join(tmp, 'knot'));
  const knot = await startKnot({ dir: join(tmp, 'knot'), zones: [{ name: ZONE, text: zoneText(o.names) }] });
  log(`knot: 127.0.0.1:${knot.port} (1 UDP worker), ${fmtInt(o.names)} names in ${ZONE} and *.${WILD}`);
  const contenders: Contender[] = [];
  contenders.push(await startCd(o, 'clusterdns', o.root, knot, cdConfig));
  if (o.baselineRoot !== undefined) contenders.push(await startCd(o, 'baseline', o.baselineRoot, knot, cdConfig));
  if (o.unbound) {
    mkdirSync(join(tmp, 'unbound'));
    const h = await startUnbound({ dir: join(tmp, 'unbound'), zone: ZONE, upstream: { host: knot.host, port: knot.port }, probe: hostName(0) });
    contenders.push({ key: 'unbound', handle: h, httpPort: undefined });
  }
  for (const c of contenders) log(`${c.key}: 127.0.0.1:${c.handle.port} (pid ${c.handle.child.pid})${c.httpPort !== undefined ? `, metrics on :${c.httpPort}` : ''}`);

  const runs: RunRecord[] = [];
  const show = (r: RunRecord): void =>
    log(
      `round ${r.round} ${r.kind.padEnd(6)} ${r.contender.padEnd(10)} ${fmtInt(r.qps).padStart(7)} q/s  lost ${r.lost}  CPU ${r.serverCpuPct.toFixed(0)}% ` +
        `${r.cpuUsPerQuery.toFixed(1)} µs/q  dnsperf ${r.clientCpuPct.toFixed(0)}%` +
        (r.p99Ms !== undefined ? `  p50 ${fmtMs(r.p50Ms)} p99 ${fmtMs(r.p99Ms)} ms` : '') +
        (r.cacheMisses !== undefined ? `  cache misses ${r.cacheMisses}` : '') +
        (r.repeated ? `  (${r.repeated} names repeated)` : '') +
        `  load ${r.load}`,
    );
  let uniq = 0;
  // Warm every cache once, and the JIT.
  for (const c of contenders) {
    await warm(c, hitsFile, o);
    await measure(o, c, 0, 'hits', hitsFile, quick ? 1 : 3);
  }
  for (let round = 1; round <= o.rounds; round++) {
    const order = round % 2 === 1 ? contenders : [...contenders].reverse();
    for (const c of order) {
      await warm(c, hitsFile, o);
      const r = await measure(o, c, round, 'hits', hitsFile, o.durationS);
      runs.push(r);
      show(r);
      // Latency of hits at a fixed rate, in the same steady state (before the misses,
      // whose churn of cache entries leaves the garbage collector work to do).
      const l = await measure(o, c, round, 'p99', hitsFile, o.latencyDurationS, o.rate);
      runs.push(l);
      show(l);
      if (c.key !== 'unbound') {
        const au = await measure(o, c, round, 'auth', authFile, o.durationS);
        runs.push(au);
        show(au);
      }
    }
    for (const c of order) {
      // Every name new: more names than the fastest contender can ask in the run.
      const count = Math.max(200_000, o.durationS * 60_000);
      const file = join(tmp, `miss-${uniq}.txt`);
      uniqueFile(file, `m${uniq++}`, count, ZONE);
      const r = await measure(o, c, round, 'misses', file, o.durationS);
      rmSync(file, { force: true });
      const sent = r.completed + r.lost;
      if (sent > count) r.repeated = sent - count;
      runs.push(r);
      show(r);
    }
  }
  const peakRss = Object.fromEntries(contenders.map((c) => [c.key, round2(vmHwmKiB(c.handle.pids()) / 1024)]));
  for (const c of contenders) await c.handle.stop();

  // Memory under a stream of unique names.
  let memory: Record<string, unknown> | undefined;
  if (o.rssDurationS > 0) memory = await memoryRun(o, knot, rssConfig, noCacheConfig, hitsFile, log);
  await knot.stop();

  // Summaries and ratios per round.
  const keys = contenders.map((c) => c.key);
  const get = (key: Key, kind: Kind, round: number): RunRecord | undefined => runs.find((r) => r.contender === key && r.kind === kind && r.round === round);
  const rounds = Array.from({ length: o.rounds }, (_, i) => i + 1);
  const per = (f: (round: number) => number | undefined): number[] => rounds.map((r) => f(r) ?? NaN);
  const qps = (key: Key, kind: Kind) => per((r) => get(key, kind, r)?.qps);
  const ratio = (x: number[], y: number[]): number[] => x.map((v, i) => v / y[i]!);
  const summary = Object.fromEntries(
    keys.map((k) => [
      k,
      Object.fromEntries(
        (['hits', 'auth', 'misses', 'p99'] as Kind[])
          .filter((kind) => runs.some((r) => r.contender === k && r.kind === kind))
          .map((kind) => [
            kind,
            {
              qps: spread(qps(k, kind)),
              cpuUsPerQuery: spread(per((r) => get(k, kind, r)?.cpuUsPerQuery)),
              ...(kind === 'p99' ? { p50Ms: spread(per((r) => get(k, kind, r)?.p50Ms)), p99Ms: spread(per((r) => get(k, kind, r)?.p99Ms)) } : {}),
            },
          ]),
      ),
    ]),
  );
  const ratios: Record<string, Spread> = {
    'hits clusterdns/auth clusterdns': spread(ratio(qps('clusterdns', 'hits'), qps('clusterdns', 'auth'))),
  };
  if (o.unbound) {
    ratios['hits clusterdns/unbound'] = spread(ratio(qps('clusterdns', 'hits'), qps('unbound', 'hits')));
    ratios['misses clusterdns/unbound'] = spread(ratio(qps('clusterdns', 'misses'), qps('unbound', 'misses')));
    ratios['auth clusterdns/hits unbound'] = spread(ratio(qps('clusterdns', 'auth'), qps('unbound', 'hits')));
  }
  if (o.baselineRoot !== undefined) {
    ratios['hits clusterdns/baseline'] = spread(ratio(qps('clusterdns', 'hits'), qps('baseline', 'hits')));
    ratios['misses clusterdns/baseline'] = spread(ratio(qps('clusterdns', 'misses'), qps('baseline', 'misses')));
    ratios['hits baseline/auth baseline'] = spread(ratio(qps('baseline', 'hits'), qps('baseline', 'auth')));
    if (o.unbound) {
      ratios['hits baseline/unbound'] = spread(ratio(qps('baseline', 'hits'), qps('unbound', 'hits')));
      ratios['misses baseline/unbound'] = spread(ratio(qps('baseline', 'misses'), qps('unbound', 'misses')));
    }
  }
  const p99 = spread(per((r) => get('clusterdns', 'p99', r)?.p99Ms));
  const goal = (name: string, value: number | undefined, target: string, met: boolean | undefined) => ({ name, value, target, met });
  const mem = memory as { growthMiB?: number; maxBytesMiB?: number } | undefined;
  const goals = [
    goal('hits ≥ 0.6 × Unbound', ratios['hits clusterdns/unbound']?.median, `≥ ${GOALS.hitsVsUnbound}`, o.unbound ? ratios['hits clusterdns/unbound']!.median >= GOALS.hitsVsUnbound : undefined),
    goal('hits ≥ 0.9 × our authoritative rate', ratios['hits clusterdns/auth clusterdns']!.median, `≥ ${GOALS.hitsVsAuth}`, ratios['hits clusterdns/auth clusterdns']!.median >= GOALS.hitsVsAuth),
    goal('misses ≥ 0.8 × Unbound', ratios['misses clusterdns/unbound']?.median, `≥ ${GOALS.missesVsUnbound}`, o.unbound ? ratios['misses clusterdns/unbound']!.median >= GOALS.missesVsUnbound : undefined),
    goal(`p99 of hits at ${fmtInt(o.rate)} q/s`, p99.median, `< ${GOALS.p99Ms} ms`, p99.median < GOALS.p99Ms),
    goal(
      'peak RSS ≤ no-cache peak + maxBytes (unique names)',
      mem?.growthMiB,
      `≤ ${mem?.maxBytesMiB ?? 'n/a'} MiB growth`,
      mem?.growthMiB === undefined || mem.maxBytesMiB === undefined ? undefined : mem.growthMiB <= mem.maxBytesMiB,
    ),
  ];
  machine.loadEnd = round2(loadavg()[0] ?? 0);

  // Report.
  const lines: string[] = [];
  lines.push(`Per round, queries/s (${cmd(o.dnsperf)}, ${o.durationS} s each; p99 runs ${cmd(o.latency, o.rate)}, ${o.latencyDurationS} s)`);
  const head = ['round', ...keys.flatMap((k) => (['hits', 'auth', 'misses'] as Kind[]).filter((kind) => summary[k]![kind] !== undefined).map((kind) => `${k} ${kind}`))];
  lines.push(
    table(
      head,
      rounds.map((r) => [String(r), ...keys.flatMap((k) => (['hits', 'auth', 'misses'] as Kind[]).filter((kind) => summary[k]![kind] !== undefined).map((kind) => fmtInt(get(k, kind, r)?.qps)))]),
    ),
  );
  lines.push('');
  lines.push('Medians (min–max) over rounds');
  const fmtS = (s: Spread | undefined, f: (x: number) => string): string => (s === undefined ? 'n/a' : `${f(s.median)} (${f(s.min)}–${f(s.max)})`);
  const sm = (k: Key, kind: Kind): Record<string, Spread> | undefined => summary[k]![kind] as Record<string, Spread> | undefined;
  lines.push(
    table(
      ['contender', 'hits q/s', 'hits µs/q', 'auth q/s', 'auth µs/q', 'misses q/s', 'misses µs/q', `p99 ms @${fmtInt(o.rate)}`, 'peak RSS MiB'],
      keys.map((k) => [
        k,
        fmtS(sm(k, 'hits')?.qps, fmtInt),
        fmtS(sm(k, 'hits')?.cpuUsPerQuery, (x) => x.toFixed(1)),
        fmtS(sm(k, 'auth')?.qps, fmtInt),
        fmtS(sm(k, 'auth')?.cpuUsPerQuery, (x) => x.toFixed(1)),
        fmtS(sm(k, 'misses')?.qps, fmtInt),
        fmtS(sm(k, 'misses')?.cpuUsPerQuery, (x) => x.toFixed(1)),
        fmtS(sm(k, 'p99')?.p99Ms, (x) => x.toFixed(2)),
        String(peakRss[k]),
      ]),
    ),
  );
  lines.push('');
  lines.push('Ratios per round: median (min–max) [rounds]');
  for (const [name, s] of Object.entries(ratios)) lines.push(`  ${name.padEnd(32)} ${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)}) [${s.perRound.map((x) => x.toFixed(2)).join(', ')}]`);
  if (memory !== undefined) {
    const m = memory as { maxBytesMiB: number; growthMiB: number; medianGrowthMiB: number; control: Record<string, number>; bounded: Record<string, number> };
    lines.push('');
    lines.push(
      `Memory, ${o.rssDurationS} s of unique names (4 records each, cached 30 s), one process: no cache: RSS peak ${m.control.peakMiB} MiB, median ${m.control.medianMiB} ` +
        `(${fmtInt(m.control.names)} names); then cache.maxBytes ${m.maxBytesMiB} MiB: peak ${m.bounded.peakMiB} MiB, median ${m.bounded.medianMiB} (${fmtInt(m.bounded.names)} names, ` +
        `${fmtInt(m.bounded.cacheEntries)} entries ${m.bounded.cacheMiB} MiB charged, ${fmtInt(m.bounded.evictions)} evictions): ` +
        `${m.growthMiB} MiB over the no-cache peak, ${m.medianGrowthMiB} MiB over its median`,
    );
  }
  lines.push('');
  for (const g of goals) lines.push(`goal ${g.name.padEnd(48)} ${g.value === undefined ? 'n/a' : round3(g.value)}  (${g.target}): ${g.met === undefined ? 'n/a' : g.met ? 'met' : 'NOT met'}`);
  const report = lines.join('\n');
  process.stdout.write(`\n${report}\n`);

  const md = [
    `### Forwarding (${new Date().toISOString().slice(0, 10)})`,
    '',
    `\`npm run bench -- --only forward\` on ${machine.nproc} × ${machine.cpuModel}, Node ${machine.node}, Knot ${kv}, Unbound ${uv} (1 thread, no validation), ` +
      `dnsperf ${dv} (\`${cmd(o.dnsperf)}\`), loopback, load ${machine.loadStart}–${machine.loadEnd}; ${o.rounds} alternating rounds of ${o.durationS} s; ` +
      `${fmtInt(o.names)} names cached for hits, every name new (NXDOMAIN) for misses.`,
    '',
    mdTable(
      ['contender', 'hits q/s', 'auth q/s', 'misses q/s', 'hits CPU µs/q', 'misses CPU µs/q', `p99 ms @ ${fmtInt(o.rate)} q/s`],
      keys.map((k) => [
        k,
        fmtS(sm(k, 'hits')?.qps, fmtInt),
        fmtS(sm(k, 'auth')?.qps, fmtInt),
        fmtS(sm(k, 'misses')?.qps, fmtInt),
        fmtS(sm(k, 'hits')?.cpuUsPerQuery, (x) => x.toFixed(1)),
        fmtS(sm(k, 'misses')?.cpuUsPerQuery, (x) => x.toFixed(1)),
        fmtS(sm(k, 'p99')?.p99Ms, (x) => x.toFixed(2)),
      ]),
    ),
    '',
    ...Object.entries(ratios).map(([name, s]) => `- ${name}: **${s.median.toFixed(2)}** (rounds ${s.perRound.map((x) => x.toFixed(2)).join(', ')})`),
    ...(mem === undefined
      ? []
      : [
          `- memory, ${o.rssDurationS} s of unique names then the same with cache.maxBytes ${mem.maxBytesMiB} MiB (one process, reloaded): ` +
            `peak RSS +${mem.growthMiB} MiB, median +${(memory as { medianGrowthMiB: number }).medianGrowthMiB} MiB`,
        ]),
    ...goals.map((g) => `- goal ${g.name} (${g.target}): ${g.value === undefined ? 'n/a' : round3(g.value)}, ${g.met === undefined ? 'n/a' : g.met ? 'met' : '**not met**'}`),
  ].join('\n');
  const seconds = Math.round((performance.now() - t0) / 1000);
  const result = {
    date: new Date().toISOString(),
    machine,
    versions: { knot: kv, unbound: uv, dnsperf: dv, node: process.versions.node },
    options: { ...o, tmp: undefined, zonesDir: undefined },
    commands: { throughput: cmd(o.dnsperf), latency: cmd(o.latency, o.rate) },
    runs,
    summary,
    ratios,
    memory,
    peakRssMiB: peakRss,
    goals,
    goalsMet: goals.every((g) => g.met !== false),
    seconds,
    markdown: md,
  };
  process.stdout.write(`\n${md}\n\n(forward step: ${seconds} s)\n`);
  const jsonPath = process.env['BENCH_RESULT_JSON'];
  if (jsonPath !== undefined && jsonPath !== '') writeFileSync(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
  return 0;
}

function vmHwmKiB(pids: readonly number[]): number {
  return statusKiB(pids, 'VmHWM');
}

/** Feed `c` `durationS` seconds of unique names under the wildcard; its resident set sampled every 200 ms. */
async function streamRss(o: Options, c: Contender, tag: string): Promise<Record<string, number | number[] | Record<string, number>>> {
  const pids = c.handle.pids();
  const before = vmRssKiB(pids);
  const count = Math.max(200_000, o.rssDurationS * 60_000);
  const file = join(o.tmp, `rss-names-${tag}.txt`);
  uniqueFile(file, tag, count, WILD);
  let peak = before;
  let sampling = true;
  const samples: number[] = [];
  const sampler = (async () => {
    while (sampling) {
      const v = vmRssKiB(pids);
      samples.push(v);
      if (v > peak) peak = v;
      await sleep(200);
    }
  })();
  const r = await runDnsperf({ host: c.handle.host, port: c.handle.port, file, durationS: o.rssDurationS, settings: o.dnsperf, outDir: o.tmp });
  sampling = false;
  await sampler;
  rmSync(file, { force: true });
  const end = vmRssKiB(pids);
  const mib = (k: number): number => round2(k / 1024);
  return {
    names: r.completed,
    qps: r.qps,
    rcodes: r.rcodes,
    beforeMiB: mib(before),
    peakMiB: mib(peak),
    medianMiB: mib(median(samples)),
    endMiB: mib(end),
    cacheEntries: (await metric(c, 'clusterdns_cache_entries')) ?? NaN,
    cacheMiB: round2(((await metric(c, 'clusterdns_cache_bytes')) ?? NaN) / 1048576),
    evictions: (await metric(c, 'clusterdns_cache_evictions_total')) ?? NaN,
    rssSamplesMiB: samples.filter((_, i) => i % 5 === 0).map(mib),
  };
}

/**
 * Memory under a stream of unique names, in one process: first without a cache (the
 * base: what the process holds under this load anyway, young generation and buffers at
 * their high-water mark), then, after a reload (SIGHUP) that turns on a cache bounded only
 * by bytes, the same stream again with new names. The goal: the second peak ≤ the first +
 * maxBytes.
 */
async function memoryRun(o: Options, knot: ServerHandle, config: string, noCache: string, hitsFile: string, log: (l: string) => void): Promise<Record<string, unknown>> {
  const bounded = readFileSync(config, 'utf8');
  const live = join(o.tmp, 'clusterdns-memory.yaml');
  writeFileSync(live, readFileSync(noCache, 'utf8'));
  const c = await startCd(o, 'clusterdns', o.root, knot, live);
  try {
    // Warm-up: code compiled, buffers at their working size.
    await warm(c, hitsFile, o);
    await runDnsperf({ host: c.handle.host, port: c.handle.port, file: hitsFile, durationS: 3, settings: o.dnsperf, outDir: o.tmp });
    const idleMiB = round2(vmRssKiB(c.handle.pids()) / 1024);
    const control = await streamRss(o, c, 'c');
    log(`memory, no cache: ${fmtInt(control.names as number)} unique names (${fmtInt(control.qps as number)} q/s): RSS ${idleMiB} MiB before, peak ${control.peakMiB}, median ${control.medianMiB}, end ${control.endMiB}`);
    writeFileSync(live, bounded);
    process.kill(c.handle.child.pid, 'SIGHUP');
    // The reload makes a new forwarder with the bounded cache: wait until it caches.
    const deadline = Date.now() + 10_000;
    for (;;) {
      await run('dig', ['@127.0.0.1', '-p', String(c.handle.port), '+time=1', '+tries=1', `probe-${Date.now()}.${WILD}`, 'A'], { timeoutMs: 3000 });
      if (((await metric(c, 'clusterdns_cache_entries')) ?? 0) > 0) break;
      if (Date.now() > deadline) throw new Error('the memory run: the reload did not turn the cache on');
      await sleep(200);
    }
    const cached = await streamRss(o, c, 'u');
    const maxBytesMiB = round2(o.rssMaxBytes / 1048576);
    const growthMiB = round2((cached.peakMiB as number) - (control.peakMiB as number));
    const medianGrowthMiB = round2((cached.medianMiB as number) - (control.medianMiB as number));
    log(
      `memory, cache maxBytes ${maxBytesMiB} MiB: ${fmtInt(cached.names as number)} unique names (${fmtInt(cached.qps as number)} q/s): ` +
        `RSS peak ${cached.peakMiB} MiB (${growthMiB} over the no-cache peak; bound ${maxBytesMiB}), median ${cached.medianMiB} (${medianGrowthMiB} over the no-cache median), end ${cached.endMiB}; ` +
        `cache ${fmtInt(cached.cacheEntries as number)} entries ${cached.cacheMiB} MiB, ${fmtInt(cached.evictions as number)} evictions`,
    );
    return { maxBytesMiB, growthMiB, medianGrowthMiB, idleMiB, control, bounded: cached };
  } finally {
    await c.handle.stop();
  }
}

main().then(
  async (code) => {
    await stopAll().catch(() => undefined);
    process.exit(code);
  },
  async (err: unknown) => {
    process.stderr.write(`forward bench: ${(err as Error).message}\n`);
    await stopAll().catch(() => undefined);
    process.exit(1);
  },
);
