/**
 * Proxy metrics, named after kube-proxy's where one exists (README "Metrics" maps them):
 * rules modes report syncs (count, duration, rules written, failures, programming
 * latency); the userspace mode reports per service port connections, bytes, connect
 * errors and retries, which kube-proxy's userspace mode never exposed.
 */
import { counterFrom, FastCounter, FastHistogram, gauge, type Metrics } from '../ops/metrics.js';

/** kube-proxy's sync duration buckets (exponential 1 ms … ~16 s). */
const SYNC_BUCKETS = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);
/** kube-proxy's network programming buckets (0.25 s … 5 min, coarse here). */
const PROGRAMMING_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300];

export class ProxyMetrics {
  readonly syncDuration = new FastHistogram('clusterdns_proxy_sync_proxy_rules_duration_seconds', 'Time one rules sync took (render and apply), by mode, family and kind (full or partial).', SYNC_BUCKETS);
  readonly syncs = new FastCounter('clusterdns_proxy_syncs_total', 'Rules syncs, by mode, family, kind (full or partial) and result (ok or error).');
  readonly rulesWritten = new FastCounter('clusterdns_proxy_rules_written_total', 'Rule and set-element lines handed to iptables-restore or nft, by mode and family.');
  readonly programming = new FastHistogram('clusterdns_proxy_network_programming_duration_seconds', 'Time from a cluster change to the sync that applied it.', PROGRAMMING_BUCKETS);
  readonly conntrackDeleted = new FastCounter('clusterdns_proxy_conntrack_cleanups_total', 'Stale UDP conntrack deletions run after syncs, by result.');
  readonly connections = new FastCounter('clusterdns_proxy_connections_total', 'Userspace proxy connections (TCP) or client flows (UDP) accepted, by service port and protocol.');
  readonly connectErrors = new FastCounter('clusterdns_proxy_connect_errors_total', 'Userspace proxy connections given up (no endpoint answered, or none exists), by service port.');
  readonly retries = new FastCounter('clusterdns_proxy_connect_retries_total', 'Userspace proxy dials retried on another endpoint, by service port.');
  readonly #active = new Map<string, number>();
  /** Bytes in (client to backend) and out, per service port. */
  readonly #bytes = new Map<string, [number, number]>();
  readonly #lastSync = new Map<string, { labels: Record<string, string>; value: number }>();
  readonly #lastRules = new Map<string, { labels: Record<string, string>; value: number }>();

  register(m: Metrics): void {
    for (const c of [this.syncDuration, this.syncs, this.rulesWritten, this.programming, this.conntrackDeleted, this.connections, this.connectErrors, this.retries]) m.register(c.metric());
    m.register(
      counterFrom('clusterdns_proxy_bytes_total', 'Userspace proxy bytes, by service port and direction (in: client to backend).', () =>
        [...this.#bytes].flatMap(([spn, b]) => [
          { labels: { service_port: spn, direction: 'in' }, value: b[0] },
          { labels: { service_port: spn, direction: 'out' }, value: b[1] },
        ]),
      ),
    );
    m.register(gauge('clusterdns_proxy_active_connections', 'Userspace proxy connections (or UDP flows) open now, by service port.', () => [...this.#active].map(([spn, value]) => ({ labels: { service_port: spn }, value }))));
    m.register(gauge('clusterdns_proxy_last_sync_timestamp_seconds', 'Unix time of the last successful rules sync, by mode and family.', () => [...this.#lastSync.values()]));
    m.register(gauge('clusterdns_proxy_rules', 'Rule and element lines written by the last successful sync, by mode and family.', () => [...this.#lastRules.values()]));
  }

  synced(mode: string, family: number, full: boolean, seconds: number, rules: number, ok: boolean): void {
    const kind = full ? 'full' : 'partial';
    const labels = { mode, family: `ipv${family}`, kind };
    this.syncs.inc(`${mode}|${family}|${kind}|${ok}`, () => ({ ...labels, result: ok ? 'ok' : 'error' }));
    if (!ok) return;
    this.syncDuration.observe(`${mode}|${family}|${kind}`, () => labels, seconds);
    this.rulesWritten.inc(`${mode}|${family}`, () => ({ mode, family: `ipv${family}` }), rules);
    this.#lastSync.set(`${mode}|${family}`, { labels: { mode, family: `ipv${family}` }, value: Date.now() / 1000 });
    this.#lastRules.set(`${mode}|${family}`, { labels: { mode, family: `ipv${family}` }, value: rules });
  }

  // The userspace data plane's sink (src/proxy/userspace): label objects made once per key.
  connection(spn: string, proto: string): void {
    this.connections.inc(`${spn}|${proto}`, () => ({ service_port: spn, protocol: proto.toLowerCase() }));
  }
  /** Per chunk copied: one Map lookup and an add (no key string made per call). */
  bytes(spn: string, dir: 'in' | 'out', n: number): void {
    let b = this.#bytes.get(spn);
    if (b === undefined) this.#bytes.set(spn, (b = [0, 0]));
    b[dir === 'in' ? 0 : 1] += n;
  }
  connectError(spn: string): void {
    this.connectErrors.inc(spn, () => ({ service_port: spn }));
  }
  retry(spn: string): void {
    this.retries.inc(spn, () => ({ service_port: spn }));
  }
  active(spn: string, delta: number): void {
    const v = (this.#active.get(spn) ?? 0) + delta;
    if (v <= 0) this.#active.delete(spn);
    else this.#active.set(spn, v);
  }
}
