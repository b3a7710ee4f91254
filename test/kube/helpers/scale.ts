/**
 * A synthetic cluster at the SIG Scalability envelope for the benchmark (and the memory
 * experiments behind it): Services spread over namespaces, EndpointSlices of at most 100
 * endpoints (the EndpointSlice controller's default), ClusterIP and headless services
 * mixed, pod-like endpoints (targetRef, nodeName, zone, StatefulSet hostnames on some
 * headless services) so the objects weigh what real ones weigh.
 */
import type { FakeApiServer } from '../../helpers/fake-apiserver.js';

export interface ScaleSpec {
  /** Services in total. Default 10,000. */
  readonly services?: number;
  /** Endpoints in total, in slices of `sliceSize`. Default 150,000. */
  readonly endpoints?: number;
  /** Endpoints per slice. Default 100. */
  readonly sliceSize?: number;
  /** Namespaces. Default 50. */
  readonly namespaces?: number;
}

export interface ScaleInfo {
  readonly namespaces: string[];
  /** [namespace, name, clusterIP or undefined for headless] of the services with endpoints. */
  readonly withEndpoints: { ns: string; name: string; clusterIP: string | undefined }[];
  readonly services: number;
  readonly slices: number;
  readonly endpoints: number;
}

export function nsName(i: number): string {
  return `ns-${String(i).padStart(3, '0')}`;
}

export function svcName(i: number): string {
  return `svc-${String(i).padStart(5, '0')}`;
}

/** 10.96.0.0/12 service range: service i gets 10.96.0.0 + 10 + i. */
export function clusterIPOf(i: number, salt = 0): string {
  const n = (10 + i + salt * 20000) % (1 << 20);
  return `10.${96 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

/** Pod IP number k in 10.128.0.0/9. */
export function podIP(k: number): string {
  return `10.${128 + ((k >> 16) & 127)}.${(k >> 8) & 255}.${k & 255}`;
}

export function serviceObject(ns: string, name: string, clusterIP: string | undefined): object {
  return {
    metadata: { name, namespace: ns, labels: { app: name, tier: 'backend' }, annotations: { 'example.com/owner': 'team-a' } },
    spec: {
      type: 'ClusterIP',
      clusterIP: clusterIP ?? 'None',
      clusterIPs: [clusterIP ?? 'None'],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      selector: { app: name },
      sessionAffinity: 'None',
      internalTrafficPolicy: 'Cluster',
      ports: [
        { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 },
        { name: 'metrics', port: 9090, protocol: 'TCP', targetPort: 9090 },
      ],
    },
    status: { loadBalancer: {} },
  };
}

export function sliceObject(ns: string, service: string, index: number, firstIP: number, count: number, statefulSet: boolean): object {
  const endpoints = [];
  for (let j = 0; j < count; j++) {
    const k = firstIP + j;
    const pod = statefulSet ? `${service}-${index * 100 + j}` : `${service}-7d9f8c${(k % 1000).toString(36)}-${(k * 7919).toString(36).slice(-5)}`;
    endpoints.push({
      addresses: [podIP(k)],
      conditions: { ready: true, serving: true, terminating: false },
      ...(statefulSet ? { hostname: pod } : {}),
      nodeName: `node-${String(k % 500).padStart(3, '0')}`,
      zone: `zone-${'abc'[k % 3]}`,
      targetRef: { kind: 'Pod', namespace: ns, name: pod, uid: `00000000-0000-4000-8000-${k.toString(16).padStart(12, '0')}` },
    });
  }
  return {
    metadata: {
      name: `${service}-${index.toString(36).padStart(5, 'x')}`,
      namespace: ns,
      labels: {
        'kubernetes.io/service-name': service,
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        app: service,
        tier: 'backend',
      },
      generateName: `${service}-`,
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: service, uid: '11111111-2222-4333-8444-555555555555', controller: true, blockOwnerDeletion: true }],
    },
    addressType: 'IPv4',
    endpoints,
    ports: [
      { name: 'http', port: 8080, protocol: 'TCP' },
      { name: 'metrics', port: 9090, protocol: 'TCP' },
    ],
  };
}

/**
 * Fill `s` with the cluster: `services` Services over `namespaces` namespaces; the first
 * ⌈endpoints / sliceSize⌉ services get one full slice each, alternating ClusterIP and
 * headless (every fourth headless one with StatefulSet hostnames); the rest have no
 * endpoints (ClusterIP services still answer their ClusterIP).
 */
export function populate(s: FakeApiServer, spec: ScaleSpec = {}): ScaleInfo {
  const services = spec.services ?? 10_000;
  const endpoints = spec.endpoints ?? 150_000;
  const sliceSize = spec.sliceSize ?? 100;
  const nsCount = spec.namespaces ?? 50;
  const namespaces: string[] = [];
  for (let i = 0; i < nsCount; i++) {
    namespaces.push(nsName(i));
    s.create('Namespace', { metadata: { name: nsName(i), labels: { 'kubernetes.io/metadata.name': nsName(i) } } });
  }
  const slicesNeeded = Math.ceil(endpoints / sliceSize);
  const withEndpoints: ScaleInfo['withEndpoints'] = [];
  let ip = 0;
  let slices = 0;
  let eps = 0;
  for (let i = 0; i < services; i++) {
    const ns = nsName(i % nsCount);
    const name = svcName(i);
    const hasEndpoints = i < slicesNeeded;
    const headless = hasEndpoints && i % 2 === 1;
    const clusterIP = headless ? undefined : clusterIPOf(i);
    s.create('Service', serviceObject(ns, name, clusterIP));
    if (hasEndpoints) {
      const count = Math.min(sliceSize, endpoints - eps);
      s.create('EndpointSlice', sliceObject(ns, name, 0, ip, count, headless && i % 8 === 1));
      ip += count;
      eps += count;
      slices++;
      withEndpoints.push({ ns, name, clusterIP });
    }
  }
  return { namespaces, withEndpoints, services, slices, endpoints: eps };
}
