/**
 * dnsperf runs, parsed. dnsperf 2.10 (Debian) has no latency histogram option, but `-v`
 * prints one line per answered query with its latency in seconds (`> NOERROR name A 0.000123`);
 * those are streamed and kept (bounded) to compute percentiles. Without `-v` only dnsperf's
 * summary is read.
 */
import { closeSync, createReadStream, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CLK_TCK, readStatTicks, run, sleep, start, type Child } from './proc.js';
import { withTaskset } from './servers.js';

export interface DnsperfSettings {
  threads: number; // -T
  clients: number; // -c (sockets)
  outstanding: number; // -q
  timeoutS: number; // -t
  taskset?: string | undefined; // CPU list for dnsperf
}

export interface DnsperfRun {
  host: string;
  port: number;
  file: string;
  durationS: number;
  settings: DnsperfSettings;
  /** -Q: queries per second; undefined = as fast as answers come back. */
  rate?: number | undefined;
  /** Record every latency (`-v`) for percentiles. */
  latencies?: boolean;
  /** Scratch directory for dnsperf's output. */
  outDir: string;
}

export interface DnsperfResult {
  args: string[];
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  runtimeS: number;
  avgLatencyMs: number;
  minLatencyMs: number;
  maxLatencyMs: number;
  rcodes: Record<string, number>;
  /** Only with `latencies`: from every answered query. */
  p50Ms?: number | undefined;
  p99Ms?: number | undefined;
  p999Ms?: number | undefined;
  /** p99 of the answered queries only (lost ones left out). */
  p99AnsweredMs?: number | undefined;
  samples?: number | undefined;
  timedOut?: number | undefined; // `> T` lines: sent, never answered within -t
  /** dnsperf's own CPU over the run, % of one core (sampled, ±0.2 s of CPU). */
  clientCpuPct: number;
  warnings: string[];
}

export async function dnsperfVersion(): Promise<string> {
  const r = await run('dnsperf', ['-h'], { timeoutMs: 5000 });
  return /Version\s+(\S+)/.exec(r.stdout + r.stderr)?.[1] ?? 'unknown';
}

const MAX_SAMPLES = 2_000_000;
let seq = 0;

export async function runDnsperf(o: DnsperfRun): Promise<DnsperfResult> {
  const s = o.settings;
  const args = [
    '-s', o.host,
    '-p', String(o.port),
    '-d', o.file,
    '-l', String(o.durationS),
    '-T', String(s.threads),
    '-c', String(s.clients),
    '-q', String(s.outstanding),
    '-t', String(s.timeoutS),
  ];
  if (o.rate !== undefined) args.push('-Q', String(o.rate));
  if (o.latencies === true) args.push('-v');
  const [cmd, cargs] = withTaskset(s.taskset, 'dnsperf', args);
  // stdout goes to a file, not a pipe: with -v dnsperf writes a line per answer from its
  // receiving thread, and a pipe the parent is slow to drain would delay the answers it times.
  const outPath = join(o.outDir, `dnsperf-${process.pid}-${seq++}.out`);
  const outFd = openSync(outPath, 'w');
  let child: Child;
  try {
    child = start('dnsperf', cmd, cargs, { stdio: ['ignore', outFd, 'pipe'] });
  } finally {
    closeSync(outFd);
  }
  const warnings: string[] = [];
  let stderr = '';
  child.proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 16_000) stderr += d;
  });
  // Sample dnsperf's CPU while it runs; the last reading before exit is the total.
  const t0 = performance.now();
  let lastTicks = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      const t = readStatTicks(child.pid);
      if (t !== undefined) lastTicks = t;
      await sleep(100);
    }
  })();
  const hardLimit = setTimeout(() => void child.stop('SIGKILL', 500), (o.durationS + s.timeoutS + 20) * 1000);
  const code = await child.exited;
  clearTimeout(hardLimit);
  running = false;
  await sampler;
  const wall = (performance.now() - t0) / 1000;
  const cap = o.latencies === true ? Math.min(MAX_SAMPLES, Math.ceil((o.rate ?? 200_000) * o.durationS * 1.2) + 1000) : 0;
  const lat = new Float64Array(cap);
  let n = 0;
  let timedOut = 0;
  let summary = '';
  const lines = createInterface({ input: createReadStream(outPath, { encoding: 'utf8' }), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.startsWith('> ')) {
      if (line.startsWith('> T ')) {
        timedOut++; // `> T name type`: no answer within -t
      } else if (n < cap) {
        const v = Number(line.slice(line.lastIndexOf(' ') + 1));
        if (Number.isFinite(v)) lat[n++] = v * 1000;
      }
    } else if (!line.startsWith('[Timeout]') && summary.length < 64_000) {
      summary += `${line}\n`;
    }
  }
  rmSync(outPath, { force: true });
  if (code !== 0) throw new Error(`dnsperf exited with ${code}: ${stderr.trim() || summary.trim().slice(-2000)}`);
  const num = (re: RegExp): number => {
    const m = re.exec(summary);
    return m === null ? NaN : Number(m[1]);
  };
  const rcodes: Record<string, number> = {};
  const rc = /Response codes:\s+(.*)/.exec(summary)?.[1] ?? '';
  for (const m of rc.matchAll(/([A-Z]+) (\d+)/g)) rcodes[m[1]!] = Number(m[2]);
  for (const l of stderr.split('\n')) if (l.trim() !== '' && warnings.length < 5) warnings.push(l.trim());
  const res: DnsperfResult = {
    args: ['dnsperf', ...args],
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    qps: num(/Queries per second:\s+([\d.]+)/),
    runtimeS: num(/Run time \(s\):\s+([\d.]+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    minLatencyMs: num(/Average Latency \(s\):.*min ([\d.]+)/) * 1000,
    maxLatencyMs: num(/Average Latency \(s\):.*max ([\d.]+)/) * 1000,
    rcodes,
    clientCpuPct: (lastTicks / CLK_TCK / wall) * 100,
    warnings,
  };
  if (Number.isNaN(res.qps)) throw new Error(`cannot read dnsperf's statistics:\n${summary.slice(-2000)}\n${stderr}`);
  if (o.latencies === true) {
    // Percentiles over every query sent: a lost one counts as slower than any answer
    // (as the timeout, a lower bound), so losses cannot flatter the tail.
    const sorted = lat.subarray(0, n).sort();
    const timeoutMs = s.timeoutS * 1000;
    const at = (p: number): number => {
      const total = n + timedOut;
      if (total === 0) return NaN;
      const i = Math.min(total - 1, Math.max(0, Math.ceil((p / 100) * total) - 1));
      return i < n ? sorted[i]! : timeoutMs;
    };
    res.samples = n;
    res.timedOut = timedOut;
    res.p50Ms = at(50);
    res.p99Ms = at(99);
    res.p999Ms = at(99.9);
    res.p99AnsweredMs = n > 0 ? sorted[Math.min(n - 1, Math.max(0, Math.ceil(0.99 * n) - 1))]! : NaN;
  }
  return res;
}
