/**
 * The bitmap repair pass, ported from Kubernetes
 * `pkg/registry/core/service/ipallocator/controller/repair.go` (the per-family version).
 *
 * One pass (`runOnce`):
 * 1. Load the stored bitmap of every configured family from the store (an empty or
 *    missing range starts empty).
 * 2. Rebuild a fresh bitmap from the Services' clusterIPs. Each IP found in the stored
 *    bitmap is removed from it; what remains afterwards are leak candidates.
 *    Anomalies: unparseable IP, family no longer configured, IP outside the CIDR,
 *    IP missing from the stored bitmap ("repairing"), IP used by two Services (the
 *    first in list order keeps it).
 * 3. Leaks: an IP still set in the stored bitmap but used by no Service is kept for
 *    now and counted; it is freed only on the 3rd consecutive pass that sees it leaked
 *    (`numRepairsBeforeLeakCleanup = 3`), which covers an allocation whose Service is
 *    not written yet. The counter lives in this object (upstream's `leaks` map); an IP
 *    seen in use again loses its entry.
 * 4. Save the rebuilt bitmaps to the store.
 *
 * Read-only mode reports what a pass would do without touching the store or the leak
 * counters, so running a check never brings a cleanup closer.
 *
 * Messages are upstream's event texts, except the duplicate, which names the Service
 * (`the cluster IP X for service ns/name was assigned to multiple services`, the
 * 2017 upstream log wording with namespace/name in the right order).
 *
 * @module
 */
import type { IPFamily } from '../cluster/model.js';
import type { ClusterIPSnapshot, RangeAllocationJSON } from './allocator.js';
import { ErrAllocated, ErrNotInRange, IpamError } from './errors.js';
import { CLUSTER_IP_NONE } from './families.js';
import { Cidr, IP, toCidr } from './ip.js';
import { Range } from './range.js';

/** Passes an IP must be seen leaked before it is freed. */
export const NUM_REPAIRS_BEFORE_LEAK_CLEANUP = 3;

/** What the repair found. */
export type RepairAnomalyKind =
  | 'invalid'
  | 'family-not-configured'
  | 'out-of-range'
  | 'not-allocated'
  | 'duplicate'
  | 'leak-suspected'
  | 'leak-cleaned';

/** One finding; JSON-serialisable. */
export interface RepairAnomaly {
  readonly kind: RepairAnomalyKind;
  /** Upstream event reason (`ClusterIPNotValid`, `ClusterIPOutOfRange`, ...) or `ClusterIPLeaked`. */
  readonly reason: string;
  /** The IP as written on the Service (unparseable ones verbatim), canonical otherwise. */
  readonly ip: string;
  readonly family?: IPFamily;
  /** `namespace/name` of the Service (none for leaks). */
  readonly service?: string;
  readonly message: string;
  /** Leaks: consecutive passes this IP has been seen leaked, this one included (1..3). */
  readonly passes?: number;
}

/** Per-family summary of a pass. */
export interface RepairFamilyReport {
  readonly family: IPFamily;
  readonly cidr: string;
  /** Allocated in the stored bitmap before the pass. */
  readonly usedBefore: number;
  /** Allocated in the rebuilt bitmap. */
  readonly usedAfter: number;
  readonly free: number;
}

/** The outcome of {@link ClusterIPRepair.runOnce}; JSON-serialisable (for `--json`). */
export interface RepairReport {
  readonly readOnly: boolean;
  /** The rebuilt bitmaps differ from the stored ones. */
  readonly changed: boolean;
  readonly anomalies: readonly RepairAnomaly[];
  readonly families: readonly RepairFamilyReport[];
  /** The rebuilt state (saved to the store unless read-only). */
  readonly snapshot: ClusterIPSnapshot;
}

/** Where the bitmaps live. `ClusterIPAllocator` implements it. */
export interface RepairStore {
  snapshot(): ClusterIPSnapshot;
  restore(snap: ClusterIPSnapshot): void;
}

/** The Service fields the repair reads; the slim model `Service` fits. */
export interface RepairService {
  readonly namespace?: string;
  readonly name: string;
  readonly clusterIP?: string;
  readonly clusterIPs?: readonly string[];
}

/** A pass could not complete (store unreadable / unwritable, corrupt snapshot). */
export class RepairError extends IpamError {
  constructor(message: string, cause?: unknown) {
    super('ERR_IPAM_REPAIR', message, cause === undefined ? undefined : { cause });
  }
}

const REASON: Record<RepairAnomalyKind, string> = {
  invalid: 'ClusterIPNotValid',
  'family-not-configured': 'ClusterIPNotValid',
  'out-of-range': 'ClusterIPOutOfRange',
  'not-allocated': 'ClusterIPNotAllocated',
  duplicate: 'ClusterIPAlreadyAllocated',
  'leak-suspected': 'ClusterIPLeaked',
  'leak-cleaned': 'ClusterIPLeaked',
};

function key(svc: RepairService): string {
  return svc.namespace === undefined ? svc.name : `${svc.namespace}/${svc.name}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The bitmap repair controller for one or two service CIDRs (primary first). */
export class ClusterIPRepair {
  /** Configured families, primary first. */
  readonly families: readonly IPFamily[];
  readonly #networks = new Map<IPFamily, Cidr>();
  readonly #leaks = new Map<IPFamily, Map<string, number>>();

  /**
   * @param cidrs the service CIDRs (`--service-cluster-ip-range` text, a list, or
   *   parsed CIDRs), e.g. `new ClusterIPRepair(allocator.ranges.map((r) => r.cidr))`.
   */
  constructor(cidrs: string | ReadonlyArray<string | Cidr>) {
    const list = typeof cidrs === 'string' ? cidrs.split(',').map((s) => s.trim()) : [...cidrs];
    const families: IPFamily[] = [];
    for (const c of list.slice(0, 2)) {
      const cidr = toCidr(c);
      if (this.#networks.has(cidr.family)) throw new RepairError(`more than one ${cidr.family} service CIDR`);
      this.#networks.set(cidr.family, cidr);
      this.#leaks.set(cidr.family, new Map());
      families.push(cidr.family);
    }
    if (families.length === 0) throw new RepairError('no service CIDR configured');
    this.families = families;
  }

  /** The network repaired for a family. */
  network(family: IPFamily): Cidr | undefined {
    return this.#networks.get(family);
  }

  /** Leak counters of a family: canonical IP -> passes left before cleanup (upstream `leaks[family]`). */
  leaks(family: IPFamily): ReadonlyMap<string, number> {
    return this.#leaks.get(family) ?? new Map();
  }

  /**
   * One repair pass over `services` against the bitmaps in `store`. Unless
   * `readOnly`, the rebuilt bitmaps are written back with `store.restore` and the leak
   * counters advance. Throws {@link RepairError} when the store can not be read or
   * written (upstream: `unable to refresh the service IP block: ...`,
   * `unable to persist the updated service IP allocations: ...`).
   */
  runOnce(store: RepairStore, services: Iterable<RepairService>, options: { readOnly?: boolean } = {}): RepairReport {
    const readOnly = options.readOnly ?? false;
    let snap: ClusterIPSnapshot;
    try {
      snap = store.snapshot();
    } catch (err) {
      throw new RepairError(`unable to refresh the service IP block: ${(err as Error).message}`, err);
    }

    const stored = new Map<IPFamily, Range>();
    const storedBytes = new Map<IPFamily, Uint8Array>();
    const rebuilt = new Map<IPFamily, Range>();
    for (const family of this.families) {
      const network = this.#networks.get(family) as Cidr;
      const entry = snap.ranges.find((r: RangeAllocationJSON) => r.family === family || (r.range !== '' && safeFamily(r.range) === family));
      const data = new Uint8Array(Buffer.from(entry?.data ?? '', 'base64'));
      try {
        // If not yet initialised, the stored range is the configured network.
        const range = entry === undefined || entry.range === '' ? network.toString() : entry.range;
        stored.set(family, Range.fromSnapshot({ range, data }));
      } catch (err) {
        throw new RepairError(`unable to rebuild allocator from snapshots for family:${family} with error:${(err as Error).message}`, err);
      }
      storedBytes.set(family, stored.get(family)?.snapshot().data ?? new Uint8Array(0));
      rebuilt.set(family, new Range(network));
    }
    const usedBefore = new Map([...stored].map(([f, r]) => [f, r.used()]));

    // Read-only passes work on a copy of the counters.
    const leaks = new Map<IPFamily, Map<string, number>>();
    for (const [f, m] of this.#leaks) leaks.set(f, readOnly ? new Map(m) : m);

    const anomalies: RepairAnomaly[] = [];
    const add = (a: Omit<RepairAnomaly, 'reason'>) => anomalies.push({ ...a, reason: REASON[a.kind] });

    for (const svc of services) {
      const ips = svc.clusterIPs !== undefined && svc.clusterIPs.length > 0 ? svc.clusterIPs : svc.clusterIP ? [svc.clusterIP] : [];
      const primary = svc.clusterIP ?? ips[0] ?? '';
      // IsServiceIPSet: "" and "None" need no IP.
      if (primary === '' || primary === CLUSTER_IP_NONE || ips.length === 0) continue;
      const service = key(svc);
      for (const text of ips) {
        const ip = IP.parse(text);
        if (ip === undefined) {
          add({ kind: 'invalid', ip: text, service, message: `Cluster IP ${text} is not a valid IP; please recreate service` });
          continue;
        }
        const family = ip.family;
        const actual = rebuilt.get(family);
        if (actual === undefined) {
          add({
            kind: 'family-not-configured', ip: ip.toString(), family, service,
            message: `Cluster IP ${ip}(${family}) is of ip family that is no longer configured on cluster; please recreate service`,
          });
          continue;
        }
        try {
          actual.allocate(ip);
        } catch (err) {
          if (err instanceof ErrAllocated) {
            add({
              kind: 'duplicate', ip: ip.toString(), family, service,
              message: `the cluster IP ${ip} for service ${service} was assigned to multiple services`,
            });
            continue;
          }
          if (err instanceof ErrNotInRange) {
            add({
              kind: 'out-of-range', ip: ip.toString(), family, service,
              message: `Cluster IP [${family}]:${ip} is not within the service CIDR ${actual.cidr}; please recreate service`,
            });
            continue;
          }
          throw new RepairError(`Unable to allocate cluster IP [${family}]:${ip} due to an unknown error`, err);
        }
        const st = stored.get(family);
        if (st?.has(ip)) {
          st.release(ip); // what stays in `stored` are leak candidates
        } else {
          add({
            kind: 'not-allocated', ip: ip.toString(), family, service,
            message: `Cluster IP [${family}]:${ip} is not allocated; repairing`,
          });
        }
        leaks.get(family)?.delete(ip.toString()); // in use, so not leaked
      }
    }

    for (const family of this.families) {
      const st = stored.get(family) as Range;
      const rb = rebuilt.get(family) as Range;
      const fl = leaks.get(family) as Map<string, number>;
      st.forEach((ip) => {
        const k = ip.toString();
        let count = fl.get(k);
        if (count === undefined) count = NUM_REPAIRS_BEFORE_LEAK_CLEANUP - 1;
        const passes = NUM_REPAIRS_BEFORE_LEAK_CLEANUP - count;
        if (count > 0) {
          // Pretend it is still in use until the count expires.
          fl.set(k, count - 1);
          if (rb.contains(ip)) rb.allocate(ip);
          add({ kind: 'leak-suspected', ip: k, family, passes, message: `the cluster IP ${k} may have leaked: flagging for later clean up` });
        } else {
          // Not re-added: the IP is free again. The entry stays at 0 (upstream).
          add({ kind: 'leak-cleaned', ip: k, family, passes, message: `the cluster IP ${k} appears to have leaked: cleaning up` });
        }
      });
    }

    const result: ClusterIPSnapshot = {
      ranges: this.families.map((family) => {
        const s = (rebuilt.get(family) as Range).snapshot();
        return { family, range: s.range, data: Buffer.from(s.data).toString('base64') };
      }),
    };
    const changed = this.families.some((family) => {
      const before = storedBytes.get(family) as Uint8Array;
      const entry = snap.ranges.find((r) => r.family === family);
      const rangeChanged = entry !== undefined && entry.range !== '' && entry.range !== (this.#networks.get(family) as Cidr).toString();
      return rangeChanged || !sameBytes(before, (rebuilt.get(family) as Range).snapshot().data);
    });
    if (!readOnly) {
      try {
        store.restore(result);
      } catch (err) {
        throw new RepairError(`unable to persist the updated service IP allocations: ${(err as Error).message}`, err);
      }
    }
    return {
      readOnly,
      changed,
      anomalies,
      families: this.families.map((family) => {
        const rb = rebuilt.get(family) as Range;
        return { family, cidr: rb.cidr.toString(), usedBefore: usedBefore.get(family) ?? 0, usedAfter: rb.used(), free: rb.free() };
      }),
      snapshot: result,
    };
  }
}

function safeFamily(range: string): IPFamily | undefined {
  try {
    return Cidr.parse(range).family;
  } catch {
    return undefined;
  }
}

/**
 * Human-readable lines for a CLI, one per anomaly, then one per family:
 * `ClusterIPAlreadyAllocated five/five 192.168.1.1: the cluster IP ... was assigned to multiple services`.
 */
export function formatRepairReport(report: RepairReport): string[] {
  const lines = report.anomalies.map((a) => `${a.reason} ${a.service ?? '-'} ${a.ip}: ${a.message}`);
  for (const f of report.families) {
    lines.push(`${f.family} ${f.cidr}: ${f.usedBefore} allocated before, ${f.usedAfter} after, ${f.free} free${report.readOnly ? ' (read-only, not saved)' : ''}`);
  }
  return lines;
}
