/**
 * A fixture cluster built straight from slim objects (no manifests), modelled on
 * CoreDNS's kubernetes-plugin test cluster, for the answer tables.
 */
import type { Endpoint, EndpointPort, EndpointSlice, Pod, Service, ServicePort } from '../../src/cluster/model.js';
import { ClusterStore } from '../../src/cluster/store.js';

export function svc(ns: string, name: string, p: Partial<Service> = {}): Service {
  return {
    namespace: ns,
    name,
    type: 'ClusterIP',
    clusterIPs: [],
    headless: false,
    ports: [],
    publishNotReadyAddresses: false,
    labels: {},
    ...p,
  };
}

export function port(name: string, portNum: number, protocol: ServicePort['protocol'] = 'TCP'): ServicePort {
  return { name, port: portNum, protocol };
}

export function ep(ip: string, p: { hostname?: string; ready?: boolean; podName?: string } = {}): Endpoint {
  const ready = p.ready ?? true;
  return {
    addresses: [ip],
    conditions: { ready, serving: ready, terminating: false },
    ...(p.hostname !== undefined ? { hostname: p.hostname } : {}),
    ...(p.podName !== undefined ? { podName: p.podName } : {}),
  };
}

export function slice(ns: string, service: string, name: string, endpoints: Endpoint[], ports: EndpointPort[], addressType: EndpointSlice['addressType'] = 'IPv4'): EndpointSlice {
  return { namespace: ns, name, serviceName: service, addressType, endpoints, ports, legacy: false, labels: { 'kubernetes.io/service-name': service } };
}

export function fixtureStore(): ClusterStore {
  const s = new ClusterStore();
  s.batch(() => {
    for (const ns of ['default', 'kube-system', 'testns', 'emptyns']) s.upsert({ kind: 'Namespace', obj: { name: ns, labels: {} } });
    s.upsert({ kind: 'Service', obj: svc('default', 'kubernetes', { clusterIPs: ['10.96.0.1'], ports: [port('https', 443)] }) });
    s.upsert({
      kind: 'Service',
      obj: svc('kube-system', 'kube-dns', { clusterIPs: ['10.96.0.10'], ports: [port('dns', 53, 'UDP'), port('dns-tcp', 53), port('metrics', 9153)] }),
    });
    s.upsert({ kind: 'Service', obj: svc('testns', 'svc1', { clusterIPs: ['10.0.0.1'], ports: [port('http', 80)] }) });
    s.upsert({
      kind: 'EndpointSlice',
      obj: slice('testns', 'svc1', 'svc1-abc', [ep('172.0.0.1', { hostname: 'ep1a' }), ep('172.0.0.2')], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
    });
    s.upsert({ kind: 'Service', obj: svc('testns', 'svc6', { clusterIPs: ['1234:abcd::1'], ports: [port('http', 80)] }) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'dual', { clusterIPs: ['10.0.0.3', '1234:abcd::3'], ports: [port('http', 80)] }) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'unnamed', { clusterIPs: ['10.0.0.4'], ports: [port('', 80)] }) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'noports', { clusterIPs: ['10.0.0.5'] }) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'hdls1', { headless: true, ports: [port('http', 80)] }) });
    s.upsert({
      kind: 'EndpointSlice',
      obj: slice(
        'testns',
        'hdls1',
        'hdls1-a',
        [
          ep('172.0.0.2'),
          ep('172.0.0.3', { hostname: 'web-0' }),
          ep('172.0.0.4', { hostname: 'dup-name' }),
          ep('172.0.0.5', { hostname: 'dup-name' }),
          ep('172.0.0.9', { hostname: 'web-9', ready: false }),
        ],
        [{ name: 'http', port: 80, protocol: 'TCP' }],
      ),
    });
    s.upsert({
      kind: 'EndpointSlice',
      obj: slice('testns', 'hdls1', 'hdls1-v6', [ep('5678:abcd::1'), ep('5678:abcd::2', { hostname: 'web-0' })], [{ name: 'http', port: 80, protocol: 'TCP' }], 'IPv6'),
    });
    s.upsert({ kind: 'Service', obj: svc('testns', 'hdls-empty', { headless: true, ports: [port('http', 80)] }) });
    s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'hdls-empty', 'hdls-empty-a', [ep('172.0.1.1', { ready: false })], [{ name: 'http', port: 80, protocol: 'TCP' }]) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'hdls-pub', { headless: true, publishNotReadyAddresses: true }) });
    s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'hdls-pub', 'hdls-pub-a', [ep('172.0.2.1', { hostname: 'pub-0', ready: false })], []) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'ext', { type: 'ExternalName', externalName: 'ext.interwebs.test' }) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'ext-in', { type: 'ExternalName', externalName: 'svc1.testns.svc.cluster.local' }) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'ext-ip', { type: 'ExternalName', externalName: '1.2.3.4' }) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'legacy', { clusterIPs: ['10.0.0.6'], ports: [port('http', 80)] }) });
    s.upsert({
      kind: 'Endpoints',
      obj: {
        namespace: 'testns',
        name: 'legacy',
        serviceName: 'legacy',
        addressType: 'IPv4',
        legacy: true,
        labels: {},
        endpoints: [ep('172.0.3.1', { hostname: 'old-0' }), ep('172.0.3.2', { ready: false })],
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      },
    });
    // A slice appearing for `legacy2` means its legacy Endpoints must be ignored.
    s.upsert({ kind: 'Service', obj: svc('testns', 'legacy2', { headless: true }) });
    s.upsert({
      kind: 'Endpoints',
      obj: { namespace: 'testns', name: 'legacy2', serviceName: 'legacy2', addressType: 'IPv4', legacy: true, labels: {}, endpoints: [ep('172.0.4.1')], ports: [] },
    });
    s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'legacy2', 'legacy2-x', [ep('172.0.4.2')], []) });
    // One pod's address behind two services (both select it): one endpoint PTR per service.
    s.upsert({ kind: 'Service', obj: svc('testns', 'shared-a', { clusterIPs: ['10.0.0.21'], ports: [port('http', 80)], selector: { app: 'db' } }) });
    s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'shared-a', 'shared-a-1', [ep('10.0.0.99', { podName: 'db-0' })], [{ name: 'http', port: 80, protocol: 'TCP' }]) });
    s.upsert({ kind: 'Service', obj: svc('testns', 'shared-b', { headless: true, ports: [port('http', 80)], selector: { app: 'db' } }) });
    s.upsert({ kind: 'EndpointSlice', obj: slice('testns', 'shared-b', 'shared-b-1', [ep('10.0.0.99', { hostname: 'db-0', podName: 'db-0' })], [{ name: 'http', port: 80, protocol: 'TCP' }]) });
    const pod: Pod = {
      namespace: 'testns',
      name: 'pod-a',
      ips: ['10.244.0.7'],
      phase: 'Running',
      terminating: false,
      ready: true,
      labels: {},
      containerPorts: [],
    };
    s.upsert({ kind: 'Pod', obj: pod });
  });
  s.flush();
  return s;
}
