/**
 * Load with churn (issue 6, Hardness): sustained UDP query load while 100 service
 * updates per second flow through the server's ClusterStore (services added, their
 * ClusterIPs changed, deleted; headless services' EndpointSlices growing, shrinking,
 * flipping readiness, deleted), with EVERY answer checked against the expected view.
 *
 * Consistency rule (no false failures, no blind spots). Update batch j is sent at S_j
 * and acknowledged at A_j (parent clock); the server switches to state j at one
 * instant c_j with S_j ≤ c_j ≤ A_j (it acknowledges only once the store has delivered
 * the change to the zone). A query sent at t_s and answered at t_r was handled at some
 * instant p in [t_s, t_r], in the state j with c_j ≤ p < c_{j+1}. That is possible
 * exactly when S_j ≤ t_r and A_{j+1} > t_s, so the answer must equal the expected
 * answer of one of those states: the state at the oldest such j, or any value a batch
 * up to the newest such j gave the name. Anything else is a wrong answer; an NXDOMAIN
 * for a name that existed in every possible state is a spurious NXDOMAIN.
 *
 * The server runs in its own process (stats, memory and GC over IPC). Memory: the
 * server's rss and heap after forced GC, once the churned services are back to their
 * initial state, must be within 10% of the same measure taken after a 6 s warm-up of
 * load and churn (so first-time compilation is not counted as growth). V8's young
 * generation grows with the allocation rate (16 → 32 MB here) and keeps its size
 * after a forced GC; that bounded reservation is subtracted from rss on both sides.
 *
 * Default: 20 s at 5,000 queries/s (window 200). HARDNESS_FULL=1: 2 min at 20,000/s.
 * HARDNESS_CHURN_MS overrides the duration; HARDNESS_SEED=n replays a run's choices.
 */
import t from 'tap';
import * as dnsPacket from 'dns-packet';
import type { ClusterObject, EndpointSlice, Service } from '../../src/cluster/model.js';
import { FULL, rawQuery, UdpPipe, udpCounters, counterDelta, Z, type Done } from './_lib.js';
import { startServer } from './_proc.js';
import type { StoreOp } from './_server.js';

const DURATION_MS = Number(process.env.HARDNESS_CHURN_MS ?? (FULL ? 120_000 : 20_000));
const RATE = FULL ? 20_000 : 5_000;
const UPDATES_PER_S = 100;
const WINDOW = 200;
const WARMUP_MS = 6_000;
const CHURN = 200; // churned services
const STABLE = 60; // never touched: must always answer the same

/** Deterministic PRNG (mulberry32) so a failure can be replayed with HARDNESS_SEED. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Largest j ≥ from with xs[j] ≤ x (xs non-decreasing from `from` on, Infinity for
 * unacknowledged batches), or from - 1 when there is none. For acks (from 1): the
 * largest j whose ack came at or before x, so j is the oldest state that may still be live.
 */
function lastIndexAtMost(xs: readonly number[], x: number, from = 0): number {
  let lo = from;
  let hi = xs.length - 1;
  let ans = from - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= x) {
      ans = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return ans;
}

type EpState = { ip: string; ready: boolean };
/** What one service is, as the test drives it. */
type SvcState = { kind: 'absent' } | { kind: 'clusterip'; ip: string } | { kind: 'headless'; eps: EpState[]; slice: boolean };

/** Expected A answer: sorted addresses, or null for NXDOMAIN. */
function expectedA(st: SvcState): string | null {
  switch (st.kind) {
    case 'absent':
      return null;
    case 'clusterip':
      return st.ip;
    case 'headless': {
      const ips = [...new Set(st.eps.filter((e) => e.ready && st.slice).map((e) => e.ip))].sort();
      return ips.length === 0 ? null : ips.join(',');
    }
  }
}

function service(ns: string, name: string, st: SvcState): Service {
  return {
    namespace: ns,
    name,
    type: 'ClusterIP',
    clusterIPs: st.kind === 'clusterip' ? [st.ip] : [],
    headless: st.kind === 'headless',
    ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
    publishNotReadyAddresses: false,
    labels: {},
  };
}

function endpointSlice(ns: string, name: string, eps: EpState[]): EndpointSlice {
  return {
    namespace: ns,
    name: `${name}-s`,
    serviceName: name,
    addressType: 'IPv4',
    endpoints: eps.map((e) => ({ addresses: [e.ip], conditions: { ready: e.ready, serving: e.ready, terminating: false } })),
    ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
    legacy: false,
    labels: { 'kubernetes.io/service-name': name },
  };
}

/** Store ops taking service `name` from `prev` to `next`. */
function opsFor(ns: string, name: string, prev: SvcState, next: SvcState): StoreOp[] {
  const ops: StoreOp[] = [];
  const up = (o: ClusterObject) => ops.push({ op: 'upsert', obj: o });
  if (next.kind === 'absent') {
    if (prev.kind === 'headless' && prev.slice) ops.push({ op: 'remove', kind: 'EndpointSlice', key: `${ns}/${name}-s` });
    ops.push({ op: 'remove', kind: 'Service', key: `${ns}/${name}` });
    return ops;
  }
  if (prev.kind !== next.kind || next.kind === 'clusterip') up({ kind: 'Service', obj: service(ns, name, next) });
  if (next.kind === 'headless') {
    if (next.slice) up({ kind: 'EndpointSlice', obj: endpointSlice(ns, name, next.eps) });
    else if (prev.kind === 'headless' && prev.slice) ops.push({ op: 'remove', kind: 'EndpointSlice', key: `${ns}/${name}-s` });
  } else if (prev.kind === 'headless' && prev.slice) {
    ops.push({ op: 'remove', kind: 'EndpointSlice', key: `${ns}/${name}-s` });
  }
  return ops;
}

t.test(`load with churn: ${DURATION_MS / 1000} s at ${RATE.toLocaleString('en')} q/s, ${UPDATES_PER_S} updates/s, every answer checked`, async (t) => {
  const seed = process.env.HARDNESS_SEED !== undefined ? Number(process.env.HARDNESS_SEED) : Date.now() & 0x7fffffff;
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  let ipSeq = 0;
  const newIP = (base: number) => {
    const n = ipSeq++;
    return `10.${base}.${(n >> 8) & 0xff}.${n & 0xff}`;
  };

  const srv = await startServer(t);

  // ---- initial state: namespaces, stable and churned services
  const names: { ns: string; name: string; fq: string }[] = [];
  const state: SvcState[] = [];
  const initial: SvcState[] = [];
  const initOps: StoreOp[] = [
    { op: 'upsert', obj: { kind: 'Namespace', obj: { name: 'stable', labels: {} } } },
    { op: 'upsert', obj: { kind: 'Namespace', obj: { name: 'churn', labels: {} } } },
  ];
  for (let i = 0; i < STABLE + CHURN; i++) {
    const ns = i < STABLE ? 'stable' : 'churn';
    const name = `s${i}`;
    names.push({ ns, name, fq: `${name}.${ns}.svc.${Z}` });
    let st: SvcState;
    if (i % 3 === 0) st = { kind: 'headless', slice: true, eps: Array.from({ length: 1 + (i % 5) }, () => ({ ip: newIP(150), ready: true })) };
    else if (i % 3 === 1 || i < STABLE) st = { kind: 'clusterip', ip: newIP(100) };
    else st = { kind: 'absent' };
    state.push(st);
    initial.push(st);
    initOps.push(...opsFor(ns, name, { kind: 'absent' }, st));
  }
  await srv.ops(initOps);

  // ---- version history: per name, [version, expected] in version order
  const history: { v: number; exp: string | null }[][] = state.map((st) => [{ v: 0, exp: expectedA(st) }]);
  const sentAt: number[] = [0]; // S_j
  const ackedAt: number[] = [0]; // A_j (Infinity until acknowledged)

  /** One random update to one churned service. */
  function mutate(): { idx: number; ops: StoreOp[] } {
    const idx = STABLE + Math.floor(rand() * CHURN);
    const { ns, name } = names[idx]!;
    const prev = state[idx]!;
    let next: SvcState;
    const r = rand();
    switch (prev.kind) {
      case 'absent':
        next = r < 0.5 ? { kind: 'clusterip', ip: newIP(100) } : { kind: 'headless', slice: true, eps: [{ ip: newIP(150), ready: true }] };
        break;
      case 'clusterip':
        next = r < 0.6 ? { kind: 'clusterip', ip: newIP(100) } : r < 0.9 ? { kind: 'absent' } : { kind: 'headless', slice: true, eps: [{ ip: newIP(150), ready: true }] };
        break;
      case 'headless': {
        const eps = prev.eps.map((e) => ({ ...e }));
        if (!prev.slice) next = r < 0.7 ? { kind: 'headless', slice: true, eps: [{ ip: newIP(150), ready: true }] } : { kind: 'absent' };
        else if (r < 0.3) next = { kind: 'headless', slice: true, eps: [...eps, { ip: newIP(150), ready: rand() < 0.8 }] };
        else if (r < 0.5 && eps.length > 0) next = { kind: 'headless', slice: true, eps: eps.filter((_, i) => i !== Math.floor(rand() * eps.length)) };
        else if (r < 0.7 && eps.length > 0) {
          const k = Math.floor(rand() * eps.length);
          eps[k]!.ready = !eps[k]!.ready;
          next = { kind: 'headless', slice: true, eps };
        } else if (r < 0.8) next = { kind: 'headless', slice: false, eps: [] };
        else if (r < 0.95) next = { kind: 'absent' };
        else next = { kind: 'clusterip', ip: newIP(100) };
        break;
      }
    }
    state[idx] = next;
    return { idx, ops: opsFor(ns, name, prev, next) };
  }

  // ---- checking one answer
  let wrong = 0;
  let spuriousNX = 0;
  let checked = 0;
  let stableChecked = 0;
  const wrongSamples: string[] = [];
  /** Allowed expectations for name `idx` over possible states [jlo, jhi]. */
  function allowed(idx: number, ts: number, tr: number): (string | null)[] {
    // jhi: newest batch sent at or before t_r; jlo: oldest j whose successor was not acked before t_s
    const jhi = lastIndexAtMost(sentAt, tr);
    const jlo = Math.max(0, lastIndexAtMost(ackedAt, ts, 1));
    const h = history[idx]!;
    const out: (string | null)[] = [];
    let k = h.length - 1;
    while (k > 0 && h[k]!.v > jlo) k--; // value in force at jlo
    out.push(h[k]!.exp);
    for (let m = k + 1; m < h.length && h[m]!.v <= jhi; m++) out.push(h[m]!.exp);
    return out;
  }
  function check(idx: number, ts: number, tr: number, reply: Buffer): void {
    checked++;
    if (idx < STABLE) stableChecked++;
    let got: string | null;
    let rcode: number;
    try {
      const d = dnsPacket.decode(reply);
      rcode = (d.flags ?? 0) & 0xf;
      const ips = (d.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as { data: string }).data);
      got = rcode === 3 ? null : rcode === 0 && ips.length > 0 ? [...ips].sort().join(',') : `rcode ${rcode} with ${ips.length} A`;
    } catch (err) {
      got = `undecodable: ${String(err)}`;
      rcode = -1;
    }
    const ok = allowed(idx, ts, tr);
    if (ok.includes(got)) return;
    wrong++;
    if (got === null && !ok.includes(null)) spuriousNX++;
    if (wrongSamples.length < 10) wrongSamples.push(`${names[idx]!.fq}: got ${got}, allowed ${JSON.stringify(ok)} (sent ${ts.toFixed(1)}, answered ${tr.toFixed(1)})`);
  }

  // ---- the load: queries at RATE with at most WINDOW in flight
  const pipe = await UdpPipe.open(srv.udpPort, WINDOW, 2000);
  t.teardown(() => pipe.close());
  const queries = names.map((n) => rawQuery({ name: n.fq, qtype: 1 }));
  let lost = 0;
  let sent = 0;
  let answered = 0;
  const latencies: number[] = [];
  let measuring = false;
  let loadUntil = 0;
  async function load(ms: number, rate: number): Promise<void> {
    const start = performance.now();
    loadUntil = start + ms;
    let n = 0;
    while (performance.now() < loadUntil) {
      const due = Math.floor(((performance.now() - start) * rate) / 1000);
      while (n < due && performance.now() < loadUntil) {
        n++;
        // half the queries for stable names, half for churned ones
        const idx = rand() < 0.5 ? Math.floor(rand() * STABLE) : STABLE + Math.floor(rand() * CHURN);
        let ts = performance.now();
        const done: Done = (reply, ms) => {
          if (reply === undefined) {
            if (measuring) lost++;
            return;
          }
          const tr = performance.now();
          if (measuring) {
            answered++;
            latencies.push(ms);
          }
          check(idx, ts, tr, reply);
        };
        if (!pipe.trySend(queries[idx]!, done)) {
          // window full: wait for a slot; t_s is taken again just before the real send
          await pipe.send(queries[idx]!, done, 2000, () => (ts = performance.now()));
        }
        if (measuring) sent++;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Send one batch of store ops (new version j) for the names in `touched` (state[] already updated). */
  function applyBatch(ops: StoreOp[], touched: readonly number[]): Promise<void> {
    const j = sentAt.length;
    for (const idx of touched) history[idx]!.push({ v: j, exp: expectedA(state[idx]!) });
    sentAt.push(performance.now());
    ackedAt.push(Infinity);
    return srv.ops(ops).then(() => void (ackedAt[j] = performance.now()));
  }

  /** Back to the initial cluster (one batch). */
  function restore(): Promise<void> {
    const ops: StoreOp[] = [];
    const touched: number[] = [];
    for (let i = STABLE; i < STABLE + CHURN; i++) {
      ops.push(...opsFor(names[i]!.ns, names[i]!.name, state[i]!, initial[i]!));
      state[i] = initial[i]!;
      touched.push(i);
    }
    return applyBatch(ops, touched);
  }

  // ---- the churn: UPDATES_PER_S single-service updates, in batches every 50 ms
  let updates = 0;
  let churning = false;
  async function churn(): Promise<void> {
    churning = true;
    const start = performance.now();
    let done = 0;
    const pending: Promise<void>[] = [];
    while (churning) {
      const due = Math.floor(((performance.now() - start) * UPDATES_PER_S) / 1000);
      if (due > done) {
        const ops: StoreOp[] = [];
        const touched: number[] = [];
        for (; done < due; done++) {
          const m = mutate();
          ops.push(...m.ops);
          touched.push(m.idx);
        }
        if (measuring) updates += touched.length;
        pending.push(applyBatch(ops, touched));
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all(pending);
  }

  /** Load and churn together for `ms`. */
  async function run(ms: number): Promise<void> {
    const churnDone = churn();
    await load(ms, RATE);
    churning = false;
    await churnDone;
    await pipe.drain();
  }

  /** Server memory after forced GC, with the churned services back to their initial state. */
  async function settledMemory() {
    await restore();
    await srv.stats(true);
    await new Promise((r) => setTimeout(r, 200));
    return srv.stats(true);
  }

  // warm-up (load and churn: first-time compilation and caches are not growth), then the baseline
  await run(WARMUP_MS);
  const base = await settledMemory();
  const udp0 = udpCounters();

  // the run, with the server's memory after GC sampled every 5 s (the trend, for the report)
  measuring = true;
  const t0 = performance.now();
  const trend: number[] = [];
  const sampler = setInterval(() => void srv.stats(true).then((st) => trend.push(st.mem.rss), () => undefined), 5000);
  await run(DURATION_MS);
  clearInterval(sampler);
  measuring = false;
  const secs = (performance.now() - t0) / 1000;
  const udp1 = udpCounters();
  const end = await settledMemory();

  const sorted = latencies.sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;
  const mb = (x: number) => (x / 1048576).toFixed(1);
  t.comment(
    `seed ${seed}: ${sent.toLocaleString('en')} queries in ${secs.toFixed(1)} s (${Math.round(sent / secs).toLocaleString('en')}/s, target ${RATE.toLocaleString('en')}), ` +
      `${answered.toLocaleString('en')} answered, ${lost} lost (kernel: ${counterDelta(udp0, udp1)}); ${updates} updates (${sentAt.length - 1} batches in all) ` +
      `(${(updates / secs).toFixed(0)}/s); ${checked.toLocaleString('en')} answers checked (${stableChecked.toLocaleString('en')} for stable names); ` +
      `latency p50 ${pct(50).toFixed(2)} ms, p99 ${pct(99).toFixed(2)} ms`,
  );
  t.comment(
    `server memory after GC: rss ${mb(base.mem.rss)} → ${mb(end.mem.rss)} MB (every 5 s under load: ${trend.map(mb).join(', ')}), ` +
      `heap ${mb(base.mem.heapUsed)} → ${mb(end.mem.heapUsed)} MB, ` +
      `buffers ${mb(base.mem.arrayBuffers)} → ${mb(end.mem.arrayBuffers)} MB; heap spaces ${JSON.stringify(Object.fromEntries(Object.keys(end.spaces).map((k) => [k, `${mb(base.spaces[k] ?? 0)}→${mb(end.spaces[k] ?? 0)}`])))}`,
  );
  t.equal(wrong, 0, `no wrong answer (${wrong})${wrongSamples.length > 0 ? `:\n  ${wrongSamples.join('\n  ')}` : ''}`);
  t.equal(spuriousNX, 0, 'no spurious NXDOMAIN for names that existed in every possible state');
  t.ok(checked >= answered && answered > 0, 'every answer was checked');
  // the client shares the box with the server (and, in CI, with another test file)
  t.ok(sent >= RATE * (DURATION_MS / 1000) * 0.7, `sustained at least 70% of the target rate (${Math.round(sent / secs)}/s)`);
  t.ok(updates >= UPDATES_PER_S * (DURATION_MS / 1000) * 0.9, `${updates} updates flowed (≥ 90% of ${UPDATES_PER_S}/s)`);
  t.ok(lost <= sent / 1000, `at most 0.1% of queries lost (${lost})`);
  // V8 sizes the young generation (up to 2 × 16 MB semi-spaces in Node 20) by the
  // allocation rate and keeps it after a forced GC: that reservation is tuning, not
  // retained memory, so it is taken out of rss on both sides (and reported above).
  const young = (st: typeof base) => st.spaces.new_space ?? 0;
  const rss0 = base.mem.rss - young(base);
  const rss1 = end.mem.rss - young(end);
  t.ok(rss1 <= rss0 * 1.1, `server rss after GC, young generation aside, within 10% of its start (${mb(rss0)} → ${mb(rss1)} MB)`);
  t.ok(end.mem.heapUsed <= base.mem.heapUsed * 1.1, `server heap after GC within 10% of its start (${mb(base.mem.heapUsed)} → ${mb(end.mem.heapUsed)} MB)`);
  t.same(end.errors, [], 'server reported no error');
  t.ok(srv.alive(), 'server alive');
});
