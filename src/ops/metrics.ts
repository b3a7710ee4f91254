/**
 * Prometheus metrics (`/metrics`), named so a CoreDNS dashboard maps one to one:
 * `clusterdns_dns_*` ↔ `coredns_dns_*`, `clusterdns_cache_*` ↔ `coredns_cache_*`,
 * `clusterdns_forward_*` ↔ `coredns_forward_*`, `clusterdns_kubernetes_*` ↔
 * `coredns_kubernetes_*` (README "Metrics" has the table).
 *
 * The per-query path only bumps integers in Maps (no label hashing, no allocation
 * for a known label set); prom-client's registry renders them on scrape through
 * small custom metric objects, next to its default process metrics.
 */
import { collectDefaultMetrics, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { rcodeName, Type } from '../dns/constants.js';
import type { QueryEvent } from '../server/handler.js';

type Labels = Record<string, string | number>;

/** Seconds buckets as CoreDNS's request duration (0.25 ms … 8 s). */
const DURATION_BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];
/** Bytes buckets as CoreDNS's response size. */
const SIZE_BUCKETS = [0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000, 64000];
/** Query types CoreDNS reports by name; the rest are "other". */
const COMMON_TYPES = ['A', 'AAAA', 'CNAME', 'SRV', 'PTR', 'TXT', 'SOA', 'NS', 'MX', 'ANY', 'AXFR', 'IXFR', 'HTTPS', 'SVCB', 'DS', 'DNSKEY', 'NULL'];

/** A counter family kept as plain numbers keyed by its label values. */
export class FastCounter {
  readonly #values = new Map<string | number, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(key: string | number, labels: () => Labels, by = 1): void {
    const e = this.#values.get(key);
    if (e !== undefined) e.value += by;
    else this.#values.set(key, { labels: labels(), value: by });
  }

  /** Set the total (for counters owned elsewhere, read on scrape). */
  set(key: string | number, labels: Labels, value: number): void {
    const e = this.#values.get(key);
    if (e !== undefined) e.value = value;
    else this.#values.set(key, { labels, value });
  }

  value(key: string | number): number {
    return this.#values.get(key)?.value ?? 0;
  }

  metric(): PromMetric {
    return promMetric(this.name, this.help, 'counter', () => [...this.#values.values()].map((v) => ({ value: v.value, labels: v.labels })));
  }
}

/** A histogram family with fixed buckets, keyed by label values. */
export class FastHistogram {
  readonly #series = new Map<string | number, { labels: Labels; counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}

  observe(key: string | number, labels: () => Labels, v: number): void {
    let s = this.#series.get(key);
    if (s === undefined) this.#series.set(key, (s = { labels: labels(), counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 }));
    s.sum += v;
    s.count++;
    // Bucket counts are stored per bucket and made cumulative on scrape.
    const b = this.buckets;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        s.counts[i]!++;
        return;
      }
    }
  }

  metric(): PromMetric {
    return promMetric(this.name, this.help, 'histogram', () => {
      const out: MetricValue<string>[] = [];
      for (const s of this.#series.values()) {
        let acc = 0;
        this.buckets.forEach((le, i) => {
          acc += s.counts[i]!;
          out.push({ value: acc, labels: { ...s.labels, le }, metricName: `${this.name}_bucket` } as MetricValue<string>);
        });
        out.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: `${this.name}_bucket` } as MetricValue<string>);
        out.push({ value: s.sum, labels: s.labels, metricName: `${this.name}_sum` } as MetricValue<string>);
        out.push({ value: s.count, labels: s.labels, metricName: `${this.name}_count` } as MetricValue<string>);
      }
      return out;
    });
  }
}

/** A gauge family whose values are read from their owner on every scrape. */
export function gauge(name: string, help: string, read: () => { labels: Labels; value: number }[], aggregator: Aggregator = 'sum'): PromMetric {
  return promMetric(name, help, 'gauge', () => read().map((r) => ({ value: r.value, labels: r.labels })), aggregator);
}

/** How `--workers` sums a metric across processes (prom-client's cluster aggregators). */
export type Aggregator = 'sum' | 'max' | 'min' | 'first' | 'omit';

/** A counter family whose totals are read from their owner on every scrape. */
export function counterFrom(name: string, help: string, read: () => { labels: Labels; value: number }[]): PromMetric {
  return promMetric(name, help, 'counter', () => read().map((r) => ({ value: r.value, labels: r.labels })));
}

export interface PromMetric {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: Aggregator;
  get(): Promise<MetricObjectWithValues<MetricValue<string>>>;
  reset(): void;
}

function promMetric(name: string, help: string, type: string, values: () => MetricValue<string>[], aggregator: Aggregator = 'sum'): PromMetric {
  return {
    name,
    help,
    type,
    aggregator,
    get: async () => ({ name, help, type, aggregator, values: values() }) as unknown as MetricObjectWithValues<MetricValue<string>>,
    reset: () => {},
  };
}

export class Metrics {
  readonly registry = new Registry();
  readonly requests = new FastCounter('clusterdns_dns_requests_total', 'DNS requests by server, zone, transport, family and type (coredns_dns_requests_total).');
  readonly responses = new FastCounter('clusterdns_dns_responses_total', 'DNS responses by server, zone and rcode (coredns_dns_responses_total).');
  readonly duration = new FastHistogram('clusterdns_dns_request_duration_seconds', 'Time to answer a request, by server, zone and type (coredns_dns_request_duration_seconds).', DURATION_BUCKETS);
  readonly size = new FastHistogram('clusterdns_dns_response_size_bytes', 'Size of responses in bytes, by server, zone and transport (coredns_dns_response_size_bytes).', SIZE_BUCKETS);
  readonly answerCache = new FastCounter('clusterdns_answer_cache_total', 'Wire-answer cache lookups for cluster names, by result (hit, miss).');
  readonly #server: string;
  readonly #zoneIndex = new Map<string, number>();

  constructor(server = 'dns://:53', defaults = true) {
    this.#server = server;
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: '' });
    for (const m of [this.requests, this.responses, this.duration, this.size, this.answerCache]) this.register(m.metric());
  }

  register(m: PromMetric): void {
    this.registry.registerMetric(m as never);
  }

  /**
   * Per-query accounting (hot path). Label sets are keyed by small integers (zone
   * index, transport, family, type index, rcode) so a query costs a few Map lookups
   * on numbers and no string building; labels are materialised once per new series.
   */
  onQuery(e: QueryEvent): void {
    const server = this.#server;
    const zone = e.zone;
    let zi = this.#zoneIndex.get(zone);
    if (zi === undefined) this.#zoneIndex.set(zone, (zi = this.#zoneIndex.size));
    const ti = typeIndex(e.qtype);
    const tr = e.transport === 'udp' ? 0 : 1;
    const fam = e.family === '1' ? 0 : 1;
    const si = e.source === 'cluster' ? 0 : e.source === 'forward' ? 1 : 2;
    this.requests.inc(((zi * 2 + tr) * 2 + fam) * 64 + ti, () => ({ server, zone, proto: e.transport, family: e.family, type: TYPE_LABELS[ti]! }));
    this.responses.inc((zi * 32 + (e.rcode & 31)) * 4 + si, () => ({ server, zone, rcode: rcodeName(e.rcode), plugin: e.source }));
    this.duration.observe(zi * 64 + ti, () => ({ server, zone, type: TYPE_LABELS[ti]! }), e.seconds);
    this.size.observe(zi * 2 + tr, () => ({ server, zone, proto: e.transport }), e.size);
    if (si === 0) this.answerCache.inc(e.cached ? 1 : 0, () => ({ result: e.cached ? 'hit' : 'miss' }));
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Type label index: the common types by name, everything else "other" (index 0). */
const TYPE_LABELS: string[] = ['other'];
const TYPE_INDEX = new Map<number, number>();
for (const name of COMMON_TYPES) {
  const code = typeCode(name);
  if (code !== undefined) {
    TYPE_INDEX.set(code, TYPE_LABELS.length);
    TYPE_LABELS.push(name);
  }
}

function typeIndex(qtype: number): number {
  return TYPE_INDEX.get(qtype) ?? 0;
}

function typeCode(name: string): number | undefined {
  return (Type as Record<string, number>)[name];
}
