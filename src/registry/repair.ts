/**
 * The repair pass over a zone's stored state: upstream's two repair controllers (the
 * ClusterIP one, `src/ipam/repair.ts` `ClusterIPRepair`, and the NodePort one,
 * `pkg/registry/core/service/portallocator/controller/repair.go`) run over the stored
 * Services (the records) against the stored bitmaps.
 *
 * Findings: an IP or port held in the bitmap by no Service is a suspected leak, freed on
 * the 3rd consecutive pass that sees it; a Service IP or port missing from the bitmap is
 * set again ("repairing"); IPs outside the configured CIDRs (after a configuration
 * change) and IPs or ports held by two Services are reported (upstream does not change
 * Services; the registry keeps the first record by `namespace/name` for a duplicated
 * IP, see {@link dedupeRecords}).
 *
 * @module
 */
import { ClusterIPRepair, type RepairAnomaly, type RepairReport, type RepairStore } from '../ipam/repair.js';
import type { ClusterIPSnapshot } from '../ipam/allocator.js';
import { ErrPortAllocated, ErrPortNotInRange } from '../ipam/errors.js';
import { CLUSTER_IP_NONE } from '../ipam/families.js';
import { IP } from '../ipam/ip.js';
import { NUM_REPAIRS_BEFORE_LEAK_CLEANUP } from '../ipam/repair.js';
import { PortAllocator } from '../ipam/portallocator.js';
import type { Anomaly } from './anomalies.js';
import type { RegistrySettings } from './config.js';
import type { AllocationRecord, AllocationState } from './state.js';

/** A NodePort repair finding (upstream event reasons). */
export interface PortRepairFinding {
  readonly reason: 'PortNotAllocated' | 'PortAlreadyAllocated' | 'PortOutOfRange' | 'PortLeaked';
  readonly port: number;
  readonly service?: string;
  readonly message: string;
  readonly passes?: number;
  /** Leaks: freed by this pass. */
  readonly cleaned?: boolean;
}

/** The outcome of one pass. */
export interface RepairOutcome {
  /** When it ran (ms since the epoch). */
  readonly at: number;
  readonly readOnly: boolean;
  /** The ClusterIP report (upstream shape). */
  readonly ips: RepairReport;
  readonly ports: readonly PortRepairFinding[];
  /** The repaired state (the same object when nothing changed). */
  readonly state: AllocationState;
  readonly changed: boolean;
  /** Every finding as an {@link Anomaly}. */
  readonly anomalies: readonly Anomaly[];
}

function keyParts(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

function serviceIPs(rec: AllocationRecord): string[] {
  return rec.clusterIPs[0] === CLUSTER_IP_NONE ? [] : [...rec.clusterIPs];
}

const IP_SEVERITY: Record<RepairAnomaly['kind'], Anomaly['severity']> = {
  invalid: 'error',
  'family-not-configured': 'error',
  'out-of-range': 'error',
  duplicate: 'error',
  'not-allocated': 'warning',
  'leak-suspected': 'warning',
  'leak-cleaned': 'info',
};

/** Repair passes of one zone; keeps the leak counters between passes (upstream `leaks`). */
export class StateRepair {
  readonly #settings: RegistrySettings;
  readonly #ip: ClusterIPRepair;
  readonly #portLeaks = new Map<number, number>();

  constructor(settings: RegistrySettings) {
    this.#settings = settings;
    this.#ip = new ClusterIPRepair(settings.serviceCIDRs);
  }

  /**
   * One pass over `state`. Read-only passes compute the same findings without advancing
   * the leak counters (nothing is ever freed by a read-only pass).
   */
  run(zone: string, state: AllocationState, options: { readOnly?: boolean; file?: string; now?: number } = {}): RepairOutcome {
    const readOnly = options.readOnly ?? false;
    const keys = [...state.records.keys()].sort();

    let snap: ClusterIPSnapshot = { ranges: state.ranges };
    const store: RepairStore = {
      snapshot: () => snap,
      restore: (s) => {
        snap = s;
      },
    };
    const services = keys.map((k) => {
      const ips = serviceIPs(state.records.get(k) as AllocationRecord);
      return { ...keyParts(k), clusterIPs: ips, ...(ips[0] === undefined ? {} : { clusterIP: ips[0] }) };
    });
    const ips = this.#ip.runOnce(store, services, { readOnly });

    // NodePorts, the same way.
    const range = this.#settings.nodePortRange;
    const stored = new PortAllocator(range);
    if (state.nodePorts.range === stored.range.toString()) {
      stored.restore(range, new Uint8Array(Buffer.from(state.nodePorts.data, 'base64')));
    }
    const storedBefore = stored.snapshotJSON().data;
    const rebuilt = new PortAllocator(range);
    const leaks = readOnly ? new Map(this.#portLeaks) : this.#portLeaks;
    const ports: PortRepairFinding[] = [];
    for (const k of keys) {
      const rec = state.records.get(k) as AllocationRecord;
      for (const np of new Set(rec.ports.map((p) => p.nodePort ?? 0).filter((n) => n !== 0))) {
        try {
          rebuilt.allocate(np);
        } catch (err) {
          if (err instanceof ErrPortAllocated) {
            ports.push({ reason: 'PortAlreadyAllocated', port: np, service: k, message: `Port ${np} was assigned to multiple services; please recreate service` });
          } else if (err instanceof ErrPortNotInRange) {
            ports.push({ reason: 'PortOutOfRange', port: np, service: k, message: `Port ${np} is not within the port range ${range}; please recreate service` });
          }
          continue;
        }
        if (stored.has(np)) stored.release(np);
        else ports.push({ reason: 'PortNotAllocated', port: np, service: k, message: `Port ${np} is not allocated; repairing` });
        leaks.delete(np);
      }
    }
    stored.forEach((np) => {
      const count = leaks.get(np) ?? NUM_REPAIRS_BEFORE_LEAK_CLEANUP - 1;
      const passes = NUM_REPAIRS_BEFORE_LEAK_CLEANUP - count;
      if (count > 0) {
        leaks.set(np, count - 1);
        rebuilt.allocate(np);
        ports.push({ reason: 'PortLeaked', port: np, passes, message: `the node port ${np} may have leaked: flagging for later clean up` });
      } else {
        ports.push({ reason: 'PortLeaked', port: np, passes, cleaned: true, message: `the node port ${np} appears to have leaked: cleaning up` });
      }
    });
    const nodePorts = rebuilt.snapshotJSON();
    const portsChanged = nodePorts.data !== storedBefore || state.nodePorts.range !== nodePorts.range;
    const changed = ips.changed || portsChanged;

    const file = options.file === undefined ? {} : { file: options.file };
    const anomalies: Anomaly[] = [
      ...ips.anomalies.map((a): Anomaly => ({
        kind: 'repair',
        severity: IP_SEVERITY[a.kind],
        zone,
        ...file,
        reason: a.reason,
        ip: a.ip,
        message: a.message,
        ...(a.service === undefined ? {} : { objectKind: 'Service', ...keyParts(a.service) }),
      })),
      ...ports.map((p): Anomaly => ({
        kind: 'repair',
        severity: p.reason === 'PortLeaked' ? (p.cleaned === true ? 'info' : 'warning') : p.reason === 'PortNotAllocated' ? 'warning' : 'error',
        zone,
        ...file,
        reason: p.reason,
        message: p.message,
        ...(p.service === undefined ? {} : { objectKind: 'Service', ...keyParts(p.service) }),
      })),
    ];
    const next: AllocationState = changed ? { ...state, ranges: ips.snapshot.ranges, nodePorts } : state;
    return { at: options.now ?? Date.now(), readOnly, ips, ports, state: next, changed, anomalies };
  }
}

/**
 * Keeps one stored Service per IP: when records share an IP (a hand-edited or merged
 * state file), the first by `namespace/name` keeps its record and the others are
 * dropped, so they are allocated again (or refused) like new Services. Their other
 * addresses become leaks, freed by the repair pass. Returns the dropped keys.
 */
export function dedupeRecords(state: AllocationState): { state: AllocationState; dropped: string[] } {
  const owner = new Map<string, string>();
  const dropped: string[] = [];
  for (const k of [...state.records.keys()].sort()) {
    const rec = state.records.get(k) as AllocationRecord;
    const ips = serviceIPs(rec).map((ip) => IP.parse(ip)?.toString() ?? ip);
    if (ips.some((ip) => owner.has(ip))) {
      dropped.push(k);
      continue;
    }
    for (const ip of ips) owner.set(ip, k);
  }
  if (dropped.length === 0) return { state, dropped };
  const records = new Map(state.records);
  for (const k of dropped) records.delete(k);
  return { state: { ...state, records }, dropped };
}
