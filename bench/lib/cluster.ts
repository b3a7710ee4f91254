/**
 * The benchmark cluster: generated once (deterministic for a seed), written both as
 * zones/ manifests for clusterdns and as RFC 1035 zone files for Knot, so both servers
 * hold the same names with the same answers. Also the dnsperf query files.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ZONE = 'cluster.local';
export const FORWARD_ZONE = 'bench.test';
export const TTL = 5; // clusterdns default `ttl`

export interface ClusterSpec {
  services: number; // ClusterIP services
  headless: number; // headless services
  endpoints: number; // ready endpoints per headless service
  namespaces: number;
  seed: number;
}

export interface GenService {
  ns: string;
  name: string;
  clusterIP: string | undefined; // undefined: headless
  ports: { name: string; port: number; protocol: 'TCP' | 'UDP' }[];
  /** Headless only: endpoint hostname and address. */
  endpoints: { hostname: string; ip: string }[];
  /** Headless only: the port the endpoints listen on (what SRV carries). */
  targetPort: number;
}

export interface Cluster {
  spec: ClusterSpec;
  namespaces: string[];
  services: GenService[]; // includes kubernetes.default and kube-dns.kube-system
}

const NAMESPACE_NAMES = ['default', 'shop', 'payments', 'data', 'search', 'auth', 'media', 'platform', 'ml', 'infra', 'edge', 'billing'];
const WORDS = ['api', 'orders', 'cart', 'users', 'catalog', 'checkout', 'ledger', 'search', 'index', 'auth', 'session', 'images', 'thumbs', 'mailer', 'queue', 'cache', 'report', 'gateway', 'ranker', 'feed'];

/** mulberry32: small, fast, deterministic. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(a: T[], rand: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function ipv4(base: number, offset: number): string {
  const n = (base + offset) >>> 0;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
const SERVICE_BASE = (10 << 24) | (96 << 16); // 10.96.0.0/12
const POD_BASE = (10 << 24) | (244 << 16); // 10.244.0.0/16

export function generateCluster(spec: ClusterSpec): Cluster {
  if (spec.services + spec.headless > 60_000) throw new Error('at most 60,000 services');
  if (spec.headless * spec.endpoints > 60_000) throw new Error('at most 60,000 headless endpoints');
  const nsCount = Math.max(1, Math.min(NAMESPACE_NAMES.length, spec.namespaces));
  const namespaces = NAMESPACE_NAMES.slice(0, nsCount);
  const services: GenService[] = [
    {
      ns: 'default',
      name: 'kubernetes',
      clusterIP: '10.96.0.1',
      ports: [{ name: 'https', port: 443, protocol: 'TCP' }],
      endpoints: [],
      targetPort: 0,
    },
    {
      ns: 'kube-system',
      name: 'kube-dns',
      clusterIP: '10.96.0.10',
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP' },
        { name: 'dns-tcp', port: 53, protocol: 'TCP' },
        { name: 'metrics', port: 9153, protocol: 'TCP' },
      ],
      endpoints: [],
      targetPort: 0,
    },
  ];
  for (let i = 0; i < spec.services; i++) {
    services.push({
      ns: namespaces[i % nsCount]!,
      name: `${WORDS[i % WORDS.length]}-${String(i).padStart(4, '0')}`,
      clusterIP: ipv4(SERVICE_BASE, 256 + i), // 10.96.1.0 upwards
      ports: [
        { name: 'http', port: 80, protocol: 'TCP' },
        { name: 'metrics', port: 9090, protocol: 'TCP' },
      ],
      endpoints: [],
      targetPort: 0,
    });
  }
  let pod = 256;
  for (let i = 0; i < spec.headless; i++) {
    const name = `${WORDS[(i * 7) % WORDS.length]}-db-${String(i).padStart(3, '0')}`;
    const eps: { hostname: string; ip: string }[] = [];
    for (let e = 0; e < spec.endpoints; e++) eps.push({ hostname: `${name}-${e}`, ip: ipv4(POD_BASE, pod++) });
    services.push({
      ns: namespaces[(i * 3) % nsCount]!,
      name,
      clusterIP: undefined,
      ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
      endpoints: eps,
      targetPort: 8080,
    });
  }
  return { spec, namespaces, services };
}

// ---------------------------------------------------------------- manifests (clusterdns)

function serviceYaml(s: GenService): string {
  const ports = s.ports
    .map((p) => `    - { name: ${p.name}, port: ${p.port}, protocol: ${p.protocol} }`)
    .join('\n');
  return [
    '---',
    'apiVersion: v1',
    'kind: Service',
    'metadata:',
    `  name: ${s.name}`,
    `  namespace: ${s.ns}`,
    'spec:',
    s.clusterIP === undefined ? '  clusterIP: None' : `  clusterIP: ${s.clusterIP}`,
    '  ports:',
    ports,
    '',
  ].join('\n');
}

function sliceYaml(s: GenService): string {
  const eps = s.endpoints
    .map(
      (e) =>
        `  - addresses: [${e.ip}]\n    hostname: ${e.hostname}\n    conditions: { ready: true, serving: true, terminating: false }`,
    )
    .join('\n');
  return [
    '---',
    'apiVersion: discovery.k8s.io/v1',
    'kind: EndpointSlice',
    'metadata:',
    `  name: ${s.name}-abcde`,
    `  namespace: ${s.ns}`,
    '  labels:',
    `    kubernetes.io/service-name: ${s.name}`,
    '    service.kubernetes.io/headless: ""',
    'addressType: IPv4',
    'endpoints:',
    eps,
    'ports:',
    `  - { name: http, port: ${s.targetPort}, protocol: TCP }`,
    '',
  ].join('\n');
}

/** `dir/cluster.local/<ns>.yaml`: Namespace, Services and (headless) EndpointSlices. */
export function writeManifests(c: Cluster, dir: string): void {
  const zdir = join(dir, ZONE);
  mkdirSync(zdir, { recursive: true });
  const byNs = new Map<string, string[]>();
  for (const s of c.services) {
    let l = byNs.get(s.ns);
    if (l === undefined) byNs.set(s.ns, (l = [`---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${s.ns}\n`]));
    l.push(serviceYaml(s));
    if (s.clusterIP === undefined) l.push(sliceYaml(s));
  }
  for (const [ns, docs] of byNs) writeFileSync(join(zdir, `${ns}.yaml`), docs.join(''));
}

// ---------------------------------------------------------------- zone files (Knot)

/** CoreDNS/clusterdns SRV weight: floor(100 / candidates), at least 1. */
function weight(candidates: number): number {
  return Math.max(1, Math.floor(100 / Math.max(1, candidates)));
}

/**
 * The records clusterdns serves for these objects (TTL 5, SOA/NS as clusterdns builds
 * them, endpoint names, SRV per named port and on the bare name).
 */
export function clusterZoneFile(c: Cluster): string {
  const z = ZONE;
  const out: string[] = [
    `$ORIGIN ${z}.`,
    `$TTL ${TTL}`,
    `${z}. ${TTL} IN SOA ns.dns.${z}. hostmaster.${z}. 1 7200 1800 86400 ${TTL}`,
    `${z}. ${TTL} IN NS ns.dns.${z}.`,
    `ns.dns.${z}. ${TTL} IN A 10.96.0.10`,
    `dns-version.${z}. 28800 IN TXT "1.1.0"`,
  ];
  for (const s of c.services) {
    const base = `${s.name}.${s.ns}.svc.${z}.`;
    if (s.clusterIP !== undefined) {
      out.push(`${base} ${TTL} IN A ${s.clusterIP}`);
      const named = new Map<string, number[]>();
      for (const p of s.ports) {
        const n = `_${p.name}._${p.protocol.toLowerCase()}.${base}`;
        named.set(n, [...(named.get(n) ?? []), p.port]);
      }
      for (const [n, ports] of named) {
        for (const port of new Set(ports)) out.push(`${n} ${TTL} IN SRV 0 ${weight(ports.length)} ${port} ${base}`);
      }
      const all = s.ports.map((p) => p.port);
      for (const port of new Set(all)) out.push(`${base} ${TTL} IN SRV 0 ${weight(all.length)} ${port} ${base}`);
    } else {
      for (const e of s.endpoints) {
        out.push(`${base} ${TTL} IN A ${e.ip}`);
        out.push(`${e.hostname}.${base} ${TTL} IN A ${e.ip}`);
      }
      const w = weight(s.endpoints.length);
      for (const e of s.endpoints) {
        out.push(`_http._tcp.${base} ${TTL} IN SRV 0 ${w} ${s.targetPort} ${e.hostname}.${base}`);
        out.push(`${base} ${TTL} IN SRV 0 ${w} ${s.targetPort} ${e.hostname}.${base}`);
      }
    }
  }
  return `${out.join('\n')}\n`;
}

export function forwardNames(count: number): string[] {
  const names: string[] = [];
  for (let i = 0; i < count; i++) names.push(`host-${String(i).padStart(4, '0')}.${FORWARD_ZONE}`);
  return names;
}

/** A zone only Knot serves, for the forwarding measurement. TTL 300 (the cache caps it). */
export function forwardZoneFile(count: number): string {
  const z = FORWARD_ZONE;
  const out = [
    `$ORIGIN ${z}.`,
    '$TTL 300',
    `${z}. 300 IN SOA ns.${z}. hostmaster.${z}. 1 7200 1800 86400 60`,
    `${z}. 300 IN NS ns.${z}.`,
    `ns.${z}. 300 IN A 127.0.0.1`,
  ];
  // 198.18.0.0/15: the benchmarking range (RFC 2544).
  forwardNames(count).forEach((n, i) => out.push(`${n}. 300 IN A ${ipv4((198 << 24) | (18 << 16), i + 1)}`));
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------- query files

export interface QueryMix {
  clusterA: number; // share of A queries for ClusterIP services
  headlessA: number;
  srv: number;
  nxdomain: number;
}
export const ISSUE_MIX: QueryMix = { clusterA: 0.7, headlessA: 0.1, srv: 0.1, nxdomain: 0.1 };

export interface Query {
  name: string;
  type: 'A' | 'SRV' | 'NS' | 'TXT';
  kind: keyof QueryMix;
}

const EXTERNAL = ['api.example.com', 'www.google.com', 'registry.npmjs.org', 'github.com', 'login.microsoftonline.com', 's3.amazonaws.com', 'pypi.org', 'cdn.jsdelivr.net'];

/**
 * `lines` queries in the given mix, shuffled. NXDOMAIN names are what ndots:5 search
 * walks send for external names: `<ext>.<ns>.svc.<zone>`, `<ext>.svc.<zone>`, `<ext>.<zone>`,
 * plus wrong service names in a real namespace.
 */
export function clusterQueries(c: Cluster, lines: number, mix: QueryMix, seed: number): Query[] {
  const rand = rng(seed ^ 0x5eed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
  const cip = c.services.filter((s) => s.clusterIP !== undefined);
  const hl = c.services.filter((s) => s.clusterIP === undefined);
  const withHttp = c.services.filter((s) => s.ports.some((p) => p.name === 'http'));
  const counts: [keyof QueryMix, number][] = [
    ['headlessA', hl.length > 0 ? Math.round(lines * mix.headlessA) : 0],
    ['srv', Math.round(lines * mix.srv)],
    ['nxdomain', Math.round(lines * mix.nxdomain)],
  ];
  const rest = lines - counts.reduce((a, [, n]) => a + n, 0);
  counts.unshift(['clusterA', rest]);
  const out: Query[] = [];
  for (const [kind, n] of counts) {
    for (let i = 0; i < n; i++) {
      switch (kind) {
        case 'clusterA': {
          const s = pick(cip);
          out.push({ name: `${s.name}.${s.ns}.svc.${ZONE}`, type: 'A', kind });
          break;
        }
        case 'headlessA': {
          const s = pick(hl);
          out.push({ name: `${s.name}.${s.ns}.svc.${ZONE}`, type: 'A', kind });
          break;
        }
        case 'srv': {
          const s = pick(withHttp);
          out.push({ name: `_http._tcp.${s.name}.${s.ns}.svc.${ZONE}`, type: 'SRV', kind });
          break;
        }
        case 'nxdomain': {
          const ext = pick(EXTERNAL);
          const r = rand();
          const name =
            r < 0.4
              ? `${ext}.${pick(c.namespaces)}.svc.${ZONE}`
              : r < 0.7
                ? `${ext}.svc.${ZONE}`
                : r < 0.9
                  ? `${ext}.${ZONE}`
                  : `no-such-svc-${Math.floor(rand() * 1e6)}.${pick(c.namespaces)}.svc.${ZONE}`;
          out.push({ name, type: 'A', kind });
          break;
        }
      }
    }
  }
  return shuffle(out, rand);
}

export function forwardQueries(count: number, lines: number, seed: number): Query[] {
  const rand = rng(seed ^ 0xf0f0);
  const names = forwardNames(count);
  const out: Query[] = [];
  for (let i = 0; i < lines; i++) out.push({ name: names[i % names.length]!, type: 'A', kind: 'clusterA' });
  return shuffle(out, rand);
}

export function writeQueryFile(path: string, qs: readonly Query[]): void {
  writeFileSync(path, qs.map((q) => `${q.name} ${q.type}`).join('\n') + '\n');
}
