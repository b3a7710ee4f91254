/**
 * Forwarding wire work without sockets: the query we send (RFC 5452, RFC 6891), the
 * checks on a reply, the scan (TTL offsets, RFC 2308 SOA), and the reply rendered for
 * the client (its ID, question case and EDNS; RFC 2181 §9 truncation). dns-packet is
 * the independent encoder/decoder.
 */
import t from 'tap';
import * as dnsPacket from 'dns-packet';
import { Flag, Rcode, Type } from '../../src/dns/constants.js';
import { parseQuery, type Query } from '../../src/dns/query.js';
import { buildQuery, checkReply, lowerQuestion, questionFor, randomId, readName, renderReply, type Scan } from '../../src/upstream/wire.js';
import { decode, makeQuery } from '../helpers/dns.js';

function query(buf: Buffer): Query {
  const p = parseQuery(buf);
  if (p.kind !== 'query') throw new Error('not a query');
  return p.query;
}

const OPT = (flags = 0): dnsPacket.Answer => ({ type: 'OPT', name: '.', udpPayloadSize: 1232, flags }) as unknown as dnsPacket.Answer;

/** An upstream reply to `q` with id `id`, from dns-packet. */
function reply(id: number, name: string, p: Partial<dnsPacket.Packet> & { flags?: number } = {}): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id,
    flags: p.flags ?? dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ name, type: 'A', class: 'IN' }],
    answers: p.answers ?? [],
    authorities: p.authorities ?? [],
    additionals: p.additionals ?? [OPT()],
  });
}

const A = (name: string, ip: string, ttl = 300): dnsPacket.Answer => ({ name, type: 'A', ttl, data: ip });
const SOA = (ttl: number, minimum: number): dnsPacket.Answer => ({
  name: 'example.org',
  type: 'SOA',
  ttl,
  data: { mname: 'ns.example.org', rname: 'h.example.org', serial: 1, refresh: 1, retry: 1, expire: 1, minimum },
});

t.test('the upstream query: fresh ID, RD, lowercase question, our OPT', async (t) => {
  const req = makeQuery('WWW.Example.ORG', 'A', { edns: 4096, rd: false });
  const q = query(req);
  const question = lowerQuestion(req, q);
  t.equal(question.toString('latin1', 1, 4), 'www');
  t.equal(req.subarray(12, 16).toString('latin1', 1), 'WWW', 'the request is not modified');
  const out = dnsPacket.decode(buildQuery(0xbeef, question, { dnssecOk: true, checkingDisabled: true })) as dnsPacket.DecodedPacket & { flags: number };
  t.equal(out.id, 0xbeef);
  t.equal(out.flags & Flag.RD, Flag.RD, 'RD set even when the client cleared it');
  t.equal(out.flags & Flag.CD, Flag.CD);
  t.same(out.questions, [{ name: 'www.example.org', type: 'A', class: 'IN' }]);
  const opt = out.additionals![0] as unknown as { udpPayloadSize: number; flags: number };
  t.equal(opt.udpPayloadSize, 1232, 'our size, not the client 4096');
  t.equal(opt.flags & 0x8000, 0x8000, 'DO as the client asked');
  const ids = new Set(Array.from({ length: 1000 }, () => randomId()));
  t.ok(ids.size > 950, `IDs are random (${ids.size} distinct of 1000)`);
  t.same([...questionFor('a.b', Type.AAAA)!], [1, 97, 1, 98, 0, 0, 28, 0, 1]);
  t.same([...questionFor('', Type.NS)!], [0, 0, 2, 0, 1], 'the root');
  for (const bad of ['a..b', 'x'.repeat(64), 'a\\046b', 'sp ace', `${'a'.repeat(60)}.`.repeat(5)]) t.equal(questionFor(bad, 1), undefined, `unwritable: ${bad.slice(0, 20)}`);
});

t.test('checkReply accepts only the reply to our query (RFC 5452)', async (t) => {
  const question = questionFor('www.example.org', Type.A)!;
  const good = reply(7, 'www.example.org', { answers: [A('www.example.org', '192.0.2.1')] });
  t.ok(checkReply(good, 7, question));
  t.equal(checkReply(good, 8, question), undefined, 'other ID');
  t.equal(checkReply(reply(7, 'other.example.org'), 7, question), undefined, 'other question');
  t.ok(checkReply(reply(7, 'WwW.eXample.ORG'), 7, question), '0x20 case changes are fine');
  const q = Buffer.from(good);
  q.writeUInt16BE(q.readUInt16BE(2) & ~Flag.QR, 2);
  t.equal(checkReply(q, 7, question), undefined, 'QR clear');
  t.equal(checkReply(good.subarray(0, good.length - 3), 7, question), undefined, 'cut short');
  t.equal(checkReply(good.subarray(0, 11), 7, question), undefined, 'shorter than a header');
  // A name compressed with a pointer to itself / forward: unreadable.
  const bad = Buffer.from(good);
  const at = 12 + question.length;
  bad.writeUInt16BE(0xc000 | at, at);
  t.equal(checkReply(bad, 7, question), undefined, 'pointer loop');
  // Header-only error replies (servers that drop the question).
  const hdr = (rcode: number): Buffer => Buffer.from([0, 7, 0x81, 0x80 | rcode, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.equal(checkReply(hdr(Rcode.SERVFAIL), 7, question)?.rcode, Rcode.SERVFAIL, 'question-less SERVFAIL');
  t.equal(checkReply(hdr(Rcode.NOERROR), 7, question), undefined, 'question-less NOERROR is not an answer');
});

t.test('scan: records, TTL offsets, minimum TTL, negative TTL from the SOA', async (t) => {
  const question = questionFor('www.example.org', Type.A)!;
  const pos = checkReply(reply(1, 'www.example.org', { answers: [A('www.example.org', '192.0.2.1', 300), A('www.example.org', '192.0.2.2', 40)] }), 1, question)!;
  t.equal(pos.records.length, 2);
  t.equal(pos.answers, 2);
  t.equal(pos.minTtl, 40);
  t.equal(pos.soaTtl, undefined);
  t.same(pos.opt, { udpSize: 1232, extRcode: 0, dnssecOk: false });
  const neg = checkReply(reply(1, 'www.example.org', { flags: 0x8183, authorities: [SOA(3600, 60)] }), 1, question)!;
  t.equal(neg.rcode, Rcode.NXDOMAIN);
  t.equal(neg.soaTtl, 60, 'min(SOA TTL, MINIMUM)');
  t.equal(checkReply(reply(1, 'www.example.org', { authorities: [SOA(10, 600)] }), 1, question)!.soaTtl, 10);
  // RFC 2181 §8: TTLs with the top bit set count as 0.
  const huge = reply(1, 'www.example.org', { answers: [A('www.example.org', '192.0.2.1', 0x80000000)] });
  t.equal(checkReply(huge, 1, question)!.minTtl, 0);
  // Records after the OPT are left out; extended rcode bits come from the OPT.
  const after = dnsPacket.encode({
    type: 'response',
    id: 1,
    flags: 0x8180,
    questions: [{ name: 'www.example.org', type: 'A', class: 'IN' }],
    answers: [A('www.example.org', '192.0.2.1')],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 1, flags: 0 } as unknown as dnsPacket.Answer, A('x.example.org', '192.0.2.9')],
  });
  const s = checkReply(after, 1, question)!;
  t.equal(s.records.length, 1);
  t.equal(s.rcode, 16, 'BADVERS = OPT 1 << 4 | 0');
});

function render(up: Buffer, req: Buffer, opts: { maxSize?: number; ttl?: (n: number) => number } = {}): ReturnType<typeof decode> & { raw: Buffer } {
  const q = query(req);
  const scan = checkReply(up, up.readUInt16BE(0), lowerQuestion(req, q)) as Scan;
  const raw = renderReply(up, scan, req, q, { maxSize: opts.maxSize ?? 65535, ttl: opts.ttl });
  return { ...decode(raw), raw };
}

t.test('the reply for the client: its ID, question case, flags and EDNS', async (t) => {
  const up = reply(99, 'www.example.org', { flags: 0x8180 | Flag.AA | Flag.AD, answers: [A('www.example.org', '192.0.2.1', 300)] });
  const r = render(up, makeQuery('WWW.example.ORG', 'A', { id: 4242, edns: 1232 }));
  t.equal(r.id, 4242);
  t.equal(r.question, 'WWW.example.ORG IN A', 'the client question bytes');
  t.same(r.answer, ['www.example.org. 300 IN A 192.0.2.1']);
  t.ok(r.aa, 'AA as upstream');
  t.ok(r.ra);
  t.equal(r.flags & Flag.AD, 0, 'AD only for clients that set DO or AD (RFC 6840 §5.8)');
  t.same(r.opt, { udpPayloadSize: 1232, extendedRcode: 0 });
  const plain = render(up, makeQuery('www.example.org', 'A', { rd: false }));
  t.equal(plain.opt, undefined, 'no client OPT: none in the reply');
  t.equal(plain.flags & Flag.RD, 0, 'RD as the client sent it');
  t.equal(plain.extra.length, 0);
  const noOpt = reply(99, 'www.example.org', { answers: [A('www.example.org', '192.0.2.1')], additionals: [] });
  t.ok(render(noOpt, makeQuery('www.example.org', 'A', { edns: 512 })).opt, 'client OPT: one in the reply even when the upstream had none');
  const counted = render(up, makeQuery('www.example.org', 'A'), { ttl: (n) => Math.min(n, 30) - 4 });
  t.same(counted.answer, ['www.example.org. 26 IN A 192.0.2.1'], 'TTLs patched');
  const ext = reply(99, 'www.example.org', { flags: 0x8180, additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 1, flags: 0 } as unknown as dnsPacket.Answer] });
  t.equal(render(ext, makeQuery('www.example.org', 'A')).rcode, 'SERVFAIL', 'an extended rcode cannot reach a client without EDNS');
  t.equal(render(ext, makeQuery('www.example.org', 'A', { edns: 1232 })).opt?.extendedRcode, 1);
});

t.test('truncation at whole records; TC only when answer or authority records are left out', async (t) => {
  const answers = Array.from({ length: 60 }, (_, i) => A('big.example.org', `10.0.0.${i + 1}`));
  const extra = [A('ns.example.org', '10.9.9.9'), OPT()];
  const up = reply(5, 'big.example.org', { answers, additionals: extra });
  const all = render(up, makeQuery('big.example.org', 'A', { edns: 4096 }));
  t.equal(all.answer.length, 60);
  t.equal(all.extra.length, 1);
  t.notOk(all.tc);
  const small = render(up, makeQuery('big.example.org', 'A'), { maxSize: 512 });
  t.ok(small.tc);
  t.ok(small.size <= 512);
  t.ok(small.answer.length > 10 && small.answer.length < 60, `${small.answer.length} whole records`);
  // Exactly the answers fit, not the additional record: no TC.
  const withoutExtra = all.raw.length - 11 - 16; // minus OPT and the 16-byte additional A
  const fit = render(up, makeQuery('big.example.org', 'A', { edns: 1232 }), { maxSize: withoutExtra + 11 });
  t.equal(fit.answer.length, 60);
  t.equal(fit.extra.length, 0);
  t.notOk(fit.tc, 'only additional data left out');
  t.ok(fit.opt, 'space for the OPT kept');
});

t.test('readName', async (t) => {
  const msg = reply(1, 'www.example.org', { answers: [{ name: 'alias.example.org', type: 'CNAME', ttl: 1, data: 'WWW.Example.org' }] });
  t.equal(readName(msg, 12), 'www.example.org');
  t.equal(readName(Buffer.from([3, 0x61, 0x2e, 0x62, 0]), 0), undefined, 'a dot inside a label');
  t.equal(readName(Buffer.from([0xc0, 0x00]), 0), undefined, 'a pointer to itself');
  t.equal(readName(Buffer.from([0]), 0), '', 'the root');
});
