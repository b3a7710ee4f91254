/**
 * The cache's byte bound is honest: what an entry costs in memory (V8 heap and malloc'd
 * memory, measured after full GCs in a child process: _cache-memory.ts) is at most what it
 * is charged against maxBytes before the GC's headroom is added. So a stream of unique
 * names holds the process at its base plus maxBytes, not more (bench/forward.ts measures
 * the resident set).
 *
 * No timing: memory only.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENTRY_OVERHEAD, GC_HEADROOM } from '../../src/upstream/cache.js';

const child = join(dirname(fileURLToPath(import.meta.url)), '_cache-memory.ts');

for (const [label, records, rcode] of [
  ['positive, 4 records', 4, 0],
  ['NXDOMAIN with its SOA', 0, 3],
  ['positive, 1 record', 1, 0],
] as const) {
  t.test(`an entry costs at most what it is charged: ${label}`, async (t) => {
    const out = execFileSync(process.execPath, ['--expose-gc', '--single-threaded-gc', '--import', 'tsx', child, String(records), String(rcode)], { encoding: 'utf8' });
    const r = JSON.parse(out) as { n: number; size: number; cost: number; charged: number; live: number };
    t.equal(r.size, r.n, 'every entry kept');
    const per = (x: number): string => (x / r.n).toFixed(0);
    t.comment(`${label}: ${per(r.cost)} B per entry measured, ${per(r.live)} B charged live (ENTRY_OVERHEAD ${ENTRY_OVERHEAD}), × ${GC_HEADROOM} GC headroom = ${per(r.charged)} B`);
    t.ok(r.cost <= r.live, `measured ${per(r.cost)} B/entry ≤ charged ${per(r.live)} B/entry (before the GC headroom)`);
    t.ok(r.cost >= r.live * 0.6, `and the charge is not wildly high (${((r.live / r.cost) * 100).toFixed(0)}% of the measured cost)`);
  });
}
