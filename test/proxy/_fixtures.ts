/**
 * What the proxy's render and apply tests share: ProxyPort builders for hand-made views,
 * and a scratch network namespace to apply rules in.
 */
import { spawnSync } from 'node:child_process';
import type { Test } from 'tap';
import { requireTool } from '../helpers/cli.js';
import type { ProxyEndpoint, ProxyPort } from '../../src/proxy/types.js';

/** A ready, serving, non-local endpoint (override with `more`). */
export function ep(ip: string, port: number, more: Partial<ProxyEndpoint> = {}): ProxyEndpoint {
  const key = ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
  return { ip, port, key, ready: true, serving: true, terminating: false, local: false, ...more };
}

export type PortSpec = Partial<ProxyPort> & Pick<ProxyPort, 'namespace' | 'name' | 'clusterIP'>;

/** A TCP port 80 named p80 (kube-proxy's test fixtures' shape) unless `o` says otherwise. */
export function svc(o: PortSpec): ProxyPort {
  const portName = o.portName ?? 'p80';
  return {
    service: `${o.namespace}/${o.name}`,
    spn: `${o.namespace}/${o.name}${portName === '' ? '' : `:${portName}`}`,
    portName,
    protocol: 'TCP',
    family: 4,
    port: 80,
    nodePort: 0,
    externalIPs: [],
    affinitySeconds: 0,
    internalLocal: false,
    externalLocal: false,
    endpoints: [],
    ...o,
  };
}

/**
 * A fresh network namespace named `<prefix>-<pid>-<random>`, deleted at teardown, or
 * undefined: without root the test is skipped (failed under CI=true, as e2e.test.ts);
 * a missing tool or `ip netns add` failing as root is a failure.
 */
export function scratchNetns(t: Test, prefix: string, tool: string, pkg: string): string | undefined {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') t.fail('network namespaces need root');
    else t.skip('network namespaces need root', () => {});
    return undefined;
  }
  if (!requireTool(t, tool, pkg)) return undefined;
  const name = `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const r = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (r.status !== 0) {
    t.fail(`ip netns add failed: ${r.stderr}`);
    return undefined;
  }
  t.teardown(() => {
    spawnSync('ip', ['netns', 'del', name]);
  });
  return name;
}

/** Run a command in the namespace; its stdout, or an error with its stderr. */
export function inNs(ns: string, cmd: string, args: string[], input?: string): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
