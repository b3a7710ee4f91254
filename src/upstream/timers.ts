/**
 * Deadlines of upstream exchanges: one timer for all of them, not a setTimeout per query.
 *
 * A hashed timer wheel: `slots` buckets of `tickMs` each; an item goes into the bucket of
 * its deadline's tick. While any item is live, one timer fires every tick and expires the
 * items of the buckets whose time has come; items that finished in the meantime are only
 * marked (`cancel`), never searched for, and are dropped when their bucket comes round.
 * A deadline more than one turn of the wheel ahead is put back when its bucket comes up
 * early. With nothing live the timer is stopped, so an idle forwarder holds no timer.
 *
 * Deadlines are `performance.now()` milliseconds; an item expires at most one tick late.
 */

/** Something with a deadline. The wheel owns `wheelState`; the owner sets `deadline`. */
export interface Timed {
  /** performance.now() milliseconds. */
  deadline: number;
  /** 0 not in a wheel, 1 waiting, 2 cancelled or expired. */
  wheelState: number;
  /** Called once, at or up to one tick after the deadline, unless cancelled first. */
  expire(): void;
}

export const WHEEL_TICK_MS = 10;
const SLOTS = 256;

export class TimerWheel {
  readonly #tickMs: number;
  #buckets: Timed[][];
  /** An empty array swapped in for a bucket being processed (no allocation per tick). */
  #spare: Timed[] = [];
  /** Items added and neither expired nor cancelled. */
  #live = 0;
  /** The last tick whose bucket was processed. */
  #tick = -1;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #onTimer = (): void => this.#run();

  constructor(tickMs = WHEEL_TICK_MS) {
    this.#tickMs = tickMs;
    this.#buckets = Array.from({ length: SLOTS }, () => []);
  }

  /** Items waiting for their deadline. */
  get live(): number {
    return this.#live;
  }

  /** Whether the timer is armed (an idle wheel stops it within a tick). */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  add(item: Timed): void {
    if (this.#closed) {
      item.wheelState = 2;
      item.expire();
      return;
    }
    item.wheelState = 1;
    this.#live++;
    if (this.#timer === undefined) {
      // Start counting from now: the buckets are empty when the timer is stopped.
      this.#tick = Math.floor(performance.now() / this.#tickMs) - 1;
      this.#timer = setTimeout(this.#onTimer, this.#tickMs);
    }
    this.#place(item);
  }

  /** The item finished before its deadline: it will not expire. (The timer stops at the next tick with nothing live.) */
  cancel(item: Timed): void {
    if (item.wheelState !== 1) return;
    item.wheelState = 2;
    this.#live--;
  }

  /** Stop the timer; items still waiting are expired now, and later adds expire at once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop();
    const buckets = this.#buckets;
    this.#buckets = Array.from({ length: SLOTS }, () => []);
    for (const b of buckets) for (const it of b) this.#fire(it);
  }

  #place(item: Timed): void {
    // Never into a bucket already passed: at the earliest the next one.
    const t = Math.max(Math.floor(item.deadline / this.#tickMs), this.#tick + 1);
    // More than a turn ahead: into the last bucket of this turn, and placed again from there.
    const at = Math.min(t, this.#tick + SLOTS);
    this.#buckets[at % SLOTS]!.push(item);
  }

  #fire(item: Timed): void {
    if (item.wheelState !== 1) return;
    item.wheelState = 2;
    this.#live--;
    item.expire();
  }

  #run(): void {
    const now = performance.now();
    const target = Math.floor(now / this.#tickMs);
    // After a long stall, one pass over every bucket is enough.
    const from = Math.max(this.#tick + 1, target - SLOTS + 1);
    for (let t = from; t <= target && !this.#closed; t++) {
      const i = t % SLOTS;
      const items = this.#buckets[i]!;
      if (items.length === 0) continue;
      this.#buckets[i] = this.#spare;
      this.#tick = t;
      for (let k = 0; k < items.length; k++) {
        const it = items[k]!;
        if (it.wheelState !== 1) continue;
        if (it.deadline <= now) this.#fire(it);
        else this.#place(it);
      }
      items.length = 0;
      this.#spare = items;
    }
    if (this.#closed) return;
    this.#tick = target;
    if (this.#live > 0) {
      this.#timer?.refresh();
      return;
    }
    // Nothing waits: stop, and drop the cancelled leftovers so the buckets hold nothing.
    this.#stop();
    for (const b of this.#buckets) b.length = 0;
  }

  #stop(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }
}
