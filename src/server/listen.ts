/**
 * UDP and TCP listeners for one `--dns HOST:PORT` address.
 *
 * TCP follows RFC 7766: two-byte length framing (§8), several queries per
 * connection answered in order (§6.2.1.1), an idle timeout (§6.2.3) that shrinks as
 * the connection slots fill, and bounds on connections, buffered bytes and pending
 * replies so a slow or hostile client costs a fixed amount of memory. At the cap, a
 * new connection takes the slot of the one idle longest (§6.2.3: the server may close
 * idle connections "to free up resources"), so held-open connections cannot lock out
 * a real client. A zone transfer's messages (RFC 5936 §2.2) are made one
 * at a time as the connection drains.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { isIPv6 } from 'node:net';
import { joinHostPort } from '../net/ip.js';
import type { DnsHandler } from './handler.js';
import { isReplyStream, type ReplyStream } from './transfer.js';

export interface ListenOptions {
  readonly host: string;
  readonly port: number;
  /**
   * A `--workers` worker: the cluster module shares one socket per address among the
   * workers, so bind non-exclusively (the kernel hands each datagram to one reader).
   */
  readonly shared?: boolean;
  /** UDP receive buffer in bytes (default 4 MiB, capped by the kernel's rmem_max). */
  readonly udpRecvBuffer?: number;
  /** Close a TCP connection idle for this long (ms). */
  readonly tcpIdleTimeout?: number;
  /**
   * Close a TCP connection whose current message is not complete this long (ms) after
   * its first byte (length prefix included) arrived, however slowly the rest trickles
   * in: a trickle keeps the idle timer alive, this deadline does not move. Default 5 s.
   */
  readonly tcpReadTimeout?: number;
  /**
   * Replies queued for one TCP connection (bytes) above which the server stops
   * reading that connection's queries until the client reads its answers. With the
   * connection cap this bounds the memory hostile clients can pin. Default 256 KiB.
   */
  readonly tcpMaxPendingWrite?: number;
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

/** Queries of one connection awaiting an asynchronous (upstream) answer before reading stops. */
const MAX_PENDING_QUERIES = 64;
/** The shortest idle timeout under pressure (a client gets this long to send its query). */
const MIN_IDLE_TIMEOUT = 1_000;

/**
 * The idle timeout for a connection accepted when `open` of `max` slots are taken: the
 * configured one up to half full, then falling linearly to MIN_IDLE_TIMEOUT at the cap,
 * as Unbound shortens tcp-idle-timeout when its free TCP slots run out (RFC 7766
 * §6.2.3: servers "may shorten the timeout" under load).
 */
export function idleTimeoutFor(open: number, max: number, idle: number): number {
  const half = max / 2;
  if (open <= half || idle <= MIN_IDLE_TIMEOUT) return idle;
  const left = Math.max(0, max - open) / (max - half);
  return Math.max(MIN_IDLE_TIMEOUT, Math.round(idle * left));
}

/** What the accept path needs to know of an open connection. */
interface ConnState {
  /** performance.now() of the last byte read or reply written. */
  last: number;
  /** A query is being answered (asynchronously) or a transfer is being sent. */
  busy: boolean;
}

/**
 * The connection idle longest with nothing in flight, or undefined when every one is
 * busy. O(connections), on accept at the cap only (at most maxConns, 1,000 by default).
 */
function idlest(conns: Map<net.Socket, ConnState>): net.Socket | undefined {
  let best: net.Socket | undefined;
  let bestLast = Infinity;
  for (const [sock, st] of conns) {
    if (!st.busy && st.last < bestLast) {
      best = sock;
      bestLast = st.last;
    }
  }
  return best;
}

/**
 * Messages of a multi-message reply (zone transfer) written in one go before yielding
 * to the event loop, so a large transfer to a fast reader does not hold up other clients.
 */
const STREAM_BURST = 16;

interface TcpLimits {
  /** Idle timeout while at most half the slots are taken. */
  readonly idle: number;
  readonly readTimeout: number;
  readonly maxConns: number;
  readonly maxPendingWrite: number;
}

export async function listen(handler: DnsHandler, opts: ListenOptions): Promise<Listener> {
  const addr = joinHostPort(opts.host, opts.port);
  const onError = opts.onError ?? (() => {});
  const limits: TcpLimits = {
    idle: opts.tcpIdleTimeout ?? 10_000,
    readTimeout: opts.tcpReadTimeout ?? 5_000,
    maxConns: opts.maxTcpConnections ?? 1000,
    maxPendingWrite: opts.tcpMaxPendingWrite ?? 256 * 1024,
  };

  const tcp = net.createServer({ noDelay: true });
  const conns = new Map<net.Socket, ConnState>();
  tcp.on('connection', (sock) => serveTcp(sock, handler, conns, limits, onError));
  tcp.on('error', (err) => onError(err, 'tcp-server'));

  await new Promise<void>((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException): void => reject(new ListenError(addr, 'tcp', err));
    tcp.once('error', fail);
    tcp.listen({ host: opts.host, port: opts.port, exclusive: !opts.shared }, () => {
      tcp.off('error', fail);
      resolve();
    });
  });
  const tcpPort = (tcp.address() as net.AddressInfo).port;
  // With port 0, UDP takes the port TCP got, so one number serves both (as dig expects).
  const udpPort = opts.port === 0 ? tcpPort : opts.port;

  // A larger receive buffer absorbs bursts: the 208 KB default holds ~10 ms at 20k q/s
  // (the kernel caps it at net.core.rmem_max).
  //
  // Replies go to rinfo.address, always an address literal: Node's default lookup
  // (dns.lookup) would regex-check it and defer every send to a nextTick. After bind,
  // the lookup hands the literal straight back, so the send happens synchronously.
  let bound = false;
  const lookup = (address: string, family: unknown, cb: (err: Error | null, address: string, family: number) => void): void => {
    if (bound) cb(null, address, family === 6 ? 6 : 4);
    else dns.lookup(address, family as number, cb);
  };
  const udp = dgram.createSocket({
    type: isIPv6(opts.host) ? 'udp6' : 'udp4',
    recvBufferSize: opts.udpRecvBuffer ?? 4 << 20,
    sendBufferSize: 1 << 20,
    lookup: lookup as dgram.SocketOptions['lookup'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: NodeJS.ErrnoException): void => reject(new ListenError(addr, 'udp', err));
      udp.once('error', fail);
      udp.bind({ address: opts.host, port: udpPort, exclusive: !opts.shared }, () => {
        udp.off('error', fail);
        bound = true;
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
    // No send callback: with one, Node queues a nextTick per datagram even when the
    // send completed synchronously (~1.5 µs of a ~30 µs query). A failed send without a
    // callback is emitted as the socket's 'error' event, which onError still reports.
    const send = (b: Buffer | undefined): void => {
      if (b === undefined) return;
      udp.send(b, rinfo.port, rinfo.address);
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
      for (const c of conns.keys()) c.destroy();
      await Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        new Promise<void>((r) => tcp.close(() => r())),
      ]);
    },
  };
}

/**
 * One TCP connection (RFC 7766). Bounds, so a slow or hostile client costs a fixed
 * amount of memory and a connection slot for a bounded time:
 * - idle timeout (no traffic either way), and a per-message read deadline from the
 *   message's first byte (a client trickling one byte every few seconds is closed);
 * - input is kept as a list of chunks and joined once a message is complete, so a
 *   message sent byte by byte costs O(size), not O(size²);
 * - when the replies queued for the client pass `maxPendingWrite` (it does not read
 *   them), or too many queries await an asynchronous answer, the connection is
 *   paused and no further buffered query is handled until the backlog drains: what
 *   one connection holds is at most maxPendingWrite + one reply + what was already
 *   read (one socket read plus one partial message).
 */
function serveTcp(
  sock: net.Socket,
  handler: DnsHandler,
  conns: Map<net.Socket, ConnState>,
  limits: TcpLimits,
  onError: (err: unknown, where: string) => void,
): void {
  if (conns.size >= limits.maxConns) {
    // Full: the connection idle longest makes room; when every one has a query in
    // flight there is nothing idle to close, and the newcomer is refused.
    const victim = idlest(conns);
    if (victim === undefined) {
      sock.destroy();
      return;
    }
    conns.delete(victim);
    victim.destroy();
  }
  const state: ConnState = { last: performance.now(), busy: false };
  conns.set(sock, state);
  sock.setTimeout(idleTimeoutFor(conns.size, limits.maxConns, limits.idle), () => sock.destroy());
  const family = sock.remoteFamily === 'IPv6' ? '2' : '1';

  // Unconsumed input: chunks[0] from offset `head` on, then the rest; `buffered` bytes in all.
  const chunks: Buffer[] = [];
  let head = 0;
  let buffered = 0;
  /** When the first byte of the incomplete message at the front arrived (0: none pending). */
  let frameStart = 0;
  let readTimer: NodeJS.Timeout | undefined;
  /** Replies go out in query order even when a later stage answers asynchronously. */
  let chain: Promise<void> = Promise.resolve();
  let asyncPending = 0;
  let writeBlocked = false;
  /** A multi-message reply is queued or being sent (no further query is handled meanwhile). */
  let streaming = false;

  const byteAt = (i: number): number => {
    let k = 0;
    let off = head + i;
    while (off >= chunks[k]!.length) off -= chunks[k++]!.length;
    return chunks[k]![off]!;
  };
  const take = (n: number): Buffer => {
    const first = chunks[0]!;
    let out: Buffer;
    if (first.length - head >= n) {
      out = first.subarray(head, head + n);
      head += n;
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = chunks[0]!;
        const m = Math.min(n - filled, c.length - head);
        c.copy(out, filled, head, head + m);
        filled += m;
        head += m;
        if (head === c.length) {
          chunks.shift();
          head = 0;
        }
      }
    }
    if (chunks.length > 0 && head === chunks[0]!.length) {
      chunks.shift();
      head = 0;
    }
    buffered -= n;
    return out;
  };

  const clearReadTimer = (): void => {
    if (readTimer !== undefined) clearTimeout(readTimer);
    readTimer = undefined;
  };
  const armReadTimer = (): void => {
    if (readTimer !== undefined) return;
    const left = frameStart + limits.readTimeout - performance.now();
    readTimer = setTimeout(() => {
      readTimer = undefined;
      if (frameStart === 0 || sock.destroyed) return;
      if (performance.now() - frameStart >= limits.readTimeout - 1) sock.destroy();
      else armReadTimer();
    }, Math.max(1, left));
    readTimer.unref();
  };

  const writeFrame = (b: Buffer): void => {
    state.last = performance.now();
    const frame = Buffer.allocUnsafe(2 + b.length);
    frame.writeUInt16BE(b.length, 0);
    b.copy(frame, 2);
    sock.write(frame);
  };
  const write = (b: Buffer | undefined): void => {
    if (b === undefined || sock.destroyed) return;
    writeFrame(b);
    if (!writeBlocked && sock.writableLength > limits.maxPendingWrite) {
      // The client does not read its answers: stop handling its queries until it does.
      writeBlocked = true;
      sock.once('drain', () => {
        writeBlocked = false;
        pump();
      });
    }
  };

  /**
   * A multi-message reply (zone transfer, RFC 5936 §2.2): each message is made when the
   * previous ones have left (the queue under maxPendingWrite), so what a transfer holds
   * is one message plus the socket's queue, however large the zone and slow the reader.
   * Resolves when the reply is complete or the connection is gone (the stream is closed).
   */
  const sendStream = (s: ReplyStream): Promise<void> =>
    new Promise<void>((resolve) => {
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        sock.off('close', finish);
        sock.off('drain', step);
        s.close();
        resolve();
      };
      function step(): void {
        if (finished) return;
        let sent = 0;
        while (!sock.destroyed) {
          let b: Buffer | undefined;
          try {
            b = s.next();
          } catch (err) {
            onError(err, 'tcp-stream');
            sock.destroy();
            break;
          }
          if (b === undefined) break;
          writeFrame(b);
          if (sock.writableLength > limits.maxPendingWrite) {
            sock.once('drain', step);
            return;
          }
          if (++sent >= STREAM_BURST) {
            setImmediate(step);
            return;
          }
        }
        finish();
      }
      sock.once('close', finish);
      step();
    });

  /** Handle every complete message we may handle now; then set flow control and the read deadline. */
  const pump = (): void => {
    // While a stream is being sent, later queries wait (answered in order after it, as
    // RFC 7766 §6.2.1.1 allows), and the connection is not read.
    while (!sock.destroyed && !writeBlocked && !streaming && asyncPending <= MAX_PENDING_QUERIES && buffered >= 2) {
      const len = (byteAt(0) << 8) | byteAt(1);
      if (len < 12) {
        // A message shorter than a header is never valid (RFC 1035 §4.1.1).
        sock.destroy();
        return;
      }
      if (buffered < 2 + len) break;
      const msg = take(2 + len).subarray(2);
      // The next message, if any bytes of it are here, started arriving no earlier than now.
      frameStart = 0;
      let out: Buffer | undefined | Promise<Buffer | undefined> | ReplyStream;
      try {
        out = handler.handleTcp(msg, family, sock.remoteAddress);
      } catch (err) {
        onError(err, 'tcp-handle');
        out = undefined;
      }
      if (isReplyStream(out)) {
        const s = out;
        streaming = true;
        asyncPending++;
        chain = chain.then(() =>
          sendStream(s).finally(() => {
            asyncPending--;
            streaming = false;
            pump();
          }),
        );
      } else if (out instanceof Promise) {
        const p = out;
        asyncPending++;
        chain = chain.then(() =>
          p.then(write, () => undefined).finally(() => {
            asyncPending--;
            state.busy = streaming || asyncPending > 0;
            if (asyncPending === MAX_PENDING_QUERIES) pump();
          }),
        );
      } else if (asyncPending === 0) {
        write(out);
      } else {
        const b = out;
        chain = chain.then(() => write(b));
      }
    }
    if (sock.destroyed) return;
    state.busy = streaming || asyncPending > 0;
    const stalled = writeBlocked || streaming || asyncPending > MAX_PENDING_QUERIES;
    if (stalled) {
      sock.pause();
    } else if (sock.isPaused()) {
      sock.resume();
    }
    if (buffered > 0 && !stalled) {
      // An incomplete message: its deadline runs from its first byte.
      if (frameStart === 0) frameStart = performance.now();
      armReadTimer();
    } else {
      frameStart = 0;
      clearReadTimer();
    }
  };

  sock.on('data', (chunk: Buffer) => {
    if (chunk.length === 0) return;
    state.last = performance.now();
    chunks.push(chunk);
    buffered += chunk.length;
    pump();
  });
  sock.on('close', () => {
    conns.delete(sock);
    clearReadTimer();
    chunks.length = 0;
  });
  sock.on('error', () => sock.destroy());
}
