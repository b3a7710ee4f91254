/**
 * A fake kube-apiserver for tests: real HTTP(S), real wire protocol, driven by the real
 * `@kubernetes/client-node` (never mock the client library).
 *
 * What it models, and why:
 *  - One global resourceVersion counter (like etcd's revision) shared by every kind, so a LIST's
 *    `metadata.resourceVersion` is the store's revision, not the newest item's.
 *  - A bounded event history with a compaction point: watches and continue tokens older than it
 *    get 410 Expired, which is what makes informers relist.
 *  - LIST items without kind/apiVersion, WATCH objects with them; managedFields noise on every object.
 *  - Selector semantics of the apiserver: a watch whose label/field selector stops matching an
 *    object gets DELETED, and ADDED when it starts matching.
 *  - Faults on demand (see each method): dropped, hung and ended watches, error responses, token
 *    rotation, events split across TCP chunks.
 *  - One custom resource, the MCS-API ServiceImport (multicluster.x-k8s.io/v1alpha1), served only
 *    while its CRD is "installed" (`serviceImports`, `setServiceImports`): like any CRD its list
 *    items keep kind/apiVersion, and without it the group is a 404 Status.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { stringify as yamlStringify } from 'yaml';
import {
  parseFieldSelector,
  parseLabelSelector,
  SelectorError,
  type FieldMatcher,
  type LabelMatcher,
} from './fake-apiserver-selectors.js';
import { generateTestPki, type TestPki } from './tls.js';

export type FakeKind = 'Namespace' | 'Service' | 'Endpoints' | 'Pod' | 'EndpointSlice' | 'ServiceImport';
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** Object metadata as stored (loose: tests write plain literals). */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  uid?: string;
  creationTimestamp?: string;
  managedFields?: unknown[];
  [key: string]: unknown;
}

/** A stored API object: full JSON, with kind/apiVersion and server-assigned metadata. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** How an expired watch resourceVersion is reported. */
export type ExpiredWatchMode = 'event' | 'http';
/** `headers`: send 200 + headers, then nothing. `no-headers`: accept the request and never answer. */
export type HangMode = 'headers' | 'no-headers';

export interface FakeApiServerOptions {
  /** Serve HTTPS with a throwaway CA made by openssl (or with the PKI given). Default false. */
  tls?: boolean | TestPki;
  /** Bearer token every request must carry. Default: a random token. */
  token?: string;
  /** Serve discovery.k8s.io/v1 (EndpointSlices). false: 404 there, /apis lists no group. Default true. */
  endpointSlices?: boolean;
  /**
   * The ServiceImport CRD (multicluster.x-k8s.io/v1alpha1) is installed. Default false, as on
   * a cluster without an MCS implementation: the group is absent from /apis and its paths
   * answer 404 (a Status, "the server could not find the requested resource").
   */
  serviceImports?: boolean;
  /** Events kept for watch replay and continue tokens; older ones are compacted. Default 1000. */
  historySize?: number;
  /** Report a too-old watch RV as an ERROR event in a 200 stream (default, like kube-apiserver's watch cache) or as HTTP 410. */
  expiredWatch?: ExpiredWatchMode;
  /** Send a BOOKMARK every N ms to watches that asked for them. Default: only on sendBookmark(). */
  bookmarkIntervalMs?: number;
  /** Split every Nth watch line (events and bookmarks) into two writes (two HTTP chunks). 0 = never. Default 4. */
  splitEvery?: number;
  /** Pause between the two halves of a split line: 0 = one event-loop turn (setImmediate). Default 0. */
  splitDelayMs?: number;
  /** Watch timeout applied when the request has no timeoutSeconds (the apiserver's min-request-timeout). Default: none. */
  defaultWatchTimeoutSeconds?: number;
  /** Add managedFields noise to stored objects. Default true. */
  managedFields?: boolean;
  /** Gzip non-watch responses at least this large when the client accepts gzip (kube-apiserver: 128 KiB). Default 131072. */
  gzipThreshold?: number;
  /** First resourceVersion of the store. Default 1. */
  initialResourceVersion?: number;
  /** gitVersion reported by /version. Default 'v1.30.0'. */
  gitVersion?: string;
}

export interface KubeconfigOptions {
  /** Token to put in the kubeconfig (default: the server's current token). */
  token?: string;
  /** Embed the server's CA (TLS only). false: no CA at all, so verification must fail. Default true. */
  includeCA?: boolean;
  /** Embed this PEM as the CA instead of the server's own (e.g. a different CA). */
  caCert?: string;
  /** Context namespace. */
  namespace?: string;
}

export interface RecordedRequest {
  readonly method: string;
  /** Pathname, without the query. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** The Authorization header as received (undefined when absent). */
  readonly authorization: string | undefined;
  readonly watch: boolean;
  /** Response status, once sent (a hung watch without headers has none). */
  status?: number;
  /** True when the response body was gzipped. */
  gzip?: boolean;
  readonly time: number;
}

export interface FailNextOptions {
  /** Only requests whose path contains this string / matches this RegExp / passes this test. */
  filter?: string | RegExp | ((req: RecordedRequest) => boolean);
  /** Status message. */
  message?: string;
}

interface ResourceInfo {
  readonly kind: FakeKind;
  readonly listKind: string;
  readonly plural: string;
  readonly singular: string;
  readonly group: '' | 'discovery.k8s.io' | 'multicluster.x-k8s.io';
  readonly apiVersion: string;
  /** A custom resource (CRD): list items keep kind and apiVersion (unstructured objects do). */
  readonly custom?: boolean;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
  readonly fields: ReadonlySet<string>;
  readonly fieldDefaults?: Readonly<Record<string, string>>;
  readonly subresources: readonly string[];
}

const META_FIELDS = ['metadata.name', 'metadata.namespace'];

const RESOURCES: Readonly<Record<FakeKind, ResourceInfo>> = {
  Namespace: {
    kind: 'Namespace', listKind: 'NamespaceList', plural: 'namespaces', singular: 'namespace', group: '',
    apiVersion: 'v1', namespaced: false, shortNames: ['ns'], subresources: ['finalize', 'status'],
    fields: new Set([...META_FIELDS, 'status.phase']),
  },
  Service: {
    kind: 'Service', listKind: 'ServiceList', plural: 'services', singular: 'service', group: '',
    apiVersion: 'v1', namespaced: true, shortNames: ['svc'], subresources: ['proxy', 'status'],
    fields: new Set([...META_FIELDS, 'spec.clusterIP', 'spec.type']),
  },
  Endpoints: {
    kind: 'Endpoints', listKind: 'EndpointsList', plural: 'endpoints', singular: 'endpoints', group: '',
    apiVersion: 'v1', namespaced: true, shortNames: ['ep'], subresources: [],
    fields: new Set(META_FIELDS),
  },
  Pod: {
    kind: 'Pod', listKind: 'PodList', plural: 'pods', singular: 'pod', group: '',
    apiVersion: 'v1', namespaced: true, shortNames: ['po'],
    subresources: ['attach', 'binding', 'ephemeralcontainers', 'eviction', 'exec', 'log', 'portforward', 'proxy', 'status'],
    fields: new Set([
      ...META_FIELDS, 'spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName',
      'spec.hostNetwork', 'status.phase', 'status.podIP', 'status.nominatedNodeName',
    ]),
    fieldDefaults: { 'spec.hostNetwork': 'false' },
  },
  EndpointSlice: {
    kind: 'EndpointSlice', listKind: 'EndpointSliceList', plural: 'endpointslices', singular: 'endpointslice',
    group: 'discovery.k8s.io', apiVersion: 'discovery.k8s.io/v1', namespaced: true, shortNames: [],
    subresources: [], fields: new Set([...META_FIELDS, 'addressType']),
  },
  ServiceImport: {
    kind: 'ServiceImport', listKind: 'ServiceImportList', plural: 'serviceimports', singular: 'serviceimport',
    group: 'multicluster.x-k8s.io', apiVersion: 'multicluster.x-k8s.io/v1alpha1', namespaced: true, shortNames: ['svcim'],
    subresources: ['status'], fields: new Set(META_FIELDS), custom: true,
  },
};

const CORE_PLURALS = new Map<string, ResourceInfo>(
  (['Namespace', 'Service', 'Endpoints', 'Pod'] as const).map((k) => [RESOURCES[k].plural, RESOURCES[k]]),
);
const DISCOVERY_PLURALS = new Map<string, ResourceInfo>([['endpointslices', RESOURCES.EndpointSlice]]);
const MCS_PLURALS = new Map<string, ResourceInfo>([['serviceimports', RESOURCES.ServiceImport]]);
const MCS_PREFIX = '/apis/multicluster.x-k8s.io/v1alpha1';

const STATUS_REASONS: Readonly<Record<number, string>> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed',
  409: 'Conflict', 410: 'Expired', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError',
  503: 'ServiceUnavailable', 504: 'Timeout',
};

/** A Status object exactly as the apiserver writes it. */
export function statusObject(code: number, message: string, reason?: string, details?: object): Record<string, unknown> {
  const s: Record<string, unknown> = {
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message,
    reason: reason ?? STATUS_REASONS[code] ?? 'Unknown',
  };
  if (details) s['details'] = details;
  s['code'] = code;
  return s;
}

interface HistoryEntry {
  readonly rv: number;
  readonly kind: FakeKind;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly key: string;
  /** New state (DELETED: the last state, with the deletion RV). */
  readonly object: KubeObject;
  /** Previous state (MODIFIED, DELETED). */
  readonly prev?: KubeObject;
}

interface QueuedLine {
  readonly data: Buffer;
  readonly split: boolean;
}
const END = Symbol('end');

interface WatchConn {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly info: ResourceInfo;
  readonly namespace: string | undefined;
  readonly labels: LabelMatcher;
  readonly fields: FieldMatcher;
  readonly bookmarks: boolean;
  /** Silent: events and bookmarks are discarded (a half-open connection as the client sees it). */
  hung: boolean;
  /** Headers were never sent (`no-headers` hang). */
  headless: boolean;
  closed: boolean;
  pumping: boolean;
  readonly queue: (QueuedLine | typeof END)[];
  timer?: NodeJS.Timeout;
}

interface FailRule {
  remaining: number;
  readonly status: number;
  readonly options: FailNextOptions;
}

interface ContinueToken {
  readonly rv: number;
  readonly start: string;
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly reason?: string,
    readonly details?: object,
  ) {
    super(message);
  }
}

const TRUE_VALUES = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);

function nowTimestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** JSON with sorted keys, for no-op update detection. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.keys(v as object)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(v);
}

/** managedFields' FieldsV1 shape (`f:<field>` per key), to make stored objects as heavy as real ones. */
function toFieldsV1(v: unknown, depth = 0): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || depth > 6) return {};
  const out: Record<string, unknown> = {};
  for (const [k, child] of Object.entries(v)) {
    if (depth === 0 && (k === 'apiVersion' || k === 'kind')) continue;
    out[`f:${k}`] = toFieldsV1(child, depth + 1);
  }
  return out;
}

function objectKey(info: ResourceInfo, namespace: string | undefined, name: string): string {
  return info.namespaced ? `${namespace ?? ''}/${name}` : `/${name}`;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** First index whose key is >= `key` in a sorted array. */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** What the apiserver answers for the paths of an API group nobody serves (a CRD not installed). */
function crdNotFound(): HttpError {
  return new HttpError(404, 'the server could not find the requested resource', 'NotFound', {});
}

function withoutKind(obj: KubeObject): Record<string, unknown> {
  const { kind: _kind, apiVersion: _apiVersion, ...rest } = obj;
  return rest;
}

/** A fake kube-apiserver on 127.0.0.1 with a random port. */
export class FakeApiServer {
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];

  private server: http.Server | https.Server | undefined;
  private opts: Required<Omit<FakeApiServerOptions, 'tls' | 'token' | 'bookmarkIntervalMs' | 'defaultWatchTimeoutSeconds'>> &
    Pick<FakeApiServerOptions, 'bookmarkIntervalMs' | 'defaultWatchTimeoutSeconds'> = {
    endpointSlices: true, serviceImports: false, historySize: 1000, expiredWatch: 'event', splitEvery: 4, splitDelayMs: 0, managedFields: true,
    gzipThreshold: 128 * 1024, initialResourceVersion: 1, gitVersion: 'v1.30.0',
  };
  private pki: TestPki | undefined;
  private token = '';
  private port = 0;
  private rv = 1;
  private compactedRV = 1;
  private readonly store = new Map<FakeKind, Map<string, KubeObject>>();
  private history: HistoryEntry[] = [];
  private readonly watches = new Set<WatchConn>();
  private readonly sockets = new Set<Socket>();
  private hangMode: HangMode | undefined;
  private failRules: FailRule[] = [];
  private lineCount = 0;
  /** Sorted keys per kind, dropped when a key is added or removed. */
  private readonly keyCache = new Map<FakeKind, string[]>();
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  /** Starts listening on 127.0.0.1, port 0. Resolves once the server accepts connections. */
  async start(options: FakeApiServerOptions = {}): Promise<this> {
    if (this.server) throw new Error('FakeApiServer already started');
    const { tls, token, ...rest } = options;
    this.opts = { ...this.opts, ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)) };
    this.token = token ?? `fake-${randomBytes(12).toString('hex')}`;
    this.rv = this.opts.initialResourceVersion;
    this.compactedRV = this.rv;
    for (const k of Object.keys(RESOURCES) as FakeKind[]) this.store.set(k, new Map());

    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.handle(req, res);
    if (tls) {
      this.pki = tls === true ? generateTestPki() : tls;
      this.server = https.createServer({ key: this.pki.serverKey, cert: this.pki.serverCert }, handler);
      // A client that rejects our certificate aborts the handshake: not a server error.
      this.server.on('tlsClientError', () => {});
    } else {
      this.server = http.createServer(handler);
    }
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as { port: number }).port;
    if (this.opts.bookmarkIntervalMs !== undefined) {
      this.bookmarkTimer = setInterval(() => this.sendBookmark(), this.opts.bookmarkIntervalMs);
      this.bookmarkTimer.unref();
    }
    return this;
  }

  /** Base URL, without a trailing slash (client-node concatenates paths onto it). */
  get url(): string {
    return `${this.pki ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  /** PEM of the CA that signed the server certificate (TLS only). */
  get caCert(): string | undefined {
    return this.pki?.caCert;
  }

  /** The token requests must currently carry. */
  get currentToken(): string {
    return this.token;
  }

  /** The store's current (global) resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** RVs strictly below this are compacted: watches and continue tokens from them get 410. */
  get compactedResourceVersion(): string {
    return String(this.compactedRV);
  }

  /** Stops the server: destroys every watch and keep-alive connection, then waits for the close. */
  async close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.bookmarkTimer = undefined;
    const server = this.server;
    if (!server) return;
    for (const w of [...this.watches]) this.finishWatch(w, true);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Kubeconfig YAML for this server: one cluster, one user with the bearer token, one context. */
  kubeconfig(options: KubeconfigOptions = {}): string {
    const cluster: Record<string, unknown> = { server: this.url };
    if (this.pki) {
      const ca = options.caCert ?? (options.includeCA === false ? undefined : this.pki.caCert);
      if (ca !== undefined) cluster['certificate-authority-data'] = Buffer.from(ca).toString('base64');
    } else {
      // client-node refuses http:// servers unless TLS verification is explicitly skipped.
      cluster['insecure-skip-tls-verify'] = true;
    }
    const context: Record<string, unknown> = { cluster: 'fake', user: 'fake' };
    if (options.namespace !== undefined) context['namespace'] = options.namespace;
    return yamlStringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster }],
      users: [{ name: 'fake', user: { token: options.token ?? this.token } }],
      contexts: [{ name: 'fake', context }],
      'current-context': 'fake',
      preferences: {},
    });
  }

  /** Writes kubeconfig() to `<dir>/kubeconfig` (mode 0600) and returns the path. */
  writeKubeconfig(dir: string, options: KubeconfigOptions = {}): string {
    const path = join(dir, 'kubeconfig');
    writeFileSync(path, this.kubeconfig(options), { mode: 0o600 });
    return path;
  }

  // ---- store ---------------------------------------------------------------------------------

  /**
   * Stores a new object and emits ADDED. Assigns resourceVersion, uid, creationTimestamp (and
   * managedFields noise); kind/apiVersion are set from `kind`; a namespaced object without a
   * namespace goes to `default`. Throws if it already exists. Returns a copy of what was stored.
   */
  create(kind: FakeKind, obj: object): KubeObject {
    const info = RESOURCES[kind];
    this.requireServed(info);
    const o = this.normalize(info, obj);
    const key = objectKey(info, o.metadata.namespace, o.metadata.name);
    const objects = this.objects(kind);
    if (objects.has(key)) throw new Error(`${info.plural} "${o.metadata.name}" already exists`);
    const rv = ++this.rv;
    o.metadata.uid = randomUUID();
    o.metadata.creationTimestamp = nowTimestamp();
    o.metadata.resourceVersion = String(rv);
    this.addManagedFields(info, o, undefined);
    objects.set(key, o);
    this.record({ rv, kind, type: 'ADDED', key, object: o });
    return clone(o);
  }

  /**
   * Replaces an existing object and emits MODIFIED. Like a PUT: if `obj` carries a
   * metadata.resourceVersion it must be the current one (else a Conflict error is thrown); uid and
   * creationTimestamp are kept. An update that changes nothing (ignoring server-set metadata) is
   * a no-op: no new RV, no event — as on a real apiserver.
   */
  update(kind: FakeKind, obj: object): KubeObject {
    const info = RESOURCES[kind];
    this.requireServed(info);
    const o = this.normalize(info, obj);
    const key = objectKey(info, o.metadata.namespace, o.metadata.name);
    const objects = this.objects(kind);
    const prev = objects.get(key);
    if (!prev) throw new Error(`${info.plural} "${o.metadata.name}" not found`);
    const wantRV = o.metadata.resourceVersion;
    if (wantRV !== undefined && wantRV !== '' && wantRV !== prev.metadata.resourceVersion) {
      throw new Error(
        `Operation cannot be fulfilled on ${info.plural} "${o.metadata.name}": the object has been modified; ` +
          'please apply your changes to the latest version and try again',
      );
    }
    o.metadata.uid = prev.metadata.uid;
    o.metadata.creationTimestamp = prev.metadata.creationTimestamp;
    if (this.comparable(o) === this.comparable(prev)) return clone(prev);
    const rv = ++this.rv;
    o.metadata.resourceVersion = String(rv);
    this.addManagedFields(info, o, prev);
    objects.set(key, o);
    this.record({ rv, kind, type: 'MODIFIED', key, object: o, prev });
    return clone(o);
  }

  /** create() or update(), whichever applies. */
  upsert(kind: FakeKind, obj: object): KubeObject {
    const info = RESOURCES[kind];
    const o = this.normalize(info, obj);
    return this.objects(kind).has(objectKey(info, o.metadata.namespace, o.metadata.name))
      ? this.update(kind, { ...o, metadata: { ...o.metadata, resourceVersion: undefined } })
      : this.create(kind, o);
  }

  /**
   * Removes an object and emits DELETED (whose object is the last state, with the deletion's RV).
   * `namespace` is ignored for cluster-scoped kinds. Throws if it does not exist.
   */
  delete(kind: FakeKind, namespace: string | undefined, name: string): KubeObject {
    const info = RESOURCES[kind];
    const key = objectKey(info, namespace, name);
    const objects = this.objects(kind);
    const prev = objects.get(key);
    if (!prev) throw new Error(`${info.plural} "${name}" not found`);
    const rv = ++this.rv;
    const last = clone(prev);
    last.metadata.resourceVersion = String(rv);
    objects.delete(key);
    this.record({ rv, kind, type: 'DELETED', key, object: last, prev });
    return clone(last);
  }

  /** A copy of a stored object, or undefined. */
  get(kind: FakeKind, namespace: string | undefined, name: string): KubeObject | undefined {
    const o = this.objects(kind).get(objectKey(RESOURCES[kind], namespace, name));
    return o ? clone(o) : undefined;
  }

  /** Copies of the stored objects of a kind (optionally one namespace), in key order. */
  list(kind: FakeKind, namespace?: string): KubeObject[] {
    return [...this.objects(kind).entries()]
      .filter(([, o]) => namespace === undefined || o.metadata.namespace === namespace)
      .sort(([a], [b]) => compareKeys(a, b))
      .map(([, o]) => clone(o));
  }

  // ---- faults and probes ---------------------------------------------------------------------

  /**
   * Compaction: bumps the revision by one (kube-apiserver's compactor writes a key to etcd when it
   * compacts) and moves the compaction point to the new revision, dropping the event history.
   * Every watch resourceVersion and continue token from before this call then gets 410 Expired.
   * Open watches are not affected.
   */
  compact(): void {
    this.rv++;
    this.compactedRV = this.rv;
    this.history = [];
  }

  /** Destroys the socket of every open watch mid-stream (no terminating chunk): the client sees an aborted body. */
  dropWatches(): void {
    for (const w of [...this.watches]) this.finishWatch(w, true);
  }

  /**
   * Ends every open watch cleanly (terminating chunk), as the apiserver does at its request
   * timeout; queued events are flushed first. Hung watches are left alone (the client could not
   * hear the end of a dead connection either).
   */
  endWatches(): void {
    for (const w of this.watches) {
      if (w.hung) continue;
      w.queue.push(END);
      void this.pump(w);
    }
  }

  /**
   * Makes watches silent. `true`/'headers': new watch requests get 200 + headers, then nothing
   * ever (no events, bookmarks, timeout or end). 'no-headers': new watch requests are accepted but
   * never answered. Either way, the watches already open also go silent from now on (their queued
   * and future events are discarded, as on a half-open connection) and stay so. `false`: new watches are normal
   * again; silent ones stay silent until dropped or closed. LISTs are never affected.
   */
  hangWatches(mode: boolean | HangMode = true): void {
    this.hangMode = mode === true ? 'headers' : mode === false ? undefined : mode;
    if (this.hangMode) {
      for (const w of this.watches) {
        w.hung = true;
        w.queue.length = 0;
        if (w.timer) clearTimeout(w.timer);
      }
    }
  }

  /**
   * The next `n` authenticated requests (matching `options.filter`, if given) are answered with
   * HTTP `status` and a Status body (reason from the code: 500 InternalError, 503
   * ServiceUnavailable, 429 TooManyRequests with Retry-After: 1, ...). A watch request gets the
   * error instead of its 200 stream. Rules queue up; each request consumes the first rule it matches.
   */
  failNext(n = 1, status = 500, options: FailNextOptions | string | RegExp = {}): void {
    const o = typeof options === 'string' || options instanceof RegExp ? { filter: options } : options;
    this.failRules.push({ remaining: n, status, options: o });
  }

  /**
   * Installs (true) or removes (false) the ServiceImport CRD. Removing it deletes every
   * ServiceImport (DELETED events, as the CRD's finalizer does), then ends the watches on them
   * and makes the group a 404 again.
   */
  setServiceImports(installed: boolean): void {
    if (installed === this.opts.serviceImports) return;
    if (!installed) {
      for (const o of this.list('ServiceImport')) this.delete('ServiceImport', o.metadata.namespace, o.metadata.name);
      for (const w of this.watches) {
        if (w.info.kind !== 'ServiceImport' || w.hung) continue;
        w.queue.push(END);
        void this.pump(w);
      }
    }
    this.opts.serviceImports = installed;
  }

  /** Rotates the token: from now on only `newToken` is accepted (the old one gets 401). Open watches stay open. */
  setToken(newToken: string): void {
    this.token = newToken;
  }

  /** Splits every Nth watch line into two TCP writes (0 = never). */
  splitEvents(every: number): void {
    this.opts.splitEvery = every;
  }

  /** Sends a BOOKMARK at the current RV to every open, non-silent watch that asked for bookmarks. */
  sendBookmark(): void {
    for (const w of this.watches) {
      if (w.bookmarks && !w.hung) this.enqueueEvent(w, 'BOOKMARK', this.bookmarkObject(w.info));
    }
  }

  /** Server-side sockets currently open (TCP connections, including TLS and keep-alive ones). */
  openConnections(): number {
    return this.sockets.size;
  }

  /** Watch requests currently open (including silent ones). */
  watchCount(): number {
    return this.watches.size;
  }

  /** Empties the request log. */
  clearRequests(): void {
    this.requests.length = 0;
  }

  // ---- internals -----------------------------------------------------------------------------

  private sortedKeys(kind: FakeKind): string[] {
    let keys = this.keyCache.get(kind);
    if (!keys) {
      keys = [...this.objects(kind).keys()].sort(compareKeys);
      this.keyCache.set(kind, keys);
    }
    return keys;
  }

  /** Writes to a custom resource need its CRD (a real server answers 404). */
  private requireServed(info: ResourceInfo): void {
    if (info.kind === 'ServiceImport' && !this.opts.serviceImports) {
      throw new Error(`${info.plural}.${info.group}: the server could not find the requested resource (the CRD is not installed: setServiceImports(true))`);
    }
  }

  private objects(kind: FakeKind): Map<string, KubeObject> {
    const m = this.store.get(kind);
    if (!m) throw new Error('FakeApiServer not started');
    return m;
  }

  private normalize(info: ResourceInfo, input: object): KubeObject {
    const o = clone(input) as Partial<KubeObject>;
    const meta = o.metadata;
    if (!meta || typeof meta.name !== 'string' || meta.name === '') {
      throw new Error(`${info.kind}: metadata.name is required`);
    }
    if (info.namespaced) {
      if (!meta.namespace) meta.namespace = 'default';
    } else {
      delete meta.namespace;
    }
    return { ...o, apiVersion: info.apiVersion, kind: info.kind, metadata: meta } as KubeObject;
  }

  private comparable(o: KubeObject): string {
    const { resourceVersion: _rv, managedFields: _mf, generation: _g, ...meta } = o.metadata;
    return canonical({ ...o, metadata: meta });
  }

  private addManagedFields(info: ResourceInfo, o: KubeObject, prev: KubeObject | undefined): void {
    if (!this.opts.managedFields) return;
    const { metadata, ...body } = o;
    const { managedFields: _m, resourceVersion: _r, uid: _u, creationTimestamp: _c, name: _n, namespace: _ns, ...metaRest } =
      metadata;
    const entry = {
      manager: prev ? 'kube-controller-manager' : 'kubectl-client-side-apply',
      operation: 'Update',
      apiVersion: info.apiVersion,
      time: nowTimestamp(),
      fieldsType: 'FieldsV1',
      fieldsV1: toFieldsV1({ metadata: metaRest, ...body }),
    };
    const kept = (prev?.metadata.managedFields ?? []).filter(
      (m) => (m as { manager?: string }).manager !== entry.manager,
    );
    o.metadata.managedFields = [...kept, entry];
  }

  private record(entry: HistoryEntry): void {
    if (entry.type !== 'MODIFIED') this.keyCache.delete(entry.kind);
    this.history.push(entry);
    while (this.history.length > this.opts.historySize) {
      const dropped = this.history.shift()!;
      this.compactedRV = dropped.rv;
    }
    for (const w of this.watches) this.deliver(w, entry);
  }

  /** The store of one kind as it was at `rv` (rebuilt by undoing newer history). */
  private snapshotAt(kind: FakeKind, rv: number): Map<string, KubeObject> {
    const snap = new Map(this.objects(kind));
    for (let i = this.history.length - 1; i >= 0; i--) {
      const e = this.history[i]!;
      if (e.rv <= rv) break;
      if (e.kind !== kind) continue;
      if (e.type === 'ADDED') snap.delete(e.key);
      else if (e.prev) snap.set(e.key, e.prev);
    }
    return snap;
  }

  private bookmarkObject(info: ResourceInfo, annotations?: Record<string, string>): object {
    const metadata: Record<string, unknown> = { resourceVersion: String(this.rv) };
    if (annotations) metadata['annotations'] = annotations;
    return { kind: info.kind, apiVersion: info.apiVersion, metadata };
  }

  private matches(w: Pick<WatchConn, 'namespace' | 'labels' | 'fields'>, o: KubeObject): boolean {
    if (w.namespace !== undefined && o.metadata.namespace !== w.namespace) return false;
    return w.labels(o.metadata.labels) && w.fields(o);
  }

  private deliver(w: WatchConn, e: HistoryEntry): void {
    if (w.hung || w.closed || w.info.kind !== e.kind) return;
    if (e.type === 'MODIFIED') {
      const cur = this.matches(w, e.object);
      const old = e.prev !== undefined && this.matches(w, e.prev);
      if (cur && old) this.enqueueEvent(w, 'MODIFIED', e.object);
      else if (cur) this.enqueueEvent(w, 'ADDED', e.object);
      else if (old) {
        const gone = clone(e.prev!);
        gone.metadata.resourceVersion = String(e.rv);
        this.enqueueEvent(w, 'DELETED', gone);
      }
      return;
    }
    if (this.matches(w, e.object)) this.enqueueEvent(w, e.type, e.object);
  }

  private enqueueEvent(w: WatchConn, type: WatchEventType, object: object): void {
    const data = Buffer.from(`${JSON.stringify({ type, object })}\n`);
    const every = this.opts.splitEvery;
    const split = every > 0 && this.lineCount++ % every === every - 1;
    w.queue.push({ data, split });
    void this.pump(w);
  }

  private async pump(w: WatchConn): Promise<void> {
    if (w.pumping) return;
    w.pumping = true;
    try {
      while (w.queue.length > 0 && !w.closed) {
        const item = w.queue.shift()!;
        if (item === END) {
          this.finishWatch(w, false);
          return;
        }
        if (item.split && item.data.length > 1) {
          // Cut at an odd byte offset (may fall inside a multi-byte character) and yield to the
          // event loop (or sleep splitDelayMs), so the halves leave as two HTTP chunks and, with
          // TCP_NODELAY, as two TCP segments.
          const cut = Math.max(1, Math.floor(item.data.length / 2) | 1);
          await this.write(w, item.data.subarray(0, cut));
          const delay = this.opts.splitDelayMs;
          await new Promise((r) => (delay > 0 ? setTimeout(r, delay) : setImmediate(r)));
          if (w.closed) return;
          await this.write(w, item.data.subarray(cut));
        } else {
          await this.write(w, item.data);
        }
      }
    } finally {
      w.pumping = false;
    }
  }

  private write(w: WatchConn, data: Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (w.closed || w.res.destroyed) return resolve();
      if (w.res.write(data)) return resolve();
      w.res.once('drain', resolve);
      w.res.once('close', resolve);
    });
  }

  /** Removes a watch; `abort` destroys its socket, otherwise the response is ended cleanly. */
  private finishWatch(w: WatchConn, abort: boolean): void {
    if (w.timer) clearTimeout(w.timer);
    w.closed = true;
    w.queue.length = 0;
    this.watches.delete(w);
    if (abort) w.req.socket.destroy();
    else w.res.end();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const watch = query['watch'] !== undefined && TRUE_VALUES.has(query['watch']);
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      authorization: req.headers.authorization,
      watch,
      time: Date.now(),
    };
    this.requests.push(rec);
    req.resume();
    try {
      if (req.headers.authorization !== `Bearer ${this.token}`) {
        throw new HttpError(401, 'Unauthorized');
      }
      const rule = this.failRules.find((r) => this.ruleMatches(r, rec));
      if (rule) {
        if (--rule.remaining <= 0) this.failRules.splice(this.failRules.indexOf(rule), 1);
        if (rule.status === 429) res.setHeader('Retry-After', '1');
        throw new HttpError(
          rule.status,
          rule.options.message ?? `fake apiserver: injected failure (${rule.status})`,
          undefined,
          rule.status === 429 ? { retryAfterSeconds: 1 } : undefined,
        );
      }
      if (rec.method !== 'GET' && rec.method !== 'HEAD') {
        throw new HttpError(405, `the server does not allow this method on the requested resource`);
      }
      this.route(req, res, rec, url.searchParams);
    } catch (err) {
      if (res.headersSent) {
        req.socket.destroy();
      } else if (err instanceof HttpError) {
        this.sendStatus(res, rec, err);
      } else {
        this.sendStatus(res, rec, new HttpError(500, `fake apiserver: ${String(err)}`));
      }
    }
  }

  private ruleMatches(r: FailRule, rec: RecordedRequest): boolean {
    const f = r.options.filter;
    if (f === undefined) return true;
    if (typeof f === 'string') return rec.path.includes(f);
    if (f instanceof RegExp) return f.test(rec.path);
    return f(rec);
  }

  private sendStatus(res: http.ServerResponse, rec: RecordedRequest, err: HttpError): void {
    this.sendJson(res, rec, err.code, statusObject(err.code, err.message, err.reason, err.details));
  }

  private sendJson(res: http.ServerResponse, rec: RecordedRequest, code: number, body: unknown): void {
    let data: Buffer = Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
    };
    const accept = String(res.req.headers['accept-encoding'] ?? '');
    if (data.length >= this.opts.gzipThreshold && /\bgzip\b/.test(accept)) {
      data = gzipSync(data);
      headers['Content-Encoding'] = 'gzip';
      rec.gzip = true;
    }
    headers['Content-Length'] = data.length;
    rec.status = code;
    res.writeHead(code, headers);
    res.end(rec.method === 'HEAD' ? undefined : data);
  }

  private notFoundPage(res: http.ServerResponse, rec: RecordedRequest): void {
    // Unrouted paths get Go's plain-text 404, not a Status.
    rec.status = 404;
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
    res.end('404 page not found\n');
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse, rec: RecordedRequest, q: URLSearchParams): void {
    const path = rec.path.length > 1 && rec.path.endsWith('/') ? rec.path.slice(0, -1) : rec.path;
    const slices = this.opts.endpointSlices;
    switch (path) {
      case '/api':
        return this.sendJson(res, rec, 200, {
          kind: 'APIVersions',
          versions: ['v1'],
          serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${this.port}` }],
        });
      case '/api/v1':
        return this.sendJson(res, rec, 200, {
          kind: 'APIResourceList',
          groupVersion: 'v1',
          resources: [...CORE_PLURALS.values()].flatMap((i) => this.apiResources(i)),
        });
      case '/apis':
        return this.sendJson(res, rec, 200, {
          kind: 'APIGroupList',
          apiVersion: 'v1',
          groups: [...(slices ? [this.discoveryGroup()] : []), ...(this.opts.serviceImports ? [this.mcsGroup()] : [])],
        });
      case '/apis/multicluster.x-k8s.io':
        if (!this.opts.serviceImports) throw crdNotFound();
        return this.sendJson(res, rec, 200, { kind: 'APIGroup', apiVersion: 'v1', ...this.mcsGroup() });
      case MCS_PREFIX:
        if (!this.opts.serviceImports) throw crdNotFound();
        return this.sendJson(res, rec, 200, {
          kind: 'APIResourceList',
          apiVersion: 'v1',
          groupVersion: 'multicluster.x-k8s.io/v1alpha1',
          resources: this.apiResources(RESOURCES.ServiceImport),
        });
      case '/apis/discovery.k8s.io':
        if (!slices) return this.notFoundPage(res, rec);
        return this.sendJson(res, rec, 200, { kind: 'APIGroup', apiVersion: 'v1', ...this.discoveryGroup() });
      case '/apis/discovery.k8s.io/v1':
        if (!slices) return this.notFoundPage(res, rec);
        return this.sendJson(res, rec, 200, {
          kind: 'APIResourceList',
          apiVersion: 'v1',
          groupVersion: 'discovery.k8s.io/v1',
          resources: this.apiResources(RESOURCES.EndpointSlice),
        });
      case '/version':
        return this.sendJson(res, rec, 200, this.versionInfo());
      case '/healthz':
      case '/livez':
      case '/readyz':
        rec.status = 200;
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('ok');
        return;
    }
    let rest: string[] | undefined;
    let plurals: Map<string, ResourceInfo> | undefined;
    if (path.startsWith('/api/v1/')) {
      rest = path.slice('/api/v1/'.length).split('/');
      plurals = CORE_PLURALS;
    } else if (slices && path.startsWith('/apis/discovery.k8s.io/v1/')) {
      rest = path.slice('/apis/discovery.k8s.io/v1/'.length).split('/');
      plurals = DISCOVERY_PLURALS;
    } else if (path.startsWith(`${MCS_PREFIX}/`)) {
      if (!this.opts.serviceImports) throw crdNotFound();
      rest = path.slice(MCS_PREFIX.length + 1).split('/');
      plurals = MCS_PLURALS;
    }
    if (!rest || !plurals || rest.some((s) => s === '')) return this.notFoundPage(res, rec);
    const seg = rest.map(decodeURIComponent);
    // {plural} | {plural}/{name} (cluster-scoped) | namespaces/{ns}/{plural} | namespaces/{ns}/{plural}/{name}
    if (seg.length === 1 || (seg.length === 2 && plurals.get(seg[0]!)?.namespaced === false)) {
      const info = plurals.get(seg[0]!);
      if (!info) return this.notFoundPage(res, rec);
      if (seg.length === 2) return this.getOne(res, rec, info, undefined, seg[1]!);
      return rec.watch ? this.handleWatch(req, res, rec, q, info, undefined) : this.handleList(res, rec, q, info, undefined);
    }
    if (seg[0] === 'namespaces' && (seg.length === 3 || seg.length === 4)) {
      const info = plurals.get(seg[2]!);
      if (!info || !info.namespaced) return this.notFoundPage(res, rec);
      if (seg.length === 4) return this.getOne(res, rec, info, seg[1]!, seg[3]!);
      return rec.watch ? this.handleWatch(req, res, rec, q, info, seg[1]!) : this.handleList(res, rec, q, info, seg[1]!);
    }
    return this.notFoundPage(res, rec);
  }

  private apiResources(info: ResourceInfo): object[] {
    const main: Record<string, unknown> = {
      name: info.plural,
      singularName: info.singular,
      namespaced: info.namespaced,
      kind: info.kind,
      verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
    };
    if (info.shortNames.length > 0) main['shortNames'] = info.shortNames;
    if (info.kind === 'Pod' || info.kind === 'Service') main['categories'] = ['all'];
    const subs = info.subresources.map((s) => ({
      name: `${info.plural}/${s}`,
      singularName: '',
      namespaced: info.namespaced,
      kind: info.kind,
      verbs: ['get', 'patch', 'update'],
    }));
    return [main, ...subs];
  }

  private discoveryGroup(): object {
    const v = { groupVersion: 'discovery.k8s.io/v1', version: 'v1' };
    return { name: 'discovery.k8s.io', versions: [v], preferredVersion: v };
  }

  private mcsGroup(): object {
    const v = { groupVersion: 'multicluster.x-k8s.io/v1alpha1', version: 'v1alpha1' };
    return { name: 'multicluster.x-k8s.io', versions: [v], preferredVersion: v };
  }

  private versionInfo(): object {
    const m = /^v(\d+)\.(\d+)/.exec(this.opts.gitVersion);
    return {
      major: m?.[1] ?? '1',
      minor: m?.[2] ?? '30',
      gitVersion: this.opts.gitVersion,
      gitCommit: '0000000000000000000000000000000000000000',
      gitTreeState: 'clean',
      buildDate: '2024-01-01T00:00:00Z',
      goVersion: 'go1.22.0',
      compiler: 'gc',
      platform: 'linux/amd64',
    };
  }

  private getOne(
    res: http.ServerResponse,
    rec: RecordedRequest,
    info: ResourceInfo,
    namespace: string | undefined,
    name: string,
  ): void {
    const o = this.objects(info.kind).get(objectKey(info, namespace, name));
    if (!o) {
      throw new HttpError(404, `${info.plural}${info.group ? `.${info.group}` : ''} "${name}" not found`, 'NotFound', {
        name,
        ...(info.group ? { group: info.group } : {}),
        kind: info.plural,
      });
    }
    this.sendJson(res, rec, 200, o);
  }

  private selectors(q: URLSearchParams, info: ResourceInfo): { labels: LabelMatcher; fields: FieldMatcher } {
    try {
      return {
        labels: parseLabelSelector(q.get('labelSelector')),
        fields: parseFieldSelector(q.get('fieldSelector'), info.fields, info.fieldDefaults),
      };
    } catch (err) {
      if (err instanceof SelectorError) throw new HttpError(400, err.message);
      throw err;
    }
  }

  private parseRV(s: string): number {
    if (!/^\d+$/.test(s)) {
      throw new HttpError(400, `resourceVersion: Invalid value: "${s}": must be a valid resourceVersion`, 'BadRequest');
    }
    return Number(s);
  }

  private expired(rv: number): HttpError {
    return new HttpError(410, `too old resource version: ${rv} (${this.compactedRV})`, 'Expired');
  }

  private decodeContinue(token: string): ContinueToken {
    try {
      const j = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { v?: unknown; rv?: unknown; start?: unknown };
      if (j.v !== 'meta.k8s.io/v1' || typeof j.rv !== 'number' || typeof j.start !== 'string') throw new Error('bad');
      return { rv: j.rv, start: j.start };
    } catch {
      throw new HttpError(400, 'continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
    }
  }

  private handleList(
    res: http.ServerResponse,
    rec: RecordedRequest,
    q: URLSearchParams,
    info: ResourceInfo,
    namespace: string | undefined,
  ): void {
    const { labels, fields } = this.selectors(q, info);
    const rvParam = q.get('resourceVersion') ?? '';
    const limitRaw = q.get('limit');
    // resourceVersion=0 is served from the watch cache, which ignores limit: the whole list, no continue.
    const limit = limitRaw !== null && /^\d+$/.test(limitRaw) && rvParam !== '0' ? Number(limitRaw) : 0;
    const rvMatch = q.get('resourceVersionMatch') ?? '';
    const cont = q.get('continue') ?? '';
    let snapRV = this.rv;
    let start = '';
    if (cont !== '') {
      if (rvParam !== '' && rvParam !== '0') {
        throw new HttpError(400, 'specifying resource version is not allowed when using continue');
      }
      const tok = this.decodeContinue(cont);
      if (tok.rv < this.compactedRV) {
        throw new HttpError(
          410,
          'The provided continue parameter is too old to display a consistent list result. You can start a new ' +
            'list without the continue parameter.',
          'Expired',
        );
      }
      snapRV = tok.rv;
      start = tok.start;
    } else if (rvParam !== '') {
      if (rvMatch !== '' && rvMatch !== 'Exact' && rvMatch !== 'NotOlderThan') {
        throw new HttpError(400, `resourceVersionMatch: Unsupported value: "${rvMatch}"`);
      }
      const rv = this.parseRV(rvParam);
      const exact = rvMatch === 'Exact' || (rvMatch === '' && limit > 0 && rv !== 0);
      if (rv > this.rv) {
        throw new HttpError(504, `Too large resource version: ${rv}, current: ${this.rv}`, 'Timeout', {
          causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
          retryAfterSeconds: 1,
        });
      }
      if (exact) {
        if (rv < this.compactedRV) throw this.expired(rv);
        snapRV = rv;
      }
    } else if (rvMatch !== '') {
      throw new HttpError(400, 'resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided');
    }
    const current = snapRV === this.rv;
    const snap = current ? this.objects(info.kind) : this.snapshotAt(info.kind, snapRV);
    const keys = current ? this.sortedKeys(info.kind) : [...snap.keys()].sort(compareKeys);
    // Keys sort like etcd's: namespace, then name. A namespaced list is one contiguous range.
    const prefix = namespace !== undefined ? `${namespace}/` : '';
    const from = start > prefix ? start : prefix;
    const w = { namespace, labels, fields };
    const countRemaining = !q.get('labelSelector') && !q.get('fieldSelector');
    const page: KubeObject[] = [];
    let lastKey = '';
    let more = false;
    let remaining = 0;
    for (let i = lowerBound(keys, from); i < keys.length; i++) {
      const key = keys[i]!;
      if (!key.startsWith(prefix)) break;
      const o = snap.get(key)!;
      if (!this.matches(w, o)) continue;
      if (limit === 0 || page.length < limit) {
        page.push(o);
        lastKey = key;
      } else {
        more = true;
        if (!countRemaining) break;
        remaining++;
      }
    }
    const metadata: Record<string, unknown> = { resourceVersion: String(snapRV) };
    if (more) {
      metadata['continue'] = Buffer.from(
        JSON.stringify({ v: 'meta.k8s.io/v1', rv: snapRV, start: `${lastKey}\u0000` }),
      ).toString('base64url');
      if (countRemaining) metadata['remainingItemCount'] = remaining;
    }
    this.sendJson(res, rec, 200, {
      kind: info.listKind,
      apiVersion: info.apiVersion,
      metadata,
      items: info.custom === true ? page : page.map(withoutKind),
    });
  }

  private handleWatch(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    rec: RecordedRequest,
    q: URLSearchParams,
    info: ResourceInfo,
    namespace: string | undefined,
  ): void {
    const { labels, fields } = this.selectors(q, info);
    const rvParam = q.get('resourceVersion') ?? '';
    const fromRV = rvParam === '' || rvParam === '0' ? undefined : this.parseRV(rvParam);
    const expired = fromRV !== undefined && fromRV < this.compactedRV;
    if (expired && this.opts.expiredWatch === 'http') throw this.expired(fromRV);
    const timeoutRaw = q.get('timeoutSeconds');
    const timeoutSeconds =
      timeoutRaw !== null && /^\d+$/.test(timeoutRaw) ? Number(timeoutRaw) : this.opts.defaultWatchTimeoutSeconds;

    const w: WatchConn = {
      req, res, info, namespace, labels, fields,
      bookmarks: TRUE_VALUES.has(q.get('allowWatchBookmarks') ?? ''),
      hung: this.hangMode !== undefined,
      headless: this.hangMode === 'no-headers',
      closed: false, pumping: false, queue: [],
    };
    this.watches.add(w);
    res.on('close', () => {
      if (w.timer) clearTimeout(w.timer);
      w.closed = true;
      this.watches.delete(w);
    });
    if (w.headless) return;

    rec.status = 200;
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
      'Transfer-Encoding': 'chunked',
    });
    // Without this Node holds the headers until the first write, and client-node's watch() never
    // resolves on a quiet watch.
    res.flushHeaders();
    if (w.hung) return;

    if (expired) {
      const err = this.expired(fromRV);
      this.enqueueEvent(w, 'ERROR', statusObject(410, err.message, 'Expired'));
      w.queue.push(END);
      void this.pump(w);
      return;
    }
    if (fromRV === undefined || q.get('sendInitialEvents') === 'true') {
      // "Start at most recent": synthetic ADDED for the current state, then changes.
      for (const o of this.list(info.kind, namespace)) {
        if (this.matches(w, o)) this.enqueueEvent(w, 'ADDED', o);
      }
      if (q.get('sendInitialEvents') === 'true' && w.bookmarks) {
        this.enqueueEvent(w, 'BOOKMARK', this.bookmarkObject(info, { 'k8s.io/initial-events-end': 'true' }));
      }
    } else {
      for (const e of this.history) if (e.rv > fromRV) this.deliver(w, e);
    }
    if (timeoutSeconds !== undefined && timeoutSeconds > 0) {
      w.timer = setTimeout(() => {
        if (w.hung || w.closed) return;
        w.queue.push(END);
        void this.pump(w);
      }, timeoutSeconds * 1000);
    }
  }
}
