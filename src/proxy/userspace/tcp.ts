/**
 * The TCP proxy socket of one service port (kube-proxy's `tcpProxySocket`,
 * pkg/proxy/userspace/proxysocket.go): a listener on a random port of the bind address,
 * and per accepted connection a dial to an endpoint chosen by the LoadBalancerRR, then
 * bytes copied both ways.
 *
 * Kept from kube-proxy:
 * - `TryConnectEndpoints`: up to 4 dials with timeouts 250, 500, 1000, 2000 ms
 *   (`EndpointDialTimeouts`), each on the next endpoint; after the first failure the
 *   affinity lookup is skipped (`sessionAffinityReset`). No endpoints (or no state) →
 *   give up at once, no retry.
 * - `ProxyTCP`: when either direction ends or fails, both sockets are closed (no
 *   half-close), unless `halfClose` is set (then a FIN is passed on and the connection
 *   ends when both directions have; kube-proxy never did this).
 * - Established connections do not depend on the listener or on endpoint changes.
 *
 * Different on purpose:
 * - Dials run concurrently, one async flow per connection: kube-proxy dials inside the
 *   accept loop, so one slow endpoint stalls every new client of the service (a known
 *   shortcoming its own comment names).
 * - The client is *reset* (RST) when there is nothing to dial or every dial failed, so
 *   it fails at once with ECONNRESET instead of reading an EOF it may take for a reply.
 * - Memory is bounded per connection: the client is not read while dialing
 *   (`pauseOnConnect`), and each direction stops reading while the other side's write
 *   buffer is above `highWaterMark` (at most highWaterMark + one 64 KiB read per
 *   direction is held). Go's io.Copy had the same bound implicitly (32 KiB buffer).
 * - A process-wide bound on open connections (`ConnLimit`, shared by every TCP proxy of
 *   a proxier); beyond it new connections are reset. kube-proxy relied on RLIMIT_NOFILE
 *   (64000) and panicked on EMFILE.
 * - After a close starts, sockets still flushing are destroyed after `LINGER_MS`, so a
 *   peer that stops reading cannot pin a connection forever.
 */
import net from 'node:net';
import { joinHostPort } from '../../net/ip.js';
import { clientIP, nullLog, nullMetrics, type ProxyLog, type UserspaceMetrics } from './common.js';
import type { LbEndpoint, LoadBalancerRR } from './lb.js';

/** kube-proxy's EndpointDialTimeouts. */
export const DIAL_TIMEOUTS: readonly number[] = [250, 500, 1000, 2000];
/** Stream buffer per socket and direction (Node 20's default is 16 KiB; 64 KiB matches one read). */
export const DEFAULT_HIGH_WATER_MARK = 64 * 1024;
/** Longest a closing connection may take to flush what it already read. */
export const LINGER_MS = 30_000;
/** Go's default TCP keep-alive period (net.Dial and net.Listen enable it), so dead peers are found. */
const KEEPALIVE_MS = 15_000;
/**
 * Keep-alive is switched on for connections that have lived this long (checked by one
 * sweep per proxy), not at accept: it is four setsockopt(2) per socket, and most
 * connections (one request each) close long before a keep-alive probe could matter.
 */
const KEEPALIVE_AFTER_MS = 5_000;

/** Open TCP connections of a whole proxier, and their bound. */
export interface ConnLimit {
  active: number;
  readonly max: number;
}

export interface TcpProxyOptions {
  /** LoadBalancerRR key of the service port. */
  readonly key: string;
  /** ServicePortName string, for metrics and logs. */
  readonly spn: string;
  readonly lb: LoadBalancerRR;
  /** Listen address: '0.0.0.0' for IPv4 ports, '::' (IPv6 only) for IPv6 ports. */
  readonly bindAddress: string;
  readonly limit: ConnLimit;
  readonly dialTimeouts?: readonly number[];
  readonly halfClose?: boolean;
  readonly highWaterMark?: number;
  readonly metrics?: UserspaceMetrics;
  readonly log?: ProxyLog;
}

/** One accepted connection: its two sockets. */
interface Conn {
  readonly client: net.Socket;
  backend: net.Socket | undefined;
  /** A close is under way (graceful: flushing what was read). */
  closing: boolean;
  linger: NodeJS.Timeout | undefined;
  /** Sockets of this connection not yet closed (client counts from the start). */
  open: number;
  /** performance.now() at accept; 0 once keep-alive is on. */
  since: number;
}

export class TcpProxy {
  readonly #o: TcpProxyOptions;
  readonly #server: net.Server;
  readonly #conns = new Set<Conn>();
  readonly #metrics: UserspaceMetrics;
  readonly #log: ProxyLog;
  readonly #timeouts: readonly number[];
  readonly #hwm: number;
  #port = 0;
  #listening = false;
  readonly #serverClosed: Promise<void>;
  #closeCalled = false;
  #onIdle: (() => void) | undefined;
  readonly #keepAliveSweep: NodeJS.Timeout;

  constructor(o: TcpProxyOptions) {
    this.#o = o;
    this.#metrics = o.metrics ?? nullMetrics;
    this.#log = o.log ?? nullLog;
    this.#timeouts = o.dialTimeouts ?? DIAL_TIMEOUTS;
    this.#hwm = o.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    this.#server = net.createServer(
      {
        pauseOnConnect: true,
        allowHalfOpen: true,
        noDelay: true,
        highWaterMark: this.#hwm,
      },
      (s) => this.#accept(s),
    );
    this.#keepAliveSweep = setInterval(() => this.#sweepKeepAlive(), KEEPALIVE_AFTER_MS);
    this.#keepAliveSweep.unref();
    // 'close' comes once close() was called and every accepted socket is gone.
    this.#serverClosed = new Promise((resolve) => this.#server.once('close', () => resolve()));
    // Accept errors (EMFILE, ENFILE) arrive here; kube-proxy panicked, we log and go on.
    this.#server.on('error', (err) => this.#log.warn({ spn: o.spn, err: err.message }, 'userspace proxy: accept failed'));
  }

  /** The bound proxy port (0 before `listen`). */
  get port(): number {
    return this.#port;
  }

  /** Open connections (accepted, dialing or piping). */
  get connections(): number {
    return this.#conns.size;
  }

  /** Bytes held in user space by this proxy's connections (stream buffers), for tests and debugging. */
  bufferedBytes(): number {
    let n = 0;
    for (const c of this.#conns) {
      n += c.client.writableLength + c.client.readableLength;
      if (c.backend !== undefined) n += c.backend.writableLength + c.backend.readableLength;
    }
    return n;
  }

  /** Bind to a random port of the bind address; resolves with it. */
  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.#server.once('error', onError);
      this.#server.listen({ host: this.#o.bindAddress, port, ipv6Only: this.#o.bindAddress.includes(':'), exclusive: true }, () => {
        this.#server.off('error', onError);
        const a = this.#server.address();
        this.#port = typeof a === 'object' && a !== null ? a.port : 0;
        this.#listening = true;
        resolve(this.#port);
      });
    });
  }

  /**
   * Stop accepting (the service port went away or changed); established connections
   * go on until either side closes, as in kube-proxy (`stopProxy` closes the listener only).
   */
  closeListener(): void {
    if (this.#closeCalled) return;
    this.#closeCalled = true;
    this.#listening = false;
    // The listening handle closes now; the server's 'close' (and close's callback) waits
    // for every accepted socket, which is exactly what must not be waited for here.
    this.#server.close();
    this.#checkIdle();
  }

  /** Called once when the listener is closed and the last connection is gone. */
  onIdle(cb: () => void): void {
    this.#onIdle = cb;
    this.#checkIdle();
  }

  /** Close the listener and destroy every connection (proxier shutdown). */
  async destroy(): Promise<void> {
    this.closeListener();
    for (const c of [...this.#conns]) {
      c.client.destroy();
      c.backend?.destroy();
    }
    await this.#serverClosed;
  }

  /** Keep-alive (Go's 15 s) on the sockets of connections older than KEEPALIVE_AFTER_MS. */
  #sweepKeepAlive(): void {
    const old = performance.now() - KEEPALIVE_AFTER_MS;
    for (const c of this.#conns) {
      if (c.since === 0 || c.since > old) continue;
      c.since = 0;
      if (!c.client.destroyed) c.client.setKeepAlive(true, KEEPALIVE_MS);
      if (c.backend !== undefined && !c.backend.destroyed) c.backend.setKeepAlive(true, KEEPALIVE_MS);
    }
  }

  #checkIdle(): void {
    if (!this.#listening && this.#conns.size === 0) clearInterval(this.#keepAliveSweep);
    if (!this.#listening && this.#conns.size === 0 && this.#onIdle !== undefined) {
      const cb = this.#onIdle;
      this.#onIdle = undefined;
      cb();
    }
  }

  #accept(client: net.Socket): void {
    try {
      const { spn, limit } = this.#o;
      client.on('error', (err) => this.#log.debug({ spn, err: err.message }, 'userspace proxy: client socket error'));
      if (limit.active >= limit.max) {
        this.#metrics.rejected?.(spn, 'TCP', 'limit');
        client.resetAndDestroy();
        return;
      }
      limit.active++;
      const conn: Conn = { client, backend: undefined, closing: false, linger: undefined, open: 1, since: performance.now() };
      this.#conns.add(conn);
      this.#metrics.connection(spn, 'TCP');
      this.#metrics.active(spn, 1);
      client.once('close', () => this.#socketClosed(conn, client));
      void this.#dialAndPipe(conn).catch((err: unknown) => {
        this.#log.warn({ spn, err: String(err) }, 'userspace proxy: connection handler failed');
        client.destroy();
        conn.backend?.destroy();
      });
    } catch (err) {
      this.#log.warn({ spn: this.#o.spn, err: String(err) }, 'userspace proxy: accept handler failed');
      client.destroy();
    }
  }

  #socketClosed(conn: Conn, s: net.Socket): void {
    // An abrupt close (error, reset) of one side takes the other down at once; a graceful
    // one leaves the other flushing (bounded by the linger timer).
    if (!conn.closing) {
      const other = s === conn.client ? conn.backend : conn.client;
      other?.destroy();
    }
    if (--conn.open > 0) return;
    if (conn.linger !== undefined) clearTimeout(conn.linger);
    if (!this.#conns.delete(conn)) return;
    this.#o.limit.active--;
    this.#metrics.active(this.#o.spn, -1);
    this.#checkIdle();
  }

  /** `TryConnectEndpoints`, then `ProxyTCP`. */
  async #dialAndPipe(conn: Conn): Promise<void> {
    const { key, spn, lb } = this.#o;
    const client = conn.client;
    let ip: string | undefined;
    const source = (): string => (ip ??= clientIP(client.remoteAddress));
    let reset = false;
    for (let i = 0; i < this.#timeouts.length; i++) {
      if (client.destroyed) return;
      const ep = lb.nextEndpoint(key, source, reset);
      if (ep === undefined) {
        this.#metrics.connectError(spn);
        this.#metrics.rejected?.(spn, 'TCP', 'no-endpoints');
        this.#log.debug({ spn }, 'userspace proxy: no endpoints, connection reset');
        client.resetAndDestroy();
        return;
      }
      if (i > 0) this.#metrics.retry(spn);
      const backend = await this.#dial(ep, this.#timeouts[i] as number, client);
      if (backend instanceof Error) {
        this.#log.debug({ spn, endpoint: ep.key, attempt: i + 1, err: backend.message }, 'userspace proxy: dial failed');
        reset = true;
        continue;
      }
      if (client.destroyed) {
        backend.destroy();
        return;
      }
      this.#pipe(conn, backend);
      return;
    }
    this.#metrics.connectError(spn);
    this.#metrics.rejected?.(spn, 'TCP', 'dial-failed');
    this.#log.warn({ spn, client: source() }, 'userspace proxy: failed to connect to an endpoint');
    if (!client.destroyed) client.resetAndDestroy();
  }

  /** One dial with a timeout; resolves with the connected socket or the error. Aborted if the client goes. */
  #dial(ep: LbEndpoint, timeoutMs: number, client: net.Socket): Promise<net.Socket | Error> {
    return new Promise((resolve) => {
      let done = false;
      // `highWaterMark` reaches the stream.Duplex constructor (net.Socket passes its
      // options on); @types/node does not list it for connect.
      const opts: net.NetConnectOpts & { highWaterMark: number } = {
        host: ep.ip,
        port: ep.port,
        allowHalfOpen: true,
        noDelay: true,
        highWaterMark: this.#hwm,
      };
      const s = net.connect(opts);
      const finish = (r: net.Socket | Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.off('connect', onConnect);
        client.off('close', onClientClose);
        if (r instanceof Error) {
          s.on('error', () => {});
          s.destroy();
        }
        resolve(r);
      };
      const onConnect = (): void => finish(s);
      const onClientClose = (): void => finish(new Error('client closed while dialing'));
      const timer = setTimeout(() => finish(new Error(`dial ${joinHostPort(ep.ip, ep.port)}: i/o timeout after ${timeoutMs} ms`)), timeoutMs);
      s.once('connect', onConnect);
      s.once('error', (err) => finish(err));
      client.once('close', onClientClose);
    });
  }

  #pipe(conn: Conn, backend: net.Socket): void {
    const { spn } = this.#o;
    const client = conn.client;
    conn.backend = backend;
    conn.open++;
    backend.on('error', (err) => this.#log.debug({ spn, err: err.message }, 'userspace proxy: backend socket error'));
    backend.once('close', () => this.#socketClosed(conn, backend));
    const m = this.#metrics;
    const copy = (src: net.Socket, dst: net.Socket, dir: 'in' | 'out'): void => {
      src.on('data', (chunk: Buffer) => {
        m.bytes(spn, dir, chunk.length);
        if (!dst.write(chunk)) src.pause();
      });
      dst.on('drain', () => {
        if (!conn.closing || this.#o.halfClose === true) src.resume();
      });
      src.once('end', () => this.#ended(conn, src, dst));
    };
    copy(client, backend, 'in');
    copy(backend, client, 'out');
    client.resume();
  }

  /** `src` sent FIN and everything it sent is in `dst`'s buffer. */
  #ended(conn: Conn, src: net.Socket, dst: net.Socket): void {
    if (this.#o.halfClose === true) {
      // Pass the FIN on; each socket closes itself (autoDestroy) once both of its
      // directions are done.
      dst.end();
      if (src.writableEnded) this.#startLinger(conn);
      return;
    }
    // kube-proxy: either direction ending closes both. What was already read is still
    // delivered (Go's Close leaves written data to the kernel; ours is in user space).
    // An 'end' already queued on the other side changes nothing once closing.
    if (conn.closing) return;
    conn.closing = true;
    dst.pause();
    dst.removeAllListeners('data');
    // A socket with nothing left to write is closed at once: close(2) sends the FIN that
    // end() would, without a separate shutdown(2). One still flushing ends first.
    if (dst.writableLength === 0) dst.destroy();
    else dst.end(() => dst.destroy());
    if (src.writableLength === 0) src.destroy();
    else src.end(() => src.destroy());
    this.#startLinger(conn);
  }

  #startLinger(conn: Conn): void {
    if (conn.linger !== undefined) return;
    conn.closing = true;
    conn.linger = setTimeout(() => {
      conn.client.destroy();
      conn.backend?.destroy();
    }, LINGER_MS);
    conn.linger.unref();
  }
}
