/**
 * GET requests to the API server for lists and discovery, on the same auth, TLS and agent
 * as client-node's Watch (`Channel.applyToHTTPSOptions`).
 *
 * Why not the generated API clients (CoreV1Api.listServiceForAllNamespaces…): in 1.4.0
 * they deserialize every item into model classes (Date objects, one class instance per
 * nested struct) on top of the parsed JSON, which more than doubles the transient memory
 * of a 100-endpoint EndpointSlice page, only for us to convert it to a slim object at once;
 * they build a new agent per call (#2893); and they have no timeout, so a list on a
 * half-open connection would wait forever. Here a list page is parsed once, as plain data,
 * with a deadline, and gzip is accepted (a real API server compresses lists over 128 KiB).
 */
import http from 'node:http';
import https from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';
import type { Channel } from './config.js';

/** A failed request: HTTP status and Status reason when the server answered, errno code otherwise. */
export class KubeRequestError extends Error {
  readonly status: number | undefined;
  readonly reason: string | undefined;
  readonly code: string | undefined;

  constructor(message: string, o: { status?: number | undefined; reason?: string | undefined; code?: string | undefined } = {}) {
    super(message);
    this.name = 'KubeRequestError';
    this.status = o.status;
    this.reason = o.reason;
    this.code = o.code;
  }
}

/** HTTP status of any error we or client-node produce (Watch sets `statusCode`). */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof KubeRequestError) return err.status;
  const e = err as { statusCode?: unknown; status?: unknown } | null;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  return undefined;
}

/** 410 Gone / Expired: the resourceVersion or continue token is too old. */
export function isGone(err: unknown): boolean {
  return statusOf(err) === 410;
}

/** A short, log-friendly description of an error (no stack). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const status = statusOf(err);
    const parts = [err.message];
    if (typeof code === 'string' && !err.message.includes(code)) parts.push(`(${code})`);
    if (status !== undefined && !err.message.includes(String(status))) parts.push(`(HTTP ${status})`);
    return parts.join(' ');
  }
  return String(err);
}

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

export interface GetResult {
  readonly body: unknown;
  /** Uncompressed size of the body. */
  readonly bytes: number;
}

export interface GetOptions {
  /** Deadline for the whole response, headers and body. */
  readonly timeoutMs: number;
  /** Refuse bodies larger than this (a runaway list must not take the process down). Default 512 MiB. */
  readonly maxBytes?: number;
}

/** GET `path` with `query` from the channel's cluster and parse the JSON body. */
export async function getJSON(channel: Channel, path: string, query: Query, opts: GetOptions): Promise<GetResult> {
  const cluster = channel.config.getCurrentCluster();
  if (cluster === null) throw new KubeRequestError('no current cluster in the kubeconfig');
  const url = new URL(cluster.server + path);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
  const o: https.RequestOptions = {};
  await channel.applyToHTTPSOptions(o);
  const headers = { ...(o.headers as Record<string, string> | undefined), Accept: 'application/json', 'Accept-Encoding': 'gzip' };
  const maxBytes = opts.maxBytes ?? 512 * 1024 * 1024;
  const mod = url.protocol === 'http:' ? http : https;

  return new Promise<GetResult>((resolve, reject) => {
    let settled = false;
    const settle = (err: Error | undefined, result?: GetResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== undefined) reject(err);
      else resolve(result!);
    };
    let req: http.ClientRequest;
    let response: http.IncomingMessage | undefined;
    try {
      req = mod.request(url, { ...o, headers, method: 'GET' }, (res) => {
        response = res;
        const gzip = /\bgzip\b/i.test(String(res.headers['content-encoding'] ?? ''));
        const body = gzip ? res.pipe(createGunzip()) : res;
        // Each chunk is decoded as it arrives and the text kept in V8's heap, rather than
        // the chunks kept for a Buffer.concat: a list page's dozens of 16-64 KiB chunks and
        // a multi-MiB copy in malloc'd memory, all alive at once, left the C heap
        // fragmented (measured: 10-15 MB more RSS after the initial list at 150k endpoints).
        const decoder = new StringDecoder('utf8');
        let text = '';
        let size = 0;
        body.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            req.destroy(new KubeRequestError(`response larger than ${maxBytes} bytes`, { code: 'ETOOBIG' }));
            return;
          }
          text += decoder.write(c);
        });
        body.on('error', (err) => settle(wrap(err)));
        res.on('aborted', () => settle(new KubeRequestError('response aborted', { code: 'ECONNRESET' })));
        body.on('end', () => {
          text += decoder.end();
          const status = res.statusCode ?? 0;
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          if (status !== 200) {
            const st = parsed as { message?: unknown; reason?: unknown } | undefined;
            const reason = typeof st?.reason === 'string' ? st.reason : undefined;
            const msg = typeof st?.message === 'string' && st.message !== '' ? st.message : text.slice(0, 200).trim() || http.STATUS_CODES[status] || 'error';
            settle(new KubeRequestError(`GET ${url.pathname}: HTTP ${status}: ${msg}`, { status, reason }));
            return;
          }
          if (parsed === undefined) {
            settle(new KubeRequestError(`GET ${url.pathname}: the response is not JSON`, { status, code: 'EBADJSON' }));
            return;
          }
          settle(undefined, { body: parsed, bytes: size });
        });
      });
    } catch (err) {
      settle(wrap(err));
      return;
    }
    const timer = setTimeout(
      () => req.destroy(new KubeRequestError(`GET ${url.pathname}: no complete response within ${opts.timeoutMs} ms`, { code: 'ETIMEDOUT' })),
      opts.timeoutMs,
    );
    req.on('error', (err) => settle(wrap(err)));
    // A complete response settles from its body's 'end' (which, through gunzip, can come
    // after this); anything else closing the request is a failure.
    req.on('close', () => {
      if (response === undefined || !response.complete) {
        settle(new KubeRequestError(`GET ${url.pathname}: connection closed before the response was complete`, { code: 'ECONNRESET' }));
      }
    });
    req.end();
  });
}

function wrap(err: unknown): Error {
  if (err instanceof KubeRequestError) return err;
  const e = err as NodeJS.ErrnoException;
  return new KubeRequestError(e?.message ?? String(err), { code: typeof e?.code === 'string' ? e.code : undefined });
}
