/**
 * The endpoint names of one service (`<label>.<svc>.<ns>.svc.<zone>`, spec 1.1.0 §2.4.1;
 * CoreDNS serves them under ClusterIP services too), kept compact and answered on demand.
 *
 * Most endpoints are known by their dashed address (`10-244-1-7`): for those only the
 * address is kept (an array slot; the string is the store's own), and a query's label is
 * turned back into an address to look it up (a scan, or a Set made on the first lookup
 * of a large service: 8 bytes an address instead of a Set's ~25 for every service).
 * Endpoints with a hostname (StatefulSets) or a pod name (`endpointPodNames`) keep their
 * label in a map. No name strings, record objects or table nodes exist per endpoint: at
 * 150k endpoints that is most of the zone's memory. The same structure answers the
 * endpoint PTRs (§2.4.3).
 */
import { Type } from '../dns/constants.js';
import { dashedIP, podLabelToIP } from '../dns/ip.js';
import { addressRR, type RR } from '../dns/rr.js';
import type { TypeEntry } from './table.js';

type OneOrMany = string | string[];

function push(m: Map<string, OneOrMany>, k: string, v: string): void {
  const cur = m.get(k);
  if (cur === undefined) m.set(k, v);
  else if (typeof cur === 'string') {
    if (cur !== v) m.set(k, [cur, v]);
  } else if (!cur.includes(v)) cur.push(v);
}

function list(v: OneOrMany | undefined): readonly string[] {
  return v === undefined ? [] : typeof v === 'string' ? [v] : v;
}

/** Read by ServiceChildren (build.ts), which answers every name below a service. */
export class EndpointNames {
  readonly #ttl: number;
  /** Addresses whose label is their dashed form, each once. */
  readonly #dashed: string[] = [];
  /** #dashed as a Set, made when first needed for a large service. */
  #dashedSet: Set<string> | undefined;
  /** Other labels (hostnames, pod names) → addresses, in first-seen order. */
  readonly #byLabel = new Map<string, OneOrMany>();
  /** The reverse of #byLabel, for PTR. */
  readonly #labelsOf = new Map<string, OneOrMany>();

  constructor(ttl: number) {
    this.#ttl = ttl;
  }

  /**
   * Add the endpoint name `label` (undefined: the dashed address) for address `ip`.
   * Each (label, address) pair is added once (servedEndpoints de-duplicates).
   */
  add(label: string | undefined, ip: string): void {
    if (label === undefined) {
      // Kept as the bare address only when its dashed label maps back to exactly that
      // text (canonical addresses); anything else keeps its label string.
      const d = dashedIP(ip);
      if (podLabelToIP(d) === ip) {
        this.#dashed.push(ip);
        return;
      }
      label = d;
    }
    push(this.#byLabel, label, ip);
    push(this.#labelsOf, ip, label);
  }

  get size(): number {
    return this.#dashed.length + this.#byLabel.size;
  }

  #isDashed(ip: string): boolean {
    if (this.#dashed.length <= 64) return this.#dashed.includes(ip);
    return (this.#dashedSet ??= new Set(this.#dashed)).has(ip);
  }

  /** Addresses of the endpoint name `label`. */
  addresses(label: string): string[] {
    const out = [...list(this.#byLabel.get(label))];
    const ip = podLabelToIP(label);
    if (ip !== undefined && dashedIP(ip) === label && this.#isDashed(ip) && !out.includes(ip)) out.push(ip);
    return out;
  }

  /** Labels of the endpoint names that have address `ip` (for PTR). */
  labelsOf(ip: string): string[] {
    const out = [...list(this.#labelsOf.get(ip))];
    if (this.#isDashed(ip)) {
      const d = dashedIP(ip);
      if (!out.includes(d)) out.push(d);
    }
    return out;
  }

  /** Every address (each once). */
  *allAddresses(): IterableIterator<string> {
    yield* this.#dashed;
    for (const ip of this.#labelsOf.keys()) if (!this.#isDashed(ip)) yield ip;
  }

  /** Every endpoint name's label, each once (zone transfer). */
  *labels(): IterableIterator<string> {
    yield* this.#byLabel.keys();
    for (const ip of this.#dashed) {
      const d = dashedIP(ip);
      // A hostname may spell another address's dashed form: one name, listed once.
      if (!this.#byLabel.has(d)) yield d;
    }
  }

  /** Every endpoint name's records, the names below `parent` (zone transfer). */
  *records(parent: string): Generator<RR> {
    for (const label of this.labels()) {
      const sets = this.lookup(label, `${label}.${parent}`);
      if (sets === undefined) continue;
      for (const e of sets.values()) yield* e.rrs;
    }
  }

  /** Records of the endpoint name `name` (= `<label>.<service>`), undefined when there is none. */
  lookup(label: string, name: string): Map<number, TypeEntry> | undefined {
    const ips = this.addresses(label);
    if (ips.length === 0) return undefined;
    const a: RR[] = [];
    const aaaa: RR[] = [];
    for (const ip of ips) {
      const rr = addressRR(name, this.#ttl, ip);
      (rr.type === Type.A ? a : aaaa).push(rr);
    }
    const out = new Map<number, TypeEntry>();
    if (a.length > 0) out.set(Type.A, { rrs: a, extra: [] });
    if (aaaa.length > 0) out.set(Type.AAAA, { rrs: aaaa, extra: [] });
    return out;
  }
}
