/**
 * A minimal DNS server on the Kubernetes API source, for bench/kube.ts: KubeSource →
 * ClusterZone → Resolver → DnsHandler → UDP/TCP listener, plus /readyz (synced) and two
 * measurement routes, wired the way app.ts wires the file source. It exists so the
 * benchmark measures the API source without depending on the CLI's wiring.
 *
 *   node [--import tsx] bench/kube-server.ts --kubeconfig FILE [--domain cluster.local]
 *        [--dns 127.0.0.1:0] [--http 127.0.0.1:0] [--backoff-initial-ms N] [--page-size N]
 *        [--no-zone]
 *
 * Prints one JSON line `{"dns":PORT,"http":PORT}` on stdout once listening. Routes:
 * /readyz (200 once synced), /debug/status (KubeSource.status() and sockets), /debug/memory
 * (process.memoryUsage() after a full GC when run with --expose-gc, the heap growth of each
 * startup stage, and when each stage ended, ms since process start). SIGTERM/SIGINT stop
 * everything.
 */
import { parseArgs } from 'node:util';
import { KubeSource } from '../src/cluster/kube/index.js';
import type { SourceLog } from '../src/log.js';
import { DnsHandler } from '../src/server/handler.js';
import { serveHttp } from '../src/server/http.js';
import { listen } from '../src/server/listen.js';
import { Resolver } from '../src/zone/resolver.js';
import { ClusterZone } from '../src/zone/zone.js';
import { applyMemoryProfile, startupDone } from '../src/ops/memory.js';

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    domain: { type: 'string', default: 'cluster.local' },
    dns: { type: 'string', default: '127.0.0.1:0' },
    http: { type: 'string', default: '127.0.0.1:0' },
    'backoff-initial-ms': { type: 'string', default: '500' },
    'page-size': { type: 'string', default: '500' },
    'log-level': { type: 'string', default: 'warn' },
    'no-zone': { type: 'boolean', default: false },
    // As the `memory` config key (default lean, as clusterdns serve).
    memory: { type: 'string', default: 'lean' },
  },
});
applyMemoryProfile(values.memory === 'fast' ? 'fast' : 'lean');

const hostPort = (s: string): { host: string; port: number } => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
};

const levels = ['info', 'warn', 'error'];
const min = Math.max(0, levels.indexOf(values['log-level']!));
const line = (level: string, msg: string, fields?: Record<string, unknown>): void => {
  if (levels.indexOf(level) >= min) process.stderr.write(`${JSON.stringify({ level, msg, ...fields })}\n`);
};
const log: SourceLog = {
  info: (m, f) => line('info', m, f),
  warn: (m, f) => line('warn', m, f),
  error: (m, f) => line('error', m, f),
};

const t0 = performance.timeOrigin;
const timings: Record<string, number> = { modulesLoaded: Math.round(performance.now()) };
const gc = (globalThis as { gc?: () => void }).gc;
const heap = (): number => {
  gc?.();
  return process.memoryUsage().heapUsed;
};
const stages: Record<string, number> = { modules: heap() };

const source = new KubeSource({
  kubeconfig: values.kubeconfig,
  watchPods: false,
  startupTimeoutMs: 600_000,
  backoff: { initialMs: Number(values['backoff-initial-ms']), maxMs: 30_000 },
  pageSize: Number(values['page-size']),
  log,
});
const resolver = new Resolver();
const handler = new DnsHandler({ resolver, onError: (err, where) => log.error('query pipeline error', { where, err: String(err) }) });
resolver.synced = () => source.synced();
let zone: ClusterZone | undefined;
const zopts = { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined } as const;

const dnsAddr = hostPort(values.dns!);
const httpAddr = hostPort(values.http!);
const listener = await listen(handler, { host: dnsAddr.host, port: dnsAddr.port });
const http = await serveHttp(httpAddr.host, httpAddr.port, {
  healthy: () => true,
  ready: () => source.synced() && zone !== undefined,
  routes: new Map<string, () => { type: string; body: string }>([
    ['/debug/status', () => ({ type: 'application/json', body: JSON.stringify({ ...source.status(), sockets: source.socketCount() }) })],
    [
      '/debug/memory',
      () => {
        const before = process.memoryUsage();
        gc?.();
        return { type: 'application/json', body: JSON.stringify({ beforeGc: before, afterGc: process.memoryUsage(), stages, timings, gc: gc !== undefined }) };
      },
    ],
  ]),
});
process.stdout.write(`${JSON.stringify({ dns: listener.udpPort, http: http.port, pid: process.pid })}\n`);

await source.start();
source.store.flush();
timings['synced'] = Math.round(performance.now());
stages['store'] = heap() - stages['modules']!;
if (!values['no-zone']) {
  // Built after the first sync (one full build), as the file source does at startup.
  const z = new ClusterZone(values.domain!, source.store, zopts);
  z.onUpdate = (change) => handler.invalidateChange(z.name, change);
  resolver.setZones([z]);
  handler.invalidate();
  zone = z;
  timings['zoneBuilt'] = Math.round(performance.now());
  stages['zone'] = heap() - stages['modules']! - stages['store']!;
}
// As app.ts does once the first view is complete (memory.ts).
const whenSynced = setInterval(() => {
  if (!source.synced()) return;
  clearInterval(whenSynced);
  startupDone(values.memory === 'fast' ? 'fast' : 'lean');
}, 100);
void t0;

const stop = async (): Promise<void> => {
  await listener.close();
  await http.close();
  await source.stop();
  zone?.close();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
