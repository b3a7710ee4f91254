/**
 * Zone transfer test helpers: a DnsNode serving one store (as app.ts wires it in one
 * process), and a raw AXFR/IXFR client that reads a multi-message TCP reply to its end
 * (the second SOA), decoding each message with dns-packet (an independent decoder).
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';
import pino from 'pino';
import type { Test } from 'tap';
import type { StoreProvider } from '../../src/cluster/provider.js';
import type { ClusterStore } from '../../src/cluster/store.js';
import { parseConfig } from '../../src/config.js';
import { DnsNode } from '../../src/node.js';
import { Metrics } from '../../src/ops/metrics.js';
import { rrText } from './dns.js';

export const Z = 'cluster.local';

/** A provider of one zone's store (what the file or API sources hand a DnsNode). */
export function oneZone(store: ClusterStore, zone = Z, synced: () => boolean = () => true): StoreProvider {
  return { zones: () => [zone], storeFor: () => store, onZonesChanged: () => () => {}, synced };
}

export interface Served {
  readonly node: DnsNode;
  readonly port: number;
  readonly metrics: Metrics;
}

/** A DnsNode on 127.0.0.1 and a free port (0), with `config` (YAML keys), NOTIFY on. */
export async function serveNode(t: Test, provider: StoreProvider, config: Record<string, unknown>): Promise<Served> {
  const metrics = new Metrics('dns://test', false);
  const cfg = parseConfig(config);
  const node = new DnsNode(cfg, [{ host: '127.0.0.1', port: 0 }], pino({ level: 'silent' }), metrics);
  node.attach(provider);
  node.startNotify();
  await node.listen([{ host: '127.0.0.1', port: 0 }]);
  t.teardown(() => node.close());
  return { node, port: node.listeners[0]!.tcpPort, metrics };
}

export interface XfrReply {
  readonly rcode: number;
  /** Every message, as received. */
  readonly messages: Buffer[];
  /** Records of every message's answer section, in order, as zone-file text. */
  readonly records: string[];
  /** dns-packet's decoding of every message. */
  readonly decoded: dnsPacket.DecodedPacket[];
}

export interface XfrOptions {
  readonly type?: 'AXFR' | 'IXFR';
  /** IXFR: the serial of the SOA put in the authority section (none: left out). */
  readonly serial?: number;
  readonly localAddress?: string;
  readonly timeoutMs?: number;
  /** Called once connected; the reader waits for it to resolve before reading (slow reader). */
  readonly beforeRead?: (sock: net.Socket) => Promise<void>;
}

/** The query of a transfer: IXFR carries the client's SOA in authority (RFC 1995 §3). */
export function xfrQuery(zone: string, type: 'AXFR' | 'IXFR', serial?: number, id = 7): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: 0,
    questions: [{ name: zone, type, class: 'IN' }],
    authorities:
      serial === undefined
        ? []
        : [{ name: zone, type: 'SOA', ttl: 0, class: 'IN', data: { mname: `ns.${zone}`, rname: `hostmaster.${zone}`, serial, refresh: 0, retry: 0, expire: 0, minimum: 0 } }],
  });
}

/**
 * One transfer over TCP: read messages until the reply is complete — an error rcode, a
 * single-SOA reply, or the second SOA (RFC 5936 §2.2) — then close.
 */
export function transfer(port: number, zone: string, opts: XfrOptions = {}): Promise<XfrReply> {
  const q = xfrQuery(zone, opts.type ?? 'AXFR', opts.serial);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) });
    const messages: Buffer[] = [];
    const decoded: dnsPacket.DecodedPacket[] = [];
    const records: string[] = [];
    let soas = 0;
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`transfer not complete within ${opts.timeoutMs ?? 10_000} ms (${messages.length} messages, ${records.length} records)`));
    }, opts.timeoutMs ?? 10_000);
    const done = (rcode: number): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ rcode, messages, records, decoded });
    };
    sock.on('connect', () => {
      const f = Buffer.alloc(2 + q.length);
      f.writeUInt16BE(q.length, 0);
      q.copy(f, 2);
      sock.write(f);
      if (opts.beforeRead !== undefined) {
        sock.pause();
        opts.beforeRead(sock).then(() => sock.resume(), reject);
      }
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        messages.push(msg);
        const p = dnsPacket.decode(msg);
        decoded.push(p);
        const rcode = msg[3]! & 0xf;
        if (rcode !== 0) return done(rcode);
        for (const a of p.answers ?? []) {
          records.push(rrText(a).replace(' SERIAL ', ` ${(a as dnsPacket.SoaAnswer).data?.serial ?? ''} `));
          if (a.type === 'SOA') soas++;
        }
        const only = p.answers?.length === 1 && p.answers[0]!.type === 'SOA' && messages.length === 1;
        if (soas >= 2 || only) return done(0);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** `count` ClusterIP services `svc-<i>` in namespace `bulk` with one named port each. */
export function bulkServices(store: ClusterStore, count: number, from = 0): void {
  store.batch(() => {
    store.upsert({ kind: 'Namespace', obj: { name: 'bulk', labels: {} } });
    for (let i = from; i < from + count; i++) {
      store.upsert({
        kind: 'Service',
        obj: {
          namespace: 'bulk',
          name: `svc-${i}`,
          type: 'ClusterIP',
          clusterIPs: [`10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`],
          headless: false,
          ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
          publishNotReadyAddresses: false,
          labels: {},
        },
      });
    }
  });
  store.flush();
}

/** `dig @127.0.0.1 -p PORT ARGS` with room for a large transfer's text (cli.ts's `dig` keeps 1 MiB). */
export function digLarge(port: number, args: string[], bind?: string): Promise<string> {
  const argv = ['@127.0.0.1', '-p', String(port), '+time=5', '+tries=1', ...(bind !== undefined ? ['-b', bind] : []), ...args];
  return new Promise((resolve) => {
    execFile('dig', argv, { timeout: 30_000, maxBuffer: 256 << 20 }, (_err, stdout) => resolve(stdout));
  });
}
