/**
 * Test harness for the embedded registry: a real zones/ tree and state directory in a
 * temp dir, a FileSource with the registry as its transform (no watching; `reload()`
 * rescans), and helpers to write manifests.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { FileSource } from '../../src/cluster/files.js';
import type { EndpointSlice, Service } from '../../src/cluster/model.js';
import type { ClusterStore } from '../../src/cluster/store.js';
import { Registry, type RegistryOptions } from '../../src/registry/registry.js';

/** What the helpers need from a tap test. */
export interface Tap {
  teardown(fn: () => unknown): void;
}

export interface Logged {
  level: 'info' | 'warn' | 'error';
  msg: string;
  fields: Record<string, unknown>;
}

export const ZONE = 'cluster.local';

/** A temp directory removed after the test. */
export function tempDir(t: Tap, prefix = 'clusterdns-reg-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let seq = 0;

/** Writes a file atomically (temp + rename: a new inode, so the file source always sees the change). */
export function put(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.tmp-${process.pid}-${seq++}`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** YAML text of several documents (JSON is YAML). */
export function docs(...objs: unknown[]): string {
  return objs.map((o) => JSON.stringify(o)).join('\n---\n') + '\n';
}

/** A v1 Service manifest. */
export function svc(name: string, spec: Record<string, unknown> = {}, namespace = 'default', labels?: Record<string, string>): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace, ...(labels === undefined ? {} : { labels }) },
    spec: { ports: [{ name: 'http', port: 80 }], ...spec },
  };
}

/** A v1 Pod manifest. */
export function pod(
  name: string,
  opts: {
    namespace?: string;
    labels?: Record<string, string>;
    ips?: string[];
    ready?: boolean;
    phase?: string;
    terminating?: boolean;
    hostname?: string;
    subdomain?: string;
    ports?: Array<{ name?: string; containerPort: number; protocol?: string }>;
    nodeName?: string;
  } = {},
): unknown {
  const ips = opts.ips ?? [];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: opts.namespace ?? 'default',
      labels: opts.labels ?? {},
      ...(opts.terminating === true ? { deletionTimestamp: '2025-01-01T00:00:00Z' } : {}),
    },
    spec: {
      ...(opts.hostname === undefined ? {} : { hostname: opts.hostname }),
      ...(opts.subdomain === undefined ? {} : { subdomain: opts.subdomain }),
      ...(opts.nodeName === undefined ? {} : { nodeName: opts.nodeName }),
      containers: [{ name: 'c', image: 'x', ports: opts.ports ?? [] }],
    },
    status: {
      phase: opts.phase ?? 'Running',
      ...(ips.length === 0 ? {} : { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) }),
      conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }],
    },
  };
}

export interface HarnessOptions {
  readonly config?: RegistryOptions['config'];
  readonly registry?: Partial<RegistryOptions>;
  /** Reuse these dirs (a restart). */
  readonly zones?: string;
  readonly stateDir?: string;
}

export interface Harness {
  readonly root: string;
  readonly zones: string;
  readonly zoneDir: string;
  readonly stateDir: string;
  readonly statePath: string;
  readonly registry: Registry;
  readonly source: FileSource;
  readonly logs: Logged[];
  store(): ClusterStore;
  /** Write `zones/cluster.local/<rel>`. */
  write(rel: string, text: string): void;
  remove(rel: string): void;
  /** Rescan and apply changes. */
  reload(): Promise<void>;
  /** Served clusterIPs of `ns/name` (undefined: not served). */
  ips(key: string): string[] | undefined;
  service(key: string): Service | undefined;
  slices(key: string): EndpointSlice[];
  stop(): Promise<void>;
  /** Stop, then a new source and registry over the same directories (a process restart). */
  restart(opts?: Omit<HarnessOptions, 'zones' | 'stateDir'>): Promise<Harness>;
}

/** Starts a harness with `files` (relative to the zone folder) written first. */
export async function harness(t: Tap, files: Record<string, string> = {}, opts: HarnessOptions = {}): Promise<Harness> {
  const root = opts.zones === undefined ? tempDir(t) : dirname(opts.zones);
  const zones = opts.zones ?? join(root, 'zones');
  const zoneDir = join(zones, ZONE);
  mkdirSync(zoneDir, { recursive: true });
  const stateDir = opts.stateDir ?? join(root, '.clusterdns');
  for (const [rel, text] of Object.entries(files)) put(join(zoneDir, rel), text);
  const logs: Logged[] = [];
  const log = {
    info: (msg: string, fields?: Record<string, unknown>) => logs.push({ level: 'info', msg, fields: fields ?? {} }),
    warn: (msg: string, fields?: Record<string, unknown>) => logs.push({ level: 'warn', msg, fields: fields ?? {} }),
    error: (msg: string, fields?: Record<string, unknown>) => logs.push({ level: 'error', msg, fields: fields ?? {} }),
  };
  const registry = new Registry({ repairIntervalMs: 0, retryIntervalMs: 0, ...opts.registry, stateDir, ...(opts.config === undefined ? {} : { config: opts.config }), log });
  const source = new FileSource({ dir: zones, log, transform: registry.transform, watch: false, settleMs: 0, deleteGraceMs: 0, pollIntervalMs: 3_600_000 });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    registry.stop();
    await source.stop();
  };
  t.teardown(stop);
  await source.start();
  const h: Harness = {
    root,
    zones,
    zoneDir,
    stateDir,
    statePath: join(stateDir, ZONE, 'allocations.json'),
    registry,
    source,
    logs,
    store: () => source.storeFor(ZONE),
    write: (rel, text) => put(join(zoneDir, rel), text),
    remove: (rel) => unlinkSync(join(zoneDir, rel)),
    reload: async () => {
      // A file written in the same millisecond as the scan starts looks "too fresh"
      // (mtimeMs has a fraction, Date.now() not) and would wait for a later scan.
      await new Promise((r) => setTimeout(r, 10));
      await source.rescan();
    },
    ips: (key) => source.storeFor(ZONE).services.get(key)?.clusterIPs.slice(),
    service: (key) => source.storeFor(ZONE).services.get(key),
    slices: (key) => source.storeFor(ZONE).endpointsOf(key).slice().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    stop,
    restart: async (more = {}) => {
      await stop();
      return harness(t, {}, { ...opts, ...more, zones, stateDir });
    },
  };
  return h;
}
