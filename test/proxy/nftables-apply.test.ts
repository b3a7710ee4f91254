/**
 * NftablesBackend (src/proxy/nftables-backend.ts) against a real kernel, inside a fresh
 * network namespace (root only): preflight, a full sync whose maps hold the view's
 * elements, partial syncs adding and removing an endpoint and a Service (one `nft -f`
 * each, O(changes), stale chains and affinity sets gone), a second full sync that
 * changes nothing (affinities kept), a failed sync that forces a listing-based full
 * sync, leftovers of a crashed run removed, the deferred stale deletion (kube-proxy's
 * for chains), a full sync split into concurrent transactions over shard tables, IPv6,
 * connections through the rules (one table and shards), and cleanup() leaving no table
 * (kube-proxy.md §3).
 */
import t, { type Test } from 'tap';
import { exec, type Exec } from '../../src/proxy/exec.js';
import { NftablesBackend, kernelBefore62 } from '../../src/proxy/nftables-backend.js';
import type { ProxyPort, RulesOptions } from '../../src/proxy/types.js';
import { ep, inNs, scratchNetns, svc } from './_fixtures.js';



const V4: RulesOptions = { family: 4, clusterCIDRs: ['10.0.0.0/8'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: ['172.30.0.0/16'] };
const V6: RulesOptions = { family: 6, clusterCIDRs: ['fd00:10::/64'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: ['fd00:172:30::/112'] };
const NONE = new Set<string>();

const svc1 = svc({ namespace: 'ns1', name: 'svc1', clusterIP: '172.30.0.41', nodePort: 30001, affinitySeconds: 10800, endpoints: [ep('10.180.0.1', 80), ep('10.180.0.2', 80)] });
const svc2 = svc({ namespace: 'ns2', name: 'svc2', clusterIP: '172.30.0.42', nodePort: 30002 });
const dns = svc({ namespace: 'kube-system', name: 'kube-dns', portName: 'dns', protocol: 'UDP', clusterIP: '172.30.0.10', port: 53, endpoints: [ep('10.180.0.10', 53), ep('10.180.0.9', 53)] });
const svc5 = svc({ namespace: 'ns5', name: 'svc5', clusterIP: '172.30.0.45', endpoints: [ep('10.180.0.6', 80)] });

const SVC1 = 'service-ULMVA6XW-ns1/svc1/tcp/p80';
const EP1 = 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80';
const EP2 = 'endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80';
const AFF2 = 'affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80';

const netns = (t: Test): string | undefined => scratchNetns(t, 'cdns-nfta', 'nft', 'nftables');


interface Call {
  readonly args: readonly string[];
  readonly input: string | undefined;
}

/** The default runner, inside `ns`, recording the nft calls. */
function nsExec(ns: string, calls: Call[] = []): Exec {
  return (cmd, args, input, timeoutMs) => {
    calls.push({ args: [cmd, ...args], input });
    return exec('ip', ['netns', 'exec', ns, cmd, ...args], input, timeoutMs);
  };
}

type Json = Record<string, unknown>;

/** `nft -j list ...` objects of one kind. */
function listJson(ns: string, args: string[], kind: string): Json[] {
  const doc = JSON.parse(inNs(ns, 'nft', ['-j', 'list', ...args])) as { nftables: Json[] };
  return doc.nftables.filter((o) => kind in o).map((o) => o[kind] as Json);
}

function chains(ns: string, family: 'ip' | 'ip6' = 'ip'): string[] {
  return listJson(ns, ['chains', family], 'chain')
    .filter((c) => c.table === 'clusterdns')
    .map((c) => c.name as string)
    .sort();
}

function sets(ns: string, family: 'ip' | 'ip6' = 'ip'): string[] {
  return listJson(ns, ['sets', family], 'set')
    .filter((s) => s.table === 'clusterdns')
    .map((s) => s.name as string)
    .sort();
}

/** Elements of a map or set as `key : verdict` text, sorted. */
function elements(ns: string, kind: 'map' | 'set', name: string, family: 'ip' | 'ip6' = 'ip'): string[] {
  const [obj] = listJson(ns, [kind, family, 'clusterdns', name], kind);
  const text = (k: unknown): string => {
    if (typeof k !== 'object' || k === null) return String(k);
    const v = (k as { elem?: { val: unknown } }).elem?.val ?? k;
    const c = typeof v === 'object' && v !== null ? (v as { concat?: unknown[] }).concat : undefined;
    return c !== undefined ? c.join(' . ') : String(v);
  };
  const verdict = (v: Json): string => {
    const g = v.goto as { target: string } | undefined;
    return g !== undefined ? `goto ${g.target}` : Object.keys(v)[0]!;
  };
  return ((obj?.elem ?? []) as unknown[])
    .map((e) => (Array.isArray(e) ? `${text(e[0])} : ${verdict(e[1] as Json)}` : text(e)))
    .sort();
}

function tables(ns: string): string {
  return inNs(ns, 'nft', ['list', 'tables']);
}

t.test('kernelBefore62 reads uname -r', async (t) => {
  t.ok(kernelBefore62('5.15.0-91-generic'));
  t.ok(kernelBefore62('6.1.0-18-amd64'));
  t.notOk(kernelBefore62('6.2.0'));
  t.notOk(kernelBefore62('6.18.44-fc-v1300'));
  t.notOk(kernelBefore62('7.0.1'));
});

t.test('preflight errors are one clear line', async (t) => {
  const fake = (version: string, check: { code: number; stderr: string }): Exec =>
    async (cmd, args) => (args[0] === '--version' ? { code: 0, stdout: version, stderr: '' } : { code: check.code, stdout: '', stderr: check.stderr });
  const ok = { code: 0, stderr: '' };
  await t.resolves(new NftablesBackend({ ...V4, exec: fake('nftables v1.0.6 (Lester Gooch #5)\n', ok) }).preflight());
  await t.rejects(new NftablesBackend({ ...V4, exec: fake('nftables v0.9.8 (E.D.S.)\n', ok) }).preflight(), { message: 'nftables mode needs nft ≥ 1.0.1; found 0.9.8' });
  await t.rejects(
    new NftablesBackend({ ...V4, exec: fake('nftables v1.0.6\n', { code: 1, stderr: '/dev/stdin:1:1-24: Error: Could not process rule: Operation not permitted\nadd table ip clusterdns\n' }) }).preflight(),
    { message: 'nftables mode: nft check failed: /dev/stdin:1:1-24: Error: Could not process rule: Operation not permitted (needs CAP_NET_ADMIN: run as root or grant the capability)' },
  );
  const missing: Exec = async (cmd) => ({ code: 127, stdout: '', stderr: `${cmd}: not found (install it, e.g. Debian package nftables)` });
  await t.rejects(new NftablesBackend({ ...V4, exec: missing }).preflight(), { message: 'nftables mode: nft: not found (install it, e.g. Debian package nftables)' });
});

t.test('preflight, full sync, partial syncs, idempotent full sync, cleanup (IPv4)', async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  const calls: Call[] = [];
  const b = new NftablesBackend({ ...V4, exec: nsExec(ns, calls), deferStaleChains: false });
  t.equal(b.mode, 'nftables');
  t.equal(b.family, 4);
  await b.preflight();
  t.equal(tables(ns), '', 'preflight only checks (nft -c): nothing installed');

  calls.length = 0;
  const first = await b.sync({ ports: [svc1, svc2, dns], changed: NONE, full: true });
  t.ok(first.rulesWritten > 20, `rules written: ${first.rulesWritten}`);
  t.ok(first.bytes > 1000);
  t.same(calls.map((c) => c.args.join(' ')), ['nft -j list chains ip', 'nft -t -j list sets ip', 'nft -f -'], 'state unknown: list chains and sets, then one transaction');
  t.same(elements(ns, 'map', 'service-ips'), [
    '172.30.0.10 . udp . 53 : goto service-FY5PMXPG-kube-system/kube-dns/udp/dns',
    `172.30.0.41 . tcp . 80 : goto ${SVC1}`,
  ]);
  t.same(elements(ns, 'map', 'service-nodeports'), ['tcp . 30001 : goto external-ULMVA6XW-ns1/svc1/tcp/p80']);
  t.same(elements(ns, 'map', 'no-endpoint-services'), ['172.30.0.42 . tcp . 80 : goto reject-chain']);
  t.same(elements(ns, 'map', 'no-endpoint-nodeports'), ['tcp . 30002 : goto reject-chain']);
  t.same(elements(ns, 'set', 'cluster-ips'), ['172.30.0.10', '172.30.0.41', '172.30.0.42']);
  t.ok(chains(ns).includes(EP2));
  t.ok(sets(ns).includes(AFF2));
  t.match(inNs(ns, 'nft', ['list', 'chain', 'ip', 'clusterdns', SVC1]), new RegExp(`numgen random mod 2 (== )?0 goto ${EP1}\\n\\s*goto ${EP2}\\n`));

  // Partial: a third endpoint for svc1.
  calls.length = 0;
  const svc1three = svc({ ...svc1, endpoints: [...svc1.endpoints, ep('10.180.0.3', 80)] });
  const grow = await b.sync({ ports: [svc1three, svc2, dns], changed: new Set(['ns1/svc1']), full: false });
  t.equal(calls.length, 1, 'one nft call');
  t.same(calls[0]?.args, ['nft', '-f', '-']);
  t.notMatch(calls[0]?.input ?? '', /add table|kube-dns|svc2/, 'only svc1 in the transaction');
  t.ok(grow.rulesWritten < first.rulesWritten);
  t.match(inNs(ns, 'nft', ['list', 'chain', 'ip', 'clusterdns', SVC1]), /numgen random mod 3 (== )?0 goto .*\n\s*numgen random mod 2 (== )?0 goto .*\n\s*goto endpoint-/);
  t.ok(chains(ns).includes('endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80'));

  // Partial: 10.180.0.2 leaves; its chain and affinity set are deleted in the same transaction.
  const svc1b = svc({ ...svc1, endpoints: [ep('10.180.0.1', 80), ep('10.180.0.3', 80)] });
  await b.sync({ ports: [svc1b, svc2, dns], changed: new Set(['ns1/svc1']), full: false });
  t.notOk(chains(ns).includes(EP2), 'stale endpoint chain gone');
  t.notOk(sets(ns).includes(AFF2), 'stale affinity set gone');
  t.ok(chains(ns).includes(EP1));

  // Partial: a Service added, another removed.
  await b.sync({ ports: [svc1b, svc2, svc5], changed: new Set(['ns5/svc5', 'kube-system/kube-dns']), full: false });
  t.same(elements(ns, 'map', 'service-ips'), [`172.30.0.41 . tcp . 80 : goto ${SVC1}`, '172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80']);
  t.same(elements(ns, 'set', 'cluster-ips'), ['172.30.0.41', '172.30.0.42', '172.30.0.45']);
  t.same(chains(ns).filter((c) => c.includes('kube-dns')), [], 'kube-dns chains gone');
  t.ok(chains(ns).includes('service-HVFWP5L3-ns5/svc5/tcp/p80'));

  // Partial: svc2 gets an endpoint (reject element replaced by a service-ips element).
  const svc2b = svc({ ...svc2, endpoints: [ep('10.180.0.22', 80)] });
  await b.sync({ ports: [svc1b, svc2b, svc5], changed: new Set(['ns2/svc2']), full: false });
  t.same(elements(ns, 'map', 'no-endpoint-services'), []);
  t.same(elements(ns, 'map', 'no-endpoint-nodeports'), []);
  t.same(elements(ns, 'map', 'service-nodeports'), ['tcp . 30001 : goto external-ULMVA6XW-ns1/svc1/tcp/p80', 'tcp . 30002 : goto external-42NFTM6N-ns2/svc2/tcp/p80']);

  // Nothing changed: no nft call at all.
  calls.length = 0;
  const idle = await b.sync({ ports: [svc1b, svc2b, svc5], changed: NONE, full: false });
  t.same(calls, []);
  t.equal(idle.rulesWritten, 0);

  // A second full sync leaves the same ruleset (and the affinity entries).
  const before = inNs(ns, 'nft', ['list', 'table', 'ip', 'clusterdns']);
  calls.length = 0;
  await b.sync({ ports: [svc1b, svc2b, svc5], changed: NONE, full: true });
  t.same(calls.map((c) => c.args.join(' ')), ['nft -f -'], 'state known: no listing');
  t.notMatch(calls[0]?.input ?? '', /delete chain ip clusterdns filter-input/, 'base chains are recreated only on the first full sync');
  t.equal(inNs(ns, 'nft', ['list', 'table', 'ip', 'clusterdns']), before, 'second full sync: same ruleset');
  inNs(ns, 'nft', ['add', 'element', 'ip', 'clusterdns', 'affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80', '{ 10.9.9.9 }']);
  await b.sync({ ports: [svc1b, svc2b, svc5], changed: NONE, full: true });
  t.same(elements(ns, 'set', 'affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80'), ['10.9.9.9'], 'a full sync keeps affinities');

  await b.cleanup();
  t.equal(tables(ns), '', 'cleanup: no table');
  t.equal(b.state, undefined);
  await b.cleanup();
  t.pass('cleanup with nothing installed resolves');
});

t.test('failed sync: rejects with nft\'s first line, next sync lists and goes full; leftovers of a crashed run removed', async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  const a = new NftablesBackend({ ...V4, exec: nsExec(ns), deferStaleChains: false });
  await a.sync({ ports: [svc1, dns], changed: NONE, full: true });
  // Someone removes our table behind our back: the partial sync cannot apply.
  inNs(ns, 'nft', ['delete', 'table', 'ip', 'clusterdns']);
  const svc1b = svc({ ...svc1, endpoints: [ep('10.180.0.1', 80)] });
  await t.rejects(a.sync({ ports: [svc1b, dns], changed: new Set(['ns1/svc1']), full: false }), /^nft: .*No such file or directory/);
  t.equal(a.state, undefined, 'state forgotten after a failure');
  // The runner retries full; the backend would also go full by itself.
  await a.sync({ ports: [svc1b, dns], changed: NONE, full: false });
  t.same(elements(ns, 'map', 'service-ips').length, 2, 'recovered');

  // A new process (a crashed run's table left behind) with a smaller view.
  const calls: Call[] = [];
  const b = new NftablesBackend({ ...V4, exec: nsExec(ns, calls), deferStaleChains: false });
  await b.sync({ ports: [svc5], changed: NONE, full: true });
  t.same(calls.map((c) => c.args.join(' ')).slice(0, 2), ['nft -j list chains ip', 'nft -t -j list sets ip']);
  t.same(chains(ns).filter((c) => c.includes('/')), ['endpoint-WLGLN4N3-ns5/svc5/tcp/p80__10.180.0.6/80', 'service-HVFWP5L3-ns5/svc5/tcp/p80'], 'only svc5 chains left');
  t.same(sets(ns).filter((s) => s.startsWith('affinity-')), [], 'leftover affinity sets deleted');
  t.same(elements(ns, 'set', 'cluster-ips'), ['172.30.0.45']);
  await b.cleanup();
  t.equal(tables(ns), '');
});

t.test('deferred stale deletion (the default; kube-proxy does it for chains on kernels < 6.2)', async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  const calls: Call[] = [];
  const b = new NftablesBackend({ ...V4, exec: nsExec(ns, calls), staleChainDelayMs: 0 });
  await b.sync({ ports: [svc1, svc5], changed: NONE, full: true });
  const svc1b = svc({ ...svc1, endpoints: [ep('10.180.0.1', 80)] });
  calls.length = 0;
  await b.sync({ ports: [svc1b, svc5], changed: new Set(['ns1/svc1']), full: false });
  t.equal(calls.length, 1, 'a sync with changes: its transaction only');
  t.notMatch(calls[0]?.input ?? '', /^delete /m, 'no deletion in it (nft would read every chain first)');
  t.ok(chains(ns).includes(EP2), 'stale chain still there');
  t.equal(inNs(ns, 'nft', ['list', 'chain', 'ip', 'clusterdns', EP2]).match(/dnat/g), null, 'but flushed');
  t.ok(sets(ns).includes(AFF2), 'stale affinity set still there');
  t.same(elements(ns, 'set', AFF2), [], 'but emptied at once (kube-proxy deletes it at once)');
  t.same([...(b.state?.staleChains ?? [])], [`clusterdns ${EP2}`]);
  calls.length = 0;
  await b.sync({ ports: [svc1b, svc5], changed: NONE, full: false });
  t.same(calls.map((c) => c.input), [`delete chain ip clusterdns ${EP2}\ndelete set ip clusterdns ${AFF2}\n`], 'a sync without changes: the deletion, in its own transaction');
  t.notOk(chains(ns).includes(EP2), 'stale chain deleted');
  t.notOk(sets(ns).includes(AFF2), 'stale set deleted');
  t.same([...(b.state?.staleChains ?? [])], []);
  await b.cleanup();

  // Not before the delay; after a sync with changes only once the oldest waited staleMaxAgeMs.
  const c = new NftablesBackend({ ...V4, exec: nsExec(ns, calls), staleChainDelayMs: 300, staleMaxAgeMs: 600 });
  await c.sync({ ports: [svc1, svc5], changed: NONE, full: true });
  await c.sync({ ports: [svc1b, svc5], changed: new Set(['ns1/svc1']), full: false });
  calls.length = 0;
  await c.sync({ ports: [svc1b, svc5], changed: NONE, full: false });
  t.same(calls, [], 'within the delay: nothing');
  await new Promise((r) => setTimeout(r, 350));
  const svc5b = svc({ ...svc5, endpoints: [ep('10.180.0.7', 80)] });
  await c.sync({ ports: [svc1b, svc5b], changed: new Set(['ns5/svc5']), full: false });
  t.ok(chains(ns).includes(EP2), 'due, but a sync with changes does not wait for it');
  await new Promise((r) => setTimeout(r, 300));
  calls.length = 0;
  const svc5c = svc({ ...svc5, endpoints: [ep('10.180.0.8', 80)] });
  await c.sync({ ports: [svc1b, svc5c], changed: new Set(['ns5/svc5']), full: false });
  t.equal(calls.length, 2, 'waited staleMaxAgeMs: the deletion after the sync\'s transaction');
  t.match(calls[1]?.input ?? '', /^delete chain ip clusterdns endpoint-/m);
  t.notOk(chains(ns).includes(EP2));
  t.equal(await c.deleteStale(), 1, 'deleteStale: the one not yet due (svc5\'s second endpoint chain)');
  await c.cleanup();
});

t.test('large view: a full sync split into concurrent transactions over shard tables; partial syncs touch one shard', async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  const calls: Call[] = [];
  const b = new NftablesBackend({ ...V4, exec: nsExec(ns, calls), chunkRules: 30, shardEndpoints: 10, applyConcurrency: 2, staleChainDelayMs: 0 });
  const many = Array.from({ length: 30 }, (_, i) => svc({ namespace: 'many', name: `s${i}`, clusterIP: `172.30.5.${i + 1}`, nodePort: 31000 + i, endpoints: [ep(`10.185.0.${i + 1}`, 80), ep(`10.185.1.${i + 1}`, 80)] }));
  const first = await b.sync({ ports: many, changed: NONE, full: true });
  const applies = calls.filter((c) => c.args.join(' ') === 'nft -f -');
  t.ok(applies.length >= 4, `${applies.length} transactions`);
  t.match(applies[0]?.input ?? '', /^add table ip clusterdns /);
  t.match(applies[applies.length - 1]?.input ?? '', /^flush set ip clusterdns cluster-ips$/m);
  t.equal(b.state?.shards, 8);
  t.same(tables(ns).split('\n').filter((l) => l !== '').length, 9, 'clusterdns and 8 shards');
  t.ok(first.rulesWritten > 200);
  let n = 0;
  for (const p of many) {
    const table = b.state!.services.get(p.service)!.table;
    const [obj] = listJson(ns, ['map', 'ip', table, 'service-ips'], 'map');
    const keys = ((obj?.elem ?? []) as unknown[]).map((e) => JSON.stringify(e));
    if (keys.some((k) => k.includes(p.clusterIP))) n++;
  }
  t.equal(n, many.length, 'every ClusterIP in its shard\'s service-ips');
  t.same(elements(ns, 'map', 'service-ips'), [], 'and none in clusterdns\'s');
  t.equal(elements(ns, 'set', 'cluster-ips').length, many.length, 'cluster-ips stays in clusterdns');

  const q = many[11]!;
  const table = b.state!.services.get(q.service)!.table;
  calls.length = 0;
  const grown = many.map((x) => (x === q ? svc({ ...q, endpoints: [...q.endpoints, ep('10.185.2.1', 80)] }) : x));
  await b.sync({ ports: grown, changed: new Set([q.service]), full: false });
  t.equal(calls.length, 1, 'one transaction');
  t.same([...new Set([...(calls[0]?.input ?? '').matchAll(/^\S+ \S+ ip (\S+) /gm)].map((m) => m[1]))], [table], `only ${table}`);
  calls.length = 0;
  await b.sync({ ports: grown.filter((x) => x.service !== q.service), changed: new Set([q.service]), full: false });
  t.equal(elements(ns, 'set', 'cluster-ips').length, many.length - 1, 'removed: cluster-ips refilled without it');
  t.notMatch(calls[0]?.input ?? '', /delete element/);
  t.equal(await b.deleteStale(), 5, 'its 5 chains (3 endpoints, service, external) deleted after');
  await b.cleanup();
  t.equal(tables(ns), '', 'cleanup: every table gone');
});

t.test('IPv6 table', async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  const b = new NftablesBackend({ ...V6, exec: nsExec(ns), deferStaleChains: false });
  await b.preflight();
  const v6 = svc({ namespace: 'ns1', name: 'svc1', family: 6, clusterIP: 'fd00:172:30::41', nodePort: 30001, affinitySeconds: 60, endpoints: [ep('fd00:10:180::1', 80), ep('fd00:10:180::2:1', 80)] });
  await b.sync({ ports: [v6, svc1], changed: NONE, full: true });
  t.same(elements(ns, 'map', 'service-ips', 'ip6'), [`fd00:172:30::41 . tcp . 80 : goto ${SVC1}`], 'IPv4 ports ignored');
  t.ok(chains(ns, 'ip6').includes('endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80'));
  t.match(inNs(ns, 'nft', ['list', 'chain', 'ip6', 'clusterdns', 'endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80']), /dnat to \[fd00:10:180::2:1\]:80/);
  t.notMatch(tables(ns), /table ip clusterdns/, 'no IPv4 table');
  await b.sync({ ports: [svc({ ...v6, endpoints: [ep('fd00:10:180::1', 80)] })], changed: new Set(['ns1/svc1']), full: false });
  t.notOk(chains(ns, 'ip6').includes('endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80'));
  await b.cleanup();
  t.equal(tables(ns), '');
});

/**
 * Connections through the rules, from inside the namespace: backends on local
 * addresses, a client bound to another one (not an endpoint, inside the cluster CIDR:
 * no masquerade, no hairpin).
 */
const CLIENT = `
const net = require('node:net');
const [spec] = process.argv.slice(1);
const { backends, tries } = JSON.parse(spec);
const servers = backends.map((b) => net.createServer((s) => s.end(b.name)).listen(b.port, b.ip));
const once = (host, port) => new Promise((resolve) => {
  const t0 = Date.now();
  const s = net.connect({ host, port, localAddress: '10.99.0.1' });
  let data = '';
  const timer = setTimeout(() => { s.destroy(); resolve({ code: 'ETIMEDOUT', ms: Date.now() - t0 }); }, 1500);
  s.on('data', (d) => (data += d));
  s.on('end', () => { clearTimeout(timer); resolve({ reply: data, ms: Date.now() - t0 }); });
  s.on('error', (e) => { clearTimeout(timer); resolve({ code: e.code, ms: Date.now() - t0 }); });
});
(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.listening ? r() : s.on('listening', r))));
  const out = {};
  for (const [name, host, port, n] of tries) {
    out[name] = [];
    for (let i = 0; i < n; i++) out[name].push(await once(host, port));
  }
  process.stdout.write(JSON.stringify(out));
  for (const s of servers) s.close();
})();
`;

for (const shardEndpoints of [undefined, 1]) {
t.test(`connections: spread, affinity, refused without endpoints and on undefined ports${shardEndpoints === undefined ? '' : ', Services in shard tables'}`, async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
  for (const a of ['10.180.0.1/32', '10.180.0.2/32', '10.99.0.1/32']) inNs(ns, 'ip', ['addr', 'add', a, 'dev', 'lo']);
  // The service range must be routable for the first packet (DNAT then reroutes it),
  // through a real link: with a route via lo the reject's ICMP error never reaches the
  // socket.
  inNs(ns, 'ip', ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1']);
  inNs(ns, 'ip', ['link', 'set', 'v0', 'up']);
  inNs(ns, 'ip', ['link', 'set', 'v1', 'up']);
  inNs(ns, 'ip', ['addr', 'add', '10.98.0.1/24', 'dev', 'v0']);
  inNs(ns, 'ip', ['route', 'add', '172.30.0.0/16', 'via', '10.98.0.2', 'dev', 'v0']);
  const spread = svc({ namespace: 'ns1', name: 'spread', clusterIP: '172.30.0.51', endpoints: [ep('10.180.0.1', 8080), ep('10.180.0.2', 8080)] });
  const sticky = svc({ namespace: 'ns1', name: 'sticky', clusterIP: '172.30.0.52', affinitySeconds: 300, endpoints: [ep('10.180.0.1', 8081), ep('10.180.0.2', 8081)] });
  const empty = svc({ namespace: 'ns1', name: 'empty', clusterIP: '172.30.0.53' });
  const b = new NftablesBackend({ ...V4, exec: nsExec(ns), deferStaleChains: false, ...(shardEndpoints !== undefined ? { shardEndpoints } : {}) });
  await b.sync({ ports: [spread, sticky, empty], changed: NONE, full: true });
  if (shardEndpoints !== undefined) {
    t.equal(b.state?.shards, 4);
    t.not(b.state?.services.get('ns1/spread')?.table, 'clusterdns');
  }
  const spec = {
    backends: [
      { ip: '10.180.0.1', port: 8080, name: 'a' },
      { ip: '10.180.0.2', port: 8080, name: 'b' },
      { ip: '10.180.0.1', port: 8081, name: 'a' },
      { ip: '10.180.0.2', port: 8081, name: 'b' },
    ],
    tries: [
      ['spread', '172.30.0.51', 80, 40],
      ['sticky', '172.30.0.52', 80, 20],
      ['empty', '172.30.0.53', 80, 1],
      ['undefinedPort', '172.30.0.51', 81, 1],
    ],
  };
  const out = JSON.parse(inNs(ns, process.execPath, ['-e', CLIENT, JSON.stringify(spec)])) as Record<string, Array<{ reply?: string; code?: string; ms: number }>>;
  const replies = (k: string): string[] => (out[k] ?? []).map((r) => r.reply ?? r.code ?? '?');
  const spreadReplies = replies('spread');
  t.ok(spreadReplies.every((r) => r === 'a' || r === 'b'), `every connection reached an endpoint: ${spreadReplies.join(',')}`);
  t.ok(spreadReplies.includes('a') && spreadReplies.includes('b'), 'both endpoints used (all 40 on one: p = 2^-39)');
  const stickyReplies = replies('sticky');
  t.equal(new Set(stickyReplies).size, 1, `affinity: one endpoint for one client (${stickyReplies.join(',')})`);
  t.ok(stickyReplies[0] === 'a' || stickyReplies[0] === 'b');
  t.same(replies('empty'), ['ECONNREFUSED'], 'no endpoints: refused');
  t.ok((out.empty?.[0]?.ms ?? 9999) < 1000, 'at once, not a time-out');
  t.same(replies('undefinedPort'), ['ECONNREFUSED'], 'undefined port of a ClusterIP: rejected by cluster-ips-check');
  await b.cleanup();
});
}
