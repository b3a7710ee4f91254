/**
 * The collections the API source lists and watches, and how.
 *
 * Everything is watched cluster-wide (one watch per kind, as CoreDNS does). `labels`
 * applies to Services, EndpointSlices (the EndpointSlice controller copies Service labels
 * onto slices), legacy Endpoints (the Endpoints controller does the same) and Pods, as
 * CoreDNS's `labels` option; `namespaceLabels` to Namespaces. Pods are listed without
 * the phases that can no longer serve (CoreDNS's field selector). ServiceImports (a CRD,
 * watched only with `multicluster`) take no selector: an MCS controller creates them, so
 * they carry none of the exported Service's labels (CoreDNS puts its namespace selector
 * on them; here `namespaceLabels` gates them by namespace like every namespaced kind).
 */
import type { Kind } from '../model.js';

export interface ResourceSpec {
  /** Store kind. */
  readonly kind: Kind;
  /** Resource name, as in logs and `status()` (`services`, `endpointslices`…). */
  readonly resource: string;
  /** Collection path for list and watch. */
  readonly path: string;
  readonly labelSelector?: string | undefined;
  readonly fieldSelector?: string | undefined;
  /**
   * Objects that can weigh tens of KiB each (a 100-endpoint slice is ~25 KiB of JSON):
   * their lists start with smaller pages, so a page never costs more than a few MiB.
   */
  readonly bulky: boolean;
}

export interface ResourceOptions {
  readonly labels?: string | undefined;
  readonly namespaceLabels?: string | undefined;
}

const nonEmpty = (s: string | undefined): string | undefined => (s === undefined || s.trim() === '' ? undefined : s);

/** Pods that can still back a name (CoreDNS watches pods with this field selector). */
export const POD_FIELD_SELECTOR = 'status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown';

export function namespacesSpec(o: ResourceOptions): ResourceSpec {
  return { kind: 'Namespace', resource: 'namespaces', path: '/api/v1/namespaces', labelSelector: nonEmpty(o.namespaceLabels), bulky: false };
}

export function servicesSpec(o: ResourceOptions): ResourceSpec {
  return { kind: 'Service', resource: 'services', path: '/api/v1/services', labelSelector: nonEmpty(o.labels), bulky: false };
}

export function endpointSlicesSpec(o: ResourceOptions): ResourceSpec {
  return {
    kind: 'EndpointSlice',
    resource: 'endpointslices',
    path: '/apis/discovery.k8s.io/v1/endpointslices',
    labelSelector: nonEmpty(o.labels),
    bulky: true,
  };
}

export function legacyEndpointsSpec(o: ResourceOptions): ResourceSpec {
  return { kind: 'Endpoints', resource: 'endpoints', path: '/api/v1/endpoints', labelSelector: nonEmpty(o.labels), bulky: true };
}

export function podsSpec(o: ResourceOptions): ResourceSpec {
  return {
    kind: 'Pod',
    resource: 'pods',
    path: '/api/v1/pods',
    labelSelector: nonEmpty(o.labels),
    fieldSelector: POD_FIELD_SELECTOR,
    bulky: true,
  };
}

export function serviceImportsSpec(_o: ResourceOptions): ResourceSpec {
  return { kind: 'ServiceImport', resource: 'serviceimports', path: `${MCS_V1ALPHA1_PATH}/serviceimports`, bulky: false };
}

/** The discovery document that says whether EndpointSlices are served. */
export const DISCOVERY_V1_PATH = '/apis/discovery.k8s.io/v1';
/** The discovery document of the MCS-API CRDs: 404 (or no `serviceimports`) until installed. */
export const MCS_V1ALPHA1_PATH = '/apis/multicluster.x-k8s.io/v1alpha1';
