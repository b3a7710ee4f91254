/**
 * Running the server under test and the well-behaved prober in child processes
 * (see _server.ts, _prober.ts), from a test.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { ListenOptions } from '../../src/server/listen.js';
import type { ServerStats, StoreOp } from './_server.js';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const EXEC_ARGV = ['--import', 'tsx', '--expose-gc'];

function start(t: Test, file: string, args: string[]): Promise<{ child: ChildProcess; hello: Record<string, unknown> }> {
  const child = fork(here(file), args, { execArgv: EXEC_ARGV, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not start within 30 s`)), 30_000);
    child.once('message', (hello: Record<string, unknown>) => {
      clearTimeout(timer);
      resolve({ child, hello });
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${file} exited (${code ?? sig}) before it was ready`));
    });
  });
}

export interface RemoteServer {
  readonly udpPort: number;
  readonly tcpPort: number;
  readonly child: ChildProcess;
  stats(gc?: boolean): Promise<ServerStats>;
  /** Apply store operations; resolves when the server serves the result. */
  ops(ops: StoreOp[]): Promise<void>;
  /** True while the child process runs (it would exit on a crash). */
  alive(): boolean;
}

export async function startServer(t: Test, opts: Partial<Omit<ListenOptions, 'onError'>> = {}): Promise<RemoteServer> {
  const { child, hello } = await start(t, './_server.ts', [JSON.stringify(opts)]);
  let next = 0;
  const waiting = new Map<number, (s: ServerStats) => void>();
  const applying = new Map<number, () => void>();
  child.on('message', (m: { id?: number; stats?: ServerStats; applied?: boolean }) => {
    if (m.id !== undefined && m.stats !== undefined) {
      waiting.get(m.id)?.(m.stats);
      waiting.delete(m.id);
    } else if (m.id !== undefined && m.applied === true) {
      applying.get(m.id)?.();
      applying.delete(m.id);
    }
  });
  return {
    udpPort: hello.udpPort as number,
    tcpPort: hello.tcpPort as number,
    child,
    alive: () => child.exitCode === null && child.signalCode === null,
    stats: (gc = false) =>
      new Promise((resolve, reject) => {
        const id = next++;
        const timer = setTimeout(() => reject(new Error('server stats: no answer within 10 s')), 10_000);
        waiting.set(id, (s) => {
          clearTimeout(timer);
          resolve(s);
        });
        child.send({ cmd: 'stats', id, gc });
      }),
    ops: (ops) =>
      new Promise((resolve) => {
        const id = next++;
        applying.set(id, resolve);
        child.send({ cmd: 'ops', id, ops });
      }),
  };
}

export interface Probe {
  /**
   * Stop, then assert every probe answered correctly, median below `p50Ms` and p99 below
   * `p99Ms`. The defaults catch what the abuse scenarios could do (a server stalled behind
   * abusive clients answers after its 5-10 s timeouts, or not at all) and hold on a machine
   * whose cores are all busy (`.ci/loaded`): there a healthy server's p99 reached 270 ms.
   */
  check(t: Test, label: string, p99Ms?: number, p50Ms?: number): Promise<void>;
}

export async function startProber(t: Test, srv: { udpPort: number; tcpPort: number }, everyMs = 50): Promise<Probe> {
  const { child } = await start(t, './_prober.ts', [String(srv.udpPort), String(srv.tcpPort), String(everyMs)]);
  return {
    async check(t, label, p99Ms = 1000, p50Ms = 50) {
      const res = await new Promise<{ latencies: number[]; failures: string[] }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('prober: no result within 10 s')), 10_000);
        child.once('message', (m: { latencies: number[]; failures: string[] }) => {
          clearTimeout(timer);
          resolve(m);
        });
        child.send({ cmd: 'stop' });
      });
      const sorted = [...res.latencies].sort((a, b) => a - b);
      const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;
      t.comment(
        `${label}: ${sorted.length} probes, latency p50 ${pct(50).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms, slowest ${sorted.slice(-3).map((x) => x.toFixed(1)).join(', ')} ms`,
      );
      t.same(res.failures, [], `${label}: every probe (UDP, and TCP on a fresh connection) answered correctly`);
      t.ok(sorted.length >= 4, `${label}: ${sorted.length} probes ran`);
      t.ok(pct(50) < p50Ms, `${label}: probe latency median ${pct(50).toFixed(1)} ms < ${p50Ms} ms`);
      // a bound against stalls, with room for a busy 2-core CI box (other tests run alongside)
      t.ok(pct(99) < p99Ms, `${label}: probe latency p99 ${pct(99).toFixed(1)} ms < ${p99Ms} ms`);
    },
  };
}
