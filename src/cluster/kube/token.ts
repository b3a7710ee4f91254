/**
 * A bearer token read from a file that is rotated underneath us: the service-account
 * token of a pod (kubelet rewrites it, by default hourly, through an atomic symlink swap)
 * or a kubeconfig user's `tokenFile`.
 *
 * Why not client-node's own handling (1.4.0, read from its source):
 *  - in-cluster, its FileAuth re-reads the token only every 60 s, so after a rotation
 *    whose old token is already refused every request fails for up to a minute;
 *  - a kubeconfig `tokenFile` (client-go's field name) is ignored altogether, and the
 *    `token-file` spelling it does know is read once at load and never again.
 *
 * Here the file is stat()ed before every request (requests are rare: list pages and watch
 * (re)connects) and re-read when its identity, size or mtime changed, when the last read
 * is older than a minute (what client-go does), or after the API server refused the token
 * (`invalidate()`). A failed read keeps the last good token: a rotation that is half done
 * must not turn into an unauthenticated request.
 */
import { readFileSync, statSync } from 'node:fs';

const MAX_AGE_MS = 60_000;

export class TokenFile {
  readonly path: string;
  #token: string | undefined;
  #stamp = '';
  #readAt = 0;
  #stale = true;
  /** Reads that changed the token (tests prove rotation through this). */
  rotations = 0;
  /** The last read error, if the file could not be read. */
  lastError: string | undefined;

  constructor(path: string) {
    this.path = path;
  }

  /** The current token, or undefined when the file was never readable. */
  get(now = Date.now()): string | undefined {
    let stamp = this.#stamp;
    try {
      const st = statSync(this.path);
      stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (err) {
      this.lastError = String(err);
      return this.#token;
    }
    if (!this.#stale && stamp === this.#stamp && now - this.#readAt < MAX_AGE_MS) return this.#token;
    try {
      const token = readFileSync(this.path, 'utf8').trim();
      if (token !== '') {
        if (this.#token !== undefined && token !== this.#token) this.rotations++;
        this.#token = token;
        this.#stamp = stamp;
        this.#readAt = now;
        this.#stale = false;
        this.lastError = undefined;
      } else {
        this.lastError = `${this.path} is empty`;
      }
    } catch (err) {
      this.lastError = String(err);
    }
    return this.#token;
  }

  /** The server refused the token: read the file again on the next request. */
  invalidate(): void {
    this.#stale = true;
  }
}
