/**
 * DNS benchmark (issue 6, "Speed"): the same generated cluster served by clusterdns (one
 * process unless --workers) and by Knot DNS (one UDP worker), measured alternately with
 * dnsperf on loopback: max throughput, then latency at a fixed rate; then forwarded
 * throughput through clusterdns to Knot with the cache warm. `bench/run.ts` drives it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import {
  clusterQueries,
  clusterZoneFile,
  FORWARD_ZONE,
  forwardQueries,
  forwardZoneFile,
  generateCluster,
  ISSUE_MIX,
  writeManifests,
  writeQueryFile,
  ZONE,
  type ClusterSpec,
  type Query,
} from './lib/cluster.js';
import { digQuery } from './lib/dig.js';
import { runDnsperf, type DnsperfResult, type DnsperfSettings } from './lib/dnsperf.js';
import { fmtInt, fmtMs, mdTable, median, table, type MachineFacts } from './lib/machine.js';
import { cpuTicks, CLK_TCK, peakRssKiB, udpSocketDrops } from './lib/proc.js';
import { startClusterdns, startKnot, type ServerHandle } from './lib/servers.js';

export const GOAL_RATIO = 0.45;
export const GOAL_P99_MS = 2;

export interface DnsBenchOptions {
  root: string; // repository root
  tmp: string; // scratch directory (removed by the caller)
  cluster: ClusterSpec;
  queryLines: number;
  rounds: number;
  durationS: number; // each max-throughput run
  latencyDurationS: number; // each fixed-rate run
  rate: number; // fixed rate for the latency runs
  warmupS: number; // unrecorded max-throughput run per server before round 1
  throughput: DnsperfSettings;
  latency: DnsperfSettings;
  serverCpus?: string | undefined; // taskset CPU list for both servers
  workers?: number | undefined; // clusterdns --workers
  memory?: 'lean' | 'fast' | undefined; // clusterdns `memory` config key (default lean)
  forward: boolean;
  forwardNames: number;
  forwardDurationS: number;
  spotPerKind: number;
  log: (line: string) => void;
}

export type ServerName = 'clusterdns' | 'knot';

export interface RunRecord {
  server: ServerName;
  round: number;
  mode: 'max' | 'rate';
  qps: number;
  sent: number;
  completed: number;
  lost: number;
  avgMs: number;
  maxMs: number;
  p50Ms?: number | undefined;
  p99Ms?: number | undefined;
  p999Ms?: number | undefined;
  p99AnsweredMs?: number | undefined;
  socketDrops: number; // datagrams dropped at the server's full receive buffer (kernel count)
  serverCpuPct: number; // % of one core
  serverCpuUsPerQuery: number; // server CPU time per answered query, µs
  clientCpuPct: number; // dnsperf, % of one core
  peakRssMiB: number; // VmHWM of the server (summed over its processes)
  rcodes: Record<string, number>;
  load: number; // 1-minute load average when the run started
}

export interface ServerSummary {
  server: ServerName;
  maxQps: number;
  maxLost: number;
  maxAvgMs: number;
  maxServerCpuPct: number;
  maxCpuUsPerQuery: number;
  maxClientCpuPct: number;
  rateQps: number;
  rateAvgMs: number;
  rateP50Ms: number;
  rateP99Ms: number;
  rateP999Ms: number;
  rateP99AnsweredMs: number;
  rateLost: number;
  rateSocketDrops: number;
  rateServerCpuPct: number;
  peakRssMiB: number;
}

export interface ForwardResult {
  available: boolean;
  reason?: string | undefined;
  names: number;
  runs: {
    round: number;
    forwardedQps: number;
    forwardedLost: number;
    forwardedNoerrorPct: number;
    forwardedCpuPct: number;
    knotQps: number;
    knotLost: number;
  }[];
  forwardedQps?: number | undefined; // median of rounds
  knotQps?: number | undefined;
  ratio?: number | undefined; // median of per-round ratios
}

export interface DnsBenchResult {
  cluster: ClusterSpec & { records: number; queryLines: number; mix: typeof ISSUE_MIX };
  settings: {
    rounds: number;
    durationS: number;
    latencyDurationS: number;
    rate: number;
    warmupS: number;
    throughput: DnsperfSettings;
    latency: DnsperfSettings;
    throughputCommand: string;
    latencyCommand: string;
    serverCpus?: string | undefined;
    workers?: number | undefined;
    memory: 'lean' | 'fast';
  };
  spotCheck: { checked: number; contentDiffs: string[] };
  startupMs: { knot: number; clusterdns: number };
  runs: RunRecord[];
  summary: { clusterdns: ServerSummary; knot: ServerSummary };
  ratio: { median: number; perRound: number[] };
  goals: {
    ratio: { goal: string; value: number; met: boolean; note?: string | undefined };
    p99: { goal: string; value: number; met: boolean };
  };
  forward: ForwardResult;
}

/** The query names the two servers must agree on before anything is measured. */
function spotQueries(qs: readonly Query[], perKind: number): Query[] {
  const out: Query[] = [
    { name: 'kubernetes.default.svc.cluster.local', type: 'A', kind: 'clusterA' },
    { name: '_dns._udp.kube-dns.kube-system.svc.cluster.local', type: 'SRV', kind: 'srv' },
    { name: 'kube-dns.kube-system.svc.cluster.local', type: 'SRV', kind: 'srv' },
    { name: ZONE, type: 'NS', kind: 'clusterA' },
    { name: `dns-version.${ZONE}`, type: 'TXT', kind: 'clusterA' },
  ];
  const seen = new Map<string, number>();
  for (const q of qs) {
    const n = seen.get(q.kind) ?? 0;
    if (n >= perKind) continue;
    seen.set(q.kind, n + 1);
    out.push(q);
  }
  return out;
}

async function spotCheck(a: ServerHandle, b: ServerHandle, qs: readonly Query[]): Promise<{ checked: number; contentDiffs: string[] }> {
  const countDiffs: string[] = [];
  const contentDiffs: string[] = [];
  for (const q of qs) {
    const [x, y] = await Promise.all([digQuery(a.host, a.port, q.name, q.type), digQuery(b.host, b.port, q.name, q.type)]);
    if (x.rcode !== y.rcode || x.answer.length !== y.answer.length) {
      countDiffs.push(`${q.name} ${q.type}: ${a.label} ${x.rcode} ${x.answer.length} answers, ${b.label} ${y.rcode} ${y.answer.length} answers`);
    } else if (x.answer.join('\n') !== y.answer.join('\n')) {
      contentDiffs.push(`${q.name} ${q.type}: ${a.label} [${x.answer.join('; ')}] vs ${b.label} [${y.answer.join('; ')}]`);
    }
  }
  if (countDiffs.length > 0) {
    throw new Error(`the two servers disagree; not measuring:\n  ${countDiffs.join('\n  ')}`);
  }
  return { checked: qs.length, contentDiffs };
}

async function measure(
  outDir: string,
  server: ServerHandle,
  name: ServerName,
  round: number,
  mode: 'max' | 'rate',
  file: string,
  durationS: number,
  settings: DnsperfSettings,
  rate: number | undefined,
): Promise<RunRecord> {
  const pids = server.pids();
  const load = Math.round((loadavg()[0] ?? 0) * 100) / 100;
  const t0 = performance.now();
  const c0 = cpuTicks(pids);
  const d0 = udpSocketDrops(server.port);
  let r: DnsperfResult;
  try {
    r = await runDnsperf({ host: server.host, port: server.port, file, durationS, settings, rate, latencies: mode === 'rate', outDir });
  } catch (err) {
    if (server.child.exitedAlready()) throw new Error(`${server.label} died during the run:\n${server.tail()}`);
    throw err;
  }
  if (server.child.exitedAlready()) throw new Error(`${server.label} died during the run:\n${server.tail()}`);
  const c1 = cpuTicks(pids);
  const d1 = udpSocketDrops(server.port);
  const wall = (performance.now() - t0) / 1000;
  return {
    server: name,
    round,
    mode,
    qps: r.qps,
    sent: r.sent,
    completed: r.completed,
    lost: r.lost,
    socketDrops: d1 - d0,
    avgMs: r.avgLatencyMs,
    maxMs: r.maxLatencyMs,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    p999Ms: r.p999Ms,
    p99AnsweredMs: r.p99AnsweredMs,
    serverCpuPct: ((c1 - c0) / CLK_TCK / wall) * 100,
    serverCpuUsPerQuery: r.completed > 0 ? ((c1 - c0) / CLK_TCK / r.completed) * 1e6 : NaN,
    clientCpuPct: r.clientCpuPct,
    peakRssMiB: peakRssKiB(pids) / 1024,
    rcodes: r.rcodes,
    load,
  };
}

function summarize(name: ServerName, runs: readonly RunRecord[]): ServerSummary {
  const max = runs.filter((r) => r.server === name && r.mode === 'max');
  const rate = runs.filter((r) => r.server === name && r.mode === 'rate');
  const med = (rs: readonly RunRecord[], f: (r: RunRecord) => number | undefined): number => median(rs.map((r) => f(r) ?? NaN));
  return {
    server: name,
    maxQps: med(max, (r) => r.qps),
    maxLost: med(max, (r) => r.lost),
    maxAvgMs: med(max, (r) => r.avgMs),
    maxServerCpuPct: med(max, (r) => r.serverCpuPct),
    maxCpuUsPerQuery: med(max, (r) => r.serverCpuUsPerQuery),
    maxClientCpuPct: med(max, (r) => r.clientCpuPct),
    rateQps: med(rate, (r) => r.qps),
    rateAvgMs: med(rate, (r) => r.avgMs),
    rateP50Ms: med(rate, (r) => r.p50Ms),
    rateP99Ms: med(rate, (r) => r.p99Ms),
    rateP999Ms: med(rate, (r) => r.p999Ms),
    rateP99AnsweredMs: med(rate, (r) => r.p99AnsweredMs),
    rateLost: med(rate, (r) => r.lost),
    rateSocketDrops: med(rate, (r) => r.socketDrops),
    rateServerCpuPct: med(rate, (r) => r.serverCpuPct),
    peakRssMiB: Math.max(0, ...runs.filter((r) => r.server === name).map((r) => r.peakRssMiB)),
  };
}

export function dnsperfCommand(s: DnsperfSettings, rate?: number): string {
  return `dnsperf -T ${s.threads} -c ${s.clients} -q ${s.outstanding} -t ${s.timeoutS}${rate !== undefined ? ` -Q ${rate} -v` : ''}${s.taskset !== undefined ? ` (taskset -c ${s.taskset})` : ''}`;
}

export async function runDnsBench(o: DnsBenchOptions): Promise<DnsBenchResult> {
  const log = o.log;
  // 1. The cluster, as manifests and as zone files, and the query files.
  const cluster = generateCluster(o.cluster);
  const zonesDir = join(o.tmp, 'zones');
  writeManifests(cluster, zonesDir);
  const zoneText = clusterZoneFile(cluster);
  const records = zoneText.split('\n').filter((l) => / IN /.test(l)).length;
  const queries = clusterQueries(cluster, o.queryLines, ISSUE_MIX, o.cluster.seed);
  const qfile = join(o.tmp, 'queries-cluster.txt');
  writeQueryFile(qfile, queries);
  const ffile = join(o.tmp, 'queries-forward.txt');
  writeQueryFile(ffile, forwardQueries(o.forwardNames, Math.max(o.forwardNames, 2000), o.cluster.seed));
  log(
    `cluster: ${fmtInt(o.cluster.services)} ClusterIP services, ${fmtInt(o.cluster.headless)} headless × ${o.cluster.endpoints} endpoints, ` +
      `${cluster.namespaces.length} namespaces, ${fmtInt(records)} records in the Knot zone; ${fmtInt(queries.length)} queries (70% service A, 10% headless A, 10% SRV, 10% NXDOMAIN)`,
  );

  // 2. Both servers.
  const knotDir = join(o.tmp, 'knot');
  mkdirSync(knotDir, { recursive: true });
  let t = performance.now();
  const knot = await startKnot({
    dir: knotDir,
    zones: [
      { name: ZONE, text: zoneText },
      { name: FORWARD_ZONE, text: forwardZoneFile(o.forwardNames) },
    ],
    taskset: o.serverCpus,
  });
  const knotMs = Math.round(performance.now() - t);
  log(`knot: 127.0.0.1:${knot.port} (pid ${knot.child.pid}, 1 UDP worker), ready in ${knotMs} ms`);
  let cd: ServerHandle | undefined;
  try {
    t = performance.now();
    cd = await startClusterdns({ root: o.root, zonesDir, workers: o.workers, config: memoryConfig(o, zonesDir), taskset: o.serverCpus });
    const cdMs = Math.round(performance.now() - t);
    log(`clusterdns: 127.0.0.1:${cd.port} (pid ${cd.child.pid}${o.workers !== undefined ? `, --workers ${o.workers}` : ', one process'}), ready in ${cdMs} ms`);

    // Same names, same answers?
    const spot = await spotCheck(cd, knot, spotQueries(queries, o.spotPerKind));
    log(`spot check: ${spot.checked} names, same rcode and answer count on both${spot.contentDiffs.length > 0 ? `; ${spot.contentDiffs.length} differ in content (see JSON)` : ', same records'}`);

    // 3. Warm-up (unrecorded), then alternating rounds.
    const servers: [ServerName, ServerHandle][] = [
      ['clusterdns', cd],
      ['knot', knot],
    ];
    if (o.warmupS > 0) {
      for (const [name, s] of servers) {
        log(`warm-up ${name} ${o.warmupS} s`);
        await measure(o.tmp, s, name, 0, 'max', qfile, o.warmupS, o.throughput, undefined);
      }
    }
    const runs: RunRecord[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      for (const [name, s] of servers) {
        const m = await measure(o.tmp, s, name, round, 'max', qfile, o.durationS, o.throughput, undefined);
        runs.push(m);
        log(`round ${round}/${o.rounds} ${name.padEnd(10)} max:  ${fmtInt(m.qps).padStart(7)} q/s, avg ${fmtMs(m.avgMs)} ms, lost ${m.lost} (socket drops ${m.socketDrops}), server CPU ${m.serverCpuPct.toFixed(0)}%, dnsperf CPU ${m.clientCpuPct.toFixed(0)}%`);
        const l = await measure(o.tmp, s, name, round, 'rate', qfile, o.latencyDurationS, o.latency, o.rate);
        runs.push(l);
        log(`round ${round}/${o.rounds} ${name.padEnd(10)} rate: ${fmtInt(l.qps).padStart(7)} q/s, avg ${fmtMs(l.avgMs)} ms, p99 ${fmtMs(l.p99Ms)} ms (answered only ${fmtMs(l.p99AnsweredMs)}), lost ${l.lost} (socket drops ${l.socketDrops}), server CPU ${l.serverCpuPct.toFixed(0)}%`);
      }
    }
    const perRound: number[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      const a = runs.find((r) => r.round === round && r.mode === 'max' && r.server === 'clusterdns');
      const b = runs.find((r) => r.round === round && r.mode === 'max' && r.server === 'knot');
      if (a !== undefined && b !== undefined && b.qps > 0) perRound.push(a.qps / b.qps);
    }
    const summary = { clusterdns: summarize('clusterdns', runs), knot: summarize('knot', runs) };
    const ratio = median(perRound);
    await cd.stop();
    cd = undefined;

    // 5. Forwarding through clusterdns to Knot, cache warm.
    const forward = o.forward
      ? await forwardStep(o, knot, ffile, () =>
          startClusterdns({
            root: o.root,
            zonesDir,
            upstream: `127.0.0.1:${knot.port}`,
            workers: o.workers,
            config: memoryConfig(o, zonesDir),
            taskset: o.serverCpus,
            label: 'clusterdns --upstream',
          }),
        )
      : { available: false, reason: 'skipped (--no-forward)', names: o.forwardNames, runs: [] };

    return {
      cluster: { ...o.cluster, records, queryLines: queries.length, mix: ISSUE_MIX },
      settings: {
        rounds: o.rounds,
        durationS: o.durationS,
        latencyDurationS: o.latencyDurationS,
        rate: o.rate,
        warmupS: o.warmupS,
        throughput: o.throughput,
        latency: o.latency,
        throughputCommand: dnsperfCommand(o.throughput),
        latencyCommand: dnsperfCommand(o.latency, o.rate),
        serverCpus: o.serverCpus,
        workers: o.workers,
        memory: o.memory ?? 'lean',
      },
      spotCheck: spot,
      startupMs: { knot: knotMs, clusterdns: cdMs },
      runs,
      summary,
      ratio: { median: Math.round(ratio * 1000) / 1000, perRound: perRound.map((x) => Math.round(x * 1000) / 1000) },
      goals: {
        ratio: {
          goal: `≥ ${GOAL_RATIO} with one process`,
          value: ratio,
          met: ratio >= GOAL_RATIO,
          note: o.workers !== undefined && o.workers > 1 ? `measured with --workers ${o.workers}, not one process` : undefined,
        },
        p99: {
          goal: `< ${GOAL_P99_MS} ms at ${fmtInt(o.rate)} q/s`,
          value: summary.clusterdns.rateP99Ms,
          met: summary.clusterdns.rateP99Ms < GOAL_P99_MS,
        },
      },
      forward,
    };
  } finally {
    await Promise.all([cd?.stop(), knot.stop()]);
  }
}

/**
 * Forwarded throughput: a clusterdns whose upstream is the Knot above, asked only names
 * Knot serves (bench.test), cache warmed first; Knot answering the same file directly is
 * the reference. "Not available" (never a failure) when forwarding does not answer yet.
 */
export async function forwardStep(
  o: DnsBenchOptions,
  knot: ServerHandle,
  ffile: string,
  startForwarder: () => Promise<ServerHandle>,
): Promise<ForwardResult> {
  const out: ForwardResult = { available: false, names: o.forwardNames, runs: [] };
  let fwd: ServerHandle | undefined;
  try {
    try {
      fwd = await startForwarder();
    } catch (err) {
      out.reason = `not available: clusterdns --upstream did not start: ${(err as Error).message.split('\n')[0]}`;
      return out;
    }
    const probe = await digQuery(fwd.host, fwd.port, `host-0000.${FORWARD_ZONE}`, 'A');
    if (probe.rcode !== 'NOERROR' || probe.answer.length !== 1) {
      out.reason = `not available: clusterdns --upstream answered ${probe.rcode} with ${probe.answer.length} answers for host-0000.${FORWARD_ZONE}`;
      return out;
    }
    o.log(`forwarding: clusterdns 127.0.0.1:${fwd.port} --upstream 127.0.0.1:${knot.port}; warming the cache (${o.forwardNames} names)`);
    const warm = await runDnsperf({ host: fwd.host, port: fwd.port, file: ffile, durationS: 2, settings: o.latency, rate: 5000, outDir: o.tmp });
    if ((warm.rcodes.NOERROR ?? 0) === 0) {
      out.reason = `not available: no NOERROR answer while warming the cache (${JSON.stringify(warm.rcodes)})`;
      return out;
    }
    for (let round = 1; round <= o.rounds; round++) {
      const f = await measure(o.tmp, fwd, 'clusterdns', round, 'max', ffile, o.forwardDurationS, o.throughput, undefined);
      const k = await measure(o.tmp, knot, 'knot', round, 'max', ffile, o.forwardDurationS, o.throughput, undefined);
      const noerror = f.completed > 0 ? ((f.rcodes.NOERROR ?? 0) / f.completed) * 100 : 0;
      out.runs.push({
        round,
        forwardedQps: f.qps,
        forwardedLost: f.lost,
        forwardedNoerrorPct: noerror,
        forwardedCpuPct: f.serverCpuPct,
        knotQps: k.qps,
        knotLost: k.lost,
      });
      o.log(
        `round ${round}/${o.rounds} forwarded: ${fmtInt(f.qps)} q/s (lost ${f.lost}, NOERROR ${noerror.toFixed(1)}%, server CPU ${f.serverCpuPct.toFixed(0)}%); knot direct: ${fmtInt(k.qps)} q/s`,
      );
    }
    out.available = true;
    out.forwardedQps = median(out.runs.map((r) => r.forwardedQps));
    out.knotQps = median(out.runs.map((r) => r.knotQps));
    out.ratio = median(out.runs.map((r) => r.forwardedQps / r.knotQps));
    const bad = out.runs.find((r) => r.forwardedNoerrorPct < 99);
    if (bad !== undefined) out.reason = `only ${bad.forwardedNoerrorPct.toFixed(1)}% NOERROR answers in round ${bad.round}`;
    return out;
  } catch (err) {
    out.available = false;
    out.reason = `failed: ${(err as Error).message.split('\n')[0]}`;
    return out;
  } finally {
    if (out.reason !== undefined) o.log(`forwarding: ${out.reason}`);
    await fwd?.stop();
  }
}

// ---------------------------------------------------------------- reports

const mark = (ok: boolean): string => (ok ? 'met' : 'NOT met');

/** A percentile that falls among the lost queries is shown as such (its value is the timeout). */
function fmtP(x: number, r: DnsBenchResult): string {
  const t = r.settings.latency.timeoutS * 1000;
  return x >= t ? `lost (≥${t})` : fmtMs(x);
}

function fmtPms(x: number, r: DnsBenchResult): string {
  const t = r.settings.latency.timeoutS * 1000;
  return x >= t ? `lost queries (≥${t} ms)` : `${fmtMs(x)} ms`;
}

export function dnsReport(r: DnsBenchResult): string {
  const s = r.summary;
  const rows = (f: (x: ServerSummary) => string[]): string[][] => [f(s.clusterdns), f(s.knot)];
  const out: string[] = [];
  out.push(
    `Cluster: ${fmtInt(r.cluster.services)} ClusterIP + ${fmtInt(r.cluster.headless)} headless services × ${r.cluster.endpoints} endpoints, ` +
      `${r.cluster.namespaces} namespaces (${fmtInt(r.cluster.records)} records); ${fmtInt(r.cluster.queryLines)}-line query mix 70/10/10/10.`,
  );
  out.push(
    `${r.settings.rounds} rounds, alternating clusterdns/knot: ${r.settings.durationS} s at max throughput (${r.settings.throughputCommand}), ` +
      `then ${r.settings.latencyDurationS} s at ${fmtInt(r.settings.rate)} q/s (${r.settings.latencyCommand}). Medians of rounds; CPU in % of one core; ` +
      `latency percentiles count lost queries as slower than any answer.`,
  );
  out.push('');
  out.push('Max throughput');
  out.push(
    table(
      ['server', 'queries/s', 'avg ms', 'lost', 'server CPU', 'CPU µs/query', 'dnsperf CPU', 'peak RSS MiB'],
      rows((x) => [x.server, fmtInt(x.maxQps), fmtMs(x.maxAvgMs), fmtInt(x.maxLost), `${x.maxServerCpuPct.toFixed(0)}%`, x.maxCpuUsPerQuery.toFixed(1), `${x.maxClientCpuPct.toFixed(0)}%`, x.peakRssMiB.toFixed(1)]),
    ),
  );
  out.push('');
  out.push(`At ${fmtInt(r.settings.rate)} queries/s`);
  out.push(
    table(
      ['server', 'queries/s', 'avg ms', 'p50 ms', 'p99 ms', 'p99.9 ms', 'p99 answered', 'lost', 'socket drops', 'server CPU'],
      rows((x) => [
        x.server,
        fmtInt(x.rateQps),
        fmtMs(x.rateAvgMs),
        fmtP(x.rateP50Ms, r),
        fmtP(x.rateP99Ms, r),
        fmtP(x.rateP999Ms, r),
        fmtMs(x.rateP99AnsweredMs),
        fmtInt(x.rateLost),
        fmtInt(x.rateSocketDrops),
        `${x.rateServerCpuPct.toFixed(0)}%`,
      ]),
    ),
  );
  out.push('');
  out.push('Per round (max throughput queries/s)');
  out.push(
    table(
      ['round', 'clusterdns', 'knot', 'ratio', 'load avg'],
      r.ratio.perRound.map((ratio, i) => {
        const run = (srv: ServerName): RunRecord | undefined => r.runs.find((x) => x.round === i + 1 && x.mode === 'max' && x.server === srv);
        return [String(i + 1), fmtInt(run('clusterdns')?.qps), fmtInt(run('knot')?.qps), ratio.toFixed(3), `${run('clusterdns')?.load ?? '?'} / ${run('knot')?.load ?? '?'}`];
      }),
    ),
  );
  out.push('');
  out.push(`ratio clusterdns/knot (median of rounds): ${r.ratio.median.toFixed(3)}   goal ${r.goals.ratio.goal}: ${mark(r.goals.ratio.met)}${r.goals.ratio.note !== undefined ? ` (${r.goals.ratio.note})` : ''}`);
  out.push(
    `clusterdns p99 at ${fmtInt(r.settings.rate)} q/s: ${fmtPms(r.goals.p99.value, r)} (answered queries only: ${fmtMs(r.summary.clusterdns.rateP99AnsweredMs)} ms)   ` +
      `goal ${r.goals.p99.goal}: ${mark(r.goals.p99.met)}`,
  );
  out.push('');
  out.push(forwardLine(r.forward));
  for (const n of notes(r)) out.push(`note: ${n}`);
  if (r.spotCheck.contentDiffs.length > 0) out.push(`note: ${r.spotCheck.contentDiffs.length} spot-checked names differ in record content (same counts): ${r.spotCheck.contentDiffs[0]}`);
  return out.join('\n');
}

function rmemDefault(): number {
  try {
    return Number(readFileSync('/proc/sys/net/core/rmem_default', 'utf8').trim()) || 212_992;
  } catch {
    return 212_992;
  }
}

/** What makes the figures less trustworthy, said next to them. */
export function notes(r: DnsBenchResult): string[] {
  const out: string[] = [];
  for (const x of [r.summary.clusterdns, r.summary.knot]) {
    if (x.maxServerCpuPct < 85) {
      out.push(
        `${x.server} used ${x.maxServerCpuPct.toFixed(0)}% of a core at max throughput: not saturated ` +
          `(dnsperf-limited, or the machine is busy: load ${Math.max(...r.runs.map((y) => y.load))} at worst)`,
      );
    }
    if (x.rateLost > 0 && x.rateSocketDrops >= x.rateLost * 0.5) {
      out.push(
        `${x.server}: ${fmtInt(x.rateSocketDrops)} of its ${fmtInt(x.rateLost)} lost queries at ${fmtInt(r.settings.rate)} q/s were dropped by the kernel at its full ` +
          `UDP receive buffer (net.core.rmem_default ${rmemDefault()} bytes: about ${fmtInt(rmemDefault() / 1024)} queries, ` +
          `${((rmemDefault() / 1024 / r.settings.rate) * 1000).toFixed(0)} ms at this rate): the server fell behind the offered rate or stalled`,
      );
    }
    if (x.rateQps < r.settings.rate * 0.95) {
      out.push(`${x.server} answered ${fmtInt(x.rateQps)} q/s of the ${fmtInt(r.settings.rate)} asked in the latency runs: its latency figures are at overload`);
    }
  }
  return out;
}

function forwardLine(f: ForwardResult): string {
  if (!f.available) return `Forwarded (cache warm): ${f.reason ?? 'not available'}`;
  return (
    `Forwarded through clusterdns to Knot, cache warm (${f.names} names in ${FORWARD_ZONE}): ${fmtInt(f.forwardedQps)} queries/s; ` +
    `Knot answering directly ${fmtInt(f.knotQps)} queries/s; ratio ${f.ratio?.toFixed(3) ?? 'n/a'} (median of rounds)` +
    (f.reason !== undefined ? `; warning: ${f.reason}` : '')
  );
}

export function dnsMarkdown(r: DnsBenchResult, m: MachineFacts, date: string): string {
  const s = r.summary;
  const row = (x: ServerSummary): string[] => [
    x.server,
    fmtInt(x.maxQps),
    fmtMs(x.maxAvgMs),
    fmtInt(x.maxLost),
    `${x.maxServerCpuPct.toFixed(0)}%`,
    fmtMs(x.rateAvgMs),
    fmtP(x.rateP99Ms, r),
    fmtInt(x.rateLost),
    x.peakRssMiB.toFixed(0),
  ];
  const lines = [
    `### Benchmark (${date})`,
    '',
    `\`npm run bench\` on ${m.nproc} × ${m.cpuModel}, ${fmtInt(m.memTotalMiB / 1024)} GiB, Node ${m.node}, Knot ${m.knot}, dnsperf ${m.dnsperf}, ` +
      `loopback, load average ${m.loadStart} at start. ` +
      `${fmtInt(r.cluster.services)} ClusterIP services and ${fmtInt(r.cluster.headless)} headless services with ${r.cluster.endpoints} endpoints each; ` +
      `query mix 70% service A, 10% headless A, 10% SRV, 10% NXDOMAIN; clusterdns ${r.settings.workers !== undefined ? `with --workers ${r.settings.workers}` : 'one process'} with \`memory: ${r.settings.memory ?? 'lean'}\`, Knot one UDP worker; ` +
      `median of ${r.settings.rounds} alternating rounds (${r.settings.durationS} s max throughput with \`${r.settings.throughputCommand}\`, ${r.settings.latencyDurationS} s at ${fmtInt(r.settings.rate)} q/s).`,
    '',
    mdTable(
      [
        'server',
        'queries/s (max)',
        'avg ms (max)',
        'lost (max)',
        'server CPU (max)',
        `avg ms @ ${fmtInt(r.settings.rate / 1000)}k q/s`,
        `p99 ms @ ${fmtInt(r.settings.rate / 1000)}k q/s`,
        `lost @ ${fmtInt(r.settings.rate / 1000)}k q/s`,
        'peak RSS MiB',
      ],
      [row(s.clusterdns), row(s.knot)],
    ),
    '',
    `- clusterdns/Knot throughput ratio: **${r.ratio.median.toFixed(2)}** (goal ${r.goals.ratio.goal}: ${mark(r.goals.ratio.met)})`,
    `- clusterdns p99 at ${fmtInt(r.settings.rate)} q/s: **${fmtPms(r.goals.p99.value, r)}**, answered queries only ${fmtMs(s.clusterdns.rateP99AnsweredMs)} ms (goal < ${GOAL_P99_MS} ms: ${mark(r.goals.p99.met)})`,
    r.forward.available
      ? `- Forwarded to a Knot upstream, cache warm: **${fmtInt(r.forward.forwardedQps)} q/s** (${r.forward.ratio?.toFixed(2)} × Knot answering directly, ${fmtInt(r.forward.knotQps)} q/s)`
      : `- Forwarded with the cache warm: ${r.forward.reason ?? 'not available'}`,
    ...notes(r).map((n) => `- Caveat: ${n}`),
  ];
  return lines.join('\n');
}

/** Short sweep of dnsperf settings against both servers (`--tune`): which ones saturate the server. */
export async function runDnsTune(
  o: DnsBenchOptions,
  candidates: readonly DnsperfSettings[],
  durationS: number,
): Promise<{ settings: DnsperfSettings; server: ServerName; qps: number; lost: number; serverCpuPct: number; clientCpuPct: number }[]> {
  const cluster = generateCluster(o.cluster);
  const zonesDir = join(o.tmp, 'zones');
  writeManifests(cluster, zonesDir);
  const qfile = join(o.tmp, 'queries-cluster.txt');
  writeQueryFile(qfile, clusterQueries(cluster, o.queryLines, ISSUE_MIX, o.cluster.seed));
  const knotDir = join(o.tmp, 'knot');
  mkdirSync(knotDir, { recursive: true });
  const knot = await startKnot({ dir: knotDir, zones: [{ name: ZONE, text: clusterZoneFile(cluster) }], taskset: o.serverCpus });
  let cd: ServerHandle | undefined;
  const out: { settings: DnsperfSettings; server: ServerName; qps: number; lost: number; serverCpuPct: number; clientCpuPct: number }[] = [];
  try {
    cd = await startClusterdns({ root: o.root, zonesDir, workers: o.workers, config: memoryConfig(o, zonesDir), taskset: o.serverCpus });
    const servers: [ServerName, ServerHandle][] = [
      ['clusterdns', cd],
      ['knot', knot],
    ];
    for (const [name, s] of servers) await measure(o.tmp, s, name, 0, 'max', qfile, 3, o.throughput, undefined);
    for (const c of candidates) {
      for (const [name, s] of servers) {
        const m = await measure(o.tmp, s, name, 0, 'max', qfile, durationS, c, undefined);
        out.push({ settings: c, server: name, qps: m.qps, lost: m.lost, serverCpuPct: m.serverCpuPct, clientCpuPct: m.clientCpuPct });
        o.log(`${dnsperfCommand(c).padEnd(40)} ${name.padEnd(10)} ${fmtInt(m.qps).padStart(7)} q/s  lost ${String(m.lost).padStart(5)}  server CPU ${m.serverCpuPct.toFixed(0).padStart(3)}% (${m.serverCpuUsPerQuery.toFixed(1)} µs/query)  dnsperf CPU ${m.clientCpuPct.toFixed(0).padStart(3)}%  load ${m.load}`);
      }
    }
  } finally {
    await Promise.all([cd?.stop(), knot.stop()]);
  }
  return out;
}

/** A config file setting clusterdns's `memory` profile when --memory is given (else the default). */
function memoryConfig(o: DnsBenchOptions, zonesDir: string): string | undefined {
  if (o.memory === undefined) return undefined;
  // Next to the zones, in the bench's scratch directory (removed with it).
  const file = join(dirname(zonesDir), `clusterdns-${o.memory}.yaml`);
  writeFileSync(file, `memory: ${o.memory}\n`);
  return file;
}
