import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { FileSource, type Diagnostic, type FileSourceOptions, type ZonesChange } from '../../src/cluster/files.js';
import type { ClusterObject } from '../../src/cluster/model.js';
import type { ClusterStore } from '../../src/cluster/store.js';
import { endpointList } from '../../src/cluster/packed.js';

/** What the helpers need from a test. */
interface Tap {
  teardown(fn: () => unknown): void;
}

const EXAMPLE_ZONES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'zones');

async function tempZones(t: Tap): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'clusterdns-files-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function put(dir: string, rel: string, text: string): Promise<void> {
  const path = join(dir, rel);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text);
}

/** Write a temp file next to the target, then rename it over the target (atomic replace). */
async function putAtomic(dir: string, rel: string, text: string): Promise<void> {
  const path = join(dir, rel);
  const tmp = join(dirname(path), `.${rel.split('/').pop() ?? 'x'}.tmp`);
  await writeFile(tmp, text);
  await rename(tmp, path);
}

interface Logged {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

async function startSource(t: Tap, dir: string, opts: Partial<FileSourceOptions> = {}): Promise<{ source: FileSource; logs: Logged[] }> {
  const logs: Logged[] = [];
  const log = {
    info: (msg: string, fields?: Record<string, unknown>) => logs.push({ level: 'info', msg, ...(fields === undefined ? {} : { fields }) }),
    warn: (msg: string, fields?: Record<string, unknown>) => logs.push({ level: 'warn', msg, ...(fields === undefined ? {} : { fields }) }),
    error: (msg: string, fields?: Record<string, unknown>) => logs.push({ level: 'error', msg, ...(fields === undefined ? {} : { fields }) }),
  };
  const source = new FileSource({ dir, log, ...opts });
  t.teardown(() => source.stop());
  await source.start();
  return { source, logs };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until `cond` holds; resolves with the elapsed ms, rejects after `limitMs`. */
async function until(cond: () => boolean, limitMs = 1000, what = 'condition'): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (cond()) return Date.now() - start;
    if (Date.now() - start > limitMs) throw new Error(`timed out after ${limitMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

function svcYaml(name: string, ip: string, ns = 'default', port = 80): string {
  return `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  clusterIP: ${ip}
  ports:
    - name: http
      port: ${port}
`;
}

const ipOf = (store: ClusterStore, key: string): string | undefined => store.services.get(key)?.clusterIPs[0];

t.test('initial load: multi-document, nested folders, JSON, lists; ignored files', async (t) => {
  const dir = await tempZones(t);
  await put(
    dir,
    'Cluster.Local/default.yaml',
    `# comment header
${svcYaml('a', '10.96.0.11')}---
${svcYaml('b', '10.96.0.12')}---
# an empty document
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: a-1
  labels: { kubernetes.io/service-name: a }
addressType: IPv4
endpoints: [{ addresses: [10.244.0.5] }]
`,
  );
  await put(dir, 'Cluster.Local/apps/deep/er/c.yml', svcYaml('c', '10.96.0.13', 'apps'));
  await put(dir, 'Cluster.Local/..data/x.yaml', svcYaml('hidden', '10.96.0.99'));
  await put(
    dir,
    'Cluster.Local/pod.json',
    JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p1', namespace: 'apps' }, status: { podIP: '10.244.0.7' } }),
  );
  await put(
    dir,
    'Cluster.Local/list.json',
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { team: 'x' } } },
        { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'legacy', namespace: 'apps' }, subsets: [{ addresses: [{ ip: '192.168.1.1' }] }] },
      ],
    }),
  );
  // A typed list as the API returns it: items without kind.
  await put(
    dir,
    'Cluster.Local/services-list.yaml',
    `apiVersion: v1
kind: ServiceList
items:
  - metadata: { name: d, namespace: apps }
    spec: { clusterIP: 10.96.0.14 }
  - metadata: { name: e, namespace: apps }
    spec: { clusterIP: 10.96.0.15 }
`,
  );
  await put(dir, 'Cluster.Local/.hidden.yaml', svcYaml('hidden2', '10.96.0.98'));
  await put(dir, 'Cluster.Local/.git/config.yaml', svcYaml('hidden3', '10.96.0.97'));
  await put(dir, 'Cluster.Local/notes.txt', 'not yaml: [');
  await put(dir, 'Cluster.Local/default.yaml.bak', 'not yaml: [');
  await put(dir, 'Cluster.Local/README.md', '# hi');
  await put(dir, 'other.zone/x.yaml', svcYaml('other', '10.96.0.20'));
  await put(dir, '.hidden-zone/x.yaml', svcYaml('other', '10.96.0.21'));

  const changes: ZonesChange[] = [];
  const source = new FileSource({ dir });
  source.onZonesChanged((c) => changes.push(c));
  t.teardown(() => source.stop());
  await source.start();

  t.strictSame(source.zones(), ['cluster.local', 'other.zone']);
  t.strictSame(changes, [{ added: ['cluster.local', 'other.zone'], removed: [] }]);
  t.strictSame(source.diagnostics(), []);
  const store = source.storeFor('cluster.local');
  t.equal(source.storeFor('CLUSTER.LOCAL.'), store, 'zone names are case-insensitive');
  t.strictSame([...store.services.keys()].sort(), ['apps/c', 'apps/d', 'apps/e', 'default/a', 'default/b']);
  t.equal(ipOf(store, 'apps/d'), '10.96.0.14');
  t.strictSame([...store.slices.keys()], ['default/a-1']);
  t.strictSame(endpointList(store.endpointsOf('default/a')[0]!.endpoints)[0]?.addresses, ['10.244.0.5']);
  t.strictSame([...store.legacyEndpoints.keys()], ['apps/legacy']);
  t.strictSame(store.pods.get('apps/p1')?.ips, ['10.244.0.7']);
  t.strictSame(store.namespaces.get('apps'), { name: 'apps', labels: { team: 'x' } }, 'manifest wins over synthesis');
  t.strictSame(store.namespaces.get('default'), { name: 'default', labels: {} }, 'synthesized');
  t.strictSame([...source.storeFor('other.zone').services.keys()], ['default/other']);
});

t.test('the shipped zones/cluster.local example loads with zero diagnostics', async (t) => {
  const { source, logs } = await startSource(t, EXAMPLE_ZONES, { watch: false });
  t.strictSame(source.diagnostics(), []);
  t.strictSame(
    logs.filter((l) => l.level !== 'info'),
    [],
  );
  t.strictSame(source.zones(), ['cluster.local']);
  const s = source.storeFor('cluster.local');
  t.strictSame([...s.namespaces.keys()].sort(), ['data', 'default', 'kube-system', 'shop']);
  const ips = Object.fromEntries([...s.services.values()].map((v) => [`${v.namespace}/${v.name}`, v.headless ? 'None' : v.externalName ?? v.clusterIPs.join(',')]));
  t.strictSame(ips, {
    'default/kubernetes': '10.96.0.1',
    'default/example': 'www.example.com',
    'default/kubernetes-api': 'kubernetes.default.svc.cluster.local',
    'kube-system/kube-dns': '10.96.0.10',
    'shop/frontend': '10.96.10.10',
    'shop/web': 'None',
    'shop/cart': '10.96.10.20,fd00:10:96::14',
    'data/zk-hs': 'None',
    'data/external-db': 'None',
  });
  t.strictSame(
    s.services.get('kube-system/kube-dns')?.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`),
    ['dns:53/UDP', 'dns-tcp:53/TCP', 'metrics:9153/TCP'],
  );
  t.strictSame(endpointList(s.endpointsOf('default/kubernetes')[0]!.endpoints)[0]?.addresses, ['172.18.0.2']);
  t.strictSame(s.endpointsOf('kube-system/kube-dns').flatMap((x) => endpointList(x.endpoints).map((e) => e.addresses[0])), ['10.244.0.2', '10.244.0.3']);
  const web = s.endpointsOf('shop/web').flatMap((x) => endpointList(x.endpoints).map((e) => `${e.hostname}:${e.addresses[0]}:${e.conditions.ready}`));
  t.strictSame(web, ['web-0:10.244.1.20:true', 'web-1:10.244.2.21:true', 'web-2:10.244.3.22:false']);
  t.strictSame(s.endpointsOf('shop/cart').map((x) => x.addressType).sort(), ['IPv4', 'IPv6']);
  t.equal(s.services.get('data/zk-hs')?.publishNotReadyAddresses, true);
  t.ok(s.endpointsOf('data/zk-hs').every((x) => endpointList(x.endpoints).every((e) => !e.conditions.ready)));
  const legacy = s.endpointsOf('data/external-db');
  t.equal(legacy.length, 1);
  t.equal(legacy[0]?.legacy, true);
  t.equal(s.slicesByService.has('data/external-db'), false, 'no slices for the legacy service');
  t.strictSame(s.pods.get('shop/web-2'), {
    namespace: 'shop',
    name: 'web-2',
    ips: ['10.244.3.22'],
    phase: 'Running',
    terminating: false,
    ready: false,
    hostname: 'web-2',
    subdomain: 'web',
    labels: { app: 'web', 'statefulset.kubernetes.io/pod-name': 'web-2' },
    containerPorts: [{ name: 'http', containerPort: 80, protocol: 'TCP' }],
    nodeName: 'kind-worker3',
  });
  // Every endpoint IP that belongs to a pod manifest matches one.
  for (const ip of ['10.244.0.2', '10.244.0.3', '10.244.1.10', '10.244.2.11', '10.244.3.12', '10.244.1.20', '10.244.2.21', '10.244.3.22', '10.244.1.30', 'fd00:10:244::1:1e']) {
    t.ok(s.podsByIP.has(ip), `pod for ${ip}`);
  }
});

t.test('hot reload: add, modify, delete a file within 1 s; zones come and go', async (t) => {
  const dir = await tempZones(t);
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.11'));
  const { source } = await startSource(t, dir);
  const store = source.storeFor('cluster.local');
  const reloads: string[] = [];
  source.onReload((z) => reloads.push(z));
  t.equal(ipOf(store, 'default/a'), '10.96.0.11');

  await put(dir, 'cluster.local/sub/b.yaml', svcYaml('b', '10.96.0.12'));
  t.ok((await until(() => store.services.has('default/b'), 1000, 'add')) < 1000, 'added');

  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.21'));
  await until(() => ipOf(store, 'default/a') === '10.96.0.21', 1000, 'modify');
  t.pass('modified');

  await rm(join(dir, 'cluster.local/sub/b.yaml'));
  await until(() => !store.services.has('default/b'), 1000, 'delete');
  t.pass('deleted');

  await put(dir, 'cluster.local/c.yaml', svcYaml('c', '10.96.0.13'));
  await until(() => store.services.has('default/c'), 1000, 'add c');
  await writeFile(join(dir, 'cluster.local/c.yaml'), '');
  await until(() => !store.services.has('default/c'), 1000, 'emptied file');
  t.pass('an emptied file drops its objects');
  t.ok(store.services.has('default/a'), 'the rest untouched');
  t.ok(reloads.length >= 3 && reloads.every((z) => z === 'cluster.local'));

  // A new folder in a new zone, then removed.
  const changes: ZonesChange[] = [];
  source.onZonesChanged((c) => changes.push(c));
  await put(dir, 'example.org/x.yaml', svcYaml('x', '10.96.1.1'));
  await until(() => source.zones().includes('example.org'), 1000, 'new zone');
  const other = source.storeFor('example.org');
  t.equal(ipOf(other, 'default/x'), '10.96.1.1');
  await rm(join(dir, 'example.org'), { recursive: true });
  await until(() => !source.zones().includes('example.org'), 1500, 'zone removal');
  t.equal(other.services.size, 0, 'the removed zone store is emptied');
  t.equal(source.storeFor('example.org'), other, 'same store per zone name');
  t.strictSame(changes, [
    { added: ['example.org'], removed: [] },
    { added: [], removed: ['example.org'] },
  ]);
});

t.test('polling picks up changes without watchers', async (t) => {
  const dir = await tempZones(t);
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.11'));
  const { source } = await startSource(t, dir, { watch: false, pollIntervalMs: 100 });
  const store = source.storeFor('cluster.local');
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.31'));
  await until(() => ipOf(store, 'default/a') === '10.96.0.31', 1000, 'poll');
  t.pass('polled');
});

t.test('a YAML syntax error keeps the previous objects and reports file and reason', async (t) => {
  const dir = await tempZones(t);
  const file = join(dir, 'cluster.local', 'a.yaml');
  await put(dir, 'cluster.local/a.yaml', `${svcYaml('a', '10.96.0.11')}---\n${svcYaml('b', '10.96.0.12')}`);
  await put(dir, 'cluster.local/new.yaml', 'kind: Service\nmetadata: { name: [\n');
  const { source, logs } = await startSource(t, dir);
  const store = source.storeFor('cluster.local');
  t.strictSame([...store.services.keys()].sort(), ['default/a', 'default/b'], 'a broken new file contributes nothing');
  t.match(source.diagnostics(), [{ severity: 'error', file: join(dir, 'cluster.local', 'new.yaml'), doc: 1, message: /^YAML syntax error: / }]);

  await put(dir, 'cluster.local/a.yaml', `${svcYaml('a', '10.96.0.99')}---\nmetadata:\n  name: b\n   bad: indent\n`);
  await until(() => source.diagnostics().some((d) => d.file === file), 1000, 'diagnostic');
  const d = source.diagnostics().find((x) => x.file === file);
  t.match(d, { severity: 'error', zone: 'cluster.local', file, doc: 2, keptPrevious: true, message: /^YAML syntax error: .*line \d+/ });
  t.equal(ipOf(store, 'default/a'), '10.96.0.11', 'document 1 is not applied either: the file keeps its previous contents');
  t.ok(store.services.has('default/b'));
  t.ok(logs.some((l) => l.level === 'error' && l.msg.startsWith('YAML syntax error') && l.fields?.['file'] === file), 'logged');

  // Fixing the file applies it and clears the diagnostic.
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.99'));
  await until(() => ipOf(store, 'default/a') === '10.96.0.99', 1000, 'fix');
  await until(() => !store.services.has('default/b'), 1000, 'b removed');
  t.notOk(source.diagnostics().some((x) => x.file === file), 'diagnostic cleared');

  // JSON syntax errors too.
  await put(dir, 'cluster.local/x.json', '{"kind": ');
  await until(() => source.diagnostics().some((x) => x.file.endsWith('x.json')), 1000, 'json diagnostic');
  t.match(source.diagnostics().find((x) => x.file.endsWith('x.json')), { doc: 1, message: /^JSON syntax error: / });
});

t.test('an invalid object keeps its previous good version and is reported with file/doc/kind/ns/name', async (t) => {
  const dir = await tempZones(t);
  const file = join(dir, 'cluster.local', 'apps.yaml');
  await put(dir, 'cluster.local/apps.yaml', `${svcYaml('a', '10.96.0.11', 'apps')}---\n${svcYaml('b', '10.96.0.12', 'apps')}`);
  const { source, logs } = await startSource(t, dir);
  const store = source.storeFor('cluster.local');

  await put(
    dir,
    'cluster.local/apps.yaml',
    `${svcYaml('a', '10.96.0.21', 'apps')}---\n${svcYaml('b', '10.96.0.22', 'apps', 70000)}---\n${svcYaml('c', '10.96.0.23', 'apps', 0)}`,
  );
  await until(() => ipOf(store, 'apps/a') === '10.96.0.21', 1000, 'reload');
  t.equal(ipOf(store, 'apps/b'), '10.96.0.12', 'previous good version of b kept');
  t.equal(store.services.get('apps/b')?.ports[0]?.port, 80);
  t.notOk(store.services.has('apps/c'), 'an invalid new object is skipped');
  const diags = source.diagnostics();
  t.strictSame(
    diags.map((d) => ({ ...d, line: undefined })),
    [
      {
        severity: 'error',
        zone: 'cluster.local',
        file,
        doc: 2,
        line: undefined,
        kind: 'Service',
        namespace: 'apps',
        name: 'b',
        message: 'spec.ports[0].port: must be 1-65535, got 70000',
        keptPrevious: true,
      },
      {
        severity: 'error',
        zone: 'cluster.local',
        file,
        doc: 3,
        line: undefined,
        kind: 'Service',
        namespace: 'apps',
        name: 'c',
        message: 'spec.ports[0].port: must be 1-65535, got 0',
      },
    ],
  );
  t.equal(diags[0]?.line, 12, 'line of the document');
  t.ok(logs.some((l) => l.level === 'error' && l.msg === 'spec.ports[0].port: must be 1-65535, got 70000 (previous version kept)'));

  // Editing another file does not log the same problem again.
  const before = logs.filter((l) => l.level === 'error').length;
  await put(dir, 'cluster.local/other.yaml', svcYaml('z', '10.96.0.30'));
  await until(() => store.services.has('default/z'), 1000, 'other');
  t.equal(logs.filter((l) => l.level === 'error').length, before, 'no duplicate logging');

  // Removing the bad object from the file removes the kept version too.
  await put(dir, 'cluster.local/apps.yaml', svcYaml('a', '10.96.0.21', 'apps'));
  await until(() => !store.services.has('apps/b'), 1000, 'b gone');
  t.strictSame(source.diagnostics(), []);
});

t.test('problems inside documents: unsupported kinds, non-objects, bad list items, alias bombs', async (t) => {
  const dir = await tempZones(t);
  await put(
    dir,
    'cluster.local/mixed.yaml',
    `apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: shop }
---
- just
- a list
---
apiVersion: v1
kind: ConfigMapList
items: []
---
${svcYaml('ok', '10.96.0.5')}`,
  );
  await put(
    dir,
    'cluster.local/list.yaml',
    `apiVersion: v1
kind: List
items:
  - { apiVersion: v1, kind: Namespace, metadata: { name: good } }
  - { apiVersion: v1, kind: Service, metadata: { name: bad, namespace: good }, spec: { clusterIP: 10.96.0.300 } }
`,
  );
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 12; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
  await put(dir, 'cluster.local/zz-bomb.yaml', bomb.join('\n'));
  await put(dir, 'stray.yaml', svcYaml('stray', '10.96.0.6'));
  const { source } = await startSource(t, dir);
  t.ok(source.storeFor('cluster.local').services.has('default/ok'));
  t.ok(source.storeFor('cluster.local').namespaces.has('good'));
  t.match(source.diagnostics(), [
    { severity: 'error', file: join(dir, 'cluster.local', 'list.yaml'), doc: 1, item: 1, kind: 'Service', namespace: 'good', name: 'bad', message: 'spec.clusterIP: must be a valid IP address, got "10.96.0.300"' },
    { severity: 'warning', file: join(dir, 'cluster.local', 'mixed.yaml'), doc: 1, kind: 'Deployment', namespace: 'shop', name: 'web', message: /^kind: apps\/v1 Deployment is not used by clusterdns/ },
    { severity: 'error', doc: 2, message: 'document is not a Kubernetes object (a mapping)' },
    { severity: 'warning', doc: 3, kind: 'ConfigMapList', message: /ConfigMap is not used/ },
    { severity: 'error', file: join(dir, 'cluster.local', 'zz-bomb.yaml'), doc: 1, message: /^YAML error: .*alias/i },
    { severity: 'warning', file: join(dir, 'stray.yaml'), message: /not inside a zone folder/ },
  ]);
});

t.test('the same object in two files: first by sorted path wins, the other is reported', async (t) => {
  const dir = await tempZones(t);
  await put(dir, 'cluster.local/b.yaml', svcYaml('x', '10.96.0.2'));
  await put(dir, 'cluster.local/a/z.yaml', svcYaml('x', '10.96.0.1'));
  await put(dir, 'cluster.local/c.yaml', `${svcYaml('y', '10.96.0.3')}---\n${svcYaml('y', '10.96.0.4')}`);
  const { source } = await startSource(t, dir);
  const store = source.storeFor('cluster.local');
  t.equal(ipOf(store, 'default/x'), '10.96.0.1', 'a/z.yaml sorts before b.yaml');
  t.equal(ipOf(store, 'default/y'), '10.96.0.3', 'first document wins within a file');
  t.match(source.diagnostics(), [
    { severity: 'error', file: join(dir, 'cluster.local', 'b.yaml'), doc: 1, kind: 'Service', namespace: 'default', name: 'x', message: 'duplicate of Service default/x already defined in a/z.yaml (document 1); ignored' },
    { severity: 'error', file: join(dir, 'cluster.local', 'c.yaml'), doc: 2, kind: 'Service', name: 'y', message: 'duplicate of Service default/y in document 1 of the same file; ignored' },
  ]);

  // When the winner goes away, the other copy takes over and the report clears.
  await rm(join(dir, 'cluster.local/a/z.yaml'));
  await until(() => ipOf(store, 'default/x') === '10.96.0.2', 1000, 'takeover');
  t.notOk(store.services.get('default/x') === undefined, 'never missing');
  t.equal(source.diagnostics().filter((d) => d.name === 'x').length, 0);
});

t.test('namespaces are synthesized for objects without a Namespace manifest', async (t) => {
  const dir = await tempZones(t);
  await put(dir, 'cluster.local/foo.yaml', svcYaml('a', '10.96.0.1', 'foo'));
  await put(dir, 'cluster.local/bar.yaml', `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bar\n  labels: { team: b }\n---\n${svcYaml('b', '10.96.0.2', 'bar')}`);
  await put(dir, 'cluster.local/empty-ns.yaml', 'apiVersion: v1\nkind: Namespace\nmetadata: { name: quiet }\n');
  const { source } = await startSource(t, dir);
  const store = source.storeFor('cluster.local');
  t.strictSame(store.namespaces.get('foo'), { name: 'foo', labels: {} });
  t.strictSame(store.namespaces.get('bar'), { name: 'bar', labels: { team: 'b' } });
  t.strictSame(store.namespaces.get('quiet'), { name: 'quiet', labels: {} }, 'an empty declared namespace exists');
  t.strictSame([...store.namespaces.keys()].sort(), ['bar', 'foo', 'quiet']);

  await put(dir, 'cluster.local/foo-ns.yaml', 'apiVersion: v1\nkind: Namespace\nmetadata: { name: foo, labels: { x: y } }\n');
  await until(() => store.namespaces.get('foo')?.labels['x'] === 'y', 1000, 'manifest wins');
  t.pass('manifest labels applied');
  await rm(join(dir, 'cluster.local/foo-ns.yaml'));
  await until(() => store.namespaces.get('foo')?.labels['x'] === undefined, 1000, 'back to synthesized');
  t.ok(store.namespaces.has('foo'), 'still exists while objects live in it');
  await rm(join(dir, 'cluster.local/foo.yaml'));
  await until(() => !store.namespaces.has('foo'), 1000, 'synthesized namespace removed');
  t.pass('removed with its last object');
});

t.test('rename-over and move-away rewrites never leave a name missing', async (t) => {
  const dir = await tempZones(t);
  const doc = (i: number): string =>
    `${svcYaml('stable', '10.96.0.1')}---\n${svcYaml('moving', `10.96.0.${100 + i}`)}---\n${svcYaml(`only-${i % 2}`, '10.96.0.50')}`;
  await put(dir, 'cluster.local/main.yaml', doc(0));
  await put(dir, 'cluster.local/other.yaml', svcYaml('other', '10.96.0.2'));
  const { source } = await startSource(t, dir);
  const store = source.storeFor('cluster.local');

  let samples = 0;
  const missing: string[] = [];
  const sampler = setInterval(() => {
    samples++;
    for (const key of ['default/stable', 'default/moving', 'default/other']) if (!store.services.has(key)) missing.push(key);
  }, 1);
  t.teardown(() => clearInterval(sampler));

  for (let i = 1; i <= 8; i++) {
    await putAtomic(dir, 'cluster.local/main.yaml', doc(i));
    await sleep(40 + (i % 3) * 50);
  }
  // Editors that move the old file away first, then write the new one.
  for (let i = 9; i <= 12; i++) {
    await rename(join(dir, 'cluster.local/main.yaml'), join(dir, 'cluster.local/main.yaml~'));
    await sleep(i % 2 === 0 ? 5 : 60);
    await put(dir, 'cluster.local/main.yaml', doc(i));
    await rm(join(dir, 'cluster.local/main.yaml~'));
    await sleep(120);
  }
  // In-place rewrites caught while empty (truncate, then a slow writer).
  for (const gap of [20, 150]) {
    await writeFile(join(dir, 'cluster.local/main.yaml'), '');
    await sleep(gap);
    await writeFile(join(dir, 'cluster.local/main.yaml'), doc(13));
    await sleep(100);
  }
  await until(() => ipOf(store, 'default/moving') === '10.96.0.113', 1000, 'final version');
  await sleep(300);
  clearInterval(sampler);
  t.ok(samples > 100, `sampled ${samples} times`);
  t.strictSame(missing, [], 'no name was ever missing');
  t.ok(store.services.has('default/only-1') && !store.services.has('default/only-0'), 'names that really went away did go');
  t.strictSame(source.diagnostics(), []);
});

t.test('a write in progress is not applied until the file settles', async (t) => {
  const dir = await tempZones(t);
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.1'));
  const { source } = await startSource(t, dir, { watch: false, pollIntervalMs: 60_000, settleMs: 400 });
  const store = source.storeFor('cluster.local');
  await writeFile(join(dir, 'cluster.local/a.yaml'), ''); // truncated: the writer has not written yet
  await source.rescan();
  t.ok(store.services.has('default/a'), 'a freshly truncated file is not applied');
  await writeFile(join(dir, 'cluster.local/a.yaml'), svcYaml('a', '10.96.0.2'));
  await until(() => ipOf(store, 'default/a') === '10.96.0.2', 1500, 'settled');
  t.pass('applied once settled');
});

t.test('transform hook sees every object with its origin; a failure keeps the previous state', async (t) => {
  const dir = await tempZones(t);
  await put(dir, 'cluster.local/a.yaml', `${svcYaml('a', '10.96.0.1')}---\n${svcYaml('b', '10.96.0.2')}`);
  let fail = false;
  const seen: { zone: string; names: string[]; origins: string[] }[] = [];
  const transform = (zone: string, objects: ClusterObject[], origin: Map<ClusterObject, { file: string; doc: number }>): ClusterObject[] => {
    if (fail) throw new Error('allocator exploded');
    seen.push({
      zone,
      names: objects.map((o) => o.obj.name),
      origins: objects.map((o) => {
        const where = origin.get(o);
        return where === undefined ? '?' : `${where.file.slice(dir.length + 1)}#${where.doc}`;
      }),
    });
    // Drop b, add a slice for a.
    return [
      ...objects.filter((o) => o.obj.name !== 'b'),
      {
        kind: 'EndpointSlice',
        obj: { namespace: 'default', name: 'a-gen', serviceName: 'a', addressType: 'IPv4', endpoints: [], ports: [], legacy: false, labels: {} },
      },
    ];
  };
  const { source } = await startSource(t, dir, { transform });
  const store = source.storeFor('cluster.local');
  t.strictSame(seen, [{ zone: 'cluster.local', names: ['a', 'b'], origins: ['cluster.local/a.yaml#1', 'cluster.local/a.yaml#2'] }]);
  t.strictSame([...store.services.keys()], ['default/a']);
  t.ok(store.slices.has('default/a-gen'));
  t.ok(store.namespaces.has('default'), 'namespaces synthesized after the transform');

  fail = true;
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.9'));
  await until(() => source.diagnostics().length > 0, 1000, 'transform failure');
  t.match(source.diagnostics(), [{ severity: 'error', zone: 'cluster.local', message: 'transform failed: allocator exploded', keptPrevious: true }]);
  t.equal(ipOf(store, 'default/a'), '10.96.0.1', 'previous state kept');
  fail = false;
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.8'));
  await until(() => ipOf(store, 'default/a') === '10.96.0.8', 1000, 'recovered');
  t.strictSame(source.diagnostics(), []);
});

t.test('a missing zones directory is reported, and picked up when it appears', async (t) => {
  const parent = await tempZones(t);
  const dir = join(parent, 'zones');
  const { source } = await startSource(t, dir, { pollIntervalMs: 100 });
  t.strictSame(source.zones(), []);
  t.match(source.diagnostics(), [{ severity: 'error', file: dir, message: 'zones directory does not exist' }] as Diagnostic[]);
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.1'));
  await until(() => source.storeFor('cluster.local').services.has('default/a'), 1500, 'late directory');
  t.strictSame(source.diagnostics(), []);
});

t.test('stop() leaves no handles and stops reloading', async (t) => {
  const count = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
    return out;
  };
  const dir = await tempZones(t);
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.1'));
  await put(dir, 'cluster.local/sub/b.yaml', svcYaml('b', '10.96.0.2'));
  const before = count();
  const source = new FileSource({ dir });
  await source.start();
  const during = count();
  t.ok((during['FSEventWrap'] ?? 0) >= 3, 'watching root, zone and sub folder');
  // Trigger a watch event so a debounce timer is pending, then stop.
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.5'));
  await source.stop();
  await sleep(20);
  const after = count();
  t.equal(after['FSEventWrap'] ?? 0, before['FSEventWrap'] ?? 0, 'no watchers left');
  t.equal(after['Timeout'] ?? 0, before['Timeout'] ?? 0, 'no timers left');
  const store = source.storeFor('cluster.local');
  const ip = ipOf(store, 'default/a');
  await put(dir, 'cluster.local/a.yaml', svcYaml('a', '10.96.0.6'));
  await sleep(300);
  t.equal(ipOf(store, 'default/a'), ip, 'no reload after stop');
  t.ok(store.services.has('default/b'), 'the store keeps its data');
});
