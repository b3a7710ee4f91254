/**
 * The operations endpoint (`--http`): `/healthz` (process alive and not shutting
 * down) and `/readyz` (every source has synced). Kubernetes probes use these.
 */
import http from 'node:http';
import { joinHostPort } from '../net/ip.js';
import { ListenError } from './listen.js';

export interface OpsState {
  /** False while lame-ducking on shutdown. */
  healthy(): boolean;
  ready(): boolean;
  /** Extra routes (metrics) keyed by path. */
  readonly routes?: ReadonlyMap<string, () => Promise<{ type: string; body: string }> | { type: string; body: string }>;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function serveHttp(host: string, port: number, state: OpsState): Promise<OpsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (code: number, type: string, body: string): void => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (path === '/healthz' || path === '/health') {
      const ok = state.healthy();
      send(ok ? 200 : 503, 'text/plain', ok ? 'ok\n' : 'shutting down\n');
      return;
    }
    if (path === '/readyz' || path === '/ready') {
      const ok = state.ready();
      send(ok ? 200 : 503, 'text/plain', ok ? 'ok\n' : 'not ready: sources have not synced\n');
      return;
    }
    const route = path === undefined ? undefined : state.routes?.get(path);
    if (route !== undefined) {
      Promise.resolve(route()).then(
        (r) => send(200, r.type, r.body),
        (err: unknown) => send(500, 'text/plain', `${String(err)}\n`),
      );
      return;
    }
    send(404, 'text/plain', 'not found\n');
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new ListenError(joinHostPort(host, port), 'http', err)),
    );
    server.listen({ host, port, exclusive: true }, () => resolve());
  });
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
