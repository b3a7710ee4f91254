/**
 * The client configuration without client-node's KubeConfig (src/cluster/kube/config.ts):
 * exec plugins, basic auth, relative certificate paths, $KUBECONFIG merging, ~/.kube/config,
 * the auth-provider and proxy-url paths delegated to a lazily loaded KubeConfig, and the
 * point of it all: the normal path never loads the package index.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { delimiter, isAbsolute, join } from 'node:path';
import t, { type Test } from 'tap';
import { parse as parseYaml, stringify as yamlStringify } from 'yaml';
import { loadClientConfig } from '../../src/cluster/kube/config.js';
import { getJSON } from '../../src/cluster/kube/http.js';
import { KubeConfigError, KubeSource } from '../../src/cluster/kube/index.js';
import { generateTestPki } from '../helpers/tls.js';
import { FAST, fakeServer, LogRecorder, makeSource, ns, tempDir, watching } from './helpers/setup.js';

interface KubeconfigDoc {
  clusters: { name: string; cluster: Record<string, unknown> }[];
  users: { name: string; user: Record<string, unknown> }[];
  contexts: { name: string; context: Record<string, unknown> }[];
  'current-context'?: string;
}

function writeDoc(dir: string, doc: object, name = 'kubeconfig'): string {
  const p = join(dir, name);
  writeFileSync(p, yamlStringify(doc), { mode: 0o600 });
  return p;
}

/** Set environment variables for the test, restored at teardown. */
function setEnv(t: Test, vars: Record<string, string | undefined>): void {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}

/** A plain HTTP server answering `{}` (or a one-event watch stream) and recording request headers. */
async function recordingServer(t: Test): Promise<{ url: string; headers: http.IncomingHttpHeaders[] }> {
  const headers: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    headers.push(req.headers);
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.url?.includes('watch=true')) res.end('{"type":"ADDED","object":{"metadata":{"name":"x"}}}\n');
    else res.end('{"kind":"List","items":[]}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, headers };
}

/** A client CA and a client certificate (clientAuth) signed by it, made with the openssl CLI. */
function clientPki(t: Test): { caCert: string; cert: string; key: string } {
  const dir = tempDir(t, 'clusterdns-client-pki-');
  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=client-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  run('req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=clusterdns-client');
  writeFileSync(join(dir, 'client.ext'), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  run('x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2', '-extfile', 'client.ext');
  const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
  return { caCert: read('ca.crt'), cert: read('client.crt'), key: read('client.key') };
}

t.test('exec plugin: the ExecCredential token authenticates against the API server, env passed', async (t) => {
  const s = await fakeServer(t, { tls: true, token: 'from-exec-plugin' });
  s.create('Namespace', ns('a'));
  const dir = tempDir(t);
  const script = join(dir, 'plugin.mjs');
  writeFileSync(
    script,
    `process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential',
      status: { token: process.env.PLUGIN_TOKEN, expirationTimestamp: new Date(Date.now() + 3600e3).toISOString() } }));\n`,
  );
  const doc = parseYaml(s.kubeconfig()) as KubeconfigDoc;
  doc.users[0]!.user = {
    exec: {
      apiVersion: 'client.authentication.k8s.io/v1',
      command: process.execPath,
      args: [script],
      env: [{ name: 'PLUGIN_TOKEN', value: 'from-exec-plugin' }],
      interactiveMode: 'Never',
    },
  };
  const kubeconfigPath = writeDoc(dir, doc);
  const { source, log } = makeSource(t, { kubeconfigPath });
  await source.start();
  t.ok(source.synced(), `synced\n${log.dump()}`);
  await watching(source);
  t.match(source.status().client, { auth: 'exec', source: 'kubeconfig' });
  t.ok(s.requests.length > 0 && s.requests.every((r) => r.authorization === 'Bearer from-exec-plugin'), 'every request carries the exec token');
  t.equal(loadClientConfig({ kubeconfig: kubeconfigPath }).delegatedFor, undefined, 'exec is handled without client-node KubeConfig');
});

t.test('exec plugin that fails: the request fails with its stderr', async (t) => {
  const dir = tempDir(t);
  const kubeconfig = writeDoc(dir, {
    clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1' } }],
    users: [{ name: 'u', user: { exec: { command: process.execPath, args: ['-e', 'console.error("no credentials here"); process.exit(3)'] } } }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
  const kc = loadClientConfig({ kubeconfig });
  t.teardown(() => kc.destroy());
  await t.rejects(kc.channel().applyToHTTPSOptions({}), /no credentials here/);
});

t.test('basic auth, impersonation and a plain-http server: list (getJSON) and Watch headers', async (t) => {
  const srv = await recordingServer(t);
  const dir = tempDir(t);
  const kubeconfig = writeDoc(dir, {
    clusters: [{ name: 'c', cluster: { server: `${srv.url}/` } }],
    users: [{ name: 'u', user: { username: 'alice', password: 's3cret', as: 'bob' } }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
  const kc = loadClientConfig({ kubeconfig });
  t.teardown(() => kc.destroy());
  t.match(kc.describe(), { server: srv.url, auth: 'basic', context: 'x', user: 'u' });
  const basic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
  const ch = kc.channel();
  await getJSON(ch, '/api/v1/namespaces', {}, { timeoutMs: 2000 });
  t.equal(srv.headers[0]?.authorization, basic, 'list: basic auth header');
  t.equal(srv.headers[0]?.['impersonate-user'], 'bob');

  const fetchOpts = await ch.config.applyToFetchOptions({});
  t.ok(fetchOpts.headers.some(([k, v]) => k === 'Authorization' && v === basic), 'watch: basic auth header');
  t.ok(fetchOpts.agent instanceof http.Agent && !(fetchOpts.agent instanceof https.Agent), 'http agent for http://');

  const { Watch } = await import('@kubernetes/client-node/dist/watch.js');
  const got: string[] = [];
  await new Promise<void>((resolve, reject) => {
    new Watch(ch.config as never)
      .watch('/api/v1/namespaces', {}, (type) => got.push(type), (err: unknown) => (err ? reject(err as Error) : resolve()))
      .catch(reject);
  });
  t.same(got, ['ADDED']);
  t.equal(srv.headers[1]?.authorization, basic, 'a real Watch sends it');
  t.equal(srv.headers[1]?.['impersonate-user'], 'bob');
  t.equal(kc.agentCount, 1, 'one agent for both requests');
});

t.test('relative CA, client certificate and key paths are relative to the kubeconfig (mutual TLS)', async (t) => {
  const pki = generateTestPki('mtls');
  const client = clientPki(t);
  const server = https.createServer(
    { key: pki.serverKey, cert: pki.serverCert, ca: client.caCert, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ cn: peer.subject?.CN }));
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;

  const dir = tempDir(t);
  mkdirSync(join(dir, 'pki'));
  writeFileSync(join(dir, 'pki', 'ca.crt'), pki.caCert);
  writeFileSync(join(dir, 'pki', 'client.crt'), client.cert);
  writeFileSync(join(dir, 'pki', 'client.key'), client.key);
  const kubeconfig = writeDoc(dir, {
    clusters: [{ name: 'c', cluster: { server: `https://127.0.0.1:${port}`, 'certificate-authority': 'pki/ca.crt' } }],
    users: [{ name: 'u', user: { 'client-certificate': 'pki/client.crt', 'client-key': './pki/client.key' } }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
  const kc = loadClientConfig({ kubeconfig });
  t.teardown(() => kc.destroy());
  t.equal(kc.getCurrentCluster()?.caFile, join(dir, 'pki', 'ca.crt'));
  t.equal(kc.getCurrentUser()?.certFile, join(dir, 'pki', 'client.crt'));
  t.equal(kc.getCurrentUser()?.keyFile, join(dir, 'pki', 'client.key'));
  t.equal(kc.describe().auth, 'clientCertificate');
  const res = await getJSON(kc.channel(), '/version', {}, { timeoutMs: 3000 });
  t.same(res.body, { cn: 'clusterdns-client' }, 'the server saw our client certificate');

  // tls-server-name and the certificate-authority-data spelling.
  const dir2 = tempDir(t);
  writeFileSync(join(dir2, 'c.crt'), client.cert);
  writeFileSync(join(dir2, 'c.key'), client.key);
  const kc2 = loadClientConfig({
    kubeconfig: writeDoc(dir2, {
      clusters: [
        {
          name: 'c',
          cluster: { server: `https://localhost:${port}`, 'certificate-authority-data': Buffer.from(pki.caCert).toString('base64'), 'tls-server-name': '127.0.0.1' },
        },
      ],
      users: [{ name: 'u', user: { 'client-certificate': 'c.crt', 'client-key': 'c.key' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  });
  t.teardown(() => kc2.destroy());
  const o: https.RequestOptions = {};
  await kc2.applyToHTTPSOptions(o);
  t.equal(o.servername, '127.0.0.1');
  t.same((await getJSON(kc2.channel(), '/version', {}, { timeoutMs: 3000 })).body, { cn: 'clusterdns-client' });
});

t.test('$KUBECONFIG with two files: merged, later current-context wins, paths relative to each file', async (t) => {
  const s = await fakeServer(t, { tls: true, token: 'merged' });
  s.create('Namespace', ns('a'));
  const d1 = tempDir(t);
  const d2 = tempDir(t);
  writeFileSync(join(d2, 'ca.crt'), s.caCert!);
  writeDoc(d1, {
    clusters: [{ name: 'other', cluster: { server: 'https://127.0.0.1:1' } }],
    users: [{ name: 'u1', user: { token: 'nope' } }],
    contexts: [{ name: 'first', context: { cluster: 'other', user: 'u1' } }],
    'current-context': 'first',
  });
  writeDoc(d2, {
    clusters: [{ name: 'fake', cluster: { server: s.url, 'certificate-authority': 'ca.crt' } }],
    users: [{ name: 'u2', user: { token: 'merged' } }],
    contexts: [{ name: 'second', context: { cluster: 'fake', user: 'u2', namespace: 'kube-system' } }],
    'current-context': 'second',
  });
  setEnv(t, { KUBECONFIG: `${join(d1, 'kubeconfig')}${delimiter}${delimiter}${join(d2, 'kubeconfig')}` });
  const kc = loadClientConfig({});
  t.teardown(() => kc.destroy());
  t.same(kc.contexts.map((c) => c.name), ['first', 'second']);
  t.same(kc.clusters.map((c) => c.name), ['other', 'fake']);
  t.match(kc.describe(), { context: 'second', server: s.url, user: 'u2', auth: 'token', source: 'default' });
  t.equal(kc.getCurrentCluster()?.caFile, join(d2, 'ca.crt'));
  t.equal(loadClientConfig({ context: 'first' }).describe().server, 'https://127.0.0.1:1', '--context picks from the merged set');

  const source = new KubeSource({ watchPods: false, ...FAST, log: new LogRecorder() });
  t.teardown(() => source.stop());
  await source.start();
  t.ok(source.synced(), 'a KubeSource without --kubeconfig uses $KUBECONFIG');
  t.ok(s.requests.every((r) => r.authorization === 'Bearer merged'));

  // client-node's merge refuses duplicate names.
  process.env['KUBECONFIG'] = `${join(d1, 'kubeconfig')}${delimiter}${join(d1, 'kubeconfig')}`; // restored by setEnv's teardown
  t.throws(() => loadClientConfig({}), { name: 'KubeConfigError', message: /^kubeconfig: Duplicate cluster: other$/ });
  process.env['KUBECONFIG'] = `${join(d1, 'kubeconfig')}${delimiter}${join(d1, 'missing')}`;
  t.throws(() => loadClientConfig({}), { name: 'KubeConfigError', message: /^kubeconfig: ENOENT/ });
});

t.test('~/.kube/config when $KUBECONFIG is unset; neither: the usual error', async (t) => {
  const s = await fakeServer(t);
  const home = tempDir(t);
  mkdirSync(join(home, '.kube'));
  writeFileSync(join(home, '.kube', 'config'), s.kubeconfig());
  setEnv(t, { KUBECONFIG: undefined, HOME: home, KUBERNETES_SERVICE_HOST: undefined, KUBERNETES_SERVICE_PORT: undefined });
  const kc = loadClientConfig({});
  t.teardown(() => kc.destroy());
  t.match(kc.describe(), { server: s.url, source: 'default', auth: 'token' });
  process.env['HOME'] = tempDir(t); // restored by setEnv's teardown
  t.throws(() => loadClientConfig({}), {
    name: 'KubeConfigError',
    message: 'no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a pod: give --kubeconfig or --in-cluster',
  });
});

t.test('kubeconfig parse errors keep the path and client-node\'s reason', async (t) => {
  const dir = tempDir(t);
  const bad = writeDoc(dir, { clusters: [{ name: 'c', cluster: {} }], users: [], contexts: [] });
  t.throws(() => loadClientConfig({ kubeconfig: bad }), { name: 'KubeConfigError', message: `kubeconfig ${bad}: clusters[0].cluster.server is missing` });
  const empty = join(dir, 'empty');
  writeFileSync(empty, '');
  t.throws(() => loadClientConfig({ kubeconfig: empty }), { name: 'KubeConfigError', message: /^kubeconfig .*empty: not a kubeconfig/ });
  const noCtx = writeDoc(dir, { clusters: [{ name: 'c', cluster: { server: 'https://x' } }], users: [], contexts: [] }, 'noctx');
  t.throws(() => loadClientConfig({ kubeconfig: noCtx }), { message: 'kubeconfig: the current context "" names no cluster' });
  t.ok(new KubeConfigError('x') instanceof Error);
});

t.test('auth-provider (azure): delegated to a lazily loaded client-node KubeConfig, and it authenticates', async (t) => {
  const s = await fakeServer(t, { tls: true, token: 'azure-access-token' });
  s.create('Namespace', ns('a'));
  const dir = tempDir(t);
  const doc = parseYaml(s.kubeconfig()) as KubeconfigDoc;
  doc.users[0]!.user = { 'auth-provider': { name: 'azure', config: { 'access-token': 'azure-access-token' } } };
  const kubeconfigPath = writeDoc(dir, doc);
  t.equal(loadClientConfig({ kubeconfig: kubeconfigPath }).delegatedFor, 'auth-provider "azure"');
  // Loading client-node's index takes a second (several under tsx and coverage).
  const { source, log } = makeSource(t, { kubeconfigPath }, { startupTimeoutMs: 30_000 });
  await source.start();
  t.ok(source.synced(), `synced\n${log.dump()}`);
  await watching(source);
  t.equal(source.status().client.auth, 'authProvider');
  t.ok(s.requests.every((r) => r.authorization === 'Bearer azure-access-token'));
  const before = source.socketCount();
  t.ok(before >= 1, 'sockets are in our agents (counted)');
});

t.test('auth-provider that cannot produce a token: a clear error from client-node', async (t) => {
  const dir = tempDir(t);
  const kubeconfig = writeDoc(dir, {
    clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1' } }],
    users: [{ name: 'u', user: { 'auth-provider': { name: 'gcp', config: {} } } }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
  const kc = loadClientConfig({ kubeconfig });
  t.teardown(() => kc.destroy());
  t.equal(kc.delegatedFor, 'auth-provider "gcp"');
  await t.rejects(kc.applyToHTTPSOptions({}), /Token is expired/);
});

t.test('proxy-url: delegated to client-node, requests go through the proxy (CONNECT)', async (t) => {
  const s = await fakeServer(t, { tls: true, token: 'via-proxy' });
  s.create('Namespace', ns('a'));
  const connects: string[] = [];
  const proxy = http.createServer((_req, res) => res.writeHead(405).end());
  const tunnels = new Set<net.Socket>();
  proxy.on('connect', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => {
    connects.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const up = net.connect(Number(port), host, () => {
      sock.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    const end = (): void => {
      up.destroy();
      sock.destroy();
    };
    tunnels.add(sock).add(up);
    up.on('error', end);
    sock.on('error', end);
    sock.on('close', end);
    up.on('close', end);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const sock of tunnels) sock.destroy();
    proxy.closeAllConnections();
    return new Promise<void>((r) => proxy.close(() => r()));
  });
  const dir = tempDir(t);
  const doc = parseYaml(s.kubeconfig()) as KubeconfigDoc;
  doc.clusters[0]!.cluster['proxy-url'] = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
  const kubeconfigPath = writeDoc(dir, doc);
  t.equal(loadClientConfig({ kubeconfig: kubeconfigPath }).delegatedFor, 'proxy-url');
  const { source, log } = makeSource(t, { kubeconfigPath }, { startupTimeoutMs: 30_000 });
  await source.start();
  t.ok(source.synced(), `synced\n${log.dump()}`);
  t.ok(connects.length >= 1 && connects.every((c) => c === `127.0.0.1:${new URL(s.url).port}`), 'through the proxy');
  t.ok(s.requests.every((r) => r.authorization === 'Bearer via-proxy'));
});

t.test('a token-file user and an unreadable CA file: errors at request time, as before', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'tok'), 'file-token\n');
  const kubeconfig = writeDoc(dir, {
    clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1', 'certificate-authority': 'missing-ca.crt' } }],
    users: [{ name: 'u', user: { 'token-file': 'tok', token: 'static' } }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
  const kc = loadClientConfig({ kubeconfig });
  t.teardown(() => kc.destroy());
  t.equal(kc.describe().auth, 'tokenFile');
  t.ok(isAbsolute(kc.tokenFiles.get('u')!.file.path));
  t.equal(kc.getCurrentUser()?.token, undefined, 'the static token is only the fallback');
  await t.rejects(kc.applyToHTTPSOptions({}), /ENOENT.*missing-ca\.crt/);
  writeFileSync(join(dir, 'missing-ca.crt'), generateTestPki('x').caCert);
  const o: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(o);
  t.equal((o.headers as Record<string, string>)['Authorization'], 'Bearer file-token');
});

t.test('the normal path never loads the package index (nor dist/config.js or dist/gen)', async (t) => {
  const dir = tempDir(t);
  const hook = join(dir, 'hook.mjs');
  writeFileSync(
    hook,
    `export async function load(url, context, next) {
       if (url.includes('@kubernetes/client-node/')) process.stderr.write('LOADED ' + url.replace(/.*client-node\\//, '') + '\\n');
       return next(url, context);
     }\n`,
  );
  const register = join(dir, 'register.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${hook}`)});\n`);
  const kubeconfig = writeDoc(dir, {
    clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1', 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'u', user: { token: 't' } }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
  const code = `
    const { KubeSource } = await import('./src/cluster/kube/index.ts');
    const log = { info() {}, warn() {}, error() {} };
    const s = new KubeSource({ kubeconfig: ${JSON.stringify(kubeconfig)}, watchPods: false, startupTimeoutMs: 300, log });
    await s.start();
    await s.stop();
    process.stderr.write('DONE\\n');
  `;
  const r = spawnSync(process.execPath, ['--import', register, '--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: join(import.meta.dirname, '..', '..'),
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
    timeout: 60_000,
  });
  t.equal(r.status, 0, r.stderr);
  const loaded = r.stderr.split('\n').filter((l) => l.startsWith('LOADED ')).map((l) => l.slice(7)).sort();
  t.match(r.stderr, /DONE/, 'the source started and stopped');
  t.same(loaded, ['dist/config_types.js', 'dist/exec_auth.js', 'dist/file_auth.js', 'dist/watch.js'], 'only the light modules');
});
