/**
 * Client configuration of the Kubernetes API source: kubeconfig files and contexts, the
 * in-cluster service account, bearer tokens and token files, client certificates, basic
 * auth and exec plugins, with @kubernetes/client-node 1.4.0's semantics but without
 * loading its index.
 *
 * **Why not client-node's KubeConfig.** `dist/config.js` imports its generated API
 * (`dist/gen`: every model and API class), and so does the package index: +28 MB of heap
 * and about +50 MB of RSS for a server that only ever lists and watches. So this file
 * reads kubeconfigs itself, with client-node's own light modules doing the parts whose
 * semantics matter: `dist/config_types.js` parses the clusters/users/contexts entries
 * (same field names, same validation errors), `dist/exec_auth.js` runs exec plugins,
 * `dist/file_auth.js` reads an auth-provider `tokenFile`; `watcher.ts` imports
 * `dist/watch.js` alone. What we reproduce from `KubeConfig` (config.js 1.4.0):
 *  - `loadFromFile`: relative `certificate-authority`, `client-certificate` and
 *    `client-key` paths are made absolute against the kubeconfig's directory;
 *  - `loadFromDefault`: every file of `$KUBECONFIG` (path-delimiter separated) merged in
 *    order, a later file's `current-context` winning and a duplicate cluster, user or
 *    context name being an error (client-node's rules, not kubectl's); else
 *    `~/.kube/config`; else the in-cluster service account (the WSL lookups client-node
 *    does on Windows are not reproduced);
 *  - `loadFromCluster`: `https://` unless the port is 80, 8080 or 8001, IPv6 in brackets;
 *  - `applyToHTTPSOptions`: CA data/file, client certificate and key data/file (files
 *    read on every request), `insecure-skip-tls-verify`, `tls-server-name`, `as`
 *    (Impersonate-User), exec plugins, then `token` (it wins over an exec token, as in
 *    client-node), basic auth as `opts.auth`; one difference: the cluster's TLS settings
 *    apply even to a context without a user (client-node then drops even the CA);
 *  - `applyToFetchOptions` (what `Watch` calls): the same, as fetch options, with basic
 *    auth turned into an `Authorization: Basic` header.
 * The YAML is read with the `yaml` package (1.2 core schema, `<<` merge keys on), not
 * client-node's js-yaml; a missing basic-auth password is empty, not "undefined".
 *
 * **The rare and heavy, delegated lazily.** A user with an `auth-provider` other than
 * `exec` or `tokenFile` (gcp, azure, oidc, anything unknown) and a cluster with a
 * `proxy-url` are handed to a real client-node `KubeConfig`, made by a dynamic
 * `import('@kubernetes/client-node')` (started by `loadClientConfig`, awaited by the first
 * request: about a second) from the same clusters, users and contexts, so its
 * authenticators, their token refreshes and its proxy agents behave exactly as before;
 * the shared agent and the channels work on top of it as on our own path. Only those
 * configurations pay the memory (the old ~+50 MB RSS).
 *
 * On top of that, the fixes 1.4.0 needs to run for months:
 *
 *  - **One agent, not one per request.** `KubeConfig.createAgent()` makes a new
 *    http(s).Agent for every request and every watch reconnect (kubernetes-client/
 *    javascript#2893, fixed only in 2.0). We make one and hand it out again for as long as
 *    the TLS material is the same (with the delegated KubeConfig: we keep the one it made
 *    first), so the sockets of every request live in one pool that `destroy()` empties at
 *    shutdown. CA, certificate and key files are read on every request: when they change
 *    on disk (a rotated client certificate, a new CA bundle) the next request gets a fresh
 *    agent, and the old one is left to its open requests.
 *  - **Abandonable requests.** `Watch.watch()` returns its AbortController only once the
 *    response headers arrive, so a watch whose server never answers cannot be aborted
 *    through it. Each list/watch loop talks through its own `Channel`, whose agent view
 *    records every ClientRequest it starts; `abortAll()` destroys them, headers or not.
 *  - **Token files that rotate.** See `token.ts`: the in-cluster token and a kubeconfig
 *    user's `tokenFile` / `token-file` (relative to the kubeconfig's directory) are read
 *    by us (stat per request, re-read on change or after a 401), not by client-node's
 *    60-second FileAuth or its read-once `token-file`.
 *  - **Server URL hygiene.** A trailing `/` on `server` makes client-node request
 *    `//apis/...` (404); an `http://` server is refused unless `skipTLSVerify` is set
 *    (there is no TLS to verify: `kubectl proxy` is the usual case). Both are normalised.
 */
import { createHash } from 'node:crypto';
import { accessSync, existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import type { Cluster, Context, KubeConfig, User } from '@kubernetes/client-node';
import { newClusters, newContexts, newUsers } from '@kubernetes/client-node/dist/config_types.js';
import { ExecAuth } from '@kubernetes/client-node/dist/exec_auth.js';
import { FileAuth } from '@kubernetes/client-node/dist/file_auth.js';
import { parse as parseYaml } from 'yaml';
import { joinHostPort } from '../../net/ip.js';
import { TokenFile } from './token.js';

/** A configuration that cannot work (missing file, unknown context, no in-cluster environment). */
export class KubeConfigError extends Error {
  readonly code = 'EKUBECONFIG';
  override readonly name = 'KubeConfigError';
}

/** Where a pod's service-account token, CA and namespace are mounted. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ClientConfigOptions {
  /** Path of a kubeconfig file. */
  readonly kubeconfig?: string | undefined;
  /** Context to use instead of the file's current-context. */
  readonly context?: string | undefined;
  /** Use the pod's service account (KUBERNETES_SERVICE_HOST/PORT, token, CA). */
  readonly inCluster?: boolean | undefined;
  /** Prefix of SERVICE_ACCOUNT_DIR (tests mount a fake service account under a temp dir). */
  readonly inClusterRoot?: string | undefined;
}

/**
 * Whether the in-cluster environment is present: the service host/port variables and the
 * token file. The CLI uses this to pick the API source when neither `--zones` nor a
 * kubeconfig is given.
 */
export function inClusterAvailable(root = '', env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env['KUBERNETES_SERVICE_HOST']) && Boolean(env['KUBERNETES_SERVICE_PORT']) && existsSync(`${root}${SERVICE_ACCOUNT_DIR}/token`);
}

type HttpsOptions = https.RequestOptions;
type AgentLike = http.Agent;
type Headers = Record<string, unknown>;
type Authenticator = Parameters<KubeConfig['addAuthenticator']>[0];

/** What `Watch` (dist/watch.js) passes on to node-fetch. */
export interface FetchOptions {
  agent: http.Agent | undefined;
  /** Name/value pairs (node-fetch takes them as a Headers init). */
  headers: [string, string][];
  method: string | undefined;
  timeout: number | undefined;
}

/** The part of a KubeConfig that client-node's `Watch` uses. */
export interface WatchConfig {
  getCurrentCluster(): Cluster | null;
  applyToFetchOptions(opts: HttpsOptions): Promise<FetchOptions>;
}

interface TokenSource {
  readonly file: TokenFile;
  /** A static token to fall back on while the file is unreadable (kubeconfig `token`). */
  readonly fallback: string | undefined;
}

/** How requests authenticate, for logs (never the secret itself). */
export type AuthKind = 'token' | 'tokenFile' | 'clientCertificate' | 'exec' | 'authProvider' | 'basic' | 'none';

export interface ClientDescription {
  readonly server: string;
  readonly context: string;
  readonly user: string;
  readonly auth: AuthKind;
  readonly source: 'kubeconfig' | 'in-cluster' | 'default';
}

/**
 * The clusters, users and contexts of a kubeconfig (or of the in-cluster service account),
 * authenticating with rotating token files and sharing one agent across all requests.
 * Build it with `loadClientConfig()`.
 */
export class ClientConfig implements WatchConfig {
  clusters: Cluster[] = [];
  users: User[] = [];
  contexts: Context[] = [];
  currentContext = '';
  /** Token files by kubeconfig user name. */
  readonly tokenFiles = new Map<string, TokenSource>();
  source: ClientDescription['source'] = 'default';
  #agent: AgentLike | undefined;
  /** Fingerprint of the TLS material #agent was made with. */
  #agentKey = '';
  /** Agents replaced after a TLS material change, kept until shutdown in case requests still use them. */
  readonly #retired = new Set<AgentLike>();
  #closed = false;
  #exec: ExecAuth | undefined;
  #fileAuth: FileAuth | undefined;
  /** client-node's KubeConfig, for what is delegated to it (see the header). */
  #delegate: Promise<KubeConfig> | undefined;

  getContexts(): Context[] {
    return this.contexts;
  }

  getClusters(): Cluster[] {
    return this.clusters;
  }

  getUsers(): User[] {
    return this.users;
  }

  getCurrentContext(): string {
    return this.currentContext;
  }

  setCurrentContext(name: string): void {
    this.currentContext = name;
  }

  getContextObject(name: string): Context | null {
    return this.contexts.find((c) => c.name === name) ?? null;
  }

  getCluster(name: string): Cluster | null {
    return this.clusters.find((c) => c.name === name) ?? null;
  }

  getUser(name: string): User | null {
    return this.users.find((u) => u.name === name) ?? null;
  }

  getCurrentCluster(): Cluster | null {
    const ctx = this.getContextObject(this.currentContext);
    return ctx === null ? null : this.getCluster(ctx.cluster);
  }

  getCurrentUser(): User | null {
    const ctx = this.getContextObject(this.currentContext);
    return ctx === null ? null : this.getUser(ctx.user);
  }

  /**
   * Why requests go through client-node's own KubeConfig (loaded on first use), or
   * undefined when they do not: an auth-provider we do not implement, a proxy.
   */
  get delegatedFor(): string | undefined {
    const user = this.getCurrentUser();
    const ap = user?.authProvider as { name?: unknown; config?: Record<string, unknown> } | null | undefined;
    // client-node tries azure, gcp, exec, tokenFile, oidc in that order.
    if (ap && (ap.name === 'azure' || ap.name === 'gcp' || (!isExecProvider(user!) && !isFileProvider(user!)))) {
      return `auth-provider "${String(ap.name)}"`;
    }
    if (this.getCurrentCluster()?.proxyUrl) return 'proxy-url';
    return undefined;
  }

  /** Auth and TLS options for one request, with the shared agent. */
  async applyToHTTPSOptions(opts: HttpsOptions): Promise<void> {
    if (this.#closed) throw new Error('Kubernetes client is closed');
    if (this.delegatedFor !== undefined) {
      await this.#applyDelegated(opts);
      return;
    }
    const cluster = this.getCurrentCluster();
    const user = this.getCurrentUser();
    applyTls(opts, cluster, user);
    await this.#applyAuthorization(opts, user);
    if (user?.username) opts.auth = `${user.username}:${user.password ?? ''}`;
    const agentOptions = agentOptionsOf(opts);
    opts.agent = this.#sharedAgent(tlsKey(agentOptions, cluster), () => createAgent(cluster, agentOptions));
  }

  /**
   * The one agent for TLS material `key`: kept while the key is the same, else replaced
   * by `make()` and the old one retired.
   */
  #sharedAgent(key: string, make: () => AgentLike): AgentLike {
    if (this.#agent === undefined || key !== this.#agentKey) {
      const agent = make();
      if (this.#agent !== undefined) this.#retire(this.#agent);
      this.#agent = agent;
      this.#agentKey = key;
    }
    return this.#agent;
  }

  /** The same as fetch options (what client-node's `Watch` asks for). */
  async applyToFetchOptions(opts: HttpsOptions): Promise<FetchOptions> {
    await this.applyToHTTPSOptions(opts);
    return fetchOptionsOf(opts);
  }

  /** client-node's applyAuthorizationHeader, with our token files as the custom authenticator. */
  async #applyAuthorization(opts: HttpsOptions, user: User | null): Promise<void> {
    if (user === null) return;
    opts.headers ??= {};
    if (isExecProvider(user)) {
      this.#exec ??= new ExecAuth();
      await this.#exec.applyAuthentication(user, opts);
    } else if (isFileProvider(user)) {
      this.#fileAuth ??= new FileAuth();
      await this.#fileAuth.applyAuthentication(user, opts);
    } else {
      await this.#tokenFileAuth.applyAuthentication(user, opts);
    }
    if (user.token) (opts.headers as Headers)['Authorization'] = `Bearer ${user.token}`;
  }

  readonly #tokenFileAuth: Authenticator = {
    isAuthProvider: (user: User) => this.tokenFiles.has(user.name),
    applyAuthentication: async (user: User, opts: HttpsOptions) => {
      const src = this.tokenFiles.get(user.name);
      const token = src?.file.get() ?? src?.fallback;
      if (token === undefined) return;
      const o = opts as { headers?: Headers };
      o.headers ??= {};
      o.headers['Authorization'] = `Bearer ${token}`;
    },
  };

  async #applyDelegated(opts: HttpsOptions): Promise<void> {
    const kc = await this.#kubeConfig();
    if (this.#closed) throw new Error('Kubernetes client is closed');
    await kc.applyToHTTPSOptions(opts);
    const o = opts as { agent?: unknown };
    // client-node just built a fresh agent (createAgent). Keep the current one while the
    // TLS material is unchanged; the fresh one has never carried a socket and is dropped.
    const fresh = o.agent;
    if (fresh instanceof http.Agent) o.agent = this.#sharedAgent(tlsKey(opts as Record<string, unknown>, this.getCurrentCluster()), () => fresh);
    else if (this.#agent !== undefined) o.agent = this.#agent;
  }

  /**
   * Start loading client-node's KubeConfig now if requests will need it (it takes about a
   * second), so that the first request does not wait for all of it. Errors surface then.
   */
  preload(): void {
    if (this.delegatedFor !== undefined) this.#kubeConfig().catch(() => undefined);
  }

  /** A real client-node KubeConfig over the same clusters, users and contexts (loads the package index once). */
  #kubeConfig(): Promise<KubeConfig> {
    this.#delegate ??= (async () => {
      let mod: typeof import('@kubernetes/client-node');
      try {
        mod = await import('@kubernetes/client-node');
      } catch (err) {
        this.#delegate = undefined;
        throw new KubeConfigError(`cannot load @kubernetes/client-node (needed for ${this.delegatedFor ?? 'this kubeconfig'}): ${(err as Error).message}`);
      }
      const kc = new mod.KubeConfig();
      kc.loadFromOptions({ clusters: this.clusters, users: this.users, contexts: this.contexts, currentContext: this.currentContext });
      kc.addAuthenticator(this.#tokenFileAuth);
      return kc;
    })();
    return this.#delegate;
  }

  #retire(agent: AgentLike): void {
    // Its idle sockets go now; in-use ones (an open watch) close when their request ends.
    for (const list of Object.values(agent.freeSockets)) for (const sock of list ?? []) sock.destroy();
    this.#retired.add(agent);
    if (this.#retired.size > 16) {
      const oldest = this.#retired.values().next().value;
      if (oldest !== undefined) this.#retired.delete(oldest);
    }
  }

  /** The API server refused our credentials: re-read every token file on the next request. */
  invalidateTokens(): void {
    for (const t of this.tokenFiles.values()) t.file.invalidate();
  }

  /** A new request channel (one per list/watch loop). */
  channel(): Channel {
    return new Channel(this);
  }

  /** Sockets currently held by the agents (in use and idle). */
  socketCount(): number {
    const count = (m: NodeJS.ReadOnlyDict<unknown[]>): number => Object.values(m).reduce((n, l) => n + (l?.length ?? 0), 0);
    let n = 0;
    for (const a of [this.#agent, ...this.#retired]) if (a !== undefined) n += count(a.sockets) + count(a.freeSockets);
    return n;
  }

  /** Agents made so far that are still held (1 unless the TLS material changed). */
  get agentCount(): number {
    return (this.#agent === undefined ? 0 : 1) + this.#retired.size;
  }

  /** Close every socket and refuse further requests. */
  destroy(): void {
    this.#closed = true;
    this.#agent?.destroy();
    for (const a of this.#retired) a.destroy();
    this.#retired.clear();
  }

  describe(): ClientDescription {
    const user = this.getCurrentUser();
    let auth: AuthKind = 'none';
    if (user !== null) {
      if (this.tokenFiles.has(user.name)) auth = 'tokenFile';
      else if (user.exec) auth = 'exec';
      else if (user.authProvider) auth = 'authProvider';
      else if (user.token) auth = 'token';
      else if (user.certData || user.certFile) auth = 'clientCertificate';
      else if (user.username) auth = 'basic';
    }
    return {
      server: this.getCurrentCluster()?.server ?? '',
      context: this.getCurrentContext(),
      user: user?.name ?? '',
      auth,
      source: this.source,
    };
  }
}

/** client-node's ExecAuth.isAuthProvider (checked before FileAuth, as in KubeConfig). */
function isExecProvider(user: User): boolean {
  if (user.exec) return true;
  const ap = user.authProvider as { name?: unknown; config?: { exec?: unknown } } | null | undefined;
  if (!ap) return false;
  return ap.name === 'exec' || Boolean(ap.config?.exec);
}

/** client-node's FileAuth.isAuthProvider (azure and gcp come first there: they are delegated). */
function isFileProvider(user: User): boolean {
  const ap = user.authProvider as { name?: unknown; config?: { tokenFile?: unknown } } | null | undefined;
  if (!ap || ap.name === 'azure' || ap.name === 'gcp') return false;
  return Boolean(ap.config?.tokenFile);
}

/** client-node's applyHTTPSOptions: the cluster's TLS settings and the user's client certificate. */
function applyTls(opts: HttpsOptions, cluster: Cluster | null, user: User | null): void {
  if (cluster !== null) {
    if (cluster.skipTLSVerify) opts.rejectUnauthorized = false;
    if (cluster.tlsServerName) opts.servername = cluster.tlsServerName;
    const ca = bufferFromFileOrString(cluster.caFile, cluster.caData);
    if (ca !== null) opts.ca = ca;
  }
  if (user === null) return;
  const cert = bufferFromFileOrString(user.certFile, user.certData);
  if (cert !== null) opts.cert = cert;
  const key = bufferFromFileOrString(user.keyFile, user.keyData);
  if (key !== null) opts.key = key;
  if (user.impersonateUser != null) {
    opts.headers ??= {};
    (opts.headers as Headers)['Impersonate-User'] = user.impersonateUser;
  }
}

function bufferFromFileOrString(file: string | null | undefined, data: string | null | undefined): Buffer | null {
  if (file) return readFileSync(file);
  if (data) return Buffer.from(data, 'base64');
  return null;
}

const AGENT_OPTIONS = [
  'ca', 'cert', 'key', 'pfx', 'passphrase', 'timeout', 'servername', 'ciphers', 'honorCipherOrder', 'ecdhCurve',
  'clientCertEngine', 'crl', 'dhparam', 'secureOptions', 'secureProtocol', 'sessionIdContext',
] as const;

/** The agent options client-node copies from the request options (applyToHTTPSOptions). */
function agentOptionsOf(opts: HttpsOptions): Record<string, unknown> {
  const o = opts as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of AGENT_OPTIONS) out[k] = o[k];
  // Only when configured: otherwise NODE_TLS_REJECT_UNAUTHORIZED decides.
  if (o['rejectUnauthorized'] !== undefined) out['rejectUnauthorized'] = o['rejectUnauthorized'];
  return out;
}

/** client-node's createAgent, minus the proxies (delegated). */
function createAgent(cluster: Cluster | null, agentOptions: Record<string, unknown>): AgentLike {
  const server = cluster?.server ?? '';
  if (server.startsWith('http:')) {
    if (!cluster?.skipTLSVerify) throw new Error('HTTP protocol is not allowed when skipTLSVerify is not set or false');
    return new http.Agent(agentOptions as http.AgentOptions);
  }
  return new https.Agent(agentOptions as https.AgentOptions);
}

/** client-node's applyToFetchOptions: headers as pairs (arrays appended, the rest set), basic auth as a header. */
function fetchOptionsOf(opts: HttpsOptions): FetchOptions {
  let headers: [string, string][] = [];
  const set = (name: string, value: string): void => {
    headers = headers.filter(([n]) => n.toLowerCase() !== name.toLowerCase());
    headers.push([name, value]);
  };
  for (const [key, val] of Object.entries((opts.headers ?? {}) as Headers)) {
    if (Array.isArray(val)) for (const v of val) headers.push([key, String(v)]);
    else if (typeof val === 'number' || typeof val === 'string') set(key, String(val));
  }
  if (opts.auth) set('Authorization', `Basic ${Buffer.from(opts.auth).toString('base64')}`);
  return {
    agent: opts.agent instanceof http.Agent ? opts.agent : undefined,
    headers,
    method: opts.method,
    timeout: opts.timeout,
  };
}

/**
 * The requests of one list/watch loop. Its `config` (for client-node's `Watch`) and its
 * `applyToHTTPSOptions` (for our list calls) use the shared agent through a view that
 * records each ClientRequest, so `abortAll()` can destroy a request that never got its
 * response headers — the one thing 1.4.0's Watch gives no handle for.
 */
export class Channel {
  readonly config: WatchConfig;
  readonly #parent: ClientConfig;
  readonly #inflight = new Set<http.ClientRequest>();
  #base: AgentLike | undefined;
  #view: AgentLike | undefined;

  constructor(parent: ClientConfig) {
    this.#parent = parent;
    this.config = {
      getCurrentCluster: () => parent.getCurrentCluster(),
      applyToFetchOptions: async (opts: HttpsOptions) => {
        await this.applyToHTTPSOptions(opts);
        return fetchOptionsOf(opts);
      },
    };
  }

  /** Requests started through this channel and not yet closed. */
  get inflight(): number {
    return this.#inflight.size;
  }

  /** Auth, TLS and the tracking agent for one request of this channel. */
  async applyToHTTPSOptions(opts: HttpsOptions): Promise<void> {
    await this.#parent.applyToHTTPSOptions(opts);
    const o = opts as { agent?: unknown };
    if (o.agent instanceof http.Agent) o.agent = this.#viewOf(o.agent);
  }

  /** Destroy every open request of this channel (a hung watch, a list on stop). */
  abortAll(): number {
    const n = this.#inflight.size;
    for (const req of [...this.#inflight]) req.destroy();
    this.#inflight.clear();
    return n;
  }

  #viewOf(agent: AgentLike): AgentLike {
    if (this.#base === agent && this.#view !== undefined) return this.#view;
    // Reads (protocol, defaultPort, keepAlive, options…) go to the shared agent through
    // the prototype; only addRequest is intercepted, and forwarded with `this` = the
    // shared agent so its socket bookkeeping stays in one place.
    const view = Object.create(agent) as AgentLike & { addRequest(req: http.ClientRequest, o: unknown): void };
    const shared = agent as AgentLike & { addRequest(req: http.ClientRequest, o: unknown): void };
    view.addRequest = (req: http.ClientRequest, o: unknown): void => {
      this.#inflight.add(req);
      req.once('close', () => this.#inflight.delete(req));
      shared.addRequest(req, o);
    };
    this.#base = agent;
    this.#view = view;
    return view;
  }
}

/** What makes two agents different: the TLS options, and http vs https. */
function tlsKey(opts: Record<string, unknown>, cluster: Cluster | null): string {
  const h = createHash('sha256');
  h.update(`${cluster?.server.startsWith('http:') ? 'http' : 'https'}\0`);
  for (const k of ['ca', 'cert', 'key', 'pfx', 'passphrase', 'servername', 'rejectUnauthorized']) {
    const v = opts[k];
    h.update(`${k}:`);
    if (Buffer.isBuffer(v) || typeof v === 'string') h.update(v);
    else if (Array.isArray(v)) for (const x of v) h.update(Buffer.isBuffer(x) || typeof x === 'string' ? x : String(x));
    else h.update(String(v));
    h.update('\0');
  }
  return h.digest('base64');
}

function fail(msg: string): never {
  throw new KubeConfigError(msg);
}

/** One kubeconfig file, parsed. */
interface Parsed {
  clusters: Cluster[];
  users: User[];
  contexts: Context[];
  currentContext: string | undefined;
  /** Users with a token file: absolute path, and the static `token` to fall back on. */
  tokenFiles: Map<string, { path: string; token: string | undefined }>;
}

/**
 * client-node's loadFromFile: its own entry parsing (config_types.js) and relative
 * cert/key/CA paths made absolute against the file's directory. `tokenFile` (client-go's
 * name) and `token-file` (client-node's) are taken out of the user before client-node
 * would read them once, and become rotating token files relative to the same directory.
 */
function parseKubeconfigFile(file: string): Parsed {
  return parseKubeconfig(readFileSync(file, 'utf8'), dirname(file));
}

function parseKubeconfig(text: string, dir: string): Parsed {
  const doc: unknown = parseYaml(text, { merge: true });
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('not a kubeconfig (the document is empty or not a mapping)');
  const obj = doc as Record<string, unknown>;
  const tokenFiles = new Map<string, { path: string; token: string | undefined }>();
  const rawUsers = Array.isArray(obj['users'])
    ? (obj['users'] as unknown[]).map((u) => {
        const entry = u as { name?: unknown; user?: Record<string, unknown> | null } | null;
        const user = entry?.user;
        if (entry === null || typeof entry !== 'object' || user === null || typeof user !== 'object') return u;
        const file = user['tokenFile'] ?? user['token-file'];
        if (typeof entry.name !== 'string' || typeof file !== 'string' || file === '') return u;
        const token = typeof user['token'] === 'string' && user['token'] !== '' ? user['token'] : undefined;
        tokenFiles.set(entry.name, { path: isAbsolute(file) ? file : join(dir, file), token });
        const { tokenFile: _a, 'token-file': _b, ...rest } = user;
        return { ...entry, user: rest };
      })
    : obj['users'];
  const parsed: Parsed = {
    clusters: newClusters(obj['clusters']),
    users: newUsers(rawUsers),
    contexts: newContexts(obj['contexts']),
    currentContext: typeof obj['current-context'] === 'string' ? obj['current-context'] : undefined,
    tokenFiles,
  };
  // makePathsAbsolute
  for (const c of parsed.clusters) if (c.caFile) c.caFile = absolute(dir, c.caFile);
  for (const u of parsed.users) {
    if (u.certFile) u.certFile = absolute(dir, u.certFile);
    if (u.keyFile) u.keyFile = absolute(dir, u.keyFile);
  }
  return parsed;
}

function absolute(root: string, file: string): string {
  return !root || isAbsolute(file) ? file : join(root, file);
}

/** client-node's mergeConfig (preserveContext false): later current-context wins, duplicate names are errors. */
function merge(into: Parsed, from: Parsed): void {
  if (from.currentContext) into.currentContext = from.currentContext;
  const add = <T extends { name: string }>(list: T[], items: T[], what: string): void => {
    for (const item of items) {
      if (list.some((x) => x.name === item.name)) throw new Error(`Duplicate ${what}: ${item.name}`);
      list.push(item);
    }
  };
  add(into.clusters, from.clusters, 'cluster');
  add(into.users, from.users, 'user');
  add(into.contexts, from.contexts, 'context');
  for (const [k, v] of from.tokenFiles) if (!into.tokenFiles.has(k)) into.tokenFiles.set(k, v);
}

/** client-node's findHomeDir, without the Windows registry of fallbacks beyond the obvious. */
function homeDir(): string | undefined {
  const candidates = process.platform === 'win32'
    ? [process.env['HOME'], process.env['USERPROFILE'], process.env['HOMEDRIVE'] && process.env['HOMEPATH'] ? join(process.env['HOMEDRIVE'], process.env['HOMEPATH']) : undefined]
    : [process.env['HOME']];
  for (const dir of candidates) {
    if (!dir) continue;
    try {
      accessSync(dir);
      return dir;
    } catch {
      // next
    }
  }
  return undefined;
}

/** client-node's loadFromCluster, with the checks that make a missing service account a clear error. */
function inClusterConfig(root: string): Parsed {
  const env = process.env;
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  if (!host || !port) {
    fail('in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod?)');
  }
  const tokenPath = `${root}${SERVICE_ACCOUNT_DIR}/token`;
  const caPath = `${root}${SERVICE_ACCOUNT_DIR}/ca.crt`;
  for (const p of [tokenPath, caPath]) if (!existsSync(p)) fail(`in-cluster: ${p} does not exist (no service account mounted?)`);
  const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
  const nsPath = `${root}${SERVICE_ACCOUNT_DIR}/namespace`;
  let namespace: string | undefined;
  try {
    namespace = readFileSync(nsPath, 'utf8');
  } catch {
    namespace = undefined;
  }
  return {
    clusters: [{ name: 'inCluster', caFile: caPath, server: `${scheme}://${joinHostPort(host, port)}`, skipTLSVerify: false }],
    // client-node's user has a FileAuth auth-provider; ours reads the token through TokenFile.
    users: [{ name: 'inClusterUser' }],
    contexts: [{ cluster: 'inCluster', name: 'inClusterContext', user: 'inClusterUser', namespace }],
    currentContext: 'inClusterContext',
    tokenFiles: new Map([['inClusterUser', { path: tokenPath, token: undefined }]]),
  };
}

/** Strip trailing slashes; http:// needs skipTLSVerify in client-node (there is no TLS). */
function normaliseClusters(clusters: Cluster[]): Cluster[] {
  return clusters.map((c: Cluster) => {
    const server = c.server.replace(/\/+$/, '');
    const plain = server.startsWith('http://');
    return { ...c, server, skipTLSVerify: plain ? true : c.skipTLSVerify };
  });
}

/**
 * Load the client configuration: a kubeconfig file (and context), or the in-cluster
 * service account, or client-node's default search ($KUBECONFIG, ~/.kube/config,
 * in-cluster). Throws KubeConfigError with a one-line reason when it cannot work.
 */
export function loadClientConfig(opts: ClientConfigOptions): ClientConfig {
  const kc = new ClientConfig();
  const root = opts.inClusterRoot ?? '';
  let parsed: Parsed;
  if (opts.kubeconfig !== undefined) {
    let text: string;
    try {
      text = readFileSync(opts.kubeconfig, 'utf8');
    } catch (err) {
      fail(`kubeconfig ${opts.kubeconfig}: cannot read it: ${(err as Error).message}`);
    }
    try {
      parsed = parseKubeconfig(text, dirname(opts.kubeconfig));
    } catch (err) {
      fail(`kubeconfig ${opts.kubeconfig}: ${(err as Error).message}`);
    }
    kc.source = 'kubeconfig';
  } else if (opts.inCluster === true) {
    parsed = inClusterConfig(root);
    kc.source = 'in-cluster';
  } else {
    const files = (process.env['KUBECONFIG'] ?? '').split(delimiter).filter((f) => f !== '');
    const home = homeDir();
    const homeConfig = home === undefined ? undefined : join(home, '.kube', 'config');
    if (files.length > 0) {
      try {
        parsed = parseKubeconfigFile(files[0]!);
        for (const f of files.slice(1)) merge(parsed, parseKubeconfigFile(f));
      } catch (err) {
        fail(`kubeconfig: ${(err as Error).message}`);
      }
    } else if (homeConfig !== undefined && existsSync(homeConfig)) {
      try {
        parsed = parseKubeconfigFile(homeConfig);
      } catch (err) {
        fail(`kubeconfig: ${(err as Error).message}`);
      }
    } else if (existsSync(`${SERVICE_ACCOUNT_DIR}/token`)) {
      parsed = inClusterConfig('');
    } else {
      fail('no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a pod: give --kubeconfig or --in-cluster');
    }
    const ctx = parsed.contexts.find((c) => c.name === parsed.currentContext);
    const server = ctx === undefined ? undefined : parsed.clusters.find((c) => c.name === ctx.cluster)?.server;
    if (server === undefined || server === 'http://localhost:8080') {
      fail('no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a pod: give --kubeconfig or --in-cluster');
    }
  }
  kc.clusters = parsed.clusters;
  kc.users = parsed.users;
  kc.contexts = parsed.contexts;
  kc.currentContext = parsed.currentContext ?? '';
  for (const [name, tf] of parsed.tokenFiles) {
    kc.tokenFiles.set(name, { file: new TokenFile(tf.path), fallback: tf.token });
  }
  if (opts.context !== undefined) {
    if (kc.getContextObject(opts.context) === null) {
      const known = kc.getContexts().map((c) => c.name);
      fail(`context "${opts.context}" is not in the kubeconfig (contexts: ${known.join(', ') || 'none'})`);
    }
    kc.setCurrentContext(opts.context);
  }
  if (kc.getCurrentCluster() === null) {
    fail(`kubeconfig: the current context "${kc.getCurrentContext()}" names no cluster`);
  }
  kc.clusters = normaliseClusters(kc.clusters);
  // Users with a token file: drop what would override it (a static `token`, kept as the
  // fallback while the file is unreadable; an auth-provider).
  kc.users = kc.users.map((u: User) => {
    if (!kc.tokenFiles.has(u.name)) return u;
    const { token: _t, authProvider: _a, ...rest } = u;
    return rest as User;
  });
  kc.preload();
  return kc;
}
