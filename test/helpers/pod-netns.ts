/**
 * A pod as its resolver sees it, for the DNS tests that run glibc (`getent`) and
 * `dig +search` against the real CLI: a network namespace with the kubelet's resolv.conf
 * and pod addresses on lo. Root only; shared by test/e2e.test.ts and
 * test/autopath-netns.test.ts. (The service proxy's node/pod topology is
 * test/proxy/_netns.ts.)
 *
 * The namespace is named `<prefix><pid>` (parallel test files never clash); the ones a
 * killed run left behind (their pid is gone) are swept first, and this one is deleted in
 * teardown, also on failure.
 */
import { rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { Test } from 'tap';
import { run } from './cli.js';

export interface PodNetns {
  readonly name: string;
  /** The argv prefix that runs a command inside (`ip netns exec <name>`; startCli, dig). */
  readonly exec: string[];
  /** Run `cmd args` inside, to completion. */
  inside(cmd: string, args: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
}

export interface PodNetnsOptions {
  /** `<prefix><pid>` names the namespace; also what stale ones are recognised by. */
  readonly prefix: string;
  /** Its /etc/resolv.conf (`ip netns exec` bind-mounts /etc/netns/<name>/resolv.conf). */
  readonly resolvConf: string;
  /**
   * Addresses put on lo, as a pod has on eth0: without an IPv4 one glibc's ahostsv4 sends
   * nothing (no usable source); a pod's IP is also what autopath knows the client by.
   */
  readonly addresses: readonly string[];
}

/** Root or a visible skip (a failure under CI=true, where the suite runs as root). */
export function requireRoot(t: Test): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI === 'true') t.fail('network namespaces need root');
  else t.skip('network namespaces need root', () => {});
  return false;
}

/** The pod namespace, or undefined when it cannot be made (the test has failed then). */
export async function podNetns(t: Test, o: PodNetnsOptions): Promise<PodNetns | undefined> {
  sweepStale(o.prefix);
  const name = `${o.prefix}${process.pid}`;
  const add = await run('ip', ['netns', 'add', name]);
  if (add.code !== 0) {
    t.fail(`ip netns add failed: ${add.stderr}`);
    return undefined;
  }
  const etc = `/etc/netns/${name}`;
  t.teardown(async () => {
    await run('ip', ['netns', 'del', name]);
    rmSync(etc, { recursive: true, force: true });
  });
  mkdirSync(etc, { recursive: true });
  writeFileSync(`${etc}/resolv.conf`, o.resolvConf);
  const exec = ['ip', 'netns', 'exec', name];
  const inside = (cmd: string, args: string[], timeoutMs = 15_000) => run(exec[0]!, [...exec.slice(1), cmd, ...args], timeoutMs);
  await inside('ip', ['link', 'set', 'lo', 'up']);
  for (const ip of o.addresses) {
    await inside('ip', ip.includes(':') ? ['addr', 'add', `${ip}/128`, 'dev', 'lo', 'nodad'] : ['addr', 'add', `${ip}/32`, 'dev', 'lo']);
  }
  return { name, exec, inside };
}

/** Namespaces of `prefix` left by a killed run (their pid is gone): their processes killed, deleted. */
function sweepStale(prefix: string): void {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of list.split('\n')) {
    const m = new RegExp(`^(${prefix}(\\d+))\\b`).exec(line);
    if (m === null) continue;
    try {
      process.kill(Number(m[2]), 0);
      continue;
    } catch {
      // its maker is gone
    }
    for (const p of (spawnSync('ip', ['netns', 'pids', m[1]!], { encoding: 'utf8' }).stdout ?? '').split('\n').filter((x) => /^\d+$/.test(x))) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        // gone
      }
    }
    spawnSync('ip', ['netns', 'del', m[1]!]);
    rmSync(`/etc/netns/${m[1]}`, { recursive: true, force: true });
  }
}
