/**
 * U32Map (the reverse index's IPv4 table) against a Map model: random sets, overwrites
 * and deletes, with keys drawn from small clusters so probe runs collide and wrap, and
 * enough of them to grow and shrink the table. And its keys (ipv4Key).
 */
import fc from 'fast-check';
import t from 'tap';
import { ipv4Key } from '../../src/net/ip.js';
import { U32Map } from '../../src/zone/u32map.js';

type Op = { op: 'set'; k: number; v: number } | { op: 'del'; k: number };

const key = fc.oneof(
  fc.integer({ min: 0, max: 64 }),
  fc.integer({ min: 0xffffffc0, max: 0xffffffff }),
  fc.integer({ min: 0x0af40000, max: 0x0af40000 + 4000 }),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), k: key, v: fc.integer({ min: -5, max: 1 << 20 }).filter((v) => v !== 0) }),
  fc.record({ op: fc.constant('del' as const), k: key }),
);

function check(m: U32Map, model: Map<number, number>, probe: number[]): boolean {
  if (m.size !== model.size) return false;
  for (const k of probe) if (m.get(k) !== (model.get(k) ?? 0)) return false;
  const seen = new Map(m.entries());
  return seen.size === model.size && [...model].every(([k, v]) => seen.get(k) === v);
}

t.test('behaves as a Map under random sets and deletes', async (t) => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 3000 }), (ops) => {
      const m = new U32Map();
      const model = new Map<number, number>();
      for (const o of ops) {
        if (o.op === 'set') {
          m.set(o.k, o.v);
          model.set(o.k, o.v);
        } else if (m.delete(o.k) !== model.delete(o.k)) return false;
      }
      return check(m, model, [...ops.map((o) => o.k), 65, 0xffffffbf, 0x0af40000 + 4001]);
    }),
    { numRuns: 200 },
  );
  t.pass('200 random runs matched the model');
});

t.test('grows past 100k sequential addresses and shrinks back, finding every key', async (t) => {
  const m = new U32Map();
  const base = 0x0a000000;
  for (let i = 0; i < 150_000; i++) m.set(base + i * 3, i + 1);
  t.equal(m.size, 150_000);
  let ok = 0;
  for (let i = 0; i < 150_000; i++) if (m.get(base + i * 3) === i + 1 && m.get(base + i * 3 + 1) === 0) ok++;
  t.equal(ok, 150_000, 'every key found, no neighbour invented');
  for (let i = 0; i < 150_000; i += 2) m.delete(base + i * 3);
  for (let i = 1; i < 150_000; i += 2) m.set(base + i * 3, -i);
  for (let i = 0; i < 149_000; i++) m.delete(base + i * 3);
  t.equal(m.size, 500);
  let kept = 0;
  for (let i = 149_000; i < 150_000; i++) if (m.get(base + i * 3) === (i % 2 === 0 ? 0 : -i)) kept++;
  t.equal(kept, 1000, 'the rest intact after shrinking');
  t.throws(() => m.set(1, 0), RangeError, 'zero is the empty marker');
});

t.test('ipv4Key: canonical dotted quads only', async (t) => {
  t.equal(ipv4Key('0.0.0.0'), 0);
  t.equal(ipv4Key('10.244.1.7'), 0x0af40107);
  t.equal(ipv4Key('255.255.255.255'), 0xffffffff);
  for (const bad of ['10.02.0.1', '256.0.0.1', '1.2.3', '1.2.3.4.5', '1..2.3', '.1.2.3', '1.2.3.', 'fd00::1', '', '1.2.3.4 ', '0000.1.1.1']) {
    t.equal(ipv4Key(bad), -1, JSON.stringify(bad));
  }
});
