/**
 * Converters from Kubernetes API JSON to the slim model (`model.ts`).
 *
 * Input is untrusted `unknown`: objects from the API server, or YAML/JSON manifests from
 * `zones/`. Every converter validates what DNS relies on (names, ports, IPs), keeps only the
 * model's fields (managedFields, annotations, status noise are dropped) and returns
 * `{ ok: true, value }` or `{ ok: false, error }`, where `error` starts with the field path:
 * `spec.ports[1].port: must be 1-65535, got 70000`. Nothing here throws.
 *
 * Output is plain data: IPs in canonical text (IPv4 dotted quad, IPv6 per RFC 5952), no
 * `undefined`-valued keys, so the store's structural comparison sees only real changes.
 *
 * Validation follows the API server's rules for the fields we keep (Service names and
 * namespaces DNS-1123 labels, other object names DNS-1123 subdomains, port
 * names DNS-1123 labels, container port names IANA service names), so anything the API
 * server accepts converts, and a manifest the API server would refuse is refused here with
 * the same reason. A missing `metadata.namespace` means `default`, as with kubectl.
 */
import { canonicalIP, ipFamily } from '../net/ip.js';
import type {
  ClusterObject,
  ContainerPort,
  Endpoint,
  EndpointPort,
  EndpointSlice,
  IPFamily,
  IPFamilyPolicy,
  Kind,
  Namespace,
  Pod,
  Protocol,
  Service,
  ServiceImport,
  ServiceImportType,
  ServicePort,
  ServiceType,
} from './model.js';

/** Outcome of one conversion. `error` names the field path, then the reason. */
export type ConvertResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/**
 * Outcome of {@link toClusterObject}. `unsupported` marks a kind clusterdns does not read
 * (a Deployment, a ConfigMap…), as opposed to a supported object that is invalid.
 */
export type ClusterObjectResult =
  | { readonly ok: true; readonly value: ClusterObject }
  | { readonly ok: false; readonly error: string; readonly unsupported?: true };

/** The annotation that predates `spec.publishNotReadyAddresses` (spec §2.1 "ready"). */
export const TOLERATE_UNREADY_ANNOTATION = 'service.alpha.kubernetes.io/tolerate-unready-endpoints';
/** The EndpointSlice label that names the owning Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** MCS-API (KEP-1645): the EndpointSlice label that names the owning ServiceImport. */
export const MC_SERVICE_NAME_LABEL = 'multicluster.kubernetes.io/service-name';
/** MCS-API: the EndpointSlice label naming the cluster its endpoints are in (`<clusterid>`). */
export const MC_SOURCE_CLUSTER_LABEL = 'multicluster.kubernetes.io/source-cluster';

/** apiVersion of each kind this module reads. */
export const API_VERSIONS: Readonly<Record<Kind, string>> = {
  Namespace: 'v1',
  Service: 'v1',
  Endpoints: 'v1',
  Pod: 'v1',
  EndpointSlice: 'discovery.k8s.io/v1',
  ServiceImport: 'multicluster.x-k8s.io/v1alpha1',
};

// ---------------------------------------------------------------------------------------
// Field access and validation helpers. They throw FieldError, which the exported
// converters turn into `{ ok: false }`.

type Obj = Record<string, unknown>;

class FieldError extends Error {}

function fail(path: string, reason: string): never {
  throw new FieldError(path === '' ? reason : `${path}: ${reason}`);
}

/** Render a bad value for an error message, short and unambiguous. */
function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(v);
    case 'object':
      return 'an object';
    default:
      return typeof v;
  }
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Own property only: never `toString` & co. from the prototype. */
function get(o: Obj, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

/** Required object. */
function obj(v: unknown, path: string): Obj {
  if (!isObj(v)) fail(path, v === undefined ? 'required' : `must be an object, got ${show(v)}`);
  return v;
}

/** Optional object: undefined and null (YAML `spec:` with nothing under it) are absent. */
function optObj(v: unknown, path: string): Obj | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) fail(path, `must be an object, got ${show(v)}`);
  return v;
}

/** Optional array; absent is empty. */
function list(v: unknown, path: string): readonly unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(path, `must be an array, got ${show(v)}`);
  return v;
}

/** Optional string; absent, null and '' are undefined. */
function optStr(v: unknown, path: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') fail(path, `must be a string, got ${show(v)}`);
  return v;
}

function optBool(v: unknown, path: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') fail(path, `must be true or false, got ${show(v)}`);
  return v;
}

function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[], dflt?: T): T {
  if ((v === undefined || v === null || v === '') && dflt !== undefined) return dflt;
  if (v === undefined || v === null) fail(path, 'required');
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    fail(path, `must be one of ${allowed.join(', ')}, got ${show(v)}`);
  }
  return v as T;
}

function portNumber(v: unknown, path: string): number {
  if (v === undefined || v === null) fail(path, 'required');
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(path, `must be an integer, got ${show(v)}`);
  if (v < 1 || v > 65535) fail(path, `must be 1-65535, got ${v}`);
  return v;
}

const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];

function protocol(v: unknown, path: string): Protocol {
  return oneOf(v, path, PROTOCOLS, 'TCP');
}

/** A string→string map (labels, selector); absent is `{}`. */
function stringMap(v: unknown, path: string): Record<string, string> {
  const o = optObj(v, path);
  if (o === undefined) return {};
  const entries: [string, string][] = [];
  for (const [k, val] of Object.entries(o)) {
    if (typeof val !== 'string') fail(`${path}[${JSON.stringify(k)}]`, `must be a string, got ${show(val)}`);
    entries.push([k, val]);
  }
  // fromEntries defines own properties, so a "__proto__" key stays a plain key.
  return Object.fromEntries(entries);
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isDNS1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

export function isDNS1123Subdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

/** IANA_SVC_NAME: what a container port name (and a named targetPort) must be. */
export function isIANAServiceName(s: string): boolean {
  return s.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s) && /[a-z]/.test(s) && !s.includes('--');
}

const LABEL_RULE = 'a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit)';
const SUBDOMAIN_RULE = 'a DNS-1123 subdomain (at most 253 characters, lowercase DNS-1123 labels separated by ".")';
const IANA_RULE = 'an IANA service name (at most 15 lowercase letters, digits or "-", with at least one letter and no leading, trailing or double "-")';

function checked(v: unknown, path: string, test: (s: string) => boolean, rule: string, required: boolean): string | undefined {
  if (v === undefined || v === null || v === '') {
    if (required) fail(path, 'required');
    return undefined;
  }
  if (typeof v !== 'string' || !test(v)) fail(path, `must be ${rule}, got ${show(v)}`);
  return v;
}

const label = (v: unknown, path: string): string | undefined => checked(v, path, isDNS1123Label, LABEL_RULE, false);

// ---------------------------------------------------------------------------------------
// IP addresses.

// Canonical text and family: src/net/ip.ts (canonicalIP, ipFamily).

function ip(v: unknown, path: string, family?: IPFamily): string {
  if (v === undefined || v === null || v === '') fail(path, 'required');
  if (typeof v !== 'string') fail(path, `must be an IP address, got ${show(v)}`);
  const c = canonicalIP(v);
  if (c === undefined) fail(path, `must be a valid IP address, got ${show(v)}`);
  if (family !== undefined && ipFamily(c) !== family) fail(path, `must be an ${family} address, got ${show(v)}`);
  return c;
}

// ---------------------------------------------------------------------------------------
// Metadata.

interface Meta {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
}

function root(json: unknown): Obj {
  if (!isObj(json)) fail('', `expected a Kubernetes object (a mapping), got ${show(json)}`);
  return json;
}

function meta(o: Obj, nameTest: (s: string) => boolean, nameRule: string, namespaced: boolean): Meta {
  const m = obj(get(o, 'metadata'), 'metadata');
  const name = checked(get(m, 'name'), 'metadata.name', nameTest, nameRule, true) as string;
  const namespace = namespaced
    ? (checked(get(m, 'namespace'), 'metadata.namespace', isDNS1123Label, LABEL_RULE, false) ?? 'default')
    : '';
  return {
    name,
    namespace,
    labels: stringMap(get(m, 'labels'), 'metadata.labels'),
    annotations: stringMap(get(m, 'annotations'), 'metadata.annotations'),
  };
}

/** Run a converter body, turning validation failures into `{ ok: false }`. */
function run<T>(fn: () => T): ConvertResult<T> {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    if (err instanceof FieldError) return { ok: false, error: err.message };
    // A bug here must not take the source down with it; report it like a bad object.
    return { ok: false, error: `internal error while converting: ${String(err)}` };
  }
}

// ---------------------------------------------------------------------------------------
// Converters.

/** v1 Namespace: name (DNS-1123 label) and labels. */
export function toNamespace(json: unknown): ConvertResult<Namespace> {
  return run(() => {
    const m = meta(root(json), isDNS1123Label, LABEL_RULE, false);
    return { name: m.name, labels: m.labels };
  });
}

const SERVICE_TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const IP_FAMILIES: readonly IPFamily[] = ['IPv4', 'IPv6'];
const IP_FAMILY_POLICIES: readonly IPFamilyPolicy[] = ['SingleStack', 'PreferDualStack', 'RequireDualStack'];

/**
 * v1 Service.
 *
 * - `type` defaults to ClusterIP. `clusterIP: None` (or `clusterIPs: [None]`) is headless.
 * - `clusterIPs` comes from `spec.clusterIPs`, else `[spec.clusterIP]`; both set must agree
 *   on the first entry. At most two, of different families. Empty for headless and
 *   ExternalName services and when unset (the embedded registry allocates later);
 *   `clusterIPsRequested` says whether the manifest asked for specific IPs.
 * - `externalName` (ExternalName only, required there) is lowercased without trailing dot.
 * - Port `name` is '' when absent, `protocol` TCP, `targetPort` the port; `nodePort` kept
 *   when set.
 * - `selector` is undefined when absent or empty (endpoints are then written by hand).
 * - `publishNotReadyAddresses` is also set by the legacy annotation
 *   `service.alpha.kubernetes.io/tolerate-unready-endpoints: "true"`.
 */
export function toService(json: unknown): ConvertResult<Service> {
  return run(() => {
    const o = root(json);
    // KEP-5311 (RelaxedServiceNameValidation, GA in Kubernetes 1.37): a Service name is a
    // DNS-1123 label, so it may start with a digit (`1web`); it used to be a DNS-1035
    // label. `1web.<ns>.svc.<zone>` is an ordinary DNS name (RFC 1123 §2.1 allows a
    // leading digit), and a current apiserver stores such Services: refusing them would
    // leave a cluster's Service without its name.
    const m = meta(o, isDNS1123Label, LABEL_RULE, true);
    const spec = optObj(get(o, 'spec'), 'spec') ?? {};
    const type = oneOf(get(spec, 'type'), 'spec.type', SERVICE_TYPES, 'ClusterIP');

    // Cluster IPs.
    const single = optStr(get(spec, 'clusterIP'), 'spec.clusterIP');
    const many = list(get(spec, 'clusterIPs'), 'spec.clusterIPs').map((v, i) => {
      const s = optStr(v, `spec.clusterIPs[${i}]`);
      if (s === undefined) fail(`spec.clusterIPs[${i}]`, 'must not be empty');
      return s;
    });
    if (single !== undefined && many.length > 0 && many[0] !== single) {
      fail('spec.clusterIPs[0]', `must equal spec.clusterIP (${show(single)}), got ${show(many[0])}`);
    }
    const rawIPs = many.length > 0 ? many : single !== undefined ? [single] : [];
    const ipPath = (i: number): string => (many.length > 0 ? `spec.clusterIPs[${i}]` : 'spec.clusterIP');
    const external = type === 'ExternalName';
    const headless = !external && rawIPs[0] === 'None';
    let clusterIPs: string[] = [];
    if (headless) {
      if (rawIPs.length > 1) fail('spec.clusterIPs', `must be ["None"] for a headless service, got ${rawIPs.length} entries`);
    } else if (!external) {
      if (rawIPs.length > 2) fail('spec.clusterIPs', `must have at most 2 entries, got ${rawIPs.length}`);
      clusterIPs = rawIPs.map((s, i) => ip(s, ipPath(i)));
      const [a, b] = clusterIPs;
      if (a !== undefined && b !== undefined && ipFamily(a) === ipFamily(b)) {
        fail('spec.clusterIPs', `must be one IPv4 and one IPv6 address, got ${show(a)} and ${show(b)}`);
      }
    }

    let externalName: string | undefined;
    if (external) {
      const raw = optStr(get(spec, 'externalName'), 'spec.externalName');
      if (raw === undefined) fail('spec.externalName', 'required for type ExternalName');
      const name = raw.toLowerCase().replace(/\.$/, '');
      if (!isDNS1123Subdomain(name)) fail('spec.externalName', `must be ${SUBDOMAIN_RULE}, got ${show(raw)}`);
      externalName = name;
    }

    const ports = list(get(spec, 'ports'), 'spec.ports').map((v, i): ServicePort => {
      const path = `spec.ports[${i}]`;
      const p = obj(v, path);
      const port = portNumber(get(p, 'port'), `${path}.port`);
      const tp = get(p, 'targetPort');
      let targetPort: number | string = port;
      if (typeof tp === 'string' && tp !== '') {
        if (!isIANAServiceName(tp)) fail(`${path}.targetPort`, `must be a port number or ${IANA_RULE}, got ${show(tp)}`);
        targetPort = tp;
      } else if (tp !== undefined && tp !== null && tp !== '' && tp !== 0) {
        targetPort = portNumber(tp, `${path}.targetPort`);
      }
      const np = get(p, 'nodePort');
      const nodePort = np === undefined || np === null || np === 0 ? undefined : portNumber(np, `${path}.nodePort`);
      return {
        name: label(get(p, 'name'), `${path}.name`) ?? '',
        port,
        protocol: protocol(get(p, 'protocol'), `${path}.protocol`),
        targetPort,
        ...(nodePort === undefined ? {} : { nodePort }),
      };
    });

    const selectorMap = stringMap(get(spec, 'selector'), 'spec.selector');
    const selector = Object.keys(selectorMap).length > 0 ? selectorMap : undefined;
    const publishNotReadyAddresses =
      optBool(get(spec, 'publishNotReadyAddresses'), 'spec.publishNotReadyAddresses') === true ||
      m.annotations[TOLERATE_UNREADY_ANNOTATION] === 'true';

    const families = list(get(spec, 'ipFamilies'), 'spec.ipFamilies').map((v, i) =>
      oneOf(v, `spec.ipFamilies[${i}]`, IP_FAMILIES),
    );
    if (families.length > 2) fail('spec.ipFamilies', `must have at most 2 entries, got ${families.length}`);
    if (families.length === 2 && families[0] === families[1]) fail('spec.ipFamilies[1]', `must differ from spec.ipFamilies[0], got ${show(families[1])}`);
    const policyRaw = get(spec, 'ipFamilyPolicy');
    const ipFamilyPolicy =
      policyRaw === undefined || policyRaw === null || policyRaw === ''
        ? undefined
        : oneOf(policyRaw, 'spec.ipFamilyPolicy', IP_FAMILY_POLICIES);

    // Proxy fields (kube-proxy's serviceport.go reads them; DNS does not).
    const affinity = oneOf(get(spec, 'sessionAffinity'), 'spec.sessionAffinity', SESSION_AFFINITIES, 'None');
    let affinitySeconds: number | undefined;
    if (affinity === 'ClientIP') {
      const cfg = optObj(get(spec, 'sessionAffinityConfig'), 'spec.sessionAffinityConfig');
      const cip = cfg === undefined ? undefined : optObj(get(cfg, 'clientIP'), 'spec.sessionAffinityConfig.clientIP');
      const raw = cip === undefined ? undefined : get(cip, 'timeoutSeconds');
      if (raw === undefined || raw === null) affinitySeconds = DEFAULT_AFFINITY_SECONDS;
      else if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1 || raw > 86400) {
        fail('spec.sessionAffinityConfig.clientIP.timeoutSeconds', `must be a whole number of seconds from 1 to 86400, got ${show(raw)}`);
      } else affinitySeconds = raw;
    }
    const itp = oneOf(get(spec, 'internalTrafficPolicy'), 'spec.internalTrafficPolicy', TRAFFIC_POLICIES, 'Cluster');
    const etp = oneOf(get(spec, 'externalTrafficPolicy'), 'spec.externalTrafficPolicy', TRAFFIC_POLICIES, 'Cluster');
    const externalIPs = list(get(spec, 'externalIPs'), 'spec.externalIPs').map((v, i) => ip(v, `spec.externalIPs[${i}]`));

    return {
      namespace: m.namespace,
      name: m.name,
      type,
      clusterIPs,
      headless,
      ...(externalName === undefined ? {} : { externalName }),
      ports,
      ...(selector === undefined ? {} : { selector }),
      publishNotReadyAddresses,
      labels: m.labels,
      ...(families.length === 0 ? {} : { ipFamilies: families }),
      ...(ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy }),
      clusterIPsRequested: !headless && !external && clusterIPs.length > 0,
      ...(affinitySeconds === undefined ? {} : { affinitySeconds }),
      ...(itp === 'Local' ? { internalTrafficPolicyLocal: true as const } : {}),
      ...(etp === 'Local' ? { externalTrafficPolicyLocal: true as const } : {}),
      ...(externalIPs.length === 0 ? {} : { externalIPs }),
    };
  });
}

const SESSION_AFFINITIES = ['None', 'ClientIP'] as const;
const TRAFFIC_POLICIES = ['Cluster', 'Local'] as const;
/** core/v1 DefaultClientIPServiceAffinitySeconds (3 hours). */
export const DEFAULT_AFFINITY_SECONDS = 10800;

const ADDRESS_TYPES: readonly EndpointSlice['addressType'][] = ['IPv4', 'IPv6', 'FQDN'];

/** `targetRef.name` when the target is a Pod. */
function podNameOf(v: unknown, path: string): string | undefined {
  const ref = optObj(v, path);
  if (ref === undefined || get(ref, 'kind') !== 'Pod') return undefined;
  return optStr(get(ref, 'name'), `${path}.name`);
}

/**
 * discovery.k8s.io/v1 EndpointSlice.
 *
 * - `serviceName` from the `kubernetes.io/service-name` label (required), or, for a
 *   multicluster slice, from `multicluster.kubernetes.io/service-name` (the ServiceImport's
 *   name), with `sourceCluster` from the required `multicluster.kubernetes.io/source-cluster`.
 * - Addresses must match `addressType` (FQDN addresses are lowercased; DNS skips them).
 * - Conditions: `ready` nil → true; `serving` nil → ready's value; `terminating` nil → false.
 * - `podName` from `targetRef` when `targetRef.kind` is Pod.
 * - Ports: name '' when absent, protocol TCP by default; a port without a number ("all
 *   ports" in the API) is skipped, since it can make no SRV record. No ports is fine.
 */
export function toEndpointSlice(json: unknown): ConvertResult<EndpointSlice> {
  return run(() => {
    const o = root(json);
    const m = meta(o, isDNS1123Subdomain, SUBDOMAIN_RULE, true);
    // The multicluster label wins: a slice an MCS controller imported belongs to the
    // ServiceImport, even if it also carries the ordinary label (CoreDNS indexes such a
    // slice under both; its endpoints would then join the local Service's).
    const importName = m.labels[MC_SERVICE_NAME_LABEL];
    const multicluster = importName !== undefined && importName !== '';
    const serviceName = multicluster ? importName : m.labels[SERVICE_NAME_LABEL];
    if (serviceName === undefined || serviceName === '') {
      fail(`metadata.labels[${JSON.stringify(SERVICE_NAME_LABEL)}]`, 'required (names the Service this slice belongs to)');
    }
    let sourceCluster: string | undefined;
    if (multicluster) {
      // It becomes the `<clusterid>` label of endpoint names: one DNS label, compared
      // case-insensitively like every name.
      const path = `metadata.labels[${JSON.stringify(MC_SOURCE_CLUSTER_LABEL)}]`;
      const raw = m.labels[MC_SOURCE_CLUSTER_LABEL];
      if (raw === undefined || raw === '') fail(path, `required on a multicluster slice (labelled ${MC_SERVICE_NAME_LABEL}): it names the cluster in its endpoint names`);
      sourceCluster = raw.toLowerCase();
      if (!isDNS1123Label(sourceCluster)) fail(path, `must be ${LABEL_RULE} (it is the <clusterid> label of endpoint names), got ${show(raw)}`);
    }
    const addressType = oneOf(get(o, 'addressType'), 'addressType', ADDRESS_TYPES);
    const endpoints = list(get(o, 'endpoints'), 'endpoints').map((v, i): Endpoint => {
      const path = `endpoints[${i}]`;
      const e = obj(v, path);
      const raw = list(get(e, 'addresses'), `${path}.addresses`);
      if (raw.length === 0) fail(`${path}.addresses`, 'must have at least 1 address');
      const addresses = raw.map((a, j) => {
        const ap = `${path}.addresses[${j}]`;
        if (addressType !== 'FQDN') return ip(a, ap, addressType);
        const s = optStr(a, ap);
        const fqdn = s?.toLowerCase().replace(/\.$/, '');
        if (fqdn === undefined || !isDNS1123Subdomain(fqdn)) fail(ap, `must be ${SUBDOMAIN_RULE}, got ${show(a)}`);
        return fqdn;
      });
      const c = optObj(get(e, 'conditions'), `${path}.conditions`) ?? {};
      const ready = optBool(get(c, 'ready'), `${path}.conditions.ready`) ?? true;
      const serving = optBool(get(c, 'serving'), `${path}.conditions.serving`) ?? ready;
      const terminating = optBool(get(c, 'terminating'), `${path}.conditions.terminating`) ?? false;
      const hostname = label(get(e, 'hostname'), `${path}.hostname`);
      const podName = podNameOf(get(e, 'targetRef'), `${path}.targetRef`);
      const nodeName = optStr(get(e, 'nodeName'), `${path}.nodeName`);
      const zone = optStr(get(e, 'zone'), `${path}.zone`);
      return {
        addresses,
        ...(hostname === undefined ? {} : { hostname }),
        conditions: { ready, serving, terminating },
        ...(podName === undefined ? {} : { podName }),
        ...(nodeName === undefined ? {} : { nodeName }),
        ...(zone === undefined ? {} : { zone }),
      };
    });
    const ports: EndpointPort[] = [];
    list(get(o, 'ports'), 'ports').forEach((v, i) => {
      const path = `ports[${i}]`;
      const p = obj(v, path);
      const raw = get(p, 'port');
      if (raw === undefined || raw === null) return;
      ports.push({
        name: label(get(p, 'name'), `${path}.name`) ?? '',
        port: portNumber(raw, `${path}.port`),
        protocol: protocol(get(p, 'protocol'), `${path}.protocol`),
      });
    });
    return {
      namespace: m.namespace,
      name: m.name,
      serviceName,
      addressType,
      endpoints,
      ports,
      legacy: false,
      labels: m.labels,
      ...(sourceCluster === undefined ? {} : { sourceCluster }),
    };
  });
}

const IMPORT_TYPES: readonly ServiceImportType[] = ['ClusterSetIP', 'Headless'];

/**
 * multicluster.x-k8s.io/v1alpha1 ServiceImport (MCS-API, KEP-1645).
 *
 * - The name is a DNS-1123 label, as the exported Service's (it is one label of the name;
 *   KEP-5311 made Service names DNS-1123 labels, see toService): an import of `1web` is
 *   `1web.<ns>.svc.<multicluster zone>`, as the Service is in the cluster zone.
 * - `spec.type` is required: ClusterSetIP or Headless (the CRD's enum).
 * - `spec.ips`: the clusterset IPs of a ClusterSetIP import, at most one per family,
 *   canonical text. A Headless import has no address of its own: its `ips` are ignored
 *   (as CoreDNS does), not an error, so a stray field never hides the import's endpoints.
 * - Ports as a Service's: name '' when absent, protocol TCP by default, `appProtocol`
 *   dropped.
 */
export function toServiceImport(json: unknown): ConvertResult<ServiceImport> {
  return run(() => {
    const o = root(json);
    const m = meta(o, isDNS1123Label, `${LABEL_RULE} (a ServiceImport is named after the exported Service)`, true);
    const spec = optObj(get(o, 'spec'), 'spec') ?? {};
    const type = oneOf(get(spec, 'type'), 'spec.type', IMPORT_TYPES);
    const rawIPs = list(get(spec, 'ips'), 'spec.ips');
    let ips: string[] = [];
    if (type === 'ClusterSetIP') {
      if (rawIPs.length > 2) fail('spec.ips', `must have at most 2 entries (one per family), got ${rawIPs.length}`);
      ips = rawIPs.map((v, i) => ip(v, `spec.ips[${i}]`));
      const [a, b] = ips;
      if (a !== undefined && b !== undefined && ipFamily(a) === ipFamily(b)) {
        fail('spec.ips', `must be one IPv4 and one IPv6 address, got ${show(a)} and ${show(b)}`);
      }
    }
    const ports = list(get(spec, 'ports'), 'spec.ports').map((v, i): EndpointPort => {
      const path = `spec.ports[${i}]`;
      const p = obj(v, path);
      return {
        name: label(get(p, 'name'), `${path}.name`) ?? '',
        port: portNumber(get(p, 'port'), `${path}.port`),
        protocol: protocol(get(p, 'protocol'), `${path}.protocol`),
      };
    });
    return { namespace: m.namespace, name: m.name, type, ips, ports };
  });
}

/**
 * v1 Endpoints (legacy), converted to one slice with `legacy: true`.
 *
 * `serviceName` is the object name. Subsets are flattened: every `addresses[]` entry
 * becomes a ready endpoint, every `notReadyAddresses[]` entry a not-ready one
 * (`serving` = ready, `terminating` false), in subset order. Ports are the union of all
 * subsets' ports (first occurrence order, duplicates dropped): the per-subset pairing of
 * addresses and ports is lost, which only matters for a service whose pods resolve a
 * named targetPort to different numbers.
 *
 * Addresses of both families stay in the one slice (the store keeps one legacy object
 * per service); `addressType` is the family of the first address (IPv4 when there is
 * none). Consumers must therefore pick A vs AAAA by each address's own family, not by
 * `addressType`, for legacy slices.
 */
export function toEndpoints(json: unknown): ConvertResult<EndpointSlice> {
  return run(() => {
    const o = root(json);
    const m = meta(o, isDNS1123Subdomain, SUBDOMAIN_RULE, true);
    const endpoints: Endpoint[] = [];
    const ports: EndpointPort[] = [];
    const seenPorts = new Set<string>();
    list(get(o, 'subsets'), 'subsets').forEach((sv, i) => {
      const sp = `subsets[${i}]`;
      const s = obj(sv, sp);
      for (const [field, ready] of [['addresses', true], ['notReadyAddresses', false]] as const) {
        list(get(s, field), `${sp}.${field}`).forEach((av, j) => {
          const path = `${sp}.${field}[${j}]`;
          const a = obj(av, path);
          const address = ip(get(a, 'ip'), `${path}.ip`);
          const hostname = label(get(a, 'hostname'), `${path}.hostname`);
          const podName = podNameOf(get(a, 'targetRef'), `${path}.targetRef`);
          const nodeName = optStr(get(a, 'nodeName'), `${path}.nodeName`);
          endpoints.push({
            addresses: [address],
            ...(hostname === undefined ? {} : { hostname }),
            conditions: { ready, serving: ready, terminating: false },
            ...(podName === undefined ? {} : { podName }),
            ...(nodeName === undefined ? {} : { nodeName }),
          });
        });
      }
      list(get(s, 'ports'), `${sp}.ports`).forEach((pv, j) => {
        const path = `${sp}.ports[${j}]`;
        const p = obj(pv, path);
        const port: EndpointPort = {
          name: label(get(p, 'name'), `${path}.name`) ?? '',
          port: portNumber(get(p, 'port'), `${path}.port`),
          protocol: protocol(get(p, 'protocol'), `${path}.protocol`),
        };
        const key = `${port.name}/${port.port}/${port.protocol}`;
        if (!seenPorts.has(key)) {
          seenPorts.add(key);
          ports.push(port);
        }
      });
    });
    const first = endpoints[0]?.addresses[0];
    return {
      namespace: m.namespace,
      name: m.name,
      serviceName: m.name,
      addressType: first === undefined ? 'IPv4' : (ipFamily(first) ?? 'IPv4'),
      endpoints,
      ports,
      legacy: true,
      labels: m.labels,
    };
  });
}

/**
 * v1 Pod.
 *
 * - `ips` from `status.podIPs[].ip`, else `[status.podIP]`; empty when unscheduled.
 * - `phase` from `status.phase`, `Pending` when absent (what the API server reports for a
 *   pod without status).
 * - `terminating` when `metadata.deletionTimestamp` is set; `ready` when the Ready
 *   condition is "True".
 * - `containerPorts` from `spec.containers[].ports[]`, plus those of sidecar init
 *   containers (`restartPolicy: Always`), which named targetPorts can also resolve to.
 */
export function toPod(json: unknown): ConvertResult<Pod> {
  return run(() => {
    const o = root(json);
    const m = meta(o, isDNS1123Subdomain, SUBDOMAIN_RULE, true);
    const md = obj(get(o, 'metadata'), 'metadata');
    const spec = optObj(get(o, 'spec'), 'spec') ?? {};
    const status = optObj(get(o, 'status'), 'status') ?? {};

    const ips: string[] = [];
    const podIPs = list(get(status, 'podIPs'), 'status.podIPs');
    if (podIPs.length > 0) {
      podIPs.forEach((v, i) => {
        const a = ip(get(obj(v, `status.podIPs[${i}]`), 'ip'), `status.podIPs[${i}].ip`);
        if (!ips.includes(a)) ips.push(a);
      });
    } else {
      const single = get(status, 'podIP');
      if (single !== undefined && single !== null && single !== '') ips.push(ip(single, 'status.podIP'));
    }
    const phase = optStr(get(status, 'phase'), 'status.phase') ?? 'Pending';
    const deletion = get(md, 'deletionTimestamp');
    const terminating = deletion !== undefined && deletion !== null && deletion !== '';
    const ready = list(get(status, 'conditions'), 'status.conditions').some(
      (c) => isObj(c) && get(c, 'type') === 'Ready' && get(c, 'status') === 'True',
    );
    const hostname = label(get(spec, 'hostname'), 'spec.hostname');
    const subdomain = label(get(spec, 'subdomain'), 'spec.subdomain');
    const nodeName = optStr(get(spec, 'nodeName'), 'spec.nodeName');

    const containerPorts: ContainerPort[] = [];
    for (const field of ['containers', 'initContainers'] as const) {
      list(get(spec, field), `spec.${field}`).forEach((cv, i) => {
        const cp = `spec.${field}[${i}]`;
        const c = obj(cv, cp);
        if (field === 'initContainers' && get(c, 'restartPolicy') !== 'Always') return;
        list(get(c, 'ports'), `${cp}.ports`).forEach((pv, j) => {
          const path = `${cp}.ports[${j}]`;
          const p = obj(pv, path);
          containerPorts.push({
            name: checked(get(p, 'name'), `${path}.name`, isIANAServiceName, IANA_RULE, false) ?? '',
            containerPort: portNumber(get(p, 'containerPort'), `${path}.containerPort`),
            protocol: protocol(get(p, 'protocol'), `${path}.protocol`),
          });
        });
      });
    }

    return {
      namespace: m.namespace,
      name: m.name,
      ips,
      phase,
      terminating,
      ready,
      ...(hostname === undefined ? {} : { hostname }),
      ...(subdomain === undefined ? {} : { subdomain }),
      labels: m.labels,
      containerPorts,
      ...(nodeName === undefined ? {} : { nodeName }),
    };
  });
}

const KINDS = Object.keys(API_VERSIONS) as Kind[];

function isKind(s: string): s is Kind {
  return (KINDS as string[]).includes(s);
}

/**
 * Kind, namespace and name of a raw object as far as they can be read, for diagnostics and
 * for matching an invalid object to its previous good version. The namespace defaults to
 * `default` for namespaced kinds, as in the converters. Never throws.
 */
export function objectRef(json: unknown, kind?: string): { kind?: string; namespace?: string; name?: string } {
  if (!isObj(json)) return kind === undefined ? {} : { kind };
  const k = typeof get(json, 'kind') === 'string' ? (get(json, 'kind') as string) : kind;
  const md = get(json, 'metadata');
  const rawName = isObj(md) ? get(md, 'name') : undefined;
  const rawNs = isObj(md) ? get(md, 'namespace') : undefined;
  const name = typeof rawName === 'string' && rawName !== '' ? rawName : undefined;
  const namespace =
    k === 'Namespace' ? undefined : typeof rawNs === 'string' && rawNs !== '' ? rawNs : k !== undefined && isKind(k) ? 'default' : undefined;
  return {
    ...(k === undefined ? {} : { kind: k }),
    ...(namespace === undefined ? {} : { namespace }),
    ...(name === undefined ? {} : { name }),
  };
}

/**
 * Convert any supported object, dispatching on `apiVersion`/`kind`: v1 Namespace, Service,
 * Endpoints and Pod, discovery.k8s.io/v1 EndpointSlice and multicluster.x-k8s.io/v1alpha1
 * ServiceImport.
 *
 * Items of an API list response carry neither `kind` nor `apiVersion`: pass the kind
 * explicitly then. When both are present they must agree. A missing `apiVersion` is
 * accepted; a wrong one (e.g. `discovery.k8s.io/v1beta1`) is an error. Any other kind
 * gives `{ ok: false, unsupported: true }`.
 */
export function toClusterObject(json: unknown, kind?: Kind): ClusterObjectResult {
  if (!isObj(json)) return { ok: false, error: `expected a Kubernetes object (a mapping), got ${show(json)}` };
  const rawKind = get(json, 'kind');
  const rawVersion = get(json, 'apiVersion');
  if (rawKind !== undefined && rawKind !== null && typeof rawKind !== 'string') {
    return { ok: false, error: `kind: must be a string, got ${show(rawKind)}` };
  }
  if (rawVersion !== undefined && rawVersion !== null && typeof rawVersion !== 'string') {
    return { ok: false, error: `apiVersion: must be a string, got ${show(rawVersion)}` };
  }
  if (kind !== undefined && typeof rawKind === 'string' && rawKind !== '' && rawKind !== kind) {
    return { ok: false, error: `kind: must be ${kind}, got ${show(rawKind)}` };
  }
  const k = typeof rawKind === 'string' && rawKind !== '' ? rawKind : kind;
  if (k === undefined) return { ok: false, error: 'kind: required' };
  if (!isKind(k)) {
    const what = typeof rawVersion === 'string' && rawVersion !== '' ? `${rawVersion} ${k}` : k;
    return {
      ok: false,
      unsupported: true,
      error: `kind: ${what} is not used by clusterdns (it reads v1 Namespace, Service, Endpoints, Pod, discovery.k8s.io/v1 EndpointSlice and multicluster.x-k8s.io/v1alpha1 ServiceImport)`,
    };
  }
  const want = API_VERSIONS[k];
  if (typeof rawVersion === 'string' && rawVersion !== '' && rawVersion !== want) {
    return { ok: false, error: `apiVersion: must be ${want} for kind ${k}, got ${show(rawVersion)}` };
  }
  switch (k) {
    case 'Namespace': {
      const r = toNamespace(json);
      return r.ok ? { ok: true, value: { kind: k, obj: r.value } } : r;
    }
    case 'Service': {
      const r = toService(json);
      return r.ok ? { ok: true, value: { kind: k, obj: r.value } } : r;
    }
    case 'EndpointSlice': {
      const r = toEndpointSlice(json);
      return r.ok ? { ok: true, value: { kind: k, obj: r.value } } : r;
    }
    case 'Endpoints': {
      const r = toEndpoints(json);
      return r.ok ? { ok: true, value: { kind: k, obj: r.value } } : r;
    }
    case 'Pod': {
      const r = toPod(json);
      return r.ok ? { ok: true, value: { kind: k, obj: r.value } } : r;
    }
    case 'ServiceImport': {
      const r = toServiceImport(json);
      return r.ok ? { ok: true, value: { kind: k, obj: r.value } } : r;
    }
  }
}
