/**
 * Shared setup for the KubeSource tests: a FakeApiServer, a KubeSource on it (real
 * client-node, nothing mocked), a DNS server over the source's store on a real UDP
 * socket, a log recorder, and polling helpers. Everything registers its own teardown.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { FakeApiServer, type FakeApiServerOptions, type KubeconfigOptions } from '../../helpers/fake-apiserver.js';
import { decode, makeQuery, udpExchange, type Decoded } from '../../helpers/dns.js';
import { KubeSource, type KubeSourceOptions } from '../../../src/cluster/kube/index.js';
import type { SourceLog } from '../../../src/log.js';
import { DnsHandler } from '../../../src/server/handler.js';
import { listen } from '../../../src/server/listen.js';
import { MulticlusterZone } from '../../../src/zone/multicluster.js';
import { Resolver } from '../../../src/zone/resolver.js';
import { ClusterZone } from '../../../src/zone/zone.js';
import type { ZoneOptions } from '../../../src/zone/build.js';

export const Z = 'cluster.local';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` every 5 ms until it holds; fail with `what` after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

export interface LogLine {
  readonly level: 'info' | 'warn' | 'error';
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

export class LogRecorder implements SourceLog {
  readonly lines: LogLine[] = [];
  info(msg: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: 'info', msg, fields });
  }
  warn(msg: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: 'warn', msg, fields });
  }
  error(msg: string, fields: Record<string, unknown> = {}): void {
    this.lines.push({ level: 'error', msg, fields });
  }
  count(level: LogLine['level'], re: RegExp = /./): number {
    return this.lines.filter((l) => l.level === level && re.test(l.msg)).length;
  }
  dump(): string {
    return this.lines.map((l) => `${l.level} ${l.msg} ${JSON.stringify(l.fields)}`).join('\n');
  }
}

export function tempDir(t: Test, prefix = 'clusterdns-kube-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function fakeServer(t: Test, opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const s = await new FakeApiServer().start(opts);
  t.teardown(() => s.close());
  return s;
}

/** Fast defaults for tests: short backoff, short startup timeout. */
export const FAST = { startupTimeoutMs: 3000, backoff: { initialMs: 20, maxMs: 200 } } as const;

export interface SourceHandle {
  readonly source: KubeSource;
  readonly log: LogRecorder;
  readonly kubeconfig: string;
}

/** A KubeSource on `s` (kubeconfig written to a temp dir). Not started. */
export function makeSource(
  t: Test,
  s: FakeApiServer | { kubeconfigPath: string },
  opts: Partial<KubeSourceOptions> = {},
  kc: KubeconfigOptions = {},
): SourceHandle {
  const log = new LogRecorder();
  const kubeconfig = 'kubeconfigPath' in s ? s.kubeconfigPath : s.writeKubeconfig(tempDir(t), kc);
  const source = new KubeSource({ kubeconfig, watchPods: false, ...FAST, ...opts, log });
  t.teardown(() => source.stop());
  return { source, log, kubeconfig };
}

/** Every resource has an open watch (response headers received). */
export async function watching(source: KubeSource, ms = 5000): Promise<void> {
  await until(() => source.status().resources.length > 0 && source.status().resources.every((r) => r.connected), 'every watch open', ms);
}

/** makeSource + start() + wait until synced and every watch is open. */
export async function startSource(t: Test, s: FakeApiServer, opts: Partial<KubeSourceOptions> = {}): Promise<SourceHandle> {
  const h = makeSource(t, s, opts);
  await h.source.start();
  if (!h.source.synced()) throw new Error(`source did not sync:\n${h.log.dump()}`);
  await watching(h.source);
  h.source.store.flush();
  return h;
}

export const ZONE_OPTS: ZoneOptions = {
  ttl: 5,
  pods: 'insecure',
  ignoreEmptyService: false,
  endpointPodNames: false,
  noEndpoints: false,
  namespaces: undefined,
};

export interface Dns {
  readonly port: number;
  readonly zone: ClusterZone;
  /** One UDP query; the decoded answer. */
  q(name: string, type?: string): Promise<Decoded>;
  /** Sorted answer rdata (last field of each answer RR) and the rcode, e.g. `NOERROR 10.0.0.1`. */
  short(name: string, type?: string): Promise<string>;
  /** Query until `short()` gives `want` (or `ms` passes); returns the last answer. */
  until(name: string, want: string, type?: string, ms?: number): Promise<string>;
}

/**
 * ClusterZone + Resolver + DnsHandler over the source's store, on a UDP/TCP port, as
 * the DnsNode wires them; with `multicluster`, those zones too (MulticlusterZone over
 * the same store).
 */
export async function serveDns(t: Test, source: KubeSource, zopts: Partial<ZoneOptions> = {}, multicluster: readonly string[] = []): Promise<Dns> {
  const resolver = new Resolver();
  const handler = new DnsHandler({ resolver });
  const opts = { ...ZONE_OPTS, ...zopts };
  const zone = new ClusterZone(Z, source.store, opts);
  const zones = [zone, ...multicluster.map((name) => new MulticlusterZone(name, source.store, opts))];
  for (const z of zones) z.onUpdate = (c) => handler.invalidateChange(z.name, c);
  resolver.setZones(zones);
  resolver.synced = () => source.synced();
  const l = await listen(handler, { host: '127.0.0.1', port: 0 });
  t.teardown(async () => {
    await l.close();
    for (const z of zones) z.close();
  });
  let id = 1;
  const q = async (name: string, type = 'A'): Promise<Decoded> => decode(await udpExchange(l.udpPort, makeQuery(name, type, { id: id++ & 0xffff })));
  const short = async (name: string, type = 'A'): Promise<string> => {
    const d = await q(name, type);
    const data = d.answer.map((a) => a.split(' ').slice(4).join(' ')).sort();
    return [d.rcode, ...data].join(' ');
  };
  return {
    port: l.udpPort,
    zone,
    q,
    short,
    until: async (name, want, type = 'A', ms = 3000) => {
      const deadline = Date.now() + ms;
      let last = await short(name, type);
      while (last !== want && Date.now() < deadline) {
        await sleep(5);
        last = await short(name, type);
      }
      return last;
    },
  };
}

// ---- object builders (API JSON as a client would create it) ----------------------------

export function ns(name: string, labels: Record<string, string> = {}): object {
  return { metadata: { name, labels } };
}

export function svc(namespace: string, name: string, ip: string | 'None', labels: Record<string, string> = {}, ports = [{ name: 'http', port: 80, protocol: 'TCP' }]): object {
  return {
    metadata: { name, namespace, labels },
    spec: { type: 'ClusterIP', clusterIP: ip, clusterIPs: [ip], ports },
  };
}

export function slice(
  namespace: string,
  name: string,
  service: string,
  ips: string[],
  labels: Record<string, string> = {},
  hostnames: (string | undefined)[] = [],
): object {
  return {
    metadata: { name, namespace, labels: { 'kubernetes.io/service-name': service, ...labels } },
    addressType: 'IPv4',
    endpoints: ips.map((ip, i) => ({
      addresses: [ip],
      conditions: { ready: true },
      ...(hostnames[i] !== undefined ? { hostname: hostnames[i] } : {}),
    })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

export function pod(namespace: string, name: string, ip: string, phase = 'Running'): object {
  return {
    metadata: { name, namespace },
    spec: { nodeName: 'node-1', containers: [{ name: 'c', image: 'busybox' }] },
    status: { phase, podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] },
  };
}
