/**
 * The list/watch loop of one resource, on client-node 1.4.0's `Watch` plus our own paged
 * list calls. Not its informer: the informer stops for good on any error but 410, resolves
 * `start()` even when the list failed, fires `error` on its own `stop()`, asks for no
 * bookmarks and has no timeout (shared/docs/ecosystem.md §1 and its addendum).
 *
 * States: idle → listing → watching ⇄ backoff → … → stopped.
 *
 *  - **listing**: paged list (`limit`/`continue`), each page converted to slim objects at
 *    once (raw JSON never outlives its page); a 410 on a `continue` token (the snapshot was
 *    compacted mid-list) restarts the list from scratch. The complete list is written with
 *    `replace`, a diff against what is served. The first complete list marks the resource
 *    synced.
 *  - **watching**: `watch` from the last resourceVersion with `allowWatchBookmarks=true`;
 *    every event and bookmark advances the resourceVersion, so a reconnect resumes where
 *    the stream stopped, without a list. ERROR 410 (or HTTP 410) means the resourceVersion
 *    is gone: relist. A clean end of a healthy stream (the API server's request timeout)
 *    re-watches at once.
 *  - **backoff**: any other failure (HTTP errors, resets, refused connections, TLS errors, a
 *    stream that ends as soon as it starts) waits a capped exponential delay with jitter
 *    (`Backoff`), then retries the step that failed. The delay resets once a watch proves
 *    healthy (an event, or open for HEALTHY_MS).
 *  - **watchdog**: a watch silent for `watchTimeoutMs` (no event, no bookmark, no headers)
 *    is abandoned: its request is destroyed through the channel even if its headers never
 *    came (1.4.0 gives no handle for that), and an abandoned attempt can never deliver
 *    another event: every callback checks that its attempt is still the live one.
 *  - **stopped**: `stop()` aborts whatever is in flight; the AbortError that causes is
 *    recognised as ours and never restarts anything.
 *
 * Every callback from client-node is wrapped: a throwing sink or hook is logged, never
 * propagated (in 1.4.0's Watch it would be swallowed silently, in its informer it becomes
 * an unhandled rejection that kills the process).
 */
import type { KubeConfig } from '@kubernetes/client-node';
// Not the package index: that loads the generated API (tens of MB) for nothing (see config.ts).
import { Watch } from '@kubernetes/client-node/dist/watch.js';
import type { ClusterObject } from '../model.js';
import { objectKey } from '../model.js';
import { objectRef, toClusterObject } from '../convert.js';
import { Pause, type Backoff } from './backoff.js';
import type { Channel } from './config.js';
import { describeError, getJSON, isGone, KubeRequestError } from './http.js';
import type { ResourceSpec } from './resources.js';
import type { WatchSink } from './writer.js';

/** A watch open this long (or one that delivered an event) counts as healthy. */
export const HEALTHY_MS = 1000;
/** Target uncompressed size of a list page; bulky kinds adapt their limit to it. */
const PAGE_BYTES = 2 * 1024 * 1024;
/** First page size of bulky kinds (EndpointSlices, Endpoints, Pods). */
const BULKY_FIRST_PAGE = 100;

export type WatcherState = 'idle' | 'listing' | 'watching' | 'backoff' | 'stopped';

export interface ResourceStatus {
  readonly resource: string;
  readonly kind: string;
  readonly state: WatcherState;
  /** True once the first complete list was applied. */
  readonly synced: boolean;
  /** A watch is open and its response headers arrived. */
  readonly connected: boolean;
  /** The resourceVersion the next watch resumes from. */
  readonly resourceVersion: string | undefined;
  /** Unix ms of the last watch event (bookmarks included). */
  readonly lastEventAt: number | undefined;
  /** Unix ms of the last complete list. */
  readonly lastListAt: number | undefined;
  /** Watch events received (bookmarks included). */
  readonly events: number;
  /** Watches started again after one ended (for any reason but stop). */
  readonly restarts: number;
  /** Lists after the first one (410 Gone, expired continue tokens). */
  readonly relists: number;
  /** Failures (each one was followed by a backoff delay). */
  readonly failures: number;
  /** The last failure, or undefined once the resource is healthy again. */
  readonly lastError: string | undefined;
}

export type RestartReason = 'closed' | 'expired' | 'error' | 'silent';

export interface WatcherHooks {
  /** One watch event was applied (type ADDED/MODIFIED/DELETED/BOOKMARK/ERROR). */
  onEvent?(type: string): void;
  /** An object could not be converted and was left out. */
  onInvalid?(ref: { kind?: string; namespace?: string; name?: string }, reason: string): void;
  /** A request failed; the loop backs off `delayMs`. */
  onFailure?(err: Error, phase: 'list' | 'watch', delayMs: number): void;
  /** A request succeeded (a list page, a watch's headers). */
  onHealthy?(): void;
  onRestart?(reason: RestartReason): void;
  onRelist?(reason: string): void;
  onSynced?(): void;
  /** Our own code failed inside a callback (a bug): report, carry on. */
  onBug?(where: string, err: unknown): void;
}

export interface WatcherOptions {
  readonly spec: ResourceSpec;
  readonly channel: Channel;
  readonly sink: WatchSink;
  readonly backoff: Backoff;
  readonly pageSize: number;
  readonly watchTimeoutMs: number;
  readonly listTimeoutMs: number;
  readonly hooks: WatcherHooks;
}

interface OutcomeBase {
  /** Events delivered (ERROR events not counted). */
  readonly events: number;
  readonly ms: number;
  /** The watch started from a list's resourceVersion. */
  readonly fromList: boolean;
}

type Outcome =
  | (OutcomeBase & { readonly kind: 'closed' | 'expired' | 'silent' | 'stopped' })
  | (OutcomeBase & { readonly kind: 'error'; readonly err: Error });

interface Attempt {
  done: boolean;
  events: number;
  readonly started: number;
  readonly fromList: boolean;
  ctrl: AbortController | undefined;
  cancel(): void;
}

class Stopped extends Error {}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export class ResourceWatcher {
  readonly spec: ResourceSpec;
  readonly #o: WatcherOptions;
  #state: WatcherState = 'idle';
  #synced = false;
  #rv: string | undefined;
  #lastEventAt: number | undefined;
  #lastListAt: number | undefined;
  #events = 0;
  #restarts = 0;
  #relists = 0;
  #failures = 0;
  #lastError: string | undefined;
  #needList = true;
  /** The watch about to start resumes from a list's RV (not from events). */
  #fromList = false;
  #stopped = false;
  #attempt: Attempt | undefined;
  readonly #pause = new Pause();
  #loop: Promise<void> | undefined;

  constructor(opts: WatcherOptions) {
    this.#o = opts;
    this.spec = opts.spec;
  }

  get synced(): boolean {
    return this.#synced;
  }

  status(): ResourceStatus {
    return {
      resource: this.spec.resource,
      kind: this.spec.kind,
      state: this.#state,
      synced: this.#synced,
      connected: this.#attempt?.ctrl !== undefined && !this.#attempt.done,
      resourceVersion: this.#rv,
      lastEventAt: this.#lastEventAt,
      lastListAt: this.#lastListAt,
      events: this.#events,
      restarts: this.#restarts,
      relists: this.#relists,
      failures: this.#failures,
      lastError: this.#lastError,
    };
  }

  /** Start the loop (idempotent). It runs until stop(); it never rejects. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Abort whatever is in flight and wait for the loop to end. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#attempt?.cancel();
    this.#o.channel.abortAll();
    this.#pause.wake();
    await this.#loop;
    this.#state = 'stopped';
  }

  #hook<K extends keyof WatcherHooks>(name: K, ...args: Parameters<NonNullable<WatcherHooks[K]>>): void {
    try {
      (this.#o.hooks[name] as ((...a: unknown[]) => void) | undefined)?.(...args);
    } catch (err) {
      if (name !== 'onBug') this.#hook('onBug', `hook ${name}`, err);
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      let delay = 0;
      try {
        if (this.#needList) await this.#list();
        if (this.#stopped) break;
        delay = this.#after(await this.#watch());
      } catch (err) {
        if (this.#stopped || err instanceof Stopped) break;
        delay = this.#fail(asError(err), 'list');
      }
      if (delay > 0 && !this.#stopped) {
        this.#state = 'backoff';
        await this.#pause.sleep(delay);
      }
    }
    this.#state = 'stopped';
  }

  #fail(err: Error, phase: 'list' | 'watch'): number {
    this.#failures++;
    this.#lastError = describeError(err);
    const delay = this.#o.backoff.next();
    this.#hook('onFailure', err, phase, delay);
    return delay;
  }

  #healthy(): void {
    this.#lastError = undefined;
    this.#hook('onHealthy');
  }

  /** Convert one raw object; an invalid one is reported and yields undefined. */
  #convert(raw: unknown): ClusterObject | undefined {
    const r = toClusterObject(raw, this.spec.kind);
    if (r.ok) return this.#o.sink.prepare?.(r.value) ?? r.value;
    this.#hook('onInvalid', objectRef(raw, this.spec.kind), r.error);
    return undefined;
  }

  #keyOf(raw: unknown): string | undefined {
    const ref = objectRef(raw, this.spec.kind);
    if (ref.name === undefined) return undefined;
    return objectKey({ ...(ref.namespace === undefined ? {} : { namespace: ref.namespace }), name: ref.name });
  }

  // ---- list -----------------------------------------------------------------------------

  async #list(): Promise<void> {
    this.#state = 'listing';
    const { spec, pageSize } = this.#o;
    const objects: ClusterObject[] = [];
    let cont: string | undefined;
    let rv = '';
    let limit = spec.bulky ? Math.min(pageSize, BULKY_FIRST_PAGE) : pageSize;
    let restarts = 0;
    for (;;) {
      let res;
      try {
        res = await getJSON(
          this.#o.channel,
          spec.path,
          { limit, continue: cont, labelSelector: spec.labelSelector, fieldSelector: spec.fieldSelector },
          { timeoutMs: this.#o.listTimeoutMs },
        );
      } catch (err) {
        if (this.#stopped) throw new Stopped();
        if (cont !== undefined && isGone(err) && restarts < 5) {
          // The continue token outlived the snapshot it points into: start over.
          restarts++;
          objects.length = 0;
          cont = undefined;
          this.#relists++;
          this.#hook('onRelist', 'continue token expired');
          continue;
        }
        throw err;
      }
      if (this.#stopped) throw new Stopped();
      this.#healthy();
      const body = res.body as { items?: unknown; metadata?: { resourceVersion?: unknown; continue?: unknown } };
      const items = Array.isArray(body.items) ? (body.items as unknown[]) : [];
      for (const item of items) {
        const o = this.#convert(item);
        if (o !== undefined) objects.push(o);
      }
      rv = typeof body.metadata?.resourceVersion === 'string' ? body.metadata.resourceVersion : rv;
      cont = typeof body.metadata?.continue === 'string' && body.metadata.continue !== '' ? body.metadata.continue : undefined;
      if (cont === undefined) break;
      if (spec.bulky && items.length > 0) {
        // Keep pages near PAGE_BYTES: a 100-endpoint slice is ~25 KiB, a service ~1 KiB.
        const perItem = res.bytes / items.length;
        limit = Math.max(10, Math.min(pageSize, Math.floor(PAGE_BYTES / Math.max(1, perItem))));
      }
    }
    if (rv === '') throw new KubeRequestError(`list ${spec.path}: the response has no resourceVersion`);
    try {
      this.#o.sink.replace(spec.kind, objects);
    } catch (err) {
      this.#hook('onBug', 'apply list', err);
    }
    this.#rv = rv;
    this.#lastListAt = Date.now();
    this.#needList = false;
    this.#fromList = true;
    if (!this.#synced) {
      this.#synced = true;
      this.#hook('onSynced');
    }
  }

  // ---- watch ----------------------------------------------------------------------------

  #watch(): Promise<Outcome> {
    this.#state = 'watching';
    const { spec, channel, watchTimeoutMs } = this.#o;
    return new Promise<Outcome>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const a: Attempt = {
        done: false,
        events: 0,
        started: Date.now(),
        fromList: this.#fromList,
        ctrl: undefined,
        cancel: () => {
          finish('stopped');
          abort();
        },
      };
      this.#fromList = false;
      const abort = (): void => {
        a.ctrl?.abort();
        channel.abortAll();
      };
      const finish = (kind: Outcome['kind'], err?: Error): void => {
        if (a.done) return;
        a.done = true;
        clearTimeout(timer);
        if (this.#attempt === a) this.#attempt = undefined;
        const base = { events: a.events, ms: Date.now() - a.started, fromList: a.fromList };
        resolve(kind === 'error' ? { ...base, kind, err: err ?? new Error('watch failed') } : { ...base, kind });
      };
      // The watchdog: nothing at all (headers, event, bookmark) for watchTimeoutMs.
      // Decide the outcome first: aborting makes client-node call done() with an
      // AbortError synchronously, which must find the attempt already finished.
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          finish('silent');
          abort();
        }, watchTimeoutMs);
      };
      this.#attempt = a;
      arm();

      const query: Record<string, string | number | boolean | undefined> = {
        allowWatchBookmarks: true,
        resourceVersion: this.#rv,
        labelSelector: spec.labelSelector,
        fieldSelector: spec.fieldSelector,
      };
      // Ask the server to end the stream cleanly before our watchdog would fire, so a
      // healthy but quiet watch is renewed by the server, not abandoned by us.
      const timeoutS = Math.floor(watchTimeoutMs / 1000);
      if (timeoutS >= 10) query['timeoutSeconds'] = Math.floor(timeoutS * (0.5 + Math.random() * 0.4));

      const onEvent = (type: string, obj: unknown): void => {
        // An abandoned or finished attempt never delivers again.
        if (a.done) return;
        arm();
        try {
          this.#apply(a, type, obj, abort, finish);
        } catch (err) {
          this.#hook('onBug', 'apply watch event', err);
        }
      };
      const onDone = (err: unknown): void => {
        if (a.done) return; // our own abort (stop, watchdog, 410) already decided the outcome
        if (err === null || err === undefined) finish('closed');
        else finish(isGone(err) ? 'expired' : 'error', asError(err));
      };
      let started: Promise<AbortController>;
      try {
        // Watch uses only getCurrentCluster() and applyToFetchOptions() of its config.
        started = new Watch(channel.config as unknown as KubeConfig).watch(spec.path, query, onEvent, onDone);
      } catch (err) {
        finish('error', asError(err));
        return;
      }
      started.then(
        (ctrl) => {
          if (a.done) {
            ctrl.abort();
            return;
          }
          // Headers arrived: the connection works.
          a.ctrl = ctrl;
          arm();
          this.#healthy();
        },
        (err: unknown) => finish('error', asError(err)),
      );
    });
  }

  #apply(a: Attempt, type: string, obj: unknown, abort: () => void, finish: (k: Outcome['kind'], err?: Error) => void): void {
    this.#events++;
    this.#lastEventAt = Date.now();
    const meta = (obj as { metadata?: { resourceVersion?: unknown } } | null)?.metadata;
    const rv = typeof meta?.resourceVersion === 'string' && meta.resourceVersion !== '' ? meta.resourceVersion : undefined;
    switch (type) {
      case 'ADDED':
      case 'MODIFIED': {
        a.events++;
        const o = this.#convert(obj);
        if (o !== undefined) this.#o.sink.upsert(o);
        else {
          // Not representable any more: not served (as a relist would leave it out).
          const key = this.#keyOf(obj);
          if (key !== undefined) this.#o.sink.remove(this.spec.kind, key);
        }
        break;
      }
      case 'DELETED': {
        a.events++;
        const key = this.#keyOf(obj);
        if (key !== undefined) this.#o.sink.remove(this.spec.kind, key);
        break;
      }
      case 'BOOKMARK':
        a.events++;
        break;
      case 'ERROR': {
        const st = obj as { code?: unknown; reason?: unknown; message?: unknown } | null;
        if (st?.code === 410 || st?.reason === 'Expired' || st?.reason === 'Gone') {
          finish('expired');
        } else {
          const code = typeof st?.code === 'number' ? st.code : undefined;
          const msg = typeof st?.message === 'string' ? st.message : 'unknown error';
          finish('error', new KubeRequestError(`watch ${this.spec.path}: ERROR event: ${msg}`, { status: code, reason: typeof st?.reason === 'string' ? st.reason : undefined }));
        }
        abort();
        this.#hook('onEvent', type);
        return;
      }
      default:
        return; // an event type this client does not know: ignore it
    }
    if (rv !== undefined) this.#rv = rv;
    this.#hook('onEvent', type);
  }

  /** What to do after a watch ended: the delay before the next step. */
  #after(out: Outcome): number {
    if (out.kind === 'stopped' || this.#stopped) return 0;
    const healthy = out.events > 0 || out.ms >= HEALTHY_MS;
    if (healthy) this.#o.backoff.reset();
    this.#restarts++;
    switch (out.kind) {
      case 'expired': {
        this.#needList = true;
        this.#relists++;
        this.#hook('onRestart', 'expired');
        this.#hook('onRelist', 'resourceVersion expired (410 Gone)');
        // Straight after a list the RV cannot be too old; a server that says so anyway
        // must not get a tight list/watch loop.
        return out.fromList && out.events === 0
          ? this.#fail(new KubeRequestError(`watch ${this.spec.path} from a fresh list got 410 Gone`, { status: 410 }), 'watch')
          : 0;
      }
      case 'closed':
        this.#hook('onRestart', 'closed');
        if (healthy) return 0;
        return this.#fail(new Error(`watch ${this.spec.path} ended as soon as it started`), 'watch');
      case 'silent':
        this.#hook('onRestart', 'silent');
        return this.#fail(new Error(`watch ${this.spec.path} silent for ${this.#o.watchTimeoutMs} ms (no event, bookmark or headers): abandoned`), 'watch');
      case 'error':
        this.#hook('onRestart', 'error');
        return this.#fail(out.err, 'watch');
    }
  }
}
