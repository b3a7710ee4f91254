/**
 * Stale UDP conntrack entries (kube-proxy pkg/proxy/conntrack/cleanup.go, and the older
 * exec-based pkg/util/conntrack). A UDP flow keeps its conntrack entry, and so its old
 * DNAT (or the REJECT before any endpoint existed), as long as the client keeps sending,
 * which a DNS client retrying does forever: the new rules are never consulted. So after
 * a successful sync, for UDP only (TCP entries are never touched):
 * - an endpoint that went away: delete flows to the service IP / NodePort DNATed to it;
 * - a service that went from no endpoints to some, or away: delete flows to its IP:port.
 */
import type { Exec } from './exec.js';
import { categorize } from './categorize.js';
import { portKey, type Family, type ProxyPort } from './types.js';

/** What a UDP port served at the last successful sync. */
export interface UdpServed {
  readonly family: Family;
  readonly ips: readonly string[];
  readonly port: number;
  readonly nodePort: number;
  /** Endpoint IPs traffic was sent to. */
  readonly endpoints: ReadonlySet<string>;
}

export type UdpSnapshot = ReadonlyMap<string, UdpServed>;

export function udpSnapshot(ports: readonly ProxyPort[]): Map<string, UdpServed> {
  const out = new Map<string, UdpServed>();
  for (const p of ports) {
    if (p.protocol !== 'UDP') continue;
    const c = categorize(p);
    out.set(portKey(p), {
      family: p.family,
      ips: [p.clusterIP, ...p.externalIPs],
      port: p.port,
      nodePort: p.nodePort,
      endpoints: new Set(c.allReachable.map((e) => e.ip)),
    });
  }
  return out;
}

/** One `conntrack -D` filter. */
export interface ConntrackDelete {
  readonly family: Family;
  readonly origDst?: string;
  readonly origPortDst: number;
  readonly dstNat?: string;
}

export function staleEntries(prev: UdpSnapshot, next: UdpSnapshot): ConntrackDelete[] {
  const out: ConntrackDelete[] = [];
  for (const [key, before] of prev) {
    const after = next.get(key);
    if (after === undefined) {
      // Service port gone: its flows would otherwise keep hitting a removed DNAT.
      for (const ip of before.ips) out.push({ family: before.family, origDst: ip, origPortDst: before.port });
      if (before.nodePort !== 0) out.push({ family: before.family, origPortDst: before.nodePort });
      continue;
    }
    for (const ep of before.endpoints) {
      if (after.endpoints.has(ep)) continue;
      for (const ip of after.ips) out.push({ family: after.family, origDst: ip, origPortDst: after.port, dstNat: ep });
      if (after.nodePort !== 0) out.push({ family: after.family, origPortDst: after.nodePort, dstNat: ep });
    }
  }
  for (const [key, after] of next) {
    const before = prev.get(key);
    // Newly active: flows REJECTed (or dropped) while it had no endpoints.
    if (after.endpoints.size > 0 && (before === undefined || before.endpoints.size === 0)) {
      for (const ip of after.ips) out.push({ family: after.family, origDst: ip, origPortDst: after.port });
      if (after.nodePort !== 0) out.push({ family: after.family, origPortDst: after.nodePort });
    }
  }
  return out;
}

export function conntrackArgs(d: ConntrackDelete): string[] {
  const args = ['-D', '-f', d.family === 6 ? 'ipv6' : 'ipv4', '-p', 'udp'];
  if (d.origDst !== undefined) args.push('--orig-dst', d.origDst);
  args.push('--orig-port-dst', String(d.origPortDst));
  if (d.dstNat !== undefined) args.push('--dst-nat', d.dstNat);
  return args;
}

/**
 * Run the deletions. `conntrack -D` exits 1 when nothing matched ("0 flow entries have
 * been deleted"), which is the common case and no error. Returns the failures' messages.
 */
export async function deleteEntries(exec: Exec, deletes: readonly ConntrackDelete[]): Promise<string[]> {
  const errors: string[] = [];
  for (const d of deletes) {
    const r = await exec('conntrack', conntrackArgs(d), undefined, 10_000);
    if (r.code === 0) continue;
    if (r.code === 1 && /0 flow entries/.test(r.stderr)) continue;
    errors.push(`conntrack ${conntrackArgs(d).join(' ')}: ${r.stderr.trim().split('\n')[0] ?? `exit ${r.code}`}`);
  }
  return errors;
}
