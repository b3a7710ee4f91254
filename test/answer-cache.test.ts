/**
 * The handler's wire-answer cache under changes (src/server/handler.ts): a change drops
 * only the changed services' names and the volatile entries, and negative answers kept
 * across changes get the current SOA serial. Checked differentially: after random
 * changes to services, slices and namespaces, every answer from the cached handler must
 * be byte-for-byte what a handler that resolves afresh gives for the same zone state.
 */
import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import t from 'tap';
import type { ClusterObject } from '../src/cluster/model.js';
import { DnsHandler } from '../src/server/handler.js';
import { Resolver } from '../src/zone/resolver.js';
import { ClusterZone } from '../src/zone/zone.js';
import type { ZoneOptions } from '../src/zone/build.js';
import { ep, fixtureStore, port, slice, svc } from './helpers/cluster.js';
import { decode, makeQuery } from './helpers/dns.js';

const Z = 'cluster.local';
const base: ZoneOptions = { ttl: 5, pods: 'verified', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined };
const NS = ['testns', 'other'];
const NAMES = ['a', 'b', 'c'];

/** The budgets a question is asked with: UDP without EDNS (512), EDNS 1232 and 4096. */
const BUDGETS: (number | undefined)[] = [undefined, 1232, 4096];

type Op =
  | { op: 'svc'; ns: string; name: string; kind: 'ip' | 'headless' | 'ext-in' | 'ext-out'; n: number; target: string }
  | { op: 'rm-svc'; ns: string; name: string }
  | { op: 'slice'; ns: string; name: string; ips: number[]; host: boolean; many: number }
  | { op: 'rm-slice'; ns: string; name: string }
  | { op: 'ns'; ns: string; present: boolean }
  | { op: 'pod'; n: number; present: boolean };

const ns = fc.constantFrom(...NS);
const name = fc.constantFrom(...NAMES);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('svc' as const), ns, name, kind: fc.constantFrom('ip' as const, 'headless' as const, 'ext-in' as const, 'ext-out' as const), n: fc.integer({ min: 1, max: 9 }), target: name }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('rm-svc' as const), ns, name }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('slice' as const), ns, name, ips: fc.uniqueArray(fc.integer({ min: 1, max: 6 }), { maxLength: 4 }), host: fc.boolean(), many: fc.constantFrom(0, 40) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('rm-slice' as const), ns, name }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('ns' as const), ns, present: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('pod' as const), n: fc.integer({ min: 1, max: 3 }), present: fc.boolean() }) },
);

/** The names a pod would ask for: services, endpoints, SRV, search-path misses, the apex, PTRs. */
const QUESTIONS: [string, string][] = [];
for (const n of NS) {
  QUESTIONS.push([`${n}.svc.${Z}`, 'A'], [`google.com.${n}.svc.${Z}`, 'A'], [`google.com.${n}.svc.${Z}`, 'AAAA'], [`10-1-0-1.${n}.pod.${Z}`, 'A']);
  for (const s of NAMES) {
    const b = `${s}.${n}.svc.${Z}`;
    QUESTIONS.push([b, 'A'], [b, 'AAAA'], [b, 'SRV'], [b, 'CNAME'], [`_http._tcp.${b}`, 'SRV'], [`_tcp.${b}`, 'SRV'], [`h-1.${b}`, 'A'], [`10-2-0-2.${b}`, 'A'], [`x.h-2.${b}`, 'A']);
  }
}
QUESTIONS.push([Z, 'SOA'], [Z, 'NS'], [`ns.dns.${Z}`, 'A'], ['2.0.2.10.in-addr.arpa', 'PTR'], ['5.0.96.10.in-addr.arpa', 'PTR']);

function apply(o: Op, step: number): ClusterObject | { remove: [ClusterObject['kind'], string] } {
  switch (o.op) {
    case 'svc': {
      const common = { ports: [port('http', 80)] };
      if (o.kind === 'ip') return { kind: 'Service', obj: svc(o.ns, o.name, { ...common, clusterIPs: [`10.96.0.${o.n}`] }) };
      if (o.kind === 'headless') return { kind: 'Service', obj: svc(o.ns, o.name, { ...common, headless: true }) };
      const target = o.kind === 'ext-in' ? `${o.target}.${o.ns}.svc.${Z}` : `db${step}.example.com`;
      return { kind: 'Service', obj: svc(o.ns, o.name, { type: 'ExternalName', externalName: target }) };
    }
    case 'rm-svc':
      return { remove: ['Service', `${o.ns}/${o.name}`] };
    case 'slice':
      return {
        kind: 'EndpointSlice',
        // `many` more endpoints make answers that a 512-byte budget cuts (TC, or
        // additional records left out), cached per budget.
        obj: slice(
          o.ns,
          o.name,
          `${o.name}-x`,
          [...o.ips, ...Array.from({ length: o.many }, (_, i) => 100 + i)].map((i) => ep(`10.2.0.${i}`, o.host ? { hostname: `h-${i}` } : {})),
          [{ name: 'http', port: 8080, protocol: 'TCP' }],
        ),
      };
    case 'rm-slice':
      return { remove: ['EndpointSlice', `${o.ns}/${o.name}-x`] };
    case 'ns':
      return o.present ? { kind: 'Namespace', obj: { name: o.ns, labels: {} } } : { remove: ['Namespace', o.ns] };
    case 'pod':
      return o.present
        ? { kind: 'Pod', obj: { namespace: 'testns', name: `p${o.n}`, ips: ['10.1.0.1'], phase: 'Running', terminating: false, ready: true, labels: {}, containerPorts: [] } }
        : { remove: ['Pod', `testns/p${o.n}`] };
  }
}

t.test('cached answers equal fresh answers after every change', async (t) => {
  let checked = 0;
  let hits = 0;
  let cut = 0;
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), fc.array(fc.nat(QUESTIONS.length * BUDGETS.length - 1), { minLength: 8, maxLength: 8 }), (ops, picks) => {
      const store = fixtureStore();
      for (const n of NS) store.upsert({ kind: 'Namespace', obj: { name: n, labels: {} } });
      store.flush();
      const zone = new ClusterZone(Z, store, base);
      const r = new Resolver();
      r.setZones([zone]);
      r.setReverseZones([{ name: '10.in-addr.arpa' }]);
      let wasCached = false;
      const cached = new DnsHandler({ resolver: r, onQuery: (e) => (wasCached = e.cached) });
      const fresh = new DnsHandler({ resolver: r });
      zone.onUpdate = (change) => cached.invalidateChange(zone.name, change);
      const ask = (h: DnsHandler, q: [string, string], edns: number | undefined): Buffer =>
        h.handle(makeQuery(q[0], q[1], edns === undefined ? {} : { edns }), 'udp') as Buffer;
      // Fill the cache with every question first, so changes meet cached entries.
      for (const q of QUESTIONS) for (const b of BUDGETS) ask(cached, q, b);
      for (const [step, o] of ops.entries()) {
        const w = apply(o, step);
        const changed = 'remove' in w ? store.remove(w.remove[0], w.remove[1]) : store.upsert(w);
        // A new serial for every change (the real one moves once a second).
        if (changed) store.lastChange = 1000 + step;
        store.flush();
        for (const i of picks) {
          const k = (i + step * 7) % (QUESTIONS.length * BUDGETS.length);
          const q = QUESTIONS[k % QUESTIONS.length]!;
          const b = BUDGETS[Math.floor(k / QUESTIONS.length)];
          const got = ask(cached, q, b);
          if (wasCached) hits++;
          if (decode(got).tc) cut++;
          fresh.invalidate();
          const want = ask(fresh, q, b);
          checked++;
          if (!got.equals(want)) {
            throw new Error(`${q[0]} ${q[1]} (EDNS ${b ?? 'none'}) after ${JSON.stringify(ops.slice(0, step + 1))}:\n got ${JSON.stringify(decode(got))}\nwant ${JSON.stringify(decode(want))}`);
          }
        }
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.ok(checked > 10_000, `${checked} answers compared`);
  t.ok(hits > checked / 4, `answers kept across changes and served from the cache: ${hits} of ${checked}`);
  t.ok(cut > 0, `truncated answers among them: ${cut}`);
});

/** A handler over `store` wired as node.ts does, and the `cached` flag of every answer. */
function serve(store: ReturnType<typeof fixtureStore>): { h: DnsHandler; seen: boolean[] } {
  store.flush();
  const zone = new ClusterZone(Z, store, base);
  const r = new Resolver();
  r.setZones([zone]);
  const seen: boolean[] = [];
  const h = new DnsHandler({ resolver: r, onQuery: (e) => seen.push(e.cached) });
  zone.onUpdate = (change) => h.invalidateChange(zone.name, change);
  return { h, seen };
}

t.test('a change to one service keeps the others cached; a negative answer gets the new serial', async (t) => {
  const store = fixtureStore();
  const { h, seen } = serve(store);
  const raw = (q: string) => h.handle(makeQuery(q, 'A'), 'udp') as Buffer;
  const ask = (q: string) => decode(raw(q));
  ask(`svc1.testns.svc.${Z}`);
  ask(`google.com.testns.svc.${Z}`);
  store.upsert({ kind: 'Service', obj: svc('testns', 'fresh', { clusterIPs: ['10.0.0.99'] }) });
  store.lastChange = 123456;
  store.flush();
  seen.length = 0;
  t.equal(ask(`svc1.testns.svc.${Z}`).rcode, 'NOERROR');
  const neg = dnsPacket.decode(raw(`google.com.testns.svc.${Z}`));
  t.same(seen, [true, true], 'both answers came from the cache');
  t.equal((neg as { rcode?: string }).rcode, 'NXDOMAIN');
  t.equal((neg.authorities?.[0] as dnsPacket.SoaAnswer | undefined)?.data.serial, 123456, 'with the serial of the current SOA');
  t.same(ask(`fresh.testns.svc.${Z}`).answer, [`fresh.testns.svc.${Z}. 5 IN A 10.0.0.99`]);
});

t.test('an answer cut for a 512-byte budget is cached for that budget only', async (t) => {
  const store = fixtureStore();
  store.upsert({ kind: 'Service', obj: svc('testns', 'big', { headless: true, ports: [port('http', 80)] }) });
  const many = (n: number) => Array.from({ length: n }, (_, i) => ep(`10.3.${i >> 8}.${i & 255}`));
  store.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'big', 'big-1', many(60), [{ name: 'http', port: 8080, protocol: 'TCP' }]) });
  const { h, seen } = serve(store);
  const ask = (edns?: number) => h.handle(makeQuery(`big.testns.svc.${Z}`, 'A', edns === undefined ? {} : { edns }), 'udp') as Buffer;
  const first = ask();
  t.ok(decode(first).tc, 'cut for 512 bytes: TC');
  t.ok(ask().equals(first), 'the same cut again');
  t.same(seen, [false, true], 'served from the cache the second time');
  const full = decode(ask(4096));
  t.notOk(full.tc, 'a 4096-byte client gets the whole set, not the cut');
  t.equal(full.answer.length, 60);
  store.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'big', 'big-1', many(50), [{ name: 'http', port: 8080, protocol: 'TCP' }]) });
  store.flush();
  seen.length = 0;
  t.equal(decode(ask(4096)).answer.length, 50, 'the change reached the full answer');
  t.ok(decode(ask()).tc);
  t.same(seen, [false, false], 'and the cut one was dropped with it');
});
