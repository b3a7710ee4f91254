/**
 * Composition root: config + sources + zones + handler + listeners + operations.
 * The CLI (`main.ts`) and the end-to-end tests both start the server through
 * `startServer`. Only this file wires concrete modules together.
 */
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { FileSource } from './cluster/files.js';
import type { ClusterStore } from './cluster/store.js';
import { sourceLog } from './log.js';
import { gauge, Metrics } from './ops/metrics.js';
import { DnsHandler, type QueryEvent } from './server/handler.js';
import { serveHttp, type OpsServer } from './server/http.js';
import { listen, type Listener } from './server/listen.js';
import type { ZoneOptions } from './zone/build.js';
import { Resolver } from './zone/resolver.js';
import { ClusterZone } from './zone/zone.js';
import { rcodeName, typeName } from './dns/constants.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface ServeOptions {
  readonly config: Config;
  readonly zonesDir: string;
  readonly dns: readonly HostPort[];
  readonly http: HostPort | undefined;
  readonly upstreams: readonly HostPort[];
  readonly noUpstream: boolean;
}

export interface Server {
  readonly listeners: readonly Listener[];
  readonly http: OpsServer | undefined;
  readonly resolver: Resolver;
  readonly handler: DnsHandler;
  readonly metrics: Metrics;
  readonly zones: () => readonly ClusterZone[];
  /** Apply a new configuration (SIGHUP, config file edit). Throws nothing; returns false if refused. */
  reload(config: Config): boolean;
  /** Lame-duck (unhealthy, still answering) for `config.lameduck` seconds, then close. */
  shutdown(): Promise<void>;
  close(): Promise<void>;
}

export function zoneOptions(c: Config): ZoneOptions {
  return {
    ttl: c.ttl,
    pods: c.pods,
    ignoreEmptyService: c.ignoreEmptyService,
    endpointPodNames: c.endpointPodNames,
    noEndpoints: c.noEndpoints,
    namespaces: c.namespaces === undefined ? undefined : new Set(c.namespaces),
  };
}

/** Addresses usable as NS glue when there is no kube-dns service: the ones we listen on. */
function glueAddresses(dns: readonly HostPort[]): string[] {
  return dns.map((d) => d.host).filter((h) => h !== '0.0.0.0' && h !== '::');
}

export async function startServer(opts: ServeOptions, log: Logger): Promise<Server> {
  let config = opts.config;
  const first = opts.dns[0];
  const metrics = new Metrics(first === undefined ? 'dns://:53' : `dns://${first.host}:${first.port}`);
  const resolver = new Resolver();
  resolver.setReverseZones(config.reverseZones.map((name) => ({ name })));
  let queryLog = config.queryLog;
  const onQuery = (e: QueryEvent): void => {
    metrics.onQuery(e);
    if (queryLog) {
      log.info(
        { client: e.client, proto: e.transport, name: e.name, type: typeName(e.qtype), rcode: rcodeName(e.rcode), size: e.size, ms: Math.round(e.seconds * 1e6) / 1e3, cached: e.cached },
        'query',
      );
    }
  };
  const handler = new DnsHandler({
    resolver,
    onQuery,
    onError: (err, where) => log.error({ err, where }, 'query pipeline error'),
  });

  const zones = new Map<string, ClusterZone>();
  const glue = glueAddresses(opts.dns);
  const files = new FileSource({ dir: opts.zonesDir, log: sourceLog(log) });
  const syncZones = (): void => {
    const names = new Set(files.zones());
    for (const [name, z] of zones) {
      if (!names.has(name)) {
        z.close();
        zones.delete(name);
        log.info({ zone: name }, 'zone removed');
      }
    }
    for (const name of names) {
      if (zones.has(name)) continue;
      const store: ClusterStore = files.storeFor(name);
      const z = new ClusterZone(name, store, zoneOptions(config), glue);
      z.onUpdate = () => handler.invalidate();
      zones.set(name, z);
      log.info({ zone: name, services: store.services.size }, 'serving zone');
    }
    resolver.setZones([...zones.values()]);
    handler.invalidate();
  };
  files.onZonesChanged(syncZones);
  await files.start();
  syncZones();
  let synced = true;
  resolver.synced = () => synced;

  metrics.register(
    gauge('clusterdns_kubernetes_objects', 'Objects tracked, by zone and kind.', () =>
      [...zones.values()].flatMap((z) => [
        { labels: { zone: z.name, kind: 'Service' }, value: z.store.services.size },
        { labels: { zone: z.name, kind: 'EndpointSlice' }, value: z.store.slices.size },
        { labels: { zone: z.name, kind: 'Endpoints' }, value: z.store.legacyEndpoints.size },
        { labels: { zone: z.name, kind: 'Pod' }, value: z.store.pods.size },
        { labels: { zone: z.name, kind: 'Namespace' }, value: z.store.namespaces.size },
      ]),
    ),
  );
  metrics.register(
    gauge('clusterdns_zone_names', 'Names served, by zone and tree (forward, reverse).', () =>
      [...zones.values()].flatMap((z) => [
        { labels: { zone: z.name, tree: 'forward' }, value: z.forward.size },
        { labels: { zone: z.name, tree: 'reverse' }, value: z.reverse.size },
      ]),
    ),
  );
  metrics.register(
    gauge('clusterdns_source_last_change_timestamp_seconds', 'Unix time of the last DNS-visible change (the SOA serial), by zone.', () =>
      [...zones.values()].map((z) => ({ labels: { zone: z.name }, value: z.store.lastChange })),
    ),
  );
  metrics.register(
    gauge('clusterdns_tcp_connections', 'Open DNS-over-TCP connections.', () => [{ labels: {}, value: listeners.reduce((n, l) => n + l.tcpConnections(), 0) }]),
  );

  let healthy = true;
  const listeners: Listener[] = [];
  let http: OpsServer | undefined;
  try {
    for (const d of opts.dns) {
      listeners.push(await listen(handler, { host: d.host, port: d.port, onError: (err, where) => log.warn({ err, where }, 'socket error') }));
    }
    if (opts.http !== undefined) {
      http = await serveHttp(opts.http.host, opts.http.port, {
        healthy: () => healthy,
        ready: () => synced && healthy,
        routes: new Map([['/metrics', async () => ({ type: metrics.contentType, body: await metrics.text() })]]),
      });
    }
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()));
    await files.stop();
    throw err;
  }

  const close = async (): Promise<void> => {
    await Promise.all(listeners.map((l) => l.close()));
    await http?.close();
    await files.stop();
    for (const z of zones.values()) z.close();
  };

  return {
    listeners,
    http,
    resolver,
    handler,
    metrics,
    zones: () => [...zones.values()],
    reload: (next: Config): boolean => {
      try {
        const zo = zoneOptions(next);
        for (const z of zones.values()) z.setOptions(zo);
        resolver.setReverseZones(next.reverseZones.map((name) => ({ name })));
        queryLog = next.queryLog;
        config = next;
        handler.invalidate();
        log.info({ ttl: next.ttl, pods: next.pods }, 'configuration reloaded');
        return true;
      } catch (err) {
        log.error({ err }, 'configuration reload failed; the previous configuration stays');
        return false;
      }
    },
    shutdown: async () => {
      healthy = false;
      if (config.lameduck > 0) {
        log.info({ seconds: config.lameduck }, 'lame duck: still answering, /healthz failing');
        await new Promise((r) => setTimeout(r, config.lameduck * 1000));
      }
      await close();
    },
    close,
  };
}
