/**
 * Slim cluster objects: only the fields DNS (and the embedded registry) uses.
 *
 * Every source (zones/ manifests, the Kubernetes API) converts API JSON into these
 * records at the edge and drops the rest, so memory stays proportional to what DNS
 * needs and nothing downstream knows which source fed it.
 *
 * Don't add fields lightly: each one costs memory per object at 150k pods. Objects are
 * plain data (no classes, no getters): the store's no-op check (`deepEqual`, equal.ts)
 * compares own fields, and the worker IPC copies them by structured clone.
 */
import type { IPFamily } from '../net/ip.js';

export type { IPFamily };
export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type IPFamilyPolicy = 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';

export interface ServicePort {
  /** Port name ('' when unnamed: no SRV record, spec §2.3.2). */
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
  /** Number or container-port name; used by the embedded endpoints controller. */
  readonly targetPort?: number | string;
  readonly nodePort?: number;
}

export interface Service {
  readonly namespace: string;
  readonly name: string;
  readonly type: ServiceType;
  /**
   * `spec.clusterIPs` (or `[spec.clusterIP]`), canonical text, primary family first.
   * Empty for headless (`None`) and ExternalName services, and for a service the
   * embedded registry has not given an address yet.
   */
  readonly clusterIPs: readonly string[];
  /** `clusterIP: None`. */
  readonly headless: boolean;
  /** ExternalName target, lowercase, without trailing dot. */
  readonly externalName?: string;
  readonly ports: readonly ServicePort[];
  /** Undefined: no selector (endpoints come from the files / API as written). */
  readonly selector?: Readonly<Record<string, string>>;
  readonly publishNotReadyAddresses: boolean;
  readonly labels: Readonly<Record<string, string>>;
  /** Fields the embedded registry needs to allocate addresses (ignored by DNS). */
  readonly ipFamilies?: readonly IPFamily[];
  readonly ipFamilyPolicy?: IPFamilyPolicy;
  /** True when the manifest asked for clusterIP(s) explicitly (embedded registry). */
  readonly clusterIPsRequested?: boolean;
  // Fields only the service proxy reads (src/proxy/), absent when at their defaults so
  // a typical service costs nothing more.
  /** `sessionAffinity: ClientIP`: its `timeoutSeconds` (default 10800). Absent: None. */
  readonly affinitySeconds?: number;
  /** `internalTrafficPolicy: Local` (absent: Cluster). */
  readonly internalTrafficPolicyLocal?: true;
  /** `externalTrafficPolicy: Local` (absent: Cluster). */
  readonly externalTrafficPolicyLocal?: true;
  /** `spec.externalIPs`, canonical text. */
  readonly externalIPs?: readonly string[];
}

export interface EndpointConditions {
  /** nil counts as ready (discovery/v1 semantics; CoreDNS object/endpoint.go). */
  readonly ready: boolean;
  readonly serving: boolean;
  readonly terminating: boolean;
}

export interface Endpoint {
  /** Canonical text addresses (the controller writes one; consumers read them all). */
  readonly addresses: readonly string[];
  readonly hostname?: string;
  readonly conditions: EndpointConditions;
  /** `targetRef.name` when the target is a Pod (endpointPodNames). */
  readonly podName?: string;
  readonly nodeName?: string;
  /** Topology zone (discovery/v1 `endpoints[].zone`): only the `zonal` names read it. */
  readonly zone?: string;
}

/**
 * A slice's endpoints kept as columns instead of an object per endpoint: the form the
 * Kubernetes API source stores (see `src/cluster/packed.ts`). An endpoint object, its
 * address array and its conditions cost about 100 bytes more per endpoint than one slot
 * in `ips`, which at 150k endpoints is most of the store. Plain data (arrays, strings,
 * numbers), so the store's deep equality and the worker IPC (structured clone) carry it
 * unchanged. Only slices whose every endpoint has exactly one address are packed (the
 * API's own rule for EndpointSlices; clients may use just the first).
 */
export interface PackedEndpoints {
  /** The address of each endpoint (canonical text). */
  readonly ips: readonly string[];
  /**
   * Condition bits of each endpoint (ready 1, serving 2, terminating 4): one number when
   * every endpoint has the same, else a string of one digit per endpoint.
   */
  readonly conditions: number | string;
  /** Hostname of each endpoint; absent when no endpoint has one. */
  readonly hostnames?: readonly (string | undefined)[];
  /** Pod name of each endpoint (endpointPodNames); absent when none is kept. */
  readonly podNames?: readonly (string | undefined)[];
  /** Node name of each endpoint (kept only when the service proxy runs); absent otherwise. */
  readonly nodeNames?: readonly (string | undefined)[];
  /**
   * Topology zone of each endpoint (discovery/v1 `endpoints[].zone`), kept only with
   * `zonal` (its `<zone>.pin|prefer._zone.<svc>` names read them); absent otherwise and
   * when no endpoint has one. `zoneNames` holds the slice's distinct zones (shared
   * strings: a cluster has a handful); `zones` is 1 + the index into it, one number
   * when every endpoint has the same zone, else one character code per endpoint (0: no
   * zone): a byte an endpoint instead of an 8-byte array slot.
   */
  readonly zoneNames?: readonly string[];
  readonly zones?: number | string;
}

/** A slice's endpoints: one object each (files, registry) or packed (the API source). */
export type Endpoints = readonly Endpoint[] | PackedEndpoints;

export interface EndpointPort {
  /** '' when unnamed. */
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
}

/**
 * An EndpointSlice, or a legacy v1 Endpoints object converted to the same shape
 * (`legacy: true`; one slice per object, subsets flattened, notReadyAddresses kept
 * with ready=false). Legacy endpoints are only used for a service that has no slices.
 */
export interface EndpointSlice {
  readonly namespace: string;
  readonly name: string;
  /**
   * From the `kubernetes.io/service-name` label (legacy: the object name); for a
   * multicluster slice, from `multicluster.kubernetes.io/service-name`: the ServiceImport.
   */
  readonly serviceName: string;
  readonly addressType: IPFamily | 'FQDN';
  readonly endpoints: Endpoints;
  readonly ports: readonly EndpointPort[];
  readonly legacy: boolean;
  readonly labels: Readonly<Record<string, string>>;
  /**
   * Set only on a multicluster slice (labelled `multicluster.kubernetes.io/service-name`):
   * its `multicluster.kubernetes.io/source-cluster` label, lowercased, the `<clusterid>`
   * label of its endpoint names. Such a slice belongs to the ServiceImport `serviceName`,
   * never to a Service of that name (the store indexes it for imports only).
   */
  readonly sourceCluster?: string;
}

export interface ContainerPort {
  readonly name: string;
  readonly containerPort: number;
  readonly protocol: Protocol;
}

export interface Pod {
  readonly namespace: string;
  readonly name: string;
  /** `status.podIPs` (or `status.podIP`), canonical text. */
  readonly ips: readonly string[];
  readonly phase: string;
  /** `metadata.deletionTimestamp` is set. */
  readonly terminating: boolean;
  /** Ready condition is True. */
  readonly ready: boolean;
  readonly hostname?: string;
  readonly subdomain?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly containerPorts: readonly ContainerPort[];
  readonly nodeName?: string;
}

export interface Namespace {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** MCS-API `spec.type` of a ServiceImport (sigs.k8s.io/mcs-api v1alpha1). */
export type ServiceImportType = 'ClusterSetIP' | 'Headless';

/**
 * A `multicluster.x-k8s.io/v1alpha1` ServiceImport: a service exported by one or more
 * clusters of the clusterset, served in the `multicluster` zones (CoreDNS
 * object/serviceimport.go keeps the same fields). Its endpoints are the slices labelled
 * `multicluster.kubernetes.io/service-name` (EndpointSlice `sourceCluster`).
 */
export interface ServiceImport {
  readonly namespace: string;
  readonly name: string;
  readonly type: ServiceImportType;
  /** `spec.ips`, canonical text, at most one per family (ClusterSetIP); empty for Headless. */
  readonly ips: readonly string[];
  /** `spec.ports` (name '' when unnamed, protocol TCP by default). */
  readonly ports: readonly EndpointPort[];
}

export type Kind = 'Namespace' | 'Service' | 'EndpointSlice' | 'Endpoints' | 'Pod' | 'ServiceImport';

/** Any slim object, tagged with its kind. */
export type ClusterObject =
  | { readonly kind: 'Namespace'; readonly obj: Namespace }
  | { readonly kind: 'Service'; readonly obj: Service }
  | { readonly kind: 'EndpointSlice'; readonly obj: EndpointSlice }
  | { readonly kind: 'Endpoints'; readonly obj: EndpointSlice }
  | { readonly kind: 'Pod'; readonly obj: Pod }
  | { readonly kind: 'ServiceImport'; readonly obj: ServiceImport };

/** `namespace/name`, or `name` for cluster-scoped objects. */
export function objectKey(o: { readonly namespace?: string; readonly name: string }): string {
  return o.namespace === undefined ? o.name : `${o.namespace}/${o.name}`;
}
