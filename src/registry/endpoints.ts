/**
 * The endpoints controller of the embedded registry: EndpointSlices for every Service
 * with a selector, built from the zone's Pods, as Kubernetes' EndpointSlice controller
 * (`pkg/controller/endpointslice`, `staging/.../endpointslice/reconciler.go`,
 * `utils.go` `podToEndpoint`, `pkg/api/v1/pod` `FindPort`) builds them.
 *
 * - Pods: same namespace, every selector label equal. Skipped: no IP, phase Succeeded
 *   or Failed (`ShouldPodBeInEndpoints(pod, includeTerminating=true)`).
 * - One set of slices per address type, for each of the Service's `ipFamilies`; a pod
 *   contributes its IPs of that family (none: no endpoint in that family).
 * - Conditions: `serving` = pod Ready condition; `terminating` = deletionTimestamp set;
 *   `ready` = `publishNotReadyAddresses || (serving && !terminating)`.
 * - Ports: per Service port, `targetPort` as a number, or a name resolved against the
 *   pod's container ports with the same protocol (a pod without it contributes no port
 *   for that Service port, `FindPort` failing upstream). Endpoints are grouped by their
 *   resolved port list: pods resolving a name differently land in different slices.
 * - `hostname` only when `pod.hostname` is set and `pod.subdomain` is the Service name;
 *   `podName` (targetRef) and `nodeName` from the pod.
 * - At most {@link MAX_ENDPOINTS_PER_SLICE} endpoints per slice (the controller's
 *   `--max-endpoints-per-slice` default). A family with no endpoint gets one empty
 *   placeholder slice, as upstream.
 * - Labels: the Service's labels, `kubernetes.io/service-name`,
 *   `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`, and
 *   `service.kubernetes.io/headless` for headless Services.
 * - Deterministic: endpoints sorted by pod name (then address), port groups by their
 *   ports, names `<service>-<ipv4|ipv6>-<n>` numbered in that order.
 *
 * ExternalName Services get none (upstream skips them).
 *
 * @module
 */
import type { Endpoint, EndpointPort, EndpointSlice, IPFamily, Pod, Service, ServicePort } from '../cluster/model.js';
import { ipFamily } from '../net/ip.js';

/** The controller's `--max-endpoints-per-slice` default. */
export const MAX_ENDPOINTS_PER_SLICE = 100;
/** `endpointslice.kubernetes.io/managed-by`. */
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
/** Value of {@link MANAGED_BY_LABEL} on slices the EndpointSlice controller owns. */
export const CONTROLLER_NAME = 'endpointslice-controller.k8s.io';
/** `kubernetes.io/service-name`. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** `service.kubernetes.io/headless`. */
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';

/** Pods by namespace and `label=value`, so selector matching does not scan every pod. */
export class PodIndex {
  readonly #byNs = new Map<string, Map<string, Pod[]>>();
  readonly #all = new Map<string, Pod[]>();

  constructor(pods: Iterable<Pod>) {
    for (const pod of pods) {
      let all = this.#all.get(pod.namespace);
      if (all === undefined) this.#all.set(pod.namespace, (all = []));
      all.push(pod);
      let m = this.#byNs.get(pod.namespace);
      if (m === undefined) this.#byNs.set(pod.namespace, (m = new Map()));
      for (const [k, v] of Object.entries(pod.labels)) {
        const key = `${k}=${v}`;
        let l = m.get(key);
        if (l === undefined) m.set(key, (l = []));
        l.push(pod);
      }
    }
  }

  /** Pods of `namespace` whose labels include every pair of `selector`. */
  matching(namespace: string, selector: Readonly<Record<string, string>>): Pod[] {
    const pairs = Object.entries(selector);
    if (pairs.length === 0) return [];
    const m = this.#byNs.get(namespace);
    if (m === undefined) return [];
    let best: Pod[] | undefined;
    for (const [k, v] of pairs) {
      const l = m.get(`${k}=${v}`);
      if (l === undefined) return [];
      if (best === undefined || l.length < best.length) best = l;
    }
    return (best ?? []).filter((p) => pairs.every(([k, v]) => Object.hasOwn(p.labels, k) && p.labels[k] === v));
  }
}

/** `ShouldPodBeInEndpoints(pod, true)`: has an IP and is not terminal. */
export function podIsCandidate(pod: Pod): boolean {
  return pod.ips.length > 0 && pod.phase !== 'Succeeded' && pod.phase !== 'Failed';
}

/**
 * `FindPort`: the container port a Service port targets on this pod. A number is used
 * as is; a name must match a container port with the same protocol. Undefined: none.
 */
export function findPort(pod: Pod, sp: ServicePort): number | undefined {
  const target = sp.targetPort ?? sp.port;
  if (typeof target === 'number') return target;
  const found = pod.containerPorts.find((c) => c.name === target && c.protocol === sp.protocol);
  return found?.containerPort;
}

/** `ShouldSetHostname`: `pod.hostname` set and `pod.subdomain` equal to the Service name. */
export function shouldSetHostname(pod: Pod, svc: Service): boolean {
  return pod.hostname !== undefined && pod.hostname !== '' && pod.subdomain === svc.name && pod.namespace === svc.namespace;
}

/** `podToEndpoint` for one address type; undefined when the pod has no IP of that family. */
export function podToEndpoint(pod: Pod, svc: Service, family: IPFamily): Endpoint | undefined {
  const addresses = [...new Set(pod.ips.filter((ip) => ipFamily(ip) === family))];
  if (addresses.length === 0) return undefined;
  const serving = pod.ready;
  const terminating = pod.terminating;
  const ready = svc.publishNotReadyAddresses || (serving && !terminating);
  return {
    addresses,
    ...(shouldSetHostname(pod, svc) ? { hostname: pod.hostname as string } : {}),
    conditions: { ready, serving, terminating },
    podName: pod.name,
    ...(pod.nodeName === undefined ? {} : { nodeName: pod.nodeName }),
  };
}

/** `getEndpointPorts`: the Service ports this pod serves, in Service port order. */
export function endpointPorts(svc: Service, pod: Pod): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const sp of svc.ports) {
    const port = findPort(pod, sp);
    if (port === undefined) continue;
    out.push({ name: sp.name, port, protocol: sp.protocol });
  }
  return out;
}

/** The slice labels of a Service. */
export function sliceLabels(svc: Service): Record<string, string> {
  const labels: Record<string, string> = { ...svc.labels };
  labels[SERVICE_NAME_LABEL] = svc.name;
  labels[MANAGED_BY_LABEL] = CONTROLLER_NAME;
  if (svc.headless) labels[HEADLESS_LABEL] = '';
  else delete labels[HEADLESS_LABEL];
  return labels;
}

/** The address types the Service's slices have (`getAddressTypesForService`). */
export function addressTypes(svc: Service): IPFamily[] {
  if (svc.ipFamilies !== undefined && svc.ipFamilies.length > 0) return [...svc.ipFamilies];
  const first = svc.clusterIPs[0];
  if (first !== undefined) return [ipFamily(first) ?? 'IPv4'];
  return ['IPv4', 'IPv6'];
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The slices of one selector Service from the candidate pods (already selector
 * matched, any order). `maxPerSlice` defaults to {@link MAX_ENDPOINTS_PER_SLICE}.
 */
export function buildEndpointSlices(svc: Service, pods: readonly Pod[], maxPerSlice = MAX_ENDPOINTS_PER_SLICE): EndpointSlice[] {
  if (svc.type === 'ExternalName' || svc.selector === undefined) return [];
  const labels = sliceLabels(svc);
  const sortedPods = pods.filter(podIsCandidate).sort((a, b) => cmp(a.name, b.name));
  const out: EndpointSlice[] = [];
  for (const family of addressTypes(svc)) {
    const groups = new Map<string, { ports: EndpointPort[]; endpoints: Endpoint[] }>();
    for (const pod of sortedPods) {
      const ep = podToEndpoint(pod, svc, family);
      if (ep === undefined) continue;
      const ports = endpointPorts(svc, pod);
      const key = JSON.stringify(ports.map((p) => [p.name, p.port, p.protocol]));
      let g = groups.get(key);
      if (g === undefined) groups.set(key, (g = { ports, endpoints: [] }));
      g.endpoints.push(ep);
    }
    const prefix = `${svc.name}-${family.toLowerCase()}`;
    let n = 0;
    if (groups.size === 0) {
      out.push({ namespace: svc.namespace, name: `${prefix}-${n}`, serviceName: svc.name, addressType: family, endpoints: [], ports: [], legacy: false, labels });
      continue;
    }
    for (const key of [...groups.keys()].sort(cmp)) {
      const g = groups.get(key) as { ports: EndpointPort[]; endpoints: Endpoint[] };
      for (let i = 0; i < g.endpoints.length; i += maxPerSlice) {
        out.push({
          namespace: svc.namespace,
          name: `${prefix}-${n++}`,
          serviceName: svc.name,
          addressType: family,
          endpoints: g.endpoints.slice(i, i + maxPerSlice),
          ports: g.ports,
          legacy: false,
          labels,
        });
      }
    }
  }
  return out;
}

/**
 * Whether a slice written in the files is the EndpointSlice controller's, so the
 * controller's own output replaces it: labelled `endpointslice.kubernetes.io/managed-by:
 * endpointslice-controller.k8s.io`. The controller lists and reconciles only the slices
 * of a Service that carry that label (`reconciler.go` selects on
 * `kubernetes.io/service-name` and `managed-by`); a slice without the label, or with
 * another manager's, is custom and left alone, so on a cluster it is served beside the
 * controller's slices, and here too.
 */
export function isControllerSlice(slice: EndpointSlice): boolean {
  return slice.labels[MANAGED_BY_LABEL] === CONTROLLER_NAME;
}
