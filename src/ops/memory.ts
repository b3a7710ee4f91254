/**
 * Memory profile (`memory` config key): how V8 trades heap size for speed.
 *
 *  - `lean` (default): V8's `--optimize-for-size`. The heap is kept close to the live data
 *    (V8 otherwise lets the old generation grow to about twice what survives, and keeps
 *    what it grew), at the cost of more frequent collections and somewhat smaller
 *    compiled code. While the cluster is first loaded, also `--semi-space-growth-factor=1`:
 *    the young generation keeps its initial 1 MiB semi-spaces instead of growing to
 *    16 MiB ones (32 MiB committed, and kept) because the initial list survives in bulk.
 *    `startupDone` puts V8's default back once the view is complete: held for good, the
 *    extra scavenges cost ~10% of the peak query rate. Measured on the 10k-Service /
 *    150k-endpoint benchmark: peak RSS at ready 111–116 MB (117–129 MB without the
 *    startup flag; about 190 MB with `fast`), which is what lets clusterdns replace
 *    CoreDNS under its stock 170 Mi memory limit.
 *  - `fast`: V8's defaults, for the highest query rate where memory is plentiful.
 *
 * The flags are set at run time, before the cluster is loaded: what they change in V8 is
 * read when V8 decides, not fixed at startup (`--optimize-for-size` is the path V8 takes
 * on its own for a background or memory-pressured isolate, Heap::ShouldOptimizeForMemoryUsage;
 * the growth factor is read each time the young generation grows). Worker processes get
 * them on their command line instead (`execArgv`).
 */
import v8 from 'node:v8';

export type MemoryProfile = 'lean' | 'fast';

export const MEMORY_PROFILES: readonly MemoryProfile[] = ['lean', 'fast'];

/** V8 flags of each profile, from process start (workers: on their command line). */
export const MEMORY_FLAGS: Readonly<Record<MemoryProfile, readonly string[]>> = {
  lean: ['--optimize-for-size', '--semi-space-growth-factor=1'],
  fast: [],
};

/** What `startupDone` sets: V8's defaults back for the flags that only serve the initial load. */
const AFTER_STARTUP: Readonly<Record<MemoryProfile, readonly string[]>> = {
  lean: ['--semi-space-growth-factor=2'],
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

let startupOver = false;

/**
 * The initial load is complete (the first full view is built): drop the flags that only
 * served it. Once per process; later calls do nothing.
 */
export function startupDone(profile: MemoryProfile): void {
  if (startupOver) return;
  startupOver = true;
  for (const f of AFTER_STARTUP[profile]) v8.setFlagsFromString(f);
}

/** The profile set in this process, if any. */
export function memoryProfile(): MemoryProfile | undefined {
  return applied;
}
