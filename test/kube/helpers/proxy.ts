/**
 * A TCP proxy in front of the FakeApiServer, for faults the fake cannot make by itself:
 *  - `down()`/`up()`: the API server unreachable (connections reset, then refused) and back
 *    on the same address;
 *  - `stallNew`: new connections forward requests but hold every byte of the response
 *    (headers included) until `release()` — a server, or a network, that accepts a watch
 *    and then says nothing, with the response still in flight. Releasing later shows
 *    whether a request the client gave up on could still deliver anything.
 * Works for TLS too (bytes are forwarded untouched; the certificate is for 127.0.0.1).
 */
import net from 'node:net';
import { parse as parseYaml, stringify as yamlStringify } from 'yaml';

export interface ProxiedConn {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  readonly stalled: boolean;
  readonly held: Buffer[];
  /** The client side closed (destroyed or ended) while bytes were held back. */
  clientClosed: boolean;
}

export class TcpProxy {
  readonly conns = new Set<ProxiedConn>();
  /** Every connection ever accepted. */
  readonly history: ProxiedConn[] = [];
  stallNew = false;
  port = 0;
  #server: net.Server | undefined;
  readonly #targetPort: number;

  constructor(targetPort: number) {
    this.#targetPort = targetPort;
  }

  async start(port = 0): Promise<this> {
    const server = net.createServer((client) => this.#accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    this.port = (server.address() as net.AddressInfo).port;
    return this;
  }

  #accept(client: net.Socket): void {
    const upstream = net.connect(this.#targetPort, '127.0.0.1');
    const c: ProxiedConn = { client, upstream, stalled: this.stallNew, held: [], clientClosed: false };
    this.conns.add(c);
    this.history.push(c);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (c.stalled) c.held.push(d);
      else if (!client.destroyed) client.write(d);
    });
    const gone = (): void => {
      this.conns.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => {
      c.clientClosed = true;
      gone();
    });
    // A stalled connection keeps its upstream side open after the server ends it, so the
    // held bytes can still be released to a client that is still listening.
    upstream.on('close', () => {
      if (!c.stalled) gone();
    });
    client.on('error', () => {});
    upstream.on('error', () => {});
  }

  /** Connections currently open through the proxy. */
  openCount(): number {
    return this.conns.size;
  }

  /** Open connections whose responses are held back. */
  stalledOpen(): ProxiedConn[] {
    return [...this.conns].filter((c) => c.stalled);
  }

  /** Deliver every held byte to clients that are still connected (nothing for the others). */
  release(): number {
    let delivered = 0;
    for (const c of this.history) {
      if (!c.stalled) continue;
      for (const d of c.held.splice(0)) {
        if (!c.client.destroyed) {
          c.client.write(d);
          delivered += d.length;
        }
      }
    }
    return delivered;
  }

  /** The API server becomes unreachable: open connections are reset, new ones refused. */
  async down(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const c of [...this.conns]) {
      c.client.resetAndDestroy();
      c.upstream.destroy();
    }
    this.conns.clear();
    if (server !== undefined) await new Promise<void>((r) => server.close(() => r()));
  }

  /** Reachable again, on the same port. */
  async up(): Promise<void> {
    await this.start(this.port);
  }

  async close(): Promise<void> {
    await this.down();
  }

  /** The fake's kubeconfig, pointing at this proxy instead. */
  kubeconfig(yaml: string): string {
    const doc = parseYaml(yaml) as { clusters: { cluster: { server: string } }[] };
    for (const c of doc.clusters) {
      const u = new URL(c.cluster.server);
      u.port = String(this.port);
      c.cluster.server = u.toString().replace(/\/$/, '');
    }
    return yamlStringify(doc);
  }
}
