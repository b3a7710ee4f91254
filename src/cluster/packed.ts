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

/** The topology zone of endpoint `i` (model.ts `zones`: 1 + an index into `zoneNames`, 0 none). */
function zoneAt(p: PackedEndpoints, i: number): string | undefined {
  const z = p.zones;
  if (z === undefined) return undefined;
  const k = typeof z === 'number' ? z : z.charCodeAt(i);
  return k === 0 ? undefined : p.zoneNames?.[k - 1];
}

/**
 * Visit every address of every endpoint, in order, without making endpoint objects:
 * `fn(ip, conditionBits, hostname, podName, nodeName, zone)`.
 */
export function eachAddress(
  e: Endpoints,
  fn: (ip: string, bits: number, hostname: string | undefined, podName: string | undefined, nodeName: string | undefined, zone: string | undefined) => void,
): void {
  if (isPacked(e)) {
    const { ips, hostnames, podNames, nodeNames } = e;
    const zoned = e.zones !== undefined;
    for (let i = 0; i < ips.length; i++) fn(ips[i]!, bitsAt(e, i), hostnames?.[i], podNames?.[i], nodeNames?.[i], zoned ? zoneAt(e, i) : undefined);
    return;
  }
  for (const ep of e as readonly Endpoint[]) {
    const bits = conditionBits(ep.conditions);
    for (const ip of ep.addresses) fn(ip, bits, ep.hostname, ep.podName, ep.nodeName, ep.zone);
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
    const zone = zoneAt(e, i);
    if (zone !== undefined) ep.zone = zone;
    out.push(ep);
  }
  return out;
}

/**
 * A flat string of these character codes. Built with `+=` it would stay a rope (a
 * cons-string node per character, ~2.8 KB for 100 characters instead of ~120 bytes)
 * until something reads it, which for a stored column may be never.
 */
function flatString(codes: readonly number[]): string {
  if (codes.length <= 4096) return String.fromCharCode(...codes);
  let s = '';
  for (let i = 0; i < codes.length; i += 4096) s += String.fromCharCode(...codes.slice(i, i + 4096));
  return s;
}

function slim(ep: Endpoint, keepPodNames: boolean, keepNodeNames: boolean, keepZones: boolean, intern: (s: string) => string): Endpoint {
  const out: { -readonly [K in keyof Endpoint]: Endpoint[K] } = { addresses: ep.addresses, conditions: conditionsOf(conditionBits(ep.conditions)) };
  if (ep.hostname !== undefined) out.hostname = ep.hostname;
  if (keepPodNames && ep.podName !== undefined) out.podName = ep.podName;
  if (keepNodeNames && ep.nodeName !== undefined) out.nodeName = intern(ep.nodeName);
  if (keepZones && ep.zone !== undefined) out.zone = intern(ep.zone);
  return out;
}

/**
 * The packed form of `list` when every endpoint has exactly one address; otherwise the
 * list slimmed. Pod names are kept only with `keepPodNames`, node names only with
 * `keepNodeNames` (the service proxy's internalTrafficPolicy: Local), zones only with
 * `keepZones` (the `zonal` names); otherwise they are dropped. `intern` shares node and
 * zone names, a few hundred and a handful per cluster.
 */
export function packEndpoints(
  list: Endpoints,
  keepPodNames: boolean,
  keepNodeNames = false,
  intern: (s: string) => string = (s) => s,
  keepZones = false,
): Endpoints {
  if (isPacked(list)) return list;
  const eps = list as readonly Endpoint[];
  if (eps.some((ep) => ep.addresses.length !== 1)) return eps.map((ep) => slim(ep, keepPodNames, keepNodeNames, keepZones, intern));
  const ips: string[] = [];
  let hostnames: (string | undefined)[] | undefined;
  let podNames: (string | undefined)[] | undefined;
  let nodeNames: (string | undefined)[] | undefined;
  // Zones: distinct names, and each endpoint's 1 + index as a character (0: none).
  let zoneNames: string[] | undefined;
  const zoneCodes: number[] = [];
  let sameZone = -1;
  const digits: number[] = [];
  let same = eps.length === 0 ? READY | SERVING : conditionBits(eps[0]!.conditions);
  for (let i = 0; i < eps.length; i++) {
    const ep = eps[i]!;
    ips.push(ep.addresses[0]!);
    const bits = conditionBits(ep.conditions);
    digits.push(48 + bits);
    if (bits !== same) same = -1;
    if (ep.hostname !== undefined) (hostnames ??= new Array<string | undefined>(eps.length).fill(undefined))[i] = ep.hostname;
    if (keepPodNames && ep.podName !== undefined) (podNames ??= new Array<string | undefined>(eps.length).fill(undefined))[i] = ep.podName;
    if (keepNodeNames && ep.nodeName !== undefined) (nodeNames ??= new Array<string | undefined>(eps.length).fill(undefined))[i] = intern(ep.nodeName);
    if (keepZones) {
      let code = 0;
      if (ep.zone !== undefined) {
        let k = (zoneNames ??= []).indexOf(ep.zone);
        if (k < 0) k = zoneNames.push(intern(ep.zone)) - 1;
        code = k + 1;
      }
      zoneCodes.push(code);
      sameZone = i === 0 ? code : sameZone === code ? code : -1;
    }
  }
  const out: { -readonly [K in keyof PackedEndpoints]: PackedEndpoints[K] } = { ips, conditions: same >= 0 ? same : flatString(digits) };
  if (hostnames !== undefined) out.hostnames = hostnames;
  if (podNames !== undefined) out.podNames = podNames;
  if (nodeNames !== undefined) out.nodeNames = nodeNames;
  if (zoneNames !== undefined) {
    out.zoneNames = zoneNames;
    out.zones = sameZone > 0 ? sameZone : flatString(zoneCodes);
  }
  return out;
}
