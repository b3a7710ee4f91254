/**
 * The UDP proxy socket of one service port (kube-proxy's `udpProxySocket`,
 * pkg/proxy/userspace/proxysocket.go): one datagram socket on a random port, and per
 * client `ip:port` a flow with its own socket *connected* to the endpoint the
 * LoadBalancerRR chose (`ClientCache`, `getBackendConn`).
 *
 * Kept from kube-proxy:
 * - Client → backend: the datagram goes out on the flow's connected socket.
 * - Backend → client (`proxyClient`): the reply is sent from the *service* socket, so
 *   conntrack un-REDIRECTs it and the client sees the VIP and service port as source.
 * - A flow ends after `idleTimeoutMs` (kube-proxy's `udpIdleTimeout`, 250 ms) without a
 *   datagram in either direction, or when the backend answers with ICMP unreachable
 *   (ECONNREFUSED on the connected socket); the next datagram picks an endpoint again.
 * - No endpoints: the datagram is dropped.
 * - A failed connect of the flow socket moves on to the next endpoint (`TryConnectEndpoints`,
 *   at most 4 tries; UDP connects rarely fail, as in Go).
 *
 * Different on purpose:
 * - With `loopback` (the proxier sets it when it installs rules) a second service socket
 *   is bound to 127.0.0.1 / ::1 on its own port (`hostPort`), the target of the host
 *   (nat OUTPUT) REDIRECT rules. REDIRECT in OUTPUT rewrites the destination to the
 *   loopback address; a reply from the wildcard socket would leave with the client's
 *   own address as source, match no conntrack entry and reach the client un-NATed (from
 *   the proxy port, not the VIP). From the loopback-bound socket it matches. kube-proxy
 *   avoided this by DNATing host traffic to a chosen host IP.
 * - Datagrams are not truncated at 4096 bytes: Node reads up to 64 KiB.
 * - Bounded: at most `maxClients` flows per service port (datagrams of further new
 *   clients are dropped; live flows are kept), at most `MAX_PENDING` bytes queued per
 *   flow while its socket connects, and datagrams are dropped while a socket's send
 *   queue holds more than `MAX_SEND_QUEUE` bytes (kube-proxy: unbounded map, blocking writes).
 */
import dgram from 'node:dgram';
import { nullLog, nullMetrics, type ProxyLog, type UserspaceMetrics } from './common.js';
import type { LbEndpoint, LoadBalancerRR } from './lb.js';
import { DIAL_TIMEOUTS } from './tcp.js';

/** kube-proxy's udpIdleTimeout default. */
export const DEFAULT_UDP_IDLE_TIMEOUT_MS = 250;
/** Flows (client `ip:port`) per service port. */
export const DEFAULT_MAX_CLIENTS = 4096;
/** Bytes queued per flow while its backend socket connects. */
export const MAX_PENDING = 256 * 1024;
/** Bytes a socket's send queue may hold before datagrams are dropped. */
export const MAX_SEND_QUEUE = 1024 * 1024;

export interface UdpProxyOptions {
  /** LoadBalancerRR key of the service port. */
  readonly key: string;
  readonly spn: string;
  readonly lb: LoadBalancerRR;
  /** '0.0.0.0' for IPv4 ports, '::' (IPv6 only) for IPv6 ports. */
  readonly bindAddress: string;
  readonly idleTimeoutMs?: number;
  readonly maxClients?: number;
  /** Also listen on the loopback address (own port) for host-originated, REDIRECTed traffic. */
  readonly loopback?: boolean;
  readonly metrics?: UserspaceMetrics;
  readonly log?: ProxyLog;
}

interface Flow {
  readonly id: string;
  /** The service socket the client talks to; replies leave from it. */
  readonly via: dgram.Socket;
  /** Client address and port (where replies go). */
  readonly address: string;
  readonly port: number;
  sock: dgram.Socket;
  endpoint: LbEndpoint;
  /** The load balancer's endpoint generation when `endpoint` was last known to be current. */
  gen: number;
  connected: boolean;
  /** Datagrams received before the connect completed. */
  pending: Buffer[];
  pendingBytes: number;
  timer: NodeJS.Timeout;
  closed: boolean;
}

export class UdpProxy {
  readonly #o: UdpProxyOptions;
  readonly #sock: dgram.Socket;
  readonly #lo: dgram.Socket | undefined;
  readonly #flows = new Map<string, Flow>();
  readonly #metrics: UserspaceMetrics;
  readonly #log: ProxyLog;
  readonly #idle: number;
  readonly #maxClients: number;
  readonly #type: 'udp4' | 'udp6';
  #port = 0;
  #hostPort = 0;
  #closed = false;

  constructor(o: UdpProxyOptions) {
    this.#o = o;
    this.#metrics = o.metrics ?? nullMetrics;
    this.#log = o.log ?? nullLog;
    this.#idle = o.idleTimeoutMs ?? DEFAULT_UDP_IDLE_TIMEOUT_MS;
    this.#maxClients = o.maxClients ?? DEFAULT_MAX_CLIENTS;
    this.#type = o.bindAddress.includes(':') ? 'udp6' : 'udp4';
    this.#sock = this.#socket();
    this.#lo = o.loopback === true ? this.#socket() : undefined;
  }

  #socket(): dgram.Socket {
    const sock = dgram.createSocket({ type: this.#type, ipv6Only: this.#type === 'udp6' });
    sock.on('message', (msg, rinfo) => {
      try {
        this.#fromClient(sock, msg, rinfo);
      } catch (err) {
        this.#log.warn({ spn: this.#o.spn, err: String(err) }, 'userspace proxy: UDP handler failed');
      }
    });
    return sock;
  }

  get port(): number {
    return this.#port;
  }

  /** Live flows. */
  get flows(): number {
    return this.#flows.size;
  }

  /** The loopback socket's port (the host portal's target), or `port` without one. */
  get hostPort(): number {
    return this.#lo === undefined ? this.#port : this.#hostPort;
  }

  /** Bind the service socket (and the loopback one) to random ports; resolves with the first. */
  async listen(port = 0): Promise<number> {
    this.#port = await this.#bind(this.#sock, this.#o.bindAddress, port);
    if (this.#lo !== undefined) this.#hostPort = await this.#bind(this.#lo, this.#type === 'udp6' ? '::1' : '127.0.0.1', 0);
    return this.#port;
  }

  #bind(sock: dgram.Socket, address: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      sock.once('error', onError);
      sock.bind({ address, port, exclusive: true }, () => {
        sock.off('error', onError);
        // Later errors (a failed send is reported to its callback; this is the rest) are logged.
        sock.on('error', (err) => this.#log.warn({ spn: this.#o.spn, err: err.message }, 'userspace proxy: UDP socket error'));
        resolve(sock.address().port);
      });
    });
  }

  /** Close the service socket and every flow (live UDP flows of the service break, as in kube-proxy). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const f of [...this.#flows.values()]) this.#closeFlow(f);
    const close = (sock: dgram.Socket): Promise<void> =>
      new Promise((resolve) => {
        try {
          sock.close(() => resolve());
        } catch {
          resolve(); // never bound
        }
      });
    await Promise.all([close(this.#sock), ...(this.#lo === undefined ? [] : [close(this.#lo)])]);
  }

  #fromClient(via: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const { spn } = this.#o;
    const id = `${via === this.#sock ? '' : 'lo|'}${rinfo.address}|${rinfo.port}`;
    let f = this.#flows.get(id);
    if (f !== undefined) {
      // A flow whose endpoint left ends here, and the datagram starts a new one on a
      // current endpoint (what the rules modes get by deleting the conntrack entry): a
      // client that keeps sending would otherwise never reach the idle timeout.
      const gen = this.#o.lb.generation(this.#o.key);
      if (gen !== f.gen) {
        if (this.#o.lb.hasEndpoint(this.#o.key, f.endpoint.key)) f.gen = gen;
        else {
          this.#closeFlow(f);
          f = undefined;
        }
      }
    }
    if (f === undefined) {
      if (this.#flows.size >= this.#maxClients) {
        this.#metrics.rejected?.(spn, 'UDP', 'limit');
        return;
      }
      const ep = this.#o.lb.nextEndpoint(this.#o.key, rinfo.address, false);
      if (ep === undefined) {
        this.#metrics.connectError(spn);
        this.#metrics.rejected?.(spn, 'UDP', 'no-endpoints');
        return;
      }
      f = this.#newFlow(id, via, rinfo, ep);
    }
    this.#metrics.bytes(spn, 'in', msg.length);
    f.timer.refresh();
    if (!f.connected) {
      if (f.pendingBytes + msg.length <= MAX_PENDING) {
        f.pending.push(msg);
        f.pendingBytes += msg.length;
      }
      return;
    }
    this.#toBackend(f, msg);
  }

  #newFlow(id: string, via: dgram.Socket, rinfo: dgram.RemoteInfo, ep: LbEndpoint): Flow {
    const timer = setTimeout(() => this.#closeFlow(f), this.#idle);
    timer.unref();
    const f: Flow = {
      id,
      via,
      address: rinfo.address,
      port: rinfo.port,
      sock: dgram.createSocket(this.#type),
      endpoint: ep,
      gen: this.#o.lb.generation(this.#o.key),
      connected: false,
      pending: [],
      pendingBytes: 0,
      timer,
      closed: false,
    };
    this.#flows.set(id, f);
    this.#metrics.connection(this.#o.spn, 'UDP');
    this.#metrics.active(this.#o.spn, 1);
    this.#connect(f, 0);
    return f;
  }

  /** Connect the flow's socket to its endpoint; on failure try the next (affinity reset). */
  #connect(f: Flow, attempt: number): void {
    const { spn } = this.#o;
    const sock = f.sock;
    sock.on('error', (err: Error) => {
      if (f.sock !== sock) return;
      // ECONNREFUSED: ICMP port unreachable from the endpoint. Any read error ends the flow.
      this.#log.debug({ spn, endpoint: f.endpoint.key, err: err.message }, 'userspace proxy: UDP flow closed on error');
      this.#closeFlow(f);
    });
    sock.on('message', (msg) => {
      try {
        this.#toClient(f, msg);
      } catch (err) {
        this.#log.warn({ spn, err: String(err) }, 'userspace proxy: UDP reply handler failed');
      }
    });
    sock.connect(f.endpoint.port, f.endpoint.ip, (err?: Error) => {
      if (f.closed || f.sock !== sock) return;
      if (err === undefined || err === null) {
        f.connected = true;
        const queued = f.pending;
        f.pending = [];
        f.pendingBytes = 0;
        for (const m of queued) this.#toBackend(f, m);
        return;
      }
      this.#log.debug({ spn, endpoint: f.endpoint.key, err: err.message }, 'userspace proxy: UDP connect failed');
      closeQuietly(sock);
      const next = attempt + 1 < DIAL_TIMEOUTS.length ? this.#o.lb.nextEndpoint(this.#o.key, f.address, true) : undefined;
      if (next === undefined) {
        this.#metrics.connectError(spn);
        this.#metrics.rejected?.(spn, 'UDP', 'dial-failed');
        this.#closeFlow(f);
        return;
      }
      this.#metrics.retry(spn);
      f.endpoint = next;
      f.sock = dgram.createSocket(this.#type);
      this.#connect(f, attempt + 1);
    });
  }

  #toBackend(f: Flow, msg: Buffer): void {
    if (f.sock.getSendQueueSize() > MAX_SEND_QUEUE) return;
    f.sock.send(msg, (err) => {
      if (err !== null && err !== undefined) this.#log.debug({ spn: this.#o.spn, err: err.message }, 'userspace proxy: UDP send to backend failed');
    });
  }

  #toClient(f: Flow, msg: Buffer): void {
    if (f.closed || this.#closed) return;
    f.timer.refresh();
    this.#metrics.bytes(this.#o.spn, 'out', msg.length);
    if (f.via.getSendQueueSize() > MAX_SEND_QUEUE) return;
    f.via.send(msg, f.port, f.address, (err) => {
      if (err !== null && err !== undefined) this.#log.debug({ spn: this.#o.spn, err: err.message }, 'userspace proxy: UDP send to client failed');
    });
  }

  #closeFlow(f: Flow): void {
    if (f.closed) return;
    f.closed = true;
    clearTimeout(f.timer);
    f.pending = [];
    closeQuietly(f.sock);
    if (this.#flows.get(f.id) === f) this.#flows.delete(f.id);
    this.#metrics.active(this.#o.spn, -1);
  }
}

function closeQuietly(s: dgram.Socket): void {
  try {
    s.close();
  } catch {
    // already closed
  }
}
