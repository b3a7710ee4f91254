/**
 * Endpoint address validation, ported from Kubernetes
 * `pkg/apis/core/validation/validation.go` (`ValidateNonSpecialIP`, renamed
 * `ValidateEndpointIP` in newer trees; `ValidateEndpoints`, `validateEndpointSubsets`,
 * `validateEndpointAddress`, `validateEndpointPort`, `validateEpAddrNodeNameTransition`)
 * and the address part of `pkg/apis/discovery/validation` (EndpointSlice).
 *
 * Special-IP rules (Go `net.IP` semantics; IPv4-mapped IPv6 counts as IPv4):
 *
 * | rule                 | IPv4            | IPv6                           |
 * |----------------------|-----------------|--------------------------------|
 * | unspecified          | 0.0.0.0         | ::                             |
 * | loopback             | 127.0.0.0/8     | ::1 only                       |
 * | link-local unicast   | 169.254.0.0/16  | fe80::/10                      |
 * | link-local multicast | 224.0.0.0/24    | ff?2::/16 (any flags nibble)   |
 *
 * Global multicast and 255.255.255.255 are allowed (upstream calls allowing global
 * multicast "probably a bug"; we keep parity).
 *
 * Project extension (not upstream; kubernetes.io says endpoint IPs "cannot be the
 * cluster IPs of other Kubernetes Services" because kube-proxy does not support virtual
 * IPs as a destination, but the apiserver never checks it): with a `clusterIPOwner`
 * lookup, an address that is a Service's clusterIP gets
 * `may not be the cluster IP of a Service (ns/name)`.
 *
 * @module
 */
import type { EndpointSlice } from '../cluster/model.js';
import { endpointList } from '../cluster/packed.js';
import { type FieldError, forbidden, invalid, notSupported, required } from './field.js';
import { INVALID_IP_MESSAGE } from './families.js';
import { IP } from './ip.js';

/** Resolves a canonical IP to the `namespace/name` of the Service owning it as clusterIP. */
export type ClusterIPOwnerLookup = ReadonlyMap<string, string> | ((canonicalIP: string) => string | undefined);

/** Options of the endpoint validators. */
export interface EndpointIPOptions {
  /** Enables the project rule "an endpoint may not be a Service's cluster IP". */
  readonly clusterIPOwner?: ClusterIPOwnerLookup;
}

export const MSG_UNPARSEABLE = 'must be a valid IP address';
export const MSG_LOOPBACK = 'may not be in the loopback range (127.0.0.0/8, ::1/128)';
export const MSG_LINK_LOCAL = 'may not be in the link-local range (169.254.0.0/16, fe80::/10)';
export const MSG_LINK_LOCAL_MULTICAST = 'may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)';

/** `may not be the cluster IP of a Service (ns/name)` (project rule). */
export function clusterIPMessage(owner: string): string {
  return `may not be the cluster IP of a Service (${owner})`;
}

function lookupOwner(lookup: ClusterIPOwnerLookup | undefined, ip: string): string | undefined {
  if (lookup === undefined) return undefined;
  return typeof lookup === 'function' ? lookup(ip) : lookup.get(ip);
}

/**
 * `ValidateNonSpecialIP` / `ValidateEndpointIP`: the messages for one address, `[]`
 * when it is acceptable. Several rules can fire; an unparseable address gives only
 * `must be a valid IP address`.
 */
export function validateEndpointIP(ip: string, options: EndpointIPOptions = {}): string[] {
  const addr = IP.parse(ip);
  if (addr === undefined) return [MSG_UNPARSEABLE];
  const out: string[] = [];
  const v = addr.value;
  if (v === 0n) out.push(`may not be unspecified (${ip})`);
  if (addr.family === 'IPv4') {
    const a = Number(v >> 24n);
    const b = Number((v >> 16n) & 0xffn);
    const c = Number((v >> 8n) & 0xffn);
    if (a === 127) out.push(MSG_LOOPBACK);
    if (a === 169 && b === 254) out.push(MSG_LINK_LOCAL);
    if (a === 224 && b === 0 && c === 0) out.push(MSG_LINK_LOCAL_MULTICAST);
  } else {
    const hi = Number(v >> 112n); // first 16 bits
    if (v === 1n) out.push(MSG_LOOPBACK);
    if ((hi & 0xffc0) === 0xfe80) out.push(MSG_LINK_LOCAL);
    if ((hi & 0xff0f) === 0xff02) out.push(MSG_LINK_LOCAL_MULTICAST);
  }
  const owner = lookupOwner(options.clusterIPOwner, addr.toString());
  if (owner !== undefined) out.push(clusterIPMessage(owner));
  return out;
}

/**
 * Index of clusterIP -> `namespace/name` for the project rule. Headless (`None`), empty
 * and unparseable entries are skipped; keys are canonical. The first Service wins.
 */
export function clusterIPOwners(
  services: Iterable<{ readonly namespace?: string; readonly name: string; readonly clusterIPs?: readonly string[] }>,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of services) {
    for (const text of s.clusterIPs ?? []) {
      const ip = IP.parse(text);
      if (ip === undefined) continue;
      const k = ip.toString();
      if (!out.has(k)) out.set(k, s.namespace === undefined ? s.name : `${s.namespace}/${s.name}`);
    }
  }
  return out;
}

// --- v1 Endpoints (legacy) -------------------------------------------------------

/** A v1 `EndpointAddress` as written in a manifest. */
export interface EndpointAddressJSON {
  readonly ip?: string;
  readonly hostname?: string;
  readonly nodeName?: string;
}

/** A v1 `EndpointPort` as written in a manifest. */
export interface EndpointPortJSON {
  readonly name?: string;
  readonly port?: number;
  readonly protocol?: string;
}

/** A v1 `Endpoints` object as written in a manifest (only validated fields). */
export interface EndpointsJSON {
  readonly metadata?: { readonly name?: string; readonly namespace?: string; readonly generateName?: string };
  readonly subsets?: ReadonlyArray<{
    readonly addresses?: readonly EndpointAddressJSON[];
    readonly notReadyAddresses?: readonly EndpointAddressJSON[];
    readonly ports?: readonly EndpointPortJSON[];
  }>;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** `validation.IsDNS1123Label` messages. */
export function isDNS1123Label(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 63) errs.push('must be no more than 63 characters');
  if (!DNS1123_LABEL.test(value)) {
    errs.push(
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    );
  }
  return errs;
}

/** `validation.IsDNS1123Subdomain` messages. */
export function isDNS1123Subdomain(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 253) errs.push('must be no more than 253 characters');
  if (!DNS1123_SUBDOMAIN.test(value)) {
    errs.push(
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    );
  }
  return errs;
}

const PROTOCOLS: readonly string[] = ['SCTP', 'TCP', 'UDP'];

function validateAddress(
  a: EndpointAddressJSON,
  path: string,
  ipToNodeName: ReadonlyMap<string, string> | undefined,
  options: EndpointIPOptions,
): FieldError[] {
  const errs: FieldError[] = [];
  const ip = a.ip ?? '';
  if (IP.parse(ip) === undefined) errs.push(invalid(`${path}.ip`, ip, INVALID_IP_MESSAGE));
  if (a.hostname !== undefined && a.hostname !== '') {
    for (const m of isDNS1123Label(a.hostname)) errs.push(invalid(`${path}.hostname`, a.hostname, m));
  }
  if (a.nodeName !== undefined) {
    for (const m of isDNS1123Subdomain(a.nodeName)) errs.push(invalid(`${path}.nodeName`, a.nodeName, m));
    const existing = ipToNodeName?.get(ip);
    if (existing !== undefined && existing !== a.nodeName) {
      errs.push(forbidden(`${path}.nodeName`, `Cannot change NodeName for ${ip} to ${a.nodeName}`));
    }
  }
  // Special-IP checks only when the address is otherwise valid.
  if (errs.length > 0) return errs;
  for (const m of validateEndpointIP(ip, options)) errs.push(invalid(`${path}.ip`, ip, m));
  return errs;
}

function validatePort(p: EndpointPortJSON, requireName: boolean, path: string): FieldError[] {
  const errs: FieldError[] = [];
  const name = p.name ?? '';
  if (requireName && name === '') errs.push(required(`${path}.name`));
  else if (name !== '') for (const m of isDNS1123Label(name)) errs.push(invalid(`${path}.name`, name, m));
  const port = p.port ?? 0;
  if (!Number.isInteger(port) || port < 1 || port > 65535) errs.push(invalid(`${path}.port`, port, 'must be between 1 and 65535, inclusive'));
  const protocol = p.protocol ?? '';
  if (protocol === '') errs.push(required(`${path}.protocol`));
  else if (!PROTOCOLS.includes(protocol)) errs.push(notSupported(`${path}.protocol`, protocol, PROTOCOLS));
  return errs;
}

function validateEndpointsInternal(ep: EndpointsJSON, old: EndpointsJSON | undefined, options: EndpointIPOptions): FieldError[] {
  const errs: FieldError[] = [];
  const name = ep.metadata?.name ?? '';
  const ns = ep.metadata?.namespace ?? '';
  if (name === '' && (ep.metadata?.generateName ?? '') === '') {
    errs.push(required('metadata.name', 'name or generateName is required'));
  } else if (name !== '') {
    for (const m of isDNS1123Subdomain(name)) errs.push(invalid('metadata.name', name, m));
  }
  if (ns === '') errs.push(required('metadata.namespace'));
  else for (const m of isDNS1123Label(ns)) errs.push(invalid('metadata.namespace', ns, m));

  let ipToNodeName: Map<string, string> | undefined;
  if (old !== undefined) {
    ipToNodeName = new Map();
    for (const ss of old.subsets ?? []) {
      for (const a of [...(ss.addresses ?? []), ...(ss.notReadyAddresses ?? [])]) {
        if (a.nodeName !== undefined && a.ip !== undefined) ipToNodeName.set(a.ip, a.nodeName);
      }
    }
  }
  (ep.subsets ?? []).forEach((ss, i) => {
    const path = `subsets[${i}]`;
    const addrs = ss.addresses ?? [];
    const notReady = ss.notReadyAddresses ?? [];
    if (addrs.length === 0 && notReady.length === 0) errs.push(required(path, 'must specify `addresses` or `notReadyAddresses`'));
    addrs.forEach((a, j) => errs.push(...validateAddress(a, `${path}.addresses[${j}]`, ipToNodeName, options)));
    notReady.forEach((a, j) => errs.push(...validateAddress(a, `${path}.notReadyAddresses[${j}]`, ipToNodeName, options)));
    const ports = ss.ports ?? [];
    ports.forEach((p, j) => errs.push(...validatePort(p, ports.length > 1, `${path}.ports[${j}]`)));
  });
  return errs;
}

/**
 * `ValidateEndpoints` for a v1 Endpoints manifest: metadata name (DNS subdomain) and
 * namespace (DNS label), each subset needs an address, addresses (IP, hostname,
 * nodeName, then the special-IP rules), ports (name when several, 1-65535, protocol).
 */
export function validateEndpoints(ep: EndpointsJSON, options: EndpointIPOptions = {}): FieldError[] {
  return validateEndpointsInternal(ep, undefined, options);
}

/**
 * `ValidateEndpointsUpdate` of the version cases.md H ports: as
 * {@link validateEndpoints}, plus an existing endpoint IP may not move to another
 * `nodeName` (`Cannot change NodeName for <ip> to <node>`). Newer upstream allows it.
 */
export function validateEndpointsUpdate(ep: EndpointsJSON, old: EndpointsJSON, options: EndpointIPOptions = {}): FieldError[] {
  return validateEndpointsInternal(ep, old, options);
}

/**
 * The address rules of EndpointSlice validation for a slim slice: each address must
 * match `addressType` (`must be a valid IPv4 address` / `... IPv6 address`), then
 * {@link validateEndpointIP}. FQDN slices are not checked here.
 */
export function validateEndpointSliceAddresses(slice: EndpointSlice, options: EndpointIPOptions = {}): FieldError[] {
  const errs: FieldError[] = [];
  if (slice.addressType === 'FQDN') return errs;
  endpointList(slice.endpoints).forEach((ep, i) => {
    ep.addresses.forEach((address, j) => {
      const path = `endpoints[${i}].addresses[${j}]`;
      const ip = IP.parse(address);
      // IsValidIPv4Address / IsValidIPv6Address use To4(): an IPv4-mapped IPv6 address
      // is a valid IPv4 address and not a valid IPv6 one.
      const ok = ip !== undefined && ip.family === slice.addressType;
      if (!ok) {
        errs.push(invalid(path, address, `must be a valid ${slice.addressType} address`));
        return;
      }
      for (const m of validateEndpointIP(address, options)) errs.push(invalid(path, address, m));
    });
  });
  return errs;
}
