/**
 * Kubernetes mode: the apiserver allocates, so clusterdns only mirrors. `createMirror`
 * runs the repair checks read-only over the clusterIPs and nodePorts the API reports
 * (the store the API source fills), on a timer: duplicates (an IP or nodePort on two
 * Services; the first by `namespace/name` is taken as the holder), IPs outside the
 * configured service CIDRs, IPs of an unconfigured family, nodePorts outside the range.
 * Nothing is allocated or written. The last report and the usage per CIDR are exposed
 * for metrics; new findings are logged once.
 *
 * The service CIDRs are those of the configuration (`serviceCIDRs`, which should match
 * the cluster's `--service-cluster-ip-range`); the API does not publish them to a
 * watcher of Services.
 *
 * @module
 */
import type { Logger } from 'pino';
import type { ClusterStore } from '../cluster/store.js';
import { sourceLog } from '../log.js';
import { ClusterIPAllocator } from '../ipam/allocator.js';
import { ErrPortAllocated, ErrPortNotInRange } from '../ipam/errors.js';
import { PortAllocator } from '../ipam/portallocator.js';
import { ClusterIPRepair, type RepairReport } from '../ipam/repair.js';
import { type Anomaly, OnceLog, countAnomalies } from './anomalies.js';
import { type RegistryConfig, type RegistrySettings, registrySettings } from './config.js';
import { DEFAULT_REPAIR_INTERVAL_MS } from './registry.js';
import type { IpamStatus } from './status.js';
import { type PortUsage, type RangeUsage, portUsage, rangeUsage } from './usage.js';

/** One check of the API's Services. */
export interface MirrorReport {
  readonly at: number;
  /** The read-only ClusterIP repair report (upstream shape). */
  readonly ips: RepairReport;
  readonly anomalies: readonly Anomaly[];
  readonly ranges: readonly RangeUsage[];
  readonly nodePorts: PortUsage;
  readonly services: number;
}

/** Options of {@link createMirror}. */
export interface MirrorOptions {
  /** Check period (default 3 min, as upstream's repair); 0: only on `runOnce()`. */
  readonly intervalMs?: number;
  /** Label for reports and metrics (default `kubernetes`; the lead may pass the cluster domain). */
  readonly zone?: string;
}

/** The read-only allocator mirror of Kubernetes mode. */
export interface Mirror {
  readonly settings: RegistrySettings;
  /** Checks now and returns the report. */
  runOnce(): MirrorReport;
  lastReport(): MirrorReport | undefined;
  /** Usage and finding counts of the last report (an empty one before the first). */
  status(): IpamStatus;
  /** Runs a check now, then every `intervalMs`. */
  start(): void;
  stop(): void;
}

/**
 * Creates the mirror over `store` (the API source's). `config` gives `serviceCIDRs`
 * and `nodePortRange` (defaults as the registry's); `log` gets each new finding once.
 */
export function createMirror(
  store: ClusterStore,
  config: Partial<RegistryConfig> | undefined,
  log: Logger,
  options: MirrorOptions = {},
): Mirror {
  const settings = registrySettings(config);
  const zone = options.zone ?? 'kubernetes';
  const repair = new ClusterIPRepair(settings.serviceCIDRs);
  const once = new OnceLog(sourceLog(log));
  let last: MirrorReport | undefined;
  let timer: NodeJS.Timeout | undefined;

  const runOnce = (): MirrorReport => {
    const keys = [...store.services.keys()].sort();
    const services = keys.map((k) => store.services.get(k)).filter((s) => s !== undefined);
    // The "stored" bitmap is what the Services hold, so only real anomalies show (no leaks).
    const held = new ClusterIPAllocator(settings.serviceCIDRs);
    for (const s of services) {
      for (const ip of s.clusterIPs) {
        try {
          held.allocateSpecific(ip);
        } catch {
          // Out of range or a duplicate: the repair reports it.
        }
      }
    }
    const snap = held.snapshot();
    const ips = repair.runOnce(
      { snapshot: () => snap, restore: () => {} },
      services.map((s) => ({ namespace: s.namespace, name: s.name, clusterIPs: s.clusterIPs, ...(s.clusterIPs[0] === undefined ? {} : { clusterIP: s.clusterIPs[0] }) })),
      { readOnly: true },
    );
    const anomalies: Anomaly[] = ips.anomalies.map((a) => {
      const i = a.service?.indexOf('/') ?? -1;
      return {
        kind: 'repair',
        severity: a.kind === 'not-allocated' || a.kind.startsWith('leak') ? 'warning' : 'error',
        zone,
        reason: a.reason,
        ip: a.ip,
        message: a.message,
        ...(a.service === undefined || i < 0 ? {} : { objectKind: 'Service', namespace: a.service.slice(0, i), name: a.service.slice(i + 1) }),
      };
    });
    const ports = new PortAllocator(settings.nodePortRange);
    for (const s of services) {
      for (const np of new Set(s.ports.map((p) => p.nodePort ?? 0).filter((n) => n !== 0))) {
        const at = { zone, objectKind: 'Service', namespace: s.namespace, name: s.name };
        try {
          ports.allocate(np);
        } catch (err) {
          if (err instanceof ErrPortAllocated) {
            anomalies.push({ kind: 'repair', severity: 'error', ...at, reason: 'PortAlreadyAllocated', message: `Port ${np} was assigned to multiple services; please recreate service` });
          } else if (err instanceof ErrPortNotInRange) {
            anomalies.push({ kind: 'repair', severity: 'error', ...at, reason: 'PortOutOfRange', message: `Port ${np} is not within the port range ${settings.nodePortRange}; please recreate service` });
          }
        }
      }
    }
    const usage = ClusterIPAllocator.fromSnapshot(ips.snapshot);
    last = {
      at: Date.now(),
      ips,
      anomalies,
      ranges: usage.ranges.map(rangeUsage),
      nodePorts: portUsage(ports),
      services: services.length,
    };
    once.note(anomalies);
    return last;
  };

  const status = (): IpamStatus => {
    if (last === undefined) {
      const empty = new ClusterIPAllocator(settings.serviceCIDRs);
      return { zone, mode: 'mirror', ranges: empty.ranges.map(rangeUsage), nodePorts: portUsage(new PortAllocator(settings.nodePortRange)), anomalies: countAnomalies([]) };
    }
    return {
      zone,
      mode: 'mirror',
      ranges: last.ranges,
      nodePorts: last.nodePorts,
      anomalies: countAnomalies(last.anomalies),
      lastRepair: { at: last.at, changed: false, findings: last.anomalies.length },
    };
  };

  return {
    settings,
    runOnce,
    lastReport: () => last,
    status,
    start: () => {
      if (timer !== undefined) return;
      runOnce();
      const ms = options.intervalMs ?? DEFAULT_REPAIR_INTERVAL_MS;
      if (ms > 0) {
        timer = setInterval(() => {
          try {
            runOnce();
          } catch (err) {
            log.error({ err }, 'clusterIP mirror check failed');
          }
        }, ms);
        timer.unref();
      }
    },
    stop: () => {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}
