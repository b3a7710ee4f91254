/**
 * Prometheus gauges for the registry and the mirror, read on every scrape from their
 * `status()`. Names follow kube-apiserver's allocator metrics
 * (`kube_apiserver_clusterip_allocator_allocated_ips` / `_available_ips`,
 * `kube_apiserver_nodeport_allocator_*`) under the `clusterdns_ipam_` prefix:
 *
 * | metric | labels |
 * |---|---|
 * | `clusterdns_ipam_allocated_ips` | zone, cidr, band (`static`/`dynamic`) |
 * | `clusterdns_ipam_available_ips` | zone, cidr |
 * | `clusterdns_ipam_allocated_nodeports` | zone, range |
 * | `clusterdns_ipam_available_nodeports` | zone, range |
 * | `clusterdns_ipam_anomalies` | zone, kind |
 * | `clusterdns_ipam_state_write_ok` | zone (1 ok, 0 writes failing; registry only) |
 *
 * ```ts
 * for (const m of ipamMetrics(() => registry.status())) metrics.register(m);
 * ```
 *
 * @module
 */
import { type PromMetric, gauge } from '../ops/metrics.js';
import { ANOMALY_KINDS } from './anomalies.js';
import type { IpamStatus } from './status.js';
import type { ZoneStatus } from './zone.js';

/** The gauges over `read()` (called on each scrape). */
export function ipamMetrics(read: () => readonly IpamStatus[]): PromMetric[] {
  return [
    gauge('clusterdns_ipam_allocated_ips', 'Allocated service IPs, by zone, service CIDR and KEP-3070 band (static, dynamic).', () =>
      read().flatMap((s) =>
        s.ranges.flatMap((r) => [
          { labels: { zone: s.zone, cidr: r.cidr, band: 'static' }, value: r.static.allocated },
          { labels: { zone: s.zone, cidr: r.cidr, band: 'dynamic' }, value: r.dynamic.allocated },
        ]),
      ), 'max'),
    gauge('clusterdns_ipam_available_ips', 'Free service IPs, by zone and service CIDR.', () =>
      read().flatMap((s) => s.ranges.map((r) => ({ labels: { zone: s.zone, cidr: r.cidr }, value: r.free }))), 'max'),
    gauge('clusterdns_ipam_allocated_nodeports', 'Allocated NodePorts, by zone and range.', () =>
      read().map((s) => ({ labels: { zone: s.zone, range: s.nodePorts.range }, value: s.nodePorts.allocated })), 'max'),
    gauge('clusterdns_ipam_available_nodeports', 'Free NodePorts, by zone and range.', () =>
      read().map((s) => ({ labels: { zone: s.zone, range: s.nodePorts.range }, value: s.nodePorts.free })), 'max'),
    gauge('clusterdns_ipam_anomalies', 'Current allocator findings (refused services and addresses, repair findings, state problems), by zone and kind.', () =>
      read().flatMap((s) => ANOMALY_KINDS.map((kind) => ({ labels: { zone: s.zone, kind }, value: s.anomalies[kind] }))), 'max'),
    gauge('clusterdns_ipam_state_write_ok', 'Whether the registry state can be written (1) or new random allocations are refused (0), by zone.', () =>
      read()
        .filter((s): s is ZoneStatus => s.mode === 'registry')
        .map((s) => ({ labels: { zone: s.zone }, value: s.persistence.ok ? 1 : 0 })), 'max'),
  ];
}
