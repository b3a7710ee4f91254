/**
 * The status shape both the embedded registry (per zone) and the Kubernetes-mode
 * mirror expose, for metrics and `clusterdns ipam`.
 *
 * @module
 */
import type { AnomalyKind } from './anomalies.js';
import type { PortUsage, RangeUsage } from './usage.js';

/** Usage and findings of one zone (registry) or of the API's Services (mirror). */
export interface IpamStatus {
  /** Zone name (registry) or the cluster domain served from the API (mirror). */
  readonly zone: string;
  /** `registry`: allocates (zones/); `mirror`: read-only checks of the API's clusterIPs. */
  readonly mode: 'registry' | 'mirror';
  readonly ranges: readonly RangeUsage[];
  readonly nodePorts: PortUsage;
  /** Current findings by kind (every kind present). */
  readonly anomalies: Record<AnomalyKind, number>;
  /** The last repair pass (registry) or check (mirror). */
  readonly lastRepair?: { readonly at: number; readonly changed: boolean; readonly findings: number };
}
