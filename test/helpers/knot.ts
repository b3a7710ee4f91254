/**
 * A real Knot DNS (`knotd`, Debian package `knot`) as the upstream of forwarding tests:
 * started in the foreground on 127.0.0.1 and a free port, with its config, zone file,
 * rundir, storage and control socket in a temp dir, and stopped in teardown.
 *
 * When knotd is missing: under CI=true the test fails with the install hint, elsewhere
 * it is skipped with it (as `requireTool` in cli.ts). `CLUSTERDNS_KNOTD` names the
 * binary explicitly (a path that does not exist counts as missing).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { makeQuery, udpExchange } from './dns.js';

export const KNOT_ZONE = 'example.test';
/** SOA MINIMUM of the test zone: negative answers may be cached this long (RFC 2308), before our cap. */
export const KNOT_SOA_MINIMUM = 60;
/** TTL of the zone's ordinary records. */
export const KNOT_TTL = 300;

const range = (n: number, f: (i: number) => string): string => Array.from({ length: n }, (_, i) => f(i + 1)).join('\n');

/**
 * The test zone. `mid` (40 A, ~680 B) fits Knot's 1232-byte UDP replies but not a 512-byte
 * client; `big` (100 A, ~1.6 KB) makes Knot truncate over UDP, so the forwarder needs TCP.
 */
export const KNOT_ZONE_TEXT = `$ORIGIN ${KNOT_ZONE}.
$TTL ${KNOT_TTL}
@        3600 IN SOA ns.${KNOT_ZONE}. hostmaster.${KNOT_ZONE}. 1 7200 1800 86400 ${KNOT_SOA_MINIMUM}
@             IN NS   ns
ns            IN A    127.0.0.1
www           IN A    192.0.2.1
www           IN AAAA 2001:db8::1
alias         IN CNAME www
chain         IN CNAME alias
txtonly       IN TXT  "only text here"
short      5  IN A    192.0.2.5
*.wild        IN A    192.0.2.50
${range(40, (i) => `mid IN A 10.2.0.${i}`)}
${range(100, (i) => `big IN A 10.1.0.${i}`)}
`;

export interface Knot {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** knotd's log so far (stderr). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Path of knotd: `$CLUSTERDNS_KNOTD` when set (a path that does not exist counts as
 * missing), else PATH, else /usr/sbin (not on every user's PATH).
 */
export function knotdPath(): string | undefined {
  const forced = process.env.CLUSTERDNS_KNOTD;
  if (forced !== undefined && forced !== '') return existsSync(forced) ? forced : undefined;
  const found = spawnSync('sh', ['-c', 'command -v knotd'], { encoding: 'utf8' });
  if (found.status === 0 && found.stdout.trim() !== '') return found.stdout.trim();
  for (const p of ['/usr/sbin/knotd', '/usr/local/sbin/knotd']) if (existsSync(p)) return p;
  return undefined;
}

/**
 * Start knotd serving `zones` (default: the test zone). Resolves undefined when knotd is
 * missing (the test was skipped or failed with the hint); callers then return.
 */
export async function startKnot(t: Test, zones: Record<string, string> = { [KNOT_ZONE]: KNOT_ZONE_TEXT }): Promise<Knot | undefined> {
  const bin = requireKnotd(t);
  if (bin === undefined) return undefined;
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(t, bin, zones);
    } catch (err) {
      lastErr = err; // most likely the port was taken between probe and bind: try another
    }
  }
  throw lastErr;
}

async function startOnce(t: Test, bin: string, zones: Record<string, string>): Promise<Knot> {
  const port = await freePort();
  return runKnot(t, bin, {
    port,
    files: zones,
    conf: (dir) => knotPrimaryConf(dir, port, Object.keys(zones)),
    ready: (zone) => soaAnswered(port, zone, false),
    late: 'not answering',
  });
}

/** The part of knot.conf every test Knot shares: one worker each, its state under `dir`, logs to stderr. */
function knotServerConf(dir: string, port: number): string {
  return `server:
    rundir: "${dir}/run"
    listen: 127.0.0.1@${port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "${dir}/run/knot.sock"
log:
  - target: stderr
    any: info
database:
    storage: "${dir}/storage"
`;
}

/** knot.conf of a primary serving `zones` from `<dir>/zones/<zone>.zone`. */
export function knotPrimaryConf(dir: string, port: number, zones: readonly string[]): string {
  return `${knotServerConf(dir, port)}template:
  - id: default
    storage: "${dir}/zones"
    file: "%s.zone"
    journal-content: none
    zonefile-sync: -1
zone:
${zones.map((z) => `  - domain: ${z}`).join('\n')}
`;
}

/**
 * Whether the Knot on 127.0.0.1:`port` answers `zone`'s SOA without error (and, with
 * `transferred`, with the record: a secondary that has the zone).
 */
function soaAnswered(port: number, zone: string, transferred: boolean): Promise<boolean> {
  return udpExchange(port, makeQuery(zone, 'SOA'), '127.0.0.1', 200).then(
    (b) => (b[3]! & 0xf) === 0 && (!transferred || b.readUInt16BE(6) > 0),
    () => false,
  );
}

export interface KnotRun {
  readonly port: number;
  /** knot.conf for the run's temp dir. */
  readonly conf: (dir: string) => string;
  /** Zone files written to `<dir>/zones/<name>.zone`; their names are the zones waited for. */
  readonly files?: Record<string, string>;
  /** The zones waited for when there are no files (a secondary's). */
  readonly zones?: readonly string[];
  /** Whether knotd is ready for `zone` (asked every 50 ms until it is). */
  readonly ready: (zone: string) => Promise<boolean>;
  /** Default 10 s. */
  readonly timeoutMs?: number;
  /** What the error says when it is not ready in time ("not answering"). */
  readonly late: string;
  /** An argv prefix knotd runs under (`ip netns exec <ns>`, which execs it: the pid is knotd's). */
  readonly prefix?: readonly string[];
}

/**
 * Run knotd from a fresh temp dir (run/, storage/, zones/) until it is ready for every
 * zone; stopped, and the dir removed, in teardown, or at once when it exits or is late
 * (the error carries its log). The one start and wait routine of every test Knot:
 * primary, secondary, or inside a pod's namespace.
 */
export async function runKnot(t: Test, bin: string, o: KnotRun): Promise<Knot> {
  const dir = mkdtempSync(join(tmpdir(), 'clusterdns-knot-'));
  for (const d of ['run', 'storage', 'zones']) mkdirSync(join(dir, d));
  for (const [name, text] of Object.entries(o.files ?? {})) writeFileSync(join(dir, 'zones', `${name}.zone`), text);
  writeFileSync(join(dir, 'knot.conf'), o.conf(dir));
  const argv = [...(o.prefix ?? []), bin, '-c', join(dir, 'knot.conf')];
  const proc: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  t.teardown(stop);
  const timeoutMs = o.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (const zone of o.zones ?? Object.keys(o.files ?? {})) {
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        await stop();
        throw new Error(`knotd exited: ${log}`);
      }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`knotd ${o.late} within ${timeoutMs} ms: ${log}`);
      }
      if (await o.ready(zone)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { host: '127.0.0.1', port: o.port, dir, log: () => log, stop };
}

/** knotd's path, or undefined after failing (CI=true) or skipping `t` with the install hint. */
export function requireKnotd(t: Test): string | undefined {
  const bin = knotdPath();
  if (bin === undefined) knotMissing(t);
  return bin;
}

/** As `requireTool` (cli.ts) for a knotd that may be outside PATH: fail under CI=true, else skip. */
function knotMissing(t: Test): void {
  const msg = 'knotd is missing: install knot (`apt-get install knot`; .ci/run does this)';
  if (process.env.CI === 'true') t.fail(msg);
  else t.skip(msg, () => {});
}

/**
 * One Knot for a whole test file, started on first use and stopped with `root`. Each
 * subtest calls the returned function: when knotd is missing, that subtest is skipped
 * (or, under CI=true, fails) with the install hint, and gets undefined.
 */
export function sharedKnot(root: Test): (sub: Test) => Promise<Knot | undefined> {
  let started: Promise<Knot | undefined> | undefined;
  return async (sub) => {
    if (requireKnotd(sub) === undefined) return undefined;
    started ??= startKnot(root);
    return started;
  };
}

/** A port free on 127.0.0.1 for both TCP and UDP right now. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

export interface KnotSecondaryOptions {
  /** The zone to transfer. */
  readonly zone: string;
  /** The primary (clusterdns): Knot's `remote`, and the only address NOTIFY is accepted from. */
  readonly primary: { readonly host: string; readonly port: number };
  /** Knot's own port (the primary's `transferNotify` names it); default: a free one. */
  readonly port?: number;
  /** Wait at most this long for the first transfer (ms). Default 10 s. */
  readonly timeoutMs?: number;
}

/**
 * The knot.conf of a secondary of `zone` (README "Zone transfer to a secondary" shows
 * the same settings): the primary as a `remote`, an `acl` accepting its NOTIFY (and
 * allowing AXFR out to 127.0.0.1, so tests can compare), and the zone kept only in
 * memory and the journal under `dir`.
 */
export function knotSecondaryConf(dir: string, port: number, o: KnotSecondaryOptions): string {
  return `${knotServerConf(dir, port)}remote:
  - id: clusterdns
    address: ${o.primary.host}@${o.primary.port}
acl:
  - id: notify-from-clusterdns
    address: ${o.primary.host}
    action: notify
  - id: transfer-to-tests
    address: 127.0.0.1
    action: transfer
template:
  - id: default
    storage: "${dir}/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
zone:
  - domain: ${o.zone}
    master: clusterdns
    acl: [notify-from-clusterdns, transfer-to-tests]
`;
}

/**
 * Start knotd as a secondary of `o.primary` for `o.zone`; resolves once it has
 * transferred the zone (answers its SOA). Undefined when knotd is missing (skipped, or
 * failed under CI=true). Stopped, and its temp dir removed, in teardown.
 */
export async function startKnotSecondary(t: Test, o: KnotSecondaryOptions): Promise<Knot | undefined> {
  const bin = requireKnotd(t);
  if (bin === undefined) return undefined;
  const port = o.port ?? (await freePort());
  return runKnot(t, bin, {
    port,
    conf: (dir) => knotSecondaryConf(dir, port, o),
    zones: [o.zone],
    ready: (zone) => soaAnswered(port, zone, true),
    timeoutMs: o.timeoutMs,
    late: `did not transfer ${o.zone}`,
  });
}
