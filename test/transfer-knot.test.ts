/**
 * Zone transfer to a real secondary: Knot DNS (knotd) configured as README "Zone
 * transfer to a secondary" shows, transferring cluster.local from clusterdns (a DnsNode
 * wired as app.ts wires it in one process: transfer, NOTIFY). Checked with dig against
 * both servers.
 */
import t from 'tap';
import * as dnsPacket from 'dns-packet';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyZones, requireTool, startCli } from './helpers/cli.js';
import { fixtureStore, svc, port as svcPort } from './helpers/cluster.js';
import { decode, makeQuery, udpExchange } from './helpers/dns.js';
import { freePort, startKnotSecondary } from './helpers/knot.js';
import { bulkServices, digLarge, oneZone, serveNode, transfer, xfrQuery, Z } from './helpers/transfer.js';

/** The records of a dig AXFR, whitespace normalised, sorted (the SOA twice). */
function records(out: string): string[] {
  return out
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith(';'))
    .map((l) => l.trim().split(/\s+/).join(' '))
    .sort();
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms: number): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  for (;;) {
    const v = await f();
    if (v !== undefined) return { value: v, ms: performance.now() - t0 };
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('Knot as a secondary of clusterdns', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const store = fixtureStore();
  const knotPort = await freePort();
  const startedAt = performance.now();
  const { node, port } = await serveNode(t, oneZone(store), { transfer: ['127.0.0.1/32'], transferNotify: [`127.0.0.1:${knotPort}`] });
  const zone = node.zones()[0]!;
  const knot = await startKnotSecondary(t, { zone: Z, primary: { host: '127.0.0.1', port }, port: knotPort });
  if (knot === undefined) return;
  t.test('Knot transferred the zone: same serial, same records as dig sees from us', async (t) => {
    const { value: serial } = await until('Knot has our serial', async () => ((await knotSerial(knot.port)) === zone.serial ? zone.serial : undefined), 5000);
    t.equal(serial, zone.serial);
    const ours = records(await digLarge(port, ['+nocmd', Z, 'AXFR']));
    const theirs = records(await digLarge(knot.port, ['+nocmd', Z, 'AXFR']));
    t.ok(ours.length > 60, `${ours.length} records`);
    t.same(theirs, ours, 'dig AXFR from Knot and from clusterdns: the same record set');
    t.equal(decode(await udpExchange(knot.port, makeQuery(`_http._tcp.hdls1.testns.svc.${Z}`, 'SRV'))).answer.length, 4, 'Knot answers our SRV names');
  });

  t.test('a new Service: Knot answers it within a second (NOTIFY)', async (t) => {
    // NOTIFYs go at most once a second per zone; the one at start must be a second old.
    const wait = 1100 - (performance.now() - startedAt);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const name = `fresh.testns.svc.${Z}`;
    t.equal(decode(await udpExchange(knot.port, makeQuery(name, 'A'))).rcode, 'NXDOMAIN', 'not there before');
    store.upsert({ kind: 'Service', obj: svc('testns', 'fresh', { clusterIPs: ['10.0.0.123'], ports: [svcPort('http', 80)] }) });
    store.flush();
    const { value, ms } = await until(
      'Knot answers the new name',
      async () => {
        const r = decode(await udpExchange(knot.port, makeQuery(name, 'A')));
        return r.rcode === 'NOERROR' && r.answer.length > 0 ? r.answer : undefined;
      },
      3000,
    );
    t.same(value, [`${name}. 5 IN A 10.0.0.123`]);
    t.ok(ms < 1000, `within a second of the change: ${Math.round(ms)} ms`);
    t.equal(await knotSerial(knot.port), zone.serial, 'at our new serial');
    t.match(knot.log(), /NOTIFY/i, 'Knot logged our NOTIFY');
    if (process.env.CLUSTERDNS_KNOT_LOG === '1') t.comment(knot.log());
  });

  t.test('who may transfer: 127.0.0.1 only', async (t) => {
    const out = await digLarge(port, ['+nocmd', Z, 'AXFR'], '127.0.0.2');
    t.match(out, /Transfer failed/, 'dig from 127.0.0.2: the transfer fails');
    t.equal((await transfer(port, Z, { localAddress: '127.0.0.2' })).rcode, 5, 'REFUSED');
    t.equal(decode(await udpExchange(port, xfrQuery(Z, 'AXFR'))).rcode, 'REFUSED', 'UDP AXFR: REFUSED');
  });

  t.test('IXFR with the current serial: the SOA alone', async (t) => {
    const out = await digLarge(port, ['+nocmd', Z, `IXFR=${zone.serial}`]);
    const recs = records(out);
    t.equal(recs.length, 1, 'one record');
    t.match(recs[0], new RegExp(`^${Z.replace('.', '\\.')}\\. 5 IN SOA .* ${zone.serial} 7200 1800 86400 5$`));
    t.match(out, /XFR size: 1 records \(messages 1/);
    const older = records(await digLarge(port, ['+nocmd', Z, `IXFR=${zone.serial - 1}`]));
    t.ok(older.length > 60, 'an older serial: the whole zone');
  });

  t.test('a large zone: 5,000 more services reach Knot whole', async (t) => {
    // After the last NOTIFY's second, so this change is announced at once.
    await new Promise((r) => setTimeout(r, 1100));
    bulkServices(store, 5000);
    await until('Knot has our serial', async () => ((await knotSerial(knot.port)) === zone.serial ? true : undefined), 10_000);
    const ours = await digLarge(port, ['+nocmd', Z, 'AXFR']);
    const m = /XFR size: (\d+) records \(messages (\d+)/.exec(ours);
    t.ok(Number(m?.[2]) > 10, `clusterdns sent ${m?.[1]} records in ${m?.[2]} messages`);
    const theirs = records(await digLarge(knot.port, ['+nocmd', Z, 'AXFR']));
    t.equal(theirs.length, Number(m?.[1]), 'Knot holds every record');
    t.same(theirs, records(ours), 'the same record set');
    t.equal(decode(await udpExchange(knot.port, makeQuery(`svc-4321.bulk.svc.${Z}`, 'A'))).answer.length, 1);
  });
});

/** The SOA serial Knot serves now (undefined: no SOA). */
async function knotSerial(port: number): Promise<number | undefined> {
  const raw = await udpExchange(port, makeQuery(Z, 'SOA'), '127.0.0.1', 500).catch(() => undefined);
  if (raw === undefined) return undefined;
  const p = dnsPacket.decode(raw);
  const soa = p.answers?.find((a) => a.type === 'SOA') as { data: { serial: number } } | undefined;
  return soa?.data.serial;
}

for (const workers of [1, 2]) {
  t.test(`clusterdns serve${workers > 1 ? ` --workers ${workers}` : ''} as Knot's primary, fed by zones/`, async (t) => {
    if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
    const zones = copyZones(t);
    const knotPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'clusterdns-xfr-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'clusterdns.yaml');
    writeFileSync(config, `transfer: [127.0.0.1/32]\ntransferNotify: ["127.0.0.1:${knotPort}"]\n`);
    const args = ['--config', config, '--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--no-upstream', '--log-level', 'warn'];
    const cli = await startCli(t, workers > 1 ? [...args, '--workers', String(workers)] : args);
    const knot = await startKnotSecondary(t, { zone: Z, primary: { host: '127.0.0.1', port: cli.port }, port: knotPort });
    if (knot === undefined) return;
    const ours = records(await digLarge(cli.port, ['+nocmd', Z, 'AXFR']));
    t.ok(ours.length > 20, `${ours.length} records of the example`);
    t.same(records(await digLarge(knot.port, ['+nocmd', Z, 'AXFR'])), ours, 'Knot holds what we serve');
    // An edit of zones/: the source sees it within a second, the NOTIFY follows.
    await new Promise((r) => setTimeout(r, 1100));
    writeFileSync(
      join(zones, 'cluster.local', 'shop', 'xfr-extra.yaml'),
      'apiVersion: v1\nkind: Service\nmetadata: {name: xfr-extra, namespace: shop}\nspec: {clusterIP: 10.96.10.99, ports: [{name: http, port: 80}]}\n',
    );
    const { ms } = await until(
      'Knot answers the new service',
      async () => (decode(await udpExchange(knot.port, makeQuery(`xfr-extra.shop.svc.${Z}`, 'A'))).answer.length > 0 ? true : undefined),
      5000,
    );
    t.ok(ms < 3000, `Knot answers the new service ${Math.round(ms)} ms after the file was written`);
    t.same(records(await digLarge(knot.port, ['+nocmd', Z, 'AXFR'])), records(await digLarge(cli.port, ['+nocmd', Z, 'AXFR'])), 'and holds the same zone again');
    const metrics = await (await fetch(`http://127.0.0.1:${cli.httpPort}/metrics`)).text();
    t.match(metrics, /clusterdns_zone_transfers_total\{[^}]*result="served"\} [1-9]/, 'transfers counted');
    t.match(metrics, /clusterdns_notify_total\{zone="cluster\.local",result="acked"\} [1-9]/, 'NOTIFYs acknowledged');
    t.equal((metrics.match(/^# TYPE clusterdns_notify_total /gm) ?? []).length, 1, 'one notify metric');
  });
}
