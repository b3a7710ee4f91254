/**
 * Configuration: the YAML file given with `--config`, validated once, frozen.
 *
 * Every key has the meaning of the CoreDNS kubernetes-plugin option of the same name
 * (README "Configuration"). An unknown key or a bad value is a ConfigError naming the
 * key, what was given and what is allowed; nothing is guessed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isIPv4, isIPv6 } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { hasHostBits, parseCIDR } from './net/ip.js';
import type { ProxyConfig } from './proxy/types.js';
import { MEMORY_PROFILES, type MemoryProfile } from './ops/memory.js';
import type { PodsMode } from './zone/build.js';
import { validateServiceCidrs } from './ipam/allocator.js';
import { ServiceCidrConfigError } from './ipam/errors.js';

export class ConfigError extends Error {
  readonly code = 'ECONFIG';
}

export interface Config {
  /** TTL of cluster records (CoreDNS `ttl`): 0-3600, default 5. */
  readonly ttl: number;
  /** Only these namespaces are served (CoreDNS `namespaces`); undefined = all. */
  readonly namespaces: readonly string[] | undefined;
  readonly pods: PodsMode;
  readonly ignoreEmptyService: boolean;
  readonly endpointPodNames: boolean;
  readonly noEndpoints: boolean;
  /** Reverse zones we are authoritative for, as zone names (`96.10.in-addr.arpa`). */
  readonly reverseZones: readonly string[];
  /** The CIDRs/zones as written, for display. */
  readonly reverseZonesSource: readonly string[];
  /** Seconds to keep answering while /healthz reports failure on shutdown (CoreDNS health lameduck). */
  readonly lameduck: number;
  /** Log every query (CoreDNS `log` plugin). */
  readonly queryLog: boolean;
  /** Service CIDRs of the embedded registry (kube-apiserver --service-cluster-ip-range), primary first. */
  readonly serviceCIDRs: readonly string[];
  /** NodePort range of the embedded registry (kube-apiserver --service-node-port-range). */
  readonly nodePortRange: string;
  /** Label selector on Services and EndpointSlices (CoreDNS `labels`). */
  readonly labels: string | undefined;
  /** Label selector on Namespaces; others count as nonexistent (CoreDNS `namespace_labels`). */
  readonly namespaceLabels: string | undefined;
  /** Seconds to wait for the first sync before answering anyway (CoreDNS `startup_timeout`). */
  readonly startupTimeout: number;
  /** Upstream resolvers (`HOST[:PORT]`); empty: `--upstream`, else /etc/resolv.conf. */
  readonly upstream: readonly string[];
  /** kube-dns style stub domains: domain → its servers. */
  readonly stubDomains: Readonly<Record<string, readonly string[]>>;
  /** Most forwarded queries in flight; more get REFUSED (CoreDNS forward max_concurrent). */
  readonly maxConcurrent: number;
  /** Forwarding timeout in seconds per query (SERVFAIL after it). */
  readonly forwardTimeout: number;
  /** Cache of forwarded answers (CoreDNS `cache`). */
  readonly cache: CacheConfig;
  /** V8 memory profile (src/ops/memory.ts): `lean` heap or `fast` queries. Needs a restart. */
  readonly memory: MemoryProfile;
  /** The service proxy (`--proxy`, `clusterdns proxy`): kube-proxy's settings of the same names. */
  readonly proxy: ProxyConfig;
  /**
   * Seconds a Kubernetes watch may stay silent (no event, no bookmark) before it is
   * abandoned and restarted. The apiserver sends a bookmark about once a minute.
   */
  readonly watchTimeout: number;
  /** Zones served from MCS-API ServiceImports (CoreDNS `multicluster`), e.g. clusterset.local. */
  readonly multicluster: readonly string[];
  /** Topology names of headless services, `<zone>.pin|prefer._zone.<svc>...` (CoreDNS `zonal`). */
  readonly zonal: boolean;
  /** Clients (CIDRs) allowed to transfer the cluster zones with AXFR/IXFR (CoreDNS `transfer ... to`). */
  readonly transfer: readonly string[];
  /** Secondaries (`HOST[:PORT]`) sent a NOTIFY (RFC 1996) when a zone's serial moves. */
  readonly transferNotify: readonly string[];
  /** Answer a pod's search-list walk in one round trip (CoreDNS `autopath @kubernetes`); needs `pods: verified`. */
  readonly autopath: boolean;
}

export type { ProxyConfig };


export interface CacheConfig {
  readonly maxTTL: number;
  readonly maxNegativeTTL: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly serveStale: number;
  readonly prefetch: boolean;
}

export const DEFAULT_CONFIG: Config = Object.freeze({
  ttl: 5,
  namespaces: undefined,
  // kubeadm's Corefile sets `pods insecure`; that is what clusters run with.
  pods: 'insecure',
  ignoreEmptyService: false,
  endpointPodNames: false,
  noEndpoints: false,
  reverseZones: [],
  reverseZonesSource: [],
  lameduck: 5,
  queryLog: false,
  serviceCIDRs: ['10.96.0.0/12'],
  nodePortRange: '30000-32767',
  labels: undefined,
  namespaceLabels: undefined,
  startupTimeout: 5,
  upstream: [],
  stubDomains: {},
  maxConcurrent: 1000,
  forwardTimeout: 2,
  cache: { maxTTL: 30, maxNegativeTTL: 5, maxEntries: 10000, maxBytes: 32 * 1024 * 1024, serveStale: 3600, prefetch: false },
  memory: 'lean',
  proxy: Object.freeze({
    syncPeriod: 30_000,
    minSyncPeriod: 1_000,
    udpIdleTimeout: 250,
    nodePortAddresses: Object.freeze([]),
    clusterCIDR: Object.freeze([]),
    masqueradeAll: false,
    maxConnections: 10_000,
    nodeName: '',
  }),
  // Two and a half bookmark intervals: one bookmark may be late or lost without a reconnect,
  // while a dead connection is noticed within minutes (client-go's reflector has no such
  // timer and relies on TCP keepalive; we cannot, through every proxy and NAT on the way).
  watchTimeout: 150,
  multicluster: [],
  zonal: false,
  transfer: [],
  transferNotify: [],
  autopath: false,
});

type Checker = (v: unknown, where: string) => unknown;

const bool: Checker = (v, where) => {
  if (typeof v !== 'boolean') throw new ConfigError(`${where}: must be true or false, got ${show(v)}`);
  return v;
};

const KEYS: Record<string, Checker> = {
  ttl: (v, where) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 3600) {
      throw new ConfigError(`${where}: must be a whole number of seconds from 0 to 3600, got ${show(v)}`);
    }
    return v;
  },
  namespaces: (v, where) => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(x) || x.length > 63)) {
      throw new ConfigError(`${where}: must be a list of namespace names (DNS-1123 labels), got ${show(v)}`);
    }
    return Object.freeze([...new Set(v as string[])]);
  },
  pods: (v, where) => {
    if (v !== 'disabled' && v !== 'insecure' && v !== 'verified') {
      throw new ConfigError(`${where}: must be one of disabled, insecure, verified; got ${show(v)}`);
    }
    return v;
  },
  ignoreEmptyService: bool,
  endpointPodNames: bool,
  noEndpoints: bool,
  lameduck: (v, where) => {
    if (typeof v !== 'number' || !(v >= 0 && v <= 300)) throw new ConfigError(`${where}: must be a number of seconds from 0 to 300, got ${show(v)}`);
    return v;
  },
  queryLog: bool,
  serviceCIDRs: (v, where) => {
    const list = typeof v === 'string' ? v.split(',').map((x) => x.trim()) : v;
    if (!Array.isArray(list) || list.length === 0 || list.some((x) => typeof x !== 'string')) {
      throw new ConfigError(`${where}: must be a list of one or two CIDRs (one per IP family, primary first), got ${show(v)}`);
    }
    try {
      validateServiceCidrs(list as string[]);
    } catch (err) {
      const detail = err instanceof ServiceCidrConfigError ? err.errors.join('; ') : (err as Error).message;
      throw new ConfigError(`${where}: ${detail}`);
    }
    return Object.freeze([...(list as string[])]);
  },
  nodePortRange: (v, where) => {
    if (typeof v !== 'string' || !/^\d+-\d+$/.test(v)) throw new ConfigError(`${where}: must be "LOW-HIGH" (e.g. "30000-32767"), got ${show(v)}`);
    const [lo, hi] = v.split('-').map(Number) as [number, number];
    if (lo < 1 || hi > 65535 || lo > hi) throw new ConfigError(`${where}: ports must satisfy 1 <= LOW <= HIGH <= 65535, got ${show(v)}`);
    return v;
  },
  labels: selector,
  namespaceLabels: selector,
  startupTimeout: (v, where) => {
    if (typeof v !== 'number' || !(v >= 0 && v <= 600)) throw new ConfigError(`${where}: must be a number of seconds from 0 to 600, got ${show(v)}`);
    return v;
  },
  upstream: (v, where) => {
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.some((x) => typeof x !== 'string' || !hostPort(x))) {
      throw new ConfigError(`${where}: must be a list of HOST[:PORT] (IPv6 as [ADDR]:PORT), got ${show(v)}`);
    }
    return Object.freeze([...(list as string[])]);
  },
  stubDomains: (v, where) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new ConfigError(`${where}: must be a mapping of domain to a list of HOST[:PORT], e.g. {"acme.internal": ["10.0.0.53"]}, got ${show(v)}`);
    }
    const out: Record<string, readonly string[]> = {};
    for (const [d, servers] of Object.entries(v as Record<string, unknown>)) {
      const dom = d.toLowerCase().replace(/\.$/, '');
      if (!/^[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*$/.test(dom)) throw new ConfigError(`${where}: "${d}" is not a domain name`);
      if (!Array.isArray(servers) || servers.length === 0 || servers.some((x) => typeof x !== 'string' || !hostPort(x))) {
        throw new ConfigError(`${where}: ${d}: must be a non-empty list of HOST[:PORT], got ${show(servers)}`);
      }
      out[dom] = Object.freeze([...(servers as string[])]);
    }
    return Object.freeze(out);
  },
  memory: (v, where) => {
    if (typeof v !== 'string' || !(MEMORY_PROFILES as readonly string[]).includes(v)) {
      throw new ConfigError(`${where}: must be one of ${MEMORY_PROFILES.join(', ')}, got ${show(v)}`);
    }
    return v;
  },
  maxConcurrent: (v, where) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1_000_000) throw new ConfigError(`${where}: must be a whole number from 1 to 1000000, got ${show(v)}`);
    return v;
  },
  forwardTimeout: (v, where) => {
    if (typeof v !== 'number' || !(v >= 0.1 && v <= 30)) throw new ConfigError(`${where}: must be a number of seconds from 0.1 to 30, got ${show(v)}`);
    return v;
  },
  cache: (v, where) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${where}: must be a mapping with keys ${Object.keys(DEFAULT_CONFIG.cache).join(', ')}`);
    const out: Record<string, unknown> = { ...DEFAULT_CONFIG.cache };
    const limits: Record<string, [number, number]> = { maxTTL: [0, 86400], maxNegativeTTL: [0, 86400], maxEntries: [0, 10_000_000], maxBytes: [0, 2 ** 34], serveStale: [0, 7 * 86400] };
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (k === 'prefetch') {
        out[k] = bool(x, `${where}.prefetch`);
        continue;
      }
      const lim = limits[k];
      if (lim === undefined) throw new ConfigError(`${where}: unknown key "${k}"; allowed keys: ${Object.keys(DEFAULT_CONFIG.cache).join(', ')}`);
      if (typeof x !== 'number' || !Number.isInteger(x) || x < lim[0] || x > lim[1]) throw new ConfigError(`${where}.${k}: must be a whole number from ${lim[0]} to ${lim[1]}, got ${show(x)}`);
      out[k] = x;
    }
    return Object.freeze(out);
  },
  proxy: (v, where) => parseProxy(v, where),
  watchTimeout: (v, where) => {
    if (typeof v !== 'number' || !(v >= 10 && v <= 3600)) throw new ConfigError(`${where}: must be a number of seconds from 10 to 3600, got ${show(v)}`);
    return v;
  },
  multicluster: (v, where) => {
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.some((x) => typeof x !== 'string' || !DOMAIN.test(x.toLowerCase().replace(/\.$/, '')))) {
      throw new ConfigError(`${where}: must be a list of zone names like clusterset.local, got ${show(v)}`);
    }
    const zones = (list as string[]).map((x) => x.toLowerCase().replace(/\.$/, ''));
    for (const z of zones) {
      if (z.endsWith('.arpa') || z === 'arpa') throw new ConfigError(`${where}: "${z}" is a reverse zone; multicluster zones hold service names`);
    }
    return Object.freeze([...new Set(zones)]);
  },
  zonal: bool,
  transfer: (v, where) => cidrList(v, where),
  transferNotify: (v, where) => {
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.some((x) => typeof x !== 'string' || !hostPort(x))) {
      throw new ConfigError(`${where}: must be a list of HOST[:PORT] (IPv6 as [ADDR]:PORT) of secondaries, got ${show(v)}`);
    }
    return Object.freeze([...(list as string[])]);
  },
  autopath: bool,
  reverseZones: (v, where) => {
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      throw new ConfigError(`${where}: must be a list of CIDRs (10.96.0.0/12, fd00::/64) or reverse zone names, got ${show(v)}`);
    }
    return Object.freeze([...(v as string[])]);
  },
};

/**
 * A duration as kube-proxy's config writes one (Go's time.ParseDuration subset: "30s",
 * "1m30s", "250ms", "1h"), or a number of seconds. Returns milliseconds.
 */
export function parseDuration(v: unknown, where: string, minMs: number, maxMs: number): number {
  let ms: number | undefined;
  if (typeof v === 'number' && Number.isFinite(v)) ms = v * 1000;
  else if (typeof v === 'string' && /^(\d+(\.\d+)?(h|m|s|ms))+$/.test(v)) {
    ms = 0;
    for (const m of v.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)) {
      const unit = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 }[m[2] as 'h' | 'm' | 's' | 'ms'];
      ms += Number(m[1]) * unit;
    }
  }
  if (ms === undefined || ms < minMs || ms > maxMs) {
    throw new ConfigError(`${where}: must be a duration from ${minMs}ms to ${maxMs / 1000}s like "30s", "1m", "250ms" (or a number of seconds), got ${show(v)}`);
  }
  return Math.round(ms);
}

const DOMAIN = /^[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*$/;

/** A CIDR (network address, no host bits) of either family. */
function cidr(v: unknown, where: string): string {
  const c = typeof v === 'string' ? parseCIDR(v.trim()) : undefined;
  if (c === undefined || c.prefix > c.bytes.length * 8) {
    throw new ConfigError(`${where}: must be a CIDR like 10.244.0.0/16 or fd00:10:244::/56, got ${show(v)}`);
  }
  if (hasHostBits(c.bytes, c.prefix)) throw new ConfigError(`${where}: "${v as string}" has host bits set (did you mean a network address?)`);
  return (v as string).trim();
}

function cidrList(v: unknown, where: string): readonly string[] {
  const list = typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter((x) => x !== '') : v;
  if (!Array.isArray(list)) throw new ConfigError(`${where}: must be a CIDR or a list of CIDRs, got ${show(v)}`);
  return Object.freeze(list.map((x, i) => cidr(x, `${where}[${i}]`)));
}

const PROXY_KEYS = Object.keys(DEFAULT_CONFIG.proxy);

function parseProxy(v: unknown, where: string): ProxyConfig {
  if (v === null || v === undefined) return DEFAULT_CONFIG.proxy;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${where}: must be a mapping with keys ${PROXY_KEYS.join(', ')}`);
  const out: Record<string, unknown> = { ...DEFAULT_CONFIG.proxy };
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const at = `${where}.${k}`;
    switch (k) {
      case 'syncPeriod':
        out[k] = parseDuration(x, at, 1000, 24 * 3_600_000);
        break;
      case 'minSyncPeriod':
        out[k] = parseDuration(x, at, 0, 3_600_000);
        break;
      case 'udpIdleTimeout':
        out[k] = parseDuration(x, at, 1, 3_600_000);
        break;
      case 'nodePortAddresses':
        out[k] = cidrList(x, at);
        break;
      case 'clusterCIDR': {
        // One per family, as kube-proxy's --cluster-cidr: the masquerade rule is a single
        // `! -s CIDR` match, so a second CIDR of a family could not be honoured.
        const list = cidrList(x, at);
        const v6 = list.filter((c) => c.includes(':'));
        if (v6.length > 1 || list.length - v6.length > 1) throw new ConfigError(`${at}: at most one CIDR per IP family (the pod network), got ${show(x)}`);
        out[k] = list;
        break;
      }
      case 'masqueradeAll':
        out[k] = bool(x, at);
        break;
      case 'maxConnections':
        if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 1_000_000) throw new ConfigError(`${at}: must be a whole number from 1 to 1000000, got ${show(x)}`);
        out[k] = x;
        break;
      case 'nodeName':
        if (typeof x !== 'string' || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(x) || x.length > 253) throw new ConfigError(`${at}: must be a node name (DNS-1123 subdomain), got ${show(x)}`);
        out[k] = x;
        break;
      default:
        throw new ConfigError(`${where}: unknown key "${k}"; allowed keys: ${PROXY_KEYS.join(', ')}`);
    }
  }
  if ((out.minSyncPeriod as number) > (out.syncPeriod as number)) {
    throw new ConfigError(`${where}.minSyncPeriod: must not exceed syncPeriod (${out.syncPeriod as number}ms), got ${out.minSyncPeriod as number}ms`);
  }
  return Object.freeze(out) as unknown as ProxyConfig;
}

/** A Kubernetes label selector string (`app=web,tier!=db`, `env in (a,b)`, `!key`). */
function selector(v: unknown, where: string): string {
  const term = /^\s*(!?[A-Za-z0-9./_-]+|[A-Za-z0-9./_-]+\s*(==?|!=)\s*[A-Za-z0-9._-]*|[A-Za-z0-9./_-]+\s+(in|notin)\s+\([A-Za-z0-9._,\s-]*\))\s*$/;
  if (typeof v !== 'string' || v.trim() === '' || !splitSelector(v).every((t) => term.test(t))) {
    throw new ConfigError(`${where}: must be a label selector like "app=web,tier!=db" or "env in (a,b)", got ${show(v)}`);
  }
  return v;
}

/** Split a selector on top-level commas (not those inside `in (...)`). */
function splitSelector(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const c of s) {
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (c === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** `HOST`, `HOST:PORT` or `[IPv6]:PORT` with an IP address host. */
function hostPort(s: string): boolean {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:]+):(\d{1,5})$/.exec(s);
  if (m !== null) return (isIPv4(m[1]!) || isIPv6(m[1]!)) && Number(m[2]) <= 65535;
  return isIPv4(s) || isIPv6(s);
}

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v);
}

/** Validate a parsed config object (from YAML). `source` names it in errors. */
export function parseConfig(raw: unknown, source = 'config'): Config {
  if (raw === null || raw === undefined) return DEFAULT_CONFIG;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`${source}: must be a mapping of keys (${Object.keys(KEYS).join(', ')})`);
  }
  const out: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const check = KEYS[k];
    if (check === undefined) {
      throw new ConfigError(`${source}: unknown key "${k}"; allowed keys: ${Object.keys(KEYS).join(', ')}`);
    }
    out[k] = check(v, `${source}: ${k}`);
  }
  // Options that only make sense together (CoreDNS rejects these at setup too).
  if (out.zonal === true && out.noEndpoints === true) {
    throw new ConfigError(`${source}: zonal: cannot be combined with noEndpoints (zonal names are built from endpoints, which noEndpoints does not keep)`);
  }
  if (out.autopath === true && out.pods !== 'verified') {
    throw new ConfigError(`${source}: autopath: needs pods: verified (the client's namespace is found from its pod IP), got pods: ${String(out.pods)}`);
  }
  const src = out.reverseZones as readonly string[];
  out.reverseZonesSource = src;
  out.reverseZones = Object.freeze(src.flatMap((c, i) => reverseZonesOf(c, `${source}: reverseZones[${i}]`)));
  return Object.freeze(out) as unknown as Config;
}

/** The file every command reads when no `--config` is given and it exists in the current folder. */
export const DEFAULT_CONFIG_FILE = 'clusterdns.yaml';

/**
 * Which configuration file a command uses: `--config` when given, else `./clusterdns.yaml`
 * when it exists (so `serve`, `ipam`, `proxy` and `rules` run in one folder agree), else
 * none. `implicit` says the file was found rather than named (the commands say so).
 */
export function findConfigFile(given: string | undefined, cwd = process.cwd()): { readonly path: string | undefined; readonly implicit: boolean } {
  if (given !== undefined) return { path: given, implicit: false };
  const found = resolve(cwd, DEFAULT_CONFIG_FILE);
  return existsSync(found) ? { path: found, implicit: true } : { path: undefined, implicit: false };
}

export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${path}: cannot read: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${path}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseConfig(raw, path);
}

/**
 * The reverse zones that cover a CIDR, cut at label boundaries (octets for
 * in-addr.arpa, nibbles for ip6.arpa, RFC 2317 style expansion as CoreDNS does for a
 * CIDR server-block key): 10.96.0.0/12 → 96.10.in-addr.arpa … 111.10.in-addr.arpa.
 */
export function reverseZonesOf(cidr: string, where: string): string[] {
  const lower = cidr.toLowerCase().replace(/\.$/, '');
  if (lower === 'in-addr.arpa' || lower === 'ip6.arpa' || lower.endsWith('.in-addr.arpa') || lower.endsWith('.ip6.arpa')) return [lower];
  const c = parseCIDR(cidr);
  if (c === undefined) {
    throw new ConfigError(`${where}: "${cidr}" is not a CIDR (address/prefix) or a reverse zone name`);
  }
  const { bytes, prefix: bits } = c;
  const v4 = bytes.length === 4;
  const max = v4 ? 32 : 128;
  if (bits > max) throw new ConfigError(`${where}: prefix length of "${cidr}" must be 0-${max}`);
  const step = v4 ? 8 : 4;
  const cut = Math.ceil(bits / step) * step;
  const digits: number[] = [];
  for (let i = 0; i < cut / step; i++) {
    digits.push(v4 ? bytes[i]! : (bytes[i >> 1]! >> ((i & 1) === 0 ? 4 : 0)) & 0xf);
  }
  // A CIDR names a network: every bit after the prefix must be zero.
  if (hasHostBits(bytes, bits)) throw new ConfigError(`${where}: "${cidr}" has host bits set (did you mean a network address?)`);
  const spare = cut - bits;
  const last = digits.length - 1;
  const out: string[] = [];
  const count = spare > 0 ? 1 << spare : 1;
  for (let k = 0; k < count; k++) {
    const d = [...digits];
    if (spare > 0) d[last] = d[last]! + k;
    const labels = d.reverse().map((x) => (v4 ? String(x) : x.toString(16)));
    out.push([...labels, v4 ? 'in-addr.arpa' : 'ip6.arpa'].join('.'));
  }
  return out;
}
