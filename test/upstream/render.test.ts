/**
 * A cached answer is served by `renderEntry` from its compact form (one latin1 string with
 * the record offsets, packed header facts): it must be byte for byte what `renderReply`
 * makes from the upstream message with every TTL set to the same value — for clients with
 * and without EDNS, every budget (cut at whole records, TC), DO/AD/CD, any letter case.
 */
import t from 'tap';
import * as dnsPacket from 'dns-packet';
import { parseQuery, type Query } from '../../src/dns/query.js';
import { CacheEntry } from '../../src/upstream/cache.js';
import { bytesOf, checkReply, questionFor, renderEntry, renderReply, scanOf, spanCount } from '../../src/upstream/wire.js';

const NAME = 'www.example.org';
const SOA = { mname: 'ns.example.org', rname: 'h.example.org', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 60 };

function upstream(kind: 'cname-chain' | 'nxdomain' | 'big' | 'with-additional', dnssecOk: boolean): Buffer {
  const opt = { type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer;
  const base = { type: 'response' as const, id: 77, questions: [{ name: NAME, type: 'A' as const, class: 'IN' as const }] };
  switch (kind) {
    case 'cname-chain':
      return dnsPacket.encode({
        ...base,
        flags: 0x8180 | 0x0020, // AD set upstream
        answers: [
          { name: NAME, type: 'CNAME', ttl: 300, data: 'alias.example.org' },
          { name: 'alias.example.org', type: 'A', ttl: 120, data: '192.0.2.1' },
          { name: 'alias.example.org', type: 'A', ttl: 120, data: '192.0.2.2' },
        ],
        additionals: [opt],
      });
    case 'nxdomain':
      return dnsPacket.encode({ ...base, flags: 0x8183 | 0x0400, authorities: [{ name: 'example.org', type: 'SOA', ttl: 3600, data: SOA }], additionals: [opt] });
    case 'big':
      return dnsPacket.encode({
        ...base,
        flags: 0x8180,
        answers: Array.from({ length: 60 }, (_, i) => ({ name: NAME, type: 'A' as const, ttl: 300, data: `10.0.0.${i}` })),
        authorities: [{ name: 'example.org', type: 'NS', ttl: 300, data: 'ns.example.org' }],
        additionals: [opt],
      });
    case 'with-additional':
      return dnsPacket.encode({
        ...base,
        flags: 0x8180,
        answers: Array.from({ length: 20 }, (_, i) => ({ name: NAME, type: 'A' as const, ttl: 300, data: `10.1.0.${i}` })),
        authorities: [{ name: 'example.org', type: 'NS', ttl: 300, data: 'ns.example.org' }],
        additionals: [{ name: 'ns.example.org', type: 'A', ttl: 300, data: '192.0.2.53' }, opt, { name: 'after.example.org', type: 'A', ttl: 300, data: '192.0.2.54' }],
      });
  }
}

function client(name: string, o: { edns?: number; do?: boolean; cd?: boolean; ad?: boolean }): { req: Buffer; q: Query } {
  const req = dnsPacket.encode({
    type: 'query',
    id: 4321,
    flags: dnsPacket.RECURSION_DESIRED | (o.cd === true ? dnsPacket.CHECKING_DISABLED : 0) | (o.ad === true ? dnsPacket.AUTHENTIC_DATA : 0),
    questions: [{ name, type: 'A', class: 'IN' }],
    additionals: o.edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: o.edns, flags: o.do === true ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer],
  });
  const p = parseQuery(req);
  if (p.kind !== 'query') throw new Error('bad query');
  return { req, q: p.query };
}

t.test('renderEntry = renderReply with one TTL, for every client shape and budget', async (t) => {
  let compared = 0;
  for (const kind of ['cname-chain', 'nxdomain', 'big', 'with-additional'] as const) {
    for (const upstreamDo of [false, true]) {
      const msg = upstream(kind, upstreamDo);
      const scan = checkReply(msg, 77, questionFor(NAME, 1)!)!;
      t.ok(scan, `${kind}: a valid reply`);
      const e = new CacheEntry(msg, scan, 4, NAME, 0, 25, kind === 'nxdomain' ? 'denial' : 'success');
      t.equal(spanCount(e), scan.records.length, `${kind}: every kept record has its offsets`);
      t.equal(e.rcode, scan.rcode);
      for (const name of [NAME, 'WWW.Example.ORG']) {
        for (const c of [{}, { edns: 512 }, { edns: 1232, do: true }, { edns: 4096, cd: true }, { ad: true }, { edns: 600, do: true, ad: true }]) {
          const { req, q } = client(name, c);
          for (const maxSize of [512, 600, 1232, 65535]) {
            for (const ttl of [0, 7, 25, 86400]) {
              const want = renderReply(msg, scan, req, q, { maxSize, ttl: () => ttl });
              const got = renderEntry(e, req, q, maxSize, ttl);
              if (!got.equals(want)) {
                t.fail(`${kind} DO=${upstreamDo} ${name} ${JSON.stringify(c)} max ${maxSize} ttl ${ttl}: differs`);
                t.same(dnsPacket.decode(got), dnsPacket.decode(want));
                return;
              }
              compared++;
            }
          }
          // -1: the bytes as received.
          const { req: r2, q: q2 } = client(name, c);
          t.ok(renderEntry(e, r2, q2, 65535, -1).equals(renderReply(msg, scan, r2, q2, { maxSize: 65535, ttl: undefined })), `${kind} ${name}: TTLs kept`);
        }
      }
      // The rare paths read the entry back as a message.
      const back = scanOf(e);
      t.same(
        back.records.map((r) => [r.type, r.section, r.ttl]),
        scan.records.map((r) => [r.type, r.section, r.ttl]),
        `${kind}: scanOf gives the kept records`,
      );
      t.equal(bytesOf(e).length, scan.records.length > 0 ? scan.records[scan.records.length - 1]!.end : scan.questionEnd);
    }
  }
  t.ok(compared > 1000, `${compared} renderings compared byte for byte`);
});

t.test('what is cut: whole records, TC only for answer or authority records left out', async (t) => {
  const msg = upstream('with-additional', false);
  const scan = checkReply(msg, 77, questionFor(NAME, 1)!)!;
  const e = new CacheEntry(msg, scan, 4, NAME, 0, 25, 'success');
  t.equal(e.an, 20);
  t.equal(e.ns, 1);
  t.equal(spanCount(e) - e.an - e.ns, 1, 'the additional record before the OPT; the one after it left out');
  const { req, q } = client(NAME, {});
  // A budget that holds the answers and the authority record, not the glue.
  const budget = scan.records[20]!.end + 5;
  t.ok(budget < scan.records[21]!.end);
  const small = dnsPacket.decode(renderEntry(e, req, q, budget, 10));
  t.equal(small.answers?.length, 20);
  t.equal(small.authorities?.length, 1);
  t.equal(small.additionals?.length ?? 0, 0, 'the glue did not fit');
  t.equal(((small as { flags?: number }).flags ?? 0) & 0x200, 0, 'no TC: only additional data left out');
  const tiny = dnsPacket.decode(renderEntry(e, req, q, 200, 10));
  t.ok((tiny.answers?.length ?? 0) < 20);
  t.not(((tiny as { flags?: number }).flags ?? 0) & 0x200, 0, 'TC: answers left out');
  for (const a of tiny.answers ?? []) t.equal((a as { ttl?: number }).ttl, 10);
});
