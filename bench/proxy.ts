/**
 * Service proxy benchmark (issue 11, section 4): `npm run bench -- --only proxy`, or alone:
 *
 *   node --import tsx bench/proxy.ts [--quick] [--rounds N] [--duration S] [--contenders LIST] ...
 *
 * Network namespaces (bench/lib/netns.ts): a node, 3 backend pods each running nginx (one
 * worker) with a 100-byte answer at /small and a large file at /big, and a client pod routed
 * through the node. The load generator is wrk in the client. Contenders, side by side:
 *
 *   direct      client → one backend's address (the floor: no proxy at all)
 *   haproxy     HAProxy `mode tcp`, `nbthread 1`, roundrobin over the 3 backends, no splice,
 *               listening on an address of the node the client routes to
 *   userspace   `clusterdns proxy --mode userspace` in the node, client → ClusterIP:80
 *   iptables    `clusterdns proxy --mode iptables`, same Service (kernel path)
 *   nftables    `clusterdns proxy --mode nftables`, same Service (kernel path)
 *   (haproxy-splice, not by default: the same HAProxy with `option splice-auto`)
 *
 * The clusterdns modes read a generated zones dir: a Service `echo` (ClusterIP 10.96.100.10, port
 * 80, no selector) with an EndpointSlice of the 3 backends, and `echo-one` (10.96.100.11) whose only
 * endpoint is be1. Only one contender runs at a time (the modes' rules would intercept each other's
 * ClusterIP); each is started, checked (it answers, and from which backends), warmed up (the
 * userspace proxies), measured and stopped, in rounds whose order rotates.
 *
 * The rules modes are measured twice per start: through `echo` (3 endpoints, as the proxies) and
 * through `echo-one` (the same single backend as direct). Their goal ("within 10% of direct") uses
 * the latter: on a small machine, spreading the load over 3 nginx processes costs more than the
 * DNAT does (measured: DNAT to one backend ≈ 0.95 × direct, random over 3 ≈ 0.63 × on 2 vCPUs), so
 * only the same backend isolates what the kernel path adds.
 *
 * Per contender and round (each run `--duration` seconds):
 *   kept-alive  `wrk -t1 -c50 --latency /small`: requests/s, p50/p99 latency
 *   new conns   the same with `-H 'Connection: close'` (one request per connection): connections/s,
 *               CPU per connection: utime+stime of the proxy process (/proc/<pid>/stat) over the
 *               run divided by the connections made, and the whole machine's busy time likewise
 *   bulk        `wrk -t1 -c4 /big` (16 MiB, kept alive): Gbit/s
 *
 * Prints a table per metric (median over rounds, min-max, every round), the ratios the issue's
 * goals need, and whether they are met. With $BENCH_RESULT_JSON set, the results go there as JSON
 * (with a `markdown` field for the README); bench/run.ts saves them as bench/results/<date>-proxy.json.
 * BENCH_QUICK=1 or --quick: 1 round of 3 s. Every run is bounded (wrk's -d plus a margin), the whole
 * step by --timeout; every child is killed and every namespace deleted at the end, on failure and
 * on SIGINT/SIGTERM. Needs root (network namespaces).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { fmtInt, machineFacts, mdTable, median, round2, table, type MachineFacts } from './lib/machine.js';
import { CLIENT_IP, createTopology, NODE_BACKEND_IP, NODE_VIP, sweepStale, type Topology } from './lib/netns.js';
import { CLK_TCK, cpuTicks, groupPids, installCleanup, run, sleep, start, stopAll, type Child } from './lib/proc.js';
import { tailBuffer } from './lib/servers.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLUSTER_IP = '10.96.100.10';
/** A second Service with one endpoint (be1): the rules modes' path to the same backend as direct. */
const CLUSTER_IP_ONE = '10.96.100.11';
const SERVICE_CIDR = '10.96.0.0/12';
const BACKENDS = 3;
const SMALL_BYTES = 100;

const CONTENDERS = ['direct', 'haproxy', 'userspace', 'iptables', 'nftables', 'haproxy-splice'] as const;
type ContenderId = (typeof CONTENDERS)[number];
const DEFAULT_CONTENDERS: ContenderId[] = ['direct', 'haproxy', 'userspace', 'iptables', 'nftables'];
/** What is measured: a contender, or a rules mode's single-endpoint Service (same process and round). */
type SeriesId = ContenderId | 'iptables-1ep' | 'nftables-1ep';
const LABEL: Record<SeriesId, string> = {
  direct: 'direct (no proxy)',
  haproxy: 'HAProxy (1 thread, no splice)',
  userspace: 'clusterdns userspace',
  iptables: 'clusterdns iptables',
  'iptables-1ep': 'clusterdns iptables, 1 endpoint',
  nftables: 'clusterdns nftables',
  'nftables-1ep': 'clusterdns nftables, 1 endpoint',
  'haproxy-splice': 'HAProxy (1 thread, splice-auto)',
};
const isRules = (id: ContenderId): id is 'iptables' | 'nftables' => id === 'iptables' || id === 'nftables';

const USAGE = `usage: node --import tsx bench/proxy.ts [flags]    (or: npm run bench -- --only proxy)

  --contenders LIST   comma-separated, in order (default ${DEFAULT_CONTENDERS.join(',')};
                      also: haproxy-splice)
  --rounds N          interleaved rounds (default 5; --quick 1)
  --duration S        each wrk run (default 3; --quick 3)
  --warmup S          unrecorded kept-alive run after each start of a userspace proxy (clusterdns
                      userspace, HAProxy) (default 1)
  --connections N     wrk -c for kept-alive and new connections (default 50)
  --threads N         wrk -t (default 1)
  --bulk-connections N  wrk -c for the bulk download (default 4)
  --bulk-mib N        size of the bulk file, MiB (default 16)
  --no-single-endpoint  leave out the rules modes' second Service (one endpoint, be1: the same
                      backend as direct; their goal ratios then use the 3-endpoint Service)
  --tsx               run clusterdns as \`node --import tsx src/main.ts\` (default: bin/clusterdns.js,
                      which runs dist/ when \`npm run build\` is fresh)
  --log-level LEVEL   clusterdns --log-level (default warn)
  --timeout S         stop the whole step after S seconds (default 900)
  --keep              keep the scratch directory (configs, logs)
  --quick             1 round of 3 s (also BENCH_QUICK=1)
  -h, --help          this text`;

// ---------------------------------------------------------------- options

const { values: args } = parseArgs({
  options: {
    contenders: { type: 'string' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string', default: '50' },
    threads: { type: 'string', default: '1' },
    'bulk-connections': { type: 'string', default: '4' },
    'bulk-mib': { type: 'string', default: '16' },
    'no-single-endpoint': { type: 'boolean', default: false },
    tsx: { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'warn' },
    timeout: { type: 'string', default: '900' },
    keep: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: process.env['BENCH_QUICK'] === '1' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
  allowPositionals: false,
});

function int(v: string | undefined, flag: string, min: number, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} ${v}: expected an integer ${min}-${max}`);
  return n;
}

interface Options {
  contenders: ContenderId[];
  rounds: number;
  durationS: number;
  warmupS: number;
  connections: number;
  threads: number;
  bulkConnections: number;
  bulkMiB: number;
  singleEndpoint: boolean;
  tsx: boolean;
  logLevel: string;
  timeoutS: number;
  quick: boolean;
  keep: boolean;
}

function options(): Options {
  const quick = args.quick === true;
  const contenders: ContenderId[] = [];
  for (const c of (args.contenders ?? DEFAULT_CONTENDERS.join(',')).split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    if (!(CONTENDERS as readonly string[]).includes(c)) throw new Error(`--contenders ${c}: unknown (known: ${CONTENDERS.join(', ')})`);
    if (!contenders.includes(c as ContenderId)) contenders.push(c as ContenderId);
  }
  if (contenders.length === 0) throw new Error('--contenders: none given');
  return {
    contenders,
    rounds: int(args.rounds ?? (quick ? '1' : '5'), '--rounds', 1, 50),
    durationS: int(args.duration ?? '3', '--duration', 1, 120),
    warmupS: int(args.warmup ?? '1', '--warmup', 0, 60),
    connections: int(args.connections, '--connections', 1, 10_000),
    threads: int(args.threads, '--threads', 1, 64),
    bulkConnections: int(args['bulk-connections'], '--bulk-connections', 1, 1000),
    bulkMiB: int(args['bulk-mib'], '--bulk-mib', 1, 4096),
    singleEndpoint: args['no-single-endpoint'] !== true,
    tsx: args.tsx === true,
    logLevel: args['log-level']!,
    timeoutS: int(args.timeout, '--timeout', 10, 24 * 3600),
    quick,
    keep: args.keep === true,
  };
}

const log = (msg: string): void => void process.stdout.write(`  ${msg}\n`);

// ---------------------------------------------------------------- tools

function version(cmd: string, argv: string[], re: RegExp): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 5000 });
  if (r.error !== undefined) return 'missing';
  return re.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? 'unknown';
}

export interface ToolVersions {
  nginx: string;
  haproxy: string;
  wrk: string;
  curl: string;
  iproute2: string;
  iptables: string;
  nft: string;
  conntrack: string;
}

function toolVersions(): ToolVersions {
  return {
    nginx: version('nginx', ['-v'], /nginx\/(\S+)/),
    haproxy: version('haproxy', ['-v'], /version\s+(\S+)/i),
    wrk: version('wrk', ['-v'], /wrk\s+(\S+)/),
    curl: version('curl', ['--version'], /curl\s+(\S+)/),
    iproute2: version('ip', ['-V'], /(iproute2-[\w.]+|\d{6})/),
    iptables: version('iptables', ['-V'], /v(\S+\s*\(?[\w-]*\)?)/),
    nft: version('nft', ['-v'], /v(\S+)/),
    conntrack: version('conntrack', ['--version'], /v(\S+)/),
  };
}

function onPath(cmd: string): boolean {
  return (process.env['PATH'] ?? '').split(':').some((d) => d !== '' && existsSync(join(d, cmd)));
}

/** What `node bin/clusterdns.js` runs (its own rule: dist/ when newer than every source file). */
function clusterdnsRuns(tsx: boolean): string {
  if (tsx) return 'node --import tsx src/main.ts';
  const built = join(ROOT, 'dist', 'main.js');
  const newest = (dir: string): number => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return t;
  };
  const fresh = existsSync(built) && statSync(built).mtimeMs >= newest(join(ROOT, 'src'));
  return fresh ? 'node bin/clusterdns.js (compiled dist/)' : 'node bin/clusterdns.js (sources through tsx: dist/ is missing or stale)';
}

// ---------------------------------------------------------------- CPU

/** Busy clock ticks of the whole machine (/proc/stat: all but idle and iowait). */
function machineBusyTicks(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  return total - (f[3] ?? 0) - (f[4] ?? 0);
}

// ---------------------------------------------------------------- wrk

const WRK_LUA = `-- bench/proxy.ts: exact figures from wrk's summary, one JSON line
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%.0f,"bytes":%.0f,"durationUs":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f,"mean":%.1f}\\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
`;

interface WrkOut {
  requests: number;
  bytes: number;
  durationUs: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

interface Measured {
  wrk: WrkOut;
  /** utime+stime of the proxy process(es) over the run, ticks; undefined: no proxy process. */
  proxyTicks: number | undefined;
  machineTicks: number;
  wallS: number;
}

// ---------------------------------------------------------------- samples

interface RoundSample {
  round: number;
  /** Position in the round (the order rotates). */
  slot: number;
  ok: boolean;
  error?: string;
  /** Start to first answer, ms (0 for direct). */
  readyMs?: number;
  /** Answers per backend over 6 new connections. */
  spread?: Record<string, number>;
  keepalive?: { rps: number; p50Ms: number; p99Ms: number; errors: number; proxyCpuPct?: number; machineCpuPct: number };
  newconn?: { cps: number; errors: number; proxyUsPerConn?: number; machineUsPerConn: number; proxyCpuPct?: number };
  bulk?: { gbps: number; errors: number; proxyCpuPct?: number; machineCpuPct: number };
  /** 1-minute load average when this sample started (other work on the machine). */
  load?: number;
  /** Rules or chains left in the node after the contender stopped (should be none). */
  leftovers?: string;
}

interface Running {
  target: string; // host
  pids(): number[];
  exited(): boolean;
  stop(): Promise<void>;
  tail(): string;
}

/** A selectorless Service `name` in namespace bench on port 80, and its EndpointSlice of `ips`. */
function serviceManifest(name: string, clusterIP: string, ips: readonly string[]): string[] {
  return [
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    `  name: ${name}`,
    '  namespace: bench',
    'spec:',
    '  type: ClusterIP',
    `  clusterIP: ${clusterIP}`,
    `  clusterIPs: [${clusterIP}]`,
    '  ipFamilies: [IPv4]',
    '  ports:',
    '    - name: http',
    '      port: 80',
    '      targetPort: 80',
    '      protocol: TCP',
    '---',
    'apiVersion: discovery.k8s.io/v1',
    'kind: EndpointSlice',
    'metadata:',
    `  name: ${name}-bench`,
    '  namespace: bench',
    '  labels:',
    `    kubernetes.io/service-name: ${name}`,
    'addressType: IPv4',
    'endpoints:',
    ...ips.flatMap((ip) => [`  - addresses: [${ip}]`, '    conditions: { ready: true, serving: true, terminating: false }']),
    'ports:',
    '  - { name: http, port: 80, protocol: TCP }',
  ];
}

/** The gist of a process's output on one line (for one-line failure summaries). */
function lastLines(tail: string): string {
  const l = tail
    .split('\n')
    .map((x) => x.trim())
    .filter((x) => x !== '');
  if (l.length === 0) return '(no output)';
  const hit = l.find((x) => /error|usage|unknown|cannot|denied|fatal|alert/i.test(x));
  return (hit ?? l.slice(-2).join(' | ')).slice(0, 300);
}

// ---------------------------------------------------------------- the bench

class ProxyBench {
  readonly #o: Options;
  readonly #topo: Topology;
  readonly #dir: string;
  readonly #lua: string;
  readonly #nproc: number;
  #runs = 0;
  /** One wrk command line as run, for the report. */
  readonly commands: Record<string, string> = {};

  constructor(o: Options, topo: Topology, dir: string, nproc: number) {
    this.#o = o;
    this.#topo = topo;
    this.#dir = dir;
    this.#nproc = nproc;
    this.#lua = join(dir, 'report.lua');
    writeFileSync(this.#lua, WRK_LUA);
  }

  // -- backends

  async startBackends(): Promise<void> {
    // nginx's workers run as an unprivileged user: the files must be readable for them.
    const www = join(this.#dir, 'www');
    mkdirSync(www, { recursive: true, mode: 0o755 });
    chmodSync(this.#dir, 0o755);
    writeFileSync(join(www, 'big'), Buffer.alloc(this.#o.bulkMiB << 20, 'x'));
    for (const b of this.#topo.backends) {
      const d = join(this.#dir, b.name);
      mkdirSync(join(d, 'tmp'), { recursive: true });
      const head = `${b.name} `;
      const body = `${head}${'x'.repeat(SMALL_BYTES - head.length - 1)}\n`;
      writeFileSync(
        join(d, 'nginx.conf'),
        [
          'worker_processes 1;',
          'daemon off;',
          `pid ${join(d, 'nginx.pid')};`,
          `error_log ${join(d, 'error.log')} warn;`,
          'worker_rlimit_nofile 65536;',
          'events { worker_connections 16384; multi_accept on; }',
          'http {',
          '  access_log off;',
          '  sendfile on;',
          '  tcp_nopush on;',
          '  tcp_nodelay on;',
          '  keepalive_timeout 120s;',
          '  keepalive_requests 100000000;',
          `  client_body_temp_path ${join(d, 'tmp', 'body')};`,
          `  proxy_temp_path ${join(d, 'tmp', 'proxy')};`,
          '  default_type application/octet-stream;',
          '  server {',
          '    listen 80 backlog=8192;',
          `    root ${www};`,
          `    location = /small { default_type text/plain; return 200 "${body.slice(0, -1)}\\n"; }`,
          '    location = /big { }',
          '  }',
          '}',
          '',
        ].join('\n'),
      );
      const [cmd, argv] = this.#topo.exec(b.ns, 'nginx', ['-e', join(d, 'error.log'), '-c', join(d, 'nginx.conf')]);
      const child = start(`nginx ${b.name}`, cmd, argv);
      const tail = tailBuffer(child);
      // Ready when it answers from the node.
      const deadline = Date.now() + 10_000;
      for (;;) {
        const r = await this.curl(this.#topo.node, [`http://${b.ip}/small`]);
        if (r.ok && r.body.startsWith(b.name)) {
          if (r.body.length !== SMALL_BYTES) throw new Error(`nginx in ${b.ns}: /small is ${r.body.length} bytes, expected ${SMALL_BYTES}`);
          break;
        }
        if (child.exitedAlready() || Date.now() > deadline) throw new Error(`nginx in ${b.ns} did not answer:\n${tail()}\n${r.body}`);
        await sleep(50);
      }
      const size = (await this.curl(this.#topo.node, ['-o', '/dev/null', '-w', '%{size_download}', `http://${b.ip}/big`])).body;
      if (Number(size) !== this.#o.bulkMiB << 20) throw new Error(`nginx in ${b.ns}: /big is ${size} bytes, expected ${this.#o.bulkMiB << 20}`);
    }
  }

  /** curl inside `ns`: body (or -w output) and whether it exited 0. */
  async curl(ns: string, argv: string[], timeoutS = 2): Promise<{ ok: boolean; body: string }> {
    const [cmd, a] = this.#topo.exec(ns, 'curl', ['-s', '--connect-timeout', String(Math.min(1, timeoutS)), '--max-time', String(timeoutS), ...argv]);
    const r = await run(cmd, a, { timeoutMs: (timeoutS + 3) * 1000 });
    return { ok: r.code === 0, body: r.stdout };
  }

  // -- contenders

  async startContender(id: ContenderId, round: number): Promise<Running> {
    switch (id) {
      case 'direct':
        return { target: this.#topo.backends[0]!.ip, pids: () => [], exited: () => false, stop: async () => undefined, tail: () => '' };
      case 'haproxy':
      case 'haproxy-splice':
        return this.#startHaproxy(id === 'haproxy-splice');
      case 'userspace':
      case 'iptables':
      case 'nftables':
        return this.#startClusterdns(id, round);
    }
  }

  async #startHaproxy(splice: boolean): Promise<Running> {
    const d = join(this.#dir, splice ? 'haproxy-splice' : 'haproxy');
    mkdirSync(d, { recursive: true });
    const cfg = join(d, 'haproxy.cfg');
    writeFileSync(
      cfg,
      [
        'global',
        '  nbthread 1',
        '  maxconn 4096', // fds: 2 per connection (+ pipes with splice) within a 20,000-fd limit
        'defaults',
        '  mode tcp',
        '  timeout connect 5s',
        '  timeout client 120s',
        '  timeout server 120s',
        'listen svc',
        `  bind ${NODE_VIP}:80`,
        '  balance roundrobin',
        ...(splice ? ['  option splice-auto'] : []),
        ...this.#topo.backends.map((b) => `  server ${b.name} ${b.ip}:80`),
        '',
      ].join('\n'),
    );
    const [cmd, argv] = this.#topo.exec(this.#topo.node, 'haproxy', ['-f', cfg, '-db']);
    const child = start('haproxy', cmd, argv);
    return {
      target: NODE_VIP,
      pids: () => groupPids(child.pid),
      exited: () => child.exitedAlready(),
      stop: () => child.stop('SIGTERM', 3000),
      tail: tailBuffer(child),
    };
  }

  #zones: string | undefined;

  /** zones/cluster.local/bench.yaml (one Service, one EndpointSlice) and a config file. */
  #writeZones(): { zones: string; config: string } {
    const zones = join(this.#dir, 'zones');
    const config = join(this.#dir, 'clusterdns.yaml');
    if (this.#zones === undefined) {
      mkdirSync(join(zones, 'cluster.local'), { recursive: true });
      writeFileSync(
        join(zones, 'cluster.local', 'bench.yaml'),
        [
          '# bench/proxy.ts: the Services the proxy modes carry: echo (the 3 nginx backends), echo-one (be1).',
          'apiVersion: v1',
          'kind: Namespace',
          'metadata:',
          '  name: bench',
          '---',
          ...serviceManifest('echo', CLUSTER_IP, this.#topo.backends.map((b) => b.ip)),
          '---',
          ...serviceManifest('echo-one', CLUSTER_IP_ONE, [this.#topo.backends[0]!.ip]),
          '',
        ].join('\n'),
      );
      writeFileSync(config, `# bench/proxy.ts\nserviceCIDRs: [${SERVICE_CIDR}]\n`);
      this.#zones = zones;
    }
    return { zones, config };
  }

  async #startClusterdns(mode: 'userspace' | 'iptables' | 'nftables', round: number): Promise<Running> {
    const { zones, config } = this.#writeZones();
    const state = join(this.#dir, 'state', `${mode}-${round}`);
    mkdirSync(state, { recursive: true });
    const entry = this.#o.tsx ? ['--import', 'tsx', join(ROOT, 'src', 'main.ts')] : [join(ROOT, 'bin', 'clusterdns.js')];
    const cli = ['proxy', '--mode', mode, '--zones', zones, '--state', state, '--config', config, '--http', '127.0.0.1:0', '--log-level', this.#o.logLevel];
    this.commands[`clusterdns ${mode}`] ??= `ip netns exec ${this.#topo.node} node ${[...entry, ...cli]
      .map((a) => a.replace(`${ROOT}/`, '').replace(this.#dir, '$SCRATCH'))
      .join(' ')}`;
    const [cmd, argv] = this.#topo.exec(this.#topo.node, process.execPath, [...entry, ...cli]);
    const child = start(`clusterdns proxy ${mode}`, cmd, argv, { cwd: ROOT });
    return {
      target: CLUSTER_IP,
      pids: () => groupPids(child.pid),
      exited: () => child.exitedAlready(),
      // SIGTERM: the proxy removes what it installed (the namespace goes at the end anyway).
      stop: () => child.stop('SIGTERM', 5000),
      tail: tailBuffer(child),
    };
  }

  /** Wait until `target` answers from the client namespace; returns ms. */
  async waitReady(r: Running, timeoutMs: number): Promise<number> {
    const t0 = performance.now();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const c = await this.curl(this.#topo.client, [`http://${r.target}/small`], 1);
      if (c.ok && /^be\d+ /.test(c.body)) return performance.now() - t0;
      if (r.exited()) throw new Error(`exited before answering: ${lastLines(r.tail())}\n${r.tail()}`);
      if (Date.now() > deadline) throw new Error(`no answer on ${r.target}:80 from the client within ${timeoutMs / 1000} s: ${lastLines(r.tail())}\n${r.tail()}`);
      await sleep(100);
    }
  }

  /** Which backends answer 6 new connections. */
  async spread(target: string): Promise<Record<string, number>> {
    const urls = Array.from({ length: 6 }, () => `http://${target}/small`);
    const c = await this.curl(this.#topo.client, ['-H', 'Connection: close', ...urls], 5);
    const out: Record<string, number> = {};
    for (const m of c.body.matchAll(/^(be\d+) /gm)) out[m[1]!] = (out[m[1]!] ?? 0) + 1;
    return out;
  }

  async wrk(kind: 'warmup' | 'keepalive' | 'newconn' | 'bulk', r: Running, seconds: number): Promise<Measured> {
    const o = this.#o;
    const argv = ['-t', String(o.threads), '-c', String(kind === 'bulk' ? o.bulkConnections : o.connections), '-d', `${seconds}s`, '--timeout', '2s', '--latency', '-s', this.#lua];
    if (kind === 'bulk' && o.threads > o.bulkConnections) argv.splice(1, 1, String(o.bulkConnections));
    if (kind === 'newconn') argv.push('-H', 'Connection: close');
    argv.push(`http://${r.target}/${kind === 'bulk' ? 'big' : 'small'}`);
    if (kind !== 'warmup') {
      this.commands[kind] ??= `ip netns exec ${this.#topo.client} wrk ${argv.map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ')}`
        .replace(this.#lua, '$SCRATCH/report.lua')
        .replace(r.target, 'TARGET');
    }
    const [cmd, a] = this.#topo.exec(this.#topo.client, 'wrk', argv);
    const pids = r.pids();
    const p0 = pids.length > 0 ? cpuTicks(pids) : undefined;
    const m0 = machineBusyTicks();
    const t0 = performance.now();
    const res = await run(cmd, a, { timeoutMs: (seconds + 15) * 1000 });
    const wallS = (performance.now() - t0) / 1000;
    const m1 = machineBusyTicks();
    const p1 = pids.length > 0 ? cpuTicks(r.pids()) : undefined;
    this.#runs++;
    const line = /^WRK_JSON (.*)$/m.exec(res.stdout)?.[1];
    if (res.timedOut || line === undefined) {
      throw new Error(`wrk ${kind} ${res.timedOut ? 'timed out' : `exited ${res.code}`}: ${(res.stderr || res.stdout).trim().slice(0, 500)}`);
    }
    return { wrk: JSON.parse(line) as WrkOut, proxyTicks: p0 !== undefined && p1 !== undefined ? p1 - p0 : undefined, machineTicks: m1 - m0, wallS };
  }

  /** Rules a stopped clusterdns left in the node namespace ('' when none). */
  async leftovers(): Promise<string> {
    const [cmd, a] = this.#topo.exec(this.#topo.node, 'nft', ['list', 'ruleset']);
    const r = await run(cmd, a, { timeoutMs: 10_000 });
    const found = r.stdout
      .split('\n')
      .filter((l) => /KUBE-|kube-proxy|clusterdns/i.test(l))
      .slice(0, 5)
      .map((l) => l.trim());
    if (found.length > 0) {
      const [c2, a2] = this.#topo.exec(this.#topo.node, 'nft', ['flush', 'ruleset']);
      await run(c2, a2, { timeoutMs: 10_000 });
    }
    return found.join('; ');
  }

  async flushConntrack(): Promise<void> {
    const [cmd, a] = this.#topo.exec(this.#topo.node, 'conntrack', ['-F']);
    await run(cmd, a, { timeoutMs: 10_000 });
  }

  /** kept-alive, new connections and bulk against `r.target`, into `s`. */
  async #measure(r: Running, s: RoundSample): Promise<void> {
    const o = this.#o;
    const pct = (ticks: number | undefined, wallS: number, cpus = 1): number | undefined =>
      ticks === undefined ? undefined : round2((ticks / CLK_TCK / wallS / cpus) * 100);
    const errs = (w: WrkOut): number => w.connect + w.read + w.write + w.timeout + w.status;
    const ka = await this.wrk('keepalive', r, o.durationS);
    s.keepalive = {
      rps: Math.round(ka.wrk.requests / (ka.wrk.durationUs / 1e6)),
      p50Ms: ka.wrk.p50 / 1000,
      p99Ms: ka.wrk.p99 / 1000,
      errors: errs(ka.wrk),
      machineCpuPct: pct(ka.machineTicks, ka.wallS, this.#nproc)!,
      ...(ka.proxyTicks !== undefined ? { proxyCpuPct: pct(ka.proxyTicks, ka.wallS) } : {}),
    };
    const nc = await this.wrk('newconn', r, o.durationS);
    const conns = Math.max(1, nc.wrk.requests);
    s.newconn = {
      cps: Math.round(nc.wrk.requests / (nc.wrk.durationUs / 1e6)),
      errors: errs(nc.wrk),
      machineUsPerConn: round2(((nc.machineTicks / CLK_TCK) * 1e6) / conns),
      ...(nc.proxyTicks !== undefined
        ? { proxyUsPerConn: round2(((nc.proxyTicks / CLK_TCK) * 1e6) / conns), proxyCpuPct: pct(nc.proxyTicks, nc.wallS) }
        : {}),
    };
    const bk = await this.wrk('bulk', r, o.durationS);
    s.bulk = {
      gbps: round2((bk.wrk.bytes * 8) / (bk.wrk.durationUs / 1e6) / 1e9),
      errors: errs(bk.wrk),
      machineCpuPct: pct(bk.machineTicks, bk.wallS, this.#nproc)!,
      ...(bk.proxyTicks !== undefined ? { proxyCpuPct: pct(bk.proxyTicks, bk.wallS) } : {}),
    };
    s.ok = true;
  }

  /**
   * One contender, one round: start, check, warm up, measure, stop. The rules modes also
   * measure their single-endpoint Service (the second sample, `<mode>-1ep`).
   */
  async round(id: ContenderId, round: number, slot: number): Promise<RoundSample[]> {
    const o = this.#o;
    const s: RoundSample = { round, slot, ok: false, load: round2(loadavg()[0] ?? 0) };
    const out = [s];
    let r: Running | undefined;
    try {
      await this.flushConntrack();
      const t0 = performance.now();
      r = await this.startContender(id, round);
      await this.waitReady(r, id === 'userspace' || isRules(id) ? 60_000 : 10_000);
      s.readyMs = Math.round(performance.now() - t0);
      s.spread = await this.spread(r.target);
      // Warm up the userspace proxies (V8's JIT; HAProxy alike, for symmetry): the kernel
      // paths have nothing to warm, and the backends stay up across rounds.
      if (o.warmupS > 0 && (id === 'userspace' || id.startsWith('haproxy'))) await this.wrk('warmup', r, o.warmupS);
      await this.#measure(r, s);
      if (isRules(id) && o.singleEndpoint) {
        const one: RoundSample = { round, slot, ok: false, load: round2(loadavg()[0] ?? 0) };
        out.push(one);
        const r1: Running = { ...r, target: CLUSTER_IP_ONE };
        try {
          one.readyMs = Math.round(await this.waitReady(r1, 10_000));
          one.spread = await this.spread(r1.target);
          await this.#measure(r1, one);
        } catch (err) {
          one.error = (err as Error).message.split('\n').slice(0, 12).join('\n');
        }
      }
    } catch (err) {
      s.error = (err as Error).message.split('\n').slice(0, 12).join('\n');
    } finally {
      if (r !== undefined) await r.stop();
      if (id === 'userspace' || isRules(id)) {
        const left = await this.leftovers();
        if (left !== '') s.leftovers = left;
      }
    }
    return out;
  }

  get runs(): number {
    return this.#runs;
  }
}

// ---------------------------------------------------------------- summary

type MetricKey = 'rps' | 'p99Ms' | 'p50Ms' | 'cps' | 'gbps' | 'proxyUsPerConn' | 'machineUsPerConn' | 'proxyCpuPctKa' | 'proxyCpuPctBulk';

const METRICS: { key: MetricKey; title: string; unit: string; digits: number; higherBetter: boolean; get: (s: RoundSample) => number | undefined }[] = [
  { key: 'rps', title: 'kept-alive requests/s', unit: 'req/s', digits: 0, higherBetter: true, get: (s) => s.keepalive?.rps },
  { key: 'p50Ms', title: 'kept-alive p50 latency', unit: 'ms', digits: 3, higherBetter: false, get: (s) => s.keepalive?.p50Ms },
  { key: 'p99Ms', title: 'kept-alive p99 latency', unit: 'ms', digits: 3, higherBetter: false, get: (s) => s.keepalive?.p99Ms },
  { key: 'cps', title: 'new connections/s (Connection: close)', unit: 'conn/s', digits: 0, higherBetter: true, get: (s) => s.newconn?.cps },
  { key: 'gbps', title: 'bulk throughput', unit: 'Gbit/s', digits: 2, higherBetter: true, get: (s) => s.bulk?.gbps },
  { key: 'proxyUsPerConn', title: 'proxy CPU per new connection', unit: 'µs', digits: 1, higherBetter: false, get: (s) => s.newconn?.proxyUsPerConn },
  { key: 'machineUsPerConn', title: 'machine CPU per new connection (all processes + kernel)', unit: 'µs', digits: 1, higherBetter: false, get: (s) => s.newconn?.machineUsPerConn },
  { key: 'proxyCpuPctKa', title: 'proxy CPU during kept-alive', unit: '% of a CPU', digits: 0, higherBetter: false, get: (s) => s.keepalive?.proxyCpuPct },
  { key: 'proxyCpuPctBulk', title: 'proxy CPU during bulk', unit: '% of a CPU', digits: 0, higherBetter: false, get: (s) => s.bulk?.proxyCpuPct },
];

interface Stat {
  median: number;
  min: number;
  max: number;
  rounds: number[];
}

function stat(xs: number[]): Stat | undefined {
  if (xs.length === 0) return undefined;
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), rounds: xs };
}

function fmtNum(x: number | undefined, digits: number): string {
  if (x === undefined || !Number.isFinite(x)) return 'n/a';
  return digits === 0 ? fmtInt(x) : x.toFixed(digits);
}

interface Goal {
  id: string;
  what: string;
  num: SeriesId;
  den: SeriesId;
  metric: MetricKey;
  min: number;
  /** Ratio of the medians, and the median of the per-round ratios (paired rounds). */
  ratio?: number;
  paired?: number;
  met?: boolean;
}

/**
 * The issue's goals. The rules modes are held to direct through their single-endpoint
 * Service (the same backend as direct) unless --no-single-endpoint.
 */
function goalList(single: boolean): Omit<Goal, 'ratio' | 'paired' | 'met'>[] {
  return [
    { id: 'userspace-keepalive', what: 'userspace / HAProxy, kept-alive req/s', num: 'userspace', den: 'haproxy', metric: 'rps', min: 0.7 },
    { id: 'userspace-bulk', what: 'userspace / HAProxy, bulk (no splice)', num: 'userspace', den: 'haproxy', metric: 'gbps', min: 0.9 },
    { id: 'userspace-newconn', what: 'userspace / HAProxy, new connections/s', num: 'userspace', den: 'haproxy', metric: 'cps', min: 0.5 },
    ...(['iptables', 'nftables'] as const).flatMap((m) => {
      const num: SeriesId = single ? `${m}-1ep` : m;
      const who = single ? `${m} (1 endpoint) / direct` : `${m} / direct`;
      return [
        { id: `${m}-keepalive`, what: `${who}, kept-alive req/s`, num, den: 'direct' as const, metric: 'rps' as const, min: 0.9 },
        { id: `${m}-newconn`, what: `${who}, new connections/s`, num, den: 'direct' as const, metric: 'cps' as const, min: 0.9 },
        { id: `${m}-bulk`, what: `${who}, bulk`, num, den: 'direct' as const, metric: 'gbps' as const, min: 0.9 },
      ];
    }),
  ];
}

/** Informational ratios (no goal). */
function infoList(single: boolean): { what: string; num: SeriesId; den: SeriesId; metric: MetricKey }[] {
  return [
    { what: 'userspace / HAProxy, kept-alive p99', num: 'userspace', den: 'haproxy', metric: 'p99Ms' },
    { what: 'userspace / HAProxy, proxy CPU per connection', num: 'userspace', den: 'haproxy', metric: 'proxyUsPerConn' },
    { what: 'HAProxy / direct, kept-alive req/s', num: 'haproxy', den: 'direct', metric: 'rps' },
    ...(['iptables', 'nftables'] as const).flatMap((m) => [
      ...(single ? [{ what: `${m} (1 endpoint) / direct, kept-alive p99`, num: `${m}-1ep` as const, den: 'direct' as const, metric: 'p99Ms' as const }] : []),
      { what: `${m} (3 endpoints) / direct, kept-alive req/s`, num: m, den: 'direct' as const, metric: 'rps' as const },
      { what: `${m} (3 endpoints) / direct, new connections/s`, num: m, den: 'direct' as const, metric: 'cps' as const },
      { what: `${m} (3 endpoints) / direct, bulk`, num: m, den: 'direct' as const, metric: 'gbps' as const },
      { what: `${m} (3 endpoints) / direct, kept-alive p99`, num: m, den: 'direct' as const, metric: 'p99Ms' as const },
    ]),
  ];
}

function ratios(
  samples: Map<SeriesId, RoundSample[]>,
  num: SeriesId,
  den: SeriesId,
  metric: MetricKey,
): { ratio?: number; paired?: number; rounds?: number[] } {
  const get = METRICS.find((m) => m.key === metric)!.get;
  const a = (samples.get(num) ?? []).filter((s) => s.ok);
  const b = (samples.get(den) ?? []).filter((s) => s.ok);
  const av = a.map(get).filter((x): x is number => x !== undefined);
  const bv = b.map(get).filter((x): x is number => x !== undefined);
  if (av.length === 0 || bv.length === 0) return {};
  const per: number[] = [];
  for (const s of a) {
    const t = b.find((x) => x.round === s.round);
    const x = get(s);
    const y = t === undefined ? undefined : get(t);
    if (x !== undefined && y !== undefined && y > 0) per.push(round2(x / y));
  }
  return { ratio: round2(median(av) / median(bv)), ...(per.length > 0 ? { paired: round2(median(per)), rounds: per } : {}) };
}

// ---------------------------------------------------------------- main

interface ProxyBenchResult {
  date: string;
  machine: MachineFacts;
  tools: ToolVersions;
  clusterdns: string;
  options: Options;
  topology: Record<string, string>;
  commands: Record<string, string>;
  contenders: Record<string, { label: string; rounds: RoundSample[] }>;
  summary: Record<string, Record<string, Stat>>;
  goals: Goal[];
  info: { what: string; ratio?: number; paired?: number }[];
  goalsMet: boolean;
  seconds: number;
  load: { start: number; end: number };
  markdown: string;
}

async function main(): Promise<number> {
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const o = options();
  if (process.getuid?.() !== 0) throw new Error('the proxy benchmark needs root (network namespaces, iptables/nftables)');
  const need: [string, string][] = [
    ['ip', 'iproute2'],
    ['nginx', 'nginx-light'],
    ['wrk', 'wrk'],
    ['curl', 'curl'],
    ['nft', 'nftables'],
    ['conntrack', 'conntrack'],
  ];
  if (o.contenders.some((c) => c.startsWith('haproxy'))) need.push(['haproxy', 'haproxy']);
  if (o.contenders.includes('iptables') || o.contenders.includes('userspace')) need.push(['iptables', 'iptables']);
  const missing = need.filter(([c]) => !onPath(c));
  if (missing.length > 0) throw new Error(`the proxy benchmark needs ${missing.map(([c]) => c).join(', ')}: apt-get install ${missing.map(([, p]) => p).join(' ')}`);

  const t0 = performance.now();
  const startedAt = new Date();
  const loadStart = round2(loadavg()[0] ?? 0);
  const machine = await machineFacts('n/a', 'n/a');
  const tools = toolVersions();
  const clusterdns = clusterdnsRuns(o.tsx);
  const dir = mkdtempSync(join(tmpdir(), 'clusterdns-proxy-bench-'));
  let topo: Topology | undefined;
  installCleanup(() => {
    topo?.destroy();
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  });
  // A signal: end now. The 'exit' handler SIGKILLs every child and deletes the namespaces
  // (what a clusterdns mode installed goes with the node namespace).
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`proxy bench: ${sig}\n`);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const overall = setTimeout(() => {
    process.stderr.write(`proxy bench: --timeout ${o.timeoutS} s reached, stopping\n`);
    process.exit(124);
  }, o.timeoutS * 1000);
  overall.unref();

  const stale = sweepStale();
  if (stale.deleted.length > 0) log(`deleted namespaces left by earlier runs: ${stale.deleted.join(', ')}`);
  if (stale.busy.length > 0) log(`warning: namespaces of earlier runs still have processes (not touched): ${stale.busy.join(', ')}`);

  const singles = o.singleEndpoint ? o.contenders.filter(isRules).length : 0;
  const warmed = o.contenders.filter((c) => c === 'userspace' || c.startsWith('haproxy')).length;
  const estimate = ((3 * o.durationS + 2) * o.contenders.length + o.warmupS * warmed + (3 * o.durationS + 1) * singles) * o.rounds;
  log(
    `${o.contenders.length} contenders${singles > 0 ? ` (+ ${singles} single-endpoint Services)` : ''} × ${o.rounds} round(s), ` +
      `${o.durationS} s per run (kept-alive, new connections, bulk), about ${Math.round(estimate / 10) * 10} s; ` +
      `Node ${process.version}; clusterdns: ${clusterdns}`,
  );
  log(`tools: nginx ${tools.nginx}, HAProxy ${tools.haproxy}, wrk ${tools.wrk}, iptables ${tools.iptables}, nft ${tools.nft}, kernel ${machine.kernel}`);

  topo = createTopology(BACKENDS);
  log(`namespaces: ${topo.all.join(', ')}`);
  const bench = new ProxyBench(o, topo, dir, machine.nproc);
  await bench.startBackends();
  log(`backends: ${topo.backends.map((b) => `${b.name} ${b.ip}`).join(', ')} (nginx, 1 worker, /small ${SMALL_BYTES} B, /big ${o.bulkMiB} MiB)`);

  // The series measured: each contender, and after each rules mode its single-endpoint Service.
  const series: SeriesId[] = o.contenders.flatMap((c): SeriesId[] => (isRules(c) && o.singleEndpoint ? [c, `${c}-1ep`] : [c]));
  const samples = new Map<SeriesId, RoundSample[]>(series.map((c) => [c, []]));
  const disabled = new Map<ContenderId, string>();
  for (let round = 1; round <= o.rounds; round++) {
    const k = (round - 1) % o.contenders.length;
    const order = [...o.contenders.slice(k), ...o.contenders.slice(0, k)];
    log(`round ${round}/${o.rounds}: ${order.join(', ')}`);
    for (let slot = 0; slot < order.length; slot++) {
      const id = order[slot]!;
      if (disabled.has(id)) continue;
      const got = await bench.round(id, round, slot);
      for (const [i, s] of got.entries()) {
        const sid: SeriesId = i === 0 ? id : isRules(id) ? `${id}-1ep` : id;
        samples.get(sid)!.push(s);
        if (s.ok) {
          const sp = Object.entries(s.spread ?? {})
            .sort()
            .map(([b, n]) => `${b}×${n}`)
            .join(' ');
          log(
            `  ${sid.padEnd(14)} ${fmtInt(s.keepalive!.rps).padStart(7)} req/s  p99 ${s.keepalive!.p99Ms.toFixed(2)} ms  ` +
              `${fmtInt(s.newconn!.cps).padStart(6)} conn/s  ${s.bulk!.gbps.toFixed(2)} Gbit/s` +
              `${s.newconn!.proxyUsPerConn !== undefined ? `  ${s.newconn!.proxyUsPerConn} µs CPU/conn` : ''}` +
              `  (ready ${s.readyMs} ms; spread ${sp}` +
              `${s.keepalive!.errors + s.newconn!.errors + s.bulk!.errors > 0 ? `; wrk errors ${s.keepalive!.errors}/${s.newconn!.errors}/${s.bulk!.errors}` : ''})`,
          );
        } else {
          log(`  ${sid.padEnd(14)} FAILED: ${s.error?.split('\n').join('\n' + ' '.repeat(20))}`);
          // Not even started: no point in trying again every round.
          if (i === 0 && s.readyMs === undefined) disabled.set(id, s.error ?? 'failed');
        }
        if (s.leftovers !== undefined) log(`  ${id}: warning: left in the node after stop (flushed): ${s.leftovers}`);
      }
    }
  }
  const seconds = round2((performance.now() - t0) / 1000);

  // ---- report
  const summary: Record<string, Record<string, Stat>> = {};
  const out: string[] = [];
  const present = o.contenders.filter((c) => samples.get(c)!.some((s) => s.ok));
  for (const m of METRICS) {
    const rows: string[][] = [];
    summary[m.key] = {};
    for (const c of series) {
      const xs = samples
        .get(c)!
        .filter((s) => s.ok)
        .map(m.get)
        .filter((x): x is number => x !== undefined);
      const st = stat(xs);
      if (st !== undefined) summary[m.key]![c] = st;
      if (st === undefined) continue; // not measured, or no proxy process (direct)
      rows.push([
        LABEL[c],
        fmtNum(st.median, m.digits),
        `${fmtNum(st.min, m.digits)}-${fmtNum(st.max, m.digits)}`,
        st.rounds.map((x) => fmtNum(x, m.digits)).join(' '),
      ]);
    }
    if (rows.length === 0) continue;
    out.push(`${m.title} (${m.unit}; ${m.higherBetter ? 'higher' : 'lower'} is better)\n${table(['contender', 'median', 'min-max', 'rounds'], rows)}`);
  }
  const goals: Goal[] = goalList(o.singleEndpoint).map((g) => {
    const r = ratios(samples, g.num, g.den, g.metric);
    return { ...g, ...(r.ratio !== undefined ? { ratio: r.ratio, met: r.ratio >= g.min } : {}), ...(r.paired !== undefined ? { paired: r.paired } : {}) };
  });
  const info = infoList(o.singleEndpoint).map((i) => ({ what: i.what, ...ratios(samples, i.num, i.den, i.metric) }));
  const goalRows = goals.map((g) => [
    g.what,
    g.ratio === undefined ? 'n/a' : g.ratio.toFixed(2),
    g.paired === undefined ? 'n/a' : g.paired.toFixed(2),
    `≥ ${g.min}`,
    g.met === undefined ? 'not measured' : g.met ? 'met' : 'NOT met',
  ]);
  out.push(`goals (ratio of medians; paired = median of the per-round ratios)\n${table(['ratio', 'medians', 'paired', 'goal', ''], goalRows)}`);
  const infoRows = info.filter((i) => i.ratio !== undefined).map((i) => [i.what, i.ratio!.toFixed(2), i.paired === undefined ? 'n/a' : i.paired.toFixed(2)]);
  if (infoRows.length > 0) out.push(`other ratios\n${table(['ratio', 'medians', 'paired'], infoRows)}`);
  const failures = series.flatMap((c) => samples.get(c)!.filter((s) => !s.ok).map((s) => `${c} round ${s.round}: ${s.error?.split('\n')[0]}`));
  for (const [c, why] of disabled) failures.push(`${c}: not run after its first failure (${why.split('\n')[0]})`);
  if (failures.length > 0) out.push(`failures\n${failures.map((f) => `  ${f}`).join('\n')}`);
  process.stdout.write(`\nService proxy benchmark: ${o.rounds} round(s), ${o.durationS} s runs, wrk -t${o.threads} -c${o.connections} (bulk -c${o.bulkConnections}, ${o.bulkMiB} MiB)\n\n${out.join('\n\n')}\n`);

  // ---- markdown for the README
  const col = (c: SeriesId, k: MetricKey, d: number): string => {
    const st = summary[k]?.[c];
    return st === undefined ? '—' : fmtNum(st.median, d);
  };
  const md = [
    `Service proxy (\`npm run bench -- --only proxy\`): ${BACKENDS} nginx backends (1 worker each) in network namespaces, ` +
      `wrk in a client namespace routed through the node namespace; median of ${o.rounds} interleaved round(s) of ${o.durationS} s runs ` +
      `(\`wrk -t${o.threads} -c${o.connections}\`; bulk \`-c${o.bulkConnections}\` on a ${o.bulkMiB} MiB file); ` +
      `${machine.nproc} × ${machine.cpuModel}, Linux ${machine.kernel}, Node ${process.version}, nginx ${tools.nginx}, HAProxy ${tools.haproxy}, ${startedAt.toISOString().slice(0, 10)}.`,
    '',
    mdTable(
      ['contender', 'kept-alive req/s', 'p99 ms', 'new conn/s', 'bulk Gbit/s', 'proxy CPU µs/conn', 'machine CPU µs/conn'],
      series.map((c) => [
        LABEL[c],
        col(c, 'rps', 0),
        col(c, 'p99Ms', 2),
        col(c, 'cps', 0),
        col(c, 'gbps', 2),
        col(c, 'proxyUsPerConn', 1),
        col(c, 'machineUsPerConn', 1),
      ]),
    ),
    '',
    ...goals.map(
      (g) =>
        `- ${g.what}: ${g.ratio === undefined ? 'not measured' : `**${g.ratio.toFixed(2)}**${g.paired !== undefined ? ` (paired rounds ${g.paired.toFixed(2)})` : ''}`}; ` +
        `goal ≥ ${g.min}: ${g.met === undefined ? 'n/a' : g.met ? 'met' : 'NOT met'}`,
    ),
  ].join('\n');

  const result: ProxyBenchResult = {
    date: startedAt.toISOString(),
    machine: { ...machine, loadEnd: round2(loadavg()[0] ?? 0) },
    tools,
    clusterdns,
    options: o,
    topology: {
      node: `${topo.node}: br0 ${NODE_BACKEND_IP}/24 (backends), c0 (client), ${NODE_VIP}/32 on lo (HAProxy), default route via an uplink veth`,
      client: `${topo.client}: ${CLIENT_IP}, default via the node`,
      backends: topo.backends.map((b) => `${b.name} ${b.ip}`).join(', '),
      service: `bench/echo ClusterIP ${CLUSTER_IP}:80 → the 3 backends :80; bench/echo-one ${CLUSTER_IP_ONE}:80 → be1:80; serviceCIDRs [${SERVICE_CIDR}]`,
    },
    commands: bench.commands,
    contenders: Object.fromEntries(series.map((c) => [c, { label: LABEL[c], rounds: samples.get(c)! }])),
    summary,
    goals,
    info,
    goalsMet: goals.every((g) => g.met !== false) && goals.some((g) => g.met === true),
    seconds,
    load: { start: loadStart, end: round2(loadavg()[0] ?? 0) },
    markdown: md,
  };
  process.stdout.write(`\n${md}\n\n(proxy step: ${Math.round(seconds)} s, ${bench.runs} wrk runs)\n`);
  const jsonPath = process.env['BENCH_RESULT_JSON'];
  if (jsonPath !== undefined && jsonPath !== '') writeFileSync(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
  clearTimeout(overall);
  // A contender that never ran is a failure of the step; goals not met are not (run.ts --strict).
  return present.length === o.contenders.length ? 0 : 1;
}

// At the end, either way: stop the children politely (bounded), then exit; the 'exit' handler
// SIGKILLs anything left and deletes the namespaces.
main().then(
  async (code) => {
    await stopAll().catch(() => undefined);
    process.exit(code);
  },
  async (err: unknown) => {
    process.stderr.write(`proxy bench: ${(err as Error).message}\n`);
    await stopAll().catch(() => undefined);
    process.exit(1);
  },
);
