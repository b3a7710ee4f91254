/**
 * The registry's state: stable addresses across reloads and restarts, deletes release,
 * deterministic conflict winners, NodePorts, updates, the state file format, corrupt
 * and unreadable files, a state directory that cannot be written (and recovery), and
 * the repair pass (leaks freed after 3 passes, missing bits, CIDR changes, duplicates).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Range } from '../../src/ipam/range.js';
import { PortAllocator } from '../../src/ipam/portallocator.js';
import { type StateFs, nodeStateFs } from '../../src/registry/state.js';
import { ZONE, docs, harness, svc, tempDir } from './_harness.js';

const V4 = { serviceCIDRs: ['10.96.0.0/12'] };
const DUAL = { serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'] };

interface StateDoc {
  format: string;
  generation: number;
  ranges: Array<{ family: string; range: string; data: string }>;
  nodePorts: { range: string; data: string };
  services: Record<string, { clusterIPs: string[]; ports: Array<{ nodePort?: number }>; request: string }>;
}

function readState(path: string): StateDoc {
  return JSON.parse(readFileSync(path, 'utf8')) as StateDoc;
}

function bitmapHas(doc: StateDoc, cidr: string, ip: string): boolean {
  const entry = doc.ranges.find((r) => r.range === cidr);
  const r = Range.fromSnapshot({ range: cidr, data: new Uint8Array(Buffer.from(entry?.data ?? '', 'base64')) });
  return r.has(ip);
}

const many = (n: number, spec: Record<string, unknown> = {}) => Array.from({ length: n }, (_, i) => svc(`s${i}`, spec));

t.test('the same Service keeps the same IPs across reloads and restarts', async (t) => {
  let h = await harness(t, { 'a.yaml': docs(...many(20)), 'dual.yaml': docs(svc('d', { ipFamilyPolicy: 'PreferDualStack' })) }, { config: DUAL });
  const before = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`s${i}`, h.ips(`default/s${i}`)]));
  for (const ips of Object.values(before)) {
    t.equal(ips?.length, 1);
    t.ok(ips?.[0]?.startsWith('10.'), 'primary family only for a plain Service');
  }
  const dual = h.ips('default/d');
  t.equal(dual?.length, 2, 'PreferDualStack on a dual-stack registry: both families');
  t.match(dual?.[1], /^fd00:10:96::/);
  t.equal(new Set(Object.values(before).map((v) => v?.[0])).size, 20, 'all distinct');
  // Reloads: other files change, the files themselves are rewritten unchanged.
  for (let i = 0; i < 3; i++) {
    h.write(`other-${i}.yaml`, docs(svc(`o${i}`)));
    h.write('a.yaml', docs(...many(20)));
    await h.reload();
  }
  for (const [name, ips] of Object.entries(before)) t.same(h.ips(`default/${name}`), ips, `${name} unchanged by reloads`);
  const gen = readState(h.statePath).generation;
  h.write('a.yaml', docs(...many(20)));
  await h.reload();
  t.equal(readState(h.statePath).generation, gen, 'an unchanged reload writes nothing');
  h = await h.restart();
  for (const [name, ips] of Object.entries(before)) t.same(h.ips(`default/${name}`), ips, `${name} unchanged by a restart`);
  t.same(h.ips('default/d'), dual);
  // Omitting a field that changes nothing about addresses (labels, ports' targetPort) keeps them too.
  h.write('a.yaml', docs(...Array.from({ length: 20 }, (_, i) => svc(`s${i}`, { ports: [{ name: 'http', port: 80, targetPort: 8080 }] }, 'default', { v: '2' }))));
  await h.reload();
  for (const [name, ips] of Object.entries(before)) t.same(h.ips(`default/${name}`), ips);
});

t.test('state file format', async (t) => {
  const h = await harness(t, { 'a.yaml': docs(svc('api', { clusterIP: '10.96.0.1' }), svc('np', { type: 'NodePort' })) }, { config: V4 });
  const doc = readState(h.statePath);
  t.equal(doc.format, 'clusterdns.allocations/v1');
  t.match(doc, { zone: ZONE, serviceCIDRs: ['10.96.0.0/12'], nodePortRange: '30000-32767', generation: 1 });
  t.same(Object.keys(doc.services), ['default/api', 'default/np']);
  t.match(doc.services['default/api'], { type: 'ClusterIP', clusterIPs: ['10.96.0.1'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', request: /^sha256:[0-9a-f]{32}$/ });
  t.ok(bitmapHas(doc, '10.96.0.0/12', '10.96.0.1'), 'the bitmap holds the IP too');
  const np = doc.services['default/np']?.ports[0]?.nodePort ?? 0;
  t.ok(np >= 30086 && np <= 32767, 'a dynamic NodePort from the upper band');
  const pa = PortAllocator.fromSnapshot(doc.nodePorts);
  t.ok(pa.has(np), 'NodePort bitmap persisted');
  t.same(
    readdirSync(join(h.stateDir, ZONE)),
    ['allocations.json'],
    'no temp file left behind',
  );
});

t.test('deleting a Service releases its IPs and NodePorts', async (t) => {
  const h = await harness(t, { 'a.yaml': docs(svc('keep')), 'b.yaml': docs(svc('gone', { type: 'NodePort', clusterIP: '10.96.0.77' })) }, { config: V4 });
  const np = h.service('default/gone')?.ports[0]?.nodePort;
  t.ok(np);
  h.remove('b.yaml');
  await h.reload();
  t.equal(h.service('default/gone'), undefined);
  const doc = readState(h.statePath);
  t.notOk('default/gone' in doc.services);
  t.notOk(bitmapHas(doc, '10.96.0.0/12', '10.96.0.77'), 'IP released');
  t.notOk(PortAllocator.fromSnapshot(doc.nodePorts).has(np ?? 0), 'NodePort released');
  h.write('c.yaml', docs(svc('new', { type: 'NodePort', clusterIP: '10.96.0.77', ports: [{ port: 80, nodePort: np }] })));
  await h.reload();
  t.same(h.ips('default/new'), ['10.96.0.77'], 'the IP can be had again');
  t.equal(h.service('default/new')?.ports[0]?.nodePort, np, 'and the NodePort');
});

t.test('a Service that vanishes for a while (its file moved elsewhere) gets its addresses back', async (t) => {
  let clock = Date.UTC(2026, 0, 1);
  const opts = { config: V4, registry: { now: () => clock } };
  let h = await harness(t, { 'a.yaml': docs(svc('web', { type: 'NodePort' })), 'b.yaml': docs(svc('other')) }, opts);
  const ip = h.ips('default/web');
  const np = h.service('default/web')?.ports[0]?.nodePort;
  h.remove('a.yaml');
  await h.reload();
  t.equal(h.service('default/web'), undefined, 'gone');
  const doc = readState(h.statePath) as StateDoc & { released: Record<string, { clusterIPs: string[]; nodePorts: Array<{ nodePort: number }>; at: string }> };
  t.notOk('default/web' in doc.services, 'released');
  t.notOk(bitmapHas(doc, '10.96.0.0/12', ip?.[0] ?? ''), 'the bitmap no longer holds it');
  t.match(doc.released['default/web'], { clusterIPs: ip, nodePorts: [{ nodePort: np }], at: '2026-01-01T00:00:00.000Z' }, 'remembered');
  // Random allocation steers clear of it meanwhile; a restart keeps the memory.
  h = await h.restart(opts);
  h.write('moved/web.yaml', docs(svc('web', { type: 'NodePort' })));
  await h.reload();
  t.same(h.ips('default/web'), ip, 'same IP');
  t.equal(h.service('default/web')?.ports[0]?.nodePort, np, 'same NodePort');
  t.notOk('default/web' in (readState(h.statePath) as unknown as { released: object }).released, 'forgotten once back');
  // A manifest may ask for a remembered address: it is free.
  h.remove('moved/web.yaml');
  await h.reload();
  h.write('c.yaml', docs(svc('taker', { clusterIP: ip?.[0] })));
  await h.reload();
  t.same(h.ips('default/taker'), ip);
  h.remove('c.yaml');
  await h.reload();
  // After an hour the memory is gone.
  clock += 61 * 60 * 1000;
  h.write('b.yaml', docs(svc('other', {}, 'default', { touched: 'yes' })));
  await h.reload();
  t.same(Object.keys((readState(h.statePath) as unknown as { released: object }).released), [], 'expired');
});

t.test('conflict winner: the stored holder, else the first by (file, document)', async (t) => {
  // No state: the first by path wins, whatever the order the files were written in.
  const h = await harness(t, {
    'z.yaml': docs(svc('zed', { clusterIP: '10.96.0.5' })),
    'a.yaml': docs(svc('filler'), svc('alpha2', { clusterIP: '10.96.0.6' })),
    'm.yaml': docs(svc('mid', { clusterIP: '10.96.0.6' }), svc('mid2', { clusterIP: '10.96.0.5' })),
  }, { config: V4 });
  t.same(h.ips('default/alpha2'), ['10.96.0.6'], 'a.yaml before m.yaml');
  t.equal(h.service('default/mid'), undefined);
  t.same(h.ips('default/mid2'), ['10.96.0.5'], 'm.yaml before z.yaml');
  t.equal(h.service('default/zed'), undefined);
  // Within one file: the earlier document.
  h.write('n.yaml', docs(svc('n1', { clusterIP: '10.96.0.9' }), svc('n2', { clusterIP: '10.96.0.9' })));
  await h.reload();
  t.same(h.ips('default/n1'), ['10.96.0.9']);
  t.equal(h.service('default/n2'), undefined);
  // A holder in the stored state keeps it against an earlier file, across restarts.
  h.write('0-early.yaml', docs(svc('early', { clusterIP: '10.96.0.6' })));
  await h.reload();
  t.equal(h.service('default/early'), undefined, 'alpha2 holds 10.96.0.6 already');
  const h2 = await h.restart();
  t.same(h2.ips('default/alpha2'), ['10.96.0.6']);
  t.equal(h2.service('default/early'), undefined, 'same winner after a restart');
  t.same(h2.ips('default/mid2'), ['10.96.0.5']);
  // A random allocation never takes an address a manifest asks for.
  const h3 = await harness(t, { 'a.yaml': docs(...many(3)), 'b.yaml': docs(svc('pinned', { clusterIP: '10.96.0.3' })) }, { config: { serviceCIDRs: ['10.96.0.0/29'] } });
  t.same(h3.ips('default/pinned'), ['10.96.0.3'], '/29 (6 usable): 3 random + 1 pinned, the pinned one always wins');
});

t.test('NodePorts: NodePort and LoadBalancer get one, same-number ports share it, persisted', async (t) => {
  let h = await harness(t, {
    'a.yaml': docs(
      svc('dns', { type: 'NodePort', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'm', port: 9153 }] }),
      svc('lb', { type: 'LoadBalancer' }),
      svc('fixed', { type: 'NodePort', ports: [{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 443 }] }),
      svc('plain'),
    ),
  }, { config: V4 });
  const dns = h.service('default/dns')?.ports.map((p) => p.nodePort) ?? [];
  t.equal(dns[0], dns[1], '53/UDP and 53/TCP share one nodePort');
  t.not(dns[2], dns[0]);
  t.ok(h.service('default/lb')?.ports[0]?.nodePort);
  t.equal(h.service('default/fixed')?.ports[0]?.nodePort, 30080);
  t.ok(h.service('default/fixed')?.ports[1]?.nodePort, '443 gets a dynamic one');
  t.equal(h.service('default/plain')?.ports[0]?.nodePort, undefined, 'ClusterIP: none');
  h = await h.restart();
  t.same(h.service('default/dns')?.ports.map((p) => p.nodePort), dns, 'same after a restart');
  // NodePort -> ClusterIP releases them.
  h.write('a.yaml', docs(svc('dns', { ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }, { name: 'm', port: 9153 }] })));
  await h.reload();
  t.same(h.service('default/dns')?.ports.map((p) => p.nodePort), [undefined, undefined, undefined]);
  const pa = PortAllocator.fromSnapshot(readState(h.statePath).nodePorts);
  t.notOk(pa.has(dns[0] ?? 0));
  t.equal(pa.used(), 0, 'lb and fixed were deleted with a.yaml\'s rewrite; nothing left');
});

t.test('updates: omitted IPs kept, dual-stack upgrade/downgrade, headless and explicit changes', async (t) => {
  const h = await harness(t, { 'a.yaml': docs(svc('a', { clusterIP: '10.96.0.40' })) }, { config: DUAL });
  h.write('a.yaml', docs(svc('a')));
  await h.reload();
  t.same(h.ips('default/a'), ['10.96.0.40'], 'clusterIP dropped from the manifest: kept (patchAllocatedValues)');
  h.write('a.yaml', docs(svc('a', { ipFamilyPolicy: 'PreferDualStack' })));
  await h.reload();
  const up = h.ips('default/a');
  t.equal(up?.[0], '10.96.0.40', 'upgrade keeps the primary');
  t.match(up?.[1], /^fd00:10:96::/, 'and adds an IPv6 address');
  h.write('a.yaml', docs(svc('a', { ipFamilyPolicy: 'SingleStack' })));
  await h.reload();
  t.same(h.ips('default/a'), ['10.96.0.40'], 'downgrade releases the secondary');
  t.notOk(bitmapHas(readState(h.statePath), 'fd00:10:96::/112', up?.[1] ?? ''));
  // A manifest naming only the primary (clusterIP, or ipFamilies [IPv4]) of a dual-stack
  // Service: edits keep the secondary (kubectl apply semantics), SingleStack drops it.
  h.write('b.yaml', docs(svc('b', { clusterIP: '10.96.0.42', ipFamilyPolicy: 'PreferDualStack' }), svc('c', { ipFamilies: ['IPv4'], ipFamilyPolicy: 'PreferDualStack' })));
  await h.reload();
  const b = h.ips('default/b');
  const c = h.ips('default/c');
  t.equal(b?.length, 2);
  t.equal(c?.length, 2);
  for (let rev = 0; rev < 3; rev++) {
    h.write('b.yaml', docs(svc('b', { clusterIP: '10.96.0.42', ipFamilyPolicy: 'PreferDualStack', ports: [{ name: 'http', port: 81 + rev }] }), svc('c', { ipFamilies: ['IPv4'], ipFamilyPolicy: 'PreferDualStack', type: rev === 1 ? 'NodePort' : 'ClusterIP' })));
    await h.reload();
    t.same(h.ips('default/b'), b, `edit ${rev}: b keeps its IPv6 address`);
    t.same(h.ips('default/c'), c, `edit ${rev}: c keeps its IPv6 address`);
  }
  h.write('b.yaml', docs(svc('b', { clusterIP: '10.96.0.42', ipFamilyPolicy: 'SingleStack' })));
  await h.reload();
  t.same(h.ips('default/b'), ['10.96.0.42'], 'SingleStack: the secondary is released');
  h.write('a.yaml', docs(svc('a', { clusterIP: 'None' })));
  await h.reload();
  t.equal(h.service('default/a')?.headless, true, 'to headless: a new Service (delete + create)');
  t.notOk(bitmapHas(readState(h.statePath), '10.96.0.0/12', '10.96.0.40'));
  h.write('a.yaml', docs(svc('a')));
  await h.reload();
  t.equal(h.service('default/a')?.headless, false, 'headless dropped: gets a virtual IP');
  t.equal(h.ips('default/a')?.length, 1);
  h.write('a.yaml', docs(svc('a', { clusterIP: '10.96.0.41' })));
  await h.reload();
  t.same(h.ips('default/a'), ['10.96.0.41'], 'a new explicit clusterIP is honoured (delete + create)');
  h.write('a.yaml', docs(svc('a', { type: 'ExternalName', externalName: 'x.example.com' })));
  await h.reload();
  t.same(h.ips('default/a'), [], 'to ExternalName: no IPs');
  t.notOk(bitmapHas(readState(h.statePath), '10.96.0.0/12', '10.96.0.41'), 'released');
});

t.test('a corrupt state file is renamed aside, reported and rebuilt from the manifests', async (t) => {
  let h = await harness(t, { 'a.yaml': docs(svc('fixed', { clusterIP: '10.96.0.30' }), svc('dyn')) }, { config: V4 });
  const dynBefore = h.ips('default/dyn');
  await h.stop();
  writeFileSync(h.statePath, '{"format": "clusterdns.allocations/v1", "generation": 3, "ranges": [');
  h = await h.restart();
  t.same(h.ips('default/fixed'), ['10.96.0.30'], 'explicit clusterIP kept');
  t.equal(h.ips('default/dyn')?.length, 1, 'the others get an address again');
  t.ok(dynBefore);
  const files = readdirSync(join(h.stateDir, ZONE)).sort();
  t.equal(files.length, 2);
  t.match(files[1], /^allocations\.json\.corrupt-\d{8}T\d{6}Z$/, 'renamed aside, not deleted');
  t.equal(readFileSync(join(h.stateDir, ZONE, files[1] ?? ''), 'utf8').slice(0, 20), '{"format": "clusterd', 'content kept');
  t.equal(readState(h.statePath).format, 'clusterdns.allocations/v1', 'a good file again');
  const [a] = h.registry.zone(ZONE).anomalies().filter((x) => x.kind === 'state');
  t.match(a?.message, /^state file corrupt: not JSON: .*; renamed to .*allocations\.json\.corrupt-\d{8}T\d{6}Z and rebuilt from the manifests/);
  t.ok(h.logs.some((l) => l.level === 'error' && l.msg === 'registry state problem'), 'logged');

  // Valid JSON, wrong content: also corrupt.
  await h.stop();
  const doc = readState(h.statePath);
  (doc.services['default/fixed'] as { clusterIPs: string[] }).clusterIPs = ['10.96.0.300'];
  writeFileSync(h.statePath, JSON.stringify(doc));
  h = await h.restart();
  t.match(h.registry.zone(ZONE).anomalies().find((x) => x.kind === 'state')?.message, /state file corrupt: services\["default\/fixed"\]\.clusterIPs\[0\]: not a canonical IP: "10\.96\.0\.300"/);
  t.same(h.ips('default/fixed'), ['10.96.0.30']);
});

t.test('an unreadable state file (a directory in its place) is moved aside and rebuilt', async (t) => {
  const root = tempDir(t);
  const stateDir = join(root, 'state');
  mkdirSync(join(stateDir, ZONE, 'allocations.json'), { recursive: true });
  const h = await harness(t, { 'a.yaml': docs(svc('fixed', { clusterIP: '10.96.0.31' }), svc('dyn')) }, { config: V4, stateDir });
  t.same(h.ips('default/fixed'), ['10.96.0.31']);
  t.equal(h.ips('default/dyn')?.length, 1);
  t.match(h.registry.zone(ZONE).anomalies().find((x) => x.kind === 'state')?.message, /^state file unreadable: EISDIR/);
  t.equal(readState(h.statePath).format, 'clusterdns.allocations/v1');
});

/** A StateFs whose writes fail with `code` while `failing` is set (disk full, read-only FS). */
function failingFs(code: string): StateFs & { failing: boolean } {
  const fs = {
    ...nodeStateFs,
    failing: false,
    writeDurable(path: string, data: string): void {
      if (fs.failing) {
        const err = new Error(`${code}: injected failure, write '${path}'`) as NodeJS.ErrnoException;
        err.code = code;
        throw err;
      }
      nodeStateFs.writeDurable(path, data);
    },
  };
  return fs;
}

t.test('state cannot be written (injected ENOSPC): stored and explicit addresses serve, random ones wait, recovery', async (t) => {
  const fs = failingFs('ENOSPC');
  let h = await harness(t, { 'a.yaml': docs(svc('stored')), 'b.yaml': docs(svc('np', { type: 'NodePort', clusterIP: '10.96.0.20' })) }, { config: V4, registry: { fs } });
  const stored = h.ips('default/stored');
  const gen = readState(h.statePath).generation;
  fs.failing = true;
  h.write('c.yaml', docs(svc('fresh'), svc('explicit', { clusterIP: '10.96.0.21' }), svc('headless', { clusterIP: 'None' }), svc('ext', { type: 'ExternalName', externalName: 'a.example.com' })));
  // A change to a stored Service that needs a new random NodePort: keeps its stored allocation.
  h.write('b.yaml', docs(svc('np', { type: 'NodePort', clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80 }, { name: 'x', port: 81 }] })));
  h.write('a.yaml', docs(svc('stored', {}, 'default', { changed: 'yes' })));
  await h.reload();
  const z = h.registry.zone(ZONE);
  t.equal(z.persistenceOk, false);
  t.same(h.ips('default/stored'), stored, 'stored allocation keeps serving');
  t.equal(h.service('default/stored')?.labels['changed'], 'yes', 'with the new manifest');
  t.same(h.ips('default/explicit'), ['10.96.0.21'], 'explicit clusterIP: deterministic, served');
  t.equal(h.service('default/headless')?.headless, true);
  t.equal(h.service('default/ext')?.externalName, 'a.example.com');
  t.equal(h.service('default/fresh'), undefined, 'needs a random IP: not served');
  t.same(h.ips('default/np'), ['10.96.0.20']);
  t.equal(h.service('default/np')?.ports.length, 1, 'the stored version of np keeps serving');
  const pending = z.anomalies().filter((a) => a.kind === 'pending-service');
  t.same(pending.map((a) => `${a.name}:${a.severity}`).sort(), ['fresh:error', 'np:warning']);
  t.match(pending.find((a) => a.name === 'fresh')?.message, /needs a new random allocation, not made because the state file cannot be written \(ENOSPC: injected failure/);
  t.match(z.status().persistence, { ok: false, error: /ENOSPC/ });
  t.equal(z.status().anomalies.state, 1);
  t.equal(readState(h.statePath).generation, gen, 'the file still holds the last good state');
  t.equal(h.logs.filter((l) => l.msg.startsWith('cannot write the registry state')).length, 1, 'logged once');
  await h.reload();
  t.equal(h.logs.filter((l) => l.msg.startsWith('cannot write the registry state')).length, 1, 'still once');

  // A restart while still failing: the same answers (they are recomputed from the same inputs).
  h = await h.restart();
  t.same(h.ips('default/stored'), stored);
  t.same(h.ips('default/explicit'), ['10.96.0.21']);
  t.equal(h.service('default/fresh'), undefined);

  // Recovery: the retry timer writes the pending allocations and announces the zone.
  const recovered: string[] = [];
  h.registry.onRecovered((zone) => recovered.push(zone));
  t.same(h.registry.retryNow(), [], 'still failing');
  fs.failing = false;
  t.same(h.registry.retryNow(), [ZONE]);
  t.same(recovered, [ZONE]);
  const doc = readState(h.statePath);
  t.ok(doc.services['default/fresh'], 'written before it is served');
  t.equal(doc.services['default/np']?.ports.length, 2);
  h.write('a.yaml', docs(svc('stored', {}, 'default', { changed: 'again' })));
  await h.reload();
  t.same(h.ips('default/fresh'), doc.services['default/fresh']?.clusterIPs, 'served with the written address');
  t.equal(h.service('default/np')?.ports.length, 2);
  t.equal(h.registry.zone(ZONE).persistenceOk, true);
  t.ok(h.logs.some((l) => l.msg === 'registry state written again; allocations resume'));
});

t.test('state directory under a regular file (ENOTDIR, works as root): reported, explicit ones serve, recovers', async (t) => {
  // Tests run as root, where chmod 0555 does not stop writes; a path whose parent is a
  // regular file fails for root too (mkdir/open: ENOTDIR), with no mount tricks.
  const root = tempDir(t);
  const blocker = join(root, 'blocker');
  writeFileSync(blocker, 'not a directory\n');
  const stateDir = join(blocker, 'state');
  const h = await harness(t, { 'a.yaml': docs(svc('explicit', { clusterIP: '10.96.0.22' }), svc('fresh')) }, { config: V4, stateDir });
  t.same(h.ips('default/explicit'), ['10.96.0.22']);
  t.equal(h.service('default/fresh'), undefined);
  const z = h.registry.zone(ZONE);
  t.match(z.status().persistence, { ok: false, error: /ENOTDIR/ });
  t.match(z.anomalies().find((a) => a.kind === 'state')?.message, /cannot (read|write) the state file: .*ENOTDIR/);
  rmSync(blocker);
  t.same(h.registry.retryNow(), [ZONE]);
  t.ok(existsSync(h.statePath));
  h.write('b.yaml', docs(svc('other')));
  await h.reload();
  t.equal(h.ips('default/fresh')?.length, 1, 'served once it could be written');
  t.same(h.ips('default/fresh'), readState(h.statePath).services['default/fresh']?.clusterIPs);
});

t.test('repair: a leaked IP is freed on the 3rd pass; a missing bit is repaired', async (t) => {
  let h = await harness(t, { 'a.yaml': docs(svc('a', { clusterIP: '10.96.0.11' }), svc('b', { clusterIP: '10.96.0.12' })) }, { config: V4 });
  await h.stop();
  // Hand-edit the bitmap: 10.96.0.13 held by nobody (a leak), 10.96.0.12 missing.
  const doc = readState(h.statePath);
  const r = new Range('10.96.0.0/12');
  r.allocate('10.96.0.11');
  r.allocate('10.96.0.13');
  (doc.ranges[0] as { data: string }).data = Buffer.from(r.snapshot().data).toString('base64');
  writeFileSync(h.statePath, JSON.stringify(doc));
  h = await h.restart();
  const z = h.registry.zone(ZONE);
  const first = z.lastRepair();
  t.same(
    first?.anomalies.map((a) => `${a.reason} ${a.ip} ${a.message}`),
    [
      'ClusterIPNotAllocated 10.96.0.12 Cluster IP [IPv4]:10.96.0.12 is not allocated; repairing',
      'ClusterIPLeaked 10.96.0.13 the cluster IP 10.96.0.13 may have leaked: flagging for later clean up',
    ],
    'startup pass',
  );
  t.ok(bitmapHas(readState(h.statePath), '10.96.0.0/12', '10.96.0.12'), 'missing bit set again and written');
  t.ok(bitmapHas(readState(h.statePath), '10.96.0.0/12', '10.96.0.13'), 'suspected leak kept for now');
  h.write('c.yaml', docs(svc('c', { clusterIP: '10.96.0.13' })));
  await h.reload();
  t.equal(h.service('default/c'), undefined, 'a suspected leak is still taken');
  h.remove('c.yaml');
  await h.reload();
  const second = z.repairNow();
  t.same(second.anomalies.map((a) => a.reason), ['ClusterIPLeaked']);
  t.match(second.ips.anomalies[0], { kind: 'leak-suspected', passes: 2 });
  const third = z.repairNow();
  t.match(third.ips.anomalies[0], { kind: 'leak-cleaned', passes: 3, message: 'the cluster IP 10.96.0.13 appears to have leaked: cleaning up' });
  t.notOk(bitmapHas(readState(h.statePath), '10.96.0.0/12', '10.96.0.13'), 'freed on the 3rd pass, and written');
  t.equal(z.lastRepair(), third, 'the last report is exposed');
  t.same(z.repairNow().anomalies, [], 'clean');
  h.write('c.yaml', docs(svc('c', { clusterIP: '10.96.0.13' })));
  await h.reload();
  t.same(h.ips('default/c'), ['10.96.0.13'], 'free again');
});

t.test('repair: a leaked NodePort is freed on the 3rd pass', async (t) => {
  let h = await harness(t, { 'a.yaml': docs(svc('a')) }, { config: V4 });
  await h.stop();
  const doc = readState(h.statePath);
  const pa = new PortAllocator('30000-32767');
  pa.allocate(31000);
  doc.nodePorts = pa.snapshotJSON();
  writeFileSync(h.statePath, JSON.stringify(doc));
  h = await h.restart();
  const z = h.registry.zone(ZONE);
  t.same(z.lastRepair()?.ports.map((p) => `${p.reason} ${p.port} ${p.passes}`), ['PortLeaked 31000 1']);
  z.repairNow();
  const third = z.repairNow();
  t.match(third.ports[0], { reason: 'PortLeaked', port: 31000, cleaned: true, message: 'the node port 31000 appears to have leaked: cleaning up' });
  t.notOk(PortAllocator.fromSnapshot(readState(h.statePath).nodePorts).has(31000));
});

t.test('repair: IPs outside a changed service CIDR keep serving and are reported', async (t) => {
  // Both addresses fixed outside the new CIDR: an allocated one would land inside
  // 10.100.0.0/16 (part of 10.96.0.0/12) one time in 16 and make this test flaky.
  let h = await harness(t, { 'a.yaml': docs(svc('old', { clusterIP: '10.96.0.14' }), svc('dyn', { clusterIP: '10.97.3.4' })) }, { config: V4 });
  h = await h.restart({ config: { serviceCIDRs: ['10.100.0.0/16'] } });
  t.same(h.ips('default/old'), ['10.96.0.14'], 'existing Services keep their IPs (upstream)');
  const z = h.registry.zone(ZONE);
  t.ok(
    z.anomalies().some((a) => a.kind === 'state' && a.message.startsWith('service CIDR 10.96.0.0/12 changed to 10.100.0.0/16')),
    'the change is reported',
  );
  const out = z.lastRepair()?.anomalies.filter((a) => a.reason === 'ClusterIPOutOfRange') ?? [];
  t.equal(out.length, 2);
  t.match(out[0]?.message, /^Cluster IP \[IPv4\]:10\.\d+\.\d+\.\d+ is not within the service CIDR 10\.100\.0\.0\/16; please recreate service$/);
  h.write('b.yaml', docs(svc('new')));
  await h.reload();
  t.match(h.ips('default/new')?.[0], /^10\.100\./, 'new Services come from the new CIDR');
});

t.test('repair: two stored Services with one IP (a hand-merged file) are reported; the first by name keeps it', async (t) => {
  let h = await harness(t, { 'a.yaml': docs(svc('aa', { clusterIP: '10.96.0.15' }), svc('bb')) }, { config: V4 });
  await h.stop();
  const doc = readState(h.statePath);
  (doc.services['default/bb'] as { clusterIPs: string[] }).clusterIPs = ['10.96.0.15'];
  writeFileSync(h.statePath, JSON.stringify(doc));
  h = await h.restart();
  const z = h.registry.zone(ZONE);
  t.ok(z.lastRepair()?.anomalies.some((a) => a.reason === 'ClusterIPAlreadyAllocated' && a.name === 'bb'), 'the repair reports the duplicate');
  t.ok(z.anomalies().some((a) => a.kind === 'state' && /stored Service default\/bb shares a cluster IP/.test(a.message)));
  t.same(h.ips('default/aa'), ['10.96.0.15']);
  const bb = h.ips('default/bb');
  t.equal(bb?.length, 1);
  t.not(bb?.[0], '10.96.0.15', 'bb gets another address: never two Services on one IP');
});

t.test('temp files of dead processes are removed at load', async (t) => {
  const root = tempDir(t);
  const stateDir = join(root, 'state');
  mkdirSync(join(stateDir, ZONE), { recursive: true });
  const stale = join(stateDir, ZONE, 'allocations.json.tmp-999999999');
  writeFileSync(stale, 'half');
  const h = await harness(t, { 'a.yaml': docs(svc('a')) }, { config: V4, stateDir });
  t.notOk(existsSync(stale));
  t.ok(existsSync(h.statePath));
});
