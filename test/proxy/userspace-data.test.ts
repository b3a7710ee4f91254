/**
 * The userspace data plane (src/proxy/userspace/{tcp,udp,proxier}.ts) on real sockets,
 * without rules: clients dial the proxy port on 127.0.0.1, backends are small servers
 * on 127.0.0.1 port 0 answering who they are. Spread over endpoints, retry past a dead
 * endpoint, immediate reset without endpoints, established connections surviving
 * endpoint and service changes, bounded buffers under a slow reader, FIN handling,
 * UDP request/reply with the idle timeout, the connection bound, metrics.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import t from 'tap';
import { portKey, type ProxyEndpoint, type ProxyPort } from '../../src/proxy/types.js';
import { UserspaceProxier, type UserspaceMetrics } from '../../src/proxy/userspace/proxier.js';
import type { TcpProxy } from '../../src/proxy/userspace/tcp.js';
import type { UdpProxy } from '../../src/proxy/userspace/udp.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(10);
  }
  return true;
}

function endpoint(port: number, ip = '127.0.0.1', ready = true): ProxyEndpoint {
  return { ip, port, key: `${ip}:${port}`, ready, serving: ready, terminating: false, local: true };
}

function svcPort(name: string, protocol: 'TCP' | 'UDP', endpoints: ProxyEndpoint[], extra: Partial<ProxyPort> = {}): ProxyPort {
  return {
    service: `default/${name}`,
    namespace: 'default',
    name,
    portName: '',
    spn: `default/${name}`,
    protocol,
    family: 4,
    clusterIP: '10.96.0.10',
    port: 80,
    nodePort: 0,
    externalIPs: [],
    affinitySeconds: 0,
    internalLocal: false,
    externalLocal: false,
    endpoints: [...endpoints].sort((a, b) => (a.key < b.key ? -1 : 1)),
    ...extra,
  };
}

interface Backend {
  name: string;
  port: number;
  conns: Set<net.Socket>;
  close(): Promise<void>;
}

/** A TCP server that writes its name and then, by mode, closes, echoes, or holds. */
async function tcpBackend(name: string, mode: 'hello' | 'echo' | 'hold' = 'hello'): Promise<Backend> {
  const conns = new Set<net.Socket>();
  const server = net.createServer((s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => {});
    if (mode === 'hello') s.end(`${name}\n`);
    else if (mode === 'echo') {
      s.write(`${name}\n`);
      s.pipe(s);
    } else s.write(`${name}\n`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    name,
    port: (server.address() as net.AddressInfo).port,
    conns,
    close: () =>
      new Promise((r) => {
        for (const c of conns) c.destroy();
        server.close(() => r());
      }),
  };
}

/** A port nothing listens on (bound then released): connects are refused at once. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/** Connect to the proxy, read the first line (the backend's name), close. */
function ask(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0) {
        s.destroy();
        resolve(buf.slice(0, i));
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`closed before a line (${JSON.stringify(buf)})`)));
  });
}

/** Outcome of a connection that should be refused: error code and ms until the socket died. */
function refusedAfter(port: number): Promise<{ code: string | undefined; ms: number; data: string }> {
  return new Promise((resolve) => {
    const start = performance.now();
    const s = net.connect(port, '127.0.0.1');
    let code: string | undefined;
    let data = '';
    s.on('data', (d) => (data += d.toString()));
    s.on('error', (e: NodeJS.ErrnoException) => (code = e.code));
    s.on('close', () => resolve({ code, ms: performance.now() - start, data }));
  });
}

/** Connect and wait for the first line; resolves with the still-open socket. */
function open(port: number): Promise<{ sock: net.Socket; name: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) {
        s.off('data', onData);
        resolve({ sock: s, name: buf.slice(0, i) });
      }
    };
    s.on('data', onData);
    s.once('error', reject);
  });
}

function echoOnce(s: net.Socket, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      if (buf.length >= msg.length) {
        s.off('data', onData);
        resolve(buf);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(msg);
  });
}

function recordingMetrics() {
  const c = { connection: 0, bytesIn: 0, bytesOut: 0, connectError: 0, retry: 0, active: 0, rejected: [] as string[] };
  const m: UserspaceMetrics = {
    connection: () => void c.connection++,
    bytes: (_s, dir, n) => {
      if (dir === 'in') c.bytesIn += n;
      else c.bytesOut += n;
    },
    connectError: () => void c.connectError++,
    retry: () => void c.retry++,
    active: (_s, d) => void (c.active += d),
    rejected: (_s, _p, reason) => void c.rejected.push(reason),
  };
  return { c, m };
}

t.test('TCP: exact round robin over the ready endpoints', async (t) => {
  const bs = await Promise.all(['a', 'b', 'c'].map((n) => tcpBackend(n)));
  const notReady = await tcpBackend('not-ready');
  const { c, m } = recordingMetrics();
  const px = new UserspaceProxier({ rules: false, metrics: m });
  t.teardown(async () => {
    await px.close();
    for (const b of [...bs, notReady]) await b.close();
  });
  const p = svcPort('web', 'TCP', [...bs.map((b) => endpoint(b.port)), endpoint(notReady.port, '127.0.0.1', false)]);
  await px.update([p]);
  const port = px.proxyPort(portKey(p))!;
  t.ok(port > 0, `bound on ${port}`);
  t.same(px.ports().map((x) => [x.spn, x.protocol, x.proxyPort]), [['default/web', 'TCP', port]]);

  const counts = new Map<string, number>();
  for (let i = 0; i < 30; i++) {
    const n = await ask(port);
    counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  t.same(Object.fromEntries([...counts].sort()), { a: 10, b: 10, c: 10 }, '30 over 3: 10 each, never the not-ready one');

  // Concurrent clients: still exactly balanced (the rotation is shared).
  const names = await Promise.all(Array.from({ length: 60 }, () => ask(port)));
  const cc = new Map<string, number>();
  for (const n of names) cc.set(n, (cc.get(n) ?? 0) + 1);
  t.same(Object.fromEntries([...cc].sort()), { a: 20, b: 20, c: 20 }, '60 concurrent: 20 each');

  t.ok(await until(() => c.active === 0, 2000), 'active gauge back to 0');
  t.equal(c.connection, 90);
  t.equal(c.bytesOut, 90 * 2, 'bytes out: one "x\\n" per connection');
  t.equal(c.connectError, 0);
  t.equal(px.connections, 0);
});

t.test('TCP: a refused endpoint is retried on the next one; all dead → reset', async (t) => {
  const bs = await Promise.all(['a', 'b'].map((n) => tcpBackend(n)));
  const dead = await deadPort();
  const { c, m } = recordingMetrics();
  const px = new UserspaceProxier({ rules: false, metrics: m });
  t.teardown(async () => {
    await px.close();
    for (const b of bs) await b.close();
  });
  const p = svcPort('retry', 'TCP', [endpoint(bs[0]!.port), endpoint(bs[1]!.port), endpoint(dead)]);
  await px.update([p]);
  const port = px.proxyPort(portKey(p))!;
  const seen = new Map<string, number>();
  let slowest = 0;
  for (let i = 0; i < 30; i++) {
    const start = performance.now();
    const n = await ask(port);
    slowest = Math.max(slowest, performance.now() - start);
    seen.set(n, (seen.get(n) ?? 0) + 1);
  }
  t.equal((seen.get('a') ?? 0) + (seen.get('b') ?? 0), 30, 'every connection reached a live endpoint');
  t.ok(c.retry >= 10, `retries happened (${c.retry})`);
  t.equal(c.connectError, 0, 'no connection given up');
  t.ok(slowest < 200, `refused dials fail fast (slowest ${slowest.toFixed(1)} ms)`);

  // Every endpoint dead: 4 dials, then the client is reset.
  const dead2 = await deadPort();
  const q = svcPort('alldead', 'TCP', [endpoint(dead), endpoint(dead2)]);
  await px.update([p, q]);
  const r = await refusedAfter(px.proxyPort(portKey(q))!);
  t.equal(r.code, 'ECONNRESET', 'client reset after the dials failed');
  t.ok(r.ms < 500, `quickly (${r.ms.toFixed(1)} ms)`);
  t.equal(c.connectError, 1);
  t.same(c.rejected, ['dial-failed']);
});

t.test('TCP: no endpoints → immediate reset, not a time-out', async (t) => {
  const { c, m } = recordingMetrics();
  const px = new UserspaceProxier({ rules: false, metrics: m });
  t.teardown(() => px.close());
  const p = svcPort('empty', 'TCP', []);
  await px.update([p]);
  const port = px.proxyPort(portKey(p))!;
  for (let i = 0; i < 5; i++) {
    const r = await refusedAfter(port);
    t.equal(r.code, 'ECONNRESET');
    t.equal(r.data, '');
    t.ok(r.ms < 100, `reset after ${r.ms.toFixed(1)} ms`);
  }
  // Only not-ready endpoints: the same.
  const dead = await deadPort();
  await px.update([svcPort('empty', 'TCP', [endpoint(dead, '127.0.0.1', false)])]);
  const r = await refusedAfter(port);
  t.equal(r.code, 'ECONNRESET', 'not-ready endpoints are not used');
  t.equal(c.connectError, 6);
  t.equal(c.retry, 0, 'no retries without endpoints');
});

t.test('TCP: established connections survive endpoint and service changes', async (t) => {
  const a = await tcpBackend('a', 'echo');
  const b = await tcpBackend('b', 'echo');
  const px = new UserspaceProxier({ rules: false });
  t.teardown(async () => {
    await px.close();
    await a.close();
    await b.close();
  });
  const p = svcPort('keep', 'TCP', [endpoint(a.port)]);
  await px.update([p]);
  const port = px.proxyPort(portKey(p))!;
  const first = await open(port);
  t.equal(first.name, 'a');
  t.equal(await echoOnce(first.sock, 'ping1'), 'ping1');

  // Endpoint a leaves, b arrives: same proxy port, new connections go to b.
  await px.update([svcPort('keep', 'TCP', [endpoint(b.port)])]);
  t.equal(px.proxyPort(portKey(p)), port, 'endpoints-only change keeps the socket');
  t.equal(await echoOnce(first.sock, 'ping2'), 'ping2', 'the established connection still works');
  t.equal(await ask(port), 'b', 'new connections use the new endpoint');

  // A changed identity (port) reopens on a new proxy port; the old connection lives on.
  await px.update([svcPort('keep', 'TCP', [endpoint(b.port)], { port: 81 })]);
  const port2 = px.proxyPort(portKey(p))!;
  t.not(port2, port, 'identity change: new proxy port');
  t.equal(await echoOnce(first.sock, 'ping3'), 'ping3');
  const r = await refusedAfter(port);
  t.equal(r.code, 'ECONNREFUSED', 'the old listener is closed');

  // Service removed: the connection still goes on until a side closes.
  await px.update([]);
  t.same(px.ports(), []);
  t.equal(await echoOnce(first.sock, 'ping4'), 'ping4', 'service gone, connection alive');
  first.sock.destroy();
  t.ok(await until(() => px.connections === 0, 2000), 'closed by the client: count drops to 0');
});

t.test('TCP: bounded buffers under a slow reader (200 MB)', async (t) => {
  const TOTAL = 200 * 1024 * 1024;
  let received = 0;
  let backendSock: net.Socket | undefined;
  const server = net.createServer({ pauseOnConnect: true }, (s) => {
    backendSock = s;
    s.on('data', (d) => (received += d.length));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const px = new UserspaceProxier({ rules: false });
  t.teardown(async () => {
    await px.close();
    server.close();
  });
  const p = svcPort('bulk', 'TCP', [endpoint((server.address() as net.AddressInfo).port)]);
  await px.update([p]);
  const proxy = px.proxyOf(portKey(p)) as TcpProxy;
  const client = net.connect(px.proxyPort(portKey(p))!, '127.0.0.1');
  client.on('error', () => {});
  await new Promise((r) => client.once('connect', r));

  const chunk = Buffer.alloc(64 * 1024, 7);
  let sent = 0;
  let maxBuffered = 0;
  const sample = setInterval(() => (maxBuffered = Math.max(maxBuffered, proxy.bufferedBytes())), 5);
  const pump = (): void => {
    while (sent < TOTAL) {
      sent += chunk.length;
      if (!client.write(chunk)) {
        client.once('drain', pump);
        return;
      }
    }
    client.end();
  };
  pump();
  // The backend does not read: the pipeline fills and stops.
  await sleep(700);
  const stalledAt = sent;
  await sleep(300);
  t.equal(sent, stalledAt, `the sender is held back by backpressure (${(stalledAt / 1e6).toFixed(1)} MB in kernel buffers and bounded queues)`);
  t.ok(stalledAt < TOTAL, 'long before 200 MB');
  const bound = 4 * (64 * 1024 + 64 * 1024);
  t.ok(proxy.bufferedBytes() <= bound, `proxy holds ${proxy.bufferedBytes()} bytes while stalled (bound ${bound})`);

  // The reader catches up: everything arrives, buffers stay bounded all along.
  backendSock!.resume();
  t.ok(await until(() => received === TOTAL, 20_000), `all 200 MB delivered (${received})`);
  clearInterval(sample);
  t.ok(maxBuffered <= bound, `max buffered in the proxy ${maxBuffered} ≤ ${bound}`);
});

t.test('TCP: FIN from either side closes both (kube-proxy); halfClose passes it on', async (t) => {
  // A backend that answers only after the client's FIN, with a delay.
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    s.on('error', () => {});
    s.on('data', (d) => (got += d.toString()));
    s.on('end', () => setTimeout(() => s.end(`echo:${got}`), 50));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const bport = (server.address() as net.AddressInfo).port;
  const kp = new UserspaceProxier({ rules: false });
  const hc = new UserspaceProxier({ rules: false, halfClose: true });
  t.teardown(async () => {
    await kp.close();
    await hc.close();
    server.close();
  });
  const p = svcPort('fin', 'TCP', [endpoint(bport)]);
  await kp.update([p]);
  await hc.update([p]);
  const talk = (port: number): Promise<string> =>
    new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      let buf = '';
      s.on('data', (d) => (buf += d.toString()));
      s.on('error', () => {});
      s.on('close', () => resolve(buf));
      s.end('hello');
    });
  t.equal(await talk(kp.proxyPort(portKey(p))!), '', 'kube-proxy semantics: the reply after a half-close is lost');
  t.equal(await talk(hc.proxyPort(portKey(p))!), 'echo:hello', 'halfClose: the FIN is passed on and the reply arrives');
  t.ok(await until(() => kp.connections === 0 && hc.connections === 0, 2000), 'all connections closed');

  // Data the backend sent before closing is delivered even through a slow client.
  const big = Buffer.alloc(4 * 1024 * 1024, 1);
  const srv2 = net.createServer((s) => {
    s.on('error', () => {});
    s.end(big);
  });
  await new Promise<void>((r) => srv2.listen(0, '127.0.0.1', r));
  t.teardown(() => srv2.close());
  const q = svcPort('flush', 'TCP', [endpoint((srv2.address() as net.AddressInfo).port)]);
  await kp.update([p, q]);
  const got = await new Promise<number>((resolve) => {
    const s = net.connect(kp.proxyPort(portKey(q))!, '127.0.0.1');
    let n = 0;
    s.pause();
    setTimeout(() => s.resume(), 300);
    s.on('data', (d) => (n += d.length));
    s.on('error', () => {});
    s.on('close', () => resolve(n));
  });
  t.equal(got, big.length, 'a 4 MB reply followed by FIN arrives whole at a slow client');
});

t.test('TCP: maxConnections is enforced', async (t) => {
  const b = await tcpBackend('h', 'hold');
  const { c, m } = recordingMetrics();
  const px = new UserspaceProxier({ rules: false, maxConnections: 2, metrics: m });
  t.teardown(async () => {
    await px.close();
    await b.close();
  });
  const p = svcPort('limit', 'TCP', [endpoint(b.port)]);
  await px.update([p]);
  const port = px.proxyPort(portKey(p))!;
  const one = await open(port);
  const two = await open(port);
  t.equal(px.connections, 2);
  const r = await refusedAfter(port);
  t.equal(r.code, 'ECONNRESET', 'the third is reset');
  t.ok(r.ms < 100);
  t.same(c.rejected, ['limit']);
  one.sock.destroy();
  t.ok(await until(() => px.connections === 1, 2000));
  const three = await open(port);
  t.equal(three.name, 'h', 'room again after one closed');
  two.sock.destroy();
  three.sock.destroy();
  t.ok(await until(() => px.connections === 0 && b.conns.size === 0, 2000), 'backend sides closed too');
});

/** UDP backend answering `name:<bytes received>` to each datagram, recording client ports. */
async function udpBackend(name: string) {
  const sock = dgram.createSocket('udp4');
  const peers: number[] = [];
  sock.on('message', (msg, rinfo) => {
    peers.push(rinfo.port);
    sock.send(`${name}:${msg.length}`, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { name, port: sock.address().port, peers, close: () => new Promise<void>((r) => sock.close(() => r())) };
}

function udpAsk(sock: dgram.Socket, port: number, msg: Buffer | string, ms = 1000): Promise<{ text: string; from: number } | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      sock.off('message', onMsg);
      resolve(undefined);
    }, ms);
    const onMsg = (m: Buffer, rinfo: dgram.RemoteInfo): void => {
      clearTimeout(timer);
      sock.off('message', onMsg);
      resolve({ text: m.toString(), from: rinfo.port });
    };
    sock.on('message', onMsg);
    sock.send(msg, port, '127.0.0.1');
  });
}

t.test('UDP: request/reply through the proxy, flows per client, idle timeout', async (t) => {
  const bs = await Promise.all(['u1', 'u2'].map(udpBackend));
  const { c, m } = recordingMetrics();
  const px = new UserspaceProxier({ rules: false, metrics: m, udpIdleTimeoutMs: 250 });
  const clients: dgram.Socket[] = [];
  t.teardown(async () => {
    for (const s of clients) s.close();
    await px.close();
    for (const b of bs) await b.close();
  });
  const p = svcPort('dns', 'UDP', bs.map((b) => endpoint(b.port)), { port: 53 });
  await px.update([p]);
  const port = px.proxyPort(portKey(p))!;
  const proxy = px.proxyOf(portKey(p)) as UdpProxy;
  const client = (): dgram.Socket => {
    const s = dgram.createSocket('udp4');
    clients.push(s);
    return s;
  };

  const c1 = client();
  const r1 = await udpAsk(c1, port, 'hello');
  t.ok(r1 !== undefined, 'a reply');
  t.equal(r1!.from, port, 'the reply comes from the service (proxy) socket');
  const first = r1!.text.split(':')[0];
  const r2 = await udpAsk(c1, port, 'again');
  t.equal(r2!.text.split(':')[0], first, 'same client ip:port: same flow, same endpoint');
  t.equal(proxy.flows, 1);
  const backend = bs.find((b) => b.name === first)!;
  t.equal(backend.peers[0], backend.peers[1], 'one backend socket for the flow');

  // Another client port is another flow: the rotation moves on.
  const c2 = client();
  const r3 = await udpAsk(c2, port, 'x');
  t.not(r3!.text.split(':')[0], first, 'a second client gets the other endpoint');
  t.equal(proxy.flows, 2);

  // 64 KiB datagrams pass whole (kube-proxy truncated at 4096).
  const big = await udpAsk(c1, port, Buffer.alloc(65000, 1));
  t.equal(big?.text, `${first}:65000`);

  // Idle 250 ms: the flow and its backend socket go; the next datagram makes a new one.
  t.ok(await until(() => proxy.flows === 0, 1000), 'flows closed after the idle timeout');
  const before = backend.peers.length;
  const r4 = await udpAsk(c1, port, 'later');
  t.ok(r4 !== undefined);
  const b4 = bs.find((b) => b.name === r4!.text.split(':')[0])!;
  t.ok(b4.peers.length > 0);
  if (b4 === backend) t.not(backend.peers.at(-1), backend.peers[before - 1], 'a new backend socket (new source port)');
  t.equal(c.connection, 3, 'three flows created');
  t.ok(await until(() => c.active === 0, 1000), 'active gauge back to 0');
  t.ok(c.bytesIn >= 65000 + 5 + 5 + 1 + 5);
});

t.test('UDP: no endpoints → dropped; client bound; service removal closes flows', async (t) => {
  const b = await udpBackend('u');
  const { c, m } = recordingMetrics();
  const px = new UserspaceProxier({ rules: false, metrics: m, udpMaxClients: 1, udpIdleTimeoutMs: 5000 });
  const socks: dgram.Socket[] = [];
  t.teardown(async () => {
    for (const s of socks) s.close();
    await px.close();
    await b.close();
  });
  const sock = (): dgram.Socket => {
    const s = dgram.createSocket('udp4');
    socks.push(s);
    return s;
  };
  const empty = svcPort('none', 'UDP', [], { port: 53 });
  const one = svcPort('one', 'UDP', [endpoint(b.port)], { port: 53, clusterIP: '10.96.0.11' });
  await px.update([empty, one]);
  t.equal(await udpAsk(sock(), px.proxyPort(portKey(empty))!, 'q', 200), undefined, 'no endpoints: dropped');
  t.same(c.rejected, ['no-endpoints']);
  const port = px.proxyPort(portKey(one))!;
  const a = sock();
  t.ok(await udpAsk(a, port, 'q'), 'first client served');
  t.equal(await udpAsk(sock(), port, 'q', 200), undefined, 'second client over the bound of 1: dropped');
  t.ok(await udpAsk(a, port, 'q'), 'the live flow keeps working');
  const proxy = px.proxyOf(portKey(one)) as UdpProxy;
  t.equal(proxy.flows, 1);
  await px.update([empty]);
  t.equal(proxy.flows, 0, 'service removed: flows closed');
  t.equal(await udpAsk(a, port, 'q', 200), undefined, 'and nothing answers on the old port');
});

t.test('UDP: a refusing endpoint ends the flow; the next datagram goes elsewhere', async (t) => {
  const live = await udpBackend('live');
  const deadSock = dgram.createSocket('udp4');
  await new Promise<void>((r) => deadSock.bind(0, '127.0.0.1', r));
  const deadPortU = deadSock.address().port;
  await new Promise<void>((r) => deadSock.close(() => r()));
  const px = new UserspaceProxier({ rules: false, udpIdleTimeoutMs: 5000 });
  const c = dgram.createSocket('udp4');
  t.teardown(async () => {
    c.close();
    await px.close();
    await live.close();
  });
  const p = svcPort('icmp', 'UDP', [endpoint(live.port), endpoint(deadPortU)], { port: 53 });
  await px.update([p]);
  const port = px.proxyPort(portKey(p))!;
  const proxy = px.proxyOf(portKey(p)) as UdpProxy;
  const answers: (string | undefined)[] = [];
  for (let i = 0; i < 4; i++) answers.push((await udpAsk(c, port, 'q', 150))?.text);
  // Whichever endpoint comes first: the dead one loses one datagram (ICMP unreachable
  // closes the flow), the next datagram is a new flow on the live endpoint.
  t.ok(answers.filter((a) => a === 'live:1').length >= 3, `at most one datagram lost (${JSON.stringify(answers)})`);
  t.equal(proxy.flows, 1, 'one live flow (5 s idle timeout) on the live endpoint');
});

t.test('ClientIP affinity through the proxy; metrics sink errors are contained', async (t) => {
  const bs = await Promise.all(['a', 'b', 'c'].map((n) => tcpBackend(n)));
  const px = new UserspaceProxier({
    rules: false,
    metrics: {
      connection: () => {
        throw new Error('sink bug');
      },
      bytes: () => {},
      connectError: () => {},
      retry: () => {},
      active: () => {},
    },
  });
  t.teardown(async () => {
    await px.close();
    for (const b of bs) await b.close();
  });
  const p = svcPort('sticky', 'TCP', bs.map((b) => endpoint(b.port)), { affinitySeconds: 60 });
  await px.update([p]);
  const port = px.proxyPort(portKey(p))!;
  const names = new Set<string>();
  for (let i = 0; i < 10; i++) names.add(await ask(port));
  t.equal(names.size, 1, 'one client IP (127.0.0.1), any source port: one endpoint');

  // Affinity switched off: a new socket, and the rotation is back.
  await px.update([{ ...p, affinitySeconds: 0 }]);
  const all = new Set<string>();
  for (let i = 0; i < 3; i++) all.add(await ask(px.proxyPort(portKey(p))!));
  t.equal(all.size, 3, 'without affinity the same client rotates');
});
