/**
 * Golden tests of the iptables renderer (src/proxy/iptables.ts) against the shapes
 * kube-proxy's iptables proxier writes (kube-proxy.md §2, §4.4), and a kernel check:
 * `iptables-restore --test` / `ip6tables-restore --test` accept the full render, in a
 * fresh network namespace (root only).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { LARGE_CLUSTER_ENDPOINTS, renderIptables } from '../../src/proxy/iptables.js';
import { probability, sepChain, svcChain } from '../../src/proxy/names.js';
import type { ProxyPort, RulesOptions } from '../../src/proxy/types.js';
import { ep, scratchNetns, svc } from './_fixtures.js';



const V4: RulesOptions = { family: 4, clusterCIDRs: ['10.0.0.0/8'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: ['172.30.0.0/16'] };
const V6: RulesOptions = { family: 6, clusterCIDRs: ['fd00:180::/64'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: ['fd00:30::/112'] };

/** The fixed view: one service per case the renderer distinguishes. */
function view(): ProxyPort[] {
  return [
    // kube-proxy.md §2.3's illustrative service: affinity, NodePort, cluster CIDR.
    svc({ namespace: 'ns1', name: 'svc1', clusterIP: '172.30.0.41', nodePort: 3001, affinitySeconds: 10800, endpoints: [ep('10.180.0.1', 80), ep('10.180.0.2', 80)] }),
    // No endpoints at all: filter REJECTs for the cluster IP, the external IP and the NodePort.
    svc({ namespace: 'ns2', name: 'svc2', clusterIP: '172.30.0.42', nodePort: 3002, externalIPs: ['192.168.99.22'] }),
    // internalTrafficPolicy Local, only a remote endpoint: DROP.
    svc({ namespace: 'ns3', name: 'svc3', clusterIP: '172.30.0.43', internalLocal: true, endpoints: [ep('10.180.0.3', 80)] }),
    // externalTrafficPolicy Local, one local and one remote endpoint, NodePort + external IP.
    svc({
      namespace: 'ns4',
      name: 'svc4',
      clusterIP: '172.30.0.44',
      nodePort: 3004,
      externalIPs: ['192.168.99.44'],
      externalLocal: true,
      endpoints: [ep('10.180.0.4', 80, { local: true }), ep('10.180.0.5', 80)],
    }),
    // Unnamed port, three ready endpoints and one neither ready nor serving (unused).
    svc({
      namespace: 'ns5',
      name: 'svc5',
      portName: '',
      clusterIP: '172.30.0.45',
      port: 8080,
      endpoints: [ep('10.180.0.6', 8080), ep('10.180.0.7', 8080), ep('10.180.0.8', 8080), ep('10.180.0.9', 8080, { ready: false, serving: false })],
    }),
    // UDP with two endpoints, listed in key order ("10.180.0.10:53" < "10.180.0.9:53").
    svc({
      namespace: 'kube-system',
      name: 'kube-dns',
      portName: 'dns',
      protocol: 'UDP',
      clusterIP: '172.30.0.10',
      port: 53,
      endpoints: [ep('10.180.0.10', 53), ep('10.180.0.9', 53)],
    }),
    // IPv6: ignored by the IPv4 render.
    svc({ namespace: 'ns6', name: 'svc6', family: 6, clusterIP: 'fd00:30::41', nodePort: 3006, endpoints: [ep('fd00:180::1', 80), ep('fd00:180::2', 80)] }),
  ];
}

/** Reviewed line by line against kube-proxy.md §2.3–2.9 and proxier.go's rule shapes. */
const GOLDEN_V4 = [
  '*filter',
  ':KUBE-SERVICES - [0:0]',
  ':KUBE-EXTERNAL-SERVICES - [0:0]',
  ':KUBE-FORWARD - [0:0]',
  ':KUBE-NODEPORTS - [0:0]',
  ':KUBE-PROXY-FIREWALL - [0:0]',
  '-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j REJECT',
  '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j REJECT',
  '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3002 -j REJECT',
  '-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 has no local endpoints" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j DROP',
  '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
  '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT',
  '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  'COMMIT',
  '*nat',
  ':KUBE-SERVICES - [0:0]',
  ':KUBE-NODEPORTS - [0:0]',
  ':KUBE-POSTROUTING - [0:0]',
  ':KUBE-MARK-MASQ - [0:0]',
  ':KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]',
  ':KUBE-SEP-7LGUAWRXVTFPVIGM - [0:0]',
  ':KUBE-SEP-ULDVV2AFFEUVV4M2 - [0:0]',
  ':KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]',
  ':KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]',
  ':KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]',
  ':KUBE-SEP-LXVODXWDISEETFEF - [0:0]',
  ':KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]',
  ':KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]',
  ':KUBE-SVL-4SW47YFZTEDKD3PK - [0:0]',
  ':KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]',
  ':KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]',
  ':KUBE-SVC-AKFUVGUFFVMIM5BS - [0:0]',
  ':KUBE-SEP-OVG45BNNUNQORNNI - [0:0]',
  ':KUBE-SEP-JBRCQUENYLWGI3D7 - [0:0]',
  ':KUBE-SEP-J4YQCGDLH4BVL3LD - [0:0]',
  '-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN',
  '-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000',
  '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  '-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000',
  '-A KUBE-SERVICES -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp -p udp -d 172.30.0.10 --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU',
  '-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp -p udp -d 172.30.0.10 --dport 53 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
  '-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.180.0.10:53" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-7LGUAWRXVTFPVIGM',
  '-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.180.0.9:53" -j KUBE-SEP-ULDVV2AFFEUVV4M2',
  '-A KUBE-SEP-7LGUAWRXVTFPVIGM -m comment --comment kube-system/kube-dns:dns -s 10.180.0.10 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-7LGUAWRXVTFPVIGM -m comment --comment kube-system/kube-dns:dns -m udp -p udp -j DNAT --to-destination 10.180.0.10:53',
  '-A KUBE-SEP-ULDVV2AFFEUVV4M2 -m comment --comment kube-system/kube-dns:dns -s 10.180.0.9 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-ULDVV2AFFEUVV4M2 -m comment --comment kube-system/kube-dns:dns -m udp -p udp -j DNAT --to-destination 10.180.0.9:53',
  '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O',
  '-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O',
  '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
  '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ',
  '-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O',
  '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --rcheck --seconds 10800 --reap -j KUBE-SEP-SXIVWICOYRO3J4NJ',
  '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m recent --name KUBE-SEP-LXVODXWDISEETFEF --rcheck --seconds 10800 --reap -j KUBE-SEP-LXVODXWDISEETFEF',
  '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ',
  '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j KUBE-SEP-LXVODXWDISEETFEF',
  '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80',
  '-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-LXVODXWDISEETFEF --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80',
  '-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK',
  '-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.44 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK',
  '-A KUBE-NODEPORTS -m comment --comment ns4/svc4:p80 -m tcp -p tcp --dport 3004 -j KUBE-EXT-4SW47YFZTEDKD3PK',
  '-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
  '-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "pod traffic for ns4/svc4:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-4SW47YFZTEDKD3PK',
  '-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade LOCAL traffic for ns4/svc4:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
  '-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "route LOCAL traffic for ns4/svc4:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-4SW47YFZTEDKD3PK',
  '-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVL-4SW47YFZTEDKD3PK',
  '-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC',
  '-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ',
  '-A KUBE-SVL-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -j KUBE-SEP-UKSFD7AGPMPPLUHC',
  '-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80',
  '-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80',
  '-A KUBE-SERVICES -m comment --comment "ns5/svc5 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 8080 -j KUBE-SVC-AKFUVGUFFVMIM5BS',
  '-A KUBE-SVC-AKFUVGUFFVMIM5BS -m comment --comment "ns5/svc5 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ',
  '-A KUBE-SVC-AKFUVGUFFVMIM5BS -m comment --comment "ns5/svc5 -> 10.180.0.6:8080" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-OVG45BNNUNQORNNI',
  '-A KUBE-SVC-AKFUVGUFFVMIM5BS -m comment --comment "ns5/svc5 -> 10.180.0.7:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-JBRCQUENYLWGI3D7',
  '-A KUBE-SVC-AKFUVGUFFVMIM5BS -m comment --comment "ns5/svc5 -> 10.180.0.8:8080" -j KUBE-SEP-J4YQCGDLH4BVL3LD',
  '-A KUBE-SEP-OVG45BNNUNQORNNI -m comment --comment ns5/svc5 -s 10.180.0.6 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-OVG45BNNUNQORNNI -m comment --comment ns5/svc5 -m tcp -p tcp -j DNAT --to-destination 10.180.0.6:8080',
  '-A KUBE-SEP-JBRCQUENYLWGI3D7 -m comment --comment ns5/svc5 -s 10.180.0.7 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-JBRCQUENYLWGI3D7 -m comment --comment ns5/svc5 -m tcp -p tcp -j DNAT --to-destination 10.180.0.7:8080',
  '-A KUBE-SEP-J4YQCGDLH4BVL3LD -m comment --comment ns5/svc5 -s 10.180.0.8 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-J4YQCGDLH4BVL3LD -m comment --comment ns5/svc5 -m tcp -p tcp -j DNAT --to-destination 10.180.0.8:8080',
  '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS',
  'COMMIT',
].join('\n') + '\n';

const GOLDEN_V6 = [
  '*filter',
  ':KUBE-SERVICES - [0:0]',
  ':KUBE-EXTERNAL-SERVICES - [0:0]',
  ':KUBE-FORWARD - [0:0]',
  ':KUBE-NODEPORTS - [0:0]',
  ':KUBE-PROXY-FIREWALL - [0:0]',
  '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
  '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT',
  '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  'COMMIT',
  '*nat',
  ':KUBE-SERVICES - [0:0]',
  ':KUBE-NODEPORTS - [0:0]',
  ':KUBE-POSTROUTING - [0:0]',
  ':KUBE-MARK-MASQ - [0:0]',
  ':KUBE-EXT-NDY5GL2HU4YWCI7Q - [0:0]',
  ':KUBE-SVC-NDY5GL2HU4YWCI7Q - [0:0]',
  ':KUBE-SEP-VVWBFQKYK7EZZQRH - [0:0]',
  ':KUBE-SEP-VE42U7NNCL4KAHHA - [0:0]',
  '-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN',
  '-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000',
  '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  '-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000',
  '-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 cluster IP" -m tcp -p tcp -d fd00:30::41 --dport 80 -j KUBE-SVC-NDY5GL2HU4YWCI7Q',
  '-A KUBE-NODEPORTS -m comment --comment ns6/svc6:p80 -m tcp -p tcp --dport 3006 -j KUBE-EXT-NDY5GL2HU4YWCI7Q',
  '-A KUBE-SVC-NDY5GL2HU4YWCI7Q -m comment --comment "ns6/svc6:p80 cluster IP" -m tcp -p tcp -d fd00:30::41 --dport 80 ! -s fd00:180::/64 -j KUBE-MARK-MASQ',
  '-A KUBE-EXT-NDY5GL2HU4YWCI7Q -m comment --comment "masquerade traffic for ns6/svc6:p80 external destinations" -j KUBE-MARK-MASQ',
  '-A KUBE-EXT-NDY5GL2HU4YWCI7Q -j KUBE-SVC-NDY5GL2HU4YWCI7Q',
  '-A KUBE-SVC-NDY5GL2HU4YWCI7Q -m comment --comment "ns6/svc6:p80 -> [fd00:180::1]:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-VVWBFQKYK7EZZQRH',
  '-A KUBE-SVC-NDY5GL2HU4YWCI7Q -m comment --comment "ns6/svc6:p80 -> [fd00:180::2]:80" -j KUBE-SEP-VE42U7NNCL4KAHHA',
  '-A KUBE-SEP-VVWBFQKYK7EZZQRH -m comment --comment ns6/svc6:p80 -s fd00:180::1 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-VVWBFQKYK7EZZQRH -m comment --comment ns6/svc6:p80 -m tcp -p tcp -j DNAT --to-destination [fd00:180::1]:80',
  '-A KUBE-SEP-VE42U7NNCL4KAHHA -m comment --comment ns6/svc6:p80 -s fd00:180::2 -j KUBE-MARK-MASQ',
  '-A KUBE-SEP-VE42U7NNCL4KAHHA -m comment --comment ns6/svc6:p80 -m tcp -p tcp -j DNAT --to-destination [fd00:180::2]:80',
  '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS',
  'COMMIT',
].join('\n') + '\n';

interface Parsed {
  /** table → declared chains */
  readonly declared: Map<string, Set<string>>;
  /** table → chain → `-A` rules (arguments after the chain name) */
  readonly rules: Map<string, Map<string, string[]>>;
  /** table → chains deleted with -X */
  readonly deleted: Map<string, Set<string>>;
}

function parse(text: string): Parsed {
  const declared = new Map<string, Set<string>>();
  const rules = new Map<string, Map<string, string[]>>();
  const deleted = new Map<string, Set<string>>();
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1);
      declared.set(table, new Set());
      rules.set(table, new Map());
      deleted.set(table, new Set());
    } else if (line.startsWith(':')) declared.get(table)!.add(line.slice(1).split(' ')[0]!);
    else if (line.startsWith('-A ')) {
      const [, chain, ...rest] = line.split(' ');
      const m = rules.get(table)!;
      m.set(chain!, [...(m.get(chain!) ?? []), rest.join(' ')]);
    } else if (line.startsWith('-X ')) deleted.get(table)!.add(line.slice(3));
  }
  return { declared, rules, deleted };
}

/**
 * Upstream's `checkIPTablesRuleJumps`: every KUBE-* chain jumped to is declared in the
 * same table and non-empty (KUBE-NODEPORTS may be empty), every declared per-service
 * chain is jumped to, and every chain a rule is appended to is declared.
 */
function checkJumps(t: Test, text: string): void {
  const p = parse(text);
  const problems: string[] = [];
  for (const [table, chains] of p.rules) {
    const declared = p.declared.get(table)!;
    const targets = new Set<string>();
    for (const [chain, rs] of chains) {
      if (!declared.has(chain)) problems.push(`${table}: rules appended to undeclared ${chain}`);
      for (const r of rs) {
        const target = / -j (KUBE-\S+)/.exec(` ${r}`)?.[1];
        if (target === undefined) continue;
        targets.add(target);
        if (!declared.has(target)) problems.push(`${table}: ${chain} jumps to undeclared ${target}`);
        else if (target !== 'KUBE-NODEPORTS' && (chains.get(target)?.length ?? 0) === 0) problems.push(`${table}: ${chain} jumps to empty ${target}`);
      }
    }
    for (const c of declared) {
      if (/^KUBE-(SVC|SVL|EXT|FW|SEP)-/.test(c) && !targets.has(c) && !p.deleted.get(table)!.has(c)) problems.push(`${table}: ${c} declared but never jumped to`);
    }
  }
  t.same(problems, [], 'every jump target declared and non-empty, no unused per-service chain');
}

function aLines(text: string): number {
  return text.split('\n').filter((l) => l.startsWith('-A ')).length;
}

t.test('golden IPv4 full render', async (t) => {
  const r = renderIptables(view(), V4);
  t.equal(r.text, GOLDEN_V4);
  t.equal(r.rules, aLines(r.text), 'rules counts the -A lines');
  const declared = parse(r.text).declared.get('nat')!;
  t.same([...r.natChains].sort(), [...declared].filter((c) => /^KUBE-(SVC|SVL|EXT|FW|SEP)-/.test(c)).sort(), 'natChains = declared per-service chains');
  t.notMatch(r.text, /fd00|ns6/, 'the IPv6 service is not in the IPv4 render');
  checkJumps(t, r.text);
});

t.test('golden IPv6 full render', async (t) => {
  const r = renderIptables(view(), V6);
  t.equal(r.text, GOLDEN_V6);
  t.match(r.text, /--to-destination \[fd00:180::1\]:80\n/, 'IPv6 DNAT target bracketed');
  t.match(r.text, /! -d ::1\/128 -j KUBE-NODEPORTS/);
  checkJumps(t, r.text);
});

t.test("chain names are kube-proxy's (kube-proxy.md §2.2 vectors)", async (t) => {
  t.equal(svcChain('ns1/svc1:p80', 'TCP'), 'KUBE-SVC-XPGD46QRK7WJZT7O');
  t.equal(sepChain('ns1/svc1:p80', 'TCP', '10.180.0.1:80'), 'KUBE-SEP-SXIVWICOYRO3J4NJ');
  t.equal(svcChain('kube-system/kube-dns:dns', 'UDP'), 'KUBE-SVC-TCOU7JCQXEZGVUNU');
  t.equal(svcChain('ns4/svc4:p80', 'TCP'), 'KUBE-SVC-4SW47YFZTEDKD3PK');
  const text = renderIptables(view(), V4).text;
  t.match(text, '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O\n');
  t.match(text, '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80\n');
  t.match(text, '-d 172.30.0.10 --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU\n');
});

t.test('probabilities: 1/(n-i) for all but the last endpoint, Go %0.10f', async (t) => {
  const text = renderIptables(view(), V4).text;
  const picks = text.split('\n').filter((l) => l.startsWith('-A KUBE-SVC-AKFUVGUFFVMIM5BS ') && l.includes('-j KUBE-SEP-'));
  t.equal(picks.length, 3, 'the not-ready, not-serving endpoint gets no rule');
  t.match(picks[0], '--probability 0.3333333333 -j');
  t.match(picks[1], '--probability 0.5000000000 -j');
  t.notMatch(picks[2], 'statistic', 'last endpoint always taken');
  t.equal(probability(4), '0.2500000000');
  t.equal(probability(2048), '0.0004882812', 'Go rounds the one binary tie half to even');
});

t.test('no endpoints → REJECT; Local policy without local endpoints → DROP', async (t) => {
  const text = renderIptables(view(), V4).text;
  const filter = text.slice(0, text.indexOf('*nat'));
  t.match(filter, '-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j REJECT\n');
  t.match(filter, '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3002 -j REJECT\n');
  t.match(filter, '-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 has no local endpoints" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j DROP\n');
  t.notMatch(text.slice(text.indexOf('*nat')), /ns2\/svc2|ns3\/svc3/, 'no nat rules for them');

  // eTP=Local with no local endpoint: short-circuit rules stay, outside traffic is dropped.
  const [svc4] = view().filter((p) => p.name === 'svc4');
  const noLocal = { ...svc4!, endpoints: svc4!.endpoints.map((e) => ({ ...e, local: false })) };
  const r = renderIptables([noLocal], V4);
  t.match(r.text, '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns4/svc4:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.44 --dport 80 -j DROP\n');
  t.match(r.text, '-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3004 -j DROP\n');
  t.notMatch(r.text, 'KUBE-SVL-', 'no SVL chain without local endpoints');
  t.notMatch(r.text, /-A KUBE-EXT-\S+ -j /, 'no fall-through from EXT');
  t.match(r.text, '"route LOCAL traffic for ns4/svc4:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-4SW47YFZTEDKD3PK');
  checkJumps(t, r.text);
});

t.test('serving-terminating endpoints are used only when none is ready (KEP-1669)', async (t) => {
  const p = svc({ namespace: 'ns7', name: 'svc7', clusterIP: '172.30.0.47', endpoints: [ep('10.180.0.70', 80, { ready: false, terminating: true }), ep('10.180.0.71', 80, { ready: false, serving: false, terminating: true })] });
  const text = renderIptables([p], V4).text;
  t.match(text, '--to-destination 10.180.0.70:80');
  t.notMatch(text, '10.180.0.71:80');
  const withReady = { ...p, endpoints: [...p.endpoints, ep('10.180.0.72', 80)] };
  const text2 = renderIptables([withReady], V4).text;
  t.notMatch(text2, '10.180.0.70:80');
  t.match(text2, '--to-destination 10.180.0.72:80');
});

t.test('masquerade options', async (t) => {
  const all = renderIptables(view(), { ...V4, masqueradeAll: true }).text;
  t.match(all, '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ\n');
  t.notMatch(all, '! -s 10.0.0.0/8');
  const none = renderIptables(view(), { ...V4, clusterCIDRs: [] }).text;
  t.notMatch(none, /cluster IP" -m tcp -p tcp -d 172\.30\.0\.41 --dport 80 .*KUBE-MARK-MASQ/, 'no local detector: no ClusterIP masquerade');
  t.notMatch(none, 'pod traffic for', 'no short-circuit for pod traffic either');
  t.match(none, '-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ\n', 'hairpin stays');
});

t.test('nodePortAddresses: one tail rule per CIDR; /0 matches all', async (t) => {
  const r = renderIptables(view(), { ...V4, nodePortAddresses: ['192.168.1.0/24', '10.1.0.0/16'] }).text;
  const tails = r.split('\n').filter((l) => l.endsWith('-j KUBE-NODEPORTS') && l.startsWith('-A KUBE-SERVICES'));
  t.same(tails, [
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -d 192.168.1.0/24 -j KUBE-NODEPORTS',
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -d 10.1.0.0/16 -j KUBE-NODEPORTS',
  ]);
  const nat = r.slice(r.indexOf('*nat')).split('\n').filter((l) => l.startsWith('-A KUBE-SERVICES'));
  t.match(nat.at(-1), '-j KUBE-NODEPORTS', 'still last in nat KUBE-SERVICES');
  const all = renderIptables(view(), { ...V4, nodePortAddresses: ['0.0.0.0/0'] }).text;
  t.match(all, '-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS\n');
});

t.test('conntrack liberal: no INVALID drop', async (t) => {
  t.notMatch(renderIptables(view(), V4, undefined, { conntrackTCPLiberal: true }).text, '--ctstate INVALID');
  t.match(renderIptables(view(), V4).text, '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n');
});

/** `n` single-endpoint services: n endpoints in all. */
function many(n: number): ProxyPort[] {
  return Array.from({ length: n }, (_, i) =>
    svc({ namespace: 'big', name: `s${i}`, clusterIP: `172.31.${i >> 8}.${i & 255}`, endpoints: [ep(`10.200.${i >> 8}.${i & 255}`, 80)] }),
  );
}

t.test('large-cluster mode (> 1000 endpoints) drops SVC→SEP and SEP comments', async (t) => {
  const small = renderIptables(many(LARGE_CLUSTER_ENDPOINTS), V4).text;
  const big = renderIptables(many(LARGE_CLUSTER_ENDPOINTS + 1), V4).text;
  const sepRules = (text: string) => text.split('\n').filter((l) => /^-A KUBE-SEP-/.test(l) || /^-A KUBE-SVC-\S+ .*-j KUBE-SEP-/.test(l));
  t.ok(sepRules(small).every((l) => l.includes('-m comment')), 'at the threshold: comments kept');
  const bigSep = sepRules(big);
  t.equal(bigSep.length, 3 * (LARGE_CLUSTER_ENDPOINTS + 1));
  t.ok(bigSep.every((l) => !l.includes('-m comment')), 'above it: no comments on SVC→SEP and SEP rules');
  t.match(big, '-A KUBE-SERVICES -m comment --comment "big/s0:p80 cluster IP"', 'other rules keep theirs');
  t.ok(big.length < small.length * 0.9, `smaller input (${big.length} vs ${small.length} bytes)`);
});

t.test('partial sync: only changed services rewritten, stale chains deleted', async (t) => {
  const v1 = view();
  const first = renderIptables(v1, V4);
  // ns1/svc1 loses 10.180.0.2, ns5/svc5 is deleted; kube-dns, ns4 unchanged.
  const v2 = v1
    .filter((p) => p.service !== 'ns5/svc5')
    .map((p) => (p.service === 'ns1/svc1' ? { ...p, endpoints: p.endpoints.slice(0, 1) } : p));
  const r = renderIptables(v2, V4, { full: false, changed: new Set(['ns1/svc1', 'ns5/svc5']), previousChains: first.natChains });
  const p = parse(r.text);
  const nat = p.declared.get('nat')!;
  const removedSep = sepChain('ns1/svc1:p80', 'TCP', '10.180.0.2:80');

  t.ok(nat.has('KUBE-SVC-XPGD46QRK7WJZT7O') && nat.has('KUBE-EXT-XPGD46QRK7WJZT7O') && nat.has('KUBE-SEP-SXIVWICOYRO3J4NJ'), 'changed service declared');
  t.notOk(nat.has('KUBE-SVC-TCOU7JCQXEZGVUNU'), 'unchanged kube-dns not declared (kept as is)');
  t.notOk([...nat].some((c) => c.endsWith('4SW47YFZTEDKD3PK')), 'unchanged ns4 not declared');
  t.notOk(p.rules.get('nat')!.has('KUBE-SVC-TCOU7JCQXEZGVUNU'), 'nor rewritten');
  t.match(r.text, '-j KUBE-SVC-TCOU7JCQXEZGVUNU\n', 'KUBE-SERVICES still fully rewritten, kube-dns included');
  for (const top of ['KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ']) t.ok(nat.has(top), `${top} always declared`);
  t.same([...p.declared.get('filter')!], ['KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL']);

  const stale = [removedSep, 'KUBE-SVC-AKFUVGUFFVMIM5BS', 'KUBE-SEP-OVG45BNNUNQORNNI', 'KUBE-SEP-JBRCQUENYLWGI3D7', 'KUBE-SEP-J4YQCGDLH4BVL3LD'].sort();
  t.same([...p.deleted.get('nat')!].sort(), stale, 'exactly the stale chains get -X');
  for (const c of stale) t.ok(nat.has(c), `${c} declared (flushed) before -X`);
  t.notOk(r.natChains.has(removedSep));
  t.ok(r.natChains.has('KUBE-SVC-TCOU7JCQXEZGVUNU') && r.natChains.has('KUBE-SEP-UKSFD7AGPMPPLUHC'), 'natChains lists unchanged services too');
  t.equal(r.rules, aLines(r.text));
  t.ok(r.rules < first.rules, 'fewer rules written than a full sync');

  // A partial sync with nothing changed writes no per-service chain at all.
  const idle = renderIptables(v2, V4, { full: false, changed: new Set(), previousChains: r.natChains });
  t.notMatch(idle.text, /^:KUBE-(SVC|SVL|EXT|SEP)-/m);
  t.notMatch(idle.text, /^-X /m);
  t.same([...idle.natChains].sort(), [...r.natChains].sort());
  // previousChains that are not service chains are never touched.
  const foreign = renderIptables(v2, V4, { full: true, changed: new Set(), previousChains: new Set(['KUBE-FIREWALL', 'OTHER']) });
  t.notMatch(foreign.text, /^-X /m);
});

const netns = (t: Test): string | undefined => scratchNetns(t, 'cdns-iptr', 'iptables-restore', 'iptables');

function restoreTest(ns: string, tool: string, text: string): { code: number; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, tool, '--test', '--noflush'], { input: text, encoding: 'utf8' });
  return { code: r.status ?? -1, stderr: r.stderr };
}

t.test('iptables-restore --test accepts the full renders', async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  const v4 = restoreTest(ns, 'iptables-restore', renderIptables(view(), V4).text);
  t.equal(v4.code, 0, `iptables-restore: ${v4.stderr}`);
  const v6 = restoreTest(ns, 'ip6tables-restore', renderIptables(view(), V6).text);
  t.equal(v6.code, 0, `ip6tables-restore: ${v6.stderr}`);
  const other = restoreTest(ns, 'iptables-restore', renderIptables(view(), { ...V4, masqueradeAll: true, nodePortAddresses: ['192.168.1.0/24', '10.1.0.0/16'] }).text);
  t.equal(other.code, 0, `masqueradeAll + nodePortAddresses: ${other.stderr}`);
  const big = restoreTest(ns, 'iptables-restore', renderIptables(many(LARGE_CLUSTER_ENDPOINTS + 1), V4).text);
  t.equal(big.code, 0, `large-cluster mode: ${big.stderr}`);
  // And it is not a rubber stamp: a malformed rule is refused. (With the nf_tables
  // backend --test does not resolve jump targets; checkJumps above covers those.)
  const bad = restoreTest(ns, 'iptables-restore', renderIptables(view(), V4).text.replace('-d 172.30.0.41 ', '-d 172.30.0.300 '));
  t.not(bad.code, 0, 'a bad address is rejected');
  t.match(bad.stderr, '172.30.0.300');
  // Nothing was committed by --test.
  const save = execFileSync('ip', ['netns', 'exec', ns, 'iptables-save'], { encoding: 'utf8' });
  t.notMatch(save, 'KUBE-');
});
