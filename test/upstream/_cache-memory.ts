/**
 * Child process of cache-memory.test.ts (run with --expose-gc, away from the test
 * runner's own allocations): what N cache entries cost in memory, V8 heap plus malloc'd
 * memory after full GCs, against what they are charged. Prints JSON.
 *
 * The received messages are made as dgram makes them (a buffer of their own each) and
 * dropped after storing, as the forwarder drops them.
 */
import * as dnsPacket from 'dns-packet';
import { AnswerCache, cacheSlot, GC_HEADROOM } from '../../src/upstream/cache.js';
import { checkReply, questionFor, type Scan } from '../../src/upstream/wire.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  // Run directly (e.g. `tap test/upstream/`): nothing to measure without --expose-gc.
  process.stdout.write('# child of cache-memory.test.ts (needs --expose-gc): nothing to do\n');
  process.exit(0);
}

function received(name: string, records: number, rcode: number): { buf: Buffer; scan: Scan } {
  const raw = dnsPacket.encode({
    type: 'response',
    id: 1,
    flags: 0x8580 | rcode,
    questions: [{ name, type: 'A', class: 'IN' }],
    answers: Array.from({ length: records }, (_, k) => ({ name, type: 'A', ttl: 300, data: `198.19.${k >> 8}.${k & 255}` })),
    authorities:
      records === 0 ? [{ name: 'bench.test', type: 'SOA', ttl: 300, data: { mname: 'ns.bench.test', rname: 'hostmaster.bench.test', serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: 60 } }] : [],
    additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, flags: 0 } as dnsPacket.Answer],
  });
  const buf = Buffer.allocUnsafeSlow(raw.length);
  raw.copy(buf);
  return { buf, scan: checkReply(buf, 1, questionFor(name, 1)!)! };
}

function settled(): number {
  for (let i = 0; i < 4; i++) gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

const [records, rcode] = process.argv.slice(2).map(Number) as [number, number];
const N = 30_000;
const c = new AnswerCache({ maxEntries: 10_000_000, maxBytes: 2 ** 34 });
let msgs: { buf: Buffer; scan: Scan; name: string }[] = [];
for (let i = 0; i < N; i++) {
  const name = `u-${(i * 7919).toString(36)}.w.bench.test`;
  msgs.push({ ...received(name, records, rcode), name });
}
let charged = 0;
const slot = cacheSlot(1, 1, false, false);
for (const m of msgs) {
  const e = c.store(slot, m.name, m.buf, m.scan, 1);
  if (e === undefined) throw new Error('not cached');
  charged += e.size;
}
// The names stay alive (in the cache, and here); the received buffers are dropped.
const names = msgs.map((m) => m.name);
msgs = [];
const full = settled();
const size = c.stats().size;
c.clear();
const empty = settled();
// The cache also keeps the parser's name strings alive (charged by their length).
const nameBytes = names.reduce((n, s) => n + 16 + Math.ceil(s.length / 8) * 8, 0);
process.stdout.write(`${JSON.stringify({ n: N, size, cost: full - empty + nameBytes, charged, live: charged / GC_HEADROOM, kept: names.length })}\n`);
