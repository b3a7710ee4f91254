/**
 * Child processes for the benchmark: every process is started in its own process group
 * and registered, so one call (or SIGINT, or the process exiting) ends all of them, and
 * only them. Also: free loopback ports, CPU and peak-RSS readings from /proc, bounded
 * command runs.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
  exitedAlready(): boolean;
  /** Polite signal, then SIGKILL to the whole group after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const live = new Set<Child>();

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Start a process in a new process group (detached), tracked for cleanup. */
export function start(name: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): Child {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts, detached: true });
  if (proc.pid === undefined) {
    // spawn failures (ENOENT) are reported through 'error'; make them synchronous here.
    proc.once('error', () => undefined);
    throw new Error(`cannot start ${name} (${cmd}): not found or not executable`);
  }
  const pid = proc.pid;
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    proc.once('exit', (code, sig) => {
      done = true;
      live.delete(child);
      resolve(code ?? sig ?? 'unknown');
    });
    proc.once('error', () => {
      done = true;
      live.delete(child);
      resolve('error');
    });
  });
  const child: Child = {
    name,
    proc,
    pid,
    exited,
    exitedAlready: () => done,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
      if (done) {
        killGroup(pid, 'SIGKILL'); // leftovers of the group, if any
        return;
      }
      killGroup(pid, signal);
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
      if ((await Promise.race([exited, timer])) === 'timeout') {
        killGroup(pid, 'SIGKILL');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())]);
      }
      killGroup(pid, 'SIGKILL');
    },
  };
  live.add(child);
  return child;
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop()));
}

let installed = false;
let stopping = false;
/** True once SIGINT/SIGTERM arrived: failures after that are the stop, not news. */
export function interrupted(): boolean {
  return stopping;
}
/**
 * On SIGINT/SIGTERM: stop every child, run `cleanup` (temp dirs), exit 130/143.
 * On any exit: SIGKILL whatever is still registered (synchronously).
 */
export function installCleanup(cleanup: () => void): void {
  if (installed) return;
  installed = true;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\nbench: ${sig}, stopping ${live.size} child process(es)\n`);
    stopAll()
      .catch(() => undefined)
      .finally(() => {
        try {
          cleanup();
        } catch {
          // best effort
        }
        process.exit(sig === 'SIGINT' ? 130 : 143);
      });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => {
    for (const c of live) killGroup(c.pid, 'SIGKILL');
    try {
      cleanup();
    } catch {
      // best effort
    }
  });
}

export interface RunResult {
  code: number | string;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Run a command to completion, output capped at `maxBytes`, killed after `timeoutMs`. */
export async function run(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; maxBytes?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const { timeoutMs = 10_000, maxBytes = 4 << 20 } = opts;
  let child: Child;
  try {
    child = start(cmd, cmd, args, { cwd: opts.cwd, env: opts.env });
  } catch (err) {
    return { code: 'error', stdout: '', stderr: (err as Error).message, timedOut: false };
  }
  let stdout = '';
  let stderr = '';
  child.proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
    if (stdout.length < maxBytes) stdout += d;
  });
  child.proc.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < maxBytes) stderr += d;
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void child.stop('SIGKILL', 500);
  }, timeoutMs);
  // 'exit' can come before the last output: wait for the pipes to close too (bounded).
  const closed = new Promise<void>((r) => child.proc.once('close', () => r()));
  const code = await child.exited;
  await Promise.race([closed, sleep(2000)]);
  clearTimeout(timer);
  return { code, stdout, stderr, timedOut };
}

/** A loopback port free for both UDP and TCP right now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen(0, host, () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const s = createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(port, host, () => s.close(() => resolve(true)));
    });
    if (port > 0 && udpFree) return port;
  }
  throw new Error('no free loopback port found');
}

export const CLK_TCK = 100; // Linux USER_HZ; `getconf CLK_TCK` on every mainstream kernel

interface StatLine {
  pid: number;
  ppid: number;
  pgrp: number;
  ticks: number;
}

function readStat(pid: number): StatLine | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may hold spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  return {
    pid,
    ppid: Number(rest[1]),
    pgrp: Number(rest[2]),
    ticks: Number(rest[11]) + Number(rest[12]),
  };
}

/** utime+stime in clock ticks of one process, undefined once it is gone. */
export function readStatTicks(pid: number): number | undefined {
  return readStat(pid)?.ticks;
}

/** Pids of the process group led by `pgid` (our children are group leaders). */
export function groupPids(pgid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [pgid];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const s = readStat(Number(e));
    if (s !== undefined && s.pgrp === pgid) out.push(s.pid);
  }
  if (!out.includes(pgid)) out.push(pgid);
  return out;
}

/** utime+stime in clock ticks of a process group (workers included). */
export function cpuTicks(pids: readonly number[]): number {
  let t = 0;
  for (const p of pids) t += readStat(p)?.ticks ?? 0;
  return t;
}

/** Peak resident set (VmHWM) in KiB, summed over the given processes. */
export function peakRssKiB(pids: readonly number[]): number {
  return statusKiB(pids, 'VmHWM');
}

/** A /proc/<pid>/status field in KiB (VmRSS, VmHWM...), summed over the given processes. */
export function statusKiB(pids: readonly number[], field: string): number {
  const re = new RegExp(`${field}:\\s+(\\d+)\\s+kB`);
  let total = 0;
  for (const p of pids) {
    try {
      const m = re.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m !== null) total += Number(m[1]);
    } catch {
      // gone
    }
  }
  return total;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Datagrams the kernel dropped on the UDP sockets bound to this local port (the last
 * column of /proc/net/udp and udp6): a full receive buffer while the server was not reading.
 */
export function udpSocketDrops(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let total = 0;
  for (const f of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 13) continue;
      if (!cols[1]!.endsWith(`:${hex}`)) continue;
      total += Number(cols[cols.length - 1]) || 0;
    }
  }
  return total;
}
