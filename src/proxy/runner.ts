/**
 * The sync loop both rules modes share: kube-proxy's BoundedFrequencyRunner
 * (pkg/util/async/bounded_frequency_runner.go). Requests coalesce; runs are at least
 * `minIntervalMs` apart, with a burst of 2 (a token bucket refilled one token per
 * minInterval); a failed run is retried after `retryMs`; with nothing to do it still
 * runs every `maxIntervalMs`. One run at a time: a request during a run schedules
 * exactly one more.
 */
export interface RunnerOptions {
  readonly minIntervalMs: number;
  readonly maxIntervalMs: number;
  readonly retryMs: number;
  readonly burst?: number;
  /** Clock (tests). */
  readonly now?: () => number;
}

export class BoundedFrequencyRunner {
  readonly #fn: () => Promise<void>;
  readonly #opts: Required<RunnerOptions>;
  #tokens: number;
  #lastRefill: number;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #running = false;
  #pending = false;
  #stopped = true;
  #idle: (() => void)[] = [];

  constructor(fn: () => Promise<void>, opts: RunnerOptions) {
    this.#fn = fn;
    this.#opts = { burst: 2, now: () => performance.now(), ...opts };
    this.#tokens = this.#opts.burst;
    this.#lastRefill = this.#opts.now();
  }

  /** Start: one run now (the initial sync), then as requested. */
  start(): void {
    this.#stopped = false;
    this.run();
  }

  stop(): void {
    this.#stopped = true;
    this.#clear();
  }

  /** Ask for a run as soon as the rate allows. */
  run(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#pending = true;
      return;
    }
    this.#refill();
    if (this.#tokens >= 1) this.#schedule(0);
    else this.#schedule(this.#opts.minIntervalMs - (this.#opts.now() - this.#lastRefill));
  }

  /** Resolves once no run is in progress or due now (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.#running && !this.#pending) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  #refill(): void {
    const now = this.#opts.now();
    const min = this.#opts.minIntervalMs;
    if (min <= 0) {
      this.#tokens = this.#opts.burst;
      this.#lastRefill = now;
      return;
    }
    const add = Math.floor((now - this.#lastRefill) / min);
    if (add > 0) {
      this.#tokens = Math.min(this.#opts.burst, this.#tokens + add);
      this.#lastRefill = this.#tokens === this.#opts.burst ? now : this.#lastRefill + add * min;
    }
  }

  #clear(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  /** Run in `ms` unless a run is already due sooner. */
  #schedule(ms: number): void {
    const at = this.#opts.now() + Math.max(0, ms);
    if (at >= this.#timerAt) return;
    this.#clear();
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#tick();
    }, Math.max(0, ms));
    this.#timer.unref?.();
  }

  #tick(): void {
    if (this.#stopped || this.#running) return;
    this.#refill();
    if (this.#tokens < 1) {
      this.#schedule(this.#opts.minIntervalMs - (this.#opts.now() - this.#lastRefill));
      return;
    }
    this.#tokens--;
    this.#running = true;
    this.#pending = false;
    let failed = false;
    this.#fn()
      .catch(() => {
        failed = true;
      })
      .finally(() => {
        this.#running = false;
        if (this.#stopped) {
          this.#wake();
          return;
        }
        if (this.#pending) this.run();
        else if (failed) this.#schedule(this.#opts.retryMs);
        else this.#schedule(this.#opts.maxIntervalMs);
        this.#wake();
      });
  }

  #wake(): void {
    if (this.#running || this.#pending) return;
    const w = this.#idle;
    this.#idle = [];
    for (const r of w) r();
  }
}
