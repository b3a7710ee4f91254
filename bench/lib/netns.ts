/**
 * Network namespaces for the proxy benchmark (bench/proxy.ts): a node, the pods behind it
 * and a client routed through it, made with iproute2 and deleted again, also after a
 * failure or a signal (deleting a namespace takes its links, addresses and rules with it).
 *
 *            cdb-client-<pid>                     cdb-node-<pid>                    cdb-be<i>-<pid>
 *   eth0 10.244.1.2/24 ── veth ── c0 10.244.1.1/24                 br0 10.244.0.1/24 ── veth ── eth0 10.244.0.1<i>/24
 *   default via 10.244.1.1        lo + 10.97.0.10/32 (a routed address: HAProxy listens here)
 *                                 up0 10.97.255.1/24, default via 10.97.255.254 (a veth whose peer
 *                                 stays in the node: a default route as a node has, nothing behind it)
 *
 * The client is a pod on this node in its own subnet (not on the backends' bridge), so a
 * reply from a backend goes back through the node, where conntrack undoes a DNAT: what a CNI
 * bridge gives with br_netfilter, without needing it. Forwarding is on in the node only.
 * Names carry the pid of the process that made them, so a run leaves nothing that clashes
 * with another run, and the leftovers of a killed run can be recognised (sweepStale).
 */
import { spawnSync } from 'node:child_process';

export const NODE_BACKEND_IP = '10.244.0.1';
export const NODE_CLIENT_IP = '10.244.1.1';
export const CLIENT_IP = '10.244.1.2';
/** An address of the node's own (on lo) that the client reaches through its default route. */
export const NODE_VIP = '10.97.0.10';
const UPLINK_IP = '10.97.255.1';
const UPLINK_GW = '10.97.255.254';

export interface Backend {
  readonly name: string; // be1, be2, ...
  readonly ns: string;
  readonly ip: string;
}

export interface Topology {
  readonly tag: string;
  readonly node: string;
  readonly client: string;
  readonly backends: readonly Backend[];
  /** Every namespace made, in deletion order. */
  readonly all: readonly string[];
  /** `cmd args` run inside `ns`: what to give spawn(). */
  exec(ns: string, cmd: string, args: readonly string[]): [string, string[]];
  /** Delete every namespace (synchronous: safe in an 'exit' handler); idempotent. */
  destroy(): void;
}

function ip(args: readonly string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) throw new Error(`ip ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.stdout).trim() || `exit ${r.status}`}`);
}

function sysctl(ns: string, settings: Record<string, string>): void {
  const args = ['netns', 'exec', ns, 'sysctl', '-q', '-w', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)];
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`sysctl in ${ns}: ${(r.stderr || r.stdout).trim()}`);
}

/** Namespace names currently present (`ip netns list`). */
export function listNamespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Delete `cdb-*-<pid>` namespaces whose maker is gone and nothing runs in. Returns what
 * was deleted and what was left because processes still run in it (they are not ours to kill).
 */
export function sweepStale(): { deleted: string[]; busy: string[] } {
  const deleted: string[] = [];
  const busy: string[] = [];
  for (const ns of listNamespaces()) {
    const m = /^cdb-[a-z0-9]+-(\d+)$/.exec(ns);
    if (m === null || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 }).stdout?.trim() ?? '';
    if (pids !== '') {
      busy.push(ns);
      continue;
    }
    spawnSync('ip', ['netns', 'del', ns], { timeout: 10_000 });
    deleted.push(ns);
  }
  return { deleted, busy };
}

/** Make the topology above with `backends` pods. Throws (after deleting what it made) on failure. */
export function createTopology(backends: number, tag = String(process.pid)): Topology {
  if (backends < 1 || backends > 9) throw new Error('1-9 backends');
  const node = `cdb-node-${tag}`;
  const client = `cdb-client-${tag}`;
  const bes: Backend[] = [];
  for (let i = 1; i <= backends; i++) bes.push({ name: `be${i}`, ns: `cdb-be${i}-${tag}`, ip: `10.244.0.${10 + i}` });
  const made: string[] = [];
  let destroyed = false;
  const topo: Topology = {
    tag,
    node,
    client,
    backends: bes,
    all: made,
    exec: (ns, cmd, args) => ['ip', ['netns', 'exec', ns, cmd, ...args]],
    destroy() {
      if (destroyed) return;
      destroyed = true;
      for (const ns of [...made].reverse()) spawnSync('ip', ['netns', 'del', ns], { timeout: 10_000 });
    },
  };
  try {
    for (const ns of [node, client, ...bes.map((b) => b.ns)]) {
      ip(['netns', 'add', ns]);
      made.push(ns);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    // Node: forwarding, the pods' bridge, the routed address, an uplink for the default route.
    sysctl(node, {
      'net.ipv4.ip_forward': '1',
      'net.ipv4.ip_local_port_range': '1024 65535',
      'net.ipv4.tcp_tw_reuse': '1',
      'net.core.somaxconn': '8192',
      'net.ipv4.tcp_max_syn_backlog': '8192',
    });
    ip(['-n', node, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', node, 'addr', 'add', `${NODE_BACKEND_IP}/24`, 'dev', 'br0']);
    ip(['-n', node, 'link', 'set', 'br0', 'up']);
    ip(['-n', node, 'addr', 'add', `${NODE_VIP}/32`, 'dev', 'lo']);
    ip(['-n', node, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
    ip(['-n', node, 'addr', 'add', `${UPLINK_IP}/24`, 'dev', 'up0']);
    ip(['-n', node, 'link', 'set', 'up0', 'up']);
    ip(['-n', node, 'link', 'set', 'up1', 'up']);
    ip(['-n', node, 'route', 'add', 'default', 'via', UPLINK_GW, 'dev', 'up0']);
    // Client: its own subnet, default route via the node.
    ip(['-n', node, 'link', 'add', 'c0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client]);
    ip(['-n', node, 'addr', 'add', `${NODE_CLIENT_IP}/24`, 'dev', 'c0']);
    ip(['-n', node, 'link', 'set', 'c0', 'up']);
    ip(['-n', client, 'addr', 'add', `${CLIENT_IP}/24`, 'dev', 'eth0']);
    ip(['-n', client, 'link', 'set', 'eth0', 'up']);
    ip(['-n', client, 'route', 'add', 'default', 'via', NODE_CLIENT_IP]);
    sysctl(client, { 'net.ipv4.ip_local_port_range': '1024 65535', 'net.ipv4.tcp_tw_reuse': '1' });
    // Backends: one veth each into the node's bridge, default route via the node.
    for (const b of bes) {
      const port = `v${b.name}`;
      ip(['-n', node, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b.ns]);
      ip(['-n', node, 'link', 'set', port, 'master', 'br0']);
      ip(['-n', node, 'link', 'set', port, 'up']);
      ip(['-n', b.ns, 'addr', 'add', `${b.ip}/24`, 'dev', 'eth0']);
      ip(['-n', b.ns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', b.ns, 'route', 'add', 'default', 'via', NODE_BACKEND_IP]);
      sysctl(b.ns, { 'net.core.somaxconn': '8192', 'net.ipv4.tcp_max_syn_backlog': '8192' });
    }
  } catch (err) {
    topo.destroy();
    throw err;
  }
  return topo;
}
