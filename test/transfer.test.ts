/**
 * Zone transfer out (README "Zone transfer to a secondary"): what an AXFR lists (every
 * record a query answers, nothing else), who gets one, IXFR, streaming of large zones
 * in bounded memory, the snapshot's consistency, the serial's monotonicity, and NOTIFY.
 * The real secondary (Knot) is in transfer-knot.test.ts.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import t, { type Test } from 'tap';
import * as dnsPacket from 'dns-packet';
import { Type, typeName } from '../src/dns/constants.js';
import { rrText, type RR } from '../src/dns/rr.js';
import { Notifier, notifyMessage, OPCODE_NOTIFY } from '../src/server/notify.js';
import { isReplyStream, MESSAGE_SIZE, serialNewer, type ReplyStream } from '../src/server/transfer.js';
import type { DnsHandler } from '../src/server/handler.js';
import { listen } from '../src/server/listen.js';
import type { ZoneOptions } from '../src/zone/build.js';
import { Resolver } from '../src/zone/resolver.js';
import { snapshotZone } from '../src/zone/transfer.js';
import { ClusterZone } from '../src/zone/zone.js';
import { parseConfig } from '../src/config.js';
import { requireTool } from './helpers/cli.js';
import { fixtureStore, svc, port as svcPort, slice, ep } from './helpers/cluster.js';
import { makeQuery, udpExchange, decode } from './helpers/dns.js';
import { bulkServices, digLarge, oneZone, serveNode, transfer, xfrQuery, Z } from './helpers/transfer.js';

const base: ZoneOptions = { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined };
const QTYPES = [Type.A, Type.AAAA, Type.CNAME, Type.SRV, Type.TXT, Type.NS, Type.SOA, Type.PTR];
const ALLOW = { transfer: ['127.0.0.0/8'] };

function zoneOf(opts: Partial<ZoneOptions> = {}) {
  const zone = new ClusterZone(Z, fixtureStore(), { ...base, ...opts });
  const r = new Resolver();
  r.setZones([zone]);
  return { zone, r };
}

/** `name|TYPE` → the records' text, for the records a transfer lists. */
function byRRset(rrs: Iterable<RR>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const rr of rrs) {
    const k = `${rr.name}|${typeName(rr.type)}`;
    let l = out.get(k);
    if (l === undefined) out.set(k, (l = []));
    l.push(rrText(rr));
  }
  for (const l of out.values()) l.sort();
  return out;
}

/** The records a query for (name, type) answers at that name (a CNAME chain's later links left out). */
function answered(r: Resolver, name: string, qtype: number): string[] {
  const ans = r.resolve(name, qtype);
  if (ans === undefined || ans.rcode !== 0) return [];
  return ans.answer.filter((rr) => rr.name === name && rr.type === qtype).map(rrText).sort();
}

t.test('an AXFR lists exactly what queries answer at its names', async (t) => {
  const { zone, r } = zoneOf();
  const snap = snapshotZone(zone);
  const listed = byRRset(snap.records());
  t.ok(listed.size > 30, `${listed.size} RRsets listed`);
  for (const [k, rrs] of listed) {
    const [name, type] = k.split('|') as [string, string];
    t.same(rrs, answered(r, name, Type[type as keyof typeof Type]), `${name} ${type}: the listing is the answer`);
  }
  // Every RRset a query answers at these names and at others that exist is listed,
  // except pod names (computed from the question, not records of the zone).
  const names = new Set([...listed.keys()].map((k) => k.split('|')[0]!));
  for (const n of [`svc.${Z}`, `testns.svc.${Z}`, `_tcp.svc1.testns.svc.${Z}`, `dns.${Z}`, `hdls-empty.testns.svc.${Z}`, `ext-ip.testns.svc.${Z}`]) names.add(n);
  let checked = 0;
  for (const name of names) {
    for (const qt of QTYPES) {
      if (qt === Type.SOA && name === Z) continue; // first and last, not in records()
      const want = answered(r, name, qt);
      checked++;
      t.same(listed.get(`${name}|${typeName(qt)}`) ?? [], want, `${name} ${typeName(qt)} answered ⇒ listed`);
    }
  }
  t.ok(checked > 300, `${checked} (name, type) pairs compared`);

  t.same(snap.soa.type, Type.SOA);
  t.equal(snap.serial, zone.serial, 'the snapshot carries the zone serial');
  t.ok(listed.has(`ep1a.svc1.testns.svc.${Z}|A`), 'endpoint names under a ClusterIP service (queries answer them; CoreDNS xfr.go leaves them out)');
  t.ok(listed.has(`172-0-0-2.svc1.testns.svc.${Z}|A`), 'dashed endpoint names');
  t.ok(listed.has(`_http._tcp.hdls1.testns.svc.${Z}|SRV`) && listed.has(`hdls1.testns.svc.${Z}|SRV`), 'SRV at the service and at _port._proto');
  t.same(listed.get(`ext.testns.svc.${Z}|CNAME`), [`ext.testns.svc.${Z}.\t5\tIN\tCNAME\text.interwebs.test.`], 'ExternalName CNAME');
  t.same(listed.get(`ns.dns.${Z}|A`), [`ns.dns.${Z}.\t5\tIN\tA\t10.96.0.10`], 'NS glue');
  t.ok(listed.has(`dns-version.${Z}|TXT`) && listed.has(`${Z}|NS`));
  t.notOk([...names].some((n) => n.includes('.pod.')), 'no pod names');
  t.notOk(listed.has(`${Z}|SOA`), 'the SOA is the caller’s (first and last)');
  t.ok(answered(r, `10-244-0-7.testns.pod.${Z}`, Type.A).length === 1, 'pod names are answered on demand but not transferred');
  t.notOk(listed.has(`web-9.hdls1.testns.svc.${Z}|A`), 'not-ready endpoints are not listed (not answered)');
  t.notOk([...names].some((n) => n.endsWith('.arpa')), 'no PTR');
});

/** The listing and the answers agree at every listed name and type, both ways. */
function agree(t: Test, opts: Partial<ZoneOptions>): void {
  const { zone, r } = zoneOf(opts);
  const listed = byRRset(snapshotZone(zone).records());
  for (const [k, rrs] of listed) {
    const [name, type] = k.split('|') as [string, string];
    t.same(rrs, answered(r, name, Type[type as keyof typeof Type]), `${name} ${type}`);
    for (const qt of QTYPES) if (qt !== Type.SOA || name !== Z) t.same(listed.get(`${name}|${typeName(qt)}`) ?? [], answered(r, name, qt));
  }
}

t.test('options shape the listing as they shape answers', async (t) => {
  for (const opts of [{ zonal: true }, { endpointPodNames: true }, { ignoreEmptyService: true }, { pods: 'disabled' as const }, { ttl: 30 }, { noEndpoints: true }] as Partial<ZoneOptions>[]) {
    t.test(JSON.stringify(opts), async (t) => agree(t, opts));
  }
  const only = zoneOf({ namespaces: new Set(['default']) });
  const names = [...byRRset(snapshotZone(only.zone).records()).keys()].map((k) => k.split('|')[0]!);
  t.ok(names.includes(`kubernetes.default.svc.${Z}`));
  t.notOk(names.some((n) => n.includes('.testns.')), '`namespaces`: other namespaces are left out (CoreDNS too)');
  const noEp = zoneOf({ noEndpoints: true });
  const l = byRRset(snapshotZone(noEp.zone).records());
  t.notOk(l.has(`ep1a.svc1.testns.svc.${Z}|A`), 'noEndpoints: no endpoint names');
  t.notOk(l.has(`hdls1.testns.svc.${Z}|A`), 'noEndpoints: headless names gone');
  const zonal = zoneOf({ zonal: true } as Partial<ZoneOptions>);
  t.notOk([...byRRset(snapshotZone(zonal.zone).records()).keys()].some((k) => k.includes('_zone')), 'zonal names are never listed');
});

t.test('a snapshot is one version: later changes do not reach it', async (t) => {
  const { zone } = zoneOf();
  const store = zone.store;
  const snap = snapshotZone(zone);
  const it = snap.records();
  const first = it.next();
  t.notOk(first.done);
  store.upsert({ kind: 'Service', obj: svc('testns', 'late', { clusterIPs: ['10.0.0.77'], ports: [svcPort('http', 80)] }) });
  store.remove('Service', 'testns/svc1');
  store.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'hdls1', 'hdls1-a', [ep('172.0.0.66', { hostname: 'new-0' })], [{ name: 'http', port: 80, protocol: 'TCP' }]) });
  store.flush();
  t.ok(zone.serial !== snap.serial, 'the zone moved on');
  const rest = [...it].map(rrText).join('\n');
  t.notMatch(rest, /late\.testns/, 'a service added after the snapshot is not in it');
  t.match(rest, /svc1\.testns\.svc\.cluster\.local\.\t5\tIN\tA\t10\.0\.0\.1/, 'a service removed after the snapshot still is');
  t.match(rest, /web-0\.hdls1/, 'endpoints as they were');
  t.notMatch(rest, /new-0\.hdls1/);
  const now = [...snapshotZone(zone).records()].map(rrText).join('\n');
  t.match(now, /late\.testns/, 'a new snapshot has the change');
  t.match(now, /new-0\.hdls1/);
});

t.test('the serial only moves forward, one step or more per change', async (t) => {
  const { zone } = zoneOf();
  const store = zone.store;
  const seen = [zone.serial];
  let n = 0;
  const change = (): void => {
    store.upsert({ kind: 'Service', obj: svc('testns', `s${n++}`, { clusterIPs: ['10.0.0.88'] }) });
    store.flush();
    seen.push(zone.serial);
  };
  change();
  change();
  change(); // three changes within (most likely) one second
  const realNow = Date.now;
  Date.now = () => realNow() - 3_600_000; // the clock steps back an hour
  try {
    change();
    change();
  } finally {
    Date.now = realNow;
  }
  for (let i = 1; i < seen.length; i++) t.ok(serialNewer(seen[i]!, seen[i - 1]!), `change ${i}: ${seen[i - 1]} → ${seen[i]}`);
  // Several events delivered together are one change: one step.
  const before = zone.serial;
  store.upsert({ kind: 'Service', obj: svc('testns', 'x1', { clusterIPs: ['10.0.0.89'] }) });
  store.upsert({ kind: 'Service', obj: svc('testns', 'x2', { clusterIPs: ['10.0.0.90'] }) });
  store.flush();
  t.ok(serialNewer(zone.serial, before));
  t.ok(zone.serial - before <= Math.max(1, Math.floor(Date.now() / 1000) - before), 'one step (or the clock) for one delivered change');
  const soa = zone.forward.lookup(Z)?.get(Type.SOA)?.rrs[0];
  t.equal(soa?.type === Type.SOA ? soa.soa.serial : undefined, zone.serial, 'the apex SOA has it');
  // A reload (the process that feeds the stores) moves it too.
  const s = await serveNode(t, oneZone(fixtureStore()), ALLOW);
  const z = s.node.zones()[0]!;
  const r0 = z.serial;
  s.node.setConfig(parseConfig({ ...ALLOW, ttl: 30 }));
  t.ok(serialNewer(z.serial, r0), `a reload: ${r0} → ${z.serial}`);
  t.match((await transfer(s.port, Z)).records[1], / 30 IN NS /, 'with the new records');
});

t.test('over sockets', async (t) => {
  const store = fixtureStore();
  const { node, port, metrics } = await serveNode(t, oneZone(store), { transfer: ['127.0.0.1/32'] });
  const zone = node.zones()[0]!;

  t.test('AXFR over TCP: SOA first and last, the snapshot between, AA', async (t) => {
    const x = await transfer(port, Z);
    t.equal(x.rcode, 0);
    const soa = x.records[0]!;
    t.match(soa, new RegExp(`^${Z}\\. 5 IN SOA ns\\.dns\\.${Z}\\. hostmaster\\.${Z}\\. ${zone.serial} 7200 1800 86400 5$`));
    t.equal(x.records.at(-1), soa, 'the same SOA last');
    t.equal(x.records.filter((r) => r.includes(' SOA ')).length, 2);
    t.equal(x.records.length, [...snapshotZone(zone).records()].length + 2, 'every record of the snapshot');
    for (const m of x.messages) t.ok((m.readUInt16BE(2) & 0x0400) !== 0 && (m.readUInt16BE(2) & 0x0200) === 0, 'AA, no TC');
    t.equal(x.decoded[0]!.questions?.[0]?.name, Z, 'the question is copied');
  });

  t.test('a client outside `transfer` is REFUSED; UDP AXFR always is', async (t) => {
    const x = await transfer(port, Z, { localAddress: '127.0.0.2' });
    t.equal(x.rcode, 5, 'REFUSED from 127.0.0.2');
    t.equal(x.messages.length, 1);
    const u = decode(await udpExchange(port, xfrQuery(Z, 'AXFR')));
    t.equal(u.rcode, 'REFUSED', 'UDP AXFR from an allowed client');
    t.same(u.answer, []);
  });

  t.test('NOTAUTH for what is not the apex of a zone we serve', async (t) => {
    for (const n of [`svc.${Z}`, 'example.org', '10.in-addr.arpa']) t.equal((await transfer(port, n)).rcode, 9, n);
  });

  t.test('IXFR: current → the SOA alone; older → the whole zone AXFR-style; UDP → the SOA', async (t) => {
    const serial = zone.serial;
    const cur = await transfer(port, Z, { type: 'IXFR', serial });
    t.equal(cur.messages.length, 1);
    t.equal(cur.records.length, 1, 'one record');
    t.match(cur.records[0], / SOA .* \d+ 7200/);
    t.match(cur.records[0], ` ${serial} `);
    const newer = await transfer(port, Z, { type: 'IXFR', serial: serial + 10 });
    t.equal(newer.records.length, 1, 'a newer serial: the SOA alone too (RFC 1995 §2)');
    const old = await transfer(port, Z, { type: 'IXFR', serial: serial - 1 });
    t.equal(old.records.length, [...snapshotZone(zone).records()].length + 2, 'older: every record');
    t.match(old.records[1], / NS /, 'AXFR-style: the second record is not an SOA (RFC 1995 §4)');
    t.equal(old.decoded[0]!.questions?.[0]?.type, 'IXFR', 'the question is the IXFR');
    for (const s of [serial, serial - 1]) {
      const u = decode(await udpExchange(port, xfrQuery(Z, 'IXFR', s)));
      t.equal(u.rcode, 'NOERROR');
      t.equal(u.answer.length, 1, `UDP IXFR (${s === serial ? 'current' : 'older: use TCP'}): the SOA alone`);
    }
    t.equal((await transfer(port, Z, { type: 'IXFR' })).rcode, 1, 'IXFR without the client SOA: FORMERR');
    t.equal(decode(await udpExchange(port, xfrQuery(Z, 'IXFR', serial), '127.0.0.1')).rcode, 'NOERROR');
  });

  t.test('after a change: a new serial, the new records', async (t) => {
    const before = zone.serial;
    store.upsert({ kind: 'Service', obj: svc('testns', 'added', { clusterIPs: ['10.0.0.55'], ports: [svcPort('http', 80)] }) });
    store.flush();
    t.ok(zone.serial !== before);
    const x = await transfer(port, Z);
    t.ok(x.records.includes(`added.testns.svc.${Z}. 5 IN A 10.0.0.55`));
    t.match(x.records[0], ` ${zone.serial} `);
    const ixfr = await transfer(port, Z, { type: 'IXFR', serial: before });
    t.ok(ixfr.records.length > 2, 'IXFR from the old serial: the whole zone');
  });

  t.test('metrics: transfers by result', async (t) => {
    const text = await metrics.text();
    t.match(text, /clusterdns_zone_transfers_total\{zone="cluster\.local",type="AXFR",result="served"\} [1-9]/);
    t.match(text, /clusterdns_zone_transfers_total\{zone="cluster\.local",type="AXFR",result="refused"\} [1-9]/);
    t.match(text, /clusterdns_zone_transfers_total\{zone="cluster\.local",type="IXFR",result="soa-only"\} [1-9]/);
    t.match(text, /clusterdns_zone_transfers_total\{zone="cluster\.local",type="IXFR",result="formerr"\} 1/);
    t.match(text, /clusterdns_dns_requests_total\{[^}]*type="AXFR"\} [1-9]/, 'counted as queries too');
  });
});

t.test('a multicluster zone transfers like a cluster zone, at its own serial', async (t) => {
  const MC = 'clusterset.local';
  const store = fixtureStore();
  const http = [{ name: 'http', port: 80, protocol: 'TCP' as const }];
  store.upsert({ kind: 'ServiceImport', obj: { namespace: 'testns', name: 'db', type: 'ClusterSetIP', ips: ['10.100.0.7'], ports: http } });
  store.upsert({
    kind: 'EndpointSlice',
    obj: { ...slice('testns', 'db', 'db-east', [ep('10.1.0.7', { hostname: 'db-0' })], http), labels: { 'multicluster.kubernetes.io/service-name': 'db', 'multicluster.kubernetes.io/source-cluster': 'east' }, sourceCluster: 'east' },
  });
  store.flush();
  const { node, port } = await serveNode(t, oneZone(store), { ...ALLOW, multicluster: [MC] });
  const mc = node.zones().find((z) => z.name === MC);
  t.ok(mc !== undefined, 'the multicluster zone is served');
  if (mc === undefined) return;
  const x = await transfer(port, MC);
  t.equal(x.rcode, 0);
  t.match(x.records[0], new RegExp(`^${MC.replace('.', '\\.')}\\. 5 IN SOA .* ${mc.serial} `));
  t.equal(x.records.at(-1), x.records[0]);
  t.ok(x.records.includes(`db.testns.svc.${MC}. 5 IN A 10.100.0.7`));
  t.ok(x.records.includes(`db-0.east.db.testns.svc.${MC}. 5 IN A 10.1.0.7`), 'endpoint names per cluster');
  const listed = byRRset(snapshotZone(mc).records());
  for (const [k, rrs] of listed) {
    const [name, type] = k.split('|') as [string, string];
    t.same(rrs, answered(node.resolver, name, Type[type as keyof typeof Type]), `${name} ${type}`);
  }
  t.equal((await transfer(port, Z)).records.filter((r) => r.includes(MC)).length, 0, 'the cluster zone’s transfer has none of it');
});

t.test('nobody by default; SERVFAIL before the first sync', async (t) => {
  const a = await serveNode(t, oneZone(fixtureStore()), {});
  t.equal((await transfer(a.port, Z)).rcode, 5, 'empty `transfer`: REFUSED');
  let synced = false;
  const b = await serveNode(t, oneZone(fixtureStore(), Z, () => synced), ALLOW);
  t.equal((await transfer(b.port, Z)).rcode, 2, 'unsynced: SERVFAIL, never a partial zone');
  synced = true;
  t.equal((await transfer(b.port, Z)).rcode, 0);
  b.node.setConfig(parseConfig({ transfer: ['10.0.0.0/8'] }));
  t.equal((await transfer(b.port, Z)).rcode, 5, 'a reload narrowing `transfer` applies at once');
  b.node.setConfig(parseConfig(ALLOW));
  t.equal((await transfer(b.port, Z)).rcode, 0, 'and widening it');
});

t.test('a large zone streams in several messages', async (t) => {
  const store = fixtureStore();
  bulkServices(store, 5000);
  const { node, port, metrics } = await serveNode(t, oneZone(store), ALLOW);
  const zone = node.zones()[0]!;
  const want = [...snapshotZone(zone).records()].length + 2;

  const x = await transfer(port, Z, { timeoutMs: 20_000 });
  t.equal(x.records.length, want, `${want} records`);
  t.ok(x.messages.length > 5, `${x.messages.length} messages`);
  t.ok(
    x.messages.every((m) => m.length <= MESSAGE_SIZE),
    `each at most ${MESSAGE_SIZE} bytes`,
  );
  t.ok(x.messages.slice(0, -1).every((m) => m.length > MESSAGE_SIZE - 300), 'each but the last nearly full');
  t.equal(new Set(x.records).size, x.records.length - 1, 'no record twice (but the SOA)');
  const avg = x.messages.reduce((n, m) => n + m.length, 0) / x.records.length;
  // Uncompressed, an owner name alone is ~35 bytes here and an SRV's target ~32 more.
  t.ok(avg < 50, `name compression: ${avg.toFixed(1)} bytes a record`);

  t.test('dig gets every record', async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    const out = await digLarge(port, ['+nocmd', Z, 'AXFR']);
    if (!/XFR size/.test(out)) t.comment(out.slice(0, 2000));
    const m = /XFR size: (\d+) records \(messages (\d+), bytes (\d+)\)/.exec(out);
    t.ok(m !== null, 'dig completed the transfer');
    t.equal(Number(m?.[1]), want);
    t.ok(Number(m?.[2]) > 1, `${m?.[2]} messages`);
    const lines = out.split('\n').filter((l) => l !== '' && !l.startsWith(';'));
    t.equal(lines.length, want);
    t.match(lines[0], /\tSOA\t/);
    t.match(lines.at(-1), /\tSOA\t/);
    t.ok(lines.some((l) => /^svc-4999\.bulk\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.100\.19\.135$/.test(l)), 'the last service');
  });

  t.test('a change during a transfer: the transfer keeps its version', async (t) => {
    const oldSerial = zone.serial;
    const x = await transfer(port, Z, {
      timeoutMs: 20_000,
      beforeRead: async () => {
        // The server has the query (and took its snapshot) before the store changes.
        await new Promise((r) => setTimeout(r, 100));
        bulkServices(store, 10, 5000);
        store.remove('Service', 'bulk/svc-4999');
        store.flush();
      },
    });
    t.ok(zone.serial !== oldSerial);
    t.match(x.records[0], ` ${oldSerial} `, 'the serial of the start');
    t.match(x.records.at(-1), ` ${oldSerial} `);
    t.ok(x.records.some((r) => r.startsWith('svc-4999.bulk.')), 'removed meanwhile: still in this transfer');
    t.notOk(x.records.some((r) => r.startsWith('svc-5005.bulk.')), 'added meanwhile: not in this transfer');
    const y = await transfer(port, Z, { timeoutMs: 20_000 });
    t.match(y.records[0], ` ${zone.serial} `);
    t.ok(y.records.some((r) => r.startsWith('svc-5005.bulk.')));
    t.notOk(y.records.some((r) => r.startsWith('svc-4999.bulk.')));
  });

  t.test('a transfer the client abandons is counted as aborted; the server carries on', async (t) => {
    const s = node.handler.handleTcp(xfrQuery(Z, 'AXFR'), '1', '127.0.0.1');
    t.ok(isReplyStream(s), 'a stream');
    if (!isReplyStream(s)) return;
    t.ok(s.next() !== undefined, 'a first message');
    s.close();
    s.close();
    t.equal(s.next(), undefined, 'nothing after close');
    t.match(await metrics.text(), /clusterdns_zone_transfers_total\{zone="cluster\.local",type="AXFR",result="aborted"\} 1/);
    t.equal(decode(await udpExchange(port, makeQuery(`svc-1.bulk.svc.${Z}`, 'A'))).answer.length, 1, 'queries fine');
  });
});

t.test('the listener makes stream messages only as fast as the client reads them', async (t) => {
  const TOTAL = 4000; // 4000 × 16 KiB = 64 MiB: far beyond any socket buffer
  let made = 0;
  let closed = 0;
  const msg = Buffer.alloc(16384, 0x41);
  const stream: ReplyStream = {
    next: () => {
      if (made >= TOTAL) return undefined;
      made++;
      const m = Buffer.from(msg);
      m.writeUInt32BE(made, 0);
      return m;
    },
    close: () => {
      closed++;
    },
  };
  const handler = {
    handleTcp: (): ReplyStream | Buffer => (made === 0 && closed === 0 ? stream : Buffer.from('answer after the stream')),
    handle: () => undefined,
  } as unknown as DnsHandler;
  const l = await listen(handler, { host: '127.0.0.1', port: 0, tcpIdleTimeout: 30_000 });
  t.teardown(() => l.close());
  const sock = net.connect(l.tcpPort, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.pause();
  const q = xfrQuery(Z, 'AXFR');
  const frame = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
  // The stream, then a second query pipelined behind it.
  sock.write(Buffer.concat([frame(q), frame(q)]));
  await new Promise((r) => setTimeout(r, 700));
  t.ok(made > 0 && made < 1000, `while the client does not read: ${made} of ${TOTAL} messages made (socket buffers, not the zone)`);
  // Read everything: every message in order, then the pipelined answer.
  let buf = Buffer.alloc(0);
  let got = 0;
  let inOrder = true;
  let after = '';
  await new Promise<void>((resolve) => {
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        if (got < TOTAL) {
          got++;
          if (m.readUInt32BE(0) !== got) inOrder = false;
        } else {
          after = m.toString();
          resolve();
        }
      }
    });
    sock.resume();
  });
  t.equal(got, TOTAL, 'all of it once read');
  t.ok(inOrder, 'in order');
  t.equal(after, 'answer after the stream', 'a query pipelined behind a transfer is answered after it');
  t.equal(closed, 1, 'closed when complete');

  // A client that goes away mid-stream: the stream is closed.
  made = 0;
  closed = 0;
  const s2 = net.connect(l.tcpPort, '127.0.0.1');
  await new Promise((r) => s2.once('connect', r));
  s2.pause();
  s2.write(frame(q));
  await new Promise((r) => setTimeout(r, 200));
  s2.destroy();
  const until = Date.now() + 2000;
  while (Date.now() < until && closed === 0) await new Promise((r) => setTimeout(r, 20));
  t.equal(closed, 1, 'closed when the client went away');
  t.ok(made < TOTAL, 'and no more made');
  sock.destroy();
});

t.test('NOTIFY', async (t) => {
  /** A fake secondary: records NOTIFYs, answers with `rcode` (undefined: never). */
  const secondary = async (rcode: number | undefined) => {
    const sock = dgram.createSocket('udp4');
    const got: { msg: dnsPacket.DecodedPacket & { opcode?: string }; raw: Buffer; at: number }[] = [];
    sock.on('message', (raw, rinfo) => {
      got.push({ msg: dnsPacket.decode(raw) as dnsPacket.DecodedPacket & { opcode?: string }, raw, at: performance.now() });
      if (rcode === undefined) return;
      const reply = Buffer.from(raw.subarray(0, raw.length));
      reply.writeUInt16BE((OPCODE_NOTIFY << 11) | 0x8000 | 0x0400 | rcode, 2);
      reply.writeUInt16BE(0, 6); // no answer records back
      const qEnd = 12 + Z.length + 2 + 4;
      sock.send(reply.subarray(0, qEnd), rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
    return { port: (sock.address() as { port: number }).port, got };
  };
  const soa = { name: Z, type: Type.SOA, ttl: 5, soa: { mname: `ns.dns.${Z}`, rname: `hostmaster.${Z}`, serial: 4242, refresh: 7200, retry: 1800, expire: 86400, minimum: 5 } } as const;

  t.test('the message (RFC 1996 §3.7)', async (t) => {
    const m = notifyMessage(0x1234, Z, soa);
    t.equal((m.readUInt16BE(2) >> 11) & 0xf, 4, 'opcode NOTIFY');
    t.ok(m.readUInt16BE(2) & 0x0400, 'AA');
    const p = dnsPacket.decode(m);
    t.same(p.questions, [{ name: Z, type: 'SOA', class: 'IN' }]);
    t.equal((p.answers?.[0] as dnsPacket.SoaAnswer).data.serial, 4242, 'the SOA as a hint');
  });

  t.test('debounced, acknowledged: one message', async (t) => {
    const s = await secondary(0);
    const events: string[] = [];
    const n = new Notifier({ targets: [`127.0.0.1:${s.port}`], soaOf: () => soa, settleMs: 50, debounceMs: 400, retryMs: 100, onEvent: (e) => events.push(e.result) });
    t.teardown(() => n.close());
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) n.changed(Z);
    await new Promise((r) => setTimeout(r, 400));
    t.equal(s.got.length, 1, 'a burst of changes: one NOTIFY');
    t.ok(s.got[0]!.at - t0 >= 45, 'after the settle time');
    t.same(events, ['sent', 'acked']);
    t.equal(n.outstanding, 0);
    // A change right after: not before debounceMs since the last NOTIFY.
    n.changed(Z);
    await new Promise((r) => setTimeout(r, 600));
    t.equal(s.got.length, 2);
    t.ok(s.got[1]!.at - s.got[0]!.at >= 390, `at most one per debounceMs (${Math.round(s.got[1]!.at - s.got[0]!.at)} ms)`);
    t.same(n.counts().find((c) => c.labels.result === 'acked')?.value, 2);
  });

  t.test('unanswered: retransmitted a bounded number of times (RFC 1996 §3.6)', async (t) => {
    const s = await secondary(undefined);
    const events: string[] = [];
    const n = new Notifier({ targets: [`127.0.0.1:${s.port}`], soaOf: () => soa, settleMs: 1, retryMs: 30, retries: 3, onEvent: (e) => events.push(e.result) });
    t.teardown(() => n.close());
    n.changed(Z);
    const until = Date.now() + 3000;
    while (Date.now() < until && !events.includes('failed')) await new Promise((r) => setTimeout(r, 20));
    t.equal(s.got.length, 4, 'the first and 3 retransmissions');
    t.same(new Set(s.got.map((g) => g.msg.id)).size, 1, 'the same message each time');
    t.equal(events.at(-1), 'failed');
    t.equal(n.outstanding, 0, 'then dropped');
    await new Promise((r) => setTimeout(r, 200));
    t.equal(s.got.length, 4, 'nothing more');
  });

  t.test('refused by the secondary: not asked again; a stray reply is ignored', async (t) => {
    const s = await secondary(9);
    const events: string[] = [];
    const n = new Notifier({ targets: [`127.0.0.1:${s.port}`], soaOf: () => soa, settleMs: 1, retryMs: 30, retries: 3, onEvent: (e) => events.push(e.result) });
    t.teardown(() => n.close());
    n.changed(Z);
    await new Promise((r) => setTimeout(r, 300));
    t.equal(s.got.length, 1);
    t.same(events, ['sent', 'rejected']);
  });

  t.test('the node notifies when a zone’s serial moves, with the new SOA', async (t) => {
    const s = await secondary(0);
    const store = fixtureStore();
    const { node, metrics } = await serveNode(t, oneZone(store), { ...ALLOW, transferNotify: [`127.0.0.1:${s.port}`] });
    const zone = node.zones()[0]!;
    const wait = async (n: number): Promise<void> => {
      const until = Date.now() + 3000;
      while (Date.now() < until && s.got.length < n) await new Promise((r) => setTimeout(r, 20));
    };
    await wait(1);
    t.equal(s.got.length, 1, 'at start');
    store.upsert({ kind: 'Service', obj: svc('testns', 'n1', { clusterIPs: ['10.0.0.61'] }) });
    store.flush();
    const t0 = performance.now();
    await wait(2);
    t.equal(s.got.length, 2, 'after a change');
    t.ok(s.got[1]!.at - t0 < 1500, 'promptly');
    const ans = s.got[1]!.msg.answers?.[0] as dnsPacket.SoaAnswer;
    t.equal(ans.data.serial, zone.serial, 'with the new serial');
    t.match(await metrics.text(), /clusterdns_notify_total\{zone="cluster\.local",result="acked"\} 2/);
  });
});
