/**
 * What the registry reports: refused Services, refused endpoint addresses, replaced
 * EndpointSlices, state-file trouble and repair findings. One shape for the log, the
 * `clusterdns ipam` output (text and `--json`) and the metrics counts.
 *
 * @module
 */
import type { SourceLog } from '../cluster/files.js';

/** Kinds of finding. */
export type AnomalyKind =
  /** A Service refused by validation or allocation (upstream 422/500 message); not served. */
  | 'refused-service'
  /** A Service that needs a new random allocation while the state cannot be written; not served. */
  | 'pending-service'
  /** An endpoint address refused by the apiserver's rules (or another Service's clusterIP); not served. */
  | 'refused-address'
  /** An EndpointSlice / Endpoints written in the files for a selector Service, replaced by the controller. */
  | 'replaced-slice'
  /** State file corrupt, unreadable or unwritable; configuration changed under it. */
  | 'state'
  /** A repair-pass finding (upstream event reason in `reason`). */
  | 'repair';

/** Every kind, for metrics with a zero per kind. */
export const ANOMALY_KINDS: readonly AnomalyKind[] = ['refused-service', 'pending-service', 'refused-address', 'replaced-slice', 'state', 'repair'];

/** One finding. JSON-serialisable. */
export interface Anomaly {
  readonly kind: AnomalyKind;
  readonly severity: 'error' | 'warning' | 'info';
  readonly zone: string;
  /** The reason, upstream text where there is one. */
  readonly message: string;
  /** Manifest file (or state file) concerned. */
  readonly file?: string;
  /** 1-based YAML document in `file`. */
  readonly doc?: number;
  readonly objectKind?: string;
  readonly namespace?: string;
  readonly name?: string;
  /** Field path inside the object (`spec.clusterIPs`, `endpoints[0].addresses[0]`). */
  readonly field?: string;
  readonly ip?: string;
  /** Conflicts: `namespace/name` of the Service holding the IP or port. */
  readonly heldBy?: string;
  /** Repair findings: upstream event reason (`ClusterIPOutOfRange`, ...). */
  readonly reason?: string;
  /** Refused pod addresses: the generated slice they would have been in. */
  readonly slice?: string;
}

/** Identity of a finding (for "log once"). */
export function anomalyKey(a: Anomaly): string {
  return JSON.stringify([a.kind, a.zone, a.file, a.doc, a.objectKind, a.namespace, a.name, a.field, a.ip, a.message]);
}

/** Counts by kind (every kind present). */
export function countAnomalies(list: readonly Anomaly[]): Record<AnomalyKind, number> {
  const out = Object.fromEntries(ANOMALY_KINDS.map((k) => [k, 0])) as Record<AnomalyKind, number>;
  for (const a of list) out[a.kind]++;
  return out;
}

function where(a: Anomaly): string {
  const obj = a.name === undefined ? '' : `${a.objectKind ?? ''} ${a.namespace === undefined ? a.name : `${a.namespace}/${a.name}`}`.trim();
  const file = a.file === undefined ? '' : `${a.file}${a.doc === undefined ? '' : `#${a.doc}`}`;
  return [obj, file === '' ? '' : `(${file})`].filter((s) => s !== '').join(' ');
}

/** One line: `refused-service Service shop/a (zones/x.yaml#2): <message> [held by shop/b]`. */
export function formatAnomaly(a: Anomaly): string {
  const w = where(a);
  const extra = [
    a.reason === undefined ? '' : `${a.reason}`,
    a.slice === undefined ? '' : `slice ${a.slice}`,
    a.heldBy === undefined ? '' : `held by ${a.heldBy}`,
  ].filter((s) => s !== '');
  return `${a.kind}${w === '' ? '' : ` ${w}`}: ${a.message}${extra.length > 0 ? ` [${extra.join('; ')}]` : ''}`;
}

const LOG_TEXT: Record<AnomalyKind, string> = {
  'refused-service': 'service refused',
  'pending-service': 'service not served: its new allocation cannot be persisted',
  'refused-address': 'endpoint address refused',
  'replaced-slice': 'endpoints written in the files replaced by the endpoints controller',
  state: 'registry state problem',
  repair: 'repair finding',
};

/** Logs findings once each: only those not in the previous list. */
export class OnceLog {
  readonly #log: SourceLog;
  #seen = new Set<string>();
  constructor(log: SourceLog) {
    this.#log = log;
  }

  /**
   * Logs the findings of `next` that were not current before. With `sticky`, a
   * finding stays "seen" even when it goes away (report once per process).
   */
  note(next: readonly Anomaly[], sticky = false): void {
    const keys = new Set<string>();
    for (const a of next) {
      const k = anomalyKey(a);
      keys.add(k);
      if (this.#seen.has(k)) continue;
      const { kind, severity, message, ...fields } = a;
      const text = LOG_TEXT[kind];
      const f = { ...fields, reason: a.reason ?? message, ...(a.reason === undefined ? {} : { detail: message }) };
      if (severity === 'error') this.#log.error(text, f);
      else if (severity === 'warning') this.#log.warn(text, f);
      else this.#log.info(text, f);
    }
    if (sticky) for (const k of keys) this.#seen.add(k);
    else this.#seen = keys;
  }
}
