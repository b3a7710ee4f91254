/**
 * Default upstreams: the `nameserver` lines of resolv.conf (resolv.conf(5)), as CoreDNS
 * `forward . /etc/resolv.conf`, without ourselves: forwarding to our own listener
 * would loop.
 *
 * "Ourselves" is decided the way the kernel delivers packets: an upstream is us when it
 * has our port and either our exact address, or we listen on a wildcard (0.0.0.0, ::)
 * and the upstream is a loopback address (127.0.0.0/8, ::1) or an address of this host.
 * A specific loopback listener (127.0.0.1:53) is not 127.0.0.53:53: that is another
 * socket (systemd-resolved's stub), a working upstream.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { SourceLog } from '../log.js';
import { canonicalIP, stripZone, unmapIPv4, type HostPort } from '../net/ip.js';
import { formatAddress } from './exchange.js';

/**
 * Parse `HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address; the port defaults to
 * 53. Throws on anything that is not an IP address with a valid port.
 */
export function parseHostPort(s: string, defaultPort = 53): HostPort {
  let host = s.trim();
  let port = defaultPort;
  const br = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (br !== null) {
    host = br[1]!;
    if (br[2] !== undefined) port = Number(br[2]);
  } else if (isIP(stripZone(host)) === 0) {
    const m = /^([^:]+):(\d+)$/.exec(host);
    if (m === null) throw new Error(`not an IP address: ${s}`);
    host = m[1]!;
    port = Number(m[2]);
  }
  if (isIP(stripZone(host)) === 0) throw new Error(`not an IP address: ${s}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad port in ${s}`);
  return { host, port };
}

/** The nameservers of a resolv.conf text (port 53; the file has no port syntax). */
export function parseResolvConf(text: string): HostPort[] {
  const out: HostPort[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const m = /^nameserver\s+(\S+)$/.exec(line);
    if (m === null) continue;
    if (isIP(stripZone(m[1]!)) === 0) continue;
    out.push({ host: m[1]!, port: 53 });
  }
  return out;
}

/**
 * Upstreams from `path` without ourselves (`self`: our listen addresses). Logs what it
 * chose and what it dropped. An unreadable file gives no upstream (and a warning).
 */
export function resolvConfUpstreams(path = '/etc/resolv.conf', self: readonly HostPort[] = [], log?: SourceLog): HostPort[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    log?.warn('cannot read resolv.conf: no default upstream', { path, error: (err as Error).message });
    return [];
  }
  const all = parseResolvConf(text);
  const chosen = all.filter((u) => !isSelf(u, self));
  const dropped = all.filter((u) => isSelf(u, self)).map(formatAddress);
  if (dropped.length > 0) log?.warn('resolv.conf names this server: not forwarding to it', { path, dropped });
  if (chosen.length === 0) log?.warn('no upstream nameserver in resolv.conf', { path });
  else log?.info('upstreams from resolv.conf', { path, upstreams: chosen.map(formatAddress) });
  return chosen;
}

/** Whether sending to `up` would reach one of our listeners `self`. */
export function isSelf(up: HostPort, self: readonly HostPort[]): boolean {
  const host = normalize(up.host);
  let local: Set<string> | undefined;
  for (const s of self) {
    if (s.port !== up.port) continue;
    const sh = normalize(s.host);
    if (sh === host) return true;
    if (sh === '0.0.0.0' || sh === '::' || sh === '') {
      // A wildcard listener receives for every local address of its family (`::`,
      // dual-stack on Linux, for both).
      if (sh === '0.0.0.0' && host.includes(':')) continue;
      if (isLoopback(host)) return true;
      local ??= localAddresses();
      if (local.has(host)) return true;
    }
  }
  return false;
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1';
}

function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.add(normalize(a.address));
  }
  return out;
}

/** Canonical text without the zone index, IPv4-mapped IPv6 as IPv4 (the kernel's view). */
function normalize(ip: string): string {
  const s = stripZone(ip);
  const c = canonicalIP(s);
  return c === undefined ? s.toLowerCase() : unmapIPv4(c);
}

/**
 * kube-dns `stubDomains` (`{"acme.internal": ["10.0.0.53", "10.0.0.54:5353"]}`) as
 * Forwarder options. Throws, naming the entry, on a bad domain or address (a config
 * that does not load is rejected as a whole).
 */
export function parseStubDomains(raw: Readonly<Record<string, readonly string[]>>): Record<string, HostPort[]> {
  const out: Record<string, HostPort[]> = {};
  for (const [domain, servers] of Object.entries(raw)) {
    const d = domain.trim().toLowerCase().replace(/\.$/, '');
    if (d === '' || d.split('.').some((l) => l.length === 0 || l.length > 63 || !/^[a-z0-9_-]+$/.test(l))) {
      throw new Error(`stubDomains: bad domain ${JSON.stringify(domain)}`);
    }
    if (!Array.isArray(servers) || servers.length === 0) throw new Error(`stubDomains: ${domain}: no servers`);
    out[d] = servers.map((s) => {
      try {
        return parseHostPort(String(s));
      } catch (err) {
        throw new Error(`stubDomains: ${domain}: ${(err as Error).message}`);
      }
    });
  }
  return out;
}
