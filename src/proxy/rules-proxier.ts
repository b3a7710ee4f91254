/**
 * The rules modes' proxier: one RulesBackend per IP family (iptables/ip6tables, or the
 * nftables `ip`/`ip6` tables), fed from the views, synced by one bounded-frequency
 * runner. Keeps what kube-proxy's proxier keeps between syncs: which services changed
 * since the last successful sync (partial syncs), whether the next sync must be full
 * (first, after a failure, hourly), and what UDP ports served (conntrack cleanup).
 */
import type { Logger } from 'pino';
import type { RulesBackend } from './backend.js';
import { deleteEntries, staleEntries, udpSnapshot, type UdpSnapshot } from './conntrack.js';
import { exec as defaultExec, type Exec } from './exec.js';
import type { ProxyMetrics } from './metrics.js';
import { BoundedFrequencyRunner } from './runner.js';
import type { Family, ProxyPort } from './types.js';

/** kube-proxy's proxyutil.FullSyncPeriod: a full resync at least this often. */
const FULL_SYNC_MS = 60 * 60 * 1000;

export interface RulesProxierOptions {
  readonly backends: readonly RulesBackend[];
  /** Every port (both families) of the current view. */
  readonly ports: (family: Family) => ProxyPort[];
  readonly minSyncPeriodMs: number;
  readonly syncPeriodMs: number;
  readonly log: Logger;
  readonly metrics?: ProxyMetrics;
  readonly exec?: Exec;
  /** Remove stale UDP conntrack entries after syncs (needs the conntrack tool). */
  readonly conntrack?: boolean;
}

interface FamilyState {
  readonly backend: RulesBackend;
  changed: Set<string>;
  full: boolean;
  lastFull: number;
  udp: UdpSnapshot;
}

export class RulesProxier {
  readonly #opts: RulesProxierOptions;
  readonly #states: FamilyState[];
  readonly #runner: BoundedFrequencyRunner;
  readonly #exec: Exec;
  /** When the oldest change not yet applied arrived (network programming latency). */
  #oldestPending: number | undefined;
  #syncs = 0;
  #lastError: string | undefined;
  #conntrackWarned = false;

  constructor(opts: RulesProxierOptions) {
    this.#opts = opts;
    this.#exec = opts.exec ?? defaultExec;
    this.#states = opts.backends.map((backend) => ({ backend, changed: new Set(), full: true, lastFull: 0, udp: new Map() }));
    this.#runner = new BoundedFrequencyRunner(() => this.#sync(), {
      minIntervalMs: opts.minSyncPeriodMs,
      maxIntervalMs: opts.syncPeriodMs,
      retryMs: opts.syncPeriodMs,
    });
  }

  /** Successful syncs so far (readiness: the first one applied the initial view). */
  get syncs(): number {
    return this.#syncs;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Check the tools, then start syncing (the first sync is full). */
  async start(): Promise<void> {
    for (const s of this.#states) await s.backend.preflight();
    this.#runner.start();
  }

  /** These services changed in the view. */
  changed(services: Iterable<string>): void {
    let any = false;
    for (const s of this.#states) {
      for (const k of services) {
        s.changed.add(k);
        any = true;
      }
    }
    if (!any) return;
    this.#oldestPending ??= performance.now();
    this.#runner.run();
  }

  /** Resolves once the runner has nothing in progress (tests). */
  idle(): Promise<void> {
    return this.#runner.idle();
  }

  /** Stop syncing; with `cleanup`, remove every rule installed. */
  async stop(cleanup: boolean): Promise<void> {
    this.#runner.stop();
    await this.#runner.idle();
    if (!cleanup) return;
    for (const s of this.#states) {
      try {
        await s.backend.cleanup();
      } catch (err) {
        this.#opts.log.error({ mode: s.backend.mode, family: s.backend.family, error: (err as Error).message }, 'removing proxy rules failed');
      }
    }
  }

  async #sync(): Promise<void> {
    const started = performance.now();
    const pendingSince = this.#oldestPending;
    this.#oldestPending = undefined;
    let failed: Error | undefined;
    for (const s of this.#states) {
      const { backend } = s;
      const changed = s.changed;
      s.changed = new Set();
      const full = s.full || Date.now() - s.lastFull > FULL_SYNC_MS;
      const ports = this.#opts.ports(backend.family);
      const t0 = performance.now();
      try {
        const r = await backend.sync({ ports, changed, full });
        const seconds = (performance.now() - t0) / 1000;
        this.#opts.metrics?.synced(backend.mode, backend.family, full, seconds, r.rulesWritten, true);
        this.#opts.log.debug({ mode: backend.mode, family: backend.family, full, changed: changed.size, rules: r.rulesWritten, bytes: r.bytes, ms: Math.round(seconds * 1000) }, 'proxy rules synced');
        s.full = false;
        if (full) s.lastFull = Date.now();
        await this.#conntrack(s, ports);
      } catch (err) {
        // kube-proxy: needFullSync = true, RetryAfter(syncPeriod); keep the changes.
        for (const k of changed) s.changed.add(k);
        s.full = true;
        failed = err as Error;
        this.#opts.metrics?.synced(backend.mode, backend.family, full, 0, 0, false);
        this.#opts.log.error({ mode: backend.mode, family: backend.family, full, error: failed.message }, 'proxy rules sync failed; retrying with a full sync');
      }
    }
    if (failed !== undefined) {
      this.#lastError = failed.message;
      this.#oldestPending ??= pendingSince;
      throw failed;
    }
    this.#lastError = undefined;
    this.#syncs++;
    if (pendingSince !== undefined) this.#opts.metrics?.programming.observe(0, () => ({}), (performance.now() - pendingSince) / 1000);
    this.#opts.log.debug({ ms: Math.round(performance.now() - started) }, 'proxy sync done');
  }

  async #conntrack(s: FamilyState, ports: readonly ProxyPort[]): Promise<void> {
    const next = udpSnapshot(ports);
    const deletes = staleEntries(s.udp, next);
    s.udp = next;
    if (this.#opts.conntrack === false || deletes.length === 0) return;
    const errors = await deleteEntries(this.#exec, deletes);
    this.#opts.metrics?.conntrackDeleted.inc('ok', () => ({ result: 'ok' }), deletes.length - errors.length);
    if (errors.length > 0) {
      this.#opts.metrics?.conntrackDeleted.inc('error', () => ({ result: 'error' }), errors.length);
      if (!this.#conntrackWarned) {
        this.#conntrackWarned = true;
        this.#opts.log.warn({ error: errors[0], failures: errors.length }, 'stale UDP conntrack entries could not be removed (is the conntrack tool installed?); UDP clients may keep reaching a removed endpoint until their flow idles out');
      }
    }
  }
}
