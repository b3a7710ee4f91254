/**
 * DnsNode: everything that answers DNS in one process — zones built from the stores a
 * provider hands it, the resolver, the query pipeline, the listeners and the
 * per-query metrics. It does not know where the stores are fed from: the sources in
 * this process (single process) or the primary through IPC (a `--workers` worker).
 */
import type { Logger } from 'pino';
import type { StoreProvider } from './cluster/provider.js';
import type { Config } from './config.js';
import { rcodeName, typeName } from './dns/constants.js';
import type { HostPort } from './net/ip.js';
import { gauge, Metrics } from './ops/metrics.js';
import { DnsHandler, type NextStage, type QueryEvent } from './server/handler.js';
import { listen, type Listener } from './server/listen.js';
import type { ZoneOptions } from './zone/build.js';
import { Resolver } from './zone/resolver.js';
import { ClusterZone } from './zone/zone.js';
import { createForwarder, forwardDurationHistogram, registerForwarderMetrics, type ForwardingFlags } from './forwarding.js';
import type { Forwarder } from './upstream/index.js';

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

export class DnsNode {
  readonly resolver = new Resolver();
  readonly handler: DnsHandler;
  readonly metrics: Metrics;
  readonly listeners: Listener[] = [];
  readonly #zones = new Map<string, ClusterZone>();
  readonly #log: Logger;
  readonly #glue: string[];
  #config: Config;
  #provider: StoreProvider | undefined;
  #unsubscribe: (() => void) | undefined;
  #forwarder: Forwarder | undefined;
  #flags: ForwardingFlags | undefined;
  readonly #fwdDuration = forwardDurationHistogram();

  constructor(config: Config, dns: readonly HostPort[], log: Logger, metrics: Metrics) {
    this.#config = config;
    this.#log = log;
    this.#glue = glueAddresses(dns);
    this.metrics = metrics;
    this.resolver.setReverseZones(config.reverseZones.map((name) => ({ name })));
    this.handler = new DnsHandler({
      resolver: this.resolver,
      onQuery: (e) => this.#onQuery(e),
      onError: (err, where) => log.error({ err, where }, 'query pipeline error'),
    });
    metrics.register(
      gauge('clusterdns_zone_names', 'Names served, by zone and tree (forward, reverse).', () =>
        this.zones().flatMap((z) => [
          { labels: { zone: z.name, tree: 'forward' }, value: z.forward.size },
          { labels: { zone: z.name, tree: 'reverse' }, value: z.reverse.size },
        ]),
        // Every worker holds the same names: the count is per process, not a sum.
        'max',
      ),
    );
    registerForwarderMetrics(metrics, () => this.#forwarder, this.#fwdDuration);
    metrics.register(
      gauge('clusterdns_tcp_connections', 'Open DNS-over-TCP connections.', () => [{ labels: {}, value: this.listeners.reduce((n, l) => n + l.tcpConnections(), 0) }]),
    );
  }

  #onQuery(e: QueryEvent): void {
    this.metrics.onQuery(e);
    if (this.#config.queryLog) {
      this.#log.info(
        { client: e.client, proto: e.transport, name: e.name, type: typeName(e.qtype), rcode: rcodeName(e.rcode), size: e.size, ms: Math.round(e.seconds * 1e6) / 1e3, cached: e.cached },
        'query',
      );
    }
  }

  zones(): ClusterZone[] {
    return [...this.#zones.values()];
  }

  /** Serve the stores of `provider`, following its zones as they come and go. */
  attach(provider: StoreProvider): void {
    this.#provider = provider;
    this.resolver.synced = () => provider.synced();
    this.#unsubscribe = provider.onZonesChanged(() => this.#syncZones());
    this.#syncZones();
  }

  #syncZones(): void {
    const provider = this.#provider;
    if (provider === undefined) return;
    const names = new Set(provider.zones());
    for (const [name, z] of this.#zones) {
      if (!names.has(name)) {
        z.close();
        this.#zones.delete(name);
        this.#log.info({ zone: name }, 'zone removed');
      }
    }
    for (const name of names) {
      if (this.#zones.has(name)) continue;
      const store = provider.storeFor(name);
      const z = new ClusterZone(name, store, zoneOptions(this.#config), this.#glue);
      z.onUpdate = (change) => this.handler.invalidateChange(z.name, change);
      this.#zones.set(name, z);
      this.#log.info({ zone: name, services: store.services.size }, 'serving zone');
    }
    this.resolver.setZones([...this.#zones.values()]);
    this.handler.invalidate();
  }

  /** Later stage for names outside our zones (upstream forwarding). */
  setNext(next: NextStage | undefined): void {
    this.handler.setNext(next);
    this.handler.invalidate();
  }

  get forwarder(): Forwarder | undefined {
    return this.#forwarder;
  }

  /** Forward names outside our zones per the configuration and flags (call after listen). */
  async forward(flags: ForwardingFlags): Promise<void> {
    this.#flags = flags;
    const old = this.#forwarder;
    const fwd = createForwarder(this.#config, flags, this.#log, this.#fwdDuration);
    this.#forwarder = fwd;
    if (fwd === undefined) this.handler.setNext(undefined);
    else this.handler.setNext((q, req, tr) => fwd.forward(q, req, tr), (n, t) => fwd.lookup(n, t));
    this.handler.invalidate();
    fwd?.start();
    await old?.close();
  }

  setConfig(config: Config): void {
    const zo = zoneOptions(config);
    for (const z of this.#zones.values()) z.setOptions(zo);
    this.resolver.setReverseZones(config.reverseZones.map((name) => ({ name })));
    const fwdChanged = JSON.stringify([config.upstream, config.stubDomains, config.maxConcurrent, config.forwardTimeout, config.cache]) !==
      JSON.stringify([this.#config.upstream, this.#config.stubDomains, this.#config.maxConcurrent, this.#config.forwardTimeout, this.#config.cache]);
    this.#config = config;
    this.handler.invalidate();
    if (fwdChanged && this.#flags !== undefined) {
      this.forward(this.#flags).catch((err: unknown) => this.#log.error({ err }, 'forwarder reload failed'));
    }
  }

  /**
   * Bind every address. `shared`: a `--workers` worker, whose sockets the cluster
   * module shares with its siblings (so not exclusive).
   */
  async listen(dns: readonly HostPort[], shared = false): Promise<void> {
    try {
      for (const d of dns) {
        this.listeners.push(
          await listen(this.handler, { host: d.host, port: d.port, shared, onError: (err, where) => this.#log.warn({ err, where }, 'socket error') }),
        );
      }
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    const ls = this.listeners.splice(0);
    await Promise.all(ls.map((l) => l.close()));
    await this.#forwarder?.close();
    this.#forwarder = undefined;
    this.#unsubscribe?.();
    for (const z of this.#zones.values()) z.close();
    this.#zones.clear();
  }
}
