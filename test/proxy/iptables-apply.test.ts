/**
 * IptablesBackend (src/proxy/iptables-backend.ts) against a real kernel, inside a fresh
 * network namespace (root only): full sync with the jump rules, a partial sync that
 * rewrites one service, stale chains deleted, no duplicate jumps on the next full
 * sync, a failed restore that leaves the kernel untouched and forces a full sync, and
 * cleanup() that leaves no KUBE- chain behind (kube-proxy.md §2.1, §2.10).
 */
import t, { type Test } from 'tap';
import { IptablesBackend, chainsInSave } from '../../src/proxy/iptables-backend.js';
import { exec, type Exec } from '../../src/proxy/exec.js';
import { JUMP_RULES, isServiceChainName } from '../../src/proxy/iptables.js';
import { sepChain, svcChain } from '../../src/proxy/names.js';
import type { ProxyPort, RulesOptions } from '../../src/proxy/types.js';
import { ep, inNs, scratchNetns, svc } from './_fixtures.js';



const V4: RulesOptions = { family: 4, clusterCIDRs: ['10.0.0.0/8'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: [] };
const V6: RulesOptions = { family: 6, clusterCIDRs: ['fd00:180::/64'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: [] };

const svc1 = svc({ namespace: 'ns1', name: 'svc1', clusterIP: '172.30.0.41', nodePort: 3001, affinitySeconds: 10800, endpoints: [ep('10.180.0.1', 80), ep('10.180.0.2', 80)] });
const dns = svc({ namespace: 'kube-system', name: 'kube-dns', portName: 'dns', protocol: 'UDP', clusterIP: '172.30.0.10', port: 53, endpoints: [ep('10.180.0.10', 53), ep('10.180.0.9', 53)] });
const svc2 = svc({ namespace: 'ns2', name: 'svc2', clusterIP: '172.30.0.42' });
const svc5 = svc({ namespace: 'ns5', name: 'svc5', clusterIP: '172.30.0.45', endpoints: [ep('10.180.0.6', 80), ep('10.180.0.7', 80), ep('10.180.0.8', 80)] });

interface Call {
  readonly cmd: string;
  readonly args: readonly string[];
  readonly input: string | undefined;
}

const netns = (t: Test): string | undefined => scratchNetns(t, 'cdns-ipta', 'iptables-restore', 'iptables');


/** How many times each kube-proxy jump rule is in the kernel, keyed "table from→to". */
function jumpCounts(save: string): Record<string, number> {
  const out: Record<string, number> = {};
  let table = '';
  const lines = save.split('\n');
  for (const j of JUMP_RULES) out[`${j.table} ${j.from}→${j.to}`] = 0;
  for (const line of lines) {
    if (line.startsWith('*')) table = line.slice(1);
    const m = /^-A (\S+) .*-j (KUBE-\S+)$/.exec(line);
    if (!m) continue;
    const key = `${table} ${m[1]}→${m[2]}`;
    if (key in out) out[key]!++;
  }
  return out;
}

t.test('IptablesBackend in a network namespace', async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  const calls: Call[] = [];
  const nsExec: Exec = (cmd, args, input, timeoutMs) => {
    calls.push({ cmd, args, input });
    return exec('ip', ['netns', 'exec', ns, cmd, ...args], input, timeoutMs);
  };
  const save = (tool = 'iptables-save') => inNs(ns, tool, []);
  const b = new IptablesBackend({ ...V4, exec: nsExec });
  t.equal(b.mode, 'iptables');
  t.equal(b.family, 4);
  await b.preflight();

  // A leftover of a crashed run, and somebody else's chain that must survive everything.
  inNs(ns, 'iptables-restore', ['--noflush'], '*nat\n:KUBE-SEP-LEFTOVER0000000 - [0:0]\n-A KUBE-SEP-LEFTOVER0000000 -j RETURN\n:MY-CHAIN - [0:0]\n-A MY-CHAIN -j RETURN\n-A PREROUTING -j MY-CHAIN\nCOMMIT\n');

  const all = new Set(JUMP_RULES.map((j) => `${j.table} ${j.from}→${j.to}`));
  const once = Object.fromEntries([...all].map((k) => [k, 1]));

  await t.test('full sync installs chains, rules and jumps', async (t) => {
    calls.length = 0;
    const r = await b.sync({ ports: [svc1, dns, svc2, svc5], changed: new Set(), full: true });
    t.ok(r.rulesWritten > 20, `rules written: ${r.rulesWritten}`);
    const restore = calls.find((c) => c.cmd === 'iptables-restore')!;
    t.same(restore.args, ['-w', '5', '-W', '100000', '--noflush', '--counters']);
    t.equal(r.bytes, Buffer.byteLength(restore.input!));
    t.ok(calls.some((c) => c.args.includes('-C')), 'jumps checked with -C');
    const s = save();
    const nat = chainsInSave(s, 'nat');
    for (const c of ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-SVC-XPGD46QRK7WJZT7O', 'KUBE-EXT-XPGD46QRK7WJZT7O', 'KUBE-SEP-SXIVWICOYRO3J4NJ', 'KUBE-SVC-TCOU7JCQXEZGVUNU']) {
      t.ok(nat.has(c), `nat ${c}`);
    }
    t.notOk(nat.has('KUBE-SEP-LEFTOVER0000000'), 'leftover service chain removed by the full sync');
    t.ok(nat.has('MY-CHAIN'), 'foreign chain untouched');
    t.match(s, '-A PREROUTING -j MY-CHAIN');
    t.same([...nat].filter(isServiceChainName).sort(), [...b.chains].sort(), 'tracked chains = kernel chains');
    t.same(jumpCounts(s), once, 'each jump exactly once');
    t.match(s, /-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES/);
    t.match(s, /-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES/);
    t.match(s, /-A KUBE-SERVICES -d 172\.30\.0\.42\/32 -p tcp -m comment --comment "ns2\/svc2:p80 has no endpoints" -m tcp --dport 80 -j REJECT/);
    t.match(s, /-A KUBE-SEP-SXIVWICOYRO3J4NJ -p tcp -m comment --comment "?ns1\/svc1:p80"? -m recent --set --name KUBE-SEP-SXIVWICOYRO3J4NJ --mask 255\.255\.255\.255 --rsource -m tcp -j DNAT --to-destination 10\.180\.0\.1:80/);
    t.match(s, /-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000\/0x4000|-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000/);
    t.match(s, /-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully/);
  });

  await t.test('partial sync rewrites only the changed service', async (t) => {
    calls.length = 0;
    const svc1b = { ...svc1, endpoints: [...svc1.endpoints, ep('10.180.0.3', 80)] };
    const r = await b.sync({ ports: [svc1b, dns, svc2, svc5], changed: new Set(['ns1/svc1']), full: false });
    t.same(calls.map((c) => c.cmd), ['iptables-restore'], 'one restore, no jump checks, no iptables-save');
    const input = calls[0]!.input!;
    t.match(input, ':KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]');
    t.notMatch(input, ':KUBE-SVC-TCOU7JCQXEZGVUNU', 'kube-dns chain not declared (so not flushed)');
    t.notMatch(input, /^-A KUBE-SVC-TCOU7JCQXEZGVUNU/m);
    t.match(input, /^-A KUBE-SVC-XPGD46QRK7WJZT7O .*--probability 0\.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ$/m);
    t.ok(r.rulesWritten > 0);
    const s = save();
    const newSep = sepChain('ns1/svc1:p80', 'TCP', '10.180.0.3:80');
    t.ok(chainsInSave(s, 'nat').has(newSep), 'new endpoint chain exists');
    t.match(s, /-A KUBE-SVC-TCOU7JCQXEZGVUNU .*-j KUBE-SEP-/, 'unchanged kube-dns rules still there');
    t.match(s, /-A KUBE-SVC-XPGD46QRK7WJZT7O .*--probability 0\.333/);
    t.ok(b.chains.has(newSep) && b.chains.has('KUBE-SVC-TCOU7JCQXEZGVUNU'));
  });

  await t.test('a removed service loses its chains', async (t) => {
    const svc5Chains = [svcChain('ns5/svc5:p80', 'TCP'), ...svc5.endpoints.map((e) => sepChain('ns5/svc5:p80', 'TCP', e.key))];
    t.ok(svc5Chains.every((c) => chainsInSave(save(), 'nat').has(c)), 'present before');
    const svc1b = { ...svc1, endpoints: [...svc1.endpoints, ep('10.180.0.3', 80)] };
    calls.length = 0;
    await b.sync({ ports: [svc1b, dns, svc2], changed: new Set(['ns5/svc5']), full: false });
    const input = calls[0]!.input!;
    for (const c of svc5Chains) t.match(input, `-X ${c}\n`);
    const s = save();
    const nat = chainsInSave(s, 'nat');
    t.same(svc5Chains.filter((c) => nat.has(c)), [], 'gone from the kernel');
    t.notMatch(s, '172.30.0.45');
    t.same([...nat].filter(isServiceChainName).sort(), [...b.chains].sort());
  });

  await t.test('a second full sync does not duplicate the jumps', async (t) => {
    const before = save();
    await b.sync({ ports: [svc1, dns, svc2], changed: new Set(), full: true });
    const s = save();
    t.same(jumpCounts(s), once);
    t.equal(s.split('\n').filter((l) => l.includes('-j KUBE-SERVICES')).length, jumpCounts(before)['nat PREROUTING→KUBE-SERVICES']! + 3, 'nat PREROUTING/OUTPUT + filter FORWARD/OUTPUT');
    t.notOk(chainsInSave(s, 'nat').has(sepChain('ns1/svc1:p80', 'TCP', '10.180.0.3:80')), 'endpoint removed again');
  });

  await t.test('a failed restore leaves the kernel as it was and forces a full sync', async (t) => {
    const before = save().replace(/^#.*\n/gm, '');
    const bad = svc({ namespace: 'ns9', name: 'bad', clusterIP: '172.30.0.300', endpoints: [ep('10.180.0.99', 80)] });
    await t.rejects(b.sync({ ports: [svc1, dns, svc2, bad], changed: new Set(['ns9/bad']), full: false }), /iptables-restore failed .*172\.30\.0\.300/);
    t.equal(save().replace(/^#.*\n/gm, ''), before, 'unchanged (atomic restore)');
    calls.length = 0;
    await b.sync({ ports: [svc1, dns, svc2], changed: new Set(), full: false });
    t.ok(calls.some((c) => c.args.includes('-C')), 'next sync re-checks the jumps');
    t.ok(calls.some((c) => c.cmd === 'iptables-save'), 'and lists the kernel chains');
    t.match(calls.find((c) => c.cmd === 'iptables-restore')!.input!, ':KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]', 'and rewrites every service');
  });

  await t.test('cleanup removes every KUBE- chain and jump', async (t) => {
    await b.cleanup();
    const s = save();
    t.notMatch(s, 'KUBE-');
    t.match(s, ':MY-CHAIN');
    t.match(s, '-A PREROUTING -j MY-CHAIN', 'foreign rules kept');
    t.equal(b.chains.size, 0);
    await t.resolves(b.cleanup(), 'again: nothing to remove is fine');
  });

  await t.test('IPv6: ip6tables-restore, then cleanup', async (t) => {
    calls.length = 0;
    const b6 = new IptablesBackend({ ...V6, exec: nsExec });
    await b6.preflight();
    const v6 = svc({ namespace: 'ns6', name: 'svc6', family: 6, clusterIP: 'fd00:30::41', nodePort: 3006, endpoints: [ep('fd00:180::1', 80), ep('fd00:180::2', 80)] });
    await b6.sync({ ports: [v6, svc1], changed: new Set(), full: true });
    t.ok(calls.some((c) => c.cmd === 'ip6tables-restore') && !calls.some((c) => c.cmd === 'iptables-restore'));
    const s = save('ip6tables-save');
    t.match(s, /-A KUBE-SEP-\S+ -p tcp -m comment --comment "?ns6\/svc6:p80"? -m tcp -j DNAT --to-destination \[fd00:180::1\]:80/);
    t.match(s, /! -d ::1\/128 .*-j KUBE-NODEPORTS/);
    t.notMatch(s, '172.30.0.41', 'IPv4 port ignored');
    t.notMatch(save(), 'KUBE-', 'IPv4 tables untouched');
    await b6.cleanup();
    t.notMatch(save('ip6tables-save'), 'KUBE-');
  });
});

t.test('preflight reports a missing tool in one line', async (t) => {
  const missing: Exec = async (cmd) => ({ code: 127, stdout: '', stderr: `${cmd}: not found (install it, e.g. Debian package iptables)` });
  const b = new IptablesBackend({ ...V4, exec: missing });
  await t.rejects(b.preflight(), /iptables-restore unusable: iptables-restore: not found/);
  const old: Exec = async () => ({ code: 0, stdout: 'iptables-restore v1.4.21\n', stderr: '' });
  await t.rejects(new IptablesBackend({ ...V4, exec: old }).preflight(), /too old; need iptables >= 1\.6\.2/);
  const denied: Exec = async (cmd) =>
    cmd.endsWith('-save') ? { code: 1, stdout: '', stderr: 'iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n' } : { code: 0, stdout: 'iptables-restore v1.8.9 (nf_tables)\n', stderr: '' };
  await t.rejects(new IptablesBackend({ ...V4, exec: denied }).preflight(), /CAP_NET_ADMIN needed.*Permission denied/);
});
