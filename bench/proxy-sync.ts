/**
 * Rule sync at scale (issue 11, section 4): `npm run bench -- --only sync`, or alone, as root:
 *
 *   node --import tsx bench/proxy-sync.ts [--sync-services N] [--sync-endpoints E] [--modes iptables,nftables] ...
 *
 * A synthetic view of N Services (one TCP port each, ClusterIPs from 10.96.0.10 up in
 * 10.96.0.0/12, then 10.128.0.0/9) × E ready endpoints (10.244.0.1 up), default
 * 10,000 × 10 = 100,000 endpoints, programmed by the real backends (IptablesBackend,
 * NftablesBackend: src/proxy/*-backend.ts) into a scratch network namespace
 * (`cdb-sync-<pid>`, deleted at the end, also on failure and on SIGINT/SIGTERM; the
 * measuring process runs inside it, so the tools run as they would on a node). Per mode:
 *
 *   first sync     full sync of the whole view into empty tables
 *   +1 endpoint    `--sync-rounds` partial syncs (default 5), each adding one endpoint to
 *                  another Service: median, min-max
 *   -1 Service     a partial sync removing one Service
 *   stale cleanup  nftables only: the deferred deletion of the chains the removal left
 *                  (a transaction of its own, after a later sync; kube-proxy's `staleChains`)
 *   cleanup        removing everything (what stop and --cleanup do)
 *
 * Each sync is reported as its wall time, the time at least one tool process
 * (iptables-restore / nft) was running, and the render alone (the same render, pure, timed
 * on its own just before); rules and bytes written (SyncResult); the peak RSS of the tool
 * during the first sync (/usr/bin/time, when present) and of this process (it holds the
 * view and the backend's state, as the proxy does). Every tool run is bounded (the first
 * sync by `--sync-first-limit`, default 300 s: a mode that takes longer is stopped and
 * reported as such; other syncs by `--sync-timeout`, default 60 s). kube-proxy's published
 * figures (../shared/docs/kube-proxy.md §5) are printed as context: other machines, other
 * shapes, not a side-by-side.
 *
 * Prints tables; with $BENCH_RESULT_JSON set, writes the results there as JSON (with a
 * `markdown` field for the README); bench/run.ts saves them as bench/results/<date>-proxy-sync.json.
 * BENCH_QUICK=1 or --quick: 1,000 × 10 and 3 rounds.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fmtInt, machineFacts, mdTable, median, round2, table, type MachineFacts } from './lib/machine.js';
import { installCleanup, start, stopAll } from './lib/proc.js';
import type { RulesBackend } from '../src/proxy/backend.js';
import { exec, type Exec, type ExecResult } from '../src/proxy/exec.js';
import { IptablesBackend } from '../src/proxy/iptables-backend.js';
import { renderIptables } from '../src/proxy/iptables.js';
import { NftablesBackend } from '../src/proxy/nftables-backend.js';
import { renderNftables } from '../src/proxy/nftables.js';
import type { ProxyEndpoint, ProxyPort, RulesOptions } from '../src/proxy/types.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
type Mode = 'iptables' | 'nftables';
const MODES: readonly Mode[] = ['iptables', 'nftables'];

const OPTS: RulesOptions = { family: 4, clusterCIDRs: ['10.244.0.0/14'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: ['10.96.0.0/12'] };

const USAGE = `usage: node --import tsx bench/proxy-sync.ts [flags]      (root: network namespaces)

  --sync-services N        Services, one TCP port each (default 10000; --quick 1000)
  --sync-endpoints E       ready endpoints per Service (default 10)
  --sync-rounds R          one-endpoint partial syncs (default 5; --quick 3)
  --modes LIST             iptables,nftables (default both)
  --sync-first-limit S     stop a mode whose first sync takes longer (default 300)
  --sync-timeout S         bound on any other sync (default 60)
  --timeout S              the whole run (default 1200)
  --quick                  1,000 × 10, 3 rounds
  -h, --help               this text`;

// ---------------------------------------------------------------------------------------
// The view

const ipv4 = (n: number): string => `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
const V4 = (a: number, b: number, c = 0, d = 0): number => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;

function endpoint(ip: string, port: number): ProxyEndpoint {
  return { ip, port, key: `${ip}:${port}`, ready: true, serving: true, terminating: false, local: false };
}

/** ClusterIP of Service i: 10.96.0.10 up through 10.111.255.255, then 10.128.0.0/9. */
function clusterIP(i: number): string {
  const first = V4(10, 96, 0, 10);
  const inFirst = V4(10, 112, 0, 0) - first;
  return i < inFirst ? ipv4(first + i) : ipv4(V4(10, 128) + (i - inFirst));
}

function service(i: number, endpoints: readonly ProxyEndpoint[]): ProxyPort {
  const namespace = `bench-${i % 100}`;
  const name = `svc-${i}`;
  return {
    service: `${namespace}/${name}`,
    namespace,
    name,
    portName: 'http',
    spn: `${namespace}/${name}:http`,
    protocol: 'TCP',
    family: 4,
    clusterIP: clusterIP(i),
    port: 80,
    nodePort: 0,
    externalIPs: [],
    affinitySeconds: 0,
    internalLocal: false,
    externalLocal: false,
    // kube-proxy's (and the view's) rule order: by "ip:port" as a string.
    endpoints: [...endpoints].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
  };
}

/** N Services × E endpoints; endpoints from 10.244.0.1 up (10.244.0.0/14 holds 262,143). */
export function syntheticView(services: number, perService: number): ProxyPort[] {
  const base = V4(10, 244, 0, 0);
  const ports: ProxyPort[] = [];
  for (let i = 0; i < services; i++) {
    const eps: ProxyEndpoint[] = [];
    for (let e = 0; e < perService; e++) eps.push(endpoint(ipv4(base + 1 + i * perService + e), 8080));
    ports.push(service(i, eps));
  }
  return ports;
}

// ---------------------------------------------------------------------------------------
// Measuring (inside the namespace)

interface Span {
  readonly start: number;
  readonly end: number;
  readonly cmd: string;
  readonly code: number;
  readonly inputBytes: number;
  readonly rssKiB?: number;
}

interface SyncSample {
  readonly ok: boolean;
  readonly error?: string;
  /** Wall time of backend.sync(). */
  readonly ms: number;
  /** Time at least one tool process ran. */
  readonly toolMs: number;
  /** The same render, pure, timed alone. */
  readonly renderMs: number;
  readonly toolRuns: number;
  readonly rulesWritten: number;
  readonly bytes: number;
  readonly toolPeakRssKiB?: number;
}

interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly all: readonly number[];
}

interface ModeResult {
  readonly mode: Mode;
  readonly status: 'ok' | 'first sync too slow' | 'failed';
  readonly error?: string;
  readonly first?: SyncSample;
  readonly addEndpoint?: readonly SyncSample[];
  readonly addEndpointMs?: Spread;
  readonly addEndpointToolMs?: Spread;
  readonly addEndpointRenderMs?: Spread;
  readonly removeService?: SyncSample;
  /** nftables: the deferred deletion of what the removal left stale. */
  readonly staleCleanup?: { readonly ms: number; readonly deleted: number; readonly ok: boolean; readonly error?: string };
  readonly cleanupMs?: number;
  /** This process: after building the view, after the first sync, at the end (peak). */
  readonly rssMiB: { readonly view: number; readonly afterFirst?: number; readonly peak: number };
}

interface InnerResult {
  readonly services: number;
  readonly endpointsPerService: number;
  readonly rounds: number;
  readonly viewMs: number;
  readonly modes: readonly ModeResult[];
}

const MiB = (bytes: number): number => round2(bytes / 1048576);

function spread(xs: readonly number[]): Spread {
  return { median: round2(median(xs)), min: round2(Math.min(...xs)), max: round2(Math.max(...xs)), all: xs.map(round2) };
}

/** Length of the union of the spans' intervals. */
function union(spans: readonly Span[]): number {
  const s = [...spans].sort((a, b) => a.start - b.start);
  let total = 0;
  let from = -Infinity;
  let to = -Infinity;
  for (const x of s) {
    if (x.start > to) {
      if (to > from) total += to - from;
      from = x.start;
      to = x.end;
    } else if (x.end > to) {
      to = x.end;
    }
  }
  if (to > from) total += to - from;
  return total;
}

/** The tools' runner for the backends: timed, bounded by the current deadline, optionally under /usr/bin/time. */
class ToolRunner {
  spans: Span[] = [];
  deadline = Infinity;
  measureRss = false;
  readonly #time = existsSync('/usr/bin/time');
  readonly #scratch = mkdtempSync(join(tmpdir(), 'cdb-sync-'));
  #n = 0;

  readonly exec: Exec = async (cmd, args, input) => {
    const t0 = performance.now();
    // Outside a timed sync (preflight, cleanup): two minutes.
    const budget = Number.isFinite(this.deadline) ? Math.max(1000, Math.round(this.deadline - t0)) : 120_000;
    let res: ExecResult;
    let rssKiB: number | undefined;
    if (this.measureRss && this.#time) {
      const out = join(this.#scratch, `time-${this.#n++}`);
      res = await exec('/usr/bin/time', ['-f', '%M', '-o', out, cmd, ...args], input, budget);
      try {
        const lines = readFileSync(out, 'utf8').trim().split('\n');
        const v = Number(lines[lines.length - 1]);
        if (Number.isFinite(v)) rssKiB = v;
        rmSync(out, { force: true });
      } catch {
        // killed before it wrote: no figure
      }
    } else {
      res = await exec(cmd, args, input, budget);
    }
    this.spans.push({ start: t0, end: performance.now(), cmd: `${cmd} ${args.join(' ')}`, code: res.code, inputBytes: input === undefined ? 0 : Buffer.byteLength(input), ...(rssKiB !== undefined ? { rssKiB } : {}) });
    return res;
  };

  close(): void {
    rmSync(this.#scratch, { recursive: true, force: true });
  }
}

async function timedSync(
  backend: RulesBackend,
  tools: ToolRunner,
  req: { ports: readonly ProxyPort[]; changed: ReadonlySet<string>; full: boolean },
  render: () => void,
  limitS: number,
  rss: boolean,
): Promise<SyncSample> {
  const r0 = performance.now();
  render();
  const renderMs = performance.now() - r0;
  tools.spans = [];
  tools.measureRss = rss;
  const t0 = performance.now();
  tools.deadline = t0 + limitS * 1000;
  try {
    const r = await backend.sync(req);
    const ms = performance.now() - t0;
    const peak = Math.max(0, ...tools.spans.map((s) => s.rssKiB ?? 0));
    return { ok: true, ms: round2(ms), toolMs: round2(union(tools.spans)), renderMs: round2(renderMs), toolRuns: tools.spans.length, rulesWritten: r.rulesWritten, bytes: r.bytes, ...(peak > 0 ? { toolPeakRssKiB: peak } : {}) };
  } catch (err) {
    const ms = performance.now() - t0;
    return { ok: false, error: (err as Error).message, ms: round2(ms), toolMs: round2(union(tools.spans)), renderMs: round2(renderMs), toolRuns: tools.spans.length, rulesWritten: 0, bytes: 0 };
  } finally {
    tools.measureRss = false;
    tools.deadline = Infinity;
  }
}

/** Remove everything of every mode from the namespace (between modes, after a failure). */
function wipe(): void {
  spawnSync('nft', ['flush', 'ruleset'], { timeout: 120_000 });
}

async function measureMode(mode: Mode, base: readonly ProxyPort[], cfg: InnerConfig, log: (s: string) => void): Promise<ModeResult> {
  const tools = new ToolRunner();
  const rssView = MiB(process.memoryUsage().rss);
  const backend: RulesBackend =
    mode === 'iptables'
      ? new IptablesBackend({ ...OPTS, exec: tools.exec })
      : // The deferred deletion is measured on its own (deleteStale), not inside the syncs.
        new NftablesBackend({ ...OPTS, exec: tools.exec, staleChainDelayMs: 24 * 3600_000, staleMaxAgeMs: 24 * 3600_000 });
  const nft = backend instanceof NftablesBackend ? backend : undefined;
  const ipt = backend instanceof IptablesBackend ? backend : undefined;
  const render = (ports: readonly ProxyPort[], full: boolean, changed: ReadonlySet<string>): (() => void) => () => {
    if (ipt !== undefined) renderIptables(ports, OPTS, { full, changed, previousChains: ipt.chains, ...(full ? { chunkChains: 1000 } : { previousByService: ipt.byService }) });
    else renderNftables(ports, OPTS, { full, changed, previous: full ? undefined : nft!.state, deferStaleChains: true, resetBaseChains: full });
  };
  let ports = [...base];
  try {
    await backend.preflight();
    log(`${mode}: first sync of ${fmtInt(ports.length)} Services × ${cfg.endpoints} endpoints (at most ${cfg.firstLimitS} s) ...`);
    const first = await timedSync(backend, tools, { ports, changed: new Set(), full: true }, render(ports, true, new Set()), cfg.firstLimitS, true);
    const rssFirst = MiB(process.memoryUsage().rss);
    log(`${mode}: first sync ${first.ok ? `${fmtMs(first.ms)} (tools ${fmtMs(first.toolMs)}, render alone ${fmtMs(first.renderMs)})` : `failed after ${fmtMs(first.ms)}: ${first.error}`}`);
    if (!first.ok) {
      const slow = first.ms >= cfg.firstLimitS * 1000 * 0.99;
      return { mode, status: slow ? 'first sync too slow' : 'failed', error: first.error ?? '', first, rssMiB: { view: rssView, afterFirst: rssFirst, peak: MiB(process.resourceUsage().maxRSS * 1024) } };
    }

    // +1 endpoint, each round another Service, spread over the view.
    const adds: SyncSample[] = [];
    for (let k = 0; k < cfg.rounds; k++) {
      const i = Math.min(ports.length - 1, Math.floor(((k + 0.5) * ports.length) / cfg.rounds));
      const p = ports[i]!;
      const extra = endpoint(ipv4(V4(10, 247, 0, 0) + 1 + k), 8080);
      ports = ports.map((q, j) => (j === i ? service(Number(p.name.slice(4)), [...p.endpoints, extra]) : q));
      const changed = new Set([p.service]);
      const s = await timedSync(backend, tools, { ports, changed, full: false }, render(ports, false, changed), cfg.timeoutS, false);
      adds.push(s);
      log(`${mode}: +1 endpoint (${p.service}) ${s.ok ? `${fmtMs(s.ms)} (tools ${fmtMs(s.toolMs)}, render alone ${fmtMs(s.renderMs)})` : `failed: ${s.error}`}`);
      if (!s.ok) throw new Error(`partial sync failed: ${s.error}`);
    }

    // -1 Service.
    const gone = ports[Math.floor(ports.length / 2) + 1]!;
    ports = ports.filter((q) => q !== gone);
    const changed = new Set([gone.service]);
    const removeService = await timedSync(backend, tools, { ports, changed, full: false }, render(ports, false, changed), cfg.timeoutS, false);
    log(`${mode}: -1 Service (${gone.service}) ${removeService.ok ? `${fmtMs(removeService.ms)} (tools ${fmtMs(removeService.toolMs)})` : `failed: ${removeService.error}`}`);

    let staleCleanup: ModeResult['staleCleanup'];
    if (nft !== undefined) {
      tools.deadline = performance.now() + cfg.timeoutS * 1000;
      const t0 = performance.now();
      try {
        const deleted = await nft.deleteStale();
        staleCleanup = { ms: round2(performance.now() - t0), deleted, ok: true };
      } catch (err) {
        staleCleanup = { ms: round2(performance.now() - t0), deleted: 0, ok: false, error: (err as Error).message };
      }
      tools.deadline = Infinity;
      log(`${mode}: deferred deletion of ${staleCleanup.deleted} stale chains ${fmtMs(staleCleanup.ms)}`);
    }

    tools.deadline = performance.now() + cfg.timeoutS * 1000;
    const c0 = performance.now();
    let cleanupMs: number | undefined;
    try {
      await backend.cleanup();
      cleanupMs = round2(performance.now() - c0);
    } catch (err) {
      log(`${mode}: cleanup failed: ${(err as Error).message}`);
    }
    tools.deadline = Infinity;
    const ms = adds.map((s) => s.ms);
    return {
      mode,
      status: removeService.ok ? 'ok' : 'failed',
      ...(removeService.ok ? {} : { error: removeService.error ?? '' }),
      first,
      addEndpoint: adds,
      addEndpointMs: spread(ms),
      addEndpointToolMs: spread(adds.map((s) => s.toolMs)),
      addEndpointRenderMs: spread(adds.map((s) => s.renderMs)),
      removeService,
      ...(staleCleanup !== undefined ? { staleCleanup } : {}),
      ...(cleanupMs !== undefined ? { cleanupMs } : {}),
      rssMiB: { view: rssView, afterFirst: rssFirst, peak: MiB(process.resourceUsage().maxRSS * 1024) },
    };
  } catch (err) {
    return { mode, status: 'failed', error: (err as Error).message, rssMiB: { view: rssView, peak: MiB(process.resourceUsage().maxRSS * 1024) } };
  } finally {
    tools.close();
    wipe();
  }
}

interface InnerConfig {
  readonly services: number;
  readonly endpoints: number;
  readonly rounds: number;
  readonly modes: readonly Mode[];
  readonly firstLimitS: number;
  readonly timeoutS: number;
}

async function inner(cfg: InnerConfig, out: string): Promise<void> {
  const log = (s: string): void => void process.stdout.write(`  ${s}\n`);
  const v0 = performance.now();
  const view = syntheticView(cfg.services, cfg.endpoints);
  const viewMs = round2(performance.now() - v0);
  wipe();
  const modes: ModeResult[] = [];
  for (const mode of cfg.modes) modes.push(await measureMode(mode, view, cfg, log));
  const result: InnerResult = { services: cfg.services, endpointsPerService: cfg.endpoints, rounds: cfg.rounds, viewMs, modes };
  writeFileSync(out, JSON.stringify(result));
}

// ---------------------------------------------------------------------------------------
// Reporting

const fmtMs = (ms: number | undefined): string => (ms === undefined || Number.isNaN(ms) ? 'n/a' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`);
const fmtSpread = (s: Spread | undefined): string => (s === undefined ? 'n/a' : `${fmtMs(s.median)} (${fmtMs(s.min)}-${fmtMs(s.max)})`);
const fmtMiB = (kib: number | undefined): string => (kib === undefined ? 'n/a' : `${fmtInt(kib / 1024)} MiB`);
const fmtBytes = (b: number): string => (b >= 10 * 1048576 ? `${fmtInt(b / 1048576)} MiB` : b >= 10 * 1024 ? `${fmtInt(b / 1024)} KiB` : `${fmtInt(b)} B`);

/** kube-proxy's published figures (kube-proxy.md §5): context, other machines and shapes. */
export const KUBE_PROXY_FIGURES: readonly string[] = [
  'nftables, 1 new Service with 10,000 existing (2 endpoints each), kind cluster: partial sync ~8 min → ~141 ms; creating the 10,000: ~25 min → ~9 min; peak memory ~650 → 260 MiB (PR #126013)',
  'nftables full sync: 13 min 15 s at 5,006 Services / 250,011 endpoints (m6i.8xlarge, issue #135639); 16 min 44 s at 44,125 Services / 44,152 endpoints, ~63 s of it the table listing that also runs on every partial sync (issue #139513)',
  'iptables-restore: 12.8 s for a 695,992-line ruleset (iptables-nft, issue #96018)',
  'iptables, 5,000-node scale test (KEP-3453 MinimizeIPTablesRestore): network_programming_duration p50 ≈ 27 s → ≈ 13 s; min-sync-period 10 s → 1 s: p50 ≈ 5 s',
];

interface Report {
  readonly kind: 'proxy-sync';
  readonly date: string;
  readonly machine: MachineFacts;
  readonly tools: { readonly nft: string; readonly iptables: string };
  readonly params: { readonly services: number; readonly endpointsPerService: number; readonly endpoints: number; readonly rounds: number; readonly firstLimitS: number; readonly timeoutS: number };
  readonly viewMs?: number;
  readonly modes: readonly ModeResult[];
  readonly goals: {
    readonly firstSyncUnder5s: { readonly met: boolean; readonly value?: number };
    readonly oneServiceChangeUnder100ms: { readonly met: boolean; readonly value?: number };
  };
  readonly goalsMet: boolean;
  readonly kubeProxy: readonly string[];
  readonly error?: string;
  readonly markdown: string;
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown';
}

function rows(modes: readonly ModeResult[]): { first: string[][]; partial: string[][] } {
  const first: string[][] = [];
  const partial: string[][] = [];
  for (const m of modes) {
    const f = m.first;
    first.push([
      m.mode,
      m.status === 'ok' ? fmtMs(f?.ms) : `${m.status}${f !== undefined ? ` (${fmtMs(f.ms)})` : ''}`,
      fmtMs(f?.toolMs),
      fmtMs(f?.renderMs),
      f !== undefined ? fmtInt(f.toolRuns) : 'n/a',
      f !== undefined ? fmtInt(f.rulesWritten) : 'n/a',
      f !== undefined ? fmtBytes(f.bytes) : 'n/a',
      fmtMiB(f?.toolPeakRssKiB),
      `${fmtInt(m.rssMiB.view)} / ${m.rssMiB.afterFirst !== undefined ? fmtInt(m.rssMiB.afterFirst) : 'n/a'} / ${fmtInt(m.rssMiB.peak)} MiB`,
    ]);
    partial.push([
      m.mode,
      fmtSpread(m.addEndpointMs),
      fmtSpread(m.addEndpointToolMs),
      fmtSpread(m.addEndpointRenderMs),
      m.addEndpoint !== undefined ? `${fmtInt(median(m.addEndpoint.map((s) => s.rulesWritten)))} / ${fmtBytes(median(m.addEndpoint.map((s) => s.bytes)))}` : 'n/a',
      m.removeService !== undefined ? `${fmtMs(m.removeService.ms)} (tools ${fmtMs(m.removeService.toolMs)})` : 'n/a',
      m.staleCleanup !== undefined ? `${fmtMs(m.staleCleanup.ms)} (${m.staleCleanup.deleted})` : '-',
      fmtMs(m.cleanupMs),
    ]);
  }
  return { first, partial };
}

const FIRST_HEAD = ['mode', 'first sync', 'tools ran', 'render alone', 'tool runs', 'rules+elements', 'written', 'tool peak RSS', 'bench RSS view/after/peak'];
const PARTIAL_HEAD = ['mode', '+1 endpoint: median (min-max)', 'tools ran', 'render alone', 'rules / bytes', '-1 Service', 'stale deletion (chains)', 'cleanup'];

function markdown(r: Report): string {
  const { first, partial } = rows(r.modes);
  const p = r.params;
  const out = [
    `Rule sync at scale (${r.date.slice(0, 10)}, \`npm run bench -- --only sync\`): ${fmtInt(p.services)} Services × ${p.endpointsPerService} endpoints = ${fmtInt(p.endpoints)} endpoints, ` +
      `in a scratch network namespace; ${r.machine.nproc} × ${r.machine.cpuModel}, kernel ${r.machine.kernel}, ${r.tools.nft}, ${r.tools.iptables}, Node ${r.machine.node}, load ${r.machine.loadStart}/${r.machine.loadEnd ?? 'n/a'}.`,
    '',
    mdTable(FIRST_HEAD, first),
    '',
    `One-Service changes (${p.rounds} rounds, each one endpoint added to another Service; median, min-max):`,
    '',
    mdTable(PARTIAL_HEAD, partial),
    '',
    `Goals (nftables): first sync < 5 s: ${r.goals.firstSyncUnder5s.met ? 'met' : 'not met'} (${fmtMs(r.goals.firstSyncUnder5s.value)}); one-Service change < 100 ms: ${r.goals.oneServiceChangeUnder100ms.met ? 'met' : 'not met'} (${fmtMs(r.goals.oneServiceChangeUnder100ms.value)}).`,
    '',
    "kube-proxy's published figures, for context (other machines, other shapes):",
    '',
    ...r.kubeProxy.map((l) => `- ${l}`),
  ];
  return out.join('\n');
}

function print(r: Report): void {
  const { first, partial } = rows(r.modes);
  const p = r.params;
  const w = (s: string): void => void process.stdout.write(`${s}\n`);
  w('');
  w(`rule sync at scale: ${fmtInt(p.services)} Services × ${p.endpointsPerService} endpoints = ${fmtInt(p.endpoints)} endpoints (${r.tools.nft}; ${r.tools.iptables})`);
  w('');
  w(table(FIRST_HEAD, first));
  w('');
  w(table(PARTIAL_HEAD, partial));
  for (const m of r.modes) if (m.error !== undefined) w(`${m.mode}: ${m.status}: ${m.error}`);
  w('');
  w(`goals (nftables): first sync < 5 s: ${r.goals.firstSyncUnder5s.met ? 'met' : 'NOT met'} (${fmtMs(r.goals.firstSyncUnder5s.value)}); one-Service change < 100 ms: ${r.goals.oneServiceChangeUnder100ms.met ? 'met' : 'NOT met'} (${fmtMs(r.goals.oneServiceChangeUnder100ms.value)})`);
  w('');
  w("kube-proxy's published figures (kube-proxy.md §5), for context: other machines, other shapes");
  for (const l of r.kubeProxy) w(`  - ${l}`);
}

// ---------------------------------------------------------------------------------------
// The outer process: namespace, child, report

const NS_PATTERN = /^cdb-sync-(\d+)$/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces of killed runs of this script (nothing running in them). */
function sweep(): void {
  const l = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  for (const line of (l.stdout ?? '').split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const m = NS_PATTERN.exec(name);
    if (m === null || alive(Number(m[1]))) continue;
    if ((spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8', timeout: 10_000 }).stdout ?? '').trim() !== '') continue;
    spawnSync('ip', ['netns', 'del', name], { timeout: 10_000 });
  }
}

async function outer(cfg: InnerConfig, totalTimeoutS: number): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('proxy-sync: needs root (a network namespace, iptables and nft)\n');
    return 1;
  }
  const missing = ['ip', 'nft', 'iptables-restore', 'iptables-save'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
  if (missing.length > 0) {
    process.stderr.write(`proxy-sync: missing ${missing.join(', ')} (apt-get install iproute2 nftables iptables)\n`);
    return 1;
  }
  sweep();
  const ns = `cdb-sync-${process.pid}`;
  const scratch = mkdtempSync(join(tmpdir(), 'cdb-sync-'));
  let made = false;
  const destroy = (): void => {
    if (made) spawnSync('ip', ['netns', 'del', ns], { timeout: 30_000 });
    made = false;
    rmSync(scratch, { recursive: true, force: true });
  };
  installCleanup(destroy);
  process.on('exit', destroy);

  const started = new Date();
  const machine = await machineFacts('n/a', 'n/a');
  const tools = { nft: firstLine('nft', ['--version']), iptables: firstLine('iptables', ['--version']) };
  process.stdout.write(
    `proxy-sync ${started.toISOString()}: ${machine.nproc} × ${machine.cpuModel}, ${fmtInt(machine.memTotalMiB)} MiB, kernel ${machine.kernel}, Node ${machine.node}, ${tools.nft}, ${tools.iptables}; load average ${machine.loadStart}\n`,
  );
  if (machine.loadStart > machine.nproc * 0.5) process.stdout.write(`  warning: the machine is busy (load ${machine.loadStart} on ${machine.nproc} CPUs); figures will be noisy and slow\n`);

  const results: InnerResult[] = [];
  let error: string | undefined;
  try {
    const add = spawnSync('ip', ['netns', 'add', ns], { encoding: 'utf8', timeout: 10_000 });
    if (add.status !== 0) throw new Error(`ip netns add ${ns}: ${(add.stderr || add.stdout).trim()}`);
    made = true;
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up'], { timeout: 10_000 });
    // One measuring process per mode, inside the namespace: its memory is that mode's.
    const deadline = performance.now() + totalTimeoutS * 1000;
    for (const mode of cfg.modes) {
      const out = join(scratch, `${mode}.json`);
      const args = [
        'netns', 'exec', ns, process.execPath, '--import', 'tsx', SELF, '--inner', `--out-json=${out}`,
        `--sync-services=${cfg.services}`, `--sync-endpoints=${cfg.endpoints}`, `--sync-rounds=${cfg.rounds}`, `--modes=${mode}`,
        `--sync-first-limit=${cfg.firstLimitS}`, `--sync-timeout=${cfg.timeoutS}`,
      ];
      const child = start(`proxy-sync ${mode} (in the namespace)`, 'ip', args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        void child.stop('SIGTERM', 5000);
      }, Math.max(1000, deadline - performance.now()));
      const code = await child.exited;
      clearTimeout(timer);
      await child.stop();
      if (timedOut) throw new Error(`stopped after ${totalTimeoutS} s (--timeout), in the ${mode} mode`);
      if (code !== 0) throw new Error(`the measuring process (${mode}) exited ${code}`);
      results.push(JSON.parse(readFileSync(out, 'utf8')) as InnerResult);
    }
  } catch (err) {
    error = (err as Error).message;
    process.stderr.write(`proxy-sync: ${error}\n`);
  } finally {
    await stopAll();
    destroy();
  }
  machine.loadEnd = round2(loadavg()[0] ?? 0);

  const modes = results.flatMap((r) => r.modes);
  const nft = modes.find((m) => m.mode === 'nftables');
  const firstNft = nft?.status === 'ok' ? nft.first?.ms : undefined;
  const partialNft = nft?.addEndpointMs?.median;
  const goals: Report['goals'] = {
    firstSyncUnder5s: { met: firstNft !== undefined && firstNft < 5000, ...(firstNft !== undefined ? { value: firstNft } : {}) },
    oneServiceChangeUnder100ms: { met: partialNft !== undefined && partialNft < 100, ...(partialNft !== undefined ? { value: partialNft } : {}) },
  };
  const partial: Omit<Report, 'markdown'> = {
    kind: 'proxy-sync',
    date: started.toISOString(),
    machine,
    tools,
    params: { services: cfg.services, endpointsPerService: cfg.endpoints, endpoints: cfg.services * cfg.endpoints, rounds: cfg.rounds, firstLimitS: cfg.firstLimitS, timeoutS: cfg.timeoutS },
    ...(results[0] !== undefined ? { viewMs: results[0].viewMs } : {}),
    modes,
    goals,
    goalsMet: goals.firstSyncUnder5s.met && goals.oneServiceChangeUnder100ms.met,
    kubeProxy: KUBE_PROXY_FIGURES,
    ...(error !== undefined ? { error } : {}),
  };
  const report: Report = { ...partial, markdown: markdown({ ...partial, markdown: '' }) };
  print(report);
  const file = process.env.BENCH_RESULT_JSON;
  if (file !== undefined && file !== '') writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return error !== undefined || modes.some((m) => m.status === 'failed') ? 1 : 0;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      'sync-services': { type: 'string' },
      'sync-endpoints': { type: 'string' },
      'sync-rounds': { type: 'string' },
      modes: { type: 'string' },
      'sync-first-limit': { type: 'string', default: '300' },
      'sync-timeout': { type: 'string', default: '60' },
      timeout: { type: 'string', default: '1200' },
      quick: { type: 'boolean', default: false },
      inner: { type: 'boolean', default: false },
      'out-json': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const quick = values.quick! || process.env.BENCH_QUICK === '1';
  const int = (v: string | undefined, flag: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${flag} ${v}: expected an integer ${min}-${max}`);
    return n;
  };
  const modes = (values.modes ?? MODES.join(','))
    .split(',')
    .map((m) => m.trim())
    .filter((m) => m !== '');
  for (const m of modes) if (!(MODES as readonly string[]).includes(m)) throw new Error(`--modes ${m}: unknown (iptables, nftables)`);
  const cfg: InnerConfig = {
    services: int(values['sync-services'] ?? (quick ? '1000' : '10000'), 'sync-services', 1, 1_000_000),
    endpoints: int(values['sync-endpoints'] ?? '10', 'sync-endpoints', 1, 1000),
    rounds: int(values['sync-rounds'] ?? (quick ? '3' : '5'), 'sync-rounds', 1, 100),
    modes: modes as Mode[],
    firstLimitS: int(values['sync-first-limit'], 'sync-first-limit', 1, 3600),
    timeoutS: int(values['sync-timeout'], 'sync-timeout', 1, 3600),
  };
  if (cfg.services * cfg.endpoints > V4(10, 248, 0, 0) - V4(10, 244, 0, 1)) throw new Error('at most 262,143 endpoints (10.244.0.0/14)');
  if (values.inner) {
    await inner(cfg, values['out-json'] ?? join(tmpdir(), 'proxy-sync.json'));
    return 0;
  }
  return outer(cfg, int(values.timeout, 'timeout', 10, 24 * 3600));
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`proxy-sync: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
