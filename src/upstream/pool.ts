/**
 * Upstream servers and the pools they form: the root pool (`.`) and one per stub
 * domain. Each server carries its health (consecutive failed health checks, as CoreDNS
 * `forward` counts them), whether it was found in a forwarding loop, and its counters.
 *
 * Selection follows CoreDNS `forward`: the servers that are not down, in `policy`
 * order; when every server is down, all of them anyway (a down mark can be stale, and
 * trying beats failing at once). A server in a forwarding loop is never used.
 */
import { rcodeName } from '../dns/constants.js';
import type { HostPort } from '../net/ip.js';
import { formatAddress, type ExchangeError } from './exchange.js';

export type Policy = 'random' | 'round_robin' | 'sequential';

/**
 * Why a try at a server did not give the answer: an exchange error, or an error rcode
 * from the server (we then try the next one), or a TCP retry that failed after a
 * truncated UDP reply.
 */
export type ErrorKind = ExchangeError | 'servfail' | 'refused' | 'formerr' | 'notimp' | 'truncated';

export const ERROR_KINDS: readonly ErrorKind[] = ['timeout', 'unreachable', 'network', 'closed', 'servfail', 'refused', 'formerr', 'notimp', 'truncated'];

export interface UpstreamStats {
  /** `host:port` (CoreDNS `to` label). */
  readonly address: string;
  /** `.` for the default upstreams, else the stub domain. */
  readonly domain: string;
  readonly healthy: boolean;
  /** Consecutive failed health checks. */
  readonly fails: number;
  readonly loop: boolean;
  /** Queries sent (UDP and TCP, health checks and loop probes excluded). */
  readonly requests: number;
  readonly tcpRequests: number;
  /** Replies received, by rcode name. */
  readonly responses: Readonly<Record<string, number>>;
  readonly errors: Readonly<Record<ErrorKind, number>>;
  /** Datagrams ignored as not our reply (RFC 5452). */
  readonly ignored: number;
  readonly healthcheckFailures: number;
  /** Exchange durations (replies and errors), seconds. */
  readonly latency: { readonly count: number; readonly sum: number };
}

export class Upstream {
  readonly addr: HostPort;
  readonly address: string;
  readonly domain: string;
  fails = 0;
  loop = false;
  requests = 0;
  tcpRequests = 0;
  ignored = 0;
  healthcheckFailures = 0;
  latencyCount = 0;
  latencySum = 0;
  readonly responses = new Map<number, number>();
  readonly errors: Record<ErrorKind, number> = Object.fromEntries(ERROR_KINDS.map((k) => [k, 0])) as Record<ErrorKind, number>;
  /** A health-check cycle is running (see health.ts). */
  checking = false;
  /** Replaced by a new upstream list: background work for it stops. */
  retired = false;

  constructor(addr: HostPort, domain: string) {
    this.addr = addr;
    this.address = formatAddress(addr);
    this.domain = domain;
  }

  down(maxFails: number): boolean {
    return maxFails > 0 && this.fails >= maxFails;
  }

  stats(maxFails: number): UpstreamStats {
    const responses: Record<string, number> = {};
    for (const [rc, n] of this.responses) responses[rcodeName(rc)] = n;
    return {
      address: this.address,
      domain: this.domain,
      healthy: !this.down(maxFails) && !this.loop,
      fails: this.fails,
      loop: this.loop,
      requests: this.requests,
      tcpRequests: this.tcpRequests,
      responses,
      errors: { ...this.errors },
      ignored: this.ignored,
      healthcheckFailures: this.healthcheckFailures,
      latency: { count: this.latencyCount, sum: this.latencySum },
    };
  }
}

export class Pool {
  /** Lowercase domain without trailing dot; '' is the root pool. */
  readonly domain: string;
  readonly upstreams: readonly Upstream[];
  #next = 0;

  constructor(domain: string, servers: readonly HostPort[]) {
    this.domain = domain;
    this.upstreams = servers.map((s) => new Upstream(s, domain === '' ? '.' : domain));
  }

  /** Servers to try for one query, in order. Empty when every server loops. */
  candidates(policy: Policy, maxFails: number): readonly Upstream[] {
    const all = this.upstreams;
    // The common case, every server usable: no filtering, and no copy unless shuffled.
    let allGood = true;
    for (const u of all) if (u.loop || u.down(maxFails)) allGood = false;
    let list: readonly Upstream[] = all;
    if (!allGood) {
      const usable = all.filter((u) => !u.loop);
      const healthy = usable.filter((u) => !u.down(maxFails));
      list = healthy.length > 0 ? healthy : usable;
    }
    if (list.length <= 1) return list;
    switch (policy) {
      case 'sequential':
        return list;
      case 'round_robin': {
        const start = this.#next++ % list.length;
        return [...list.slice(start), ...list.slice(0, start)];
      }
      case 'random': {
        const out = [...list];
        for (let i = out.length - 1; i > 0; i--) {
          const j = Math.floor(Math.random() * (i + 1));
          [out[i], out[j]] = [out[j]!, out[i]!];
        }
        return out;
      }
    }
  }
}

/** Normalized stub domain: lowercase, no trailing dot. */
export function normalizeDomain(d: string): string {
  return d.trim().toLowerCase().replace(/\.+$/, '');
}

/** The pool for `name`: the longest stub domain that is `name` or a suffix of it, else the root pool. */
export function routeName<T extends { readonly domain: string }>(name: string, stubs: readonly T[], root: T | undefined): T | undefined {
  // `stubs` is sorted longest first, so the first match is the longest suffix.
  for (const p of stubs) {
    const d = p.domain;
    if (name === d || (name.length > d.length && name.endsWith(d) && name.charCodeAt(name.length - d.length - 1) === 46)) return p;
  }
  return root;
}
