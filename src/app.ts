/**
 * Composition root: config + sources + zones + handler + listeners. The CLI
 * (`main.ts`) and the end-to-end tests both start the server through `startServer`.
 */
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { FileSource } from './cluster/files.js';
import type { ClusterStore } from './cluster/store.js';
import { sourceLog } from './log.js';
import { DnsHandler } from './server/handler.js';
import { serveHttp, type OpsServer } from './server/http.js';
import { listen, type Listener } from './server/listen.js';
import type { ZoneOptions } from './zone/build.js';
import { Resolver } from './zone/resolver.js';
import { ClusterZone } from './zone/zone.js';

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
  readonly zones: () => readonly ClusterZone[];
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
  const resolver = new Resolver();
  resolver.setReverseZones(opts.config.reverseZones.map((name) => ({ name })));
  const handler = new DnsHandler({
    resolver,
    onError: (err, where) => log.error({ err, where }, 'query pipeline error'),
  });

  const zones = new Map<string, ClusterZone>();
  const zopts = zoneOptions(opts.config);
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
      const z = new ClusterZone(name, store, zopts, glue);
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

  const listeners: Listener[] = [];
  let http: OpsServer | undefined;
  try {
    for (const d of opts.dns) {
      listeners.push(await listen(handler, { host: d.host, port: d.port, onError: (err, where) => log.warn({ err, where }, 'socket error') }));
    }
    if (opts.http !== undefined) {
      http = await serveHttp(opts.http.host, opts.http.port, { healthy: () => true, ready: () => true });
    }
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()));
    await files.stop();
    throw err;
  }

  return {
    listeners,
    http,
    resolver,
    handler,
    zones: () => [...zones.values()],
    close: async () => {
      await Promise.all(listeners.map((l) => l.close()));
      await http?.close();
      await files.stop();
      for (const z of zones.values()) z.close();
    },
  };
}
