/**
 * `Registry`: the embedded service registry of a zones/ folder, one {@link ZoneRegistry}
 * per zone, plugged into the file source as its `transform`.
 *
 * ```ts
 * const registry = new Registry({ stateDir, config, log });
 * const files = new FileSource({ dir: zonesDir, transform: registry.transform, log });
 * await files.start();
 * registry.start();                      // periodic repair (3 min), persistence retries
 * registry.onRecovered((zone) => ...);   // writes work again: rebuild that zone
 * registry.status();                     // per zone: usage, persistence, anomaly counts
 * ```
 *
 * @module
 */
import type { ClusterObject } from '../cluster/model.js';
import type { Origin, SourceLog, Transform } from '../cluster/files.js';
import type { RandomInt } from '../ipam/bitmap.js';
import type { Anomaly } from './anomalies.js';
import { type RegistryConfig, type RegistrySettings, registrySettings } from './config.js';
import type { RepairOutcome } from './repair.js';
import { type StateFs, nodeStateFs } from './state.js';
import { type ZoneStatus, ZoneRegistry } from './zone.js';

/** Upstream's repair interval (kube-apiserver runs the repair controllers every 3 minutes). */
export const DEFAULT_REPAIR_INTERVAL_MS = 3 * 60 * 1000;
/** How often a failing state write is retried. */
export const DEFAULT_RETRY_INTERVAL_MS = 5000;

/** Options of {@link Registry}. */
export interface RegistryOptions {
  /** Where `<zone>/allocations.json` live. */
  readonly stateDir: string;
  /** serviceCIDRs and nodePortRange (default: see `config.ts`). */
  readonly config?: Partial<RegistryConfig>;
  readonly log?: SourceLog;
  /** Compute only (`clusterdns ipam`): never write, rename or allocate at random. */
  readonly readOnly?: boolean;
  /** Periodic repair pass; 0 disables the timer (default 3 min). */
  readonly repairIntervalMs?: number;
  /** Retry period while the state cannot be written (default 5 s). */
  readonly retryIntervalMs?: number;
  /** File operations (tests inject failures). */
  readonly fs?: StateFs;
  /** RNG of random allocation (tests). */
  readonly random?: RandomInt;
  readonly now?: () => number;
  /** How long deleted Services' addresses are remembered (default 1 hour). */
  readonly releasedMemoryMs?: number;
}

const noopLog: SourceLog = { info() {}, warn() {}, error() {} };

/** The embedded registry of every zone of a zones/ folder. */
export class Registry {
  readonly stateDir: string;
  readonly settings: RegistrySettings;
  readonly readOnly: boolean;
  readonly #o: RegistryOptions;
  readonly #log: SourceLog;
  readonly #zones = new Map<string, ZoneRegistry>();
  #repairTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #recovered: ((zone: string) => void)[] = [];

  /** Throws `ServiceCidrConfigError` / `InvalidPortRangeError` for a bad configuration. */
  constructor(options: RegistryOptions) {
    this.#o = options;
    this.stateDir = options.stateDir;
    this.settings = registrySettings(options.config);
    this.readOnly = options.readOnly ?? false;
    this.#log = options.log ?? noopLog;
  }

  /** The file-source transform (bound). */
  readonly transform: Transform = (zone: string, objects: ClusterObject[], origin: Map<ClusterObject, Origin>): ClusterObject[] =>
    this.zone(zone).transform(objects, origin);

  /** The registry of a zone; its state is loaded on first use. */
  zone(name: string): ZoneRegistry {
    const zone = name.toLowerCase().replace(/\.$/, '');
    let z = this.#zones.get(zone);
    if (z === undefined) {
      z = new ZoneRegistry({
        zone,
        stateDir: this.stateDir,
        settings: this.settings,
        log: this.#log,
        readOnly: this.readOnly,
        fs: this.#o.fs ?? nodeStateFs,
        now: this.#o.now ?? Date.now,
        ...(this.#o.random === undefined ? {} : { random: this.#o.random }),
        ...(this.#o.releasedMemoryMs === undefined ? {} : { releasedMemoryMs: this.#o.releasedMemoryMs }),
      });
      this.#zones.set(zone, z);
    }
    return z;
  }

  /** Zones seen so far, sorted. */
  zones(): ZoneRegistry[] {
    return [...this.#zones.values()].sort((a, b) => (a.zone < b.zone ? -1 : a.zone > b.zone ? 1 : 0));
  }

  /** Starts the repair and retry timers (not in read-only mode). Idempotent. */
  start(): void {
    if (this.readOnly || this.#repairTimer !== undefined || this.#retryTimer !== undefined) return;
    const repairMs = this.#o.repairIntervalMs ?? DEFAULT_REPAIR_INTERVAL_MS;
    if (repairMs > 0) {
      this.#repairTimer = setInterval(() => this.repairNow(), repairMs);
      this.#repairTimer.unref();
    }
    const retryMs = this.#o.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS;
    if (retryMs > 0) {
      this.#retryTimer = setInterval(() => this.retryNow(), retryMs);
      this.#retryTimer.unref();
    }
  }

  stop(): void {
    if (this.#repairTimer !== undefined) clearInterval(this.#repairTimer);
    if (this.#retryTimer !== undefined) clearInterval(this.#retryTimer);
    this.#repairTimer = this.#retryTimer = undefined;
  }

  /** One repair pass in every zone. */
  repairNow(): RepairOutcome[] {
    const out: RepairOutcome[] = [];
    for (const z of this.zones()) {
      try {
        out.push(z.repairNow());
      } catch (err) {
        this.#log.error('repair pass failed', { zone: z.zone, err: err instanceof Error ? err.message : String(err) });
      }
    }
    return out;
  }

  /** Retries failing state writes; zones that recovered are announced to {@link onRecovered} listeners. */
  retryNow(): string[] {
    const recovered: string[] = [];
    for (const z of this.zones()) {
      if (z.persistenceOk) continue;
      if (!z.retryPersist()) continue;
      recovered.push(z.zone);
      for (const l of this.#recovered) {
        try {
          l(z.zone);
        } catch (err) {
          this.#log.error('registry recovery listener failed', { zone: z.zone, err: err instanceof Error ? err.message : String(err) });
        }
      }
    }
    return recovered;
  }

  /** Called with a zone whose state writes work again (its pending Services can now be served). */
  onRecovered(listener: (zone: string) => void): () => void {
    this.#recovered.push(listener);
    return () => {
      this.#recovered = this.#recovered.filter((l) => l !== listener);
    };
  }

  /** Per-zone status (usage per CIDR, NodePorts, persistence, anomaly counts). */
  status(): ZoneStatus[] {
    return this.zones().map((z) => z.status());
  }

  /** Every current finding of every zone. */
  anomalies(): Anomaly[] {
    return this.zones().flatMap((z) => z.anomalies());
  }
}
