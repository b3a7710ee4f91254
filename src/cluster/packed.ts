/**
 * Reading and writing a slice's endpoints in either form (model.ts `Endpoints`): one
 * object per endpoint, or packed columns (what the API source stores, ~40 bytes an
 * endpoint instead of ~140).
 */
import type { Endpoint, EndpointConditions, Endpoints, PackedEndpoints } from './model.js';

const READY = 1;
const SERVING = 2;
const TERMINATING = 4;

/** The 8 possible conditions, shared (frozen) so unpacking allocates none. */
const CONDITIONS: readonly EndpointConditions[] = Array.from({ length: 8 }, (_, k) =>
  Object.freeze({ ready: (k & READY) !== 0, serving: (k & SERVING) !== 0, terminating: (k & TERMINATING) !== 0 }),
);

export function conditionBits(c: EndpointConditions): number {
  return (c.ready ? READY : 0) | (c.serving ? SERVING : 0) | (c.terminating ? TERMINATING : 0);
}

/** The shared conditions object for these bits. */
export function conditionsOf(bits: number): EndpointConditions {
  return CONDITIONS[bits & 7]!;
}

export function isPacked(e: Endpoints): e is PackedEndpoints {
  return !Array.isArray(e);
}

function bitsAt(p: PackedEndpoints, i: number): number {
  return typeof p.conditions === 'number' ? p.conditions : p.conditions.charCodeAt(i) - 48;
}

/**
 * Visit every address of every endpoint, in order, without making endpoint objects:
 * `fn(ip, conditionBits, hostname, podName)`.
 */
export function eachAddress(
  e: Endpoints,
  fn: (ip: string, bits: number, hostname: string | undefined, podName: string | undefined, nodeName: string | undefined) => void,
): void {
  if (isPacked(e)) {
    const { ips, hostnames, podNames, nodeNames } = e;
    for (let i = 0; i < ips.length; i++) fn(ips[i]!, bitsAt(e, i), hostnames?.[i], podNames?.[i], nodeNames?.[i]);
    return;
  }
  for (const ep of e as readonly Endpoint[]) {
    const bits = conditionBits(ep.conditions);
    for (const ip of ep.addresses) fn(ip, bits, ep.hostname, ep.podName, ep.nodeName);
  }
}

/** The endpoints as objects (made anew for a packed slice: for the rare, non-hot readers). */
export function endpointList(e: Endpoints): readonly Endpoint[] {
  if (!isPacked(e)) return e as readonly Endpoint[];
  const out: Endpoint[] = [];
  for (let i = 0; i < e.ips.length; i++) {
    const ep: { -readonly [K in keyof Endpoint]: Endpoint[K] } = { addresses: [e.ips[i]!], conditions: conditionsOf(bitsAt(e, i)) };
    const host = e.hostnames?.[i];
    if (host !== undefined) ep.hostname = host;
    const pod = e.podNames?.[i];
    if (pod !== undefined) ep.podName = pod;
    const node = e.nodeNames?.[i];
    if (node !== undefined) ep.nodeName = node;
    out.push(ep);
  }
  return out;
}

function slim(ep: Endpoint, keepPodNames: boolean, keepNodeNames: boolean): Endpoint {
  const out: { -readonly [K in keyof Endpoint]: Endpoint[K] } = { addresses: ep.addresses, conditions: conditionsOf(conditionBits(ep.conditions)) };
  if (ep.hostname !== undefined) out.hostname = ep.hostname;
  if (keepPodNames && ep.podName !== undefined) out.podName = ep.podName;
  if (keepNodeNames && ep.nodeName !== undefined) out.nodeName = ep.nodeName;
  return out;
}

/**
 * The packed form of `list` when every endpoint has exactly one address; otherwise the
 * list slimmed. Zones are dropped (DNS never reads them); pod names are kept only with
 * `keepPodNames`, node names only with `keepNodeNames` (the service proxy's
 * internalTrafficPolicy: Local; `intern` shares the strings, a few hundred per cluster).
 */
export function packEndpoints(list: Endpoints, keepPodNames: boolean, keepNodeNames = false, intern: (s: string) => string = (s) => s): Endpoints {
  if (isPacked(list)) return list;
  const eps = list as readonly Endpoint[];
  if (eps.some((ep) => ep.addresses.length !== 1)) return eps.map((ep) => slim(ep, keepPodNames, keepNodeNames));
  const ips: string[] = [];
  let hostnames: (string | undefined)[] | undefined;
  let podNames: (string | undefined)[] | undefined;
  let nodeNames: (string | undefined)[] | undefined;
  let digits = '';
  let same = eps.length === 0 ? READY | SERVING : conditionBits(eps[0]!.conditions);
  for (let i = 0; i < eps.length; i++) {
    const ep = eps[i]!;
    ips.push(ep.addresses[0]!);
    const bits = conditionBits(ep.conditions);
    digits += String.fromCharCode(48 + bits);
    if (bits !== same) same = -1;
    if (ep.hostname !== undefined) (hostnames ??= new Array<string | undefined>(eps.length).fill(undefined))[i] = ep.hostname;
    if (keepPodNames && ep.podName !== undefined) (podNames ??= new Array<string | undefined>(eps.length).fill(undefined))[i] = ep.podName;
    if (keepNodeNames && ep.nodeName !== undefined) (nodeNames ??= new Array<string | undefined>(eps.length).fill(undefined))[i] = intern(ep.nodeName);
  }
  const out: { -readonly [K in keyof PackedEndpoints]: PackedEndpoints[K] } = { ips, conditions: same >= 0 ? same : digits };
  if (hostnames !== undefined) out.hostnames = hostnames;
  if (podNames !== undefined) out.podNames = podNames;
  if (nodeNames !== undefined) out.nodeNames = nodeNames;
  return out;
}
