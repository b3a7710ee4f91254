/**
 * Memory profile (`memory` config key): how V8 trades heap size for speed.
 *
 *  - `lean` (default): V8's `--optimize-for-size`. The heap is kept close to the live data
 *    (V8 otherwise lets the old generation grow to about twice what survives, and keeps
 *    what it grew), at the cost of more frequent collections and somewhat smaller
 *    compiled code. Measured on the 10k-Service / 150k-endpoint benchmark: peak RSS at
 *    ready about 160 MB instead of about 225 MB, which is what lets clusterdns replace
 *    CoreDNS under its stock 170 Mi memory limit. Peak query rate is 10–20% lower.
 *  - `fast`: V8's defaults, for the highest query rate where memory is plentiful.
 *
 * The flag is set at run time, before the cluster is loaded: what it changes in V8 is
 * read when V8 decides, not fixed at startup (it is the path V8 takes on its own for a
 * background or memory-pressured isolate: Heap::ShouldOptimizeForMemoryUsage). Worker
 * processes get it on their command line instead (`execArgv`).
 */
import v8 from 'node:v8';

export type MemoryProfile = 'lean' | 'fast';

export const MEMORY_PROFILES: readonly MemoryProfile[] = ['lean', 'fast'];

/** V8 flags of each profile. */
export const MEMORY_FLAGS: Readonly<Record<MemoryProfile, readonly string[]>> = {
  lean: ['--optimize-for-size'],
  fast: [],
};

let applied: MemoryProfile | undefined;

/**
 * Set the profile's V8 flags, once per process (the first call wins: V8 flags are not
 * switched back and forth). Returns the profile in effect.
 */
export function applyMemoryProfile(profile: MemoryProfile): MemoryProfile {
  if (applied !== undefined) return applied;
  applied = profile;
  for (const f of MEMORY_FLAGS[profile]) v8.setFlagsFromString(f);
  return applied;
}

/** The profile set in this process, if any. */
export function memoryProfile(): MemoryProfile | undefined {
  return applied;
}
