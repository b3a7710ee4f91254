/**
 * Child process of test/config.test.ts: the largest size of V8's young generation during a
 * burst of surviving allocation, under `memory: lean` during startup and after
 * `startupDone`. Prints JSON { start, during, after } (bytes of new space).
 */
import v8 from 'node:v8';
import { applyMemoryProfile, startupDone } from '../../src/ops/memory.js';

applyMemoryProfile('lean');
const newSpace = (): number => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;
const keep: object[] = [];
/** The largest new space seen while allocating `n` objects that survive. */
const burst = (n: number): number => {
  let max = 0;
  for (let i = 0; i < n; i++) {
    keep.push({ i });
    if ((i & 0xffff) === 0) max = Math.max(max, newSpace());
  }
  return max;
};
const start = newSpace();
const during = burst(2e6);
startupDone('lean');
const after = burst(2e6);
process.stdout.write(`${JSON.stringify({ start, during, after, kept: keep.length })}\n`);
