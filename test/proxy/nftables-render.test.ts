/**
 * Golden tests of the nftables renderer (src/proxy/nftables.ts) against the rules
 * kube-proxy's nftables proxier writes (kube-proxy.md §3, §4.4; the chain names are the
 * vectors of its proxier_test.go / knftables dumps), in our written form (whole chains,
 * elements by redeclaring their map, the endpoint pick as rules up to RULE_PICK_MAX),
 * the partial-sync bookkeeping (only changed Services touched, element refills, stale
 * chains and sets), the split of large full renders into transactions and of large views
 * into shard tables, and a kernel check: nft accepts full, split, sharded and partial
 * renders, in a fresh network namespace (root only).
 */
import { spawnSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { nftEndpointBase, nftServiceBase } from '../../src/proxy/names.js';
import {
  NFT_TABLE,
  RULE_PICK_MAX,
  qualified,
  renderNftables,
  renderStaleDeletion,
  serviceTable,
  shardCount,
  stateElements,
  stateFromListing,
  streamNftables,
  withoutStale,
  type NftRender,
} from '../../src/proxy/nftables.js';
import type { ProxyEndpoint, ProxyPort, RulesOptions } from '../../src/proxy/types.js';
import { ep, scratchNetns, svc } from './_fixtures.js';



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

/** The five container flushes every full render ends its setup with (checked once, below). */
const CONTAINER_FLUSH = /^flush (set|map) ip6? clusterdns (cluster-ips|service-ips|service-nodeports|no-endpoint-services|no-endpoint-nodeports)$/;

/**
 * The Service part of a full render: what follows the fixed setup (the render of an
 * empty view), without the container flushes.
 */
function body(r: NftRender, opts: RulesOptions = V4): string {
  const setup = full([], opts)
    .text.split('\n')
    .filter((l) => l !== '' && !CONTAINER_FLUSH.test(l)).length;
  return r.text
    .split('\n')
    .slice(setup)
    .filter((l) => !CONTAINER_FLUSH.test(l))
    .join('\n');
}

/** Lines of inline golden text (leading indentation and blank lines dropped; a rule line keeps one tab). */
const golden = (s: string): string =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => (l.startsWith('> ') ? `\t${l.slice(2)}` : l))
    .join('\n') + '\n';

/** Rules (lines inside `add chain X { … }`) and elements (lines inside `elements = { … }`, keys of `delete element`). */
function countRules(text: string): number {
  let n = 0;
  let inBlock = false;
  for (const l of text.split('\n')) {
    if (/^add chain .* \{$/.test(l) || / elements = \{$/.test(l)) inBlock = true;
    else if (l === '}' || l === '} ; }') inBlock = false;
    else if (inBlock) n++;
  }
  return n;
}

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
    t.ok(text.includes(`add chain ip clusterdns ${name} {\n`) || text.includes(`add set ip clusterdns ${name} `), name);
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
      add chain ip clusterdns filter-forward { type filter hook forward priority -110 ; }
      add chain ip clusterdns filter-output { type filter hook output priority -110 ; }
      add chain ip clusterdns filter-output-post-dnat { type filter hook output priority -90 ; }
      add chain ip clusterdns nat-prerouting { type nat hook prerouting priority -100 ; }
      add chain ip clusterdns nat-output { type nat hook output priority -100 ; }
      add chain ip clusterdns nat-postrouting { type nat hook postrouting priority 100 ; }
      add chain ip clusterdns nodeport-endpoints-check
      add chain ip clusterdns service-endpoints-check
      add chain ip clusterdns services
      add chain ip clusterdns masquerading
      add chain ip clusterdns cluster-ips-check
      add chain ip clusterdns mark-for-masquerade
      add chain ip clusterdns reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
      add set ip clusterdns nodeport-ips { type ipv4_addr ; flags interval ; auto-merge ; comment "IPs that accept NodePort traffic" ; }
      delete set ip clusterdns nodeport-ips
      add map ip clusterdns no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
      add map ip clusterdns no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
      add map ip clusterdns service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
      add map ip clusterdns service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
      flush chain ip clusterdns filter-input
      add chain ip clusterdns filter-input {
      > ct state new jump nodeport-endpoints-check
      > ct state new jump service-endpoints-check
      }
      flush chain ip clusterdns filter-forward
      add chain ip clusterdns filter-forward {
      > ct state new jump service-endpoints-check
      > ct state new jump cluster-ips-check
      }
      flush chain ip clusterdns filter-output
      add chain ip clusterdns filter-output {
      > ct state new jump service-endpoints-check
      }
      flush chain ip clusterdns filter-output-post-dnat
      add chain ip clusterdns filter-output-post-dnat {
      > ct state new jump cluster-ips-check
      }
      flush chain ip clusterdns nat-prerouting
      add chain ip clusterdns nat-prerouting {
      > jump services
      }
      flush chain ip clusterdns nat-output
      add chain ip clusterdns nat-output {
      > jump services
      }
      flush chain ip clusterdns nat-postrouting
      add chain ip clusterdns nat-postrouting {
      > jump masquerading
      }
      flush chain ip clusterdns nodeport-endpoints-check
      add chain ip clusterdns nodeport-endpoints-check {
      > ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
      }
      flush chain ip clusterdns service-endpoints-check
      add chain ip clusterdns service-endpoints-check {
      > ip daddr . meta l4proto . th dport vmap @no-endpoint-services
      }
      flush chain ip clusterdns services
      add chain ip clusterdns services {
      > ip daddr . meta l4proto . th dport vmap @service-ips
      > fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
      }
      flush chain ip clusterdns masquerading
      add chain ip clusterdns masquerading {
      > mark and 0x00004000 == 0 return
      > mark set mark xor 0x00004000
      > masquerade fully-random
      }
      flush chain ip clusterdns cluster-ips-check
      add chain ip clusterdns cluster-ips-check {
      > ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
      > ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"
      }
      flush chain ip clusterdns mark-for-masquerade
      add chain ip clusterdns mark-for-masquerade {
      > mark set mark or 0x00004000
      }
      flush chain ip clusterdns reject-chain
      add chain ip clusterdns reject-chain {
      > reject
      }
      flush set ip clusterdns cluster-ips
      flush map ip clusterdns service-ips
      flush map ip clusterdns service-nodeports
      flush map ip clusterdns no-endpoint-services
      flush map ip clusterdns no-endpoint-nodeports
    `),
  );
  t.equal(r.rules, countRules(r.text));
  t.equal(r.rules, 20);
  t.same(r.transactions, [r.text], 'one transaction');
  t.notMatch(r.text, /firewall/, 'no LoadBalancer IPs in our view: no firewall-check, firewall-ips, filter-prerouting');
  t.notMatch(r.text, /^add (rule|element) /m, 'whole chains and redeclared maps: nft needs no chain cache');
  t.ok(r.full);
  t.equal(r.state.shards, 1);
  t.same([...r.state.tables], []);
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
    '\tip6 daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
    'add set ip6 clusterdns nodeport-ips { type ipv6_addr ; flags interval ; auto-merge ; comment "IPs that accept NodePort traffic" ; }',
    'flush set ip6 clusterdns nodeport-ips',
    'add set ip6 clusterdns nodeport-ips { type ipv6_addr ; flags interval ; auto-merge ; comment "IPs that accept NodePort traffic" ; elements = {',
    '\tfd00:1::/64,',
    '\t2001:db8::1/128',
    '\tip6 daddr @nodeport-ips fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports',
    '\tip6 daddr . meta l4proto . th dport vmap @service-ips',
    '\tip6 daddr @nodeport-ips fib daddr type local meta l4proto . th dport vmap @service-nodeports',
    'add map ip6 clusterdns service-ips { type ipv6_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
  ]) {
    t.ok(lines.includes(l), l);
  }
  t.notOk(r.text.includes('delete set ip6 clusterdns nodeport-ips'), 'nodeport-ips kept when NodePort addresses are given');
  t.notOk(r.text.includes('drop comment "Drop traffic to unallocated ClusterIPs"'), 'no service CIDRs, no drop rule');
  t.notOk(r.text.includes('!= ::1'), 'no fib-local catch-all when NodePort addresses are given');
  t.ok(r.state.nodePortIPs);
  const all = full([], { ...V6, nodePortAddresses: ['::/0'] });
  t.ok(all.text.includes('\tfib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports'), '::/0 = every local address');
  t.ok(all.text.includes('delete set ip6 clusterdns nodeport-ips'));
  t.equal(all.state.nodePortIPs, false);
  const again = renderNftables([], { ...V6, nodePortAddresses: ['::/0'] }, { full: true, changed: NONE, previous: all.state });
  t.notOk(again.text.includes('nodeport-ips'), 'known absent: not added and deleted again (a deletion costs nft a chain fetch)');
});

t.test('golden: 2 endpoints, affinity, NodePort, cluster CIDR', async (t) => {
  const r = full([svc1]);
  t.equal(
    body(r),
    golden(`
      add set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
      add set ip clusterdns affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
      add chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {
      > ip saddr 10.180.0.1 jump mark-for-masquerade
      > update @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { ip saddr }
      > meta l4proto tcp dnat to 10.180.0.1:80
      }
      add chain ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 {
      > ip saddr 10.180.0.2 jump mark-for-masquerade
      > update @affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 { ip saddr }
      > meta l4proto tcp dnat to 10.180.0.2:80
      }
      add chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 {
      > ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
      > ip saddr @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      > ip saddr @affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      > numgen random mod 2 == 0 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      > goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      }
      add chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 {
      > jump mark-for-masquerade
      > goto service-ULMVA6XW-ns1/svc1/tcp/p80
      }
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = {
      > 172.30.0.41
      } ; }
      add map ip clusterdns service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; elements = {
      > 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80
      } ; }
      add map ip clusterdns service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; elements = {
      > tcp . 3001 : goto external-ULMVA6XW-ns1/svc1/tcp/p80
      } ; }
    `),
  );
  t.equal(r.rules, countRules(r.text));
  const s = r.state.services.get('ns1/svc1');
  t.equal(s?.table, 'clusterdns');
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
  t.same(stateElements(r.state, 'service-nodeports'), [{ container: 'service-nodeports', key: 'tcp . 3001', value: 'goto external-ULMVA6XW-ns1/svc1/tcp/p80', comment: '', table: 'clusterdns' }]);
});

t.test('golden: no endpoints: reject through no-endpoint-services / no-endpoint-nodeports', async (t) => {
  t.equal(
    body(full([svc2])),
    golden(`
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = {
      > 172.30.0.42
      } ; }
      add map ip clusterdns no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; elements = {
      > 172.30.0.42 . tcp . 80 comment "ns2/svc2:p80" : goto reject-chain,
      > 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : goto reject-chain
      } ; }
      add map ip clusterdns no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; elements = {
      > tcp . 3002 comment "ns2/svc2:p80" : goto reject-chain
      } ; }
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
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = {
      > 172.30.0.43
      } ; }
      add map ip clusterdns no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; elements = {
      > 172.30.0.43 . tcp . 80 comment "ns3/svc3:p80" : drop
      } ; }
    `),
  );
  const withLocal = svc({ ...svc3, endpoints: [ep('10.180.0.3', 80, { local: true }), ep('10.180.0.6', 80)] });
  const text = body(full([withLocal]));
  t.match(text, /\n\t172\.30\.0\.43 \. tcp \. 80 : goto local-[A-Z0-9]{8}-ns3\/svc3\/tcp\/p80\n/, 'a local endpoint: ClusterIP goes to the local- chain');
  t.match(text, /add chain ip clusterdns local-[A-Z0-9]{8}-ns3\/svc3\/tcp\/p80 \{\n\tip daddr 172\.30\.0\.43 tcp dport 80 ip saddr != 10\.0\.0\.0\/8 jump mark-for-masquerade\n\tgoto endpoint-[A-Z0-9]{8}-ns3\/svc3\/tcp\/p80__10\.180\.0\.3\/80\n\}/, 'the masquerade rule in the local- chain, then the only local endpoint');
  t.notMatch(text, /10\.180\.0\.6/, 'the remote endpoint has no chain');
  t.notMatch(text, /service-[A-Z0-9]{8}-ns3/, 'no cluster-policy chain');
});

t.test('golden: UDP with masqueradeAll; one endpoint is a plain goto', async (t) => {
  const opts = { ...V4, masqueradeAll: true };
  t.equal(
    body(full([dns], opts), opts),
    golden(`
      add chain ip clusterdns endpoint-5UTEUMF5-kube-system/kube-dns/udp/dns__10.180.0.9/53 {
      > ip saddr 10.180.0.9 jump mark-for-masquerade
      > meta l4proto udp dnat to 10.180.0.9:53
      }
      add chain ip clusterdns service-FY5PMXPG-kube-system/kube-dns/udp/dns {
      > ip daddr 172.30.0.10 udp dport 53 jump mark-for-masquerade
      > goto endpoint-5UTEUMF5-kube-system/kube-dns/udp/dns__10.180.0.9/53
      }
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = {
      > 172.30.0.10
      } ; }
      add map ip clusterdns service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; elements = {
      > 172.30.0.10 . udp . 53 : goto service-FY5PMXPG-kube-system/kube-dns/udp/dns
      } ; }
    `),
  );
});

t.test('golden: IPv6', async (t) => {
  t.equal(
    body(full([v6svc1], V6), V6),
    golden(`
      add chain ip6 clusterdns endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80 {
      > ip6 saddr fd00:10:180::1 jump mark-for-masquerade
      > meta l4proto tcp dnat to [fd00:10:180::1]:80
      }
      add chain ip6 clusterdns endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80 {
      > ip6 saddr fd00:10:180::2:1 jump mark-for-masquerade
      > meta l4proto tcp dnat to [fd00:10:180::2:1]:80
      }
      add chain ip6 clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 {
      > ip6 daddr fd00:172:30::41 tcp dport 80 ip6 saddr != fd00:10::/64 jump mark-for-masquerade
      > numgen random mod 2 == 0 goto endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80
      > goto endpoint-2CRNCTTE-ns1/svc1/tcp/p80__fd00.10.180..2.1/80
      }
      add chain ip6 clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 {
      > jump mark-for-masquerade
      > goto service-ULMVA6XW-ns1/svc1/tcp/p80
      }
      add set ip6 clusterdns cluster-ips { type ipv6_addr ; comment "Active ClusterIPs" ; elements = {
      > fd00:172:30::41
      } ; }
      add map ip6 clusterdns service-ips { type ipv6_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; elements = {
      > fd00:172:30::41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80
      } ; }
      add map ip6 clusterdns service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; elements = {
      > tcp . 3001 : goto external-ULMVA6XW-ns1/svc1/tcp/p80
      } ; }
    `),
  );
  t.equal(body(full([svc1], V6), V6), '', 'ports of the other family are not rendered');
});

t.test('golden: 3 endpoints, picked in sorted endpoint order with 1/3, 1/2, 1; no cluster CIDR', async (t) => {
  const opts = { ...V4, clusterCIDRs: [] };
  t.equal(
    body(full([svc5], opts), opts),
    golden(`
      add chain ip clusterdns endpoint-OZBCP53U-ns5/svc5/tcp/p80__10.180.0.10/80 {
      > ip saddr 10.180.0.10 jump mark-for-masquerade
      > meta l4proto tcp dnat to 10.180.0.10:80
      }
      add chain ip clusterdns endpoint-76FQEI5T-ns5/svc5/tcp/p80__10.180.0.2/80 {
      > ip saddr 10.180.0.2 jump mark-for-masquerade
      > meta l4proto tcp dnat to 10.180.0.2:80
      }
      add chain ip clusterdns endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 {
      > ip saddr 10.180.0.3 jump mark-for-masquerade
      > meta l4proto tcp dnat to 10.180.0.3:80
      }
      add chain ip clusterdns service-HVFWP5L3-ns5/svc5/tcp/p80 {
      > numgen random mod 3 == 0 goto endpoint-OZBCP53U-ns5/svc5/tcp/p80__10.180.0.10/80
      > numgen random mod 2 == 0 goto endpoint-76FQEI5T-ns5/svc5/tcp/p80__10.180.0.2/80
      > goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
      }
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = {
      > 172.30.0.45
      } ; }
      add map ip clusterdns service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; elements = {
      > 172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80
      } ; }
    `),
  );
});

t.test('endpoint pick: exactly 1/n each; above RULE_PICK_MAX endpoints, kube-proxy\'s numgen vmap', async (t) => {
  // Rule i of n takes what rules 0..i-1 left with probability 1/(n-i): each endpoint 1/n.
  for (let n = 1; n <= 12; n++) {
    let left = 1;
    const shares: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = i < n - 1 ? 1 / (n - i) : 1;
      shares.push(left * p);
      left -= left * p;
    }
    t.ok(shares.every((s) => Math.abs(s - 1 / n) < 1e-12), `n = ${n}: ${shares.map((s) => s.toFixed(4)).join(' ')}`);
  }
  const eps = (n: number): ProxyEndpoint[] => Array.from({ length: n }, (_, i) => ep(`10.181.${i >> 8}.${i & 255}`, 80)).sort((a, b) => (a.key < b.key ? -1 : 1));
  const atMax = body(full([svc({ namespace: 'big', name: 'a', clusterIP: '172.30.1.1', endpoints: eps(RULE_PICK_MAX) })]));
  t.equal(atMax.match(/\tnumgen random mod \d+ == 0 goto /g)?.length, RULE_PICK_MAX - 1, `${RULE_PICK_MAX} endpoints: rules`);
  t.match(atMax, new RegExp(`\\tnumgen random mod ${RULE_PICK_MAX} == 0 goto endpoint-`));
  t.notMatch(atMax, /vmap \{/);
  const above = body(full([svc({ namespace: 'big', name: 'a', clusterIP: '172.30.1.1', endpoints: eps(RULE_PICK_MAX + 1) })]));
  const vmap = new RegExp(`\\tnumgen random mod ${RULE_PICK_MAX + 1} vmap \\{ 0 : goto endpoint-[A-Z0-9]{8}-big/a/tcp/p80__10\\.181\\.0\\.0/80, 1 : goto endpoint-[A-Z0-9]{8}-big/a/tcp/p80__10\\.181\\.0\\.10/80, 2 : goto endpoint-[A-Z0-9]{8}-big/a/tcp/p80__10\\.181\\.0\\.11/80, `);
  t.match(above, vmap, `${RULE_PICK_MAX + 1} endpoints: one vmap, in sorted endpoint order`);
  t.notMatch(above, /== 0 goto/);
});

t.test('golden: externalTrafficPolicy Local, with and without a local endpoint', async (t) => {
  t.equal(
    body(full([svc4])),
    golden(`
      add chain ip clusterdns endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 {
      > ip saddr 10.180.0.4 jump mark-for-masquerade
      > meta l4proto tcp dnat to 10.180.0.4:80
      }
      add chain ip clusterdns endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 {
      > ip saddr 10.180.0.5 jump mark-for-masquerade
      > meta l4proto tcp dnat to 10.180.0.5:80
      }
      add chain ip clusterdns service-LAUZTJTB-ns4/svc4/tcp/p80 {
      > ip daddr 172.30.0.44 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
      > numgen random mod 2 == 0 goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
      > goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
      }
      add chain ip clusterdns local-LAUZTJTB-ns4/svc4/tcp/p80 {
      > goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
      }
      add chain ip clusterdns external-LAUZTJTB-ns4/svc4/tcp/p80 {
      > ip saddr 10.0.0.0/8 goto service-LAUZTJTB-ns4/svc4/tcp/p80 comment "short-circuit pod traffic"
      > fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
      > fib saddr type local goto service-LAUZTJTB-ns4/svc4/tcp/p80 comment "short-circuit local traffic"
      > goto local-LAUZTJTB-ns4/svc4/tcp/p80
      }
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = {
      > 172.30.0.44
      } ; }
      add map ip clusterdns service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; elements = {
      > 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80,
      > 192.168.99.44 . tcp . 80 : goto external-LAUZTJTB-ns4/svc4/tcp/p80
      } ; }
      add map ip clusterdns service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; elements = {
      > tcp . 3004 : goto external-LAUZTJTB-ns4/svc4/tcp/p80
      } ; }
    `),
  );
  // kube-proxy's proxier_test svc2: eTP=Local, the only endpoint remote. External traffic
  // that was not short-circuited is dropped (no-endpoint elements with `drop`).
  const remote = svc({ namespace: 'ns2', name: 'svc2', clusterIP: '172.30.0.42', externalIPs: ['192.168.99.22'], nodePort: 3002, externalLocal: true, endpoints: [ep('10.180.0.2', 80)] });
  t.equal(
    body(full([remote])),
    golden(`
      add chain ip clusterdns endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 {
      > ip saddr 10.180.0.2 jump mark-for-masquerade
      > meta l4proto tcp dnat to 10.180.0.2:80
      }
      add chain ip clusterdns service-42NFTM6N-ns2/svc2/tcp/p80 {
      > ip daddr 172.30.0.42 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
      > goto endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
      }
      add chain ip clusterdns external-42NFTM6N-ns2/svc2/tcp/p80 {
      > ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"
      > fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
      > fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"
      }
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = {
      > 172.30.0.42
      } ; }
      add map ip clusterdns service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; elements = {
      > 172.30.0.42 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80,
      > 192.168.99.22 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80
      } ; }
      add map ip clusterdns service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; elements = {
      > tcp . 3002 : goto external-42NFTM6N-ns2/svc2/tcp/p80
      } ; }
      add map ip clusterdns no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; elements = {
      > 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop
      } ; }
      add map ip clusterdns no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; elements = {
      > tcp . 3002 comment "ns2/svc2:p80" : drop
      } ; }
    `),
  );
});

/** Chains declared (`add chain T X`) and chains with rules (`add chain T X { … }`), per render text. */
function chainsOf(text: string): { declared: Set<string>; withRules: Set<string> } {
  return {
    declared: new Set([...text.matchAll(/^add chain ip6? \S+ (\S+)/gm)].map((m) => m[1]!)),
    withRules: new Set([...text.matchAll(/^add chain ip6? \S+ (\S+) \{\n\t/gm)].map((m) => m[1]!)),
  };
}

t.test('every jump/goto target is declared and non-empty; every service chain is used (kube-proxy.md §4.4)', async (t) => {
  for (const [opts, ports] of [
    [V4, [svc1, svc2, svc3, svc4, svc5, dns]],
    [{ ...V4, clusterCIDRs: [], masqueradeAll: true }, [svc1, svc2, svc3, svc4, svc5, dns]],
    [V6, [v6svc1]],
  ] as const) {
    const text = full([...ports], opts).text;
    const { declared, withRules } = chainsOf(text);
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
  t.match(body(full([mixed])), /\{\n\tip daddr 172\.30\.0\.45 tcp dport 80 ip saddr != 10\.0\.0\.0\/8 jump mark-for-masquerade\n\tgoto endpoint-76FQEI5T-ns5\/svc5\/tcp\/p80__10\.180\.0\.2\/80\n\}/, 'ready wins over terminating');
  const onlyTerm = svc({ ...svc5, endpoints: [ep('10.180.0.10', 80, term), ep('10.180.0.3', 80, { ready: false, serving: false })] });
  t.match(body(full([onlyTerm])), /\n\tgoto endpoint-OZBCP53U-ns5\/svc5\/tcp\/p80__10\.180\.0\.10\/80\n\}/, 'serving-terminating when none ready');
});

t.test('partial render: only the changed Service, element refills, stale chains and sets', async (t) => {
  const svc2b = svc({ namespace: 'ns2', name: 'svc2', clusterIP: '172.30.0.42', externalIPs: ['192.168.99.22'], nodePort: 3002, externalLocal: true, endpoints: [ep('10.180.0.2', 80)] });
  const a = full([svc1, svc2b]);

  // svc1: endpoint 10.180.0.2 replaced by 10.180.0.3; svc2 untouched.
  const svc1b = svc({ ...svc1, endpoints: [ep('10.180.0.1', 80), ep('10.180.0.3', 80)] });
  const b = renderNftables([svc1b, svc2b], V4, { full: false, changed: new Set(['ns1/svc1']), previous: a.state });
  t.notOk(b.full);
  t.equal(
    b.text,
    golden(`
      flush chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      flush chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80
      flush chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80
      add set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
      add set ip clusterdns affinity-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
      add chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {
      > ip saddr 10.180.0.1 jump mark-for-masquerade
      > update @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { ip saddr }
      > meta l4proto tcp dnat to 10.180.0.1:80
      }
      add chain ip clusterdns endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 {
      > ip saddr 10.180.0.3 jump mark-for-masquerade
      > update @affinity-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 { ip saddr }
      > meta l4proto tcp dnat to 10.180.0.3:80
      }
      add chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80 {
      > ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
      > ip saddr @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      > ip saddr @affinity-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 goto endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
      > numgen random mod 2 == 0 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
      > goto endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
      }
      add chain ip clusterdns external-ULMVA6XW-ns1/svc1/tcp/p80 {
      > jump mark-for-masquerade
      > goto service-ULMVA6XW-ns1/svc1/tcp/p80
      }
      flush chain ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      delete set ip clusterdns affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
      delete chain ip clusterdns endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
    `),
    'svc1 chains rewritten (the new endpoint chain created, not flushed), the gone endpoint chain and affinity set deleted, no element touched',
  );
  t.notMatch(b.text, /svc2/, 'svc2 untouched');
  t.equal(b.rules, countRules(b.text));
  t.equal(b.state.services.get('ns2/svc2'), a.state.services.get('ns2/svc2'), 'unchanged Services carried over');

  // svc2 deleted: every container it had an element in emptied and refilled without it
  // (no `delete element`: nft would read every chain first); its chains flushed, deleted.
  const c = renderNftables([svc1b], V4, { full: false, changed: new Set(['ns2/svc2']), previous: b.state });
  t.equal(
    c.text,
    golden(`
      flush set ip clusterdns cluster-ips
      flush map ip clusterdns service-ips
      flush map ip clusterdns service-nodeports
      flush map ip clusterdns no-endpoint-services
      flush map ip clusterdns no-endpoint-nodeports
      add set ip clusterdns cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; elements = {
      > 172.30.0.41
      } ; }
      add map ip clusterdns service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; elements = {
      > 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80
      } ; }
      add map ip clusterdns service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; elements = {
      > tcp . 3001 : goto external-ULMVA6XW-ns1/svc1/tcp/p80
      } ; }
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
      flush map ip clusterdns service-ips
      flush map ip clusterdns service-nodeports
      add map ip clusterdns no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; elements = {
      > 172.30.0.41 . tcp . 80 comment "ns1/svc1:p80" : goto reject-chain
      } ; }
      add map ip clusterdns no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; elements = {
      > tcp . 3001 comment "ns1/svc1:p80" : goto reject-chain
      } ; }
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

  // A new Service: its chains and elements only (elements added by redeclaration).
  const e = renderNftables([svc1c, dns], V4, { full: false, changed: new Set(['kube-system/kube-dns']), previous: d.state });
  t.equal(e.text, body(full([dns])), 'a new Service renders as in a full sync, without the fixed part');
  t.notMatch(e.text, /^flush (set|map)/m, 'adding elements empties nothing');

  // Listed as changed but the same: chains rewritten, no element churn.
  const f = renderNftables([svc1c, dns], V4, { full: false, changed: new Set(['kube-system/kube-dns']), previous: e.state });
  t.notMatch(f.text, /elements|element /);
  t.match(f.text, /^flush chain ip clusterdns service-FY5PMXPG-kube-system\/kube-dns\/udp\/dns$/m);

  // Nothing changed: nothing to do.
  const g = renderNftables([svc1c, dns], V4, { full: false, changed: NONE, previous: f.state });
  t.equal(g.text, '');
  t.same(g.transactions, []);
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
  const write = lines.indexOf('add chain ip clusterdns endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {');
  t.ok(flush >= 0 && del > flush && add > del && write > add, 'flush the chains using it, delete, add with the new timeout, then the rules');
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
  t.equal(a.text.split('\n').filter((l) => l.includes('\t192.168.1.1 . tcp . 80')).length, 1, 'added once');
  const b = renderNftables([y], V4, { full: false, changed: new Set(['a/x']), previous: a.state });
  t.match(owner(b.state), /^goto external-[A-Z0-9]{8}-b\/y\//);
  t.match(b.text, /^flush map ip clusterdns service-ips$/m, 'the verdict changes: the map is refilled');
  t.match(b.text, /^\t192\.168\.1\.1 \. tcp \. 80 : goto external-[A-Z0-9]{8}-b\/y\/tcp\/p80,?$/m);
  // y changing while x holds it: nothing happens to the element.
  const c = renderNftables([x, y], V4, { full: false, changed: new Set(['b/y']), previous: a.state });
  t.notMatch(c.text, /192\.168\.1\.1/);
});

t.test('deferred stale chains and sets: flushed now, deleted by a later transaction', async (t) => {
  const a = full([svc1]);
  const one = svc({ ...svc1, endpoints: [ep('10.180.0.1', 80)] });
  const b = renderNftables([one], V4, { full: false, changed: new Set(['ns1/svc1']), previous: a.state, deferStaleChains: true });
  const stale = 'endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80';
  const staleSet = 'affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80';
  t.match(b.text, new RegExp(`^flush chain ip clusterdns ${stale}$`, 'm'));
  t.match(b.text, new RegExp(`^flush set ip clusterdns ${staleSet}$`, 'm'), 'an affinity set is emptied at once (kube-proxy deletes it at once)');
  t.notMatch(b.text, /^delete /m, 'nothing deleted: a deletion costs nft a chain fetch');
  t.same([...b.state.staleChains], [qualified('clusterdns', stale)]);
  t.same([...b.state.staleSets], [[qualified('clusterdns', staleSet), 10800]]);
  t.equal(renderStaleDeletion(4, b.state.staleChains, b.state.staleSets.keys()), `delete chain ip clusterdns ${stale}\ndelete set ip clusterdns ${staleSet}\n`);
  // Still stale after an unrelated sync; not flushed again.
  const c = renderNftables([one, dns], V4, { full: false, changed: new Set(['kube-system/kube-dns']), previous: b.state, deferStaleChains: true });
  t.same([...c.state.staleChains], [qualified('clusterdns', stale)]);
  t.notMatch(c.text, /2ZNDXFAB/);
  // The endpoint comes back before the deletion: chain and set reused, no longer stale.
  const d = renderNftables([svc1, dns], V4, { full: false, changed: new Set(['ns1/svc1']), previous: c.state, deferStaleChains: true });
  t.same([...d.state.staleChains], []);
  t.same([...d.state.staleSets], []);
  t.notMatch(d.text, new RegExp(`^flush chain ip clusterdns ${stale}$`, 'm'), 'already empty: not flushed again');
  t.match(d.text, new RegExp(`^add chain ip clusterdns ${stale} \\{$`, 'm'));
  // After the deletion transaction applied.
  const cleared = withoutStale(c.state, c.state.staleChains, c.state.staleSets.keys());
  t.equal(cleared.staleChains.size + cleared.staleSets.size, 0);
  // A full render (immediate mode) deletes what is left stale.
  const e = renderNftables([dns], V4, { full: false, changed: new Set(['ns1/svc1']), previous: d.state, deferStaleChains: true });
  t.equal(e.state.staleChains.size, 4);
  const f = renderNftables([dns], V4, { full: true, changed: NONE, previous: e.state });
  for (const q of e.state.staleChains) t.match(f.text, new RegExp(`^delete chain ip clusterdns ${q.split(' ')[1]!.replace(/[./]/g, '\\$&')}$`, 'm'));
  for (const q of e.state.staleChains) t.notOk(f.text.split('\n').includes(`flush chain ip ${q}`), `${q}: flushed already, not again`);
  t.equal(f.state.staleChains.size, 0);
});

t.test('full render over a listed table: reuses what it needs, removes the rest', async (t) => {
  const listed = stateFromListing(
    4,
    ['filter-input', 'services', 'service-ULMVA6XW-ns1/svc1/tcp/p80', 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80', 'service-OLD00000-gone/svc/tcp/', { table: 'other', name: 'x/y' }],
    [
      { name: 'cluster-ips', timeout: -1 },
      { name: 'affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80', timeout: 10800 },
      { name: 'affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80', timeout: 60 },
      { name: 'affinity-OLD00000-gone/svc/tcp/__10.1.1.1/80', timeout: 10800 },
    ],
  );
  t.same([...listed.staleChains], ['service-ULMVA6XW-ns1/svc1/tcp/p80', 'endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80', 'service-OLD00000-gone/svc/tcp/'].map((c) => qualified('clusterdns', c)), 'other tables ignored');
  t.equal(listed.nodePortIPs, false);
  const r = renderNftables([svc1], V4, { full: false, changed: NONE, previous: listed });
  t.ok(r.full, 'a listing is never a base for a partial render');
  const lines = r.text.split('\n');
  t.ok(lines.includes('flush chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80'), 'a listed chain still holds its rules: flushed before reuse');
  t.ok(lines.includes('flush chain ip clusterdns service-OLD00000-gone/svc/tcp/'));
  t.ok(lines.includes('delete chain ip clusterdns service-OLD00000-gone/svc/tcp/'));
  t.ok(lines.includes('delete set ip clusterdns affinity-OLD00000-gone/svc/tcp/__10.1.1.1/80'));
  t.notOk(lines.includes('delete chain ip clusterdns service-ULMVA6XW-ns1/svc1/tcp/p80'), 'reused chain kept');
  t.notOk(lines.includes('delete set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80'), 'same timeout: set kept (affinities survive)');
  t.notOk(lines.includes('flush set ip clusterdns affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80'), 'and not emptied');
  t.ok(lines.includes('delete set ip clusterdns affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80'), 'other timeout: recreated');
  t.notOk(r.text.includes('nodeport-ips'), 'the listing found no nodeport-ips: nothing to delete');
  t.equal(r.state.staleChains.size, 0);
  t.equal(r.state.staleSets.size, 0);
  // Deferred: the leftovers are flushed (sets emptied too) and left for the deletion.
  const d = renderNftables([svc1], V4, { full: false, changed: NONE, previous: listed, deferStaleChains: true });
  t.ok(d.text.split('\n').includes('flush set ip clusterdns affinity-OLD00000-gone/svc/tcp/__10.1.1.1/80'));
  t.same([...d.state.staleChains], [qualified('clusterdns', 'service-OLD00000-gone/svc/tcp/')]);
});

t.test('large full renders: split into transactions that each leave a consistent ruleset', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => svc({ namespace: 'many', name: `s${i}`, clusterIP: `172.30.2.${i + 1}`, endpoints: [ep(`10.182.0.${i + 1}`, 80), ep(`10.182.1.${i + 1}`, 80)] }));
  const one = renderNftables(many, V4, { full: true, changed: NONE });
  t.equal(one.transactions.length, 1, 'under CHUNK_RULES: one transaction');
  const r = renderNftables(many, V4, { full: true, changed: NONE, chunkRules: 50 });
  t.ok(r.transactions.length >= 5, `${r.transactions.length} transactions`);
  t.equal(r.text, r.transactions.join(''), 'the text is every transaction in order');
  t.equal(r.text, one.text, 'and the same ruleset as one transaction');
  const [first, ...rest] = r.transactions;
  const last = rest.pop()!;
  t.match(first, /^add table ip clusterdns/);
  t.notMatch(first, /many\//, 'the first: the fixed part only');
  for (const chunk of rest) {
    t.notMatch(chunk, /elements = |^flush (set|map) /m, 'a chunk: whole Services\' chains, no element');
    const { declared } = chainsOf(chunk);
    const targets = new Set([...chunk.matchAll(/goto (endpoint-[^\s,}]+)/g)].map((m) => m[1]!));
    for (const target of targets) t.ok(declared.has(target), `${target} in the same chunk as its Service`);
  }
  t.match(last, /^flush set ip clusterdns cluster-ips$/m, 'the last: every map swapped at once');
  t.notMatch(last, /^add chain /m);
  // Streaming hands out all but the last transaction while rendering.
  const yielded: string[] = [];
  const stream = streamNftables(many, V4, { full: true, changed: NONE, chunkRules: 50 });
  let step = stream.next();
  while (step.done !== true) {
    if (step.value !== undefined) yielded.push(step.value);
    step = stream.next();
  }
  t.same(yielded, r.transactions.slice(0, -1));
  t.same(step.value.transactions, r.transactions);
});

t.test('shard tables above SHARD_ENDPOINTS: Services spread over clusterdns-<n>', async (t) => {
  t.equal(shardCount(8000), 1);
  t.equal(shardCount(8001), 2);
  t.equal(shardCount(100_000), 16);
  t.equal(shardCount(100_000, 8), 8, 'a previous count within 2x is kept');
  t.equal(shardCount(100_000, 32), 32);
  t.equal(shardCount(100_000, 4), 16, 'further off: changed');
  t.equal(shardCount(10, 1, 4), 4);
  t.equal(serviceTable('ns1/svc1', 1), 'clusterdns');
  t.match(serviceTable('ns1/svc1', 4), /^clusterdns-[0-3]$/);
  const many = Array.from({ length: 16 }, (_, i) => svc({ namespace: 'shard', name: `s${i}`, clusterIP: `172.30.3.${i + 1}`, nodePort: 31000 + i, endpoints: [ep(`10.183.0.${i + 1}`, 80)] }));
  const r = renderNftables(many, V4, { full: true, changed: NONE, shardEndpoints: 4 });
  t.equal(r.state.shards, 4);
  t.same([...r.state.tables], ['clusterdns-0', 'clusterdns-1', 'clusterdns-2', 'clusterdns-3']);
  for (let i = 0; i < 4; i++) {
    const P = `ip clusterdns-${i}`;
    t.match(r.text, new RegExp(`^add table ${P} \\{ comment "clusterdns Service chains, part ${i + 1} of 4" ; \\}$`, 'm'));
    t.match(r.text, new RegExp(`^add chain ${P} nat-prerouting \\{ type nat hook prerouting priority -100 ; \\}$`, 'm'));
    t.match(r.text, new RegExp(`^add chain ${P} services \\{\\n\\tip daddr \\. meta l4proto \\. th dport vmap @service-ips\\n`, 'm'));
    t.match(r.text, new RegExp(`^add chain ${P} mark-for-masquerade \\{\\n\\tmark set mark or 0x00004000\\n\\}$`, 'm'));
    t.notMatch(r.text, new RegExp(`^add (set|map) ${P} (cluster-ips|no-endpoint)`, 'm'), 'cluster-ips and the no-endpoint maps stay in clusterdns');
  }
  for (const p of many) {
    const table = serviceTable(p.service, 4);
    const s = r.state.services.get(p.service)!;
    t.equal(s.table, table);
    t.ok(s.chains.every((c) => r.text.includes(`add chain ip ${table} ${c} {`)), `${p.service}: chains in ${table}`);
    t.same(
      s.elements.map((e) => [e.container, e.table]),
      [['cluster-ips', 'clusterdns'], ['service-ips', table], ['service-nodeports', table]],
    );
  }
  // A partial sync touches one shard.
  const p = many[5]!;
  const changed = svc({ ...p, endpoints: [...p.endpoints, ep('10.183.1.1', 80)] });
  const b = renderNftables(many.map((q) => (q === p ? changed : q)), V4, { full: false, changed: new Set([p.service]), previous: r.state, shardEndpoints: 4 });
  t.notOk(b.full);
  const touched = new Set([...b.text.matchAll(/^\S+ \S+ ip (\S+) /gm)].map((m) => m[1]));
  t.same([...touched], [serviceTable(p.service, 4)]);
  // Removing a Service refills its shard's maps and cluster-ips, nothing else.
  const c = renderNftables(many.filter((q) => q !== p), V4, { full: false, changed: new Set([p.service]), previous: r.state, shardEndpoints: 4 });
  t.same(
    c.text.split('\n').filter((l) => l.startsWith('flush set') || l.startsWith('flush map')),
    ['flush set ip clusterdns cluster-ips', `flush map ip ${serviceTable(p.service, 4)} service-ips`, `flush map ip ${serviceTable(p.service, 4)} service-nodeports`],
  );
  // Shrinking past the hysteresis: a full render, Services move back, shard tables dropped.
  const few = many.slice(0, 2);
  const d = renderNftables(few, V4, { full: false, changed: new Set(many.slice(2).map((q) => q.service)), previous: r.state, shardEndpoints: 4 });
  t.ok(d.full, 'another shard count: full');
  t.equal(d.state.shards, 1);
  for (let i = 0; i < 4; i++) t.match(d.text, new RegExp(`^delete table ip clusterdns-${i}$`, 'm'));
  t.ok(few.every((q) => d.text.includes(`add chain ip clusterdns ${d.state.services.get(q.service)!.chains[0]} {`)), 'their chains now in clusterdns');
  // A listing of a sharded table set.
  const listed = stateFromListing(4, [{ table: 'clusterdns-0', name: 'nat-prerouting' }, { table: 'clusterdns-1', name: 'service-X-a/b/tcp/' }], []);
  t.same([...listed.tables], ['clusterdns-0', 'clusterdns-1']);
  t.equal(listed.shards, 2);
  t.same([...listed.staleChains], [qualified('clusterdns-1', 'service-X-a/b/tcp/')]);
});

// ---- the kernel's opinion ----------------------------------------------------------------

const netns = (t: Test): string | undefined => scratchNetns(t, 'cdns-nftr', 'nft', 'nftables');

function nft(ns: string, args: string[], input?: string): { code: number; err: string; out: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nft', ...args], { input, encoding: 'utf8' });
  return { code: r.status ?? -1, err: r.stderr, out: r.stdout };
}

t.test('nft accepts full, split, sharded and partial renders (fresh network namespace)', async (t) => {
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
    for (const defer of [false, true]) {
      const p = renderNftables(ports, opts4, { full: false, changed: new Set(changed), previous: v4.state, deferStaleChains: defer });
      t.notOk(p.full, what);
      r = nft(ns, ['-c', '-f', '-'], p.text);
      t.equal(r.code, 0, `partial (${what}${defer ? ', deferred' : ''}): ${r.err}`);
    }
  }
  // And the full render again over the applied one (what a periodic resync sends).
  const again = renderNftables(view4, opts4, { full: true, changed: NONE, previous: v4.state });
  r = nft(ns, ['-c', '-f', '-'], again.text);
  t.equal(r.code, 0, `second full render: ${r.err}`);

  // A split, sharded render applied transaction by transaction, then a partial and a
  // removal in a shard, then shrinking back to one table.
  nft(ns, ['delete', 'table', 'ip', 'clusterdns']);
  const many = Array.from({ length: 24 }, (_, i) => svc({ namespace: 'many', name: `s${i}`, clusterIP: `172.30.4.${i + 1}`, nodePort: 32000 + i, endpoints: [ep(`10.184.0.${i + 1}`, 80), ep(`10.184.1.${i + 1}`, 80)] }));
  const split = renderNftables(many, V4, { full: true, changed: NONE, chunkRules: 40, shardEndpoints: 12, resetBaseChains: true });
  t.ok(split.transactions.length > 3 && split.state.shards === 4, `${split.transactions.length} transactions, ${split.state.shards} shards`);
  for (const [i, tx] of split.transactions.entries()) {
    r = nft(ns, ['-f', '-'], tx);
    t.equal(r.code, 0, `transaction ${i + 1} of ${split.transactions.length}: ${r.err}`);
  }
  const tables = nft(ns, ['list', 'tables']).out;
  t.same(tables.split('\n').filter((l) => l !== '').sort(), ['table ip clusterdns', 'table ip clusterdns-0', 'table ip clusterdns-1', 'table ip clusterdns-2', 'table ip clusterdns-3']);
  const q = many[7]!;
  const grown = many.map((x) => (x === q ? svc({ ...q, endpoints: [...q.endpoints, ep('10.184.2.1', 80)] }) : x));
  const p1 = renderNftables(grown, V4, { full: false, changed: new Set([q.service]), previous: split.state, shardEndpoints: 12, deferStaleChains: true });
  r = nft(ns, ['-f', '-'], p1.text);
  t.equal(r.code, 0, `partial in a shard: ${r.err}`);
  const p2 = renderNftables(grown.filter((x) => x !== q), V4, { full: false, changed: new Set([q.service]), previous: p1.state, shardEndpoints: 12, deferStaleChains: true });
  r = nft(ns, ['-f', '-'], p2.text);
  t.equal(r.code, 0, `removal in a shard: ${r.err}`);
  r = nft(ns, ['-f', '-'], renderStaleDeletion(4, p2.state.staleChains, p2.state.staleSets.keys()));
  t.equal(r.code, 0, `deferred deletion: ${r.err}`);
  const small = renderNftables(grown.slice(0, 2), V4, { full: true, changed: NONE, previous: p2.state, shardEndpoints: 12 });
  r = nft(ns, ['-f', '-'], small.text);
  t.equal(r.code, 0, `shrunk to one table: ${r.err}`);
  t.same(nft(ns, ['list', 'tables']).out.trim(), 'table ip clusterdns');
});
