/**
 * Health checks, as CoreDNS `forward` does them: a query that fails (timeout, network
 * error) starts checking its server with `. IN NS` queries every `intervalMs` until one
 * is answered. Any reply with our ID and question counts as healthy, whatever its rcode
 * (an authoritative-only server REFUSES `. NS` and is still alive). Each failed check
 * adds one to the server's `fails`; at `maxFails` it is down and left out of selection
 * until a check succeeds, which sets `fails` back to 0.
 *
 * Nothing is sent while every query succeeds: an idle or healthy forwarder costs no
 * traffic.
 */
import type { SourceLog } from '../log.js';
import { udpExchange, type Tracker } from './exchange.js';
import type { Upstream } from './pool.js';
import { buildQuery, questionFor, randomId } from './wire.js';

export interface HealthOptions {
  /** Time between checks of a failing server, ms (CoreDNS `health_check`, default 0.5 s). */
  readonly intervalMs: number;
  /** How long a check waits for its reply, ms (CoreDNS: 1 s). */
  readonly timeoutMs: number;
  /** Failed checks after which a server is down (default 2). 0 disables health checks. */
  readonly maxFails: number;
  readonly live: Tracker;
  readonly log: SourceLog;
}

const ROOT_NS = questionFor('', 2)!;

export class HealthChecker {
  readonly #opts: HealthOptions;
  readonly #sleeps = new Map<NodeJS.Timeout, () => void>();
  #closed = false;

  constructor(opts: HealthOptions) {
    this.#opts = opts;
  }

  /** Start checking `up` unless a check cycle already runs (after a failed query). */
  kick(up: Upstream): void {
    if (this.#closed || up.checking || up.loop || up.retired || this.#opts.maxFails <= 0) return;
    up.checking = true;
    void this.#cycle(up);
  }

  close(): void {
    this.#closed = true;
    for (const [timer, wake] of this.#sleeps) {
      clearTimeout(timer);
      wake();
    }
    this.#sleeps.clear();
  }

  async #cycle(up: Upstream): Promise<void> {
    const { intervalMs, maxFails, log } = this.#opts;
    try {
      while (!this.#closed && !up.retired && !up.loop) {
        const started = Date.now();
        const ok = await this.check(up);
        if (this.#closed || up.retired) break;
        if (ok) {
          if (up.down(maxFails)) log.info('upstream is answering again', { upstream: up.address, domain: up.domain });
          up.fails = 0;
          break;
        }
        up.fails++;
        up.healthcheckFailures++;
        if (up.fails === maxFails) log.warn('upstream down: health checks failed', { upstream: up.address, domain: up.domain, fails: up.fails });
        await this.#sleep(Math.max(0, intervalMs - (Date.now() - started)));
      }
    } finally {
      up.checking = false;
    }
  }

  /** One `. IN NS` check; true when the server answered it. */
  async check(up: Upstream): Promise<boolean> {
    const id = randomId();
    const r = await udpExchange(up.addr, buildQuery(id, ROOT_NS), id, ROOT_NS, this.#opts.timeoutMs, this.#opts.live);
    return r.ok;
  }

  #sleep(ms: number): Promise<void> {
    if (ms <= 0 || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#sleeps.delete(timer);
        resolve();
      }, ms);
      timer.unref();
      this.#sleeps.set(timer, resolve);
    });
  }
}
