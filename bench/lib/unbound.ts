/**
 * Unbound (Debian package `unbound`) as the reference forwarder: one thread, forwarding
 * `zone` to an upstream (the bench's Knot), validation off (iterator only, no trust
 * anchor), everything in a temp dir, started in the foreground as a tracked child.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, run, sleep } from './proc.js';
import { startDaemon, withTaskset, type ServerHandle } from './servers.js';

export const UNBOUND = '/usr/sbin/unbound';

export async function unboundVersion(bin = UNBOUND): Promise<string> {
  const r = await run(bin, ['-V'], { timeoutMs: 5000 });
  return /Version\s+(\S+)/.exec(r.stdout + r.stderr)?.[1] ?? 'unknown';
}

export interface UnboundOptions {
  dir: string; // empty temp dir
  /** Forwarded zone (e.g. bench.test) and its upstream. */
  zone: string;
  upstream: { host: string; port: number };
  /** A name in `zone` that must resolve before the server counts as ready. */
  probe: string;
  taskset?: string | undefined;
  bin?: string | undefined;
}

/** The configuration: what the comparison needs, everything else Unbound's defaults. */
export function unboundConfig(o: UnboundOptions, port: number): string {
  return [
    'server:',
    `  interface: 127.0.0.1@${port}`,
    `  port: ${port}`,
    '  num-threads: 1',
    '  do-daemonize: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${o.dir}"`,
    `  pidfile: "${join(o.dir, 'unbound.pid')}"`,
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    // No validation: no trust anchor, iterator only.
    '  module-config: "iterator"',
    '  do-ip6: no',
    // The upstream is on loopback, which Unbound refuses to query by default.
    '  do-not-query-localhost: no',
    // .test is one of Unbound's default local zones (RFC 6761): let it through.
    `  local-zone: "${o.zone.split('.').pop()}." nodefault`,
    '  access-control: 127.0.0.0/8 allow',
    '  so-reuseport: no',
    'forward-zone:',
    `  name: "${o.zone}."`,
    `  forward-addr: ${o.upstream.host}@${o.upstream.port}`,
    '',
  ].join('\n');
}

export async function startUnbound(o: UnboundOptions): Promise<ServerHandle> {
  const port = await freePort();
  const conf = join(o.dir, 'unbound.conf');
  writeFileSync(conf, unboundConfig(o, port));
  const handle = startDaemon('unbound', 'unbound', withTaskset(o.taskset, o.bin ?? UNBOUND, ['-d', '-c', conf]), port);
  const { child, tail } = handle;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitedAlready()) throw new Error(`unbound exited at start:\n${tail()}`);
    if (await answers(port, o.probe)) break;
    if (Date.now() > deadline) {
      await handle.stop();
      throw new Error(`unbound does not answer ${o.probe} within 15 s:\n${tail()}`);
    }
    await sleep(100);
  }
  return handle;
}

/** A recursive query (Unbound refuses RD=0 for what it has not cached) answered NOERROR with records. */
async function answers(port: number, name: string): Promise<boolean> {
  const r = await run('dig', ['@127.0.0.1', '-p', String(port), '+time=1', '+tries=1', '+short', name, 'A'], { timeoutMs: 5000 });
  return r.code === 0 && r.stdout.trim() !== '' && !r.stdout.includes(';;');
}
