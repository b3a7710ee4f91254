/**
 * Start the real CLI (`node bin/clusterdns.js serve ...`) as a user would, and run dig
 * against it. dig is the reference client of the end-to-end tests.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(ROOT, 'bin', 'clusterdns.js');

export interface Cli {
  readonly proc: ChildProcess;
  readonly port: number;
  readonly httpPort: number | undefined;
  readonly stdout: () => string;
  readonly stderr: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Spawn `clusterdns serve` with `args` and wait for its banner. `prefix` runs it under
 * another command (e.g. `ip netns exec NAME`).
 */
export async function startCli(t: Test, args: string[], prefix: string[] = []): Promise<Cli> {
  const argv = [...prefix, process.execPath, BIN, 'serve', ...args];
  const proc = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  const deadline = Date.now() + 20_000;
  while (!/^try: dig/m.test(out)) {
    if (proc.exitCode !== null) throw new Error(`clusterdns exited ${proc.exitCode}: ${err}`);
    if (Date.now() > deadline) throw new Error(`no banner within 20 s; stderr: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(/ on [^ ]*?:(\d+)/.exec(out)![1]);
  const http = /http on [^ ]*?:(\d+)/.exec(out);
  return {
    proc,
    port,
    httpPort: http === null ? undefined : Number(http[1]),
    stdout: () => out,
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      proc.kill(signal);
      return exited;
    },
  };
}

/** Run a command to completion; resolves with its stdout (stderr appended on failure). */
export function run(cmd: string, args: string[], timeoutMs = 10_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

export function dig(port: number, args: string[], prefix: string[] = []): Promise<string> {
  const argv = [...prefix, 'dig', '@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args];
  return run(argv[0]!, argv.slice(1)).then((r) => r.stdout);
}

/** The `status:` of a dig reply. */
export function digStatus(out: string): string | undefined {
  return /status: ([A-Z]+)/.exec(out)?.[1];
}

/**
 * Whether a command exists. Under CI=true a missing tool fails the test (CI installs
 * it); elsewhere the test is skipped with the install hint.
 */
export function requireTool(t: Test, cmd: string, pkg: string): boolean {
  const ok = spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
  if (ok) return true;
  const msg = `${cmd} is missing: install it with \`apt-get install ${pkg}\` (.ci/run does this)`;
  if (process.env.CI === 'true') t.fail(msg);
  else t.skip(msg, () => {});
  return false;
}

/**
 * A private copy of a zones/ tree (tests edit it), in its own temp folder so the
 * registry state next to it (`.clusterdns/`) is private too.
 */
export function copyZones(t: Test, from = join(ROOT, 'zones')): string {
  const base = mkdtempSync(join(tmpdir(), 'clusterdns-zones-'));
  const dir = join(base, 'zones');
  cpSync(from, dir, { recursive: true });
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  return dir;
}

/** The example configuration `npm start` uses (dual-stack service CIDRs for zones/). */
export const EXAMPLE_CONFIG = join(ROOT, 'clusterdns.yaml');
