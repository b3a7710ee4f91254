/** Facts about the machine a result was measured on. */
import { readFileSync } from 'node:fs';
import { availableParallelism, hostname, loadavg, totalmem } from 'node:os';
import { run } from './proc.js';

export interface MachineFacts {
  host: string;
  nproc: number;
  cpuModel: string;
  memTotalMiB: number;
  kernel: string;
  node: string;
  knot: string;
  dnsperf: string;
  /** 1-minute load average when the run started and ended: other work on the machine skews results. */
  loadStart: number;
  loadEnd?: number | undefined;
}

export async function machineFacts(knot: string, dnsperf: string): Promise<MachineFacts> {
  let cpuModel = 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? 'unknown';
  } catch {
    // not Linux
  }
  const np = await run('nproc', [], { timeoutMs: 3000 });
  const nproc = Number(np.stdout.trim()) || availableParallelism();
  let kernel = 'unknown';
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    // not Linux
  }
  return {
    host: hostname(),
    nproc,
    cpuModel,
    memTotalMiB: Math.round(totalmem() / 1048576),
    kernel,
    node: process.version,
    knot,
    dnsperf,
    loadStart: round2(loadavg()[0] ?? 0),
  };
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** Plain text table, columns padded; numbers right-aligned. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: readonly string[]): string =>
    r
      .map((c, i) => (i > 0 && /^[-\d.,%x×<>≥ ]+$|^n\/a$/.test(c) ? c.padStart(w[i]!) : c.padEnd(w[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(fmt)].join('\n');
}

/** Markdown table. */
export function mdTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const align = head.map((_, i) => (i === 0 ? '---' : '---:'));
  return [head, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

export function fmtInt(x: number | undefined): string {
  return x === undefined || Number.isNaN(x) ? 'n/a' : Math.round(x).toLocaleString('en-US');
}

export function fmtMs(x: number | undefined, digits = 3): string {
  return x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(digits);
}

export function median(xs: readonly number[]): number {
  const a = xs.filter((x) => !Number.isNaN(x)).sort((p, q) => p - q);
  if (a.length === 0) return NaN;
  const m = a.length >> 1;
  return a.length % 2 === 1 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}
