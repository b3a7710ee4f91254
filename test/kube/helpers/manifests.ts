/**
 * Load a zones/<domain>/ tree of manifests into a FakeApiServer, as `kubectl apply -R -f`
 * would into a real cluster: every YAML document, `kind: List` items too; the namespaces
 * the objects live in are created if no manifest declares them (a real API server refuses
 * objects in a missing namespace); and a legacy Endpoints object of a service that has no
 * EndpointSlice gets the slice the EndpointSliceMirroring controller would write.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { FakeApiServer, FakeKind } from '../../helpers/fake-apiserver.js';

const KINDS = new Set<FakeKind>(['Namespace', 'Service', 'EndpointSlice', 'Endpoints', 'Pod']);

interface Obj {
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  items?: unknown[];
  subsets?: { addresses?: { ip: string; hostname?: string }[]; notReadyAddresses?: { ip: string; hostname?: string }[]; ports?: { name?: string; port: number; protocol?: string }[] }[];
  [k: string]: unknown;
}

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p));
    else if (/\.(ya?ml|json)$/.test(e.name)) out.push(p);
  }
  return out;
}

export function manifestsOf(dir: string): Obj[] {
  const out: Obj[] = [];
  for (const f of files(dir)) {
    for (const doc of parseAllDocuments(readFileSync(f, 'utf8'))) {
      const o = doc.toJS() as Obj | null;
      if (o === null || typeof o !== 'object') continue;
      if (typeof o.kind === 'string' && o.kind.endsWith('List') && Array.isArray(o.items)) out.push(...(o.items as Obj[]));
      else out.push(o);
    }
  }
  return out;
}

/** Returns how many objects were created, by kind. */
export function loadManifests(s: FakeApiServer, dir: string): Record<string, number> {
  const objs = manifestsOf(dir).filter((o) => KINDS.has(o.kind as FakeKind));
  const counts: Record<string, number> = {};
  const namespaces = new Set(objs.filter((o) => o.kind === 'Namespace').map((o) => o.metadata?.name));
  for (const o of objs) {
    const ns = o.metadata?.namespace ?? 'default';
    if (o.kind !== 'Namespace' && !namespaces.has(ns)) {
      namespaces.add(ns);
      s.create('Namespace', { metadata: { name: ns, labels: { 'kubernetes.io/metadata.name': ns } } });
      counts['Namespace'] = (counts['Namespace'] ?? 0) + 1;
    }
  }
  const order: FakeKind[] = ['Namespace', 'Service', 'EndpointSlice', 'Endpoints', 'Pod'];
  for (const kind of order) {
    for (const o of objs.filter((x) => x.kind === kind)) {
      s.create(kind, o);
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
  }
  // EndpointSliceMirroring: Endpoints of a service without slices get a mirrored slice.
  const sliced = new Set(objs.filter((o) => o.kind === 'EndpointSlice').map((o) => `${o.metadata?.namespace ?? 'default'}/${o.metadata?.labels?.['kubernetes.io/service-name']}`));
  for (const o of objs.filter((x) => x.kind === 'Endpoints')) {
    const ns = o.metadata?.namespace ?? 'default';
    const name = o.metadata?.name ?? '';
    if (sliced.has(`${ns}/${name}`)) continue;
    const endpoints = (o.subsets ?? []).flatMap((ss) => [
      ...(ss.addresses ?? []).map((a) => ({ addresses: [a.ip], conditions: { ready: true }, ...(a.hostname ? { hostname: a.hostname } : {}) })),
      ...(ss.notReadyAddresses ?? []).map((a) => ({ addresses: [a.ip], conditions: { ready: false }, ...(a.hostname ? { hostname: a.hostname } : {}) })),
    ]);
    const ports = (o.subsets ?? []).flatMap((ss) => ss.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP' }));
    s.create('EndpointSlice', {
      metadata: {
        name: `${name}-mirror`,
        namespace: ns,
        labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': 'endpointslicemirroring-controller.k8s.io' },
      },
      addressType: 'IPv4',
      endpoints,
      ports,
    });
    counts['EndpointSlice'] = (counts['EndpointSlice'] ?? 0) + 1;
  }
  return counts;
}
