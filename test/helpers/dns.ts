/**
 * DNS test helpers: build queries, send them over real UDP/TCP sockets, and turn
 * answers into zone-file text (`name. ttl IN TYPE rdata`) for table comparisons.
 * dns-packet is the independent decoder here: our writer is checked against it.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import * as dnsPacket from 'dns-packet';

export interface QueryOpts {
  id?: number;
  edns?: number | false;
  rd?: boolean;
  qclass?: string;
  opcode?: string;
}

export function makeQuery(name: string, type: string, opts: QueryOpts = {}): Buffer {
  const additionals: dnsPacket.Answer[] = [];
  if (opts.edns !== undefined && opts.edns !== false) {
    additionals.push({ type: 'OPT', name: '.', udpPayloadSize: opts.edns, flags: 0 } as unknown as dnsPacket.Answer);
  }
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? 4242,
    flags: opts.rd === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: (opts.qclass ?? 'IN') as dnsPacket.RecordClass }],
    additionals,
  });
}

export interface Decoded {
  id: number;
  rcode: string;
  flags: number;
  aa: boolean;
  tc: boolean;
  ra: boolean;
  question: string;
  answer: string[];
  ns: string[];
  extra: string[];
  opt: { udpPayloadSize: number; extendedRcode: number } | undefined;
  size: number;
}

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

export function decode(buf: Buffer): Decoded {
  const p = dnsPacket.decode(buf) as dnsPacket.DecodedPacket & { flags: number };
  const flags = p.flags ?? 0;
  let opt: Decoded['opt'];
  const extra: string[] = [];
  for (const a of p.additionals ?? []) {
    if (a.type === 'OPT') {
      const o = a as unknown as { udpPayloadSize: number; extendedRcode: number };
      opt = { udpPayloadSize: o.udpPayloadSize, extendedRcode: o.extendedRcode };
    } else {
      extra.push(rrText(a));
    }
  }
  const q = p.questions?.[0];
  return {
    id: p.id ?? 0,
    rcode: RCODES[flags & 0xf] ?? String(flags & 0xf),
    flags,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    ra: (flags & 0x0080) !== 0,
    question: q === undefined ? '' : `${q.name} ${q.class} ${q.type}`,
    answer: (p.answers ?? []).map(rrText),
    ns: (p.authorities ?? []).map(rrText),
    extra,
    opt,
    size: buf.length,
  };
}

/** Zone-file text, lowercase owner, with a trailing dot (the form test tables use). */
export function rrText(a: dnsPacket.Answer): string {
  const name = `${a.name.toLowerCase()}.`.replace(/^\.$/, '.');
  const head = `${name} ${(a as { ttl?: number }).ttl ?? 0} IN ${a.type}`;
  const d = (a as { data: unknown }).data;
  switch (a.type) {
    case 'A':
    case 'AAAA':
      return `${head} ${d as string}`;
    case 'CNAME':
    case 'PTR':
    case 'NS':
      return `${head} ${(d as string).toLowerCase()}.`;
    case 'SRV': {
      const s = d as dnsPacket.SrvData;
      return `${head} ${s.priority ?? 0} ${s.weight ?? 0} ${s.port} ${s.target.toLowerCase()}.`;
    }
    case 'SOA': {
      const s = d as dnsPacket.SoaData;
      return `${head} ${s.mname}. ${s.rname}. SERIAL ${s.refresh} ${s.retry} ${s.expire} ${s.minimum}`;
    }
    case 'TXT': {
      const parts = (Array.isArray(d) ? d : [d]) as (Buffer | string)[];
      return `${head} ${parts.map((x) => JSON.stringify(x.toString())).join(' ')}`;
    }
    default:
      return `${head} ?`;
  }
}

/** One UDP query; `from` binds the client to that address (a pod's, say) instead of any. */
export function udpExchange(port: number, msg: Buffer, host = '127.0.0.1', timeoutMs = 2000, from?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error(`no UDP reply within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    if (from === undefined) s.send(msg, port, host);
    else s.bind(0, from, () => s.send(msg, port, host));
  });
}

/**
 * Send one or more framed queries on one TCP connection; resolves with all replies.
 * `from` binds the client to that address.
 */
export function tcpExchange(port: number, msgs: Buffer[], host = '127.0.0.1', timeoutMs = 2000, from?: string): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host, localAddress: from });
    const replies: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`only ${replies.length}/${msgs.length} TCP replies within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => {
      for (const m of msgs) {
        const f = Buffer.alloc(2 + m.length);
        f.writeUInt16BE(m.length, 0);
        m.copy(f, 2);
        sock.write(f);
      }
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        replies.push(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
      }
      if (replies.length === msgs.length) {
        clearTimeout(timer);
        sock.end();
        resolve(replies);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
