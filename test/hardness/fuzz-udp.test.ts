/**
 * Fuzzing over the real UDP socket (issue 6, Hardness): 100,000 generated and
 * mutated packets (the same generator as fuzz-parser) sent to a loopback listener
 * with up to 200 in flight.
 *
 * Proves: the server neither crashes nor reports an error; every packet with a
 * readable header gets exactly one reply and that reply passes `checkReply` (decodes
 * with dns-packet, id/opcode echoed, QR set, question echoed byte for byte, within
 * 512 / min(EDNS size, 4096) bytes); packets that must be dropped (short, QR set) get
 * no reply at all; and at the end the server still answers a known name correctly,
 * over UDP and TCP.
 *
 * Default 100,000 packets; HARDNESS_FULL=1: 1,000,000. HARDNESS_SEED=n replays.
 */
import t from 'tap';
import fc from 'fast-check';
import { buildServer, checkReply, counterDelta, FULL, hex, listenOn, udpCounters, UdpPipe, Z } from './_lib.js';
import { caseArb, packetsOf } from './_fuzz.js';
import { decode, makeQuery, tcpExchange, udpExchange } from '../helpers/dns.js';

const TARGET = FULL ? 1_000_000 : 100_000;
const TIME_LIMIT_MS = FULL ? 600_000 : 75_000;
const WINDOW = 200;
/** After the run, how long to wait for stray replies (to packets that must be dropped). */
const DROP_WAIT_MS = 300;
const REPLY_WAIT_MS = 1_000;

t.test(`${TARGET.toLocaleString('en')} fuzzed packets over UDP, ${WINDOW} in flight`, async (t) => {
  const s = buildServer();
  const listenErrors: string[] = [];
  const l = await listenOn(s, { onError: (err, where) => listenErrors.push(`${where}: ${String(err)}`) });
  t.teardown(() => l.close());
  const pipe = await UdpPipe.open(l.udpPort, WINDOW, REPLY_WAIT_MS);
  t.teardown(() => pipe.close());

  const seed = process.env.HARDNESS_SEED !== undefined ? Number(process.env.HARDNESS_SEED) : Date.now() & 0x7fffffff;
  const violations: string[] = [];
  const lost: Buffer[] = [];
  let sent = 0;
  let replies = 0;
  let drops = 0;
  let unmatched = 0;
  let maxLatency = 0;
  pipe.onUnmatched = (m) => {
    // a reply matching nothing in flight: to a packet that must be dropped, or very late
    unmatched++;
    if (violations.length < 5) violations.push(`unmatched reply ${hex(m)}`);
  };
  const before = udpCounters();
  const started = performance.now();
  const deadline = started + TIME_LIMIT_MS;
  let batch = 0;
  while (sent < TARGET && performance.now() < deadline) {
    const cases = fc.sample(caseArb, { numRuns: 200, seed: (seed + batch++) | 0 });
    for (const c of cases) {
      for (const pkt of packetsOf(c)) {
        if (sent >= TARGET) break;
        sent++;
        if (pkt.length < 12 || (pkt[2]! & 0x80) !== 0) {
          // must be dropped: a reply to it would be a stray one
          drops++;
          await pipe.sendNoReply(pkt);
          continue;
        }
        await pipe.send(pkt, (reply, ms, wire) => {
          if (reply === undefined) {
            lost.push(wire);
            return;
          }
          replies++;
          if (ms > maxLatency) maxLatency = ms;
          const errs = checkReply(wire, reply, 'udp');
          if (errs.length > 0 && violations.length < 20) violations.push(`query ${hex(wire)}\n  reply ${hex(reply)}\n  ${errs.join('\n  ')}`);
        });
      }
    }
  }
  await pipe.drain(DROP_WAIT_MS);
  const after = udpCounters();
  // UDP may lose datagrams under a burst (socket buffers): ask the lost ones again,
  // one at a time; a second loss is a failure.
  const firstLoss = lost.length;
  let lostTwice = 0;
  for (const q of lost.splice(0)) {
    try {
      const reply = await udpExchange(l.udpPort, q, '127.0.0.1', REPLY_WAIT_MS);
      const errs = checkReply(q, reply, 'udp');
      if (errs.length > 0 && violations.length < 20) violations.push(`query ${hex(q)}\n  reply ${hex(reply)}\n  ${errs.join('\n  ')}`);
    } catch {
      lostTwice++;
      if (violations.length < 20) violations.push(`no reply, twice, to ${hex(q)}`);
    }
  }
  const secs = (performance.now() - started) / 1000;
  t.comment(
    `${sent.toLocaleString('en')} packets in ${secs.toFixed(1)} s (${Math.round(sent / secs).toLocaleString('en')}/s) from seed ${seed}: ` +
      `${replies.toLocaleString('en')} replies, ${drops.toLocaleString('en')} to be dropped, ${firstLoss} lost once and asked again, ` +
      `slowest reply ${maxLatency.toFixed(1)} ms; kernel UDP counters: ${counterDelta(before, after)}`,
  );
  t.ok(sent >= TARGET, `sent ${sent.toLocaleString('en')} within ${TIME_LIMIT_MS / 1000} s`);
  t.same(violations, [], 'every reply well-formed, none to dropped packets');
  t.equal(lostTwice, 0, 'every packet with a readable header answered');
  t.equal(unmatched, 0, 'no stray replies');
  t.same(s.errors.map(String), [], 'the handler reported no internal error');
  t.same(listenErrors, [], 'the listener reported no error');
  // A datagram lost on the first try must be one the kernel dropped for a full socket
  // buffer (a system-wide counter, so other processes only make this more lenient).
  const bufDrops = (after.RcvbufErrors ?? 0) - (before.RcvbufErrors ?? 0);
  if (after.RcvbufErrors !== undefined) t.ok(firstLoss <= bufDrops, `each first-try loss (${firstLoss}) is a kernel receive-buffer drop (${bufDrops})`);
  t.ok(firstLoss <= sent / 100, `at most 1% lost on the first try (${firstLoss})`);

  // still serving, correctly
  const a = decode(await udpExchange(l.udpPort, makeQuery(`SVC1.testns.svc.${Z}`, 'A', { id: 77 })));
  t.equal(a.id, 77);
  t.same(a.answer, [`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`], 'UDP: a known name still answers correctly');
  const [r] = await tcpExchange(l.tcpPort, [makeQuery(`hdls1.testns.svc.${Z}`, 'A')]);
  t.same(
    decode(r!).answer.sort(),
    ['172.0.0.2', '172.0.0.3', '172.0.0.4', '172.0.0.5'].map((ip) => `hdls1.testns.svc.${Z}. 5 IN A ${ip}`),
    'TCP: a known name still answers correctly',
  );
});
