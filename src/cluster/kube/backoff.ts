/**
 * Capped exponential backoff with jitter, for restarting lists and watches.
 *
 * client-node 1.4.0 has no reconnect backoff of its own: a server that keeps failing or
 * closing makes a naive "restart on done" loop hammer the API server (kubernetes-client/
 * javascript#1933). Every restart of the API source goes through one of these instead.
 *
 * Delay n (0-based count of consecutive failures) is drawn uniformly from
 * [d/2, d] with d = min(maxMs, initialMs · 2ⁿ) ("equal jitter"): never less than half the
 * nominal step, so the growth is provable in tests, and spread so that many replicas
 * restarting after the same API outage do not reconnect in lockstep.
 */
export interface BackoffOptions {
  /** First delay (before jitter), ms. Default 500 (client-go's reflector uses 800). */
  readonly initialMs?: number;
  /** Cap (before jitter), ms. Default 30,000 (client-go: 30 s). */
  readonly maxMs?: number;
  /** Random source in [0, 1) (tests make it deterministic). */
  readonly random?: () => number;
}

export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly #random: () => number;
  #failures = 0;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = Math.max(1, opts.initialMs ?? 500);
    this.maxMs = Math.max(this.initialMs, opts.maxMs ?? 30_000);
    this.#random = opts.random ?? Math.random;
  }

  /** Consecutive failures since the last reset. */
  get failures(): number {
    return this.#failures;
  }

  /** The delay before the next attempt; counts one more failure. */
  next(): number {
    // 2^30 already exceeds any sane cap; stop the exponent growing without bound.
    const step = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    return Math.round(step / 2 + (this.#random() * step) / 2);
  }

  /** Forget past failures (the connection proved healthy). */
  reset(): void {
    this.#failures = 0;
  }
}

/**
 * The wait between two attempts, which `wake()` ends at once: a stop must not wait out
 * a backoff delay of up to 30 s. One per loop that sleeps (a watcher, the discovery of
 * EndpointSlices, the ServiceImport CRD's).
 */
export class Pause {
  #wake: (() => void) | undefined;

  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  /** End the sleep in progress now (nothing when there is none). */
  wake(): void {
    this.#wake?.();
  }
}
