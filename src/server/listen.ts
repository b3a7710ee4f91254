/**
 * UDP and TCP listeners for one `--dns HOST:PORT` address.
 *
 * TCP follows RFC 7766: two-byte length framing (§8), several queries per
 * connection answered in order (§6.2.1.1), an idle timeout (§6.2.3), and bounds on
 * connections, buffered bytes and pending replies so a slow or hostile client costs
 * a fixed amount of memory.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { isIPv6 } from 'node:net';
import type { DnsHandler } from './handler.js';

export interface ListenOptions {
  readonly host: string;
  readonly port: number;
  /** Close a TCP connection idle for this long (ms). */
  readonly tcpIdleTimeout?: number;
  /** Most TCP connections at once; further ones are closed on accept. */
  readonly maxTcpConnections?: number;
  readonly onError?: (err: unknown, where: string) => void;
}

export interface Listener {
  readonly udpPort: number;
  readonly tcpPort: number;
  readonly host: string;
  /** Currently open TCP connections. */
  tcpConnections(): number;
  close(): Promise<void>;
}

/** Bound listening failure, with a one-line reason (address in use, permission). */
export class ListenError extends Error {
  readonly code: string;
  constructor(addr: string, proto: string, cause: NodeJS.ErrnoException) {
    const why =
      cause.code === 'EADDRINUSE'
        ? 'address already in use'
        : cause.code === 'EACCES'
          ? 'permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)'
          : cause.code === 'EADDRNOTAVAIL'
            ? 'address not available on this host'
            : cause.message;
    super(`cannot listen on ${proto} ${addr}: ${why}`);
    this.code = cause.code ?? 'ELISTEN';
  }
}

const MAX_PENDING_WRITE = 1 << 20;

export async function listen(handler: DnsHandler, opts: ListenOptions): Promise<Listener> {
  const addr = isIPv6(opts.host) ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
  const onError = opts.onError ?? (() => {});
  const idle = opts.tcpIdleTimeout ?? 10_000;
  const maxConns = opts.maxTcpConnections ?? 1000;

  const tcp = net.createServer({ noDelay: true });
  const conns = new Set<net.Socket>();
  tcp.on('connection', (sock) => serveTcp(sock, handler, conns, maxConns, idle, onError));
  tcp.on('error', (err) => onError(err, 'tcp-server'));

  await new Promise<void>((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException): void => reject(new ListenError(addr, 'tcp', err));
    tcp.once('error', fail);
    tcp.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      tcp.off('error', fail);
      resolve();
    });
  });
  const tcpPort = (tcp.address() as net.AddressInfo).port;
  // With port 0, UDP takes the port TCP got, so one number serves both (as dig expects).
  const udpPort = opts.port === 0 ? tcpPort : opts.port;

  const udp = dgram.createSocket({ type: isIPv6(opts.host) ? 'udp6' : 'udp4' });
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: NodeJS.ErrnoException): void => reject(new ListenError(addr, 'udp', err));
      udp.once('error', fail);
      udp.bind({ address: opts.host, port: udpPort, exclusive: true }, () => {
        udp.off('error', fail);
        resolve();
      });
    });
  } catch (err) {
    await new Promise<void>((r) => tcp.close(() => r()));
    throw err;
  }
  udp.on('error', (err) => onError(err, 'udp'));
  udp.on('message', (msg, rinfo) => {
    let out: Buffer | undefined | Promise<Buffer | undefined>;
    try {
      out = handler.handle(msg, 'udp', rinfo.family === 'IPv6' ? '2' : '1', rinfo.address);
    } catch (err) {
      onError(err, 'udp-handle');
      return;
    }
    const send = (b: Buffer | undefined): void => {
      if (b === undefined) return;
      udp.send(b, rinfo.port, rinfo.address, (err) => {
        if (err) onError(err, 'udp-send');
      });
    };
    if (out instanceof Promise) out.then(send, (err: unknown) => onError(err, 'udp-handle'));
    else send(out);
  });

  return {
    host: opts.host,
    udpPort,
    tcpPort,
    tcpConnections: () => conns.size,
    close: async () => {
      for (const c of conns) c.destroy();
      await Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        new Promise<void>((r) => tcp.close(() => r())),
      ]);
    },
  };
}

function serveTcp(
  sock: net.Socket,
  handler: DnsHandler,
  conns: Set<net.Socket>,
  maxConns: number,
  idle: number,
  onError: (err: unknown, where: string) => void,
): void {
  if (conns.size >= maxConns) {
    sock.destroy();
    return;
  }
  conns.add(sock);
  sock.setTimeout(idle, () => sock.destroy());
  sock.on('close', () => conns.delete(sock));
  sock.on('error', () => sock.destroy());
  const family = sock.remoteFamily === 'IPv6' ? '2' : '1';
  let buf: Buffer = Buffer.alloc(0);
  // Replies go out in query order even when a later stage answers asynchronously.
  let chain: Promise<void> = Promise.resolve();
  let pending = 0;
  sock.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (len < 12) {
        // A message shorter than a header is never valid (RFC 1035 §4.1.1).
        sock.destroy();
        return;
      }
      if (buf.length < 2 + len) break;
      const msg = buf.subarray(2, 2 + len);
      buf = buf.subarray(2 + len);
      let out: Buffer | undefined | Promise<Buffer | undefined>;
      try {
        out = handler.handle(msg, 'tcp', family, sock.remoteAddress);
      } catch (err) {
        onError(err, 'tcp-handle');
        out = undefined;
      }
      pending++;
      if (pending > 64) sock.pause();
      const write = (b: Buffer | undefined): void => {
        pending--;
        if (pending <= 64 && sock.isPaused()) sock.resume();
        if (b === undefined || sock.destroyed) return;
        const frame = Buffer.allocUnsafe(2 + b.length);
        frame.writeUInt16BE(b.length, 0);
        b.copy(frame, 2);
        sock.write(frame);
        if (sock.writableLength > MAX_PENDING_WRITE) {
          // The client does not read its answers: stop reading its queries.
          sock.pause();
          sock.once('drain', () => sock.resume());
        }
      };
      if (out instanceof Promise) {
        const p = out;
        chain = chain.then(() => p.then(write, () => write(undefined)));
      } else if (pending === 1) {
        write(out);
      } else {
        const b = out;
        chain = chain.then(() => write(b));
      }
    }
  });
}
