/**
 * Command line: `clusterdns serve [...]` and `clusterdns ipam [...]`. Flags are a
 * public contract (issue #2): add freely, never rename or drop.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { parseArgs } from 'node:util';
import { isIPv6 } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import cluster from 'node:cluster';
import { runWorker, startProxyNode, startServer, syncedSources, type HostPort, type KubeOptions } from './app.js';
import type { Logger } from 'pino';
import type { ProxyMode } from './proxy/service.js';
import { applyMemoryProfile } from './ops/memory.js';
import { ConfigError, DEFAULT_CONFIG, findConfigFile, loadConfigFile, type Config } from './config.js';
import { createLogger, type LogLevel } from './log.js';
import { ListenError } from './server/listen.js';
import { runIpam } from './registry/cli.js';

const USAGE = `usage: clusterdns serve [--config FILE] [--zones DIR] [--dns HOST:PORT]... [--http HOST:PORT]
                       [--upstream HOST:PORT]... [--no-upstream] [--workers N] [--log-level LEVEL]
                       [--kubeconfig FILE [--context NAME] | --in-cluster] [--domain NAME] [--state DIR]
                       [--proxy userspace|iptables|nftables [--node-name NAME]]

  --config FILE        YAML configuration (see README "Configuration"); default
                       ./clusterdns.yaml when it exists (every command reads the same)
  --zones DIR          embedded cluster: DIR/<cluster-domain>/ holds manifests (default ./zones)
  --dns HOST:PORT      DNS address, UDP and TCP; repeatable (default 127.0.0.1:1053)
  --http HOST:PORT     health and readiness endpoint (default 127.0.0.1:8080)
  --upstream HOST:PORT upstream resolver for other names; repeatable
  --no-upstream        answer REFUSED for names outside the cluster zones
  --workers N          DNS worker processes sharing the sockets (default 1: this process)
  --kubeconfig FILE    watch the cluster through the Kubernetes API with this kubeconfig
  --context NAME       kubeconfig context (default: its current context)
  --in-cluster         use the pod's service account (automatic when neither --zones nor
                       --kubeconfig is given and KUBERNETES_SERVICE_HOST is set)
  --domain NAME        cluster domain served from the API (default cluster.local)
  --state DIR          embedded registry state (default: .clusterdns/ next to the zones folder)
  --proxy MODE         also make the ClusterIPs carry traffic on this host, as kube-proxy
                       does: userspace, iptables or nftables (needs CAP_NET_ADMIN)
  --node-name NAME     this node, for internalTrafficPolicy: Local (default: config
                       proxy.nodeName, $NODE_NAME, the hostname)
  --log-level LEVEL    fatal, error, warn, info (default), debug, trace, silent

       clusterdns --version | version

  Print the clusterdns version and the Node.js version it runs on.

       clusterdns ipam [--zones DIR] [--state DIR] [--config FILE] [--json]

  Print the embedded registry's address usage per service CIDR and NodePort range and
  every anomaly (refused services, conflicts, refused endpoint addresses, repair
  findings); read-only. --json prints one JSON document.

       clusterdns proxy --mode userspace|iptables|nftables [--zones DIR | --kubeconfig FILE
                       [--context NAME] | --in-cluster] [--config FILE] [--state DIR]
                       [--domain NAME] [--node-name NAME] [--http HOST:PORT] [--keep-rules]
                       [--log-level LEVEL]
       clusterdns proxy --cleanup

  The service proxy alone (a node agent in place of kube-proxy; no DNS listener). Rules
  go into this network namespace and need CAP_NET_ADMIN; on SIGTERM/SIGINT everything
  installed is removed. --http (default 127.0.0.1:10256) serves /healthz, /readyz (first
  sync applied) and /metrics. --keep-rules (iptables, nftables) leaves the rules in place
  on stop, as kube-proxy does, so a restart (a DaemonSet rollout) does not cut the node's
  Service traffic; the next start takes them over. --cleanup removes what any mode left
  behind and exits.

       clusterdns rules --mode iptables|nftables [--zones DIR | --kubeconfig FILE ...]
                       [--config FILE] [--state DIR] [--domain NAME] [--node-name NAME]

  Print the ruleset for the current view and exit, applying nothing: iptables-restore
  input (IPv4, then ip6tables-restore input after a "# ip6tables-restore" line) or
  nft -f input (both tables).`;

class UsageError extends Error {}

/** Kept here so `serve --help` does not load the proxy modules. */
const PROXY_MODE_NAMES = ['userspace', 'iptables', 'nftables'];

export function parseHostPort(s: string, flag: string, defaultPort?: number): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (m === null) {
    if (defaultPort !== undefined && (isIPv6(s) || /^[^:]+$/.test(s))) return { host: s, port: defaultPort };
    throw new UsageError(`${flag} ${s}: expected HOST:PORT (IPv6 as [ADDR]:PORT)`);
  }
  const port = Number(m[2]);
  if (port > 65535) throw new UsageError(`${flag} ${s}: port must be 0-65535`);
  return { host: m[1]!, port };
}

const SOURCE_OPTIONS = {
  config: { type: 'string' },
  zones: { type: 'string' },
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  'in-cluster': { type: 'boolean', default: false },
  domain: { type: 'string', default: 'cluster.local' },
  state: { type: 'string' },
  'node-name': { type: 'string' },
  'log-level': { type: 'string', default: 'info' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface SourceValues {
  readonly config?: string | undefined;
  readonly zones?: string | undefined;
  readonly kubeconfig?: string | undefined;
  readonly context?: string | undefined;
  readonly 'in-cluster'?: boolean | undefined;
  readonly domain?: string | undefined;
  readonly state?: string | undefined;
  readonly 'log-level'?: string | undefined;
}

/** The source flags `serve`, `proxy` and `rules` share, checked. */
function sourceFlags(values: SourceValues): {
  config: Config;
  /** The configuration file read (`--config`, or ./clusterdns.yaml found); undefined: defaults. */
  configPath: string | undefined;
  configImplicit: boolean;
  zonesDir: string;
  stateDir: string;
  kube: KubeOptions | undefined;
  level: LogLevel;
} {
  const level = (values['log-level'] ?? 'info') as LogLevel;
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level)) {
    throw new UsageError(`--log-level ${level}: must be one of fatal, error, warn, info, debug, trace, silent`);
  }
  const { path: configPath, implicit: configImplicit } = findConfigFile(values.config);
  const config: Config = configPath !== undefined ? loadConfigFile(configPath) : DEFAULT_CONFIG;
  const inClusterEnv = process.env.KUBERNETES_SERVICE_HOST !== undefined && process.env.KUBERNETES_SERVICE_HOST !== '';
  const useKube = values.kubeconfig !== undefined || values['in-cluster'] === true || (values.zones === undefined && inClusterEnv);
  if (useKube && values.zones !== undefined) throw new UsageError('--zones and --kubeconfig/--in-cluster are two different sources; give one');
  if (values.context !== undefined && values.kubeconfig === undefined) throw new UsageError('--context needs --kubeconfig');
  const rawDomain = values.domain ?? 'cluster.local';
  const domain = rawDomain.toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(domain)) throw new UsageError(`--domain ${rawDomain}: not a valid domain name`);
  const zonesDir = resolve(values.zones ?? './zones');
  const stateDir = resolve(values.state ?? join(dirname(zonesDir), '.clusterdns'));
  const kube = useKube ? { kubeconfig: values.kubeconfig, context: values.context, inCluster: values.kubeconfig === undefined, domain } : undefined;
  return { config, configPath, configImplicit, zonesDir, stateDir, kube, level };
}

/** The first log line of a command: which configuration it runs with, and why that one. */
function logConfig(log: Logger, path: string | undefined, implicit: boolean): void {
  if (path === undefined) log.info('configuration: defaults (no --config, no ./clusterdns.yaml)');
  else log.info({ file: path }, implicit ? `configuration: ${path} (found in the current folder; --config names another)` : `configuration: ${path}`);
}

/** `clusterdns --version`: ours from package.json, and the runtime's. */
function versionLine(): string {
  let version = 'unknown';
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    if (typeof pkg.version === 'string') version = pkg.version;
  } catch {
    // A packaging without package.json still prints the runtime.
  }
  return `clusterdns ${version} (node ${process.version})`;
}

function proxyMode(v: string | undefined, flag: string, allowed: readonly string[]): ProxyMode {
  if (v === undefined || !allowed.includes(v)) throw new UsageError(`${flag} ${v ?? ''}: must be one of ${allowed.join(', ')}`.replace(`${flag} :`, `${flag}:`));
  return v as ProxyMode;
}

/** Stop on SIGTERM/SIGINT: `close`, then exit 0 (1 when closing failed). */
function onSignals(log: Logger, close: (sig: string) => Promise<void>): void {
  let closing = false;
  const shutdown = (sig: string): void => {
    if (closing) return;
    closing = true;
    log.info({ signal: sig }, 'shutting down');
    close(sig).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ error: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

async function proxyCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...SOURCE_OPTIONS,
      mode: { type: 'string' },
      http: { type: 'string', default: '127.0.0.1:10256' },
      cleanup: { type: 'boolean', default: false },
      'keep-rules': { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const { config, configPath, configImplicit, zonesDir, stateDir, kube, level } = sourceFlags(values);
  const log = createLogger(level);
  logConfig(log, configPath, configImplicit);
  if (values.cleanup) {
    const { cleanupAll } = await import('./proxy/service.js');
    const errors = await cleanupAll(config, log);
    process.stdout.write(errors.length === 0 ? 'clusterdns: proxy rules removed\n' : `clusterdns: cleanup left ${errors.length} problem(s):\n${errors.map((e) => `  ${e}`).join('\n')}\n`);
    return errors.length === 0 ? 0 : 1;
  }
  const mode = proxyMode(values.mode, '--mode', PROXY_MODE_NAMES);
  const keep = values['keep-rules'] === true;
  if (keep && mode === 'userspace') throw new UsageError('--keep-rules is for the iptables and nftables modes: userspace rules point at this process\'s own sockets');
  applyMemoryProfile(config.memory);
  const http = values.http === '' ? undefined : parseHostPort(values.http!, '--http');
  const node = await startProxyNode({ config, zonesDir, stateDir, kube, http, proxy: { mode, nodeName: values['node-name'] } }, log);
  process.stdout.write(
    `clusterdns proxy (${mode}) on node ${node.proxy.nodeName}, ${kube === undefined ? `zones from ${zonesDir}` : 'Kubernetes API'}` +
      `${node.http !== undefined ? `, http on ${http!.host}:${node.http.port}` : ''}\n`,
  );
  onSignals(log, () => node.close(!keep));
  return -1;
}

async function rulesCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...SOURCE_OPTIONS, mode: { type: 'string' }, 'log-level': { type: 'string', default: 'warn' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const mode = proxyMode(values.mode, '--mode', ['iptables', 'nftables']) as 'iptables' | 'nftables';
  const { config, configPath, configImplicit, zonesDir, stateDir, kube, level } = sourceFlags(values);
  // Logs go to stderr here: stdout is the ruleset.
  const log = createLogger(level, 2);
  logConfig(log, configPath, configImplicit);
  const sources = await syncedSources({ config, zonesDir, stateDir, kube }, log);
  try {
    const { renderRules } = await import('./proxy/render.js');
    process.stdout.write(renderRules(mode, sources, config, { nodeName: values['node-name'], serviceCIDRsKnown: kube === undefined }));
  } finally {
    await sources.stop();
  }
  return 0;
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      zones: { type: 'string' },
      dns: { type: 'string', multiple: true },
      http: { type: 'string', default: '127.0.0.1:8080' },
      upstream: { type: 'string', multiple: true },
      'no-upstream': { type: 'boolean', default: false },
      workers: { type: 'string', default: '1' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      'in-cluster': { type: 'boolean', default: false },
      domain: { type: 'string', default: 'cluster.local' },
      state: { type: 'string' },
      'log-level': { type: 'string', default: 'info' },
      proxy: { type: 'string' },
      'node-name': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const { config, configPath: foundConfig, configImplicit, zonesDir, stateDir, kube, level } = sourceFlags(values);
  const proxy = values.proxy === undefined ? undefined : { mode: proxyMode(values.proxy, '--proxy', PROXY_MODE_NAMES), nodeName: values['node-name'] };
  if (proxy === undefined && values['node-name'] !== undefined) throw new UsageError('--node-name needs --proxy');
  // Before any cluster data is loaded (src/ops/memory.ts).
  applyMemoryProfile(config.memory);
  const dns = (values.dns ?? ['127.0.0.1:1053']).map((s) => parseHostPort(s, '--dns'));
  const http = parseHostPort(values.http!, '--http');
  const upstreams = (values.upstream ?? []).map((s) => parseHostPort(s, '--upstream', 53));
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new UsageError(`--workers ${values.workers}: must be a whole number from 1 to 64`);
  process.env.CLUSTERDNS_LOG_LEVEL = level;
  const log = createLogger(level);
  logConfig(log, foundConfig, configImplicit);
  log.info({ memory: config.memory }, 'memory profile');
  const server = await startServer(
    { config, zonesDir, stateDir, kube, dns, http, upstreams, noUpstream: values['no-upstream']!, workers, proxy },
    log,
  );
  const zones = server.zoneNames();
  const first = server.addresses[0]!;
  const portFlag = first.port === 53 ? '' : ` -p ${first.port}`;
  const zone = zones[0] ?? 'cluster.local';
  process.stdout.write(
    `clusterdns serving ${zones.join(', ') || '(no zones yet)'} on ` +
      server.addresses.map((l) => `${isIPv6(l.host) ? `[${l.host}]` : l.host}:${l.port}`).join(', ') +
      ` (udp+tcp)${workers > 1 ? ` with ${workers} workers` : ''}${server.http !== undefined ? `, http on ${http.host}:${server.http.port}` : ''}` +
      `${proxy !== undefined ? `, ${proxy.mode} proxy on node ${server.proxy?.nodeName ?? ''}` : ''}\n` +
      `try: dig @${first.host}${portFlag} kubernetes.default.svc.${zone}\n`,
  );
  let closing = false;
  const shutdown = (sig: string): void => {
    if (closing) return;
    closing = true;
    log.info({ signal: sig }, 'shutting down');
    // SIGTERM (Kubernetes) lame-ducks so in-flight clients move on; SIGINT (a person) stops now.
    (sig === 'SIGTERM' ? server.shutdown() : server.close()).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  // Reload: SIGHUP, or the config file changing (a ConfigMap update swaps a symlink,
  // which watchFile sees because it stats the path). A bad new file is rejected and
  // the running configuration stays.
  const configPath = foundConfig;
  let lastText = '';
  const reload = (why: string): void => {
    if (configPath === undefined) {
      log.info({ why }, 'reload requested; no --config file, nothing to reload');
      return;
    }
    try {
      const next = loadConfigFile(configPath);
      server.reload(next);
      log.info({ why, file: configPath }, 'reloaded');
    } catch (err) {
      log.error({ why, file: configPath, error: (err as Error).message }, 'new configuration rejected; keeping the running one');
    }
  };
  process.on('SIGHUP', () => reload('SIGHUP'));
  if (configPath !== undefined) {
    watchFile(configPath, { interval: 1000, persistent: false }, (cur, prev) => {
      if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size && cur.ino === prev.ino) return;
      let text = '';
      try {
        text = readFileSync(configPath, 'utf8');
      } catch {
        // Missing for a moment during a swap: the next change will tell.
        return;
      }
      if (text === lastText) return;
      lastText = text;
      reload('config file changed');
    });
    try {
      lastText = readFileSync(configPath, 'utf8');
    } catch {
      lastText = '';
    }
    process.once('exit', () => unwatchFile(configPath));
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve':
        await serve(rest);
        return -1; // keep running
      case 'ipam':
        return await runIpam(rest);
      case 'proxy':
        return await proxyCommand(rest);
      case 'rules':
        return await rulesCommand(rest);
      case 'version':
      case '--version':
      case '-V':
        process.stdout.write(`${versionLine()}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"; commands: serve, proxy, rules, ipam, version`);
    }
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (err instanceof UsageError || err instanceof ConfigError || err instanceof ListenError || code === 'EKUBECONFIG' || code === 'EPROXYPERM' || code === 'EPROXYTOOL') {
      process.stderr.write(`clusterdns: ${(err as Error).message}\n`);
      return 2;
    }
    if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`clusterdns: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`clusterdns: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

if (cluster.isWorker && process.env.CLUSTERDNS_WORKER === '1') {
  runWorker(createLogger((process.env.CLUSTERDNS_LOG_LEVEL as LogLevel | undefined) ?? 'info'));
} else {
  const code = await main(process.argv.slice(2));
  if (code >= 0) process.exit(code);
}
