/**
 * Builds the upstream stage of one DNS process from the configuration and flags,
 * and registers its metrics under CoreDNS's `forward`/`cache` names.
 */
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { sourceLog } from './log.js';
import type { HostPort } from './net/ip.js';
import { counterFrom, FastHistogram, gauge, type Metrics } from './ops/metrics.js';
import { Forwarder, parseHostPort, parseStubDomains, resolvConfUpstreams } from './upstream/index.js';

export interface ForwardingFlags {
  /** `--upstream` values. */
  readonly upstreams: readonly HostPort[];
  readonly noUpstream: boolean;
  /** Our listen addresses (never forward to ourselves). */
  readonly dns: readonly HostPort[];
}

/** Upstreams in order of precedence: `--upstream`, config `upstream`, /etc/resolv.conf. */
export function chooseUpstreams(config: Config, flags: ForwardingFlags, log: Logger): HostPort[] {
  if (flags.noUpstream) return [];
  if (flags.upstreams.length > 0) return [...flags.upstreams];
  if (config.upstream.length > 0) return config.upstream.map((u) => parseHostPort(u));
  return resolvConfUpstreams('/etc/resolv.conf', [...flags.dns], sourceLog(log));
}

const DURATION_BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/**
 * The forwarder for this process, or undefined with `--no-upstream` or when no
 * upstream is known (names outside our zones then get REFUSED).
 */
export function createForwarder(config: Config, flags: ForwardingFlags, log: Logger, duration: FastHistogram): Forwarder | undefined {
  const upstreams = chooseUpstreams(config, flags, log);
  const stubs = parseStubDomains(config.stubDomains as Record<string, string[]>);
  if (upstreams.length === 0 && Object.keys(stubs).length === 0) {
    if (!flags.noUpstream) log.warn('no upstream resolver (none given, none usable in /etc/resolv.conf): names outside the cluster zones get REFUSED');
    return undefined;
  }
  let to = '';
  const labels = (): { to: string } => ({ to });
  const fwd = new Forwarder({
    upstreams,
    stubDomains: stubs,
    maxConcurrent: config.maxConcurrent,
    timeoutMs: config.forwardTimeout * 1000,
    cache: config.cache,
    log: sourceLog(log),
    selfAddresses: flags.dns,
    onUpstream: (e) => {
      // No closure per exchange: the labels are made once per upstream, from `to`.
      to = e.upstream;
      duration.observe(to, labels, e.seconds);
    },
  });
  log.info({ upstreams: upstreams.map((u) => `${u.host}:${u.port}`), stubDomains: Object.keys(stubs) }, 'forwarding other names');
  return fwd;
}

/** The upstream latency histogram (one per process; forwarders come and go on reload). */
export function forwardDurationHistogram(): FastHistogram {
  return new FastHistogram('clusterdns_forward_request_duration_seconds', 'Time of each exchange with an upstream, by upstream (coredns_forward_request_duration_seconds).', DURATION_BUCKETS);
}

const EMPTY_STATS = {
  inFlight: 0,
  maxConcurrentRejects: 0,
  failures: 0,
  loopDetected: [],
  upstreams: [],
  cache: { size: 0, bytes: 0, entries: { success: 0, denial: 0 }, hits: { success: 0, denial: 0 }, misses: 0, staleServed: 0, prefetches: 0, evictions: 0 },
};

/** Forwarder and cache metrics, read from whichever forwarder is current at scrape time. */
export function registerForwarderMetrics(metrics: Metrics, forwarder: () => Forwarder | undefined, duration: FastHistogram): void {
  const current = () => ({ stats: () => forwarder()?.stats() ?? EMPTY_STATS });
  const ups = () => current().stats().upstreams;
  metrics.register(duration.metric());
  metrics.register(
    counterFrom('clusterdns_forward_requests_total', 'Queries sent to each upstream (coredns_forward_requests_total).', () =>
      ups().map((u) => ({ labels: { to: u.address }, value: u.requests })),
    ),
  );
  metrics.register(
    counterFrom('clusterdns_forward_responses_total', 'Upstream replies by rcode (coredns_forward_responses_total).', () =>
      ups().flatMap((u) => Object.entries(u.responses).map(([rcode, n]) => ({ labels: { to: u.address, rcode }, value: n }))),
    ),
  );
  metrics.register(
    counterFrom('clusterdns_forward_errors_total', 'Failed exchanges with upstreams, by kind (timeout, unreachable, ...).', () =>
      ups().flatMap((u) => Object.entries(u.errors).map(([kind, n]) => ({ labels: { to: u.address, kind }, value: n }))),
    ),
  );
  metrics.register(
    counterFrom('clusterdns_forward_healthcheck_failures_total', 'Failed health checks (coredns_forward_healthcheck_failures_total).', () =>
      ups().map((u) => ({ labels: { to: u.address }, value: u.healthcheckFailures })),
    ),
  );
  metrics.register(
    gauge('clusterdns_forward_upstream_healthy', 'Whether an upstream is considered healthy (1) or down (0).', () =>
      ups().map((u) => ({ labels: { to: u.address, domain: u.domain }, value: u.healthy && !u.loop ? 1 : 0 })),
      'min',
    ),
  );
  metrics.register(
    counterFrom('clusterdns_forward_max_concurrent_rejects_total', 'Queries refused at maxConcurrent (coredns_forward_max_concurrent_rejects_total).', () => [
      { labels: {}, value: current().stats().maxConcurrentRejects },
    ]),
  );
  metrics.register(gauge('clusterdns_forward_in_flight', 'Forwarded queries in flight.', () => [{ labels: {}, value: current().stats().inFlight }]));
  metrics.register(
    gauge('clusterdns_forward_loop_detected', 'Upstreams found to forward back to us (1 each).', () => current().stats().loopDetected.map((to) => ({ labels: { to }, value: 1 }))),
  );
  const cache = () => current().stats().cache;
  metrics.register(
    gauge('clusterdns_cache_entries', 'Cached forwarded answers, by type (coredns_cache_entries).', () => [
      { labels: { type: 'success' }, value: cache().entries.success },
      { labels: { type: 'denial' }, value: cache().entries.denial },
    ]),
  );
  metrics.register(gauge('clusterdns_cache_bytes', 'Bytes held by the cache (approximate).', () => [{ labels: {}, value: cache().bytes }]));
  metrics.register(
    counterFrom('clusterdns_cache_hits_total', 'Cache hits, by type (coredns_cache_hits_total).', () => [
      { labels: { type: 'success' }, value: cache().hits.success },
      { labels: { type: 'denial' }, value: cache().hits.denial },
    ]),
  );
  metrics.register(counterFrom('clusterdns_cache_misses_total', 'Cache misses (coredns_cache_misses_total).', () => [{ labels: {}, value: cache().misses }]));
  metrics.register(counterFrom('clusterdns_cache_served_stale_total', 'Stale answers served (coredns_cache_served_stale_total).', () => [{ labels: {}, value: cache().staleServed }]));
  metrics.register(counterFrom('clusterdns_cache_prefetch_total', 'Prefetches (coredns_cache_prefetch_total).', () => [{ labels: {}, value: cache().prefetches }]));
  metrics.register(counterFrom('clusterdns_cache_evictions_total', 'Evictions (coredns_cache_evictions_total).', () => [{ labels: {}, value: cache().evictions }]));
}
