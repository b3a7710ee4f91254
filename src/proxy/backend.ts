/**
 * What a rules mode (iptables, nftables) gives the shared sync runner: render the view
 * (pure, for `clusterdns rules` and golden tests) and apply it (kernel), incrementally
 * after the first full sync.
 */
import type { Family, ProxyPort, RulesOptions } from './types.js';

export interface SyncRequest {
  /** Every port of this backend's family, in any order. */
  readonly ports: readonly ProxyPort[];
  /**
   * Service keys (`ns/name`) whose Service or endpoints changed since the last
   * successful sync. Ignored when `full`.
   */
  readonly changed: ReadonlySet<string>;
  /** Rewrite everything (first sync, after a failure, periodic full resync). */
  readonly full: boolean;
}

export interface SyncResult {
  /** Rule (and set/map element) lines written by this sync. */
  readonly rulesWritten: number;
  /** Bytes handed to the tool. */
  readonly bytes: number;
}

export interface RulesBackend {
  readonly mode: 'iptables' | 'nftables';
  readonly family: Family;
  /** Check the tools exist and work here (one clear error if not). */
  preflight(): Promise<void>;
  /** Render and apply. Rejects on failure; the runner then retries with `full`. */
  sync(req: SyncRequest): Promise<SyncResult>;
  /** Remove everything this mode installs (stop, `--cleanup`); tolerant of absent pieces. */
  cleanup(): Promise<void>;
}

export interface RulesBackendOptions extends RulesOptions {
  /** Tool runner (tests inject one that records). */
  readonly exec?: import('./exec.js').Exec;
}
