/**
 * One query to one upstream server over UDP or TCP, with a deadline.
 *
 * These are for the occasional query (health checks, loop probes; TCP after a truncated
 * reply): forwarded queries go out on each server's socket set (sockets.ts).
 *
 * UDP uses a new socket per query, connected to the server: the kernel picks a random
 * source port (RFC 5452 §9.2, RFC 6056), only the server's datagrams reach us, and an
 * ICMP port unreachable comes back as ECONNREFUSED at once instead of a timeout.
 * Datagrams that are not the reply (other ID, other question, unreadable) are ignored
 * and counted (RFC 5452 §4.4); the wait goes on until the deadline.
 *
 * TCP (RFC 7766): one connection per query, two-byte length framing (RFC 1035 §4.2.2),
 * closed after the reply. A reply that is not ours ends the exchange as an error.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { joinHostPort, type HostPort } from '../net/ip.js';
import type { Timed, TimerWheel } from './timers.js';
import { checkReply, type Scan } from './wire.js';

/** Why an exchange produced no usable reply. */
export type ExchangeError = 'timeout' | 'unreachable' | 'network' | 'closed';

export type ExchangeResult =
  | { readonly ok: true; readonly msg: Buffer; readonly scan: Scan; readonly ignored: number }
  | { readonly ok: false; readonly error: ExchangeError; readonly ignored: number };

/** Live exchanges, so that `close()` can end them all at once. */
export type Tracker = Set<() => void>;

/** `host:port`, with brackets around IPv6 (the `to` label of CoreDNS forward metrics). */
export function formatAddress(a: HostPort): string {
  return joinHostPort(a.host, a.port);
}

export function udpExchange(to: HostPort, query: Buffer, id: number, question: Uint8Array, timeoutMs: number, live: Tracker): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(net.isIPv6(to.host) ? 'udp6' : 'udp4');
    let ignored = 0;
    let done = false;
    const finish = (r: ExchangeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      live.delete(abort);
      try {
        sock.close();
      } catch {
        // already closed
      }
      resolve(r);
    };
    const abort = (): void => finish({ ok: false, error: 'closed', ignored });
    live.add(abort);
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout', ignored }), timeoutMs);
    sock.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, error: errorKind(err), ignored }));
    sock.on('message', (m: Buffer) => {
      const scan = checkReply(m, id, question);
      if (scan === undefined) ignored++;
      else finish({ ok: true, msg: m, scan, ignored });
    });
    sock.connect(to.port, to.host, () => {
      if (done) return;
      sock.send(query, (err) => {
        if (err) finish({ ok: false, error: errorKind(err), ignored });
      });
    });
  });
}

/**
 * One query over TCP. With `wheel`, the deadline is an item of that timer wheel (no timer
 * of its own).
 */
export function tcpExchange(to: HostPort, query: Buffer, id: number, question: Uint8Array, timeoutMs: number, live: Tracker, wheel?: TimerWheel): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: to.host, port: to.port, noDelay: true });
    let done = false;
    let buf: Buffer = Buffer.alloc(0);
    const finish = (r: ExchangeResult): void => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      wheel?.cancel(deadline);
      live.delete(abort);
      sock.destroy();
      resolve(r);
    };
    const abort = (): void => finish({ ok: false, error: 'closed', ignored: 0 });
    live.add(abort);
    const deadline: Timed = { deadline: performance.now() + timeoutMs, wheelState: 0, expire: () => finish({ ok: false, error: 'timeout', ignored: 0 }) };
    const timer = wheel === undefined ? setTimeout(deadline.expire, timeoutMs) : undefined;
    wheel?.add(deadline);
    sock.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, error: errorKind(err), ignored: 0 }));
    sock.on('close', () => finish({ ok: false, error: 'network', ignored: 0 }));
    sock.on('connect', () => {
      const frame = Buffer.allocUnsafe(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      query.copy(frame, 2);
      sock.write(frame);
    });
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const msg = Buffer.from(buf.subarray(2, 2 + len));
      const scan = checkReply(msg, id, question);
      finish(scan === undefined ? { ok: false, error: 'network', ignored: 1 } : { ok: true, msg, scan, ignored: 0 });
    });
  });
}

export function errorKind(err: NodeJS.ErrnoException): ExchangeError {
  return err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' ? 'unreachable' : 'network';
}
