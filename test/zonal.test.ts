/**
 * Zonal names (issue #12 §2; CoreDNS `zonal`, PR #8388, zonal_test.go): below a headless
 * service, `<topology-zone>.pin._zone.<svc>...` answers the served endpoints whose
 * EndpointSlice `zone` matches (NODATA if none), `...prefer._zone...` falls back to every
 * served endpoint. Run three ways (in-process fresh and cached, UDP, TCP) by the shared
 * answer-table runner, over a fixture of this file's own.
 */
import t from 'tap';
import type { Endpoint } from '../src/cluster/model.js';
import { ClusterStore } from '../src/cluster/store.js';
import { parseConfig } from '../src/config.js';
import { zoneOptions } from '../src/node.js';
import { DnsHandler } from '../src/server/handler.js';
import type { ZoneOptions } from '../src/zone/build.js';
import { Resolver } from '../src/zone/resolver.js';
import { parseZonal } from '../src/zone/zonal.js';
import { ClusterZone } from '../src/zone/zone.js';
import { ep, port, slice, svc } from './helpers/cluster.js';
import { runTable, zoneExpectations, type Case } from './helpers/answer-table.js';

const Z = 'cluster.local';
const { NODATA, NX } = zoneExpectations(Z);
const H = `hdls.testns.svc.${Z}`;

const base: ZoneOptions = { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined };
const zonal: ZoneOptions = { ...base, zonal: true };

/** An endpoint in topology zone `zone` (discovery/v1 `endpoints[].zone`). */
function zep(ip: string, zone: string | undefined, p: { hostname?: string; ready?: boolean } = {}): Endpoint {
  return { ...ep(ip, p), ...(zone === undefined ? {} : { zone }) };
}

const HTTP = [{ name: 'http', port: 80, protocol: 'TCP' as const }];

function store(): ClusterStore {
  const s = new ClusterStore();
  s.batch(() => {
    s.upsert({ kind: 'Namespace', obj: { name: 'testns', labels: {} } });
    s.upsert({ kind: 'Service', obj: svc('testns', 'hdls', { headless: true, ports: [port('http', 80)] }) });
    s.upsert({
      kind: 'EndpointSlice',
      obj: slice('testns', 'hdls', 'hdls-a', [
        zep('172.0.0.1', 'us-west-2a'),
        zep('172.0.0.2', 'us-west-2b'),
        // The zone as written may be in any case: matched case-insensitively.
        zep('172.0.0.3', 'US-West-2B'),
        zep('172.0.0.4', undefined),
        // Not ready: never served, so never selected, even when its zone is asked.
        zep('172.0.0.5', 'us-west-2a', { ready: false }),
        zep('172.0.0.6', 'us-west-2d', { ready: false }),
        // Label values may contain dots: the zone spans labels in the name.
        zep('172.0.0.7', 'eu.west'),
      ], HTTP),
    });
    // Dual-stack: the IPv6 slice of the same service, one endpoint with a hostname.
    s.upsert({
      kind: 'EndpointSlice',
      obj: slice('testns', 'hdls', 'hdls-v6', [zep('fd00::1', 'us-west-2a', { hostname: 'web-0' }), zep('fd00::2', 'us-west-2c')], HTTP, 'IPv6'),
    });
    // A headless service whose slices carry no zones at all.
    s.upsert({ kind: 'Service', obj: svc('testns', 'plain', { headless: true }) });
    s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'plain', 'plain-a', [zep('172.0.1.1', undefined), zep('172.0.1.2', undefined)], []) });
    // A headless service with no served endpoint does not exist, nor do names below it.
    s.upsert({ kind: 'Service', obj: svc('testns', 'drained', { headless: true }) });
    s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'drained', 'drained-a', [zep('172.0.2.1', 'us-west-2a', { ready: false })], HTTP) });
    // ClusterIP with zoned endpoints, and ExternalName: no zonal names.
    s.upsert({ kind: 'Service', obj: svc('testns', 'clstr', { clusterIPs: ['10.0.0.10'], ports: [port('http', 80)] }) });
    s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'clstr', 'clstr-a', [zep('172.0.3.1', 'us-west-2a')], HTTP) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'ext', { type: 'ExternalName', externalName: 'ext.example.test' }) });
  });
  s.flush();
  return s;
}

function setup(opts: ZoneOptions): DnsHandler {
  const zone = new ClusterZone(Z, store(), opts);
  const resolver = new Resolver();
  resolver.setZones([zone]);
  const handler = new DnsHandler({ resolver });
  zone.onUpdate = () => handler.invalidate();
  return handler;
}

const a = (name: string, ...ips: string[]): string[] => ips.map((ip) => `${name}. 5 IN ${ip.includes(':') ? 'AAAA' : 'A'} ${ip}`);

const cases: Case[] = [
  // pin: only the served endpoints in the zone.
  { q: `us-west-2a.pin._zone.${H}`, type: 'A', rcode: 'NOERROR', answer: a(`us-west-2a.pin._zone.${H}`, '172.0.0.1') },
  { q: `us-west-2b.pin._zone.${H}`, type: 'A', rcode: 'NOERROR', answer: a(`us-west-2b.pin._zone.${H}`, '172.0.0.2', '172.0.0.3') },
  // Case-insensitive on the query side too (RFC 4343).
  { q: `US-WEST-2B.Pin._Zone.HDLS.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: a(`us-west-2b.pin._zone.${H}`, '172.0.0.2', '172.0.0.3') },
  { q: `eu.west.pin._zone.${H}`, type: 'A', rcode: 'NOERROR', answer: a(`eu.west.pin._zone.${H}`, '172.0.0.7') },
  { q: `west.pin._zone.${H}`, type: 'A', ...NODATA },
  // pin, no match: NODATA (drained and mistyped zones alike); the not-ready endpoint's zone too.
  { q: `us-west-2x.pin._zone.${H}`, type: 'A', ...NODATA },
  { q: `us-west-2d.pin._zone.${H}`, type: 'A', ...NODATA },
  { q: `us-west-2x.pin._zone.${H}`, type: 'SRV', ...NODATA },
  // AAAA from the IPv6 slice (dual-stack); a zone with only IPv4 endpoints: NODATA for AAAA.
  { q: `us-west-2a.pin._zone.${H}`, type: 'AAAA', rcode: 'NOERROR', answer: a(`us-west-2a.pin._zone.${H}`, 'fd00::1') },
  { q: `us-west-2c.pin._zone.${H}`, type: 'AAAA', rcode: 'NOERROR', answer: a(`us-west-2c.pin._zone.${H}`, 'fd00::2') },
  { q: `us-west-2c.pin._zone.${H}`, type: 'A', ...NODATA },
  { q: `us-west-2b.pin._zone.${H}`, type: 'AAAA', ...NODATA },
  // Other types: NODATA (CoreDNS zonal_test.go: TXT).
  { q: `us-west-2a.pin._zone.${H}`, type: 'TXT', ...NODATA },
  { q: `us-west-2x.pin._zone.${H}`, type: 'TXT', ...NODATA },
  { q: `us-west-2a.prefer._zone.${H}`, type: 'TXT', ...NODATA },
  { q: `us-west-2a.pin._zone.${H}`, type: 'MX', ...NODATA },
  { q: `us-west-2a.pin._zone.${H}`, type: 'PTR', ...NODATA },
  // prefer: narrows like pin when the zone has endpoints…
  { q: `us-west-2a.prefer._zone.${H}`, type: 'A', rcode: 'NOERROR', answer: a(`us-west-2a.prefer._zone.${H}`, '172.0.0.1') },
  { q: `us-west-2b.prefer._zone.${H}`, type: 'A', rcode: 'NOERROR', answer: a(`us-west-2b.prefer._zone.${H}`, '172.0.0.2', '172.0.0.3') },
  // … and falls back to every served endpoint when it has none.
  { q: `us-west-2x.prefer._zone.${H}`, type: 'A', rcode: 'NOERROR', answer: a(`us-west-2x.prefer._zone.${H}`, '172.0.0.1', '172.0.0.2', '172.0.0.3', '172.0.0.4', '172.0.0.7') },
  { q: `us-west-2x.prefer._zone.${H}`, type: 'AAAA', rcode: 'NOERROR', answer: a(`us-west-2x.prefer._zone.${H}`, 'fd00::1', 'fd00::2') },
  // The zone has IPv4 endpoints only: prefer does not fall back per family (as CoreDNS: the
  // fallback is decided on the zone's endpoints, not on the answer).
  { q: `us-west-2b.prefer._zone.${H}`, type: 'AAAA', ...NODATA },
  // SRV: the headless SRV set restricted to the selected endpoints, targets the endpoint
  // names, CoreDNS weights over the candidates, the targets' addresses in additional.
  {
    q: `us-west-2b.pin._zone.${H}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [`us-west-2b.pin._zone.${H}. 5 IN SRV 0 50 80 172-0-0-2.${H}.`, `us-west-2b.pin._zone.${H}. 5 IN SRV 0 50 80 172-0-0-3.${H}.`],
    extra: [`172-0-0-2.${H}. 5 IN A 172.0.0.2`, `172-0-0-3.${H}. 5 IN A 172.0.0.3`],
  },
  {
    q: `us-west-2a.pin._zone.${H}`,
    type: 'SRV',
    rcode: 'NOERROR',
    answer: [`us-west-2a.pin._zone.${H}. 5 IN SRV 0 50 80 172-0-0-1.${H}.`, `us-west-2a.pin._zone.${H}. 5 IN SRV 0 50 80 web-0.${H}.`],
    extra: [`172-0-0-1.${H}. 5 IN A 172.0.0.1`, `web-0.${H}. 5 IN AAAA fd00::1`],
  },
  {
    q: `us-west-2x.prefer._zone.${H}`,
    type: 'SRV',
    rcode: 'NOERROR',
    // (The additional records are the targets' addresses as above; over plain UDP they
    // do not all fit in 512 bytes and are dropped, so they are not compared here.)
    answer: ['172-0-0-1', '172-0-0-2', '172-0-0-3', '172-0-0-4', '172-0-0-7', 'web-0', 'fd00--2'].map((n) => `us-west-2x.prefer._zone.${H}. 5 IN SRV 0 14 80 ${n}.${H}.`),
  },
  // A slice without ports: addresses, no SRV.
  { q: `us-west-2x.prefer._zone.plain.testns.svc.${Z}`, type: 'A', rcode: 'NOERROR', answer: a(`us-west-2x.prefer._zone.plain.testns.svc.${Z}`, '172.0.1.1', '172.0.1.2') },
  { q: `us-west-2x.prefer._zone.plain.testns.svc.${Z}`, type: 'SRV', ...NODATA },
  { q: `us-west-2a.pin._zone.plain.testns.svc.${Z}`, type: 'A', ...NODATA },
  // The anchor and the directives exist without records (empty non-terminals, RFC 8020,
  // like `_tcp.<svc>`; CoreDNS says NXDOMAIN, see README).
  { q: `_zone.${H}`, type: 'A', ...NODATA },
  { q: `pin._zone.${H}`, type: 'A', ...NODATA },
  { q: `prefer._zone.${H}`, type: 'SRV', ...NODATA },
  // Unknown directives: NXDOMAIN (CoreDNS's too-long name).
  { q: `us-west-2a.florp._zone.${H}`, type: 'A', ...NX },
  { q: `florp._zone.${H}`, type: 'A', ...NX },
  { q: `us-west-2a.pin.zone.${H}`, type: 'A', ...NX },
  { q: `us-west-2a.pin._zone.x.${H}`, type: 'A', ...NX },
  // Only headless services have zonal names.
  { q: `us-west-2a.pin._zone.clstr.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `us-west-2a.prefer._zone.clstr.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `_zone.clstr.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `us-west-2a.pin._zone.ext.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `us-west-2a.pin._zone.ext.testns.svc.${Z}`, type: 'CNAME', ...NX },
  { q: `us-west-2a.pin._zone.ghost.testns.svc.${Z}`, type: 'A', ...NX },
  { q: `us-west-2a.pin._zone.drained.testns.svc.${Z}`, type: 'A', ...NX },
  // The other names of the service are untouched.
  { q: H, type: 'A', rcode: 'NOERROR', answer: a(H, '172.0.0.1', '172.0.0.2', '172.0.0.3', '172.0.0.4', '172.0.0.7') },
  { q: `web-0.${H}`, type: 'AAAA', rcode: 'NOERROR', answer: a(`web-0.${H}`, 'fd00::1') },
  { q: `_tcp.${H}`, type: 'SRV', ...NODATA },
];

runTable(t, 'zonal answer table', () => setup(zonal), cases);

// Without `zonal` these names do not exist, as before the option.
const off: Case[] = [
  { q: `us-west-2a.pin._zone.${H}`, type: 'A', ...NX },
  { q: `us-west-2a.prefer._zone.${H}`, type: 'A', ...NX },
  { q: `us-west-2a.pin._zone.${H}`, type: 'SRV', ...NX },
  { q: `pin._zone.${H}`, type: 'A', ...NX },
  { q: `_zone.${H}`, type: 'A', ...NX },
  { q: H, type: 'A', rcode: 'NOERROR', answer: a(H, '172.0.0.1', '172.0.0.2', '172.0.0.3', '172.0.0.4', '172.0.0.7') },
];
runTable(t, 'zonal off', () => setup(base), off);

t.test('zonal names are answered on demand: never table names, never counted', async (t) => {
  const on = new ClusterZone(Z, store(), zonal);
  const plain = new ClusterZone(Z, store(), base);
  t.equal(on.forward.size, plain.forward.size, 'the same names held with and without zonal');
  t.ok(on.forward.exists(`us-west-2a.pin._zone.${H}`));
  t.notOk(plain.forward.exists(`us-west-2a.pin._zone.${H}`));
  on.close();
  plain.close();
});

t.test('a zone transfer lists no zonal name (answered per query, as CoreDNS leaves them out of AXFR)', async (t) => {
  const { snapshotZone } = await import('../src/zone/transfer.js');
  const zone = new ClusterZone(Z, store(), zonal);
  const names = [...snapshotZone(zone).records()].map((r) => r.name);
  t.ok(names.includes(`web-0.${H}`), 'endpoint names are listed');
  t.same(names.filter((n) => n.includes('_zone')), [], 'no zonal name');
  zone.close();
});

t.test('a zone-only endpoint change changes the answer', async (t) => {
  const s = store();
  const zone = new ClusterZone(Z, s, zonal);
  const ips = () => [...(zone.forward.lookup(`us-west-2a.pin._zone.${H}`)?.get(1)?.rrs ?? [])].map((r) => (r as { ip: string }).ip);
  t.same(ips(), ['172.0.0.1']);
  s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'hdls', 'hdls-a', [zep('172.0.0.1', 'us-west-2b'), zep('172.0.0.2', 'us-west-2a')], HTTP) });
  s.flush();
  t.same(ips(), ['172.0.0.2'], 'the moved endpoint is now the zone');
  zone.close();
});

t.test('the grammar: anchor, directives, zones spanning labels', async (t) => {
  t.equal(parseZonal('web-0'), undefined);
  t.equal(parseZonal('_http._tcp'), undefined);
  t.equal(parseZonal('_zone._tcp'), undefined, 'a port named zone is an SRV name');
  t.same(parseZonal('_zone'), { kind: 'ent' });
  t.same(parseZonal('pin._zone'), { kind: 'ent' });
  t.same(parseZonal('prefer._zone'), { kind: 'ent' });
  t.same(parseZonal('x._zone'), { kind: 'nx' });
  t.same(parseZonal('a.x._zone'), { kind: 'nx' });
  t.same(parseZonal('us-east-1a.pin._zone'), { kind: 'zone', zone: 'us-east-1a', prefer: false });
  t.same(parseZonal('a.b.prefer._zone'), { kind: 'zone', zone: 'a.b', prefer: true });
});

t.test('zoneOptions: zonal from the config, never in a multicluster zone', async (t) => {
  const c = parseConfig({ zonal: true, multicluster: ['clusterset.local'] }, 'cfg');
  t.equal(zoneOptions(c, 'cluster.local').zonal, true);
  t.equal(zoneOptions(c, 'ClusterSet.Local').zonal, false);
  t.equal(zoneOptions(c).zonal, true);
  t.equal(zoneOptions(parseConfig({}, 'cfg'), 'cluster.local').zonal, false);
});
