/**
 * Benchmark of the Kubernetes API source (issue #3, "Scale and speed").
 *
 *   node --import tsx bench/kube.ts [--quick] [--tsx | --cli] [--services N] [--endpoints N]
 *                                   [--updates N] [--reconnects N] [--no-breakdown] [--node-arg=FLAG]...
 *
 * A FakeApiServer (TLS, bearer token, managedFields on every object) holds 10,000 Services
 * and 150,000 endpoints in EndpointSlices of 100 (ClusterIP and headless mixed). The DNS
 * server runs as a child process (bench/kube-server.ts: KubeSource → ClusterZone →
 * Resolver → DnsHandler, as app.ts wires a source), compiled to plain JavaScript first so
 * it runs as the production image does (no tsx loader in the process; `--tsx` measures the
 * checkout way instead; `--cli` runs the real `node bin/clusterdns.js serve --kubeconfig …`
 * instead, once app.ts wires the API source). Measured:
 *
 *  - start to ready: spawn → /readyz 200 (first full list of every resource + zone built);
 *  - peak RSS at ready: VmHWM of the child (/proc/<pid>/status);
 *  - watch event → changed answer: p50/p99 over N sequential updates (a ClusterIP change or
 *    an endpoint change in a 100-endpoint slice), each timed from the API server's write
 *    until a UDP query returns the new answer; queries are paced 1 ms apart so the poller
 *    never competes with the server for the CPU (resolution ≈ 1 ms);
 *  - sockets after 100 forced reconnects (the fake drops every watch): API-server side
 *    connections, the child's open fds and sockets, before and after;
 *  - (unless --no-breakdown) where the memory goes: a second run with --expose-gc reports the
 *    heap growth of each startup stage (modules, store, zone tables).
 *
 * With $BENCH_RESULT_JSON set, the results are written there as JSON (with a `markdown`
 * field for the README). BENCH_QUICK=1 or --quick: 1/10 of the cluster, fewer updates.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ts from 'typescript';
import * as dnsPacket from 'dns-packet';
import { FakeApiServer } from '../test/helpers/fake-apiserver.js';
import { clusterIPOf, podIP, populate, sliceObject, type ScaleInfo } from '../test/kube/helpers/scale.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: process.env['BENCH_QUICK'] === '1' },
    tsx: { type: 'boolean', default: false },
    cli: { type: 'boolean', default: false },
    services: { type: 'string' },
    endpoints: { type: 'string' },
    updates: { type: 'string' },
    reconnects: { type: 'string' },
    'no-breakdown': { type: 'boolean', default: false },
    'node-arg': { type: 'string', multiple: true, default: [] },
  },
});
const quick = args.quick === true;
const SERVICES = Number(args.services ?? (quick ? 1000 : 10_000));
const ENDPOINTS = Number(args.endpoints ?? (quick ? 15_000 : 150_000));
const UPDATES = Number(args.updates ?? (quick ? 100 : 1000));
const RECONNECTS = Number(args.reconnects ?? (quick ? 20 : 100));
const DOMAIN = 'cluster.local';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (msg: string): void => void process.stderr.write(`[kube-bench] ${msg}\n`);

// ---- compile the server to plain JS (what the image runs) --------------------------------

/**
 * Transpile src/ and bench/kube-server.ts (type-stripping only: `npm run typecheck` checks
 * them) into `out`, with a node_modules symlink so bare imports resolve to the project's.
 */
function compileServer(out: string): string {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'), 'dir');
  const files: string[] = [join(ROOT, 'bench', 'kube-server.ts')];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) files.push(p);
    }
  };
  walk(join(ROOT, 'src'));
  for (const f of files) {
    const res = ts.transpileModule(readFileSync(f, 'utf8'), {
      fileName: f,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true, sourceMap: false },
    });
    const dest = join(out, relative(ROOT, f)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, res.outputText);
  }
  return join(out, 'bench', 'kube-server.js');
}

// ---- the child ------------------------------------------------------------------------

interface Server {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly dns: number;
  readonly http: number;
  readonly startedAt: number;
  stderr(): string;
}

async function startServer(entry: string, kubeconfig: string, extraNodeArgs: string[], extraArgs: string[]): Promise<Server> {
  // --node-arg=FLAG (repeatable): Node/V8 flags for the server process (memory experiments).
  const extraNode = [...(args['node-arg'] ?? []), ...extraNodeArgs];
  const nodeArgs = args.cli
    ? [...extraNode, join(ROOT, 'bin', 'clusterdns.js'), 'serve', '--domain', DOMAIN, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'warn']
    : args.tsx
      ? ['--import', 'tsx', ...extraNode, join(ROOT, 'bench', 'kube-server.ts'), '--backoff-initial-ms', '20']
      : [...extraNode, entry, '--backoff-initial-ms', '20'];
  const startedAt = performance.now();
  const proc = spawn(process.execPath, [...nodeArgs, '--kubeconfig', kubeconfig, ...extraArgs], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 120_000;
  const started = (): boolean => (args.cli ? /^try: dig/m.test(out) : out.includes('\n'));
  while (!started()) {
    if (proc.exitCode !== null) throw new Error(`server exited ${proc.exitCode}: ${err}`);
    if (Date.now() > deadline) throw new Error(`server did not start: ${err}`);
    await sleep(5);
  }
  if (args.cli) {
    // The banner: `... on 127.0.0.1:PORT (udp+tcp), http on 127.0.0.1:PORT`.
    const dns = Number(/ on [^ ]*?:(\d+)/.exec(out)?.[1]);
    const http = Number(/http on [^ ]*?:(\d+)/.exec(out)?.[1]);
    return { proc, pid: proc.pid!, dns, http, startedAt, stderr: () => err };
  }
  const info = JSON.parse(out.split('\n')[0]!) as { dns: number; http: number; pid: number };
  return { proc, pid: proc.pid!, dns: info.dns, http: info.http, startedAt, stderr: () => err };
}

async function stopServer(s: Server): Promise<void> {
  if (s.proc.exitCode !== null) return;
  const exited = new Promise((r) => s.proc.once('exit', r));
  s.proc.kill('SIGTERM');
  const t = setTimeout(() => s.proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

async function getJson<T>(port: number, path: string): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return (await res.json()) as T;
}

async function waitReady(s: Server, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${s.http}/readyz`);
      await res.text();
      if (res.status === 200) return performance.now() - s.startedAt;
    } catch {
      // not listening yet
    }
    if (s.proc.exitCode !== null) throw new Error(`kube-server exited: ${s.stderr()}`);
    if (Date.now() > deadline) throw new Error(`not ready within ${timeoutMs} ms: ${s.stderr()}`);
    await sleep(20);
  }
}

function procStatus(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(Vm\w+|Rss\w+):\s+(\d+) kB/.exec(line);
    if (m !== null) out[m[1]!] = Number(m[2]) / 1024;
  }
  return out;
}

function fds(pid: number): { total: number; sockets: number } {
  const list = readdirSync(`/proc/${pid}/fd`);
  let sockets = 0;
  for (const fd of list) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) sockets++;
    } catch {
      // closed meanwhile
    }
  }
  return { total: list.length, sockets };
}

// ---- DNS polling ------------------------------------------------------------------------

class Prober {
  readonly #sock = dgram.createSocket('udp4');
  readonly #port: number;
  #id = 1;
  readonly #waiting = new Map<number, (b: Buffer) => void>();

  constructor(port: number) {
    this.#port = port;
    this.#sock.on('message', (m) => {
      const id = m.readUInt16BE(0);
      const w = this.#waiting.get(id);
      if (w !== undefined) {
        this.#waiting.delete(id);
        w(m);
      }
    });
  }

  /** A records of `name` (sorted), or the rcode when there are none. */
  async a(name: string): Promise<string> {
    const id = this.#id++ & 0xffff || 1;
    this.#id = id + 1;
    const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A', class: 'IN' }] });
    const reply = await new Promise<Buffer | undefined>((resolve) => {
      const t = setTimeout(() => {
        this.#waiting.delete(id);
        resolve(undefined);
      }, 1000);
      this.#waiting.set(id, (b) => {
        clearTimeout(t);
        resolve(b);
      });
      this.#sock.send(q, this.#port, '127.0.0.1');
    });
    if (reply === undefined) return 'TIMEOUT';
    const p = dnsPacket.decode(reply) as dnsPacket.DecodedPacket & { flags?: number };
    const ips = (p.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as { data: string }).data);
    return ips.length > 0 ? ips.sort().join(',') : `rcode${(p.flags ?? 0) & 0xf}`;
  }

  close(): void {
    this.#sock.close();
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

// ---- the run ----------------------------------------------------------------------------

interface Results {
  machine: { cpus: number; model: string; node: string };
  cluster: { services: number; endpoints: number; slices: number; namespaces: number };
  mode: string;
  readyMs: number;
  peakRssMB: number;
  rssAtReadyMB: number;
  /** VmRSS and VmHWM after the timed updates. */
  afterUpdates: { rssMB: number; peakMB: number };
  latency: { updates: number; p50: number; p90: number; p99: number; max: number; clusterIP: { p50: number; p99: number }; slice: { p50: number; p99: number } };
  sockets: { reconnects: number; serverBefore: number; serverAfter: number; fdBefore: number; fdAfter: number; socketFdBefore: number; socketFdAfter: number };
  breakdown?: {
    modulesMB: number;
    storeMB: number;
    zoneMB: number;
    heapAfterGcMB: number;
    rssAfterGcMB: number;
    externalMB: number;
    /** ms since the child's process start. */
    timings: Record<string, number>;
  };
  /** 1-minute load average at start and end: other work on the machine skews everything. */
  load: { start: number; end: number };
  markdown: string;
}

const fmt = (n: number, d = 1): string => (Number.isFinite(n) ? n.toFixed(d) : '—');

async function main(): Promise<void> {
  const loadStart = loadavg()[0]!;
  if (loadStart > cpus().length * 0.5) log(`warning: load average ${loadStart.toFixed(2)} on ${cpus().length} CPUs: other work will skew the figures`);
  const dir = mkdtempSync(join(tmpdir(), 'clusterdns-kube-bench-'));
  const fake = await new FakeApiServer().start({ tls: true, token: 'bench-token', historySize: 5000, splitEvery: 0 });
  let server: Server | undefined;
  try {
    let t0 = performance.now();
    const info: ScaleInfo = populate(fake, { services: SERVICES, endpoints: ENDPOINTS });
    log(`cluster: ${info.services} services, ${info.endpoints} endpoints in ${info.slices} slices, ${info.namespaces.length} namespaces (${fmt((performance.now() - t0) / 1000)} s)`);
    const kubeconfig = fake.writeKubeconfig(dir);
    const entry = args.tsx || args.cli ? '' : compileServer(join(dir, 'build'));
    const mode = args.cli ? 'the CLI, node bin/clusterdns.js serve' : args.tsx ? 'node --import tsx (checkout)' : 'node, compiled JS (as the image runs)';

    // 1. Start to ready, peak RSS.
    server = await startServer(entry, kubeconfig, [], []);
    const readyMs = await waitReady(server, 120_000);
    const st = procStatus(server.pid);
    log(`ready in ${fmt(readyMs / 1000, 2)} s; VmHWM ${fmt(st['VmHWM']!)} MB, VmRSS ${fmt(st['VmRSS']!)} MB`);

    // 2. Watch event → changed answer.
    const prober = new Prober(server.dns);
    const clusterIPSvcs = info.withEndpoints.filter((s) => s.clusterIP !== undefined);
    const headless = info.withEndpoints.filter((s) => s.clusterIP === undefined);
    const plain: { ns: string; name: string; i: number }[] = [];
    for (let i = info.withEndpoints.length; i < info.services; i++) plain.push({ ns: `ns-${String(i % info.namespaces.length).padStart(3, '0')}`, name: `svc-${String(i).padStart(5, '0')}`, i });
    const lat: number[] = [];
    const latIP: number[] = [];
    const latSlice: number[] = [];
    let nextIP = 1;
    for (let u = 0; u < UPDATES; u++) {
      let name: string;
      let want: (a: string) => boolean;
      let isSlice = false;
      if (u % 2 === 0 || headless.length === 0) {
        // A ClusterIP change.
        const pool = plain.length > 0 ? plain : clusterIPSvcs.map((s, i) => ({ ...s, i }));
        const s = pool[(u * 7919) % pool.length]!;
        const ip = clusterIPOf(s.i, 1 + (nextIP++ % 3));
        const cur = fake.get('Service', s.ns, s.name)!;
        const spec = cur['spec'] as Record<string, unknown>;
        name = `${s.name}.${s.ns}.svc.${DOMAIN}`;
        want = (a) => a === ip;
        t0 = performance.now();
        fake.update('Service', { ...cur, metadata: { ...cur.metadata, resourceVersion: undefined }, spec: { ...spec, clusterIP: ip, clusterIPs: [ip] } });
      } else {
        // One endpoint of a 100-endpoint headless slice changes address.
        isSlice = true;
        const s = headless[(u * 104729) % headless.length]!;
        const idx = info.withEndpoints.indexOf(s);
        const fresh = 1_000_000 + u;
        const obj = sliceObject(s.ns, s.name, 0, idx * 100, 100, false) as { endpoints: { addresses: string[] }[] };
        obj.endpoints[u % 100]!.addresses = [podIP(fresh)];
        const newIP = podIP(fresh);
        // The new endpoint's own name (its dashed IP): one A record, no truncation.
        name = `${newIP.replace(/\./g, '-')}.${s.name}.${s.ns}.svc.${DOMAIN}`;
        want = (a) => a === newIP;
        t0 = performance.now();
        fake.update('EndpointSlice', obj);
      }
      for (;;) {
        const a = await prober.a(name);
        if (want(a)) break;
        if (performance.now() - t0 > 5000) throw new Error(`update ${u}: ${name} never changed (last answer ${a})`);
        await sleep(1);
      }
      const ms = performance.now() - t0;
      lat.push(ms);
      (isSlice ? latSlice : latIP).push(ms);
      await sleep(2);
    }
    prober.close();
    const sorted = [...lat].sort((a, b) => a - b);
    const sIP = [...latIP].sort((a, b) => a - b);
    const sSl = [...latSlice].sort((a, b) => a - b);
    log(`update latency over ${lat.length}: p50 ${fmt(percentile(sorted, 50), 2)} ms, p99 ${fmt(percentile(sorted, 99), 2)} ms`);
    // Steady state: what the process holds after the updates (and the queries timing them).
    const afterUpdates = procStatus(server.pid);
    log(`after the updates: VmRSS ${fmt(afterUpdates['VmRSS']!)} MB, VmHWM ${fmt(afterUpdates['VmHWM']!)} MB`);

    // 3. Sockets after forced reconnects.
    type Status = { resources: { connected: boolean }[]; sockets: number };
    const watchers = fake.watchCount();
    const allConnected = async (): Promise<boolean> => {
      if (args.cli) return fake.watchCount() === watchers && fake.requests.slice(-watchers).every((r) => !r.watch || r.status === 200);
      const s = await getJson<Status>(server!.http, '/debug/status');
      return s.resources.length > 0 && s.resources.every((r) => r.connected) && fake.watchCount() === s.resources.length;
    };
    while (!(await allConnected())) await sleep(10);
    await sleep(200);
    const before = { server: fake.openConnections(), ...fds(server.pid) };
    for (let i = 0; i < RECONNECTS; i++) {
      fake.dropWatches();
      await sleep(5);
      const deadline = Date.now() + 10_000;
      while (!(await allConnected())) {
        if (Date.now() > deadline) throw new Error(`reconnect ${i}: watches did not come back`);
        await sleep(5);
      }
      // A bookmark on the new watches: they are healthy, so the next drop is a fresh
      // failure (short delay), not a flapping server (escalating backoff).
      fake.sendBookmark();
      await sleep(10);
    }
    await sleep(500);
    const after = { server: fake.openConnections(), ...fds(server.pid) };
    log(`sockets: server side ${before.server} → ${after.server}; child fds ${before.total} → ${after.total} (sockets ${before.sockets} → ${after.sockets})`);
    await stopServer(server);
    server = undefined;

    // 4. Where the memory goes (a second run with --expose-gc; GCs at stage boundaries).
    let breakdown: Results['breakdown'];
    if (!args['no-breakdown'] && !args.cli) {
      server = await startServer(entry, kubeconfig, ['--expose-gc'], []);
      await waitReady(server, 120_000);
      const m = await getJson<{ beforeGc: NodeJS.MemoryUsage; afterGc: NodeJS.MemoryUsage; stages: Record<string, number>; timings: Record<string, number> }>(server.http, '/debug/memory');
      const mu = (u: NodeJS.MemoryUsage): string =>
        `rss ${fmt(u.rss / 1048576)}, heap used/total ${fmt(u.heapUsed / 1048576)}/${fmt(u.heapTotal / 1048576)}, external ${fmt(u.external / 1048576)} MB`;
      log(`memory at ready: before GC ${mu(m.beforeGc)}; after GC ${mu(m.afterGc)}`);
      const mb = (b: number | undefined): number => (b ?? NaN) / 1048576;
      breakdown = {
        modulesMB: mb(m.stages['modules']),
        storeMB: mb(m.stages['store']),
        zoneMB: mb(m.stages['zone']),
        heapAfterGcMB: mb(m.afterGc.heapUsed),
        rssAfterGcMB: mb(m.afterGc.rss),
        externalMB: mb(m.afterGc.external),
        timings: m.timings,
      };
      log(`heap by stage: modules ${fmt(breakdown.modulesMB)} MB, store +${fmt(breakdown.storeMB)} MB, zone tables +${fmt(breakdown.zoneMB)} MB`);
      log(`child timeline (ms since process start): ${JSON.stringify(m.timings)}`);
      await stopServer(server);
      server = undefined;
    }

    const model = cpus()[0]?.model ?? 'unknown';
    const res: Results = {
      machine: { cpus: cpus().length, model, node: process.version },
      cluster: { services: info.services, endpoints: info.endpoints, slices: info.slices, namespaces: info.namespaces.length },
      mode,
      readyMs,
      peakRssMB: st['VmHWM']!,
      rssAtReadyMB: st['VmRSS']!,
      afterUpdates: { rssMB: afterUpdates['VmRSS']!, peakMB: afterUpdates['VmHWM']! },
      latency: {
        updates: lat.length,
        p50: percentile(sorted, 50),
        p90: percentile(sorted, 90),
        p99: percentile(sorted, 99),
        max: sorted.at(-1) ?? NaN,
        clusterIP: { p50: percentile(sIP, 50), p99: percentile(sIP, 99) },
        slice: { p50: percentile(sSl, 50), p99: percentile(sSl, 99) },
      },
      sockets: {
        reconnects: RECONNECTS,
        serverBefore: before.server,
        serverAfter: after.server,
        fdBefore: before.total,
        fdAfter: after.total,
        socketFdBefore: before.sockets,
        socketFdAfter: after.sockets,
      },
      ...(breakdown === undefined ? {} : { breakdown }),
      load: { start: loadStart, end: loadavg()[0]! },
      markdown: '',
    };
    const rows: [string, string, string][] = [
      ['Cluster', `${info.services.toLocaleString('en')} Services, ${info.endpoints.toLocaleString('en')} endpoints (${info.slices.toLocaleString('en')} EndpointSlices of ≤100)`, ''],
      ['Start to ready (/readyz)', `${fmt(readyMs / 1000, 2)} s`, ''],
      ['Peak RSS when ready (VmHWM)', `${fmt(res.peakRssMB)} MB`, res.peakRssMB < 130 ? 'goal < 130 MB: met' : 'goal < 130 MB: NOT met'],
      ['RSS after the updates (VmRSS / VmHWM)', `${fmt(res.afterUpdates.rssMB)} / ${fmt(res.afterUpdates.peakMB)} MB`, ''],
      ['Watch event → changed answer, p50', `${fmt(res.latency.p50, 2)} ms`, `over ${lat.length} sequential updates`],
      ['Watch event → changed answer, p99', `${fmt(res.latency.p99, 2)} ms`, res.latency.p99 < 50 ? 'goal < 50 ms: met' : 'goal < 50 ms: NOT met'],
      ['  ClusterIP change p50 / p99', `${fmt(res.latency.clusterIP.p50, 2)} / ${fmt(res.latency.clusterIP.p99, 2)} ms`, ''],
      ['  100-endpoint slice change p50 / p99', `${fmt(res.latency.slice.p50, 2)} / ${fmt(res.latency.slice.p99, 2)} ms`, ''],
      [
        `Sockets after ${RECONNECTS} forced reconnects`,
        `API side ${before.server} → ${after.server}; child fds ${before.total} → ${after.total} (sockets ${before.sockets} → ${after.sockets})`,
        after.server <= before.server && after.sockets <= before.sockets ? 'not growing' : 'GROWING',
      ],
    ];
    if (breakdown !== undefined) {
      rows.push(['Heap after GC by stage', `modules ${fmt(breakdown.modulesMB)} MB, store +${fmt(breakdown.storeMB)} MB, zone tables +${fmt(breakdown.zoneMB)} MB`, `RSS after GC ${fmt(breakdown.rssAfterGcMB)} MB`]);
      const tl = breakdown.timings;
      rows.push(['Startup timeline (child, --expose-gc run)', `modules ${fmt((tl['modulesLoaded'] ?? NaN) / 1000, 2)} s, synced ${fmt((tl['synced'] ?? NaN) / 1000, 2)} s, zone built ${fmt((tl['zoneBuilt'] ?? NaN) / 1000, 2)} s`, '']);
    }
    rows.push(['Load average (1 min) start / end', `${res.load.start.toFixed(2)} / ${res.load.end.toFixed(2)}`, res.load.start > cpus().length * 0.5 ? 'machine busy: figures skewed' : '']);
    const w0 = Math.max(...rows.map((r) => r[0].length));
    const w1 = Math.max(...rows.map((r) => r[1].length));
    process.stdout.write(`\nKubernetes API source benchmark (${mode}; ${cpus().length} × ${model}; Node ${process.version})\n\n`);
    for (const r of rows) process.stdout.write(`${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2]}\n`);
    res.markdown = [
      `| Measure (${mode}, ${cpus().length} cores) | Result | |`,
      '|---|---|---|',
      ...rows.map((r) => `| ${r[0].trim()} | ${r[1]} | ${r[2]} |`),
    ].join('\n');
    process.stdout.write(`\n${res.markdown}\n`);
    const jsonPath = process.env['BENCH_RESULT_JSON'];
    if (jsonPath !== undefined && jsonPath !== '') writeFileSync(jsonPath, JSON.stringify(res, null, 2));
  } finally {
    if (server !== undefined) await stopServer(server);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
