/**
 * Authentication and configuration: kubeconfig with bearer token and CA over TLS, a
 * kubeconfig user's rotating `tokenFile`, the in-cluster service account (rotated the way
 * the kubelet does it: a symlink swap), TLS failures that are logged not thrown, and
 * configuration mistakes that are refused up front.
 */
import { mkdirSync, renameSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse as parseYaml, stringify as yamlStringify } from 'yaml';
import { KubeConfigError, KubeSource, inClusterAvailable, SERVICE_ACCOUNT_DIR } from '../../src/cluster/kube/index.js';
import { generateTestPki } from '../helpers/tls.js';
import { fakeServer, FAST, LogRecorder, makeSource, ns, sleep, svc, tempDir, until, watching } from './helpers/setup.js';

interface KubeconfigDoc {
  clusters: { name: string; cluster: Record<string, unknown> }[];
  users: { name: string; user: Record<string, unknown> }[];
  contexts: { name: string; context: Record<string, unknown> }[];
  'current-context': string;
}

t.test('TLS with the CA from the kubeconfig, bearer token', async (t) => {
  const s = await fakeServer(t, { tls: true, token: 'sekret' });
  s.create('Namespace', ns('a'));
  const { source } = makeSource(t, s);
  await source.start();
  t.ok(source.synced());
  t.match(source.status().client, { server: s.url, auth: 'token', source: 'kubeconfig' });
  t.ok(s.requests.every((r) => r.authorization === 'Bearer sekret'));
  t.equal(source.store.namespaces.size, 1);
});

t.test('TLS without the right CA: the failure is logged, never thrown; start() resolves at the timeout', async (t) => {
  const s = await fakeServer(t, { tls: true });
  for (const [what, kc] of [
    ['no CA', { includeCA: false }],
    ['another CA', { caCert: generateTestPki('other').caCert }],
  ] as const) {
    const before = s.requests.length;
    const { source, log } = makeSource(t, s, { startupTimeoutMs: 600 }, kc);
    await source.start();
    t.notOk(source.synced(), `${what}: not synced`);
    t.equal(log.count('warn', /unreachable or failing/), 1, `${what}: one warning`);
    const warn = log.lines.find((l) => /unreachable/.test(l.msg))!;
    t.match(String(warn.fields['error']), /certificate|self[- ]signed|UNABLE_TO_VERIFY/i, `${what}: the warning says why`);
    t.match(source.status().resources.map((r) => r.lastError), [/certificate|self[- ]signed|UNABLE_TO_VERIFY/i]);
    t.equal(s.requests.length, before, `${what}: no request got past the TLS handshake`);
    await source.stop();
  }
});

t.test('a CA file that changes on disk is picked up (a new agent), without restarting', async (t) => {
  const s = await fakeServer(t, { tls: true });
  s.create('Namespace', ns('a'));
  const dir = tempDir(t);
  const caPath = join(dir, 'ca.crt');
  writeFileSync(caPath, generateTestPki('stale').caCert);
  const doc = parseYaml(s.kubeconfig()) as KubeconfigDoc;
  doc.clusters[0]!.cluster = { server: s.url, 'certificate-authority': 'ca.crt' };
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, yamlStringify(doc));
  const { source, log } = makeSource(t, { kubeconfigPath }, { startupTimeoutMs: 400 });
  await source.start();
  t.notOk(source.synced(), 'the wrong CA: not synced');
  writeFileSync(caPath, s.caCert!);
  await until(() => source.synced(), 'synced once the right CA is on disk', 4000);
  await watching(source);
  t.equal(log.count('info', /reachable again/), 1);
});

t.test('a kubeconfig user with a rotating tokenFile', async (t) => {
  const s = await fakeServer(t, { tls: true, token: 'token-1' });
  s.create('Namespace', ns('a'));
  const dir = tempDir(t);
  const tokenPath = join(dir, 'token');
  writeFileSync(tokenPath, 'token-1\n');
  // Whole-second mtimes, so a later rewrite can restore one exactly.
  const stamp = (): void => utimesSync(tokenPath, 1_700_000_000, 1_700_000_000);
  stamp();
  const doc = parseYaml(s.kubeconfig()) as KubeconfigDoc;
  doc.users[0]!.user = { tokenFile: 'token' }; // relative to the kubeconfig's directory, as client-go
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, yamlStringify(doc));
  const { source, log } = makeSource(t, { kubeconfigPath });
  await source.start();
  await watching(source);
  t.equal(source.status().client.auth, 'tokenFile');
  t.ok(s.requests.every((r) => r.authorization === 'Bearer token-1'), 'the trailing newline is not part of the token');

  // Rotation: new file content, old token refused from now on.
  writeFileSync(tokenPath, 'token-2-longer');
  stamp();
  s.setToken('token-2-longer');
  const mark = s.requests.length;
  s.dropWatches();
  s.create('Service', svc('a', 'after', '10.0.0.1'));
  await until(() => source.store.services.has('a/after'), 'recovered with the rotated token');
  await watching(source);
  const after = s.requests.slice(mark);
  t.ok(after.length >= 3 && after.every((r) => r.authorization === 'Bearer token-2-longer'), 're-read on change, before any 401');
  t.equal(s.requests.filter((r) => r.status === 401).length, 0, 'no request was refused');

  // Same size and mtime (a rewrite the stat cannot see): a 401 makes us read it again.
  const ino = statSync(tokenPath).ino;
  writeFileSync(tokenPath, 'token-3-longer');
  stamp();
  t.equal(statSync(tokenPath).ino, ino, 'same inode, size and mtime');
  s.setToken('token-3-longer');
  s.dropWatches();
  s.create('Service', svc('a', 'after2', '10.0.0.2'));
  await until(() => source.store.services.has('a/after2'), 'recovered after a 401', 4000);
  t.ok(s.requests.filter((r) => r.status === 401).length >= 1, 'the stale token was refused first');
  t.equal(s.requests.at(-1)?.authorization, 'Bearer token-3-longer');
  t.ok(log.count('warn') <= 1, 'at most one warning');
});

t.test('in-cluster: service-account token and CA, KUBERNETES_SERVICE_HOST/PORT, token rotated by symlink swap', async (t) => {
  const s = await fakeServer(t, { tls: true, token: 'sa-1' });
  s.create('Namespace', ns('kube-system'));
  const root = tempDir(t);
  const sa = join(root, SERVICE_ACCOUNT_DIR);
  mkdirSync(sa, { recursive: true });
  // The kubelet's projected volume: files are symlinks into ..data, itself a symlink swapped atomically.
  const writeData = (token: string, n: number): void => {
    const d = join(sa, `..2024_${n}`);
    mkdirSync(d);
    writeFileSync(join(d, 'token'), token);
    writeFileSync(join(d, 'ca.crt'), s.caCert!);
    writeFileSync(join(d, 'namespace'), 'kube-system');
    symlinkSync(`..2024_${n}`, join(sa, `..data_tmp`));
    renameSync(join(sa, '..data_tmp'), join(sa, '..data'));
  };
  writeData('sa-1', 1);
  for (const f of ['token', 'ca.crt', 'namespace']) symlinkSync(join('..data', f), join(sa, f));
  const saved = { host: process.env['KUBERNETES_SERVICE_HOST'], port: process.env['KUBERNETES_SERVICE_PORT'] };
  t.teardown(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  delete process.env['KUBERNETES_SERVICE_HOST'];
  t.notOk(inClusterAvailable(root), 'not in a pod without the env');
  t.throws(() => new KubeSource({ inCluster: true, inClusterRoot: root, watchPods: false, log: new LogRecorder() }), {
    name: 'KubeConfigError',
    code: 'EKUBECONFIG',
    message: /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set/,
  });
  t.ok(new KubeConfigError('x') instanceof Error);
  process.env['KUBERNETES_SERVICE_HOST'] = '127.0.0.1';
  process.env['KUBERNETES_SERVICE_PORT'] = new URL(s.url).port;
  t.ok(inClusterAvailable(root));

  const log = new LogRecorder();
  const source = new KubeSource({ inCluster: true, inClusterRoot: root, watchPods: false, ...FAST, log });
  t.teardown(() => source.stop());
  await source.start();
  t.ok(source.synced());
  t.match(source.status().client, { server: s.url, auth: 'tokenFile', source: 'in-cluster' });
  await watching(source);

  writeData('sa-2', 2);
  s.setToken('sa-2');
  s.dropWatches();
  s.create('Service', svc('kube-system', 'after', '10.0.0.1'));
  await until(() => source.store.services.has('kube-system/after'), 'recovered with the rotated token (client-node alone waits up to 60 s)', 4000);
  t.equal(s.requests.filter((r) => r.status === 401).length, 0, 'the new token was used at once');
});

t.test('configuration mistakes are refused up front with the reason', async (t) => {
  const s = await fakeServer(t);
  const dir = tempDir(t);
  const log = new LogRecorder();
  const make = (o: object) => () => new KubeSource({ watchPods: false, log, ...o });
  t.throws(make({ kubeconfig: join(dir, 'missing') }), { name: 'KubeConfigError', code: 'EKUBECONFIG', message: /cannot read it/ });
  const path = s.writeKubeconfig(dir);
  t.throws(make({ kubeconfig: path, context: 'nope' }), { message: /context "nope" is not in the kubeconfig \(contexts: fake\)/ });
  t.throws(make({ kubeconfig: path, namespaceLabels: 'a b' }), { message: /namespaceLabels: label selector "a b"/ });
  t.throws(make({ kubeconfig: path, labels: 'app in ()' }), { message: /needs at least one value/ });
  t.doesNotThrow(make({ kubeconfig: path, labels: 'app in (a,b),!legacy,tier!=x,k8s.io/name=v' }));
});

t.test('server URL hygiene: a trailing slash, and http:// without insecure-skip-tls-verify', async (t) => {
  const s = await fakeServer(t);
  s.create('Namespace', ns('a'));
  const dir = tempDir(t);
  const doc = parseYaml(s.kubeconfig()) as KubeconfigDoc;
  doc.clusters[0]!.cluster = { server: `${s.url}/` }; // no insecure-skip-tls-verify either
  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, yamlStringify(doc));
  const { source } = makeSource(t, { kubeconfigPath });
  await source.start();
  t.ok(source.synced(), 'synced');
  t.notOk(s.requests.some((r) => r.path.startsWith('//')), 'no //apis paths');
  await sleep(10);
});
