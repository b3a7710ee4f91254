/**
 * Forwarding-loop detection, after CoreDNS `loop`: send each upstream a query for a
 * random name under `clusterdns-loop-probe.` (type HINFO, which nothing answers). If an
 * upstream forwards to us, directly or through others, that very name comes back to
 * us as an incoming query: the upstream is in a loop. We log an error naming it, stop
 * using it (CoreDNS exits instead; a server that keeps answering cluster names is more
 * useful) and answer the returning probe SERVFAIL so it does not go round again.
 *
 * Each probe is sent up to `attempts` times (a server that is down at start is probed
 * again), and its name stays known until the upstreams change, so a late return still
 * counts. Names under the probe suffix that are not ours (another instance's probes)
 * are forwarded like any name: that instance must see them come back.
 */
import type { SourceLog } from '../log.js';
import { udpExchange, type Tracker } from './exchange.js';
import type { Upstream } from './pool.js';
import { buildQuery, questionFor, randomId, randomLabel } from './wire.js';
import { Type } from '../dns/constants.js';

export const PROBE_SUFFIX = 'clusterdns-loop-probe';

export interface LoopOptions {
  readonly live: Tracker;
  readonly log: SourceLog;
  /** Wait for a probe's reply, ms (default 2000). */
  readonly timeoutMs?: number;
  /** Probes per upstream while none is answered (default 3). */
  readonly attempts?: number;
}

export class LoopDetector {
  readonly #opts: LoopOptions;
  readonly #probes = new Map<string, Upstream>();
  readonly #detected: string[] = [];
  readonly #timers = new Map<NodeJS.Timeout, () => void>();
  #closed = false;

  constructor(opts: LoopOptions) {
    this.#opts = opts;
  }

  /** Probe `up` in the background. */
  probe(up: Upstream): void {
    if (this.#closed) return;
    const name = `${randomLabel()}.${randomLabel()}.${PROBE_SUFFIX}`;
    this.#probes.set(name, up);
    void this.#send(up, name);
  }

  /**
   * Check an incoming query name. True when it is one of our probes coming back (the
   * caller answers SERVFAIL); the upstream it was sent to is then marked as looping.
   */
  incoming(name: string): boolean {
    if (!name.endsWith(PROBE_SUFFIX)) return false;
    const up = this.#probes.get(name);
    if (up === undefined) return false;
    if (!up.loop && !up.retired) {
      up.loop = true;
      this.#detected.push(`${up.address}${up.domain === '.' ? '' : ` (${up.domain})`}`);
      this.#opts.log.error('forwarding loop detected: the upstream sends our queries back to us; not using it', {
        upstream: up.address,
        domain: up.domain,
        probe: name,
      });
    }
    return true;
  }

  /** Upstreams found in a loop, as `host:port` (with ` (domain)` for stub domains). */
  detected(): string[] {
    return [...this.#detected];
  }

  /** Forget probes and findings (the upstreams changed). */
  reset(): void {
    this.#probes.clear();
    this.#detected.length = 0;
  }

  close(): void {
    this.#closed = true;
    this.#probes.clear();
    for (const [timer, wake] of this.#timers) {
      clearTimeout(timer);
      wake();
    }
    this.#timers.clear();
  }

  async #send(up: Upstream, name: string): Promise<void> {
    const question = questionFor(name, Type.HINFO)!;
    const attempts = this.#opts.attempts ?? 3;
    for (let i = 0; i < attempts && !this.#closed && !up.retired && !up.loop; i++) {
      const id = randomId();
      const r = await udpExchange(up.addr, buildQuery(id, question), id, question, this.#opts.timeoutMs ?? 2000, this.#opts.live);
      if (r.ok || r.error === 'closed') return;
      if (r.error === 'unreachable') await this.#sleep(500);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        resolve();
      }, ms);
      timer.unref();
      this.#timers.set(timer, resolve);
    });
  }
}
