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
import { counterFrom, gauge, Metrics } from './ops/metrics.js';
import { Autopath, resolvConfSearch } from './server/autopath.js';
import { DnsHandler, type NextStage, type QueryEvent } from './server/handler.js';
import { listen, type Listener } from './server/listen.js';
import { Notifier, type NotifyEvent } from './server/notify.js';
import { ZoneTransfer, type TransferEvent } from './server/transfer.js';
import { Type } from './dns/constants.js';
import type { RR } from './dns/rr.js';
import type { ZoneOptions } from './zone/build.js';
import { MulticlusterZone, planZones, type ZonePlan } from './zone/multicluster.js';
import { Resolver } from './zone/resolver.js';
import { ClusterZone } from './zone/zone.js';
import { createForwarder, forwardDurationHistogram, registerForwarderMetrics, type ForwardingFlags } from './forwarding.js';
import type { Forwarder } from './upstream/index.js';

/** The options of cluster zone `zone` (undefined: any zone that is not multicluster). */
export function zoneOptions(c: Config, zone?: string): ZoneOptions {
  return {
    ttl: c.ttl,
    pods: c.pods,
    ignoreEmptyService: c.ignoreEmptyService,
    endpointPodNames: c.endpointPodNames,
    noEndpoints: c.noEndpoints,
    namespaces: c.namespaces === undefined ? undefined : new Set(c.namespaces),
    // CoreDNS parse.go: the zonal grammar is not defined in multicluster zones.
    zonal: c.zonal && (zone === undefined || !c.multicluster.includes(zone.toLowerCase())),
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
  /** How each zone in #zones was made (`<store>|<multicluster>`): a zone whose plan changes is made again. */
  readonly #plans = new Map<string, string>();
  readonly #log: Logger;
  readonly #glue: string[];
  #config: Config;
  #provider: StoreProvider | undefined;
  #unsubscribe: (() => void) | undefined;
  #forwarder: Forwarder | undefined;
  #flags: ForwardingFlags | undefined;
  readonly #fwdDuration = forwardDurationHistogram();
  readonly #transfer: ZoneTransfer;
  /** NOTIFY to `transferNotify` (startNotify: the process that owns the sources only). */
  #notifier: Notifier | undefined;
  /** Kept across reloads so its counter survives `autopath` being turned off and on. */
  readonly #autopath = new Autopath(this.resolver);

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
    // Zone transfer out (config `transfer`): the stage always runs, so refusals are counted.
    this.#transfer = new ZoneTransfer({
      resolver: this.resolver,
      allow: config.transfer,
      onTransfer: (e) => logTransfer(log, e),
      onError: (err, where) => log.error({ err, where }, 'zone transfer error'),
    });
    this.handler.setTransfer(this.#transfer);
    metrics.register(
      counterFrom('clusterdns_zone_transfers_total', 'AXFR/IXFR requests by zone, type and result (served, soa-only, refused, notauth, formerr, servfail, aborted).', () => this.#transfer.counts()),
    );
    metrics.register(
      counterFrom('clusterdns_autopath_total', "Queries answered from a later name of the client pod's search list (coredns_autopath_success_total).", () => [
        { labels: {}, value: this.#autopath.answered },
      ]),
    );
    this.#setAutopath(config);
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

  /**
   * Autopath per the configuration. The tail of a pod's search list is the node's search
   * domains: like CoreDNS, taken from our own /etc/resolv.conf, re-read on every reload.
   */
  #setAutopath(config: Config): void {
    if (config.autopath) this.#autopath.setSearch(resolvConfSearch());
    this.handler.setAutopath(config.autopath ? this.#autopath : undefined);
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
    // The cluster domains, and the `multicluster` zones beside them (multicluster.ts).
    const plans = new Map(planZones(provider.zones(), this.#config.multicluster).map((p) => [p.name, p]));
    const key = (p: ZonePlan): string => `${p.store}|${p.multicluster}`;
    for (const [name, z] of this.#zones) {
      const p = plans.get(name);
      if (p === undefined || key(p) !== this.#plans.get(name)) {
        z.close();
        this.#zones.delete(name);
        this.#plans.delete(name);
        this.#log.info({ zone: name }, 'zone removed');
      }
    }
    for (const p of plans.values()) {
      const name = p.name;
      if (this.#zones.has(name)) continue;
      const store = provider.storeFor(p.store);
      const opts = zoneOptions(this.#config, name);
      const z = p.multicluster ? new MulticlusterZone(name, store, opts, this.#glue) : new ClusterZone(name, store, opts, this.#glue);
      let serial = z.serial;
      z.onUpdate = (change) => {
        this.handler.invalidateChange(z.name, change);
        // NOTIFY says the zone changed (RFC 1996 §1.2): only when the serial moved.
        if (z.serial !== serial) {
          serial = z.serial;
          this.#notifier?.changed(z.name);
        }
      };
      this.#zones.set(name, z);
      this.#notifier?.changed(name);
      this.#plans.set(name, key(p));
      if (!p.multicluster) this.#log.info({ zone: name, services: store.services.size }, 'serving zone');
      else if (p.store !== name) this.#log.info({ zone: name, multicluster: true, from: p.store, serviceImports: store.serviceImports.size }, 'serving zone');
      else {
        this.#log.warn(
          { zone: name, multicluster: true, serviceImports: store.serviceImports.size },
          'multicluster zone is also a cluster domain: served from its ServiceImports only, as CoreDNS does; its Services are not served',
        );
      }
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
    // A reload can change every record (ttl, namespaces, ...): a new serial, so that
    // secondaries transfer again. Only where the stores are fed (the process that
    // notifies): a `--workers` worker's store times are the primary's.
    if (this.#notifier !== undefined) for (const store of new Set(this.zones().map((z) => z.store))) store.touchTimes();
    for (const z of this.#zones.values()) z.setOptions(zoneOptions(config, z.name));
    this.resolver.setReverseZones(config.reverseZones.map((name) => ({ name })));
    const fwdChanged = JSON.stringify([config.upstream, config.stubDomains, config.maxConcurrent, config.forwardTimeout, config.cache]) !==
      JSON.stringify([this.#config.upstream, this.#config.stubDomains, this.#config.maxConcurrent, this.#config.forwardTimeout, this.#config.cache]);
    const mcChanged = JSON.stringify(config.multicluster) !== JSON.stringify(this.#config.multicluster);
    this.#config = config;
    // Multicluster zones come and go with the list (the API source watches ServiceImports
    // only if the list was set at start; zones/ always reads them).
    if (mcChanged) this.#syncZones();
    this.handler.invalidate();
    this.#setAutopath(config);
    this.#transfer.setAllowed(config.transfer);
    this.#notifier?.setTargets(config.transferNotify);
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

  /**
   * Send NOTIFY (RFC 1996) to `transferNotify` when a zone's serial moves. Only in the
   * process that runs the sources: `--workers` workers leave it to the primary (app.ts).
   */
  startNotify(): void {
    if (this.#notifier !== undefined) return;
    const notifier = createNotifier(this.#config, this.#log, this.metrics, (zone) => this.#soaOf(zone));
    this.#notifier = notifier;
    for (const z of this.#zones.keys()) notifier.changed(z);
  }

  #soaOf(zone: string): RR | undefined {
    const z = this.#zones.get(zone);
    return z === undefined ? undefined : (z.forward.lookup(z.name)?.get(Type.SOA)?.rrs[0] ?? z.soa());
  }

  async close(): Promise<void> {
    await this.#notifier?.close();
    this.#notifier = undefined;
    const ls = this.listeners.splice(0);
    await Promise.all(ls.map((l) => l.close()));
    await this.#forwarder?.close();
    this.#forwarder = undefined;
    this.#unsubscribe?.();
    for (const z of this.#zones.values()) z.close();
    this.#zones.clear();
  }
}

/** One line per transfer served (CoreDNS logs each outgoing transfer); refusals at debug. */
function logTransfer(log: Logger, e: TransferEvent): void {
  const fields = { zone: e.zone, type: e.qtype, client: e.client, result: e.result, serial: e.serial, records: e.records, messages: e.messages, bytes: e.bytes };
  if (e.result === 'served' || e.result === 'aborted') log.info(fields, 'zone transfer');
  else log.debug(fields, 'zone transfer request');
}

/**
 * The NOTIFY sender of this process, and its `clusterdns_notify_total` (registered
 * here: only the process that notifies has the metric, so `--workers` does not sum an
 * empty copy per worker with the primary's).
 */
export function createNotifier(config: Config, log: Logger, metrics: Metrics, soaOf: (zone: string) => RR | undefined): Notifier {
  const n = new Notifier({
    targets: config.transferNotify,
    soaOf,
    onEvent: (e) => logNotify(log, e),
    onError: (err, where) => log.warn({ err, where }, 'notify error'),
  });
  metrics.register(counterFrom('clusterdns_notify_total', 'NOTIFY messages to secondaries by zone and result (sent, acked, rejected, failed).', () => n.counts()));
  return n;
}

/** Sends at debug; a secondary that refuses or never answers at warn. */
function logNotify(log: Logger, e: NotifyEvent): void {
  const fields = { zone: e.zone, target: e.target, serial: e.serial, attempt: e.attempt, rcode: e.rcode };
  if (e.result === 'failed') log.warn(fields, 'NOTIFY not answered; the secondary refreshes at the SOA refresh interval');
  else if (e.result === 'rejected') log.warn(fields, 'NOTIFY refused by the secondary');
  else log.debug(fields, e.result === 'acked' ? 'NOTIFY acknowledged' : 'NOTIFY sent');
}
