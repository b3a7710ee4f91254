/**
 * Proves the fake apiserver is faithful by driving it with the real @kubernetes/client-node 1.4.0:
 * the generated API clients, Watch, and the informer (makeInformer). Nothing in the client is mocked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  ApisApi,
  CoreApi,
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  VersionApi,
  Watch,
  makeInformer,
} from '@kubernetes/client-node';
import type { V1Service } from '@kubernetes/client-node';
import { FakeApiServer, type FakeApiServerOptions, type KubeconfigOptions } from './helpers/fake-apiserver.js';
import { generateTestPki } from './helpers/tls.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

async function startServer(tt: Teardown, opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const s = await new FakeApiServer().start(opts);
  tt.teardown(() => s.close());
  return s;
}

function kubeConfig(s: FakeApiServer, opts?: KubeconfigOptions): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(s.kubeconfig(opts));
  return kc;
}

function svc(ns: string, name: string, labels: Record<string, string> = {}, ip = '10.0.0.10'): object {
  return {
    metadata: { name, namespace: ns, labels },
    spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] },
  };
}

function pod(ns: string, name: string, phase: string): object {
  return {
    metadata: { name, namespace: ns },
    spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'busybox' }] },
    status: { phase, podIP: '10.244.0.5' },
  };
}

function slice(ns: string, name: string, service: string, ips: string[]): object {
  return {
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

/** What a test needs from an error the client threw (ApiException or FetchError). */
interface ClientError {
  code?: number | string;
  statusCode?: number;
  body?: unknown;
  headers?: Record<string, string>;
  message: string;
}

async function caught(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (err) {
    return err as ClientError;
  }
  throw new Error('expected the call to fail, it succeeded');
}

function statusBody(err: ClientError): { kind?: string; reason?: string; code?: number; status?: string } {
  return JSON.parse(String(err.body)) as { kind?: string; reason?: string; code?: number; status?: string };
}

interface WatchedObject {
  kind?: string;
  apiVersion?: string;
  code?: number;
  reason?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    creationTimestamp?: unknown;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
}

interface WatchEvent {
  type: string;
  object: WatchedObject;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A real client-node Watch, recording events and the done() callback. */
class Recorder {
  readonly events: WatchEvent[] = [];
  done = false;
  doneErr: unknown = undefined;
  controller: AbortController | undefined;
  /** Settles when Watch.watch() resolves (i.e. once response headers arrived). */
  readonly started: Promise<AbortController>;

  constructor(tt: Teardown, kc: KubeConfig, path: string, query: Record<string, string | number | boolean | undefined>) {
    this.started = new Watch(kc).watch(
      path,
      query,
      (type: string, object: WatchedObject) => this.events.push({ type, object }),
      (err: unknown) => {
        this.done = true;
        this.doneErr = err;
      },
    );
    void this.started.then((c) => (this.controller = c));
    tt.teardown(() => this.controller?.abort());
  }

  types(): string[] {
    return this.events.map((e) => `${e.type} ${e.object.metadata?.name ?? ''}@${e.object.metadata?.resourceVersion ?? ''}`);
  }

  async waitEvents(n: number, ms = 3000): Promise<void> {
    await until(() => this.events.length >= n, `${n} watch events (have: ${this.types().join(', ')})`, ms);
  }

  async waitDone(ms = 3000): Promise<unknown> {
    await until(() => this.done, 'watch done()', ms);
    return this.doneErr;
  }
}

t.test('discovery documents are served like kube-apiserver', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const version = await kc.makeApiClient(VersionApi).getCode();
  t.equal(version.gitVersion, 'v1.30.0');
  t.equal(version.major, '1');
  const core = await kc.makeApiClient(CoreApi).getAPIVersions();
  t.same(core.versions, ['v1']);
  const coreRes = await kc.makeApiClient(CoreV1Api).getAPIResources();
  t.equal(coreRes.groupVersion, 'v1');
  for (const name of ['namespaces', 'services', 'endpoints', 'pods']) {
    t.ok(coreRes.resources.some((r) => r.name === name && r.verbs.includes('watch')), `core lists ${name}`);
  }
  const groups = await kc.makeApiClient(ApisApi).getAPIVersions();
  t.same(
    groups.groups.map((g) => g.name),
    ['discovery.k8s.io'],
  );
  const disc = await kc.makeApiClient(DiscoveryV1Api).getAPIResources();
  t.equal(disc.groupVersion, 'discovery.k8s.io/v1');
  const es = disc.resources.find((r) => r.name === 'endpointslices');
  t.equal(es?.kind, 'EndpointSlice');
  t.equal(es?.namespaced, true);
  t.ok(s.requests.some((r) => r.path === '/apis/discovery.k8s.io/v1'));
});

t.test('discovery.k8s.io/v1 can be switched off (legacy Endpoints fallback)', async (t) => {
  const s = await startServer(t, { endpointSlices: false });
  const kc = kubeConfig(s);
  const err = await caught(kc.makeApiClient(DiscoveryV1Api).getAPIResources());
  t.equal(err.code, 404);
  const listErr = await caught(kc.makeApiClient(DiscoveryV1Api).listEndpointSliceForAllNamespaces());
  t.equal(listErr.code, 404);
  const groups = await kc.makeApiClient(ApisApi).getAPIVersions();
  t.same(groups.groups, []);
  s.create('Endpoints', { metadata: { name: 'web', namespace: 'a' }, subsets: [{ addresses: [{ ip: '10.1.1.1' }] }] });
  const eps = await kc.makeApiClient(CoreV1Api).listEndpointsForAllNamespaces();
  t.equal(eps.items.length, 1);
  t.equal(eps.items[0]?.subsets?.[0]?.addresses?.[0]?.ip, '10.1.1.1');
});

t.test('LIST: shape, global resourceVersion, namespaced paths, every resource', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const core = kc.makeApiClient(CoreV1Api);
  const disc = kc.makeApiClient(DiscoveryV1Api);
  s.create('Namespace', { metadata: { name: 'a' } });
  s.create('Namespace', { metadata: { name: 'b' } });
  const web = s.create('Service', svc('a', 'web'));
  s.create('Service', svc('b', 'db', {}, '10.0.0.11'));
  s.create('Pod', pod('a', 'web-1', 'Running'));
  s.create('EndpointSlice', slice('a', 'web-abc', 'web', ['10.244.0.5']));
  s.create('Endpoints', { metadata: { name: 'web', namespace: 'a' }, subsets: [] });

  t.equal(web.metadata.resourceVersion, '4', 'RVs come from one counter across kinds');
  t.match(web.metadata.uid, /^[0-9a-f-]{36}$/);

  const all = await core.listServiceForAllNamespaces();
  t.equal(all.kind, 'ServiceList');
  t.equal(all.apiVersion, 'v1');
  t.equal(all.metadata?.resourceVersion, s.resourceVersion, 'list RV is the store revision, not the newest item');
  t.same(
    all.items.map((i) => `${i.metadata?.namespace}/${i.metadata?.name}`),
    ['a/web', 'b/db'],
  );
  const item = all.items[0]!;
  t.equal(item.kind, undefined, 'list items carry no kind');
  t.equal(item.apiVersion, undefined, 'list items carry no apiVersion');
  t.equal(item.metadata?.resourceVersion, '4');
  t.ok((item.metadata?.managedFields?.length ?? 0) > 0, 'managedFields noise is present');
  t.ok(item.metadata?.creationTimestamp instanceof Date, 'client deserializes timestamps in LISTs');
  t.equal(item.spec?.clusterIP, '10.0.0.10');

  const nsA = await core.listNamespacedService({ namespace: 'a' });
  t.same(
    nsA.items.map((i) => i.metadata?.name),
    ['web'],
  );
  const one = await core.readNamespacedService({ namespace: 'a', name: 'web' });
  t.equal(one.kind, 'Service', 'single GET carries kind');
  const nf = await caught(core.readNamespacedService({ namespace: 'a', name: 'nope' }));
  t.equal(nf.code, 404);
  t.equal(statusBody(nf).reason, 'NotFound');

  const nss = await core.listNamespace();
  t.equal(nss.kind, 'NamespaceList');
  t.same(
    nss.items.map((i) => i.metadata?.name),
    ['a', 'b'],
  );
  t.equal(nss.items[0]?.metadata?.namespace, undefined, 'cluster-scoped objects have no namespace');
  const pods = await core.listPodForAllNamespaces();
  t.equal(pods.kind, 'PodList');
  t.equal(pods.items[0]?.status?.phase, 'Running');
  const nsPods = await core.listNamespacedPod({ namespace: 'b' });
  t.equal(nsPods.items.length, 0);
  const eps = await core.listNamespacedEndpoints({ namespace: 'a' });
  t.equal(eps.kind, 'EndpointsList');
  const slices = await disc.listEndpointSliceForAllNamespaces();
  t.equal(slices.kind, 'EndpointSliceList');
  t.equal(slices.apiVersion, 'discovery.k8s.io/v1');
  t.equal(slices.items[0]?.metadata?.labels?.['kubernetes.io/service-name'], 'web');
  const nsSlices = await disc.listNamespacedEndpointSlice({ namespace: 'a' });
  t.equal(nsSlices.items[0]?.endpoints[0]?.addresses[0], '10.244.0.5');

  const listReq = s.requests.find((r) => r.path === '/api/v1/services');
  t.match(listReq?.authorization, /^Bearer fake-/);
  t.equal(listReq?.status, 200);
});

t.test('LIST paging: limit + continue over a consistent snapshot', async (t) => {
  const s = await startServer(t);
  const core = kubeConfig(s).makeApiClient(CoreV1Api);
  for (const n of ['s1', 's2', 's3', 's4', 's5']) s.create('Service', svc('a', n));

  const p1 = await core.listServiceForAllNamespaces({ limit: 2 });
  t.same(
    p1.items.map((i) => i.metadata?.name),
    ['s1', 's2'],
  );
  t.ok(p1.metadata?._continue, 'first page has a continue token');
  t.equal(p1.metadata?.remainingItemCount, 3);
  const rv = p1.metadata?.resourceVersion;

  // Changes between pages must not show up: the token pins the snapshot's RV.
  s.delete('Service', 'a', 's3');
  s.create('Service', svc('a', 's3b'));
  s.update('Service', { ...svc('a', 's4', { changed: 'yes' }) });

  const p2 = await core.listServiceForAllNamespaces({ limit: 2, _continue: p1.metadata?._continue });
  t.same(
    p2.items.map((i) => i.metadata?.name),
    ['s3', 's4'],
  );
  t.same(p2.items[1]?.metadata?.labels, {}, 's4 as of the snapshot');
  t.equal(p2.metadata?.resourceVersion, rv);
  t.equal(p2.metadata?.remainingItemCount, 1);
  const p3 = await core.listServiceForAllNamespaces({ limit: 2, _continue: p2.metadata?._continue });
  t.same(
    p3.items.map((i) => i.metadata?.name),
    ['s5'],
  );
  t.notOk(p3.metadata?._continue, 'last page has no continue token');

  const fresh = await core.listServiceForAllNamespaces();
  t.same(
    fresh.items.map((i) => i.metadata?.name),
    ['s1', 's2', 's3b', 's4', 's5'],
  );
  const req = s.requests.find((r) => r.query['continue'] !== undefined);
  t.equal(req?.query['limit'], '2');
  const fromCache = await core.listServiceForAllNamespaces({ limit: 2, resourceVersion: '0' });
  t.equal(fromCache.items.length, 5, 'resourceVersion=0 ignores limit, like the watch cache');
  t.notOk(fromCache.metadata?._continue);
});

t.test('LIST: a continue token older than the compaction point is 410 Expired', async (t) => {
  const s = await startServer(t);
  const core = kubeConfig(s).makeApiClient(CoreV1Api);
  for (const n of ['s1', 's2', 's3']) s.create('Service', svc('a', n));
  const p1 = await core.listServiceForAllNamespaces({ limit: 1 });
  s.compact();
  const err = await caught(core.listServiceForAllNamespaces({ limit: 1, _continue: p1.metadata?._continue }));
  t.equal(err.code, 410);
  const body = statusBody(err);
  t.match(body, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });

  const bad = await caught(core.listServiceForAllNamespaces({ limit: 1, _continue: 'garbage' }));
  t.equal(bad.code, 400);
  // A plain list with an old RV is served from current state; an Exact one is 410.
  const old = await core.listServiceForAllNamespaces({ resourceVersion: '2' });
  t.equal(old.metadata?.resourceVersion, s.resourceVersion);
  const exact = await caught(core.listServiceForAllNamespaces({ resourceVersion: '2', resourceVersionMatch: 'Exact' }));
  t.equal(exact.code, 410);
  const future = await caught(core.listServiceForAllNamespaces({ resourceVersion: '99999' }));
  t.equal(future.code, 504, 'too large resource version');
});

t.test('LIST: labelSelector operators client-go uses', async (t) => {
  const s = await startServer(t);
  const core = kubeConfig(s).makeApiClient(CoreV1Api);
  s.create('Service', svc('a', 'fe', { app: 'web', tier: 'fe' }));
  s.create('Service', svc('a', 'be', { app: 'web', tier: 'be' }));
  s.create('Service', svc('a', 'db', { app: 'db' }));
  s.create('Service', svc('a', 'bare'));
  const cases: [string, string[]][] = [
    ['app=web', ['be', 'fe']],
    ['app==web', ['be', 'fe']],
    ['app!=web', ['bare', 'db']],
    ['app in (web, db)', ['be', 'db', 'fe']],
    ['app notin (web)', ['bare', 'db']],
    ['tier', ['be', 'fe']],
    ['!tier', ['bare', 'db']],
    ['app=web,tier!=fe', ['be']],
    ['app in (web),!tier', []],
    ['', ['bare', 'be', 'db', 'fe']],
  ];
  for (const [labelSelector, want] of cases) {
    const got = await core.listNamespacedService({ namespace: 'a', labelSelector });
    t.same(got.items.map((i) => i.metadata?.name).sort(), want, `labelSelector ${JSON.stringify(labelSelector)}`);
  }
  const err = await caught(core.listNamespacedService({ namespace: 'a', labelSelector: 'app in web' }));
  t.equal(err.code, 400);
  t.equal(statusBody(err).reason, 'BadRequest');
});

t.test('LIST: fieldSelector', async (t) => {
  const s = await startServer(t);
  const core = kubeConfig(s).makeApiClient(CoreV1Api);
  s.create('Service', svc('a', 'x'));
  s.create('Service', svc('b', 'x'));
  s.create('Service', svc('b', 'y'));
  s.create('Pod', pod('a', 'run', 'Running'));
  s.create('Pod', pod('a', 'done', 'Succeeded'));
  s.create('Pod', pod('a', 'bad', 'Failed'));
  const byName = await core.listServiceForAllNamespaces({ fieldSelector: 'metadata.name=x' });
  t.same(
    byName.items.map((i) => `${i.metadata?.namespace}/${i.metadata?.name}`),
    ['a/x', 'b/x'],
  );
  const byNs = await core.listServiceForAllNamespaces({ fieldSelector: 'metadata.namespace==b,metadata.name!=x' });
  t.same(
    byNs.items.map((i) => i.metadata?.name),
    ['y'],
  );
  const live = await core.listPodForAllNamespaces({ fieldSelector: 'status.phase!=Succeeded,status.phase!=Failed' });
  t.same(
    live.items.map((i) => i.metadata?.name),
    ['run'],
  );
  const err = await caught(core.listServiceForAllNamespaces({ fieldSelector: 'spec.selector=x' }));
  t.equal(err.code, 400);
  t.match(statusBody(err), { reason: 'BadRequest' });
});

t.test('LIST: large responses are gzipped and the client decodes them', async (t) => {
  const s = await startServer(t);
  const core = kubeConfig(s).makeApiClient(CoreV1Api);
  for (let i = 0; i < 300; i++) s.create('Service', svc('big', `svc-${String(i).padStart(3, '0')}`, { app: `a${i}` }));
  const list = await core.listNamespacedService({ namespace: 'big' });
  t.equal(list.items.length, 300);
  const req = s.requests.find((r) => r.path === '/api/v1/namespaces/big/services');
  t.equal(req?.gzip, true, 'response was gzipped');
});

t.test('WATCH: ADDED/MODIFIED/DELETED with RVs, namespace scoping, split chunks', async (t) => {
  const s = await startServer(t, { splitEvery: 1 }); // every line arrives in two TCP writes
  const kc = kubeConfig(s);
  const list = await kc.makeApiClient(CoreV1Api).listNamespacedService({ namespace: 'a' });
  const w = new Recorder(t, kc, '/api/v1/namespaces/a/services', { resourceVersion: list.metadata?.resourceVersion });
  await w.started;
  t.equal(s.watchCount(), 1);
  const req = s.requests.find((r) => r.watch);
  t.equal(req?.query['watch'], 'true');

  const note = 'héllo wörld ✓ ünïcode';
  const added = s.create('Service', { ...svc('a', 'x', { app: 'x' }), metadata: { name: 'x', namespace: 'a', labels: { app: 'x' }, annotations: { note } } });
  s.create('Service', svc('b', 'other'));
  const same = s.update('Service', { ...added, metadata: { ...added.metadata, resourceVersion: undefined } });
  t.equal(same.metadata.resourceVersion, added.metadata.resourceVersion, 'a no-op update changes nothing');
  const modified = s.update('Service', { ...svc('a', 'x', { app: 'x2' }), metadata: { ...added.metadata, labels: { app: 'x2' } } });
  t.throws(() => s.update('Service', added), /modified/, 'stale resourceVersion is a conflict');
  const deleted = s.delete('Service', 'a', 'x');
  await w.waitEvents(3);
  await sleep(30);
  t.same(w.types(), [
    `ADDED x@${added.metadata.resourceVersion}`,
    `MODIFIED x@${modified.metadata.resourceVersion}`,
    `DELETED x@${deleted.metadata.resourceVersion}`,
  ]);
  const obj = w.events[0]!.object;
  t.equal(obj.kind, 'Service', 'watch objects carry kind');
  t.equal(obj.apiVersion, 'v1');
  t.equal(typeof obj.metadata?.creationTimestamp, 'string', 'watch objects are raw JSON');
  t.equal(w.events[1]?.object.metadata?.labels?.['app'], 'x2');
  t.equal(w.events[0]?.object.metadata?.annotations?.['note'], note, 'multi-byte text survives split lines');
  t.equal(w.done, false);
});

t.test('WATCH: split lines really reach the client in pieces', async (t) => {
  // 100 ms between pieces: on a busy machine a client lagging 20 ms read two pieces as one.
  const s = await startServer(t, { splitEvery: 1, splitDelayMs: 100 });
  const chunks: string[] = [];
  const req = http.get(`${s.url}/api/v1/services?watch=1&resourceVersion=${s.resourceVersion}`, {
    headers: { Authorization: `Bearer ${s.currentToken}` },
  });
  t.teardown(() => req.destroy());
  const res = await new Promise<http.IncomingMessage>((resolve) => req.on('response', resolve));
  t.equal(res.statusCode, 200);
  t.equal(res.headers['transfer-encoding'], 'chunked');
  res.setEncoding('utf8');
  res.on('data', (c: string) => chunks.push(c));
  s.create('Service', svc('a', 'x'));
  s.create('Service', svc('a', 'y'));
  await until(() => chunks.join('').split('\n').length === 3, 'two lines');
  t.ok(chunks.length > 2, `the lines arrived in more pieces than lines (${chunks.length} chunks)`);
  t.ok(chunks.some((c) => !c.endsWith('\n')), 'a chunk ends mid-line');
  const lines = chunks.join('').trim().split('\n').map((l) => JSON.parse(l) as WatchEvent);
  t.same(
    lines.map((l) => `${l.type} ${l.object.metadata?.name}`),
    ['ADDED x', 'ADDED y'],
  );
  t.equal(s.requests[0]?.query['watch'], '1', 'watch=1 is accepted');
});

t.test('WATCH: replay from an old RV, and RV 0 / unset starts with synthetic ADDED', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const a = s.create('EndpointSlice', slice('a', 's1', 'web', ['10.0.0.1']));
  s.update('EndpointSlice', slice('a', 's1', 'web', ['10.0.0.2']));
  s.create('EndpointSlice', slice('a', 's2', 'web', ['10.0.0.3']));
  const replay = new Recorder(t, kc, '/apis/discovery.k8s.io/v1/endpointslices', {
    resourceVersion: a.metadata.resourceVersion,
  });
  await replay.waitEvents(2);
  t.same(
    replay.events.map((e) => `${e.type} ${e.object.metadata?.name}`),
    ['MODIFIED s1', 'ADDED s2'],
  );
  t.equal(replay.events[0]?.object.apiVersion, 'discovery.k8s.io/v1');

  const fromZero = new Recorder(t, kc, '/apis/discovery.k8s.io/v1/namespaces/a/endpointslices', { resourceVersion: '0' });
  await fromZero.waitEvents(2);
  t.same(
    fromZero.events.map((e) => `${e.type} ${e.object.metadata?.name}`),
    ['ADDED s1', 'ADDED s2'],
  );
  s.delete('EndpointSlice', 'a', 's1');
  await fromZero.waitEvents(3);
  t.equal(fromZero.events[2]?.type, 'DELETED');
});

t.test('WATCH: label selector; leaving it is DELETED, entering it is ADDED', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const w = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion, labelSelector: 'dns=yes' });
  await w.started;
  s.create('Service', svc('a', 'in', { dns: 'yes' }));
  s.create('Service', svc('a', 'out', { dns: 'no' }));
  const left = s.update('Service', svc('a', 'in', { dns: 'no' }));
  s.update('Service', svc('a', 'out', { dns: 'yes' }));
  await w.waitEvents(3);
  await sleep(30);
  t.same(
    w.events.map((e) => `${e.type} ${e.object.metadata?.name}`),
    ['ADDED in', 'DELETED in', 'ADDED out'],
  );
  t.equal(w.events[1]?.object.metadata?.labels?.['dns'], 'yes', 'DELETED carries the last matching state');
  t.equal(w.events[1]?.object.metadata?.resourceVersion, left.metadata.resourceVersion, 'with the RV of the change');
});

t.test('WATCH: bookmarks only for watches that asked, on demand and periodically', async (t) => {
  const s = await startServer(t, { bookmarkIntervalMs: 100 });
  const kc = kubeConfig(s);
  const withBm = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion, allowWatchBookmarks: true });
  const without = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion });
  await Promise.all([withBm.started, without.started]);
  t.equal(s.requests.find((r) => r.query['allowWatchBookmarks'])?.query['allowWatchBookmarks'], 'true');
  s.create('Namespace', { metadata: { name: 'x' } }); // another kind moves the global RV
  s.sendBookmark();
  await withBm.waitEvents(1);
  const bm = withBm.events[0]!;
  t.equal(bm.type, 'BOOKMARK');
  t.same(bm.object, { kind: 'Service', apiVersion: 'v1', metadata: { resourceVersion: s.resourceVersion } });
  await until(() => withBm.events.length >= 3, 'periodic bookmarks', 2000);
  t.ok(withBm.events.every((e) => e.type === 'BOOKMARK'));
  t.equal(without.events.length, 0, 'no bookmarks without allowWatchBookmarks');
});

t.test('WATCH: too-old RV gives an ERROR 410 event, then a clean end', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const first = s.create('Service', svc('a', 'x'));
  s.compact();
  t.equal(s.compactedResourceVersion, s.resourceVersion);
  const w = new Recorder(t, kc, '/api/v1/services', { resourceVersion: first.metadata.resourceVersion });
  const err = await w.waitDone();
  t.equal(err, null, 'the stream ends cleanly');
  t.equal(w.events.length, 1);
  t.equal(w.events[0]?.type, 'ERROR');
  t.match(w.events[0]?.object, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });

  // History is bounded: falling out of it is the same as compaction.
  const s2 = await startServer(t, { historySize: 2 });
  const kc2 = kubeConfig(s2);
  const old = s2.create('Service', svc('a', 'a'));
  s2.create('Service', svc('a', 'b'));
  s2.create('Service', svc('a', 'c'));
  s2.create('Service', svc('a', 'd'));
  const w2 = new Recorder(t, kc2, '/api/v1/services', { resourceVersion: old.metadata.resourceVersion });
  await w2.waitDone();
  t.equal(w2.events[0]?.object.code, 410);
});

t.test('WATCH: too-old RV as HTTP 410 (option)', async (t) => {
  const s = await startServer(t, { expiredWatch: 'http' });
  const kc = kubeConfig(s);
  const first = s.create('Service', svc('a', 'x'));
  s.compact();
  const w = new Recorder(t, kc, '/api/v1/services', { resourceVersion: first.metadata.resourceVersion });
  const err = (await w.waitDone()) as { statusCode?: number };
  t.equal(err.statusCode, 410);
  t.equal(w.events.length, 0);
});

t.test('informer: a stale RV after restart gets 410 and relists; a clean end re-watches without relist', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const core = kc.makeApiClient(CoreV1Api);
  s.create('Service', svc('a', 'web'));
  const inf = makeInformer<V1Service>(kc, '/api/v1/namespaces/a/services', () => core.listNamespacedService({ namespace: 'a' }));
  const seen: string[] = [];
  const errors: unknown[] = [];
  let stopping = false;
  inf.on('add', (o) => seen.push(`add ${o.metadata?.name}`));
  inf.on('update', (o) => seen.push(`update ${o.metadata?.name}`));
  inf.on('delete', (o) => seen.push(`delete ${o.metadata?.name}`));
  inf.on('error', (e) => {
    if (!stopping) errors.push(e);
  });
  t.teardown(async () => {
    stopping = true;
    await inf.stop();
  });
  await inf.start();
  await until(() => s.watchCount() === 1, 'informer watch');
  s.update('Service', svc('a', 'web', { v: '2' }));
  await until(() => seen.length === 2, 'update');
  s.create('Service', svc('b', 'elsewhere')); // moves the RV past what the informer saw
  s.create('Service', svc('a', 'gone'));
  await until(() => seen.length === 3, 'add gone');
  s.delete('Service', 'a', 'gone');
  await until(() => seen.length === 4, 'delete gone');
  s.create('Service', svc('a', 'unseen-1'));
  await until(() => seen.length === 5, 'add unseen-1');

  s.hangWatches(true); // the informer's watch goes silent: it misses the next changes
  s.create('Service', svc('a', 'unseen-2'));
  s.delete('Service', 'a', 'unseen-1');
  s.compact();
  s.hangWatches(false);
  s.dropWatches(); // informer stops on this (non-410) error...
  await until(() => errors.length === 1, 'error from dropped watch');
  const lists = s.requests.filter((r) => !r.watch).length;
  await inf.start(); // ...and must be restarted: it re-watches from its stale RV, gets 410, relists
  await until(() => seen.includes('add unseen-2'), 'relist after 410');
  t.same(seen, ['add web', 'update web', 'add gone', 'delete gone', 'add unseen-1', 'delete unseen-1', 'add unseen-2']);
  await until(() => s.watchCount() === 1, 'watch after relist');
  t.equal(s.requests.filter((r) => !r.watch).length, lists + 1, 'exactly one relist');
  const watches = s.requests.filter((r) => r.watch);
  t.equal(watches.length, 3, 'initial watch, the expired re-watch, the watch after the relist');
  t.ok(Number(watches[1]?.query['resourceVersion']) < Number(s.compactedResourceVersion), 're-watch used the stale RV');
  t.equal(watches[2]?.query['resourceVersion'], s.resourceVersion, 'watch after relist starts at the list RV');

  // A clean end (apiserver request timeout) makes it re-watch from its RV without relisting.
  s.endWatches();
  await until(() => s.requests.filter((r) => r.watch).length >= 4, 're-watch after clean end');
  s.create('Service', svc('a', 'later'));
  await until(() => seen.includes('add later'), 'event after re-watch');
  t.equal(s.requests.filter((r) => !r.watch).length, lists + 1, 'no relist after a clean end');
  t.equal(errors.length, 1);
});

t.test('WATCH: timeoutSeconds ends the stream cleanly', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const t0 = Date.now();
  const w = new Recorder(t, kc, '/api/v1/pods', { resourceVersion: s.resourceVersion, timeoutSeconds: 1 });
  await w.started;
  const err = await w.waitDone(4000);
  const took = Date.now() - t0;
  t.equal(err, null);
  t.ok(took >= 900 && took < 3000, `ended after ~1s (${took} ms)`);
  await until(() => s.watchCount() === 0, 'server forgets the watch');

  const s2 = await startServer(t, { defaultWatchTimeoutSeconds: 1 });
  const w2 = new Recorder(t, kubeConfig(s2), '/api/v1/pods', { resourceVersion: s2.resourceVersion });
  t.equal(await w2.waitDone(4000), null, 'server default timeout applies too');
});

t.test('WATCH: dropped connection surfaces in done() with an error', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const w = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion });
  await w.started;
  s.create('Service', svc('a', 'x'));
  await w.waitEvents(1);
  t.equal(s.openConnections(), 1);
  s.dropWatches();
  const err = (await w.waitDone()) as { message?: string; code?: string } | null;
  t.ok(err, 'done() gets an error, not null');
  t.match(String(err?.message), /premature close|aborted|socket hang up|ECONNRESET/i);
  t.equal(s.watchCount(), 0);
  await until(() => s.openConnections() === 0, 'socket closed');
});

t.test('WATCH: hung watches (headers but no events; no headers at all)', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const before = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion, allowWatchBookmarks: true });
  await before.started;
  s.hangWatches(true);
  const w = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion, timeoutSeconds: 1 });
  await w.started; // headers arrive
  s.create('Service', svc('a', 'x'));
  s.sendBookmark();
  await sleep(1300);
  t.equal(w.events.length, 0, 'no events on a hung watch');
  t.equal(before.events.length, 0, 'an already open watch went silent too');
  t.equal(w.done, false, 'not even its timeout ends it');
  t.equal(s.watchCount(), 2);
  w.controller?.abort();
  await until(() => s.watchCount() === 1, 'server sees the client abort');

  s.hangWatches('no-headers');
  const h = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion });
  let resolved = false;
  void h.started.then(() => (resolved = true));
  await sleep(300);
  t.equal(resolved, false, 'Watch.watch() does not resolve without headers');
  t.equal(s.watchCount(), 2);
  t.equal(s.requests.at(-1)?.status, undefined, 'no status was sent');
  s.dropWatches();
  await h.started;
  t.ok(await h.waitDone(), 'dropping it ends the pending watch with an error');

  s.hangWatches(false);
  const ok = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion });
  await ok.started;
  s.create('Service', svc('a', 'y'));
  await ok.waitEvents(1);
  t.equal(ok.events[0]?.object.metadata?.name, 'y', 'new watches work again');
});

t.test('failNext: injected error Status for LIST and WATCH, with a path filter', async (t) => {
  const s = await startServer(t);
  const kc = kubeConfig(s);
  const core = kc.makeApiClient(CoreV1Api);
  const disc = kc.makeApiClient(DiscoveryV1Api);
  s.failNext(1);
  const e500 = await caught(core.listServiceForAllNamespaces());
  t.equal(e500.code, 500);
  t.match(statusBody(e500), { kind: 'Status', status: 'Failure', reason: 'InternalError', code: 500 });
  t.equal((await core.listServiceForAllNamespaces()).items.length, 0, 'only the next request fails');

  s.failNext(2, 503, '/endpointslices');
  t.equal((await core.listServiceForAllNamespaces()).kind, 'ServiceList', 'filter spares other paths');
  t.equal((await caught(disc.listEndpointSliceForAllNamespaces())).code, 503);
  const e503 = await caught(disc.listEndpointSliceForAllNamespaces());
  t.equal(statusBody(e503).reason, 'ServiceUnavailable');
  t.equal((await disc.listEndpointSliceForAllNamespaces()).items.length, 0);

  s.failNext(1, 429, { filter: (r) => r.watch });
  const w = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion });
  const err = (await w.waitDone()) as { statusCode?: number };
  t.equal(err.statusCode, 429, 'watch gets the error instead of a stream');
  t.equal(s.requests.at(-1)?.status, 429);

  s.failNext(1, 500, /\/pods$/);
  const w2 = new Recorder(t, kc, '/api/v1/pods', {});
  t.equal(((await w2.waitDone()) as { statusCode?: number }).statusCode, 500);
});

t.test('auth: wrong token and rotated token get 401 Status', async (t) => {
  const s = await startServer(t, { token: 'good' });
  const good = kubeConfig(s);
  const bad = kubeConfig(s, { token: 'wrong' });
  t.equal((await good.makeApiClient(CoreV1Api).listNamespace()).kind, 'NamespaceList');
  const e = await caught(bad.makeApiClient(CoreV1Api).listNamespace());
  t.equal(e.code, 401);
  t.equal(e.body, undefined, 'client-node 1.4.0 drops the body of a 401');
  t.equal(s.requests.at(-1)?.authorization, 'Bearer wrong');
  const ver = await caught(bad.makeApiClient(VersionApi).getCode());
  t.equal(ver.code, 401);
  const w = new Recorder(t, bad, '/api/v1/services', {});
  t.equal(((await w.waitDone()) as { statusCode?: number }).statusCode, 401);

  const open = new Recorder(t, good, '/api/v1/services', { resourceVersion: s.resourceVersion });
  await open.started;
  s.setToken('rotated');
  t.equal(s.currentToken, 'rotated');
  t.equal((await caught(good.makeApiClient(CoreV1Api).listNamespace())).code, 401, 'old token rejected');
  const fresh = kubeConfig(s);
  t.equal((await fresh.makeApiClient(CoreV1Api).listNamespace()).kind, 'NamespaceList', 'new token accepted');
  s.create('Service', svc('a', 'x'));
  await open.waitEvents(1);
  t.pass('a watch opened before rotation keeps streaming');
});

t.test('TLS: the generated CA validates; no CA or another CA fails verification', async (t) => {
  const s = await startServer(t, { tls: true });
  t.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const kc = kubeConfig(s);
  s.create('Service', svc('a', 'x'));
  const list = await kc.makeApiClient(CoreV1Api).listServiceForAllNamespaces();
  t.equal(list.items.length, 1);
  const w = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion });
  await w.started;
  s.create('Service', svc('a', 'y'));
  await w.waitEvents(1);
  t.equal(w.events[0]?.object.metadata?.name, 'y', 'watch over TLS');

  const noCA = kubeConfig(s, { includeCA: false });
  t.notMatch(s.kubeconfig({ includeCA: false }), /certificate-authority-data/);
  const e1 = await caught(noCA.makeApiClient(CoreV1Api).listServiceForAllNamespaces());
  t.match(`${String(e1.code)} ${e1.message}`, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify|self[- ]signed/i);
  const other = generateTestPki('other');
  const wrongCA = kubeConfig(s, { caCert: other.caCert });
  const e2 = await caught(wrongCA.makeApiClient(CoreV1Api).listServiceForAllNamespaces());
  t.match(`${String(e2.code)} ${e2.message}`, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify|self[- ]signed/i);
  const wBad = new Recorder(t, noCA, '/api/v1/services', {});
  t.ok(await wBad.waitDone(), 'watch without the CA fails too');
  t.notOk(s.requests.some((r) => r.authorization === undefined), 'rejected handshakes never reach HTTP');
});

t.test('plain-http kubeconfig, writeKubeconfig and loadFromFile', async (t) => {
  const s = await startServer(t, { token: 'tok' });
  const yaml = s.kubeconfig({ namespace: 'kube-system' });
  t.match(yaml, /insecure-skip-tls-verify: true/);
  t.notMatch(yaml, /server: http:\/\/127\.0\.0\.1:\d+\//, 'no trailing slash');
  const dir = mkdtempSync(join(tmpdir(), 'fake-apiserver-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = s.writeKubeconfig(dir);
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  t.equal(kc.getCurrentCluster()?.server, s.url);
  t.equal(kc.getCurrentUser()?.token, 'tok');
  t.equal(kc.getContextObject(kc.getCurrentContext())?.namespace, undefined);
  t.equal((await kc.makeApiClient(CoreV1Api).listNamespace()).kind, 'NamespaceList');
  const withNs = new KubeConfig();
  withNs.loadFromString(yaml);
  t.equal(withNs.getContextObject(withNs.getCurrentContext())?.namespace, 'kube-system');
});

t.test('close() ends open watches and frees every socket', async (t) => {
  const s = await new FakeApiServer().start();
  const kc = kubeConfig(s);
  const w1 = new Recorder(t, kc, '/api/v1/services', { resourceVersion: s.resourceVersion });
  const w2 = new Recorder(t, kc, '/api/v1/endpoints', { resourceVersion: s.resourceVersion });
  await Promise.all([w1.started, w2.started]);
  await kc.makeApiClient(CoreV1Api).listNamespace();
  t.equal(s.watchCount(), 2);
  await until(() => s.openConnections() === 2, 'list connection closed, watches open');
  await s.close();
  await w1.waitDone();
  await w2.waitDone();
  t.equal(s.watchCount(), 0);
  t.equal(s.openConnections(), 0);
});
