/**
 * Stale UDP conntrack cleanup (src/proxy/conntrack.ts): which `conntrack -D` filters a
 * view change asks for (kube-proxy's deleteStaleServiceConntrackEntries and
 * deleteStaleEndpointConntrackEntries), and a real deletion of a real entry in a
 * network namespace.
 */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { conntrackArgs, deleteEntries, staleEntries, udpSnapshot } from '../../src/proxy/conntrack.js';
import type { Exec } from '../../src/proxy/exec.js';
import { exec } from '../../src/proxy/exec.js';
import type { ProxyPort } from '../../src/proxy/types.js';

const ep = (ip: string) => ({ ip, port: 53, key: `${ip}:53`, ready: true, serving: true, terminating: false, local: false });
const port = (ips: string[], o: Partial<ProxyPort> = {}): ProxyPort => ({
  service: 'ns1/dns', namespace: 'ns1', name: 'dns', portName: 'dns', spn: 'ns1/dns:dns', protocol: 'UDP', family: 4, clusterIP: '10.96.0.10', port: 53,
  nodePort: 0, externalIPs: [], affinitySeconds: 0, internalLocal: false, externalLocal: false, endpoints: ips.map(ep), ...o,
});

t.test('which entries go stale', async (t) => {
  const before = udpSnapshot([port(['10.244.0.2', '10.244.0.3'], { nodePort: 30053 })]);
  t.same(staleEntries(before, before), [], 'no change, nothing to delete');
  const after = udpSnapshot([port(['10.244.0.3'], { nodePort: 30053 })]);
  t.same(staleEntries(before, after), [
    { family: 4, origDst: '10.96.0.10', origPortDst: 53, dstNat: '10.244.0.2' },
    { family: 4, origPortDst: 30053, dstNat: '10.244.0.2' },
  ], 'a removed endpoint: flows DNATed to it');
  const empty = udpSnapshot([port([])]);
  const back = udpSnapshot([port(['10.244.0.9'])]);
  t.same(staleEntries(empty, back), [{ family: 4, origDst: '10.96.0.10', origPortDst: 53 }], 'no endpoints to some: the REJECTed flows');
  t.same(staleEntries(back, new Map()), [{ family: 4, origDst: '10.96.0.10', origPortDst: 53 }], 'service gone');
  t.same(udpSnapshot([port(['10.244.0.2'], { protocol: 'TCP' })]).size, 0, 'TCP is never touched');
  t.same(conntrackArgs({ family: 6, origDst: 'fd00::10', origPortDst: 53, dstNat: 'fd00::2' }), ['-D', '-f', 'ipv6', '-p', 'udp', '--orig-dst', 'fd00::10', '--orig-port-dst', '53', '--dst-nat', 'fd00::2']);
});

t.test('"0 flow entries" is not an error; a missing tool is', async (t) => {
  const none: Exec = async () => ({ code: 1, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n' });
  t.same(await deleteEntries(none, [{ family: 4, origDst: '10.96.0.10', origPortDst: 53 }]), []);
  const missing: Exec = (cmd, args) => exec(`${cmd}-not-installed`, args);
  const errs = await deleteEntries(missing, [{ family: 4, origDst: '10.96.0.10', origPortDst: 53 }]);
  t.equal(errs.length, 1);
  t.match(errs[0], /not found/);
});

t.test('deletes a real UDP entry in a network namespace', async (t) => {
  const ns = `cdt-ct-${process.pid}`;
  const sh = (...args: string[]) => spawnSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8' });
  t.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0, 'netns created');
  t.teardown(() => {
    spawnSync('ip', ['netns', 'del', ns]);
  });
  sh('ip', 'link', 'set', 'lo', 'up');
  sh('ip', 'addr', 'add', '10.96.0.10/32', 'dev', 'lo');
  // A NAT rule makes conntrack track the flow with a DNAT, as a service rule would.
  t.equal(sh('iptables', '-t', 'nat', '-A', 'OUTPUT', '-d', '10.96.0.10', '-p', 'udp', '--dport', '53', '-j', 'DNAT', '--to-destination', '127.0.0.1:5353').status, 0);
  // Send one datagram from inside the namespace (a child node process there).
  const send = sh('node', '-e', "const s=require('dgram').createSocket('udp4');s.send('x',53,'10.96.0.10',()=>s.close())");
  t.equal(send.status, 0, send.stderr);
  t.match(sh('conntrack', '-L', '-p', 'udp').stdout + sh('conntrack', '-L', '-p', 'udp').stderr, /dport=53/, 'entry present');
  const inNs: Exec = (cmd, args, input) => exec('ip', ['netns', 'exec', ns, cmd, ...args], input);
  t.same(await deleteEntries(inNs, [{ family: 4, origDst: '10.96.0.10', origPortDst: 53, dstNat: '127.0.0.1' }]), []);
  const after = sh('conntrack', '-L', '-p', 'udp');
  t.notMatch(after.stdout, /dport=53 /, 'entry gone');
});
