/**
 * Packed endpoints (src/cluster/packed.ts): what the API source stores instead of an
 * object per endpoint. Packing must lose nothing DNS reads, stay plain data (the store's
 * deep equality and the workers' structured clone see all of it), and fall back to
 * objects when an endpoint has several addresses.
 */
import { deserialize, serialize } from 'node:v8';
import t from 'tap';
import { deepEqual } from '../../src/cluster/equal.js';
import type { Endpoint } from '../../src/cluster/model.js';
import { conditionsOf, eachAddress, endpointList, isPacked, packEndpoints } from '../../src/cluster/packed.js';

const cond = (ready: boolean, serving: boolean, terminating: boolean) => ({ ready, serving, terminating });

const list: Endpoint[] = [
  { addresses: ['10.0.0.1'], conditions: cond(true, true, false), nodeName: 'n1', zone: 'z1' },
  { addresses: ['10.0.0.2'], conditions: cond(false, true, true), hostname: 'web-1', podName: 'web-1' },
  { addresses: ['10.0.0.3'], conditions: cond(false, false, false), podName: 'web-2' },
];

function visit(e: Parameters<typeof eachAddress>[0]): string[] {
  const out: string[] = [];
  eachAddress(e, (ip, bits, host, pod) => out.push(`${ip} ${bits} ${host ?? '-'} ${pod ?? '-'}`));
  return out;
}

t.test('pack and unpack keep addresses, conditions, hostnames, pod names; drop node and zone', async (t) => {
  const p = packEndpoints(list, true);
  t.ok(isPacked(p));
  t.equal(endpointList(p).length, 3);
  t.same(p, { ips: ['10.0.0.1', '10.0.0.2', '10.0.0.3'], conditions: '360', hostnames: [undefined, 'web-1', undefined], podNames: [undefined, 'web-1', 'web-2'] });
  t.strictSame(
    endpointList(p),
    list.map((e) => {
      const { nodeName: _n, zone: _z, ...rest } = e;
      return rest;
    }),
  );
  t.same(visit(p), ['10.0.0.1 3 - -', '10.0.0.2 6 web-1 web-1', '10.0.0.3 0 - web-2']);
  t.same(visit(list), visit(p), 'both forms read the same');
  t.equal(endpointList(p)[1]!.conditions, conditionsOf(6), 'conditions objects are shared');
  t.equal(packEndpoints(p, true), p, 'packing a packed form is a no-op');
});

t.test('pod names only when kept; one number when every endpoint has the same conditions', async (t) => {
  const p = packEndpoints(
    list.map((e) => ({ ...e, conditions: cond(true, true, false) })),
    false,
  );
  t.same(p, { ips: ['10.0.0.1', '10.0.0.2', '10.0.0.3'], conditions: 3, hostnames: [undefined, 'web-1', undefined] });
  t.same(packEndpoints([], false), { ips: [], conditions: 3 }, 'an empty slice packs too');
  t.equal(endpointList(packEndpoints([], false)).length, 0);
});

t.test('an endpoint with several addresses keeps the object form (slimmed)', async (t) => {
  const multi: Endpoint[] = [...list, { addresses: ['10.0.1.1', '10.0.1.2'], conditions: cond(true, true, false), nodeName: 'n2' }];
  const p = packEndpoints(multi, false);
  t.notOk(isPacked(p));
  t.equal(endpointList(p).length, 4);
  t.same(endpointList(p)[3], { addresses: ['10.0.1.1', '10.0.1.2'], conditions: cond(true, true, false) }, 'node name dropped');
  t.equal(endpointList(p)[1]!.podName, undefined, 'pod name dropped when not kept');
  t.same(visit(p).slice(3), ['10.0.1.1 3 - -', '10.0.1.2 3 - -'], 'every address visited');
  t.ok(deepEqual(packEndpoints(p, false), p), 'slimming again changes nothing');
});

t.test('plain data: equality and structured clone (worker IPC) see everything', async (t) => {
  const a = packEndpoints(list, true);
  const b = packEndpoints(structuredClone(list), true);
  t.ok(deepEqual(a, b), 'equal input, equal packed form');
  const copy = deserialize(serialize(a)) as typeof a;
  t.ok(deepEqual(a, copy), 'survives v8 serialization');
  t.same(endpointList(copy), endpointList(a));
  const changed = packEndpoints(list.map((e, i) => (i === 2 ? { ...e, conditions: cond(true, true, false) } : e)), true);
  t.notOk(deepEqual(a, changed), 'a condition change is a change');
  const renamed = packEndpoints(list.map((e, i) => (i === 1 ? { ...e, hostname: 'web-9' } : e)), true);
  t.notOk(deepEqual(a, renamed), 'a hostname change is a change');
});
