/**
 * The registry of one zone (one `zones/<zone>/` folder, one cluster): its stored state,
 * the allocation pass on every (re)load, the endpoints controller, endpoint address
 * validation and the repair pass.
 *
 * Reload ({@link ZoneRegistry.transform}, called by the file source with the zone's
 * full object list):
 * 1. allocation pass over the stored state (see `allocate.ts`);
 * 2. **write-ahead**: if the state changed, it is written (atomically, fsynced) before
 *    `transform` returns, i.e. before anything of it is served. A SIGKILL at any moment
 *    leaves the last written state, and everything ever served was written first;
 * 3. EndpointSlices for selector Services from the Pods (`endpoints.ts`); slices written
 *    in the files that are labelled as the controller's
 *    (`endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`) and
 *    Endpoints written for those Services are replaced; other slices (no `managed-by`, or
 *    another manager's) are served beside the generated ones, as on a cluster;
 * 4. endpoint addresses validated (`addresses.ts`);
 * 5. the objects to serve are returned.
 *
 * Persistence failure policy (read-only or full state directory, I/O error): the
 * failure is logged once and reported (`status().persistence`, a `state` anomaly).
 * Everything already stored keeps serving, and the pass runs again with random
 * allocation switched off: Services whose addresses are stored, or fully given by their
 * manifests (explicit clusterIPs / nodePorts, headless, ExternalName), are served,
 * because after a crash the same stored state and manifests give them the same
 * addresses; a Service that needs a new random IP or NodePort is not served
 * (`pending-service`) and a stored one whose change needs one keeps its stored
 * allocation. Nothing random is ever served without being written. Every reload tries
 * to write again, and {@link ZoneRegistry.retryPersist} (a timer in `Registry`) does
 * too; once a write succeeds the pending allocations are made, written, and served at
 * the next rebuild of the zone.
 *
 * A corrupt state file (not JSON, wrong format, bad record) or an unreadable one is
 * reported, renamed aside to `allocations.json.corrupt-<time>` (never deleted) and the
 * state is rebuilt from the manifests: explicitly requested IPs are honoured, the rest
 * are allocated anew.
 *
 * @module
 */
import { join } from 'node:path';
import type { Origin, SourceLog } from '../cluster/files.js';
import type { ClusterObject, EndpointSlice, Pod, Service } from '../cluster/model.js';
import { ClusterIPAllocator } from '../ipam/allocator.js';
import type { RandomInt } from '../ipam/bitmap.js';
import { Cidr } from '../ipam/ip.js';
import { PortAllocator } from '../ipam/portallocator.js';
import { clusterIPOwners } from '../ipam/validate.js';
import { checkAddresses, type SliceToCheck } from './addresses.js';
import { type ServiceInput, allocationPass } from './allocate.js';
import { type Anomaly, OnceLog, countAnomalies } from './anomalies.js';
import type { RegistrySettings } from './config.js';
import { CONTROLLER_NAME, MANAGED_BY_LABEL, PodIndex, buildEndpointSlices, isControllerSlice } from './endpoints.js';
import { type RepairOutcome, StateRepair, dedupeRecords } from './repair.js';
import {
  type AllocationRecord,
  type AllocationState,
  type StateFs,
  STATE_FILE,
  StateFormatError,
  decodeState,
  emptyState,
  encodeState,
  moveAside,
  readStateFile,
  removeStaleTemps,
  stateKey,
  writeStateFile,
} from './state.js';
import type { IpamStatus } from './status.js';
import { type PortUsage, type RangeUsage, portUsage, rangeUsage } from './usage.js';

/** Options of {@link ZoneRegistry}. */
export interface ZoneRegistryOptions {
  readonly zone: string;
  readonly stateDir: string;
  readonly settings: RegistrySettings;
  readonly log: SourceLog;
  /** Compute only: never write, rename or allocate at random (`clusterdns ipam`). */
  readonly readOnly: boolean;
  readonly fs: StateFs;
  readonly random?: RandomInt;
  readonly now: () => number;
  /** How long deleted Services' addresses are remembered (default 1 hour). */
  readonly releasedMemoryMs?: number;
}

/** One stored Service as `clusterdns ipam` lists it. */
export interface AllocationView {
  readonly namespace: string;
  readonly name: string;
  readonly type: AllocationRecord['type'];
  readonly clusterIPs: readonly string[];
  readonly ipFamilies: readonly string[];
  readonly ipFamilyPolicy?: string;
  readonly nodePorts: readonly number[];
  /** Served by the last pass (false: refused update, addresses kept reserved). */
  readonly served: boolean;
}

/** Persistence health. */
export interface PersistenceStatus {
  readonly ok: boolean;
  readonly error?: string;
  /** ms since the epoch of the last successful write. */
  readonly lastWrite?: number;
  /** `generation` of the state file (0: never written). */
  readonly generation: number;
}

/** What metrics and `clusterdns ipam` read. JSON-serialisable. */
export interface ZoneStatus extends IpamStatus {
  readonly mode: 'registry';
  readonly stateFile: string;
  readonly readOnly: boolean;
  readonly persistence: PersistenceStatus;
  readonly services: {
    readonly total: number;
    readonly withClusterIPs: number;
    readonly headless: number;
    readonly externalName: number;
    readonly refused: number;
    readonly pending: number;
  };
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function byPath(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The registry of one zone. Created (and its state loaded) on first use by `Registry`. */
export class ZoneRegistry {
  readonly zone: string;
  readonly statePath: string;
  readonly #o: ZoneRegistryOptions;
  readonly #repair: StateRepair;
  /** The last state known to be recomputable after a crash (written, or loaded). */
  #durable: AllocationState;
  /** The state of the last pass (differs from #durable only while writes fail). */
  #current: AllocationState;
  /** stateKey of the file on disk ('' when there is none). */
  #diskKey = '';
  #generation = 0;
  #lastWrite: number | undefined;
  #persistError: string | undefined;
  #lastInput: { objects: ClusterObject[]; origin: Map<ClusterObject, Origin> } | undefined;
  #lastServed = new Map<string, Service>();
  #lastRepair: RepairOutcome | undefined;
  #usageCache: { state: AllocationState; ranges: RangeUsage[]; nodePorts: PortUsage } | undefined;

  #loadAnomalies: Anomaly[] = [];
  #passAnomalies: Anomaly[] = [];
  #addressAnomalies: Anomaly[] = [];
  #replaced: Anomaly[] = [];
  readonly #logService: OnceLog;
  readonly #logAddress: OnceLog;
  readonly #logReplaced: OnceLog;
  readonly #logState: OnceLog;
  readonly #logRepair: OnceLog;

  constructor(options: ZoneRegistryOptions) {
    this.#o = options;
    this.zone = options.zone;
    this.statePath = join(options.stateDir, options.zone, STATE_FILE);
    this.#repair = new StateRepair(options.settings);
    this.#logService = new OnceLog(options.log);
    this.#logAddress = new OnceLog(options.log);
    this.#logReplaced = new OnceLog(options.log);
    this.#logState = new OnceLog(options.log);
    this.#logRepair = new OnceLog(options.log);
    this.#durable = this.#load();
    this.#current = this.#durable;
  }

  // --- loading ---------------------------------------------------------------------

  #stateAnomaly(severity: Anomaly['severity'], message: string, file = this.statePath): Anomaly {
    return { kind: 'state', severity, zone: this.zone, file, message };
  }

  #load(): AllocationState {
    const { settings, fs, readOnly } = this.#o;
    const notes: Anomaly[] = [];
    let base = emptyState(settings.serviceCIDRs, settings.nodePortRange);
    if (!readOnly) removeStaleTemps(fs, this.statePath);
    const r = readStateFile(fs, this.statePath);
    const rebuild = (why: string): void => {
      if (readOnly) {
        notes.push(this.#stateAnomaly('error', `${why}; it would be renamed aside and rebuilt from the manifests by \`clusterdns serve\``));
        return;
      }
      try {
        const aside = moveAside(fs, this.statePath, this.#o.now());
        notes.push(this.#stateAnomaly('error', `${why}; renamed to ${aside} and rebuilt from the manifests (explicit clusterIPs kept, the others allocated anew)`));
      } catch (err) {
        notes.push(this.#stateAnomaly('error', `${why}; could not rename it aside (${errText(err)}); rebuilding from the manifests`));
      }
    };
    if (r.kind === 'error') {
      if (r.error.code === 'ENOTDIR') {
        notes.push(this.#stateAnomaly('error', `cannot read the state file: ${r.error.message} (a parent of the state directory is not a directory)`));
      } else {
        rebuild(`state file unreadable: ${r.error.message}`);
      }
    } else if (r.kind === 'ok') {
      try {
        const doc = decodeState(r.text);
        this.#generation = doc.generation;
        this.#diskKey = stateKey(doc);
        base = this.#normalize(doc, notes);
      } catch (err) {
        if (!(err instanceof StateFormatError)) throw err;
        rebuild(`state file corrupt: ${err.message}`);
      }
    }
    // Startup repair (as the apiserver runs one before serving), then one record per IP.
    const outcome = this.#repair.run(this.zone, base, { readOnly, file: this.statePath, now: this.#o.now() });
    this.#lastRepair = outcome;
    this.#logRepair.note(outcome.anomalies);
    base = outcome.state;
    const deduped = dedupeRecords(base);
    for (const k of deduped.dropped) {
      notes.push(this.#stateAnomaly('error', `stored Service ${k} shares a cluster IP with another stored Service; the first by name keeps it, ${k} is allocated again`));
    }
    this.#loadAnomalies = notes;
    this.#logState.note(notes, true);
    return deduped.state;
  }

  /** Fits a decoded file to the configured ranges (a changed CIDR or port range drops that bitmap). */
  #normalize(doc: AllocationState, notes: Anomaly[]): AllocationState {
    const { settings } = this.#o;
    const ranges = settings.serviceCIDRs.map((c) => {
      const cidr = Cidr.parse(c);
      const same = doc.ranges.find((r) => {
        try {
          return Cidr.parse(r.range).equals(cidr);
        } catch {
          return false;
        }
      });
      if (same !== undefined) return { family: cidr.family, range: cidr.toString(), data: same.data };
      const old = doc.ranges.find((r) => r.family === cidr.family);
      if (old !== undefined) {
        notes.push(this.#stateAnomaly('warning', `service CIDR ${old.range} changed to ${cidr}; its bitmap is rebuilt from the stored Services (IPs outside the new CIDR keep serving and are reported by the repair pass)`));
      }
      return { family: cidr.family, range: cidr.toString(), data: '' };
    });
    for (const r of doc.ranges) {
      if (!ranges.some((x) => x.family === r.family)) {
        notes.push(this.#stateAnomaly('warning', `service CIDR ${r.range} is no longer configured; Services holding its IPs are reported by the repair pass`));
      }
    }
    let nodePorts = doc.nodePorts;
    if (nodePorts.range !== settings.nodePortRange) {
      notes.push(this.#stateAnomaly('warning', `NodePort range ${nodePorts.range} changed to ${settings.nodePortRange}; its bitmap is rebuilt from the stored Services`));
      nodePorts = { range: settings.nodePortRange, data: '' };
    }
    return { ranges, nodePorts, records: doc.records, ...(doc.released === undefined ? {} : { released: doc.released }) };
  }

  // --- persistence ------------------------------------------------------------------

  /** Writes `state` if it differs from the file; true when it wrote. Throws on failure (nothing changed then). */
  #persist(state: AllocationState): boolean {
    const key = stateKey(state);
    if (key === this.#diskKey) return false;
    const now = this.#o.now();
    const text = encodeState(this.zone, state, {
      generation: this.#generation + 1,
      serviceCIDRs: this.#o.settings.serviceCIDRs,
      nodePortRange: this.#o.settings.nodePortRange,
      writtenAt: new Date(now).toISOString(),
    });
    writeStateFile(this.#o.fs, this.statePath, text);
    this.#generation++;
    this.#diskKey = key;
    this.#lastWrite = now;
    return true;
  }

  #persistFailed(err: unknown): void {
    const msg = errText(err);
    if (this.#persistError === undefined) {
      this.#o.log.error('cannot write the registry state; new random allocations are refused until it can be written', {
        zone: this.zone,
        file: this.statePath,
        err: msg,
      });
    }
    this.#persistError = msg;
  }

  #persistOk(): void {
    if (this.#persistError !== undefined) {
      this.#o.log.info('registry state written again; allocations resume', { zone: this.zone, file: this.statePath });
    }
    this.#persistError = undefined;
  }

  /** Whether the last write attempt worked (true before any). */
  get persistenceOk(): boolean {
    return this.#persistError === undefined;
  }

  // --- reload -------------------------------------------------------------------------

  /**
   * The file-source transform for this zone: returns the objects to serve, after the
   * state they depend on is written. Never throws for bad input (refusals are reported).
   */
  transform(objects: ClusterObject[], origin: Map<ClusterObject, Origin>): ClusterObject[] {
    this.#lastInput = { objects, origin };
    const services: ServiceInput[] = [];
    const pods: Array<{ pod: Pod; origin?: Origin }> = [];
    const slices: Array<{ slice: EndpointSlice; origin?: Origin }> = [];
    const legacy: Array<{ slice: EndpointSlice; origin?: Origin }> = [];
    const rest: ClusterObject[] = [];
    for (const o of objects) {
      const from = origin.get(o);
      const at = from === undefined ? {} : { origin: from };
      if (o.kind === 'Service') services.push({ svc: o.obj, ...at });
      else if (o.kind === 'Pod') pods.push({ pod: o.obj, ...at });
      else if (o.kind === 'EndpointSlice') slices.push({ slice: o.obj, ...at });
      else if (o.kind === 'Endpoints') legacy.push({ slice: o.obj, ...at });
      else rest.push(o);
    }
    // Manifest order decides conflicts: (file path, document), then position (stable sort).
    services.sort((a, b) => byPath(a.origin?.file ?? '', b.origin?.file ?? '') || (a.origin?.doc ?? 0) - (b.origin?.doc ?? 0));

    const served = this.#allocate(services);
    const out: ClusterObject[] = [...rest];
    for (const svc of served.values()) out.push({ kind: 'Service', obj: svc });
    for (const p of pods) out.push({ kind: 'Pod', obj: p.pod });
    out.push(...this.#endpoints(served, pods, slices, legacy));
    return out;
  }

  #allocate(services: readonly ServiceInput[]): Map<string, Service> {
    const { zone, settings, readOnly } = this.#o;
    const common = {
      zone,
      settings,
      lastServed: this.#lastServed,
      now: this.#o.now(),
      ...(this.#o.releasedMemoryMs === undefined ? {} : { releasedMemoryMs: this.#o.releasedMemoryMs }),
      ...(this.#o.random === undefined ? {} : { random: this.#o.random }),
    };
    let pass;
    if (readOnly) {
      pass = allocationPass(this.#durable, services, { ...common, dynamic: false, blockedReason: '`clusterdns ipam` only reads (the server allocates)' });
    } else {
      pass = allocationPass(this.#durable, services, { ...common, dynamic: true });
      try {
        // Nothing to write means nothing random was allocated: safe to serve either way.
        if (this.#persist(pass.state)) this.#persistOk();
        this.#durable = pass.state;
      } catch (err) {
        this.#persistFailed(err);
        pass = allocationPass(this.#durable, services, {
          ...common,
          dynamic: false,
          blockedReason: `the state file cannot be written (${this.#persistError ?? ''})`,
        });
      }
    }
    this.#current = pass.state;
    this.#lastServed = pass.served;
    this.#passAnomalies = pass.anomalies;
    this.#logService.note(pass.anomalies);
    return pass.served;
  }

  #endpoints(
    served: ReadonlyMap<string, Service>,
    pods: ReadonlyArray<{ pod: Pod; origin?: Origin }>,
    slices: ReadonlyArray<{ slice: EndpointSlice; origin?: Origin }>,
    legacy: ReadonlyArray<{ slice: EndpointSlice; origin?: Origin }>,
  ): ClusterObject[] {
    const managed = new Map<string, Service>();
    for (const [k, s] of served) if (s.selector !== undefined && s.type !== 'ExternalName') managed.set(k, s);

    const replaced: Anomaly[] = [];
    const checks: SliceToCheck[] = [];
    const taken = new Set<string>();
    const note = (kind: 'EndpointSlice' | 'Endpoints', s: { slice: EndpointSlice; origin?: Origin }): void => {
      replaced.push({
        kind: 'replaced-slice',
        severity: 'info',
        zone: this.zone,
        ...(s.origin === undefined ? {} : { file: s.origin.file, doc: s.origin.doc }),
        objectKind: kind,
        namespace: s.slice.namespace,
        name: s.slice.name,
        message:
          kind === 'Endpoints'
            ? `Service ${s.slice.namespace}/${s.slice.serviceName} has a selector: its Endpoints are generated from its Pods`
            : `Service ${s.slice.namespace}/${s.slice.serviceName} has a selector: the slices managed by ${CONTROLLER_NAME} are generated from its Pods (remove the ${MANAGED_BY_LABEL} label to serve this one beside them)`,
      });
    };
    for (const s of slices) {
      // Only the controller's slices are its to replace (a custom slice, e.g. for an
      // address outside the cluster, is served beside the generated ones).
      if (managed.has(`${s.slice.namespace}/${s.slice.serviceName}`) && isControllerSlice(s.slice)) {
        note('EndpointSlice', s);
        continue;
      }
      taken.add(`${s.slice.namespace}/${s.slice.name}`);
      checks.push({ kind: 'EndpointSlice', slice: s.slice, ...(s.origin === undefined ? {} : { origin: s.origin }) });
    }
    for (const s of legacy) {
      if (managed.has(`${s.slice.namespace}/${s.slice.name}`)) {
        note('Endpoints', s);
        continue;
      }
      checks.push({ kind: 'Endpoints', slice: s.slice, ...(s.origin === undefined ? {} : { origin: s.origin }) });
    }
    this.#replaced = replaced;
    this.#logReplaced.note(replaced, true);

    if (managed.size > 0) {
      const index = new PodIndex(pods.map((p) => p.pod));
      const byNs = new Map<string, Map<string, { pod: Pod; origin?: Origin }>>();
      for (const p of pods) {
        let m = byNs.get(p.pod.namespace);
        if (m === undefined) byNs.set(p.pod.namespace, (m = new Map()));
        m.set(p.pod.name, p);
      }
      for (const svc of managed.values()) {
        for (const slice of buildEndpointSlices(svc, index.matching(svc.namespace, svc.selector ?? {}))) {
          let name = slice.name;
          for (let i = 1; taken.has(`${slice.namespace}/${name}`); i++) name = `${slice.name}-${i}`;
          taken.add(`${slice.namespace}/${name}`);
          checks.push({ kind: 'EndpointSlice', slice: name === slice.name ? slice : { ...slice, name }, pods: byNs.get(svc.namespace) ?? new Map() });
        }
      }
    }

    const owners = clusterIPOwners(served.values());
    const out: ClusterObject[] = [];
    const refused: Anomaly[] = [];
    for (const c of checks) {
      const r = checkAddresses(this.zone, c, owners);
      refused.push(...r.anomalies);
      if (r.slice !== undefined) out.push(c.kind === 'Endpoints' ? { kind: 'Endpoints', obj: r.slice } : { kind: 'EndpointSlice', obj: r.slice });
    }
    refused.sort((a, b) => byPath(a.file ?? '', b.file ?? '') || (a.doc ?? 0) - (b.doc ?? 0));
    this.#addressAnomalies = refused;
    this.#logAddress.note(refused);
    return out;
  }

  // --- timers -------------------------------------------------------------------------

  /**
   * One repair pass over the stored state (the periodic one). Changes (leaks freed,
   * missing bits set) are written; if the write fails they are not adopted.
   */
  repairNow(): RepairOutcome {
    const readOnly = this.#o.readOnly;
    const outcome = this.#repair.run(this.zone, this.#durable, { readOnly, file: this.statePath, now: this.#o.now() });
    this.#lastRepair = outcome;
    this.#logRepair.note(outcome.anomalies);
    if (!readOnly && outcome.changed) {
      try {
        if (this.#persist(outcome.state)) this.#persistOk();
        if (this.#current === this.#durable) this.#current = outcome.state;
        this.#durable = outcome.state;
      } catch (err) {
        this.#persistFailed(err);
      }
    }
    return outcome;
  }

  /**
   * While writes fail: runs the last reload's allocation pass again and tries to write
   * it. True when that worked (the caller then has the zone rebuilt so the pending
   * Services are served).
   */
  retryPersist(): boolean {
    if (this.#persistError === undefined || this.#o.readOnly) return false;
    const services: ServiceInput[] = [];
    if (this.#lastInput !== undefined) {
      for (const o of this.#lastInput.objects) {
        if (o.kind !== 'Service') continue;
        const from = this.#lastInput.origin.get(o);
        services.push({ svc: o.obj, ...(from === undefined ? {} : { origin: from }) });
      }
      services.sort((a, b) => byPath(a.origin?.file ?? '', b.origin?.file ?? '') || (a.origin?.doc ?? 0) - (b.origin?.doc ?? 0));
    }
    const state =
      this.#lastInput === undefined
        ? this.#durable
        : allocationPass(this.#durable, services, {
            zone: this.zone,
            settings: this.#o.settings,
            dynamic: true,
            now: this.#o.now(),
            ...(this.#o.releasedMemoryMs === undefined ? {} : { releasedMemoryMs: this.#o.releasedMemoryMs }),
            ...(this.#o.random === undefined ? {} : { random: this.#o.random }),
          }).state;
    try {
      // Force a write even when nothing changed: it is the probe.
      if (stateKey(state) === this.#diskKey) this.#diskKey = '';
      this.#persist(state);
      this.#durable = state;
      this.#current = state;
      this.#persistOk();
      return true;
    } catch (err) {
      this.#persistFailed(err);
      return false;
    }
  }

  // --- reporting ----------------------------------------------------------------------

  /** The last repair pass. */
  lastRepair(): RepairOutcome | undefined {
    return this.#lastRepair;
  }

  /** Every current finding: state, refused/pending Services, refused addresses, replaced slices, repair. */
  anomalies(): Anomaly[] {
    const persist: Anomaly[] =
      this.#persistError === undefined
        ? []
        : [this.#stateAnomaly('error', `cannot write the state file: ${this.#persistError}; new random allocations are refused`)];
    return [
      ...this.#loadAnomalies,
      ...persist,
      ...this.#passAnomalies,
      ...this.#addressAnomalies,
      ...this.#replaced,
      ...(this.#lastRepair?.anomalies ?? []),
    ];
  }

  #usage(): { ranges: RangeUsage[]; nodePorts: PortUsage } {
    const state = this.#current;
    if (this.#usageCache?.state === state) return this.#usageCache;
    const alloc = new ClusterIPAllocator(this.#o.settings.serviceCIDRs);
    alloc.restore({ ranges: state.ranges.filter((r) => this.#o.settings.serviceCIDRs.includes(r.range)) });
    const ports = new PortAllocator(this.#o.settings.nodePortRange);
    if (state.nodePorts.range === ports.range.toString()) {
      ports.restore(state.nodePorts.range, new Uint8Array(Buffer.from(state.nodePorts.data, 'base64')));
    }
    this.#usageCache = { state, ranges: alloc.ranges.map(rangeUsage), nodePorts: portUsage(ports) };
    return this.#usageCache;
  }

  /** The stored Services (allocations), sorted by key. */
  allocations(): AllocationView[] {
    const out: AllocationView[] = [];
    for (const key of [...this.#current.records.keys()].sort()) {
      const r = this.#current.records.get(key) as AllocationRecord;
      const i = key.indexOf('/');
      out.push({
        namespace: key.slice(0, i),
        name: key.slice(i + 1),
        type: r.type,
        clusterIPs: r.clusterIPs,
        ipFamilies: r.ipFamilies,
        ...(r.ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy: r.ipFamilyPolicy }),
        nodePorts: [...new Set(r.ports.map((p) => p.nodePort ?? 0).filter((n) => n !== 0))],
        served: this.#lastServed.has(key),
      });
    }
    return out;
  }

  /** Usage, persistence and anomaly counts (metrics, `clusterdns ipam`). */
  status(): ZoneStatus {
    const { ranges, nodePorts } = this.#usage();
    const anomalies = this.anomalies();
    const counts = countAnomalies(anomalies);
    let withClusterIPs = 0;
    let headless = 0;
    let externalName = 0;
    for (const s of this.#lastServed.values()) {
      if (s.type === 'ExternalName') externalName++;
      else if (s.headless) headless++;
      else if (s.clusterIPs.length > 0) withClusterIPs++;
    }
    return {
      zone: this.zone,
      mode: 'registry',
      stateFile: this.statePath,
      readOnly: this.#o.readOnly,
      persistence: {
        ok: this.#persistError === undefined,
        ...(this.#persistError === undefined ? {} : { error: this.#persistError }),
        ...(this.#lastWrite === undefined ? {} : { lastWrite: this.#lastWrite }),
        generation: this.#generation,
      },
      ranges,
      nodePorts,
      services: {
        total: this.#lastServed.size,
        withClusterIPs,
        headless,
        externalName,
        refused: counts['refused-service'],
        pending: counts['pending-service'],
      },
      anomalies: counts,
      ...(this.#lastRepair === undefined
        ? {}
        : { lastRepair: { at: this.#lastRepair.at, changed: this.#lastRepair.changed, findings: this.#lastRepair.anomalies.length } }),
    };
  }
}
