/**
 * The userspace proxier with its portal rules, in network namespaces (root): a "node"
 * namespace runs the proxier and the backends (on their own addresses on lo), a "pod"
 * namespace is routed through the node over a veth pair. Both talk to the ClusterIP
 * (pod: nat PREROUTING → KUBE-PORTALS-CONTAINER; node: nat OUTPUT → KUBE-PORTALS-HOST,
 * REDIRECT to 127.0.0.1 / ::1) and to the NodePort; UDP replies come back from the VIP;
 * a blackholed endpoint is retried after the 250 ms dial timeout; a Service without
 * endpoints resets at once; rules are exactly what `renderPortals` says, the jumps are
 * not duplicated by a second update, and nothing is left after close().
 *
 * Before that, without root: the rendered text, and the tool calls with an injected exec.
 *
 * Node has no setns(), so the code inside a namespace runs in a child process: this
 * file itself, started with USERSPACE_AGENT=1 under `ip netns exec`, answering JSON
 * commands on stdin (make a proxier, update it, start backends, dial).
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ProxyEndpoint, ProxyPort } from '../../src/proxy/types.js';
import type { Exec } from '../../src/proxy/exec.js';
import { UserspaceProxier, renderPortals, type BoundPort } from '../../src/proxy/userspace/proxier.js';

type Msg = Record<string, unknown> & { op: string; id?: number };

// ---------------------------------------------------------------- agent (child side)

async function agent(): Promise<void> {
  let px: UserspaceProxier | undefined;
  const closers: (() => void)[] = [];

  const backend = async (m: Msg): Promise<Record<string, unknown>> => {
    const host = m.host as string;
    const name = m.name as string;
    if (m.proto === 'UDP') {
      const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
      s.on('message', (msg, r) => s.send(`${name}:${msg.toString()}`, r.port, r.address));
      await new Promise<void>((r) => s.bind(0, host, r));
      closers.push(() => s.close());
      return { port: s.address().port };
    }
    const srv = net.createServer((c) => {
      c.on('error', () => {});
      c.end(`${name} ${c.remoteAddress}\n`);
    });
    await new Promise<void>((r) => srv.listen(0, host, r));
    closers.push(() => srv.close());
    return { port: (srv.address() as net.AddressInfo).port };
  };

  const tcp = (m: Msg): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const start = performance.now();
      const s = net.connect(m.port as number, m.host as string);
      let buf = '';
      let code: string | undefined;
      const timer = setTimeout(() => s.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), (m.timeoutMs as number | undefined) ?? 5000);
      s.on('close', () => clearTimeout(timer));
      s.on('data', (d) => (buf += d.toString()));
      s.on('error', (e: NodeJS.ErrnoException) => (code = e.code ?? e.message));
      s.on('close', () => resolve({ line: buf.trim(), code, ms: performance.now() - start }));
    });

  const udp = (m: Msg): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const host = m.host as string;
      const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
      const timer = setTimeout(() => {
        s.close();
        resolve({ timeout: true });
      }, 1000);
      s.on('message', (msg, r) => {
        clearTimeout(timer);
        s.close();
        resolve({ text: msg.toString(), from: `${r.address}:${r.port}` });
      });
      s.send(m.msg as string, m.port as number, host);
    });

  const handle = async (m: Msg): Promise<Record<string, unknown>> => {
    switch (m.op) {
      case 'proxier':
        px = new UserspaceProxier({ ...(m.opts as object) });
        await px.preflight();
        return {};
      case 'update':
        await px!.update(m.ports as ProxyPort[]);
        return { ports: px!.ports() };
      case 'render':
        return { text: px!.render(m.family as 4 | 6) };
      case 'close':
        await px!.close();
        return {};
      case 'leftovers':
        await UserspaceProxier.cleanupLeftovers();
        return {};
      case 'backend':
        return backend(m);
      case 'tcp':
        return tcp(m);
      case 'udp':
        return udp(m);
      default:
        throw new Error(`unknown op ${m.op}`);
    }
  };

  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const m = JSON.parse(line) as Msg;
    let out: Record<string, unknown>;
    try {
      out = await handle(m);
    } catch (err) {
      out = { error: String(err) };
    }
    process.stdout.write(`${JSON.stringify({ ...out, id: m.id })}\n`);
  }
  for (const c of closers) c();
  await px?.close();
}

// ---------------------------------------------------------------- test (parent side)

class Agent {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #pending = new Map<number, (v: Record<string, unknown>) => void>();
  #next = 1;
  stderr = '';

  constructor(ns: string) {
    this.#proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url)], {
      env: { ...process.env, USERSPACE_AGENT: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#proc.stderr.on('data', (d) => (this.stderr += d.toString()));
    createInterface({ input: this.#proc.stdout }).on('line', (line) => {
      const v = JSON.parse(line) as Record<string, unknown>;
      const r = this.#pending.get(v.id as number);
      this.#pending.delete(v.id as number);
      r?.(v);
    });
  }

  call(m: Msg): Promise<Record<string, unknown>> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#proc.stdin.write(`${JSON.stringify({ ...m, id })}\n`);
    });
  }

  async ok(m: Msg): Promise<Record<string, unknown>> {
    const r = await this.call(m);
    if (r.error !== undefined) throw new Error(`${m.op}: ${String(r.error)}\n${this.stderr}`);
    return r;
  }

  #exited(): boolean {
    return this.#proc.exitCode !== null || this.#proc.signalCode !== null;
  }

  /** Die as a crashed proxier would: no cleanup. */
  crash(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#exited()) return resolve();
      this.#proc.once('exit', () => resolve());
      this.#proc.kill('SIGKILL');
    });
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#exited()) return resolve();
      this.#proc.once('exit', () => resolve());
      this.#proc.stdin.end();
      setTimeout(() => this.#proc.kill('SIGKILL'), 5000).unref();
    });
  }
}

function sh(args: string[]): { code: number; out: string } {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

function must(args: string[]): string {
  const r = sh(args);
  if (r.code !== 0) throw new Error(`${args.join(' ')}: ${r.out}`);
  return r.out;
}

function ep(ip: string, port: number): ProxyEndpoint {
  return { ip, port, key: ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`, ready: true, serving: true, terminating: false, local: true };
}

function svcPort(name: string, protocol: 'TCP' | 'UDP', family: 4 | 6, clusterIP: string, port: number, endpoints: ProxyEndpoint[], extra: Partial<ProxyPort> = {}): ProxyPort {
  return {
    service: `default/${name}`,
    namespace: 'default',
    name,
    portName: '',
    spn: `default/${name}`,
    protocol,
    family,
    clusterIP,
    port,
    nodePort: 0,
    externalIPs: [],
    affinitySeconds: 0,
    internalLocal: false,
    externalLocal: false,
    endpoints: [...endpoints].sort((a, b) => (a.key < b.key ? -1 : 1)),
    ...extra,
  };
}

const portalLines = (save: string): string[] => save.split('\n').filter((l) => /KUBE-(PORTALS|NODEPORT)/.test(l));

async function main(): Promise<void> {
  const { default: t } = await import('tap');

  await t.test('renderPortals: the ruleset text (pure)', async (t) => {
    const text = renderPortals([
      { spn: 'default/web:http', protocol: 'TCP', clusterIP: '10.0.0.7', port: 80, nodePort: 30080, externalIPs: ['192.0.2.9'], proxyPort: 40123 },
      { spn: 'kube-system/dns:dns', protocol: 'UDP', clusterIP: '10.0.0.10', port: 53, nodePort: 0, externalIPs: [], proxyPort: 40124, hostProxyPort: 40125 },
    ]);
    t.equal(
      text,
      [
        '*nat',
        ':KUBE-PORTALS-CONTAINER - [0:0]',
        ':KUBE-PORTALS-HOST - [0:0]',
        ':KUBE-NODEPORT-CONTAINER - [0:0]',
        ':KUBE-NODEPORT-HOST - [0:0]',
        '-A KUBE-PORTALS-CONTAINER -m comment --comment "default/web:http" -p tcp -m tcp --dport 80 -d 10.0.0.7/32 -j REDIRECT --to-ports 40123',
        '-A KUBE-PORTALS-HOST -m comment --comment "default/web:http" -p tcp -m tcp --dport 80 -d 10.0.0.7/32 -j REDIRECT --to-ports 40123',
        '-A KUBE-PORTALS-CONTAINER -m comment --comment "default/web:http" -p tcp -m tcp --dport 80 -d 192.0.2.9/32 -j REDIRECT --to-ports 40123',
        '-A KUBE-PORTALS-HOST -m comment --comment "default/web:http" -p tcp -m tcp --dport 80 -d 192.0.2.9/32 -m addrtype --dst-type LOCAL -j REDIRECT --to-ports 40123',
        '-A KUBE-NODEPORT-CONTAINER -m comment --comment "default/web:http" -p tcp -m tcp --dport 30080 -j REDIRECT --to-ports 40123',
        '-A KUBE-NODEPORT-HOST -m comment --comment "default/web:http" -p tcp -m tcp --dport 30080 -j REDIRECT --to-ports 40123',
        '-A KUBE-PORTALS-CONTAINER -m comment --comment "kube-system/dns:dns" -p udp -m udp --dport 53 -d 10.0.0.10/32 -j REDIRECT --to-ports 40124',
        '-A KUBE-PORTALS-HOST -m comment --comment "kube-system/dns:dns" -p udp -m udp --dport 53 -d 10.0.0.10/32 -j REDIRECT --to-ports 40125',
        'COMMIT',
        '*filter',
        ':KUBE-NODEPORT-NON-LOCAL - [0:0]',
        '-A KUBE-NODEPORT-NON-LOCAL -m comment --comment "default/web:http" -p tcp -m tcp --dport 40123 -m state --state NEW -j ACCEPT',
        'COMMIT',
        '',
      ].join('\n'),
    );
    t.match(renderPortals([{ spn: 'a/b', protocol: 'TCP', clusterIP: 'fd00::a', port: 80, nodePort: 0, externalIPs: [], proxyPort: 1 }]), /-d fd00::a\/128 /);
    t.equal(renderPortals([]).split('\n').filter((l) => l.startsWith('-A')).length, 0, 'no ports: chains declared (flushed), nothing else');
  });

  await t.test('rule application with an injected exec (no root needed)', async (t) => {
    const calls: string[] = [];
    const installed = new Set<string>();
    const fake: Exec = async (cmd, args, input) => {
      calls.push(`${cmd} ${args.join(' ')}${input === undefined ? '' : ` <<${input.split('\n').filter((l) => l.startsWith('-A')).length} rules`}`);
      const key = args.filter((a) => !['-C', '-I', '-A', '-D', '--wait'].includes(a)).join(' ');
      if (args.includes('-C')) return { code: installed.has(key) ? 0 : 1, stdout: '', stderr: '' };
      if (args.includes('-I') || args.includes('-A')) installed.add(key);
      if (args.includes('-D')) return { code: installed.delete(key) ? 0 : 1, stdout: '', stderr: '' };
      return { code: cmd === 'conntrack' ? 1 : 0, stdout: '', stderr: '' };
    };
    const px = new UserspaceProxier({ exec: fake });
    t.teardown(() => px.close(false));
    const web = svcPort('web', 'TCP', 4, '10.0.0.7', 80, [ep('127.0.0.1', 1)]);
    const dns = svcPort('dns', 'UDP', 4, '10.0.0.10', 53, [ep('127.0.0.1', 2)]);
    await px.update([web, dns]);
    t.equal(calls.filter((c) => c.startsWith('iptables-restore --wait --noflush')).length, 1, 'one restore for IPv4');
    t.ok(calls.includes('iptables-restore --wait --noflush <<4 rules'));
    t.notOk(calls.some((c) => c.startsWith('ip6tables')), 'no IPv6 ports: IPv6 untouched');
    t.equal(calls.filter((c) => c.includes(' -C ')).length, 5, 'five jumps checked');
    t.equal(calls.filter((c) => c.includes(' -I ')).length, 3, 'three prepended');
    t.equal(calls.filter((c) => c.includes(' -A ')).length, 2, 'two appended');
    t.ok(calls.some((c) => c === 'conntrack -D -f ipv4 -p udp --orig-dst 10.0.0.10 --orig-port-dst 53'), 'new UDP port: its conntrack entries cleared');

    calls.length = 0;
    await px.update([{ ...web, endpoints: [ep('127.0.0.1', 3)] }, dns]);
    t.same(calls, [], 'endpoints-only change: no tool runs at all');

    await px.update([web]);
    t.ok(calls.includes('iptables-restore --wait --noflush <<2 rules'), 'UDP port removed: rules rewritten');
    t.equal(calls.filter((c) => c.includes(' -I ')).length, 0, 'jumps present: not added again');
    t.ok(calls.includes('conntrack -D -f ipv4 -p udp --orig-dst 10.0.0.10 --orig-port-dst 53'), 'removed UDP port: conntrack cleared');

    calls.length = 0;
    const failing: Exec = async (cmd, args, input) => (cmd === 'iptables-restore' ? { code: 2, stdout: '', stderr: 'iptables-restore: line 3 failed\n' } : fake(cmd, args, input));
    const bad = new UserspaceProxier({ exec: failing });
    await t.rejects(bad.update([web]), /iptables-restore: line 3 failed/, 'a failed restore rejects the update');
    t.equal(bad.ports().length, 1, 'the socket is open regardless (rules retried at the next update)');
    await bad.close(false);
  });
  const probe = `cdns-us-probe-${process.pid}`;
  if (sh(['ip', 'netns', 'add', probe]).code !== 0) {
    t.plan(0, 'needs root and ip netns');
    return;
  }
  sh(['ip', 'netns', 'del', probe]);

  const NODE = `cdns-us-node-${process.pid}`;
  const POD = `cdns-us-pod-${process.pid}`;
  const vn = `cusn${process.pid}`.slice(0, 15);
  const vp = `cusp${process.pid}`.slice(0, 15);
  const agents: Agent[] = [];
  t.teardown(async () => {
    for (const a of agents) await a.stop();
    sh(['ip', 'netns', 'del', NODE]);
    sh(['ip', 'netns', 'del', POD]);
  });
  const inNode = (...args: string[]): string[] => ['ip', 'netns', 'exec', NODE, ...args];
  for (const cmd of [
    ['ip', 'netns', 'add', NODE],
    ['ip', 'netns', 'add', POD],
    ['ip', '-n', NODE, 'link', 'set', 'lo', 'up'],
    ['ip', '-n', POD, 'link', 'set', 'lo', 'up'],
    ['ip', '-n', NODE, 'link', 'add', vn, 'type', 'veth', 'peer', 'name', vp],
    ['ip', '-n', NODE, 'link', 'set', vp, 'netns', POD],
    ['ip', '-n', NODE, 'addr', 'add', '10.200.0.1/24', 'dev', vn],
    ['ip', '-n', POD, 'addr', 'add', '10.200.0.2/24', 'dev', vp],
    ['ip', '-n', NODE, '-6', 'addr', 'add', 'fd00:200::1/64', 'dev', vn, 'nodad'],
    ['ip', '-n', POD, '-6', 'addr', 'add', 'fd00:200::2/64', 'dev', vp, 'nodad'],
    ['ip', '-n', NODE, 'link', 'set', vn, 'up'],
    ['ip', '-n', POD, 'link', 'set', vp, 'up'],
    ['ip', '-n', POD, 'route', 'add', 'default', 'via', '10.200.0.1'],
    ['ip', '-n', POD, '-6', 'route', 'add', 'default', 'via', 'fd00:200::1'],
    // The node needs a route to the service CIDR for its own connects; REDIRECT in
    // OUTPUT then sends them to the local proxy socket.
    ['ip', '-n', NODE, 'route', 'add', '10.96.0.0/12', 'dev', vn],
    ['ip', '-n', NODE, '-6', 'route', 'add', 'fd00:96::/108', 'dev', vn],
    // Backends ("pods") on their own addresses in the node namespace.
    ['ip', '-n', NODE, 'addr', 'add', '10.244.0.11/32', 'dev', 'lo'],
    ['ip', '-n', NODE, 'addr', 'add', '10.244.0.12/32', 'dev', 'lo'],
    ['ip', '-n', NODE, 'addr', 'add', '10.244.0.99/32', 'dev', 'lo'],
    ['ip', '-n', NODE, '-6', 'addr', 'add', 'fd00:244::11/128', 'dev', 'lo', 'nodad'],
    // 10.244.0.99 is blackholed: SYNs vanish, dials time out.
    inNode('iptables', '-t', 'filter', '-A', 'OUTPUT', '-d', '10.244.0.99/32', '-p', 'tcp', '-j', 'DROP'),
  ])
    must(cmd);

  const node = new Agent(NODE);
  const pod = new Agent(POD);
  agents.push(node, pod);

  const b1 = (await node.ok({ op: 'backend', proto: 'TCP', host: '10.244.0.11', name: 'b1' })).port as number;
  const b2 = (await node.ok({ op: 'backend', proto: 'TCP', host: '10.244.0.12', name: 'b2' })).port as number;
  const u1 = (await node.ok({ op: 'backend', proto: 'UDP', host: '10.244.0.11', name: 'u1' })).port as number;
  const b6 = (await node.ok({ op: 'backend', proto: 'TCP', host: 'fd00:244::11', name: 'b6' })).port as number;
  const hole = (await node.ok({ op: 'backend', proto: 'TCP', host: '10.244.0.99', name: 'hole' })).port as number;

  const web = svcPort('web', 'TCP', 4, '10.96.0.10', 80, [ep('10.244.0.11', b1), ep('10.244.0.12', b2)], { nodePort: 30080 });
  const dns = svcPort('dns', 'UDP', 4, '10.96.0.10', 53, [ep('10.244.0.11', u1)]);
  const web6 = svcPort('web', 'TCP', 6, 'fd00:96::10', 80, [ep('fd00:244::11', b6)]);
  const empty = svcPort('empty', 'TCP', 4, '10.96.0.20', 80, []);
  const holey = svcPort('holey', 'TCP', 4, '10.96.0.30', 80, [ep('10.244.0.99', hole), ep('10.244.0.12', b2)]);
  const view = [web, dns, web6, empty, holey];

  await node.ok({ op: 'proxier', opts: { rules: true } });
  const bound = (await node.ok({ op: 'update', ports: view })).ports as BoundPort[];

  await t.test('sockets bound and rules installed as rendered', async (t) => {
    t.equal(bound.length, 5);
    for (const b of bound) t.ok(b.proxyPort > 0, `${b.key} on ${b.proxyPort}`);
    const save4 = must(inNode('iptables-save'));
    const save6 = must(inNode('ip6tables-save'));
    const webPort = bound.find((b) => b.key === '4|TCP|default/web')!.proxyPort;
    const expect4 = [
      `-A KUBE-PORTALS-CONTAINER -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web\" -m tcp --dport 80 -j REDIRECT --to-ports ${webPort}`,
      `-A KUBE-PORTALS-HOST -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web\" -m tcp --dport 80 -j REDIRECT --to-ports ${webPort}`,
      `-A KUBE-NODEPORT-CONTAINER -p tcp -m comment --comment \"default/web\" -m tcp --dport 30080 -j REDIRECT --to-ports ${webPort}`,
      `-A KUBE-NODEPORT-HOST -p tcp -m comment --comment \"default/web\" -m tcp --dport 30080 -j REDIRECT --to-ports ${webPort}`,
      `-A KUBE-NODEPORT-NON-LOCAL -p tcp -m comment --comment \"default/web\" -m tcp --dport ${webPort} -m state --state NEW -j ACCEPT`,
      '-A PREROUTING -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-CONTAINER',
      '-A OUTPUT -m comment --comment "handle ClusterIPs; NOTE: this must be before the NodePort rules" -j KUBE-PORTALS-HOST',
      '-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "handle service NodePorts; NOTE: this must be the last rule in the chain" -j KUBE-NODEPORT-CONTAINER',
      '-A INPUT -m comment --comment "Ensure that non-local NodePort traffic can flow" -j KUBE-NODEPORT-NON-LOCAL',
    ];
    for (const l of expect4) t.ok(save4.includes(l), l);
    const v4Rules = portalLines(save4).filter((l) => l.startsWith('-A KUBE-'));
    t.equal(v4Rules.length, 4 * 2 + 2 + 1, 'two portal rules per IPv4 port, two NodePort rules and one ACCEPT');
    const web6Port = bound.find((b) => b.key === '6|TCP|default/web')!.proxyPort;
    t.ok(save6.includes(`-A KUBE-PORTALS-HOST -d fd00:96::10/128 -p tcp -m comment --comment \"default/web\" -m tcp --dport 80 -j REDIRECT --to-ports ${web6Port}`), 'IPv6 portal');
    // What was applied is what renderPortals gives for the bound ports.
    t.equal((await node.ok({ op: 'render', family: 4 })).text, renderPortals(bound.filter((b) => b.family === 4)));
    const check = spawnSync('ip', ['netns', 'exec', NODE, 'iptables-restore', '--test', '--noflush'], { input: renderPortals(bound.filter((b) => b.family === 4)), encoding: 'utf8' });
    t.equal(check.status, 0, `iptables-restore --test accepts the rendered ruleset ${check.stderr}`);
  });

  await t.test('ClusterIP from the node (OUTPUT) and from a pod (PREROUTING)', async (t) => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 10; i++) {
      const r = await node.ok({ op: 'tcp', host: '10.96.0.10', port: 80 });
      const name = String(r.line).split(' ')[0]!;
      counts.set(name, (counts.get(name) ?? 0) + 1);
    }
    t.same(Object.fromEntries([...counts].sort()), { b1: 5, b2: 5 }, 'node → VIP: exact round robin');
    const pc = new Map<string, number>();
    for (let i = 0; i < 10; i++) {
      const r = await pod.ok({ op: 'tcp', host: '10.96.0.10', port: 80 });
      const name = String(r.line).split(' ')[0]!;
      pc.set(name, (pc.get(name) ?? 0) + 1);
    }
    t.same(Object.fromEntries([...pc].sort()), { b1: 5, b2: 5 }, 'pod → VIP through the node');
    const r = await pod.ok({ op: 'tcp', host: '10.96.0.10', port: 80 });
    t.match(String(r.line), /^b[12] 10\.244\.0\.1[12]$/, 'the backend sees the proxy (node) address, not the pod');

    const r6 = await node.ok({ op: 'tcp', host: 'fd00:96::10', port: 80 });
    t.match(String(r6.line), /^b6 /, 'IPv6 VIP from the node');
    const p6 = await pod.ok({ op: 'tcp', host: 'fd00:96::10', port: 80 });
    t.match(String(p6.line), /^b6 /, 'IPv6 VIP from a pod');
  });

  await t.test('NodePort from the node and from a pod', async (t) => {
    const a = await node.ok({ op: 'tcp', host: '127.0.0.1', port: 30080 });
    t.match(String(a.line), /^b[12] /, 'node → 127.0.0.1:30080');
    const b = await node.ok({ op: 'tcp', host: '10.200.0.1', port: 30080 });
    t.match(String(b.line), /^b[12] /, 'node → its own address:30080');
    const c = await pod.ok({ op: 'tcp', host: '10.200.0.1', port: 30080 });
    t.match(String(c.line), /^b[12] /, 'pod → node address:30080');
  });

  await t.test('UDP replies come from the VIP', async (t) => {
    const a = await pod.ok({ op: 'udp', host: '10.96.0.10', port: 53, msg: 'q1' });
    t.equal(a.text, 'u1:q1');
    t.equal(a.from, '10.96.0.10:53', 'pod sees the service address and port as source');
    const b = await node.ok({ op: 'udp', host: '10.96.0.10', port: 53, msg: 'q2' });
    t.equal(b.text, 'u1:q2');
    t.equal(b.from, '10.96.0.10:53', `so does the node (${JSON.stringify(b)})`);
  });

  await t.test('no endpoints: reset at once; blackholed endpoint: retried after 250 ms', async (t) => {
    for (const a of [node, pod]) {
      const r = await a.ok({ op: 'tcp', host: '10.96.0.20', port: 80 });
      t.equal(r.code, 'ECONNRESET');
      t.ok((r.ms as number) < 100, `reset after ${(r.ms as number).toFixed(1)} ms`);
    }
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await pod.ok({ op: 'tcp', host: '10.96.0.30', port: 80 });
      t.match(String(r.line), /^b2 /, 'reached the live endpoint');
      times.push(r.ms as number);
    }
    t.ok(times.some((ms) => ms >= 240 && ms < 1000), `some connections waited one dial timeout (${times.map((x) => x.toFixed(0)).join(', ')} ms)`);
    t.ok(times.every((ms) => ms < 1000), 'never more than one timeout');
  });

  await t.test('updates: jumps not duplicated, changed ports move, removed rules go', async (t) => {
    const again = (await node.ok({ op: 'update', ports: view })).ports as BoundPort[];
    t.same(again, bound, 'same view: same sockets');
    const moved = { ...web, port: 8080 };
    const after = (await node.ok({ op: 'update', ports: [moved, dns, web6] })).ports as BoundPort[];
    const save = must(inNode('iptables-save'));
    for (const target of ['KUBE-PORTALS-CONTAINER', 'KUBE-PORTALS-HOST', 'KUBE-NODEPORT-CONTAINER', 'KUBE-NODEPORT-HOST', 'KUBE-NODEPORT-NON-LOCAL']) {
      t.equal(save.split('\n').filter((l) => l.endsWith(`-j ${target}`)).length, 1, `one jump to ${target}`);
    }
    const webNow = after.find((b) => b.key === '4|TCP|default/web')!;
    t.not(webNow.proxyPort, bound.find((b) => b.key === '4|TCP|default/web')!.proxyPort, 'port change: new proxy port');
    t.ok(save.includes(`--dport 8080 -j REDIRECT --to-ports ${webNow.proxyPort}`));
    t.notOk(save.includes('10.96.0.20/32'), 'removed service: its rules are gone');
    const r = await pod.ok({ op: 'tcp', host: '10.96.0.10', port: 8080 });
    t.match(String(r.line), /^b[12] /, 'the moved port works');

    // A UDP port going away takes its conntrack entries along (ClearEntriesForIP).
    t.equal((await pod.ok({ op: 'udp', host: '10.96.0.10', port: 53, msg: 'q3' })).text, 'u1:q3');
    const listed = (): string => sh(inNode('conntrack', '-L', '-p', 'udp', '--orig-dst', '10.96.0.10')).out;
    t.match(listed(), /dport=53/, 'a conntrack entry for the UDP VIP exists');
    await node.ok({ op: 'update', ports: [moved, web6] });
    t.notMatch(listed(), /dport=53/, 'gone after the UDP port was removed');
  });

  await t.test('close() removes every rule and jump', async (t) => {
    await node.ok({ op: 'close' });
    for (const cmd of ['iptables-save', 'ip6tables-save']) {
      const save = must(inNode(cmd));
      t.same(portalLines(save), [], `${cmd}: nothing of ours left`);
    }
    t.ok(save4HasDrop(must(inNode('iptables-save'))), 'foreign rules untouched');
    const r = await pod.ok({ op: 'tcp', host: '10.96.0.10', port: 80, timeoutMs: 500 });
    t.equal(r.code, 'ETIMEDOUT', 'the VIP is no longer proxied');
  });

  await t.test('cleanupLeftovers after a crash (--cleanup)', async (t) => {
    const crashing = new Agent(NODE);
    agents.push(crashing);
    await crashing.ok({ op: 'proxier', opts: { rules: true } });
    await crashing.ok({ op: 'update', ports: view });
    t.ok(portalLines(must(inNode('iptables-save'))).length > 0, 'rules installed');
    await crashing.crash();
    t.ok(portalLines(must(inNode('iptables-save'))).length > 0, 'left behind by the crash');
    const cleaner = new Agent(NODE);
    agents.push(cleaner);
    await cleaner.ok({ op: 'leftovers' });
    for (const cmd of ['iptables-save', 'ip6tables-save']) t.same(portalLines(must(inNode(cmd))), [], `${cmd}: clean`);
    await cleaner.ok({ op: 'leftovers' });
    t.pass('a second cleanup on a clean namespace succeeds');
  });
}

function save4HasDrop(save: string): boolean {
  return save.includes('-A OUTPUT -d 10.244.0.99/32 -p tcp -j DROP');
}

if (process.env.USERSPACE_AGENT === '1') await agent();
else await main();
