/**
 * Misbehaving upstream servers for forwarder fault tests, on real UDP and TCP sockets
 * at 127.0.0.1 (one port for both). The behaviour (`mode`) can be changed while it runs.
 *
 * An answering fake is authoritative for everything: A queries get `count` A records
 * (`ip`, then the next addresses) with `ttl`; other types get NODATA with an SOA.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import * as dnsPacket from 'dns-packet';
import type { Test } from 'tap';

export type FakeMode =
  /** Answer (see above). */
  | { readonly kind: 'answer'; readonly ip?: string; readonly ttl?: number; readonly count?: number; readonly rcode?: number }
  /** Read and never reply (a black hole). */
  | { readonly kind: 'drop' }
  /** Answer after `delayMs`. */
  | { readonly kind: 'slow'; readonly delayMs: number; readonly ip?: string; readonly ttl?: number }
  /** Over UDP, an empty reply with TC; over TCP the full answer, or (`tcp`) a closed connection or random bytes. */
  | { readonly kind: 'truncate'; readonly ip?: string; readonly count?: number; readonly tcp?: 'answer' | 'close' | 'garbage' }
  /**
   * Replies that are not the answer: random bytes, the answer with another ID, the
   * answer to another question, or all three. `then-answer`: the three, then the answer.
   */
  | { readonly kind: 'garbage'; readonly variant: 'random' | 'wrong-id' | 'wrong-question' | 'all' | 'then-answer'; readonly ip?: string }
  /** Reply with this rcode and no records. */
  | { readonly kind: 'rcode'; readonly rcode: number }
  /** Relay every query to `port` (over UDP) and its reply back: a forwarding loop when that is us. */
  | { readonly kind: 'forward'; readonly port: number; readonly host?: string };

export interface Received {
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
}

export interface FakeUpstream {
  readonly host: string;
  readonly port: number;
  mode: FakeMode;
  /** Queries received, in order. */
  readonly received: Received[];
  /** Queries received for `name` (case-insensitive), health checks (`.`) included when asked. */
  count(name: string): number;
  close(): Promise<void>;
}

const DEFAULT_IP = '198.51.100.1';

export async function fakeUpstream(t: Test, mode: FakeMode): Promise<FakeUpstream> {
  const tcp = net.createServer();
  const conns = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
  const port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, '127.0.0.1', () => resolve());
  });
  udp.on('error', () => {});
  const fake: FakeUpstream = {
    host: '127.0.0.1',
    port,
    mode,
    received: [],
    count: (name) => fake.received.filter((r) => r.name.toLowerCase() === name.toLowerCase()).length,
    close: async () => {
      for (const tm of timers) clearTimeout(tm);
      for (const c of conns) c.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
  let closed = false;
  const later = (ms: number, f: () => void): void => {
    const tm = setTimeout(() => {
      timers.delete(tm);
      if (!closed) f();
    }, ms);
    timers.add(tm);
  };

  /** Replies for one query (several for garbage modes), possibly after a delay. */
  const respond = (msg: Buffer, transport: 'udp' | 'tcp', send: (b: Buffer) => void, drop: () => void = () => {}): void => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (question === undefined) return;
    fake.received.push({ name: question.name, type: question.type, transport });
    const m = fake.mode;
    switch (m.kind) {
      case 'drop':
        return;
      case 'answer':
        send(answer(q, m.ip, m.ttl, m.count, m.rcode));
        return;
      case 'slow':
        later(m.delayMs, () => send(answer(q, m.ip, m.ttl)));
        return;
      case 'truncate':
        if (transport === 'tcp' && m.tcp === 'close') return drop();
        if (transport === 'tcp' && m.tcp === 'garbage') return send(randomBytes(40));
        send(transport === 'udp' ? answer(q, m.ip, 300, 0, 0, true) : answer(q, m.ip, 300, m.count));
        return;
      case 'rcode':
        send(answer(q, undefined, 300, 0, m.rcode));
        return;
      case 'garbage': {
        const good = answer(q, m.ip);
        const wrongId = Buffer.from(good);
        wrongId.writeUInt16BE((good.readUInt16BE(0) + 1) & 0xffff, 0);
        const other = answer({ ...q, questions: [{ ...question, name: `other.${question.name}` }] }, m.ip);
        const random = randomBytes(12 + Math.floor(Math.random() * 80));
        const replies =
          m.variant === 'random' ? [random] : m.variant === 'wrong-id' ? [wrongId] : m.variant === 'wrong-question' ? [other] : m.variant === 'all' ? [random, wrongId, other] : [random, wrongId, other, good];
        for (const r of replies) send(r);
        return;
      }
      case 'forward': {
        const s = dgram.createSocket('udp4');
        s.on('error', () => s.close());
        s.on('message', (reply) => {
          s.close();
          send(reply);
        });
        s.send(msg, m.port, m.host ?? '127.0.0.1');
        later(3000, () => {
          try {
            s.close();
          } catch {
            // closed on reply
          }
        });
        return;
      }
    }
  };

  udp.on('message', (msg, rinfo) => {
    respond(msg, 'udp', (b) => {
      if (!closed) udp.send(b, rinfo.port, rinfo.address);
    });
  });
  tcp.on('connection', (sock) => {
    conns.add(sock);
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        respond(Buffer.from(msg), 'tcp', (b) => {
          if (sock.destroyed) return;
          const f = Buffer.alloc(2 + b.length);
          f.writeUInt16BE(b.length, 0);
          b.copy(f, 2);
          sock.write(f);
        }, () => sock.destroy());
      }
    });
  });
  const close = fake.close;
  fake.close = async () => {
    if (closed) return;
    closed = true;
    await close();
  };
  t.teardown(() => fake.close());
  return fake;
}

/** The reply of an always-answering server (see the module comment). */
function answer(q: dnsPacket.DecodedPacket, ip = DEFAULT_IP, ttl = 300, count = 1, rcode = 0, tc = false): Buffer {
  const question = q.questions![0]!;
  const answers: dnsPacket.Answer[] = [];
  const authorities: dnsPacket.Answer[] = [];
  if (rcode === 0 && question.type === 'A') {
    const base = ip.split('.').map(Number);
    for (let i = 0; i < count; i++) {
      const last = (base[3]! + i) % 256;
      const third = (base[2]! + Math.floor((base[3]! + i) / 256)) % 256;
      answers.push({ name: question.name, type: 'A', ttl, data: `${base[0]}.${base[1]}.${third}.${last}` });
    }
  }
  if (rcode === 0 && answers.length === 0 && !tc) {
    authorities.push({
      name: 'fake',
      type: 'SOA',
      ttl: 60,
      data: { mname: 'ns.fake', rname: 'hostmaster.fake', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 60 },
    });
  }
  const edns = (q.additionals ?? []).some((a) => a.type === 'OPT');
  return dnsPacket.encode({
    type: 'response',
    id: q.id ?? 0,
    // rcode must be in the flags: dns-packet ignores `rcode` on encode.
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (rcode & 0xf),
    questions: [question],
    answers,
    authorities,
    additionals: edns ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0 } as unknown as dnsPacket.Answer] : [],
  });
}

/** A 127.0.0.1 port with nothing listening on UDP or TCP (queries get port unreachable). */
export async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
