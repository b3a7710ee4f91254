/**
 * Golden tests of the nftables renderer (src/proxy/nftables.ts) against the rules
 * kube-proxy's nftables proxier writes (kube-proxy.md §3, §4.4; the chain names are the
 * vectors of its proxier_test.go / knftables dumps), the partial-sync bookkeeping
 * (only changed Services touched, element diffs, stale chains and sets), and a kernel
 * check: `nft -c -f` accepts full and partial renders, in a fresh network namespace
 * (root only).
 */
import { spawnSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { requireTool } from '../helpers/cli.js';
import { nftEndpointBase, nftServiceBase } from '../../src/proxy/names.js';
import {
  NFT_TABLE,
  renderNftables,
  renderStaleChainDeletion,
  stateElements,
  stateFromListing,
  type NftRender,
} from '../../src/proxy/nftables.js';
import type { ProxyEndpoint, ProxyPort, RulesOptions } from '../../src/proxy/types.js';

function ep(ip: string, port: number, more: Partial<ProxyEndpoint> = {}): ProxyEndpoint {
  const key = ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
  return { ip, port, key, ready: true, serving: true, terminating: false, local: false, ...more };
}

function svc(o: Partial<ProxyPort> & Pick<ProxyPort, 'namespace' | 'name' | 'clusterIP'>): ProxyPort {
  const portName = o.portName ?? 'p80';
  return {
    service: `${o.namespace}/${o.name}`,
    spn: `${o.namespace}/${o.name}${portName === '' ? '' : `:${portName}`}`,
    portName,
    protocol: 'TCP',
    family: 4,
    port: 80,
    nodePort: 0,
    externalIPs: [],
    affinitySeconds: 0,
    internalLocal: false,
    externalLocal: false,
    endpoints: [],
    ...o,
  };
}

const V4: RulesOptions = { family: 4, clusterCIDRs: ['10.0.0.0/8'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: ['172.30.0.0/16'] };
const V6: RulesOptions = { family: 6, clusterCIDRs: ['fd00:10::/64'], masqueradeAll: false, nodePortAddresses: [], serviceCIDRs: ['fd00:172:30::/112'] };
const NONE = new Set<string>();

// The fixed view: one Service per case the renderer distinguishes.
/** kube-proxy.md §3.4's service: 2 endpoints, ClientIP affinity, NodePort, cluster CIDR. */
const svc1 = svc({ namespace: 'ns1', name: 'svc1', clusterIP: '172.30.0.41', nodePort: 3001, affinitySeconds: 10800, endpoints: [ep('10.180.0.1', 80), ep('10.180.0.2', 80)] });
/** No endpoints at all: reject, for the ClusterIP, the external IP and the NodePort. */
const svc2 = svc({ namespace: 'ns2', name: 'svc2', clusterIP: '172.30.0.42', nodePort: 3002, externalIPs: ['192.168.99.22'] });
/** internalTrafficPolicy Local, only a remote endpoint: drop. */
const svc3 = svc({ namespace: 'ns3', name: 'svc3', clusterIP: '172.30.0.43', internalLocal: true, endpoints: [ep('10.180.0.3', 80)] });
/** externalTrafficPolicy Local with a local endpoint (kube-proxy's svc4 vectors). */
const svc4 = svc({
  namespace: 'ns4',
  name: 'svc4',
  clusterIP: '172.30.0.44',
  nodePort: 3004,
  externalIPs: ['192.168.99.44'],
  externalLocal: true,
  endpoints: [ep('10.180.0.4', 80, { local: true }), ep('10.180.0.5', 80)],
});
/** 3 endpoints in string order (10.180.0.10 sorts first), kube-proxy's svc5 names. */
const svc5 = svc({ namespace: 'ns5', name: 'svc5', clusterIP: '172.30.0.45', endpoints: [ep('10.180.0.10', 80), ep('10.180.0.2', 80), ep('10.180.0.3', 80)] });
/** UDP. */
const dns = svc({ namespace: 'kube-system', name: 'kube-dns', portName: 'dns', protocol: 'UDP', clusterIP: '172.30.0.10', port: 53, endpoints: [ep('10.180.0.9', 53)] });
/** IPv6, kube-proxy's IPv6 vectors. */
const v6svc1 = svc({ namespace: 'ns1', name: 'svc1', family: 6, clusterIP: 'fd00:172:30::41', nodePort: 3001, endpoints: [ep('fd00:10:180::1', 80), ep('fd00:10:180::2:1', 80)] });

const full = (ports: ProxyPort[], opts: RulesOptions = V4): NftRender => renderNftables(ports, opts, { full: true, changed: NONE });

/** The Service part of a full render: what follows the fixed setup (the render of an empty view). */
function body(r: NftRender, opts: RulesOptions = V4): string {
  const setup = full([], opts).text.split('\n').length - 1;
  return r.text.split('\n').slice(setup).join('\n');
}

/** Lines of inline golden text (leading indentation and blank lines dropped). */
const golden = (s: string): string =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join('\n') + '\n';

/** Commands that count as rules (kube-proxy's "rules written"). */
const countRules = (text: string): number => text.split('\n').filter((l) => /^(add rule|add element|delete element) /.test(l)).length;

t.test('chain names are kube-proxy hashAndTruncate vectors', async (t) => {
  t.equal(`service-${nftServiceBase('ns1', 'svc1', 'TCP', 'p80')}`, 'service-ULMVA6XW-ns1/svc1/tcp/p80');
  t.equal(`endpoint-${nftEndpointBase('ns1', 'svc1', 'TCP', 'p80', '10.180.0.1', 80)}`, 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
  t.equal(`endpoint-${nftEndpointBase('ns1', 'svc1', 'TCP', 'p80', 'fd00:10:180::2:1', 80)}`, 'endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80');
  const text = full([svc1, svc2, svc4, svc5, dns]).text;
  for (const name of [
    'service-ULMVA6XW-ns1/svc1/tcp/p80',
    'external-ULMVA6XW-ns1/svc1/tcp/p80',
    'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80',
    'affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80',
    'service-LAUZTJTB-ns4/svc4/tcp/p80',
    'local-LAUZTJTB-ns4/svc4/tcp/p80',
    'endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80',
    'endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80',
    'service-HVFWP5L3-ns5/svc5/tcp/p80',
    'endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80',
    'service-FY5PMXPG-kube-system/kube-dns/udp/dns',
  ]) {
    t.ok(text.includes(`add chain ip clusterdns ${name}\n`) || text.includes(`add set ip clusterdns ${name} `), name);
  }
  t.equal(NFT_TABLE, 'clusterdns');
});

t.test('fixed chains, sets and maps (setupNFTables), IPv4, every NodePort address', async (t) => {
  const r = full([]);
  t.equal(
    r.text,
    golden(`
      add table ip clusterdns { comment "rules for clusterdns (kube-proxy nftables mode)" ; }
      add chain ip clusterdns filter-input { type filter hook input priority -110 ; }
      flush chain ip clusterdns filter-input
      add chain ip clusterdns filter-forward { type filter hook forward priority -110 ; }
      flush chain ip clusterdns filter-forward
      add chain ip clusterdns filter-output { type filter hook output priority -110 ; }
      flush chain ip clusterdns filter-output
      add chain ip clusterdns filter-output-post-dnat { type filter hook output priority -90 ; }
      flush chain ip clusterdns filter-output-post-dnat
      add chain ip clusterdns nat-prerouting { type nat hook prerouting priority -100 ; }
      flush chain ip clusterdns nat-prerouting
      add chain ip clusterdns nat-output { type nat hook output priority -100 ; }
      flush chain ip clusterdns nat-output
      add chain ip clusterdns nat-postrouting { type nat hook postrouting priority 100 ; }
      flush chain ip clusterdns nat-postrouting
      add chain ip clusterdns nodeport-endpoints-check
      flush chain ip clusterdns nodeport-endpoints-check
      add rule ip clusterdns filter-input ct state new jump nodeport-endpoints-check
      add chain ip clusterdns service-endpoints-check
      flush chain ip clusterdns service-endpoints-check
      add rule ip clusterdns filter-input ct state new jump service-endpoints-check
      add rule ip clusterdns filter-forward ct state new jump service-endpoints-check
      add rule ip clusterdns filter-output ct state new jump service-endpoints-check
      add chain ip clusterdns services
      flush chain ip clusterdns services
      add rule ip clusterdns nat-output jump services
      add rule ip clusterdns nat-prerouting jump services
      add chain ip clusterdns masquerading
      flush chain ip clusterdns masquerading
      add rule ip clusterdns nat-postrouting jump masquerading
      add chain ip clusterdns cluster-ips-check
      flush chain ip clusterdns cluster-ips-check
      add rule ip clusterdns filter-forward ct state new jump cluster-ips-check
      add rule ip clusterdns filter-output-post-dnat ct state new jump cluster-ips-check
      add chain ip clusterdns mark-for-masquerade
      flush chain ip clusterdns mark-for-masquerade
      add rule ip clusterdns mark-for-masquerade mark set mark or 0x00004000
      add rule ip clusterdns masquerading mark and 0x00004000 == 0 return
      add rule ip clusterdns masquerading mark set mark xor 0x00004000
      add rule ip clusterdns masquerading masquerade fully-random
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
      add rule ip clusterdns cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
      add rule ip clusterdns cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"
      add set ip clusterdns nodeport-ips { type ipv4_addr ; flags interval ; auto-merge ; comment "IPs that accept NodePort traffic" ; }
      delete set ip clusterdns nodeport-ips
      add map ip clusterdns no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
      add map ip clusterdns no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
      add chain ip clusterdns reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
      flush chain ip clusterdns reject-chain
      add rule ip clusterdns reject-chain reject
      add rule ip clusterdns service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
      add rule ip clusterdns nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
      add map ip clusterdns service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
      add map ip clusterdns service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
      add rule ip clusterdns services ip daddr . meta l4proto . th dport vmap @service-ips
      add rule ip clusterdns services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
      flush set ip clusterdns cluster-ips
      flush map ip clusterdns service-ips
      flush map ip clusterdns service-nodeports
      flush map ip clusterdns no-endpoint-services
      flush map ip clusterdns no-endpoint-nodeports
    `),
  );
  t.equal(r.rules, countRules(r.text));
  t.notMatch(r.text, /firewall/, 'no LoadBalancer IPs in our view: no firewall-check, firewall-ips, filter-prerouting');
  t.ok(r.full);
});

t.test('fixed part, IPv6 with nodePortAddresses and no service CIDRs; base chains reset once', async (t) => {
  const opts: RulesOptions = { ...V6, nodePortAddresses: ['fd00:1::/64', '2001:db8::1/128'], serviceCIDRs: [] };
  const r = renderNftables([], opts, { full: true, changed: NONE, resetBaseChains: true });
  const lines = r.text.split('\n');
  t.same(lines.slice(1, 15), [
    'add chain ip6 clusterdns filter-input',
    'delete chain ip6 clusterdns filter-input',
    'add chain ip6 clusterdns filter-forward',
    'delete chain ip6 clusterdns filter-forward',
    'add chain ip6 clusterdns filter-output',
    'delete chain ip6 clusterdns filter-output',
    'add chain ip6 clusterdns filter-output-post-dnat',
    'delete chain ip6 clusterdns filter-output-post-dnat',
    'add chain ip6 clusterdns nat-prerouting',
    'delete chain ip6 clusterdns nat-prerouting',
    'add chain ip6 clusterdns nat-output',
    'delete chain ip6 clusterdns nat-output',
    'add chain ip6 clusterdns nat-postrouting',
    'delete chain ip6 clusterdns nat-postrouting',
  ], 'resetBaseChains: add + delete each base chain first, so changed priorities apply');
  for (const l of [
    'add set ip6 clusterdns cluster-ips { type ipv6_addr ; comment "Active ClusterIPs" ; }',
    'add rule ip6 clusterdns cluster-ips-check ip6 daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
    'add set ip6 clusterdns nodeport-ips { type ipv6_addr ; flags interval ; auto-merge ; comment "IPs that accept NodePort traffic" ; }',
    'flush set ip6 clusterdns nodeport-ips',
    'add element ip6 clusterdns nodeport-ips { fd00:1::/64, 2001:db8::1/128 }',
    'add rule ip6 clusterdns nodeport-endpoints-check ip6 daddr @nodeport-ips fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports',
    'add rule ip6 clusterdns services ip6 daddr . meta l4proto . th dport vmap @service-ips',
    'add rule ip6 clusterdns services ip6 daddr @nodeport-ips fib daddr type local meta l4proto . th dport vmap @service-nodeports',
    'add map ip6 clusterdns service-ips { type ipv6_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
  ]) {
    t.ok(lines.includes(l), l);
  }
  t.notOk(r.text.includes('delete set ip6 clusterdns nodeport-ips'), 'nodeport-ips kept when NodePort addresses are given');
  t.notOk(r.text.includes('drop comment "Drop traffic to unallocated ClusterIPs"'), 'no service CIDRs, no drop rule');
  t.notOk(r.text.includes('!= ::1'), 'no fib-local catch-all when NodePort addresses are given');
  const all = full([], { ...V6, nodePortAddresses: ['::/0'] }).text;
  t.ok(all.includes('add rule ip6 clusterdns services fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports'), '::/0 = every local address');
  t.ok(all.includes('delete set ip6 clusterdns nodeport-ips'));
});

t.test('golden: 2 endpoints, affinity, NodePort, cluster CIDR', async (t) => {
  const r = full([svc1]);
  t.equal(
    body(r),
    golden(`
      add chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      flush chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      add chain ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      flush chain ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      add chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      flush chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      add chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
      flush chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
      add set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
      add set ip clusterdns affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
      add rule ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
      add rule ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 jump mark-for-masquerade
      add rule ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 goto service-ULMVA6XW-ns1/svc1/tcp/p80
      add rule ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 ip saddr @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      add rule ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 ip saddr @affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      add rule ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80, 1 : goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 }
      add rule ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
      add rule ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 update @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { ip saddr }
      add rule ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
      add rule ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
      add rule ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 update @affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 { ip saddr }
      add rule ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80
      add element ip clusterdns cluster-ips { 172.30.0.41 }
      add element ip clusterdns service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
      add element ip clusterdns service-nodeports { tcp . 3001 : goto external-ULMVA6XW-ns1/svc1/tcp/p80 }
    `),
  );
  t.equal(r.rules, countRules(r.text));
  const s = r.state.services.get('ns1/svc1');
  t.same(s?.chains, [
    'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80',
    'endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80',
    'service-ULMVA6XW-ns1/svc1/tcp/p80',
    'external-ULMVA6XW-ns1/svc1/tcp/p80',
  ]);
  t.same([...(s?.sets ?? [])], [
    ['affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80', 10800],
    ['affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80', 10800],
  ]);
  t.same(stateElements(r.state, 'service-nodeports'), [{ container: 'service-nodeports', key: 'tcp . 3001', value: 'goto external-ULMVA6XW-ns1/svc1/tcp/p80', comment: '' }]);
});

t.test('golden: no endpoints: reject through no-endpoint-services / no-endpoint-nodeports', async (t) => {
  t.equal(
    body(full([svc2])),
    golden(`
      add element ip clusterdns cluster-ips { 172.30.0.42 }
      add element ip clusterdns no-endpoint-services { 172.30.0.42 . tcp . 80 comment "ns2/svc2:p80" : goto reject-chain }
      add element ip clusterdns no-endpoint-services { 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : goto reject-chain }
      add element ip clusterdns no-endpoint-nodeports { tcp . 3002 comment "ns2/svc2:p80" : goto reject-chain }
    `),
  );
  // Not-ready endpoints are no endpoints.
  const notReady = svc({ ...svc2, endpoints: [ep('10.180.0.2', 80, { ready: false, serving: false })] });
  t.equal(body(full([notReady])), body(full([svc2])), 'a not-ready, not-serving endpoint is not used');
});

t.test('golden: internalTrafficPolicy Local without local endpoints: drop', async (t) => {
  t.equal(
    body(full([svc3])),
    golden(`
      add element ip clusterdns cluster-ips { 172.30.0.43 }
      add element ip clusterdns no-endpoint-services { 172.30.0.43 . tcp . 80 comment "ns3/svc3:p80" : drop }
    `),
  );
  const withLocal = svc({ ...svc3, endpoints: [ep('10.180.0.3', 80, { local: true }), ep('10.180.0.6', 80)] });
  const text = body(full([withLocal]));
  t.match(text, /add element ip clusterdns service-ips \{ 172\.30\.0\.43 \. tcp \. 80 : goto local-[A-Z0-9]{8}-ns3\/svc3\/tcp\/p80 \}/, 'a local endpoint: ClusterIP goes to the local- chain');
  t.match(text, /numgen random mod 1 vmap \{ 0 : goto endpoint-[A-Z0-9]{8}-ns3\/svc3\/tcp\/p80__10\.180\.0\.3\/80 \}/);
  t.notMatch(text, /10\.180\.0\.6/, 'the remote endpoint has no chain');
  t.notMatch(text, /service-[A-Z0-9]{8}-ns3/, 'no cluster-policy chain');
});

t.test('golden: UDP with masqueradeAll', async (t) => {
  const opts = { ...V4, masqueradeAll: true };
  t.equal(
    body(full([dns], opts), opts),
    golden(`
      add chain ip clusterdns endpoint-5UTEUMF5-kube-system/kube-dns/udp/dns__10.180.0.9/53
      flush chain ip clusterdns endpoint-5UTEUMF5-kube-system/kube-dns/udp/dns__10.180.0.9/53
      add chain ip clusterdns service-FY5PMXPG-kube-system/kube-dns/udp/dns
      flush chain ip clusterdns service-FY5PMXPG-kube-system/kube-dns/udp/dns
      add rule ip clusterdns service-FY5PMXPG-kube-system/kube-dns/udp/dns ip daddr 172.30.0.10 udp dport 53 jump mark-for-masquerade
      add rule ip clusterdns service-FY5PMXPG-kube-system/kube-dns/udp/dns numgen random mod 1 vmap { 0 : goto endpoint-5UTEUMF5-kube-system/kube-dns/udp/dns__10.180.0.9/53 }
      add rule ip clusterdns endpoint-5UTEUMF5-kube-system/kube-dns/udp/dns__10.180.0.9/53 ip saddr 10.180.0.9 jump mark-for-masquerade
      add rule ip clusterdns endpoint-5UTEUMF5-kube-system/kube-dns/udp/dns__10.180.0.9/53 meta l4proto udp dnat to 10.180.0.9:53
      add element ip clusterdns cluster-ips { 172.30.0.10 }
      add element ip clusterdns service-ips { 172.30.0.10 . udp . 53 : goto service-FY5PMXPG-kube-system/kube-dns/udp/dns }
    `),
  );
});

t.test('golden: IPv6', async (t) => {
  t.equal(
    body(full([v6svc1], V6), V6),
    golden(`
      add chain ip6 clusterdns endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80
      flush chain ip6 clusterdns endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80
      add chain ip6 clusterdns endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80
      flush chain ip6 clusterdns endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80
      add chain ip6 clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      flush chain ip6 clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      add chain ip6 clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
      flush chain ip6 clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
      add rule ip6 clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 ip6 daddr fd00:172:30::41 tcp dport 80 ip6 saddr != fd00:10::/64 jump mark-for-masquerade
      add rule ip6 clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 jump mark-for-masquerade
      add rule ip6 clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 goto service-ULMVA6XW-ns1/svc1/tcp/p80
      add rule ip6 clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80, 1 : goto endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80 }
      add rule ip6 clusterdns endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80 ip6 saddr fd00:10:180::1 jump mark-for-masquerade
      add rule ip6 clusterdns endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80 meta l4proto tcp dnat to [fd00:10:180::1]:80
      add rule ip6 clusterdns endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80 ip6 saddr fd00:10:180::2:1 jump mark-for-masquerade
      add rule ip6 clusterdns endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80 meta l4proto tcp dnat to [fd00:10:180::2:1]:80
      add element ip6 clusterdns cluster-ips { fd00:172:30::41 }
      add element ip6 clusterdns service-ips { fd00:172:30::41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
      add element ip6 clusterdns service-nodeports { tcp . 3001 : goto external-ULMVA6XW-ns1/svc1/tcp/p80 }
    `),
  );
  t.equal(body(full([svc1], V6), V6), '', 'ports of the other family are not rendered');
});

t.test('golden: 3 endpoints, numgen mod 3 in sorted endpoint order, no cluster CIDR', async (t) => {
  const opts = { ...V4, clusterCIDRs: [] };
  t.equal(
    body(full([svc5], opts), opts),
    golden(`
      add chain ip clusterdns endpoint-OZBCP53U-ns5/svc5/tcp/p80__10.180.0.10/80
      flush chain ip clusterdns endpoint-OZBCP53U-ns5/svc5/tcp/p80__10.180.0.10/80
      add chain ip clusterdns endpoint-76FQEI5T-ns5/svc5/tcp/p80__10.180.0.2/80
      flush chain ip clusterdns endpoint-76FQEI5T-ns5/svc5/tcp/p80__10.180.0.2/80
      add chain ip clusterdns endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
      flush chain ip clusterdns endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
      add chain ip clusterdns service-HVFWP5L3-ns5/svc5/tcp/p80
      flush chain ip clusterdns service-HVFWP5L3-ns5/svc5/tcp/p80
      add rule ip clusterdns service-HVFWP5L3-ns5/svc5/tcp/p80 numgen random mod 3 vmap { 0 : goto endpoint-OZBCP53U-ns5/svc5/tcp/p80__10.180.0.10/80, 1 : goto endpoint-76FQEI5T-ns5/svc5/tcp/p80__10.180.0.2/80, 2 : goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 }
      add rule ip clusterdns endpoint-OZBCP53U-ns5/svc5/tcp/p80__10.180.0.10/80 ip saddr 10.180.0.10 jump mark-for-masquerade
      add rule ip clusterdns endpoint-OZBCP53U-ns5/svc5/tcp/p80__10.180.0.10/80 meta l4proto tcp dnat to 10.180.0.10:80
      add rule ip clusterdns endpoint-76FQEI5T-ns5/svc5/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
      add rule ip clusterdns endpoint-76FQEI5T-ns5/svc5/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80
      add rule ip clusterdns endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
      add rule ip clusterdns endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
      add element ip clusterdns cluster-ips { 172.30.0.45 }
      add element ip clusterdns service-ips { 172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80 }
    `),
  );
});

t.test('golden: externalTrafficPolicy Local, with and without a local endpoint', async (t) => {
  t.equal(
    body(full([svc4])),
    golden(`
      add chain ip clusterdns endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
      flush chain ip clusterdns endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
      add chain ip clusterdns endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
      flush chain ip clusterdns endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
      add chain ip clusterdns service-LAUZTJTB-ns4/svc4/tcp/p80
      flush chain ip clusterdns service-LAUZTJTB-ns4/svc4/tcp/p80
      add chain ip clusterdns local-LAUZTJTB-ns4/svc4/tcp/p80
      flush chain ip clusterdns local-LAUZTJTB-ns4/svc4/tcp/p80
      add chain ip clusterdns external-LAUZTJTB-ns4/svc4/tcp/p80
      flush chain ip clusterdns external-LAUZTJTB-ns4/svc4/tcp/p80
      add rule ip clusterdns service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
      add rule ip clusterdns external-LAUZTJTB-ns4/svc4/tcp/p80 ip saddr 10.0.0.0/8 goto service-LAUZTJTB-ns4/svc4/tcp/p80 comment "short-circuit pod traffic"
      add rule ip clusterdns external-LAUZTJTB-ns4/svc4/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
      add rule ip clusterdns external-LAUZTJTB-ns4/svc4/tcp/p80 fib saddr type local goto service-LAUZTJTB-ns4/svc4/tcp/p80 comment "short-circuit local traffic"
      add rule ip clusterdns external-LAUZTJTB-ns4/svc4/tcp/p80 goto local-LAUZTJTB-ns4/svc4/tcp/p80
      add rule ip clusterdns service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80, 1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }
      add rule ip clusterdns local-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 }
      add rule ip clusterdns endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 ip saddr 10.180.0.4 jump mark-for-masquerade
      add rule ip clusterdns endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 meta l4proto tcp dnat to 10.180.0.4:80
      add rule ip clusterdns endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 ip saddr 10.180.0.5 jump mark-for-masquerade
      add rule ip clusterdns endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 meta l4proto tcp dnat to 10.180.0.5:80
      add element ip clusterdns cluster-ips { 172.30.0.44 }
      add element ip clusterdns service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }
      add element ip clusterdns service-ips { 192.168.99.44 . tcp . 80 : goto external-LAUZTJTB-ns4/svc4/tcp/p80 }
      add element ip clusterdns service-nodeports { tcp . 3004 : goto external-LAUZTJTB-ns4/svc4/tcp/p80 }
    `),
  );
  // kube-proxy's proxier_test svc2: eTP=Local, the only endpoint remote. External traffic
  // that was not short-circuited is dropped (no-endpoint elements with `drop`).
  const remote = svc({ namespace: 'ns2', name: 'svc2', clusterIP: '172.30.0.42', externalIPs: ['192.168.99.22'], nodePort: 3002, externalLocal: true, endpoints: [ep('10.180.0.2', 80)] });
  t.equal(
    body(full([remote])),
    golden(`
      add chain ip clusterdns endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
      flush chain ip clusterdns endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
      add chain ip clusterdns service-42NFTM6N-ns2/svc2/tcp/p80
      flush chain ip clusterdns service-42NFTM6N-ns2/svc2/tcp/p80
      add chain ip clusterdns external-42NFTM6N-ns2/svc2/tcp/p80
      flush chain ip clusterdns external-42NFTM6N-ns2/svc2/tcp/p80
      add rule ip clusterdns service-42NFTM6N-ns2/svc2/tcp/p80 ip daddr 172.30.0.42 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
      add rule ip clusterdns external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"
      add rule ip clusterdns external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
      add rule ip clusterdns external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"
      add rule ip clusterdns service-42NFTM6N-ns2/svc2/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 }
      add rule ip clusterdns endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
      add rule ip clusterdns endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80
      add element ip clusterdns cluster-ips { 172.30.0.42 }
      add element ip clusterdns service-ips { 172.30.0.42 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80 }
      add element ip clusterdns service-ips { 192.168.99.22 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
      add element ip clusterdns no-endpoint-services { 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop }
      add element ip clusterdns service-nodeports { tcp . 3002 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
      add element ip clusterdns no-endpoint-nodeports { tcp . 3002 comment "ns2/svc2:p80" : drop }
    `),
  );
});

t.test('every jump/goto target is declared and non-empty; every service chain is used (kube-proxy.md §4.4)', async (t) => {
  for (const [opts, ports] of [
    [V4, [svc1, svc2, svc3, svc4, svc5, dns]],
    [{ ...V4, clusterCIDRs: [], masqueradeAll: true }, [svc1, svc2, svc3, svc4, svc5, dns]],
    [V6, [v6svc1]],
  ] as const) {
    const text = full([...ports], opts).text;
    const declared = new Set([...text.matchAll(/^add chain ip6? clusterdns (\S+)/gm)].map((m) => m[1]!));
    const withRules = new Set([...text.matchAll(/^add rule ip6? clusterdns (\S+) /gm)].map((m) => m[1]!));
    const targets = new Set([...text.matchAll(/(?:jump|goto) ([^\s,}]+)/g)].map((m) => m[1]!));
    for (const target of targets) {
      t.ok(declared.has(target), `${target} declared`);
      t.ok(withRules.has(target), `${target} not empty`);
    }
    for (const chain of declared) if (chain.includes('/')) t.ok(targets.has(chain), `${chain} referenced`);
  }
});

t.test('terminating endpoints only when none is ready (KEP-1669)', async (t) => {
  const term = { ready: false, serving: true, terminating: true };
  const mixed = svc({ ...svc5, endpoints: [ep('10.180.0.10', 80, term), ep('10.180.0.2', 80), ep('10.180.0.3', 80, { ready: false, serving: false })] });
  t.match(body(full([mixed])), /numgen random mod 1 vmap \{ 0 : goto endpoint-76FQEI5T-ns5\/svc5\/tcp\/p80__10\.180\.0\.2\/80 \}/, 'ready wins over terminating');
  const onlyTerm = svc({ ...svc5, endpoints: [ep('10.180.0.10', 80, term), ep('10.180.0.3', 80, { ready: false, serving: false })] });
  t.match(body(full([onlyTerm])), /numgen random mod 1 vmap \{ 0 : goto endpoint-OZBCP53U-ns5\/svc5\/tcp\/p80__10\.180\.0\.10\/80 \}/, 'serving-terminating when none ready');
});

t.test('partial render: only the changed Service, element diffs, stale chains and sets', async (t) => {
  const svc2b = svc({ namespace: 'ns2', name: 'svc2', clusterIP: '172.30.0.42', externalIPs: ['192.168.99.22'], nodePort: 3002, externalLocal: true, endpoints: [ep('10.180.0.2', 80)] });
  const a = full([svc1, svc2b]);

  // svc1: endpoint 10.180.0.2 replaced by 10.180.0.3; svc2 untouched.
  const svc1b = svc({ ...svc1, endpoints: [ep('10.180.0.1', 80), ep('10.180.0.3', 80)] });
  const b = renderNftables([svc1b, svc2b], V4, { full: false, changed: new Set(['ns1/svc1']), previous: a.state });
  t.notOk(b.full);
  t.equal(
    b.text,
    golden(`
      add chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      flush chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      add chain ip clusterdns endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
      flush chain ip clusterdns endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
      add chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      flush chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      add chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
      flush chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
      add set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
      add set ip clusterdns affinity-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
      add rule ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
      add rule ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 jump mark-for-masquerade
      add rule ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 goto service-ULMVA6XW-ns1/svc1/tcp/p80
      add rule ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 ip saddr @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      add rule ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 ip saddr @affinity-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 goto endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
      add rule ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80, 1 : goto endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 }
      add rule ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
      add rule ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 update @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { ip saddr }
      add rule ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
      add rule ip clusterdns endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
      add rule ip clusterdns endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 update @affinity-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 { ip saddr }
      add rule ip clusterdns endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
      flush chain ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      delete set ip clusterdns affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      delete chain ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
    `),
    'svc1 chains rewritten, the gone endpoint chain and affinity set deleted, no element touched',
  );
  t.notMatch(b.text, /svc2/, 'svc2 untouched');
  t.equal(b.rules, countRules(b.text));
  t.equal(b.state.services.get('ns2/svc2'), a.state.services.get('ns2/svc2'), 'unchanged Services carried over');

  // svc2 deleted: its elements deleted, its chains flushed then deleted.
  const c = renderNftables([svc1b], V4, { full: false, changed: new Set(['ns2/svc2']), previous: b.state });
  t.equal(
    c.text,
    golden(`
      delete element ip clusterdns cluster-ips { 172.30.0.42 }
      delete element ip clusterdns service-ips { 172.30.0.42 . tcp . 80 }
      delete element ip clusterdns service-ips { 192.168.99.22 . tcp . 80 }
      delete element ip clusterdns no-endpoint-services { 192.168.99.22 . tcp . 80 }
      delete element ip clusterdns service-nodeports { tcp . 3002 }
      delete element ip clusterdns no-endpoint-nodeports { tcp . 3002 }
      flush chain ip clusterdns endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
      flush chain ip clusterdns service-42NFTM6N-ns2/svc2/tcp/p80
      flush chain ip clusterdns external-42NFTM6N-ns2/svc2/tcp/p80
      delete chain ip clusterdns endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
      delete chain ip clusterdns service-42NFTM6N-ns2/svc2/tcp/p80
      delete chain ip clusterdns external-42NFTM6N-ns2/svc2/tcp/p80
    `),
  );
  t.notOk(c.state.services.has('ns2/svc2'));
  t.same(stateElements(c.state, 'cluster-ips').map((e) => e.key), ['172.30.0.41']);

  // svc1 loses all endpoints: the verdict moves from service-ips to no-endpoint-services.
  const svc1c = svc({ ...svc1, endpoints: [] });
  const d = renderNftables([svc1c], V4, { full: false, changed: new Set(['ns1/svc1']), previous: c.state });
  t.equal(
    d.text,
    golden(`
      delete element ip clusterdns service-ips { 172.30.0.41 . tcp . 80 }
      delete element ip clusterdns service-nodeports { tcp . 3001 }
      add element ip clusterdns no-endpoint-services { 172.30.0.41 . tcp . 80 comment "ns1/svc1:p80" : goto reject-chain }
      add element ip clusterdns no-endpoint-nodeports { tcp . 3001 comment "ns1/svc1:p80" : goto reject-chain }
      flush chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      flush chain ip clusterdns endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
      flush chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      flush chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
      delete set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      delete set ip clusterdns affinity-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
      delete chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      delete chain ip clusterdns endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
      delete chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      delete chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
    `),
  );

  // A new Service: its chains and elements only.
  const e = renderNftables([svc1c, dns], V4, { full: false, changed: new Set(['kube-system/kube-dns']), previous: d.state });
  t.equal(e.text, body(full([dns])), 'a new Service renders as in a full sync, without the fixed part');

  // Listed as changed but the same: chains rewritten, no element churn.
  const f = renderNftables([svc1c, dns], V4, { full: false, changed: new Set(['kube-system/kube-dns']), previous: e.state });
  t.notMatch(f.text, /element/);
  t.match(f.text, /^flush chain ip clusterdns service-FY5PMXPG-kube-system\/kube-dns\/udp\/dns$/m);

  // Nothing changed: nothing to do.
  const g = renderNftables([svc1c, dns], V4, { full: false, changed: NONE, previous: f.state });
  t.equal(g.text, '');
  t.equal(g.rules, 0);

  // Other options: a partial request renders full.
  const h = renderNftables([svc1c, dns], { ...V4, masqueradeAll: true }, { full: false, changed: NONE, previous: g.state });
  t.ok(h.full, 'options changed: full render');
  t.match(h.text, /^add table ip clusterdns/);
});

t.test('partial render: affinity timeout change recreates the sets; ClientIP off deletes them', async (t) => {
  const a = full([svc1]);
  const shorter = svc({ ...svc1, affinitySeconds: 60 });
  const b = renderNftables([shorter], V4, { full: false, changed: new Set(['ns1/svc1']), previous: a.state });
  const lines = b.text.split('\n');
  const del = lines.indexOf('delete set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
  const add = lines.indexOf('add set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }');
  const flush = lines.indexOf('flush chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80');
  t.ok(flush >= 0 && del > flush && add > del, 'flush the chains using it, delete, add with the new timeout');
  const off = svc({ ...svc1, affinitySeconds: 0 });
  const c = renderNftables([off], V4, { full: false, changed: new Set(['ns1/svc1']), previous: b.state });
  t.match(c.text, /^delete set ip clusterdns affinity-5OJB2KTY-ns1\/svc1\/tcp\/p80__10\.180\.0\.1\/80$/m);
  t.match(c.text, /^delete set ip clusterdns affinity-2ZNDXFAB-ns1\/svc1\/tcp\/p80__10\.180\.0\.2\/80$/m);
  t.notMatch(c.text, /@affinity/);
});

t.test('two Services claiming one element: the first keeps it, the other takes over when it leaves', async (t) => {
  const x = svc({ namespace: 'a', name: 'x', clusterIP: '172.30.0.50', externalIPs: ['192.168.1.1'], endpoints: [ep('10.180.1.1', 80)] });
  const y = svc({ namespace: 'b', name: 'y', clusterIP: '172.30.0.51', externalIPs: ['192.168.1.1'], endpoints: [ep('10.180.1.2', 80)] });
  const a = full([x, y]);
  const owner = (s: typeof a.state): string | undefined => stateElements(s, 'service-ips').find((e) => e.key === '192.168.1.1 . tcp . 80')?.value;
  t.match(owner(a.state), /^goto external-[A-Z0-9]{8}-a\/x\//);
  t.equal(a.text.split('\n').filter((l) => l.includes('{ 192.168.1.1 . tcp . 80')).length, 1, 'added once');
  const b = renderNftables([y], V4, { full: false, changed: new Set(['a/x']), previous: a.state });
  t.match(owner(b.state), /^goto external-[A-Z0-9]{8}-b\/y\//);
  t.match(b.text, /^delete element ip clusterdns service-ips \{ 192\.168\.1\.1 \. tcp \. 80 \}$/m);
  t.match(b.text, /^add element ip clusterdns service-ips \{ 192\.168\.1\.1 \. tcp \. 80 : goto external-[A-Z0-9]{8}-b\/y\/tcp\/p80 \}$/m);
  // y changing while x holds it: nothing happens to the element.
  const c = renderNftables([x, y], V4, { full: false, changed: new Set(['b/y']), previous: a.state });
  t.notMatch(c.text, /192\.168\.1\.1/);
});

t.test('deferred stale chains (kernels < 6.2): flushed now, deleted by a later transaction', async (t) => {
  const a = full([svc1]);
  const one = svc({ ...svc1, endpoints: [ep('10.180.0.1', 80)] });
  const b = renderNftables([one], V4, { full: false, changed: new Set(['ns1/svc1']), previous: a.state, deferStaleChains: true });
  const stale = 'endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80';
  t.match(b.text, new RegExp(`^flush chain ip clusterdns ${stale}$`, 'm'));
  t.notMatch(b.text, /delete chain/);
  t.same([...b.state.staleChains], [stale]);
  t.equal(renderStaleChainDeletion(4, b.state.staleChains), `delete chain ip clusterdns ${stale}\n`);
  // Still stale after an unrelated sync; not flushed again.
  const c = renderNftables([one, dns], V4, { full: false, changed: new Set(['kube-system/kube-dns']), previous: b.state, deferStaleChains: true });
  t.same([...c.state.staleChains], [stale]);
  t.notMatch(c.text, /2ZNDXFAB/);
  // The endpoint comes back before the deletion: the chain is reused, no longer stale.
  const d = renderNftables([svc1, dns], V4, { full: false, changed: new Set(['ns1/svc1']), previous: c.state, deferStaleChains: true });
  t.same([...d.state.staleChains], []);
  t.match(d.text, new RegExp(`^add chain ip clusterdns ${stale}$`, 'm'));
  // A full render (immediate mode) deletes what is left stale.
  const e = renderNftables([dns], V4, { full: false, changed: new Set(['ns1/svc1']), previous: d.state, deferStaleChains: true });
  t.equal(e.state.staleChains.size, 4);
  const f = renderNftables([dns], V4, { full: true, changed: NONE, previous: e.state });
  for (const ch of e.state.staleChains) t.match(f.text, new RegExp(`^delete chain ip clusterdns ${ch.replace(/[./]/g, '\\$&')}$`, 'm'));
  t.equal(f.state.staleChains.size, 0);
});

t.test('full render over a listed table: reuses what it needs, removes the rest', async (t) => {
  const listed = stateFromListing(
    4,
    ['filter-input', 'services', 'service-ULMVA6XW-ns1/svc1/tcp/p80', 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80', 'service-OLD00000-gone/svc/tcp/'],
    [
      { name: 'cluster-ips', timeout: -1 },
      { name: 'affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80', timeout: 10800 },
      { name: 'affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80', timeout: 60 },
      { name: 'affinity-OLD00000-gone/svc/tcp/__10.1.1.1/80', timeout: 10800 },
    ],
  );
  t.same([...listed.staleChains], ['service-ULMVA6XW-ns1/svc1/tcp/p80', 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80', 'service-OLD00000-gone/svc/tcp/']);
  const r = renderNftables([svc1], V4, { full: false, changed: NONE, previous: listed });
  t.ok(r.full, 'a listing is never a base for a partial render');
  const lines = r.text.split('\n');
  t.ok(lines.includes('flush chain ip clusterdns service-OLD00000-gone/svc/tcp/'));
  t.ok(lines.includes('delete chain ip clusterdns service-OLD00000-gone/svc/tcp/'));
  t.ok(lines.includes('delete set ip clusterdns affinity-OLD00000-gone/svc/tcp/__10.1.1.1/80'));
  t.notOk(lines.includes('delete chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80'), 'reused chain kept');
  t.notOk(lines.includes('delete set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80'), 'same timeout: set kept (affinities survive)');
  t.ok(lines.includes('delete set ip clusterdns affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80'), 'other timeout: recreated');
  t.equal(r.state.staleChains.size, 0);
  t.equal(r.state.staleSets.size, 0);
});

// ---- the kernel's opinion ----------------------------------------------------------------

function netns(t: Test): string | undefined {
  if (process.getuid?.() !== 0) {
    if (process.env.CI === 'true') t.fail('network namespaces need root');
    else t.skip('network namespaces need root', () => {});
    return undefined;
  }
  if (!requireTool(t, 'nft', 'nftables')) return undefined;
  const name = `cdns-nftr-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const r = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (r.status !== 0) {
    t.fail(`ip netns add failed: ${r.stderr}`);
    return undefined;
  }
  t.teardown(() => {
    spawnSync('ip', ['netns', 'del', name]);
  });
  return name;
}

function nft(ns: string, args: string[], input?: string): { code: number; err: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', ...args], { input, encoding: 'utf8' });
  return { code: r.status ?? -1, err: r.stderr };
}

t.test('nft -c -f accepts full and partial renders (fresh network namespace)', async (t) => {
  const ns = netns(t);
  if (ns === undefined) return;
  const view4 = [svc1, svc2, svc3, svc4, svc5, dns];
  const opts4: RulesOptions = { ...V4, nodePortAddresses: ['10.0.0.0/8', '192.168.0.0/16'] };
  const v4 = renderNftables(view4, opts4, { full: true, changed: NONE, resetBaseChains: true });
  let r = nft(ns, ['-c', '-f', '-'], v4.text);
  t.equal(r.code, 0, `IPv4 full render: ${r.err}`);
  const v6 = renderNftables([v6svc1, svc({ ...svc4, family: 6, clusterIP: 'fd00:172:30::44', externalIPs: ['2001:db8::44'], affinitySeconds: 30, endpoints: [ep('fd00:10:180::4', 80, { local: true })] })], V6, {
    full: true,
    changed: NONE,
    resetBaseChains: true,
  });
  r = nft(ns, ['-c', '-f', '-'], v6.text);
  t.equal(r.code, 0, `IPv6 full render: ${r.err}`);

  // Partial renders refer to what the full one made: apply it, then check each partial.
  r = nft(ns, ['-f', '-'], v4.text);
  t.equal(r.code, 0, `IPv4 full render applied: ${r.err}`);
  const svc1b = svc({ ...svc1, affinitySeconds: 60, endpoints: [ep('10.180.0.1', 80), ep('10.180.0.3', 80)] });
  const partials: Array<[string, ProxyPort[], string[]]> = [
    ['endpoint replaced, affinity timeout changed', [svc1b, svc2, svc3, svc4, svc5, dns], ['ns1/svc1']],
    ['service deleted', [svc1, svc2, svc3, svc5, dns], ['ns4/svc4']],
    ['endpoints gone', [svc1, svc2, svc3, svc4, svc({ ...svc5, endpoints: [] }), dns], ['ns5/svc5']],
    ['service without endpoints gets one', [svc1, svc({ ...svc2, endpoints: [ep('10.180.0.22', 80)] }), svc3, svc4, svc5, dns], ['ns2/svc2']],
  ];
  for (const [what, ports, changed] of partials) {
    const p = renderNftables(ports, opts4, { full: false, changed: new Set(changed), previous: v4.state });
    t.notOk(p.full, what);
    r = nft(ns, ['-c', '-f', '-'], p.text);
    t.equal(r.code, 0, `partial (${what}): ${r.err}`);
  }
  // And the full render again over the applied one (what a periodic resync sends).
  const again = renderNftables(view4, opts4, { full: true, changed: NONE, previous: v4.state });
  r = nft(ns, ['-c', '-f', '-'], again.text);
  t.equal(r.code, 0, `second full render: ${r.err}`);
});
