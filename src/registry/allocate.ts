/**
 * The allocation pass of the embedded registry: given the stored state (bitmaps and
 * stored Services) and the Services the zone's manifests declare, decide what every
 * Service gets, as kube-apiserver's service registry would if each manifest were
 * applied in turn. Pure: the caller persists the result before serving it.
 *
 * Per Service, keyed `namespace/name`:
 * - **gone** from the manifests: its IPs and NodePorts are released (upstream delete).
 * - **unchanged** (same request fingerprint as the stored record): kept as stored, no
 *   allocator call, so a reload never moves an address.
 * - **changed**: upstream update (`updateService`): omitted IPs are kept
 *   (`patchAllocatedValues`), single <-> dual upgrades and downgrades, type changes.
 *   What upstream refuses as immutable (a new clusterIP, headless <-> not) is done as
 *   delete + create, the only way to make that change upstream. If the create fails too,
 *   the Service is refused and its stored addresses stay reserved for it (they come
 *   back when the manifest is fixed, or are released when it is deleted).
 * - **new**: upstream create (`allocateService`, then NodePorts).
 *
 * Conflicts ("two Services asking for one IP"): the Service already holding the IP in
 * the stored state keeps it; otherwise the first by (file path, document index, order in
 * the document) gets it. To make that hold against random allocation, every explicitly
 * requested IP / NodePort is reserved for its first requester before anything random is
 * allocated, and new Services with explicit requests are created before those without.
 * Refusals carry the upstream message (`Service "b" is invalid: spec.clusterIPs:
 * Invalid value: []string{"10.96.0.5"}: failed to allocate IP 10.96.0.5: provided IP is
 * already allocated`) and, for conflicts, the holder.
 *
 * Recently deleted Services (`released` in the state, kept {@link RELEASED_MEMORY_MS}):
 * their addresses are free for any manifest that asks for them, but random allocation
 * avoids them, and the same Service coming back without asking for specific addresses
 * gets them again (a file briefly emptied, renamed or moved does not renumber it).
 *
 * `dynamic: false` (the state cannot be written; `clusterdns ipam`): any allocation that
 * would pick a random IP or NodePort is not made. Everything else is a deterministic
 * function of (stored state, manifests), so it can be served without writing: after a
 * crash the same inputs give the same answers. A new Service that needs a random
 * address is reported `pending-service` and not served; a stored Service whose change
 * needs one keeps serving its stored allocation.
 *
 * @module
 */
import type { Origin } from '../cluster/files.js';
import type { Service, ServicePort } from '../cluster/model.js';
import { type ServiceIPAllocation, ClusterIPAllocator } from '../ipam/allocator.js';
import type { RandomInt } from '../ipam/bitmap.js';
import { CLUSTER_IP_NONE, type ServiceIPSpec, ipSpecFromService } from '../ipam/families.js';
import { ServiceInvalidError } from '../ipam/field.js';
import { IP } from '../ipam/ip.js';
import { type NodePortAllocation, PortAllocator } from '../ipam/portallocator.js';
import type { Anomaly } from './anomalies.js';
import type { RegistrySettings } from './config.js';
import { type AllocationRecord, type AllocationState, type PortRecord, type ReleasedRecord, fingerprint } from './state.js';

/** How long the addresses of a deleted Service are remembered (1 hour). */
export const RELEASED_MEMORY_MS = 60 * 60 * 1000;
/** At most this many deleted Services are remembered (the oldest are forgotten first). */
export const RELEASED_MEMORY_MAX = 10_000;

/** A Service from the manifests, with where it was written. */
export interface ServiceInput {
  readonly svc: Service;
  readonly origin?: Origin;
}

/** Options of {@link allocationPass}. */
export interface PassOptions {
  readonly zone: string;
  readonly settings: RegistrySettings;
  /** Allow random allocations (false: persistence failing, or read-only). */
  readonly dynamic: boolean;
  /** Why random allocation is off (for the pending message). */
  readonly blockedReason?: string;
  readonly random?: RandomInt;
  /** Objects served by the previous pass (pending Services keep serving those). */
  readonly lastServed?: ReadonlyMap<string, Service>;
  /** Current time (ms since the epoch) for the memory of deleted Services (default `Date.now()`). */
  readonly now?: number;
  /** How long deleted Services are remembered (default {@link RELEASED_MEMORY_MS}). */
  readonly releasedMemoryMs?: number;
}

/** Outcome of {@link allocationPass}. */
export interface PassResult {
  readonly state: AllocationState;
  /** Served Services, in manifest order, with their allocated fields. */
  readonly served: Map<string, Service>;
  readonly anomalies: Anomaly[];
}

/**
 * Fingerprint of what a manifest asks of the allocators: type, requested IPs,
 * families and policy, selector presence (headless defaults) and the ports with their
 * requested nodePorts. A record made from the same fingerprint is kept as is.
 */
export function requestFingerprint(svc: Service): string {
  const spec = ipSpecFromService(svc);
  return fingerprint({
    type: svc.type,
    clusterIPs: spec.clusterIPs ?? [],
    ipFamilies: svc.ipFamilies ?? [],
    ipFamilyPolicy: svc.ipFamilyPolicy ?? '',
    selectorless: svc.selector === undefined,
    ports: svc.ports.map((p) => [p.name, p.port, p.protocol, p.nodePort ?? 0]),
  });
}

function keyOf(svc: Service): string {
  return `${svc.namespace}/${svc.name}`;
}

/** The IPs a manifest names (canonical; not `None`). */
function requestedIPs(svc: Service): string[] {
  if (svc.headless || svc.type === 'ExternalName' || svc.clusterIPsRequested === false) return [];
  return svc.clusterIPs.map((ip) => IP.parse(ip)?.toString() ?? ip);
}

function requestedPorts(svc: Service): number[] {
  return [...new Set(svc.ports.map((p) => p.nodePort ?? 0).filter((n) => n !== 0))];
}

function recordSpec(svc: Service, rec: AllocationRecord): ServiceIPSpec {
  return {
    name: svc.name,
    namespace: svc.namespace,
    type: rec.type,
    clusterIP: rec.clusterIPs[0] ?? '',
    clusterIPs: rec.clusterIPs,
    ipFamilies: rec.ipFamilies,
    ...(rec.ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy: rec.ipFamilyPolicy }),
    ...(svc.selector === undefined ? {} : { selector: svc.selector }),
  };
}

/**
 * The manifest as an update of the stored Service, with `kubectl apply` semantics for
 * the fields a manifest usually leaves to the server: when it names only the first of
 * the stored clusterIPs or ipFamilies (`clusterIP: 10.96.0.5` on a PreferDualStack
 * Service that got an IPv6 address too), the stored ones are kept, as a three-way merge
 * would keep them. Without this, upstream refuses the update ("must be 'SingleStack' to
 * release the secondary cluster IP") and the Service would be re-created with a new
 * secondary IP on every edit. Dropping the secondary still works the upstream way:
 * `ipFamilyPolicy: SingleStack`.
 */
function updateRequest(svc: Service, rec: AllocationRecord): ServiceIPSpec {
  let spec = ipSpecFromService(svc);
  const ips = spec.clusterIPs ?? [];
  const stored = rec.clusterIPs;
  if (ips.length > 0 && ips[0] !== CLUSTER_IP_NONE && ips.length < stored.length && ips.every((ip, i) => ip === stored[i])) {
    spec = { ...spec, clusterIP: stored[0] ?? '', clusterIPs: [...stored] };
  }
  const fams = spec.ipFamilies ?? [];
  if (fams.length > 0 && fams.length < rec.ipFamilies.length && fams.every((f, i) => f === rec.ipFamilies[i])) {
    spec = { ...spec, ipFamilies: [...rec.ipFamilies] };
  }
  return spec;
}

function portRecords(ports: readonly ServicePort[]): PortRecord[] {
  return ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol, ...(p.nodePort === undefined ? {} : { nodePort: p.nodePort }) }));
}

function makeRecord(svc: Service, ip: ServiceIPAllocation, ports: NodePortAllocation): AllocationRecord {
  return {
    type: svc.type,
    clusterIPs: [...ip.clusterIPs],
    ipFamilies: [...ip.ipFamilies],
    ...(ip.ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy: ip.ipFamilyPolicy }),
    ports: portRecords(ports.ports),
    request: requestFingerprint(svc),
  };
}

/**
 * The Service as served: the manifest's fields with the stored addresses. Ports take
 * their nodePort from the record (same name, number and protocol; else same number and
 * protocol).
 */
export function servedService(svc: Service, rec: AllocationRecord): Service {
  const headless = rec.clusterIPs[0] === CLUSTER_IP_NONE;
  const { clusterIPs: _ips, ipFamilies: _fams, ipFamilyPolicy: _pol, ports: _ports, ...rest } = svc;
  const ports = svc.ports.map((p, i) => {
    const same = rec.ports[i];
    const r =
      same !== undefined && same.name === p.name && same.port === p.port && same.protocol === p.protocol
        ? same
        : rec.ports.find((x) => x.port === p.port && x.protocol === p.protocol);
    const { nodePort: _np, ...base } = p;
    return r?.nodePort === undefined ? base : { ...base, nodePort: r.nodePort };
  });
  return {
    ...rest,
    type: rec.type,
    headless,
    clusterIPs: headless || rec.type === 'ExternalName' ? [] : [...rec.clusterIPs],
    ports,
    ...(rec.ipFamilies.length === 0 ? {} : { ipFamilies: [...rec.ipFamilies] }),
    ...(rec.ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy: rec.ipFamilyPolicy }),
  };
}

/** A random allocation was needed while `dynamic` is off. */
class PendingError extends Error {}

/**
 * Runs the pass over `base` (not modified). `services` must be in manifest order
 * (file path, document, position), which decides conflicts among new Services.
 */
export function allocationPass(base: AllocationState, services: readonly ServiceInput[], opts: PassOptions): PassResult {
  const { zone, settings } = opts;
  const rnd = opts.random === undefined ? {} : { random: opts.random };
  const alloc = new ClusterIPAllocator(settings.serviceCIDRs, rnd);
  alloc.restore({ ranges: base.ranges.filter((r) => settings.serviceCIDRs.includes(r.range)) });
  const ports = new PortAllocator(settings.nodePortRange, rnd);
  if (base.nodePorts.range === ports.range.toString()) {
    ports.restore(base.nodePorts.range, new Uint8Array(Buffer.from(base.nodePorts.data, 'base64')));
  }
  const records = new Map(base.records);
  const served = new Map<string, Service>();
  const anomalies: Anomaly[] = [];
  const present = new Set(services.map((s) => keyOf(s.svc)));

  // 1. Deleted Services give their addresses back (and are remembered for a while).
  const now = opts.now ?? Date.now();
  const released = new Map<string, ReleasedRecord>();
  const memoryMs = opts.releasedMemoryMs ?? RELEASED_MEMORY_MS;
  const remembered = [...(base.released ?? [])].sort((a, b) => a[1].at - b[1].at); // oldest first
  for (const [k, r] of remembered) if (now - r.at < memoryMs) released.set(k, r);
  for (const [key, rec] of [...records]) {
    if (present.has(key)) continue;
    const ips = alloc.releaseService({ type: rec.type, clusterIPs: rec.clusterIPs });
    ports.releaseService({ ports: rec.ports });
    records.delete(key);
    const nodePorts = rec.ports.filter((p) => p.nodePort !== undefined);
    if (ips.length > 0 || nodePorts.length > 0) {
      released.delete(key);
      released.set(key, { clusterIPs: ips, nodePorts, at: now });
    }
  }
  while (released.size > RELEASED_MEMORY_MAX) released.delete(released.keys().next().value as string);

  // 2. Unchanged Services keep their record; the rest are updates or creates.
  const updates: ServiceInput[] = [];
  const creates: ServiceInput[] = [];
  const seen = new Set<string>();
  for (const item of services) {
    const key = keyOf(item.svc);
    if (seen.has(key)) continue; // the file source already keeps one object per key
    seen.add(key);
    const rec = records.get(key);
    if (rec === undefined) creates.push(item);
    else if (rec.request === requestFingerprint(item.svc)) served.set(key, servedService(item.svc, rec));
    else updates.push(item);
  }

  // 3. Reserve explicitly requested IPs and NodePorts for their first requester.
  const pins = new Map<string, string>();
  const portPins = new Map<number, string>();
  for (const { svc } of [...updates, ...creates]) {
    const key = keyOf(svc);
    for (const ip of requestedIPs(svc)) {
      if (pins.has(ip)) continue;
      try {
        alloc.allocateSpecific(ip);
        pins.set(ip, key);
      } catch {
        // Held, out of range, unconfigured family: the Service's own allocation reports it.
      }
    }
    for (const np of requestedPorts(svc)) {
      if (portPins.has(np)) continue;
      try {
        ports.allocate(np);
        portPins.set(np, key);
      } catch {
        // As above.
      }
    }
  }
  const unpin = (key: string): void => {
    for (const [ip, k] of pins) {
      if (k !== key) continue;
      alloc.release(ip);
      pins.delete(ip);
    }
    for (const [np, k] of portPins) {
      if (k !== key) continue;
      ports.release(np);
      portPins.delete(np);
    }
  };

  const holderOfIP = (ip: string, self: string): string | undefined => {
    const pinned = pins.get(ip);
    if (pinned !== undefined && pinned !== self) return pinned;
    for (const [k, r] of records) if (k !== self && r.clusterIPs.includes(ip)) return k;
    return undefined;
  };
  const holderOfPort = (np: number, self: string): string | undefined => {
    const pinned = portPins.get(np);
    if (pinned !== undefined && pinned !== self) return pinned;
    for (const [k, r] of records) if (k !== self && r.ports.some((p) => p.nodePort === np)) return k;
    return undefined;
  };

  const at = (item: ServiceInput) => ({
    zone,
    ...(item.origin === undefined ? {} : { file: item.origin.file, doc: item.origin.doc }),
    objectKind: 'Service',
    namespace: item.svc.namespace,
    name: item.svc.name,
  });

  const refuse = (item: ServiceInput, err: unknown, kept: boolean): void => {
    const key = keyOf(item.svc);
    const message = err instanceof Error ? err.message : String(err);
    let field: string | undefined;
    let ip: string | undefined;
    let heldBy: string | undefined;
    if (err instanceof ServiceInvalidError) {
      field = err.fieldErrors[0]?.field;
      if (/already allocated/.test(message)) {
        if (message.includes('provided port')) {
          for (const np of requestedPorts(item.svc)) {
            if (!message.includes(`${np}`)) continue;
            heldBy = holderOfPort(np, key);
            if (heldBy !== undefined) break;
          }
        } else {
          for (const want of requestedIPs(item.svc)) {
            if (!message.includes(`failed to allocate IP ${want}:`)) continue;
            ip = want;
            heldBy = holderOfIP(want, key);
            break;
          }
        }
      }
    }
    anomalies.push({
      kind: 'refused-service',
      severity: 'error',
      ...at(item),
      message: kept ? `${message} (its stored addresses stay reserved)` : message,
      ...(field === undefined ? {} : { field }),
      ...(ip === undefined ? {} : { ip }),
      ...(heldBy === undefined ? {} : { heldBy }),
    });
  };

  const pending = (item: ServiceInput, fallback: boolean): void => {
    const reason = opts.blockedReason ?? 'the state cannot be written';
    anomalies.push({
      kind: 'pending-service',
      severity: fallback ? 'warning' : 'error',
      ...at(item),
      message: fallback
        ? `change needs a new random allocation, not made because ${reason}; serving the stored allocation`
        : `needs a new random allocation, not made because ${reason}; not served until the state can be written`,
    });
  };

  /** Upstream create: IPs, then NodePorts; all or nothing. Throws PendingError or the allocator's error. */
  const createWith = (svc: Service, ipSpec: ServiceIPSpec, svcPorts: readonly ServicePort[], allowIPs: readonly string[], allowPorts: readonly number[]): AllocationRecord => {
    const ipRes = alloc.allocateService(ipSpec);
    let portRes: NodePortAllocation;
    try {
      portRes = ports.allocateService({ name: svc.name, type: svc.type, ports: svcPorts });
    } catch (err) {
      ipRes.revert();
      throw err;
    }
    if (!opts.dynamic && isDynamic(svc, ipRes, portRes, allowIPs, allowPorts)) {
      portRes.revert();
      ipRes.revert();
      throw new PendingError();
    }
    ipRes.commit();
    portRes.commit();
    return makeRecord(svc, ipRes, portRes);
  };
  /**
   * Upstream create. With `remembered` (the same Service, deleted a moment ago), its old
   * IPs and NodePorts are asked for first (all, then the primary alone), then none.
   */
  const create = (svc: Service, remembered?: ReleasedRecord): AllocationRecord => {
    const spec = ipSpecFromService(svc);
    if (remembered !== undefined) {
      const ips = remembered.clusterIPs;
      const oldPorts = rememberedPorts(svc, remembered);
      const nps = oldPorts.map((p) => p.nodePort ?? 0).filter((n) => n !== 0);
      const tries: Array<[ServiceIPSpec, readonly ServicePort[]]> = [];
      if (ips.length > 0) tries.push([{ ...spec, clusterIP: ips[0] ?? '', clusterIPs: [...ips] }, oldPorts]);
      if (ips.length > 1) tries.push([{ ...spec, clusterIP: ips[0] ?? '', clusterIPs: [ips[0] ?? ''] }, oldPorts]);
      if (nps.length > 0) tries.push([spec, oldPorts]);
      for (const [ipSpec, svcPorts] of tries) {
        try {
          return createWith(svc, ipSpec, svcPorts, ips, nps);
        } catch {
          // Not possible any more (taken, families changed): try with less.
        }
      }
    }
    return createWith(svc, spec, svc.ports, [], []);
  };

  // 4. Updates, in manifest order.
  for (const item of updates) {
    const { svc } = item;
    const key = keyOf(svc);
    const rec = records.get(key) as AllocationRecord;
    unpin(key);
    let next: AllocationRecord | undefined;
    let isPending = false;
    try {
      const ipRes = alloc.updateService(recordSpec(svc, rec), updateRequest(svc, rec));
      let portRes: NodePortAllocation;
      try {
        portRes = ports.updateService({ name: svc.name, type: rec.type, ports: rec.ports }, { name: svc.name, type: svc.type, ports: svc.ports });
      } catch (err) {
        ipRes.revert();
        throw err;
      }
      const headlessNow = ipRes.clusterIPs[0] === CLUSTER_IP_NONE;
      if (headlessNow !== svc.headless) {
        // Upstream keeps "None" across an update; a manifest that drops it is a new Service.
        portRes.revert();
        ipRes.revert();
        throw new Error('headless changed');
      }
      if (!opts.dynamic && isDynamic(svc, ipRes, portRes)) {
        portRes.revert();
        ipRes.revert();
        throw new PendingError();
      }
      ipRes.commit();
      portRes.commit();
      next = makeRecord(svc, ipRes, portRes);
    } catch (err) {
      if (err instanceof PendingError) {
        isPending = true;
      } else {
        // Delete + create; if that fails, the stored addresses are taken back.
        const releasedIPs = alloc.releaseService({ type: rec.type, clusterIPs: rec.clusterIPs });
        const releasedPorts = ports.releaseService({ ports: rec.ports });
        try {
          next = create(svc);
        } catch (err2) {
          for (const ip of releasedIPs) {
            try {
              alloc.allocateSpecific(ip);
            } catch {
              // Free a moment ago; only an out-of-range IP (never in the bitmap) lands here.
            }
          }
          for (const np of releasedPorts) {
            try {
              ports.allocate(np);
            } catch {
              // As above.
            }
          }
          if (err2 instanceof PendingError) isPending = true;
          else refuse(item, err2, true);
        }
      }
    }
    if (next !== undefined) {
      records.set(key, next);
      served.set(key, servedService(svc, next));
    } else if (isPending) {
      pending(item, true);
      served.set(key, opts.lastServed?.get(key) ?? servedService(svc, rec));
    }
  }

  // 5. Creates: those with explicit requests (or needing none) first; then, with the
  // addresses of deleted Services kept out of random allocation, the ones coming back
  // (they get theirs again), then the rest.
  const explicit = (s: Service): boolean =>
    s.headless || s.type === 'ExternalName' || requestedIPs(s).length > 0;
  const createOne = (item: ServiceInput, remembered?: ReleasedRecord): void => {
    const key = keyOf(item.svc);
    unpin(key);
    try {
      const rec = create(item.svc, remembered);
      records.set(key, rec);
      released.delete(key);
      served.set(key, servedService(item.svc, rec));
    } catch (err) {
      if (err instanceof PendingError) pending(item, false);
      else refuse(item, err, false);
    }
  };
  for (const item of creates) if (explicit(item.svc)) createOne(item);
  const memoryPin = '\u0000released';
  for (const [key, r] of released) {
    if (present.has(key)) continue;
    for (const ip of r.clusterIPs) {
      if (pins.has(ip)) continue;
      try {
        alloc.allocateSpecific(ip);
        pins.set(ip, memoryPin);
      } catch {
        // Taken again already.
      }
    }
    for (const p of r.nodePorts) {
      if (p.nodePort === undefined || portPins.has(p.nodePort)) continue;
      try {
        ports.allocate(p.nodePort);
        portPins.set(p.nodePort, memoryPin);
      } catch {
        // As above.
      }
    }
  }
  const dynamicCreates = creates.filter((c) => !explicit(c.svc));
  const comeBack = new Set<string>();
  for (const item of dynamicCreates) {
    const r = released.get(keyOf(item.svc));
    if (r === undefined) continue;
    comeBack.add(keyOf(item.svc));
    createOne(item, r);
  }
  for (const item of dynamicCreates) if (!comeBack.has(keyOf(item.svc))) createOne(item);
  for (const key of new Set([...pins.values(), ...portPins.values()])) unpin(key);
  for (const key of records.keys()) released.delete(key);

  // Served in manifest order (stable output).
  const ordered2 = new Map<string, Service>();
  for (const { svc } of services) {
    const s = served.get(keyOf(svc));
    if (s !== undefined) ordered2.set(keyOf(svc), s);
  }
  const snap = alloc.snapshot();
  const byFile = (a: Anomaly, b: Anomaly): number =>
    (a.file ?? '') < (b.file ?? '') ? -1 : (a.file ?? '') > (b.file ?? '') ? 1 : (a.doc ?? 0) - (b.doc ?? 0);
  return {
    state: { ranges: snap.ranges, nodePorts: ports.snapshotJSON(), records, released },
    served: ordered2,
    anomalies: anomalies.sort(byFile),
  };
}

/**
 * Whether a result holds an IP or NodePort the manifest did not name (a random pick).
 * `allowIPs` / `allowPorts`: more that are not random (a deleted Service's own, remembered).
 */
function isDynamic(svc: Service, ipRes: ServiceIPAllocation, portRes: NodePortAllocation, allowIPs: readonly string[] = [], allowPorts: readonly number[] = []): boolean {
  const ips = new Set([...requestedIPs(svc), ...allowIPs]);
  if (ipRes.allocated.some((ip) => !ips.has(ip))) return true;
  const nps = new Set([...requestedPorts(svc), ...allowPorts]);
  return portRes.allocated.some((p) => !nps.has(p));
}

/** The Service's ports with the remembered nodePorts (same name, number and protocol; else number and protocol). */
function rememberedPorts(svc: Service, r: ReleasedRecord): ServicePort[] {
  if (svc.type !== 'NodePort' && svc.type !== 'LoadBalancer') return [...svc.ports];
  return svc.ports.map((p) => {
    if ((p.nodePort ?? 0) !== 0) return p;
    const old =
      r.nodePorts.find((x) => x.name === p.name && x.port === p.port && x.protocol === p.protocol) ??
      r.nodePorts.find((x) => x.port === p.port && x.protocol === p.protocol);
    return old?.nodePort === undefined ? p : { ...p, nodePort: old.nodePort };
  });
}
