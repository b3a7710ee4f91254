/**
 * Running the rule tools (iptables-restore, nft, conntrack): one child process, input on
 * stdin, output kept up to a bound, a time limit. Never throws for a non-zero exit:
 * callers decide what a failure means.
 */
import { spawn } from 'node:child_process';

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Output kept per stream: tool errors fit; a listing of 10k services does too. */
const MAX_OUTPUT = 64 * 1024 * 1024;

export type Exec = (cmd: string, args: readonly string[], input?: string, timeoutMs?: number) => Promise<ExecResult>;

export const exec: Exec = (cmd, args, input, timeoutMs = 60_000) =>
  new Promise((resolve) => {
    let child;
    try {
      child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      resolve({ code: 127, stdout: '', stderr: `${cmd}: ${(err as Error).message}` });
      return;
    }
    const out: Buffer[] = [];
    const errs: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    child.stdout.on('data', (b: Buffer) => {
      if (outLen < MAX_OUTPUT) out.push(b);
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errLen < MAX_OUTPUT) errs.push(b);
      errLen += b.length;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
    });
    // EPIPE when the tool exits before reading everything: its exit code says why.
    child.stdin.on('error', () => {});
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(errs).toString('utf8');
      if (spawnError !== undefined) {
        const missing = (spawnError as NodeJS.ErrnoException).code === 'ENOENT';
        resolve({ code: 127, stdout: '', stderr: missing ? `${cmd}: not found (install it, e.g. Debian package ${debianPackage(cmd)})` : `${cmd}: ${spawnError.message}` });
        return;
      }
      resolve({
        code: code ?? (signal === 'SIGKILL' ? 124 : 128),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: signal === 'SIGKILL' && code === null ? `${stderr}${cmd}: killed after ${timeoutMs} ms` : stderr,
      });
    });
    child.stdin.end(input ?? '');
  });

function debianPackage(cmd: string): string {
  if (cmd.startsWith('ip6tables') || cmd.startsWith('iptables')) return 'iptables';
  if (cmd === 'nft') return 'nftables';
  if (cmd === 'conntrack') return 'conntrack';
  return cmd;
}

/** One line of a tool's stderr for an error message (first non-empty line, bounded). */
export function firstLine(s: string): string {
  const line = s.split('\n').find((l) => l.trim() !== '') ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
