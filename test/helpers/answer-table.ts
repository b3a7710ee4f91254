/**
 * The answer-table runner: cases as {qname, qtype, rcode, answer, ns, extra} with
 * records in zone-file text, each run three ways: through the handler in-process
 * (fresh and from the wire-answer cache), over real UDP and over real TCP. Replies are
 * decoded by dns-packet (an independent decoder). Feature tables (zonal, multicluster...)
 * share it with test/answers.test.ts.
 */
import type { Test } from 'tap';
import type { DnsHandler } from '../../src/server/handler.js';
import { listen } from '../../src/server/listen.js';
import { decode, makeQuery, tcpExchange, udpExchange } from './dns.js';

export interface Case {
  q: string;
  type: string;
  rcode: string;
  answer?: string[];
  /** Authority records; a SOA's serial is written `SERIAL`. */
  ns?: string[];
  extra?: string[];
}

/** `SOA`, NODATA and NXDOMAIN expectations for a zone with the default TTL (5). */
export function zoneExpectations(zone: string, ttl = 5): { SOA: string; NODATA: Omit<Case, 'q' | 'type'>; NX: Omit<Case, 'q' | 'type'> } {
  const SOA = `${zone}. ${Math.min(ttl, 300)} IN SOA ns.dns.${zone}. hostmaster.${zone}. SERIAL 7200 1800 86400 ${ttl}`;
  return { SOA, NODATA: { rcode: 'NOERROR', answer: [], ns: [SOA] }, NX: { rcode: 'NXDOMAIN', answer: [], ns: [SOA] } };
}

export function check(t: Test, c: Case, raw: Buffer, label: string): void {
  const d = decode(raw);
  const sort = (a: string[]) => [...a].sort();
  t.equal(d.rcode, c.rcode, `${label} rcode`);
  t.equal(d.id, 4242, `${label} id`);
  t.same(sort(d.answer), sort(c.answer ?? []), `${label} answer`);
  if (c.ns !== undefined) t.same(sort(d.ns.map((r) => r.replace(/ \d+ 7200 /, ' SERIAL 7200 '))), sort(c.ns), `${label} authority`);
  if (c.extra !== undefined) t.same(sort(d.extra), sort(c.extra), `${label} additional`);
  if (['NOERROR', 'NXDOMAIN'].includes(c.rcode)) t.ok(d.aa, `${label} AA set`);
}

/** Run `cases` against a handler from `setup` in-process (twice: fresh, cached), then over UDP and TCP. */
export function runTable(t: Test, title: string, setup: () => DnsHandler, cases: readonly Case[]): void {
  t.test(`${title}, in-process`, async (t) => {
    const h = setup();
    for (const c of cases) {
      for (const round of ['fresh', 'cached']) {
        const out = h.handle(makeQuery(c.q, c.type, { edns: 1232 }), 'udp');
        t.ok(Buffer.isBuffer(out), `${c.q} ${c.type} answered synchronously`);
        check(t, c, out as Buffer, `${c.q} ${c.type} (${round})`);
      }
    }
  });
  t.test(`${title} over real UDP and TCP sockets`, async (t) => {
    const h = setup();
    const l = await listen(h, { host: '127.0.0.1', port: 0 });
    t.teardown(() => l.close());
    for (const c of cases) {
      const q = makeQuery(c.q, c.type);
      check(t, c, await udpExchange(l.udpPort, q), `udp ${c.q} ${c.type}`);
      const [r] = await tcpExchange(l.tcpPort, [q]);
      check(t, c, r!, `tcp ${c.q} ${c.type}`);
    }
  });
}
