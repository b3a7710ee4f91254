/**
 * A hash table from 32-bit keys (IPv4 addresses) to non-zero int32 values, in two typed
 * arrays: 8 bytes a slot at load ≤ 0.7, against ~45 bytes an entry for a Map keyed by
 * address strings (its table, plus the key string when nothing else holds it). The
 * reverse index keeps one entry per endpoint address, 150k at our scale target.
 *
 * Open addressing with linear probing and backward-shift deletion (no tombstones, so a
 * table under churn never fills with deleted entries).
 */
const MIN_CAPACITY = 1024;

export class U32Map {
  #keys = new Uint32Array(MIN_CAPACITY);
  /** 0: empty slot. */
  #vals = new Int32Array(MIN_CAPACITY);
  #shift = 32 - Math.log2(MIN_CAPACITY);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  #home(k: number): number {
    // Fibonacci hashing: the top bits of k·φ⁻¹·2³² spread sequential addresses evenly.
    return Math.imul(k, 0x9e3779b1) >>> this.#shift;
  }

  #find(k: number): number {
    const mask = this.#keys.length - 1;
    for (let i = this.#home(k); ; i = (i + 1) & mask) {
      if (this.#vals[i] === 0) return -1;
      if (this.#keys[i] === k) return i;
    }
  }

  /** The value at `k` (an unsigned 32-bit integer), 0 when absent. */
  get(k: number): number {
    const i = this.#find(k);
    return i < 0 ? 0 : this.#vals[i]!;
  }

  /** Set `k` to `v` (non-zero). */
  set(k: number, v: number): void {
    if (v === 0) throw new RangeError('U32Map values must be non-zero');
    if ((this.#size + 1) * 10 > this.#keys.length * 7) this.#resize(this.#keys.length * 2);
    const mask = this.#keys.length - 1;
    for (let i = this.#home(k); ; i = (i + 1) & mask) {
      if (this.#vals[i] === 0) {
        this.#keys[i] = k;
        this.#vals[i] = v;
        this.#size++;
        return;
      }
      if (this.#keys[i] === k) {
        this.#vals[i] = v;
        return;
      }
    }
  }

  delete(k: number): boolean {
    let i = this.#find(k);
    if (i < 0) return false;
    const keys = this.#keys;
    const vals = this.#vals;
    const mask = keys.length - 1;
    // Backward shift: move later members of the probe run into the hole when the hole
    // lies on their path from their home slot (cyclically in (home, j]).
    for (let j = (i + 1) & mask; vals[j] !== 0; j = (j + 1) & mask) {
      const home = this.#home(keys[j]!);
      const onPath = i <= j ? home <= i || home > j : home <= i && home > j;
      if (onPath) {
        keys[i] = keys[j]!;
        vals[i] = vals[j]!;
        i = j;
      }
    }
    vals[i] = 0;
    this.#size--;
    if (this.#keys.length > MIN_CAPACITY && this.#size * 8 < this.#keys.length) this.#resize(this.#keys.length / 2);
    return true;
  }

  *entries(): IterableIterator<[number, number]> {
    for (let i = 0; i < this.#keys.length; i++) if (this.#vals[i] !== 0) yield [this.#keys[i]!, this.#vals[i]!];
  }

  #resize(capacity: number): void {
    const keys = this.#keys;
    const vals = this.#vals;
    this.#keys = new Uint32Array(capacity);
    this.#vals = new Int32Array(capacity);
    this.#shift = 32 - Math.log2(capacity);
    this.#size = 0;
    for (let i = 0; i < keys.length; i++) if (vals[i] !== 0) this.set(keys[i]!, vals[i]!);
  }
}
