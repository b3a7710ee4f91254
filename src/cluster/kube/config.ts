/**
 * Client configuration of the Kubernetes API source, built on @kubernetes/client-node
 * 1.4.0's KubeConfig (kubeconfig files, contexts, in-cluster service account, client
 * certificates, exec plugins, proxies), with the fixes 1.4.0 needs to run for months:
 *
 *  - **One agent, not one per request.** `KubeConfig.createAgent()` makes a new
 *    http(s).Agent for every request and every watch reconnect (kubernetes-client/
 *    javascript#2893, fixed only in 2.0). We keep the agent it makes and hand that one out
 *    again for as long as the TLS material is the same, so TLS settings come from
 *    client-node itself and the sockets of every request live in one pool that `destroy()`
 *    empties at shutdown. client-node reads CA, certificate and key files on every request:
 *    when they change on disk (a rotated client certificate, a new CA bundle) the next
 *    request gets the fresh agent, and the old one is left to its open requests.
 *  - **Abandonable requests.** `Watch.watch()` returns its AbortController only once the
 *    response headers arrive, so a watch whose server never answers cannot be aborted
 *    through it. Each list/watch loop talks through its own `Channel`, whose agent view
 *    records every ClientRequest it starts; `abortAll()` destroys them, headers or not.
 *  - **Token files that rotate.** See `token.ts`: the in-cluster token and a kubeconfig
 *    user's `tokenFile` are read by us (stat per request, re-read on change or after a
 *    401), not by client-node's 60-second FileAuth or its read-once `token-file`.
 *  - **Server URL hygiene.** A trailing `/` on `server` makes client-node request
 *    `//apis/...` (404); an `http://` server is refused unless `skipTLSVerify` is set
 *    (there is no TLS to verify: `kubectl proxy` is the usual case). Both are normalised.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, isAbsolute, join } from 'node:path';
import { KubeConfig, type Cluster, type User } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
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

type HttpsOptions = Parameters<KubeConfig['applyToHTTPSOptions']>[0];
type RequestContext = Parameters<KubeConfig['applySecurityAuthentication']>[0];
type Authenticator = Parameters<KubeConfig['addAuthenticator']>[0];
type AgentLike = http.Agent;

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
 * A KubeConfig that shares one agent across all requests and authenticates with
 * rotating token files. Build it with `loadClientConfig()`.
 */
export class ClientConfig extends KubeConfig {
  /** Token files by kubeconfig user name. */
  readonly tokenFiles = new Map<string, TokenSource>();
  source: ClientDescription['source'] = 'default';
  #agent: AgentLike | undefined;
  /** Fingerprint of the TLS material #agent was made with. */
  #agentKey = '';
  /** Agents replaced after a TLS material change, kept until shutdown in case requests still use them. */
  readonly #retired = new Set<AgentLike>();
  #closed = false;

  constructor() {
    super();
    const auth: Authenticator = {
      isAuthProvider: (user: User) => this.tokenFiles.has(user.name),
      applyAuthentication: async (user: User, opts: HttpsOptions) => {
        const src = this.tokenFiles.get(user.name);
        const token = src?.file.get() ?? src?.fallback;
        if (token === undefined) return;
        const o = opts as { headers?: Record<string, unknown> };
        o.headers ??= {};
        o.headers['Authorization'] = `Bearer ${token}`;
      },
    };
    this.addAuthenticator(auth);
  }

  /** Auth and TLS options for one request, with the shared agent. */
  override async applyToHTTPSOptions(opts: HttpsOptions): Promise<void> {
    if (this.#closed) throw new Error('Kubernetes client is closed');
    await super.applyToHTTPSOptions(opts);
    const o = opts as { agent?: unknown };
    // client-node just built a fresh agent (createAgent). Keep the current one while the
    // TLS material is unchanged; the fresh one has never carried a socket and is dropped.
    const key = tlsKey(opts);
    if (o.agent instanceof http.Agent && (this.#agent === undefined || key !== this.#agentKey)) {
      if (this.#agent !== undefined) this.#retire(this.#agent);
      this.#agent = o.agent;
      this.#agentKey = key;
    }
    if (this.#agent !== undefined) o.agent = this.#agent;
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

  /** The same for the generated API clients (makeApiClient), should anyone use them. */
  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    if (this.#closed) throw new Error('Kubernetes client is closed');
    await super.applySecurityAuthentication(context);
    if (this.#agent !== undefined) context.setAgent(this.#agent);
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

/**
 * The requests of one list/watch loop. Its KubeConfig (for client-node's `Watch`) and
 * its `applyToHTTPSOptions` (for our list calls) use the shared agent through a view
 * that records each ClientRequest, so `abortAll()` can destroy a request that never got
 * its response headers — the one thing 1.4.0's Watch gives no handle for.
 */
export class Channel {
  readonly config: KubeConfig;
  readonly #parent: ClientConfig;
  readonly #inflight = new Set<http.ClientRequest>();
  #base: AgentLike | undefined;
  #view: AgentLike | undefined;

  constructor(parent: ClientConfig) {
    this.#parent = parent;
    this.config = new ChannelConfig(parent, this);
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

class ChannelConfig extends KubeConfig {
  readonly #channel: Channel;

  constructor(parent: ClientConfig, channel: Channel) {
    super();
    this.#channel = channel;
    this.loadFromOptions({
      clusters: parent.clusters,
      users: parent.users,
      contexts: parent.contexts,
      currentContext: parent.currentContext,
    });
  }

  override async applyToHTTPSOptions(opts: HttpsOptions): Promise<void> {
    await this.#channel.applyToHTTPSOptions(opts);
  }

  override async applySecurityAuthentication(): Promise<void> {
    throw new Error('use the parent ClientConfig for generated API clients');
  }
}

/** What makes two agents different: the TLS options client-node put in the request options. */
function tlsKey(opts: HttpsOptions): string {
  const o = opts as Record<string, unknown>;
  const h = createHash('sha256');
  for (const k of ['ca', 'cert', 'key', 'pfx', 'passphrase', 'servername', 'rejectUnauthorized']) {
    const v = o[k];
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

/** Strip trailing slashes; http:// needs skipTLSVerify in client-node (there is no TLS). */
function normaliseClusters(kc: KubeConfig): void {
  kc.clusters = kc.clusters.map((c: Cluster) => {
    const server = c.server.replace(/\/+$/, '');
    const plain = server.startsWith('http://');
    return { ...c, server, skipTLSVerify: plain ? true : c.skipTLSVerify };
  });
}

interface RawUser {
  name?: unknown;
  user?: { tokenFile?: unknown; 'token-file'?: unknown; token?: unknown } | null;
}

/** Kubeconfig users with a token file (client-go's `tokenFile`; client-node's `token-file`). */
function tokenFilesOf(text: string, dir: string): Map<string, { path: string; token: string | undefined }> {
  const out = new Map<string, { path: string; token: string | undefined }>();
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch {
    return out; // client-node already parsed it; a YAML it accepts but we do not is not our business.
  }
  const users = (doc as { users?: unknown } | null)?.users;
  if (!Array.isArray(users)) return out;
  for (const u of users as RawUser[]) {
    const file = u.user?.tokenFile ?? u.user?.['token-file'];
    if (typeof u.name !== 'string' || typeof file !== 'string' || file === '') continue;
    const token = typeof u.user?.token === 'string' && u.user.token !== '' ? u.user.token : undefined;
    out.set(u.name, { path: isAbsolute(file) ? file : join(dir, file), token });
  }
  return out;
}

/**
 * Load the client configuration: a kubeconfig file (and context), or the in-cluster
 * service account, or client-node's default search ($KUBECONFIG, ~/.kube/config,
 * in-cluster). Throws KubeConfigError with a one-line reason when it cannot work.
 */
export function loadClientConfig(opts: ClientConfigOptions): ClientConfig {
  const kc = new ClientConfig();
  const root = opts.inClusterRoot ?? '';
  if (opts.kubeconfig !== undefined) {
    let text: string;
    try {
      text = readFileSync(opts.kubeconfig, 'utf8');
    } catch (err) {
      fail(`kubeconfig ${opts.kubeconfig}: cannot read it: ${(err as Error).message}`);
    }
    try {
      kc.loadFromFile(opts.kubeconfig);
    } catch (err) {
      fail(`kubeconfig ${opts.kubeconfig}: ${(err as Error).message}`);
    }
    kc.source = 'kubeconfig';
    for (const [name, tf] of tokenFilesOf(text, dirname(opts.kubeconfig))) {
      kc.tokenFiles.set(name, { file: new TokenFile(tf.path), fallback: tf.token });
    }
  } else if (opts.inCluster === true) {
    const env = process.env;
    if (!env['KUBERNETES_SERVICE_HOST'] || !env['KUBERNETES_SERVICE_PORT']) {
      fail('in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod?)');
    }
    const tokenPath = `${root}${SERVICE_ACCOUNT_DIR}/token`;
    const caPath = `${root}${SERVICE_ACCOUNT_DIR}/ca.crt`;
    for (const p of [tokenPath, caPath]) if (!existsSync(p)) fail(`in-cluster: ${p} does not exist (no service account mounted?)`);
    kc.loadFromCluster(root);
    kc.source = 'in-cluster';
    const user = kc.getCurrentUser();
    if (user !== null) {
      kc.tokenFiles.set(user.name, { file: new TokenFile(tokenPath), fallback: undefined });
    }
  } else {
    try {
      kc.loadFromDefault();
    } catch (err) {
      fail(`kubeconfig: ${(err as Error).message}`);
    }
    const server = kc.getCurrentCluster()?.server;
    if (server === undefined || server === 'http://localhost:8080') {
      fail('no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a pod: give --kubeconfig or --in-cluster');
    }
  }
  if (opts.context !== undefined) {
    if (kc.getContextObject(opts.context) === null) {
      const known = kc.getContexts().map((c) => c.name);
      fail(`context "${opts.context}" is not in the kubeconfig (contexts: ${known.join(', ') || 'none'})`);
    }
    kc.setCurrentContext(opts.context);
  }
  if (kc.getCurrentCluster() === null) {
    fail(`kubeconfig: the current context "${kc.getCurrentContext() ?? ''}" names no cluster`);
  }
  normaliseClusters(kc);
  // Users with a token file: drop what would override it (the read-once `token-file`
  // content client-node put in `token`, the in-cluster FileAuth provider).
  kc.users = kc.users.map((u: User) => {
    if (!kc.tokenFiles.has(u.name)) return u;
    const { token: _t, authProvider: _a, ...rest } = u;
    return rest as User;
  });
  return kc;
}
