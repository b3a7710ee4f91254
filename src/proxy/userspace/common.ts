/**
 * What the userspace data plane (tcp.ts, udp.ts) and its proxier share: the metrics
 * sink, the logger shape, and small address helpers.
 */
import { unmapIPv4 } from '../../net/ip.js';

/**
 * Per service port counters and gauges of the userspace proxy. The lead wires it to
 * prom-client; every method must be cheap and must not throw (calls happen inside
 * socket handlers, `bytes` once per chunk).
 *
 * - `connection`: a TCP connection accepted, or a UDP flow (client `ip:port`) created.
 * - `bytes`: payload copied; `in` = client → backend, `out` = backend → client.
 * - `connectError`: a connection (or a UDP client's datagram) given up: no endpoint
 *   exists, or none of the (up to 4) dials succeeded. The client is reset / the
 *   datagram dropped.
 * - `retry`: a further endpoint is dialed after a failed dial (at most 3 per connection);
 *   failed dials = retries + connectErrors with reason `dial-failed`.
 * - `active`: open TCP connections / live UDP flows, `delta` is +1 or -1.
 * - `rejected` (optional): why a connection was reset or a datagram dropped: no
 *   endpoints, every dial failed (`dial-failed`; both also count as `connectError`), or
 *   a bound reached (`limit`: maxConnections, UDP flows per port; not a connectError).
 */
export interface UserspaceMetrics {
  connection(spn: string, proto: 'TCP' | 'UDP'): void;
  bytes(spn: string, dir: 'in' | 'out', n: number): void;
  connectError(spn: string): void;
  retry(spn: string): void;
  active(spn: string, delta: number): void;
  rejected?(spn: string, proto: 'TCP' | 'UDP', reason: 'no-endpoints' | 'limit' | 'dial-failed'): void;
}

/** A pino-like logger (a pino `Logger` fits): fields first, message second. */
export interface ProxyLog {
  warn(fields: object, msg: string): void;
  info(fields: object, msg: string): void;
  debug(fields: object, msg: string): void;
}

const noop = (): void => {};

export const nullMetrics: UserspaceMetrics = {
  connection: noop,
  bytes: noop,
  connectError: noop,
  retry: noop,
  active: noop,
};

export const nullLog: ProxyLog = { warn: noop, info: noop, debug: noop };

/**
 * Wrap a sink so a throwing implementation cannot escape into a socket handler.
 * The cost is one try per call; sinks are expected to be cheap anyway.
 */
export function safeMetrics(m: UserspaceMetrics | undefined, log: ProxyLog): UserspaceMetrics {
  if (m === undefined) return nullMetrics;
  let warned = false;
  const fail = (err: unknown): void => {
    if (warned) return;
    warned = true;
    log.warn({ err: String(err) }, 'userspace proxy: metrics sink threw (further errors not logged)');
  };
  // Written out (no rest/spread): `bytes` runs once per chunk.
  return {
    connection(spn, proto) {
      try {
        m.connection(spn, proto);
      } catch (err) {
        fail(err);
      }
    },
    bytes(spn, dir, n) {
      try {
        m.bytes(spn, dir, n);
      } catch (err) {
        fail(err);
      }
    },
    connectError(spn) {
      try {
        m.connectError(spn);
      } catch (err) {
        fail(err);
      }
    },
    retry(spn) {
      try {
        m.retry(spn);
      } catch (err) {
        fail(err);
      }
    },
    active(spn, delta) {
      try {
        m.active(spn, delta);
      } catch (err) {
        fail(err);
      }
    },
    rejected(spn, proto, reason) {
      try {
        m.rejected?.(spn, proto, reason);
      } catch (err) {
        fail(err);
      }
    },
  };
}

/** Source IP of an accepted socket, without the IPv4-mapped prefix. */
export function clientIP(addr: string | undefined): string {
  return addr === undefined ? '' : unmapIPv4(addr);
}
