/**
 * A clusterdns query pipeline for forwarding tests: a real DnsHandler serving the
 * fixture cluster zone, listening on UDP and TCP at 127.0.0.1, whose next stage is a
 * Forwarder (as the composition root wires it).
 */
import type { Test } from 'tap';
import { DnsHandler } from '../../src/server/handler.js';
import { listen, type Listener } from '../../src/server/listen.js';
import { Forwarder, type ForwarderOptions } from '../../src/upstream/index.js';
import type { SourceLog } from '../../src/log.js';
import { Resolver } from '../../src/zone/resolver.js';
import { ClusterZone } from '../../src/zone/zone.js';
import { fixtureStore } from '../helpers/cluster.js';
import { decode, makeQuery, tcpExchange, udpExchange, type Decoded, type QueryOpts } from '../helpers/dns.js';

export interface TestServer {
  readonly port: number;
  readonly fwd: Forwarder;
  readonly handler: DnsHandler;
  readonly listener: Listener;
  readonly logs: { level: string; msg: string; fields: Record<string, unknown> | undefined }[];
  udp(name: string, type?: string, opts?: QueryOpts, timeoutMs?: number): Promise<Decoded & { ms: number; raw: Buffer }>;
  tcp(name: string, type?: string, opts?: QueryOpts, timeoutMs?: number): Promise<Decoded & { ms: number; raw: Buffer }>;
}

export function memoryLog(): { log: SourceLog; logs: TestServer['logs'] } {
  const logs: TestServer['logs'] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void logs.push({ level, msg, fields });
  return { log: { info: at('info'), warn: at('warn'), error: at('error') }, logs };
}

/**
 * Start the pipeline. `opts` may be a function of the listener's port (for upstreams
 * that must point back at us); the forwarder starts (loop probes) once we listen.
 */
export async function startServer(t: Test, opts: Omit<ForwarderOptions, 'log'> | ((port: number) => Omit<ForwarderOptions, 'log'>)): Promise<TestServer> {
  const zone = new ClusterZone('cluster.local', fixtureStore(), { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined });
  const resolver = new Resolver();
  resolver.setZones([zone]);
  const handler = new DnsHandler({ resolver });
  const listener = await listen(handler, { host: '127.0.0.1', port: 0 });
  const { log, logs } = memoryLog();
  const o = typeof opts === 'function' ? opts(listener.udpPort) : opts;
  const fwd = new Forwarder({ healthCheckIntervalMs: 100, healthCheckTimeoutMs: 200, ...o, log });
  handler.setNext((q, req, tr) => fwd.forward(q, req, tr));
  fwd.start();
  t.teardown(async () => {
    await listener.close();
    await fwd.close();
  });
  const port = listener.udpPort;
  const ask = async (tr: 'udp' | 'tcp', name: string, type = 'A', qo: QueryOpts = { edns: 1232 }, timeoutMs = 5000) => {
    const t0 = performance.now();
    const raw = tr === 'udp' ? await udpExchange(port, makeQuery(name, type, qo), '127.0.0.1', timeoutMs) : (await tcpExchange(port, [makeQuery(name, type, qo)], '127.0.0.1', timeoutMs))[0]!;
    return { ...decode(raw), ms: performance.now() - t0, raw };
  };
  return {
    port,
    fwd,
    handler,
    listener,
    logs,
    udp: (name, type, qo, ms) => ask('udp', name, type, qo, ms),
    tcp: (name, type, qo, ms) => ask('tcp', name, type, qo, ms),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` every 20 ms until true or `ms` passed; returns its last value. */
export async function waitFor(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

/** TTL field of a record in zone-file text (`name. ttl IN TYPE rdata`). */
export const ttlOf = (rr: string | undefined): number => Number(rr?.split(' ')[1]);
