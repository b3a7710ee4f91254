/**
 * The two servers under test, each started as a tracked child process on loopback:
 * Knot DNS (one UDP worker, everything in a temp dir) and clusterdns (`bin/clusterdns.js`).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { digQuery } from './dig.js';
import { freePort, groupPids, run, sleep, start, type Child } from './proc.js';

export interface ServerHandle {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly child: Child;
  /** Pids to account CPU and memory to (the group: workers included). */
  pids(): number[];
  stop(): Promise<void>;
  /** Recent stderr/stdout lines, for error messages. */
  tail(): string;
}

/** Start a peer daemon on 127.0.0.1:`port` (not yet waited for): its handle, stopped with SIGTERM. */
export function startDaemon(label: string, name: string, [cmd, args]: [string, string[]], port: number): ServerHandle {
  const child = start(name, cmd, args);
  return { label, host: '127.0.0.1', port, child, pids: () => groupPids(child.pid), stop: () => child.stop('SIGTERM', 3000), tail: tailBuffer(child) };
}

/** The last `max` output lines of a child, for error messages. */
export function tailBuffer(child: Child, max = 40): () => string {
  const lines: string[] = [];
  const push = (d: string): void => {
    for (const l of d.split('\n')) {
      if (l === '') continue;
      lines.push(l);
      if (lines.length > max) lines.shift();
    }
  };
  child.proc.stdout?.setEncoding('utf8').on('data', push);
  child.proc.stderr?.setEncoding('utf8').on('data', push);
  return () => lines.join('\n');
}

export async function knotVersion(): Promise<string> {
  const r = await run('knotd', ['--version'], { timeoutMs: 5000 });
  return /version\s+(\S+)/.exec(r.stdout + r.stderr)?.[1] ?? 'unknown';
}

export interface KnotOptions {
  dir: string; // empty temp dir for config, zones, rundir, db
  zones: { name: string; text: string }[];
  udpWorkers?: number;
  taskset?: string | undefined; // CPU list for taskset, or undefined
}

/** Knot with one UDP, one TCP and one background worker on a free loopback port. */
export async function startKnot(o: KnotOptions): Promise<ServerHandle> {
  const port = await freePort();
  const zdir = join(o.dir, 'zones');
  const rundir = join(o.dir, 'run');
  const db = join(o.dir, 'db');
  for (const d of [zdir, rundir, db]) mkdirSync(d, { recursive: true });
  for (const z of o.zones) writeFileSync(join(zdir, `${z.name}.zone`), z.text);
  const conf = join(o.dir, 'knot.conf');
  writeFileSync(
    conf,
    [
      'server:',
      `  rundir: "${rundir}"`,
      `  pidfile: "${join(rundir, 'knot.pid')}"`,
      `  listen: 127.0.0.1@${port}`,
      `  udp-workers: ${o.udpWorkers ?? 1}`,
      '  tcp-workers: 1',
      '  background-workers: 1',
      'database:',
      `  storage: "${db}"`,
      'control:',
      `  listen: "${join(rundir, 'knot.sock')}"`,
      'log:',
      '  - target: stderr',
      '    any: warning',
      'template:',
      '  - id: default',
      `    storage: "${zdir}"`,
      '    file: "%s.zone"',
      '    zonefile-sync: -1',
      '    zonefile-load: whole',
      '    journal-content: none',
      '    semantic-checks: off',
      'zone:',
      ...o.zones.map((z) => `  - domain: ${z.name}`),
      '',
    ].join('\n'),
  );
  const handle = startDaemon('knot', 'knotd', withTaskset(o.taskset, 'knotd', ['-c', conf]), port);
  const { child, tail } = handle;
  // Ready when every zone's SOA is served.
  const deadline = Date.now() + 15_000;
  for (const z of o.zones) {
    for (;;) {
      if (child.exitedAlready()) throw new Error(`knotd exited at start:\n${tail()}`);
      const r = await digQuery('127.0.0.1', port, z.name, 'SOA', 1);
      if (r.rcode === 'NOERROR' && r.answer.length === 1) break;
      if (Date.now() > deadline) {
        await handle.stop();
        throw new Error(`knotd did not serve ${z.name} within 15 s:\n${tail()}`);
      }
      await sleep(100);
    }
  }
  return handle;
}

export interface ClusterdnsOptions {
  root: string; // repository root (bin/clusterdns.js)
  zonesDir: string;
  upstream?: string | undefined; // HOST:PORT
  workers?: number | undefined;
  /** A configuration file (--config), e.g. one that sets `memory`. */
  config?: string | undefined;
  taskset?: string | undefined;
  label?: string;
}

/** clusterdns `serve` on a free port (port 0, read back from the banner), waits until ready. */
export async function startClusterdns(o: ClusterdnsOptions): Promise<ServerHandle> {
  const args = [
    join(o.root, 'bin', 'clusterdns.js'),
    'serve',
    '--zones',
    o.zonesDir,
    '--dns',
    '127.0.0.1:0',
    '--http',
    '127.0.0.1:0',
    '--log-level',
    'warn',
  ];
  if (o.upstream !== undefined) args.push('--upstream', o.upstream);
  if (o.workers !== undefined) args.push('--workers', String(o.workers));
  if (o.config !== undefined) args.push('--config', o.config);
  const [cmd, cargs] = withTaskset(o.taskset, process.execPath, args);
  const child = start('clusterdns', cmd, cargs, { cwd: o.root });
  const tail = tailBuffer(child);
  let out = '';
  child.proc.stdout?.on('data', (d: string) => {
    if (out.length < 4096) out += d;
  });
  const deadline = Date.now() + 60_000;
  let port = 0;
  let httpPort = 0;
  while (port === 0) {
    const m = /on 127\.0\.0\.1:(\d+) \(udp\+tcp\)[^,\n]*(?:, http on [^:\s]+:(\d+))?/.exec(out);
    if (m !== null) {
      port = Number(m[1]);
      httpPort = Number(m[2] ?? 0);
      break;
    }
    if (child.exitedAlready()) throw new Error(`clusterdns exited at start (${o.upstream ? `--upstream ${o.upstream} ` : ''}${o.workers ? `--workers ${o.workers}` : ''}):\n${tail()}`);
    if (Date.now() > deadline) {
      await child.stop('SIGKILL');
      throw new Error(`clusterdns printed no banner within 60 s:\n${tail()}`);
    }
    await sleep(50);
  }
  const handle: ServerHandle = {
    label: o.label ?? 'clusterdns',
    host: '127.0.0.1',
    port,
    child,
    pids: () => groupPids(child.pid),
    // SIGINT stops at once (SIGTERM would lame-duck for 5 s).
    stop: () => child.stop('SIGINT', 3000),
    tail,
  };
  // Ready: /readyz 200 (every source synced), then a cluster name answers.
  if (httpPort > 0) {
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${httpPort}/readyz`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) break;
      if (child.exitedAlready() || Date.now() > deadline) {
        await handle.stop();
        throw new Error(`clusterdns not ready within 60 s:\n${tail()}`);
      }
      await sleep(100);
    }
  }
  for (;;) {
    const r = await digQuery('127.0.0.1', port, 'kubernetes.default.svc.cluster.local', 'A', 1);
    if (r.rcode === 'NOERROR' && r.answer.length === 1) break;
    if (child.exitedAlready() || Date.now() > deadline) {
      await handle.stop();
      throw new Error(`clusterdns does not answer kubernetes.default.svc.cluster.local:\n${tail()}`);
    }
    await sleep(100);
  }
  return handle;
}

export function withTaskset(cpus: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return cpus === undefined ? [cmd, [...args]] : ['taskset', ['-c', cpus, cmd, ...args]];
}
