/**
 * ServiceImports from zones/ (config `multicluster`): manifests in zones/<cluster-domain>/
 * are read and validated like every other kind (bad ones named with file, document and
 * reason, the rest served), pass the embedded registry untouched, and are served in the
 * multicluster zone by the real server, hot-reloaded, beside the cluster domain.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { startServer } from '../src/app.js';
import { FileSource } from '../src/cluster/files.js';
import { parseConfig } from '../src/config.js';
import { silentLogger } from '../src/log.js';
import { decode, makeQuery, udpExchange } from './helpers/dns.js';

const Z = 'cluster.local';
const MC = 'clusterset.local';

async function tempZones(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), 'clusterdns-mc-'));
  t.teardown(() => rm(base, { recursive: true, force: true }));
  return join(base, 'zones');
}

async function put(dir: string, rel: string, text: string): Promise<void> {
  const path = join(dir, rel);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

// The Service `web` has a selector (the embedded endpoints controller makes its slices
// from the Pod); the import of the same name and its slice from cluster `east` are not
// the controller's and must reach the store as written.
const SHOP = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.50.1
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, image: web, ports: [{containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.244.0.10, conditions: [{type: Ready, status: "True"}]}
`;

/** An EndpointSlice of the import `service` from `cluster`, in shop; endpoints and port as YAML flow maps. */
function mcSlice(name: string, service: string, cluster: string, endpoints: readonly string[], port: string): string {
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}
  namespace: shop
  labels:
    multicluster.kubernetes.io/service-name: ${service}
    multicluster.kubernetes.io/source-cluster: ${cluster}
addressType: IPv4
endpoints:
${endpoints.map((e) => `  - ${e}`).join('\n')}
ports: [${port}]
`;
}

const IMPORTS = `apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: web, namespace: shop}
spec:
  type: ClusterSetIP
  ips: [10.100.0.1]
  ports: [{name: http, port: 80, protocol: TCP}]
---
${mcSlice('web-east', 'web', 'East', ['{addresses: [10.1.0.1], hostname: web-0}'], '{name: http, port: 8080, protocol: TCP}')}---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImportList
items:
  - metadata: {name: db, namespace: shop}
    spec: {type: Headless, ports: [{name: pg, port: 5432}]}
---
${mcSlice('db-west', 'db', 'west', ['{addresses: [10.2.0.7], hostname: db-0}', '{addresses: [10.2.0.8], conditions: {ready: false}}'], '{name: pg, port: 5432, protocol: TCP}')}---
# Named after a Service whose name starts with a digit (KEP-5311: a DNS-1123 label).
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: 1web, namespace: shop}
spec: {type: ClusterSetIP, ips: [10.100.0.4]}
`;

const BAD = `apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: lb, namespace: shop}
spec: {type: LoadBalancer}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: nocluster
  namespace: shop
  labels: {multicluster.kubernetes.io/service-name: web}
addressType: IPv4
endpoints: [{addresses: [10.9.0.1]}]
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceImport
metadata: {name: future, namespace: shop}
spec: {type: Headless}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: two-v4, namespace: shop}
spec: {type: ClusterSetIP, ips: [10.100.0.2, 10.100.0.3]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: web.v2, namespace: shop}
spec: {type: ClusterSetIP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: badcluster
  namespace: shop
  labels: {multicluster.kubernetes.io/service-name: web, multicluster.kubernetes.io/source-cluster: us.east}
addressType: IPv4
endpoints: [{addresses: [10.9.0.2]}]
`;

t.test('zones/: ServiceImports and multicluster slices are read and validated', async (t) => {
  const dir = await tempZones(t);
  await put(dir, `${Z}/shop.yaml`, SHOP);
  await put(dir, `${Z}/imports.yaml`, IMPORTS);
  await put(dir, `${Z}/bad.yaml`, BAD);
  const source = new FileSource({ dir, watch: false });
  t.teardown(() => source.stop());
  await source.start();
  const store = source.storeFor(Z);
  t.same([...store.serviceImports.keys()].sort(), ['shop/1web', 'shop/db', 'shop/web'], 'the valid imports, one from a ServiceImportList, one with a leading digit');
  t.same(store.serviceImports.get('shop/web'), { namespace: 'shop', name: 'web', type: 'ClusterSetIP', ips: ['10.100.0.1'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }, 'slim: only what DNS reads');
  t.same(store.serviceImports.get('shop/db')?.ports, [{ name: 'pg', port: 5432, protocol: 'TCP' }], 'protocol defaults to TCP');
  t.equal(store.slices.get('shop/web-east')?.sourceCluster, 'east', 'the cluster id, lowercased');
  t.same([...(store.slicesByImport.get('shop/web') ?? [])], ['shop/web-east']);
  const file = join(dir, Z, 'bad.yaml');
  t.match(source.diagnostics(), [
    { severity: 'error', file, doc: 1, kind: 'ServiceImport', namespace: 'shop', name: 'lb', message: 'spec.type: must be one of ClusterSetIP, Headless, got "LoadBalancer"' },
    {
      severity: 'error',
      file,
      doc: 2,
      kind: 'EndpointSlice',
      name: 'nocluster',
      message: /^metadata\.labels\["multicluster\.kubernetes\.io\/source-cluster"\]: required on a multicluster slice/,
    },
    { severity: 'error', file, doc: 3, kind: 'ServiceImport', name: 'future', message: 'apiVersion: must be multicluster.x-k8s.io/v1alpha1 for kind ServiceImport, got "multicluster.x-k8s.io/v1beta1"' },
    { severity: 'error', file, doc: 4, name: 'two-v4', message: 'spec.ips: must be one IPv4 and one IPv6 address, got "10.100.0.2" and "10.100.0.3"' },
    { severity: 'error', file, doc: 5, name: 'web.v2', message: /^metadata\.name: must be a DNS-1123 label .*\(a ServiceImport is named after the exported Service\)/ },
    { severity: 'error', file, doc: 6, name: 'badcluster', message: /^metadata\.labels\["multicluster\.kubernetes\.io\/source-cluster"\]: must be a DNS-1123 label .*got "us\.east"/ },
  ]);
  t.equal(source.diagnostics().length, 6, 'nothing else reported');
});

t.test('the server serves zones/ imports in the multicluster zone, beside the cluster domain, hot-reloaded', async (t) => {
  const dir = await tempZones(t);
  await put(dir, `${Z}/shop.yaml`, SHOP);
  await put(dir, `${Z}/imports.yaml`, IMPORTS);
  const server = await startServer(
    {
      config: parseConfig({ multicluster: [MC] }, 'test'),
      zonesDir: dir,
      dns: [{ host: '127.0.0.1', port: 0 }],
      http: undefined,
      upstreams: [],
      noUpstream: true,
    },
    silentLogger(),
  );
  t.teardown(() => server.close());
  t.same(server.zoneNames().sort(), [Z, MC].sort(), 'both zones');
  const port = server.addresses[0]!.port;
  let id = 1;
  const q = async (name: string, type = 'A'): Promise<string> => {
    const d = decode(await udpExchange(port, makeQuery(name, type, { id: id++ & 0xffff })));
    return [d.rcode, ...d.answer.map((a) => a.split(' ').slice(4).join(' ')).sort()].join(' ');
  };
  t.equal(await q(`web.shop.svc.${MC}`), 'NOERROR 10.100.0.1');
  t.equal(await q(`web-0.east.web.shop.svc.${MC}`), 'NOERROR 10.1.0.1');
  t.equal(await q(`db.shop.svc.${MC}`), 'NOERROR 10.2.0.7', 'headless: ready endpoints only');
  t.equal(await q(`_pg._tcp.db.shop.svc.${MC}`, 'SRV'), `NOERROR 0 100 5432 db-0.west.db.shop.svc.${MC}.`);
  t.equal(await q(`1web.shop.svc.${MC}`), 'NOERROR 10.100.0.4', 'an import named with a leading digit, as its Service');
  t.equal(await q(`web.shop.svc.${Z}`), 'NOERROR 10.96.50.1', 'the Service');
  t.equal(await q(`10-244-0-10.web.shop.svc.${Z}`), 'NOERROR 10.244.0.10', 'with its generated endpoints');
  t.equal(await q(`10-1-0-1.web.shop.svc.${Z}`), 'NXDOMAIN', 'and not the imported ones');
  t.equal(await q(MC, 'SOA'), 'NOERROR ns.dns.clusterset.local. hostmaster.clusterset.local. SERIAL 7200 1800 86400 5');

  await put(dir, `${Z}/more.yaml`, `apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: cache, namespace: shop}
spec: {type: ClusterSetIP, ips: [10.100.0.9, "fd00:100::9"], ports: [{name: redis, port: 6379}]}
`);
  const deadline = Date.now() + 5000;
  while ((await q(`cache.shop.svc.${MC}`)) === 'NXDOMAIN' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.equal(await q(`cache.shop.svc.${MC}`), 'NOERROR 10.100.0.9', 'a new file is picked up');
  t.equal(await q(`cache.shop.svc.${MC}`, 'AAAA'), 'NOERROR fd00:100::9');
  await rm(join(dir, Z, 'imports.yaml'));
  const deadline2 = Date.now() + 5000;
  while ((await q(`web.shop.svc.${MC}`)) !== 'NXDOMAIN' && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 50));
  t.equal(await q(`web.shop.svc.${MC}`), 'NXDOMAIN', 'a removed file takes its imports');
  t.equal(await q(`web.shop.svc.${Z}`), 'NOERROR 10.96.50.1', 'the Service stays');
});
