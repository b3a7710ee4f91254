/**
 * Whether this process may change the network stack it runs in. The rule tools would
 * each fail with their own obscure message ("Permission denied (you must be root)",
 * "Operation not permitted"); checking once up front gives one clear line instead.
 */
import { readFileSync } from 'node:fs';

/** linux/capability.h */
const CAP_NET_ADMIN = 12n;

/** True when CAP_NET_ADMIN is in the effective set; undefined when that cannot be told. */
export function hasNetAdmin(statusText?: string): boolean | undefined {
  let text = statusText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/status', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^CapEff:\s*([0-9a-f]+)\s*$/m.exec(text);
  if (m === null) return undefined;
  return ((BigInt(`0x${m[1]!}`) >> CAP_NET_ADMIN) & 1n) === 1n;
}

export class ProxyPermissionError extends Error {
  readonly code = 'EPROXYPERM';
}

/** Throw a ProxyPermissionError naming what is missing and how to get it. */
export function requireNetAdmin(what: string, statusText?: string): void {
  if (hasNetAdmin(statusText) === false) {
    throw new ProxyPermissionError(
      `${what} needs CAP_NET_ADMIN to change this network namespace's rules, and this process does not have it: run it as root (sudo), or grant the capability (Kubernetes: securityContext.capabilities.add: [NET_ADMIN, NET_RAW])`,
    );
  }
}
