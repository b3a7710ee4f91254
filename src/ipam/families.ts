/**
 * Dual-stack field handling of a Service: which IP families it gets, in which order,
 * with which `ipFamilyPolicy`, and the clusterIP validation that goes with it.
 *
 * Ported from Kubernetes:
 * - `pkg/registry/core/service/storage/alloc.go`: `initIPFamilyFields`,
 *   `isMatchingPreferDualStackClusterIPFields`, `normalizeClusterIPs` and the
 *   clusterIP half of `patchAllocatedValues` (storage.go);
 * - `pkg/apis/core/validation/validation.go`: `ValidateServiceClusterIPsRelatedFields`,
 *   the type checks of `ValidateService` that concern clusterIPs, and
 *   `validateUpgradeDowngradeClusterIPs` / `validateUpgradeDowngradeIPFamilies`.
 *
 * No allocation happens here: {@link planServiceIPs} returns the families and the
 * user-requested IPs; `allocator.ts` fills in the missing IPs.
 *
 * Deviation: user-supplied clusterIPs are rewritten to canonical text first (so
 * `2001:DB8::1` is stored and compared as `2001:db8::1`); upstream keeps the user text.
 * DNS records and the bitmap both need one spelling per address.
 *
 * @module
 */
import type { IPFamily, IPFamilyPolicy, Service, ServiceType } from '../cluster/model.js';
import {
  type FieldError,
  ServiceInvalidError,
  duplicate,
  forbidden,
  invalid,
  notSupported,
  required,
} from './field.js';
import { IP } from './ip.js';

/** `spec.clusterIP: None`. */
export const CLUSTER_IP_NONE = 'None';

const SUPPORTED_FAMILIES: readonly string[] = ['IPv4', 'IPv6'];
const SUPPORTED_POLICIES: readonly string[] = ['PreferDualStack', 'RequireDualStack', 'SingleStack'];

/** `validation.IsValidIP` message. */
export const INVALID_IP_MESSAGE = 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)';

/**
 * The Service fields that IP allocation reads: the user's request on create, or the
 * stored object (as `before`) on update. Strings are untyped on purpose: validation
 * reports unsupported families and policies with the upstream messages.
 */
export interface ServiceIPSpec {
  /** For error messages (`Service "<name>" is invalid: ...`). */
  readonly name?: string;
  readonly namespace?: string;
  readonly type: ServiceType;
  /** `spec.clusterIP`: undefined or `''` unset, `'None'` headless. */
  readonly clusterIP?: string;
  /** `spec.clusterIPs`. When only `clusterIP` is set it is copied here (`normalizeClusterIPs`). */
  readonly clusterIPs?: readonly string[];
  readonly ipFamilies?: readonly string[];
  readonly ipFamilyPolicy?: string;
  /** Undefined or empty: selectorless (matters for headless services). */
  readonly selector?: Readonly<Record<string, string>>;
}

/**
 * The outcome of family initialisation: what the Service will carry once the missing
 * IPs are allocated. `clusterIPs` holds the user-requested (or kept) IPs in family
 * order; it may be shorter than `ipFamilies`, and the allocator appends the rest.
 * Headless: `clusterIPs` is `['None']`. ExternalName: everything empty, policy undefined.
 */
export interface ServiceIPPlan {
  readonly name: string;
  readonly type: ServiceType;
  readonly headless: boolean;
  readonly ipFamilies: readonly IPFamily[];
  readonly ipFamilyPolicy?: IPFamilyPolicy;
  readonly clusterIPs: readonly string[];
}

/** Mutable working copy, the `*api.Service` the upstream functions mutate. */
interface Work {
  name: string;
  type: ServiceType;
  clusterIP: string;
  clusterIPs: string[];
  ipFamilies: string[];
  ipFamilyPolicy: string | undefined;
  selectorless: boolean;
}

function work(s: ServiceIPSpec): Work {
  return {
    name: s.name ?? '',
    type: s.type,
    clusterIP: s.clusterIP ?? '',
    clusterIPs: [...(s.clusterIPs ?? [])],
    ipFamilies: [...(s.ipFamilies ?? [])],
    ipFamilyPolicy: s.ipFamilyPolicy,
    selectorless: s.selector === undefined || Object.keys(s.selector).length === 0,
  };
}

/** Canonical text for parseable IPs; `None`, `''` and garbage are kept for validation to report. */
function canon(ip: string): string {
  if (ip === '' || ip === CLUSTER_IP_NONE) return ip;
  return IP.parse(ip)?.toString() ?? ip;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function isHeadless(s: { clusterIPs: readonly string[] }): boolean {
  return s.clusterIPs.length === 1 && s.clusterIPs[0] === CLUSTER_IP_NONE;
}

function familyOfValid(ip: string): IPFamily {
  return IP.parse(ip)?.family ?? 'IPv4';
}

/**
 * Adapts the slim model `Service` to a {@link ServiceIPSpec}.
 *
 * As a request (default), clusterIPs count only when the manifest asked for them
 * (`clusterIPsRequested !== false`). With `{ stored: true }` the Service is the stored
 * object (the `before` of an update) and its clusterIPs are always taken.
 */
export function ipSpecFromService(svc: Service, options: { stored?: boolean } = {}): ServiceIPSpec {
  const requested = options.stored === true || svc.clusterIPsRequested !== false;
  const clusterIPs = svc.headless ? [CLUSTER_IP_NONE] : requested ? [...svc.clusterIPs] : [];
  return {
    name: svc.name,
    namespace: svc.namespace,
    type: svc.type,
    clusterIP: clusterIPs[0] ?? '',
    clusterIPs,
    ...(svc.ipFamilies === undefined ? {} : { ipFamilies: svc.ipFamilies }),
    ...(svc.ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy: svc.ipFamilyPolicy }),
    ...(svc.selector === undefined ? {} : { selector: svc.selector }),
  };
}

/**
 * `defaultOnReadService` / `defaultOnReadIPFamilies` (storage.go): a stored Service
 * written before the dual-stack fields existed gets them, so an update can compare
 * against it. Only when `ipFamilyPolicy` is unset and the type needs a clusterIP:
 * - headless + selectorless: families [primary, other], PreferDualStack;
 * - headless with selector: [primary] SingleStack, or [primary, secondary]
 *   PreferDualStack on a dual-stack cluster;
 * - otherwise families from the clusterIPs, RequireDualStack when there are two.
 */
export function defaultStoredServiceIPs(stored: ServiceIPSpec, clusterFamilies: readonly IPFamily[]): ServiceIPSpec {
  if (stored.type === 'ExternalName' || stored.ipFamilyPolicy !== undefined) return stored;
  const s = work(stored);
  if (s.clusterIPs.length === 0 && s.clusterIP !== '') s.clusterIPs = [s.clusterIP];
  const primary = clusterFamilies[0] ?? 'IPv4';
  let families: IPFamily[];
  let policy: IPFamilyPolicy | undefined;
  if (s.clusterIP === CLUSTER_IP_NONE) {
    families = [primary];
    if (s.selectorless) {
      policy = 'PreferDualStack';
      families.push(otherFamily(primary));
    } else if (clusterFamilies[1] !== undefined) {
      families.push(clusterFamilies[1]);
      policy = 'PreferDualStack';
    } else {
      policy = 'SingleStack';
    }
  } else {
    families = s.clusterIPs.map((ip) => (IP.parse(ip)?.family === 'IPv6' ? 'IPv6' : 'IPv4'));
    policy = families.length === 0 ? undefined : families.length > 1 ? 'RequireDualStack' : 'SingleStack';
  }
  return {
    ...stored,
    clusterIPs: s.clusterIPs,
    ipFamilies: families,
    ...(policy === undefined ? {} : { ipFamilyPolicy: policy }),
  };
}

/**
 * `ValidateServiceClusterIPsRelatedFields` (§8.1): clusterIP/clusterIPs agreement,
 * supported families and policy, `None` placement, at most 2 IPs, one per family, and
 * `clusterIPs[i]` matching `ipFamilies[i]`. ExternalName is skipped. Whether an IP lies
 * in the service CIDR is *not* checked here (the allocator rejects it, 422).
 */
export function validateClusterIPsRelatedFields(spec: ServiceIPSpec): FieldError[] {
  return validateRelated(work(spec));
}

function validateRelated(s: Work): FieldError[] {
  if (s.type === 'ExternalName') return [];
  const errs: FieldError[] = [];
  let hasInvalidIPs = false;
  if (s.clusterIP !== '') {
    if (s.clusterIPs.length === 0) errs.push(required('spec.clusterIPs'));
    else if (s.clusterIPs[0] !== s.clusterIP) errs.push(invalid('spec.clusterIPs', s.clusterIPs, 'first value must match `clusterIP`'));
  } else if (s.clusterIPs.length !== 0) {
    errs.push(invalid('spec.clusterIPs', s.clusterIPs, 'must be empty when `clusterIP` is not specified'));
  }
  const seen = new Set<string>();
  s.ipFamilies.forEach((fam, i) => {
    if (!SUPPORTED_FAMILIES.includes(fam)) errs.push(notSupported(`spec.ipFamilies[${i}]`, fam, SUPPORTED_FAMILIES));
    if (seen.has(fam)) errs.push(duplicate(`spec.ipFamilies[${i}]`, fam));
    seen.add(fam);
  });
  if (s.ipFamilyPolicy !== undefined && !SUPPORTED_POLICIES.includes(s.ipFamilyPolicy)) {
    errs.push(notSupported('spec.ipFamilyPolicy', s.ipFamilyPolicy, SUPPORTED_POLICIES));
  }
  s.clusterIPs.forEach((ip, i) => {
    if (i === 0 && ip === CLUSTER_IP_NONE) {
      if (s.clusterIPs.length > 1) {
        hasInvalidIPs = true;
        errs.push(invalid('spec.clusterIPs', s.clusterIPs, "'None' must be the first and only value"));
      }
      return;
    }
    if (IP.parse(ip) === undefined) {
      hasInvalidIPs = true;
      errs.push(invalid(`spec.clusterIPs[${i}]`, ip, INVALID_IP_MESSAGE));
    }
  });
  if (s.clusterIPs.length > 2) errs.push(invalid('spec.clusterIPs', s.clusterIPs, 'may only hold up to 2 values'));
  if (hasInvalidIPs) return errs;
  if (s.clusterIPs.length > 1) {
    // IsDualStackIPStrings: exactly one IP of each family (only ever called with 2 or 3).
    const fams = s.clusterIPs.map(familyOfValid);
    const dual = fams.length === 2 && fams[0] !== fams[1];
    if (!dual) errs.push(invalid('spec.clusterIPs', s.clusterIPs, 'may specify no more than one IP for each IP family'));
  }
  if (!isHeadless(s) && s.clusterIPs.length > 0 && s.ipFamilies.length > 0) {
    for (let i = 0; i < s.clusterIPs.length && i < s.ipFamilies.length; i++) {
      const ip = s.clusterIPs[i] ?? '';
      const v6 = IP.parse(ip)?.family === 'IPv6';
      if (s.ipFamilies[i] === 'IPv4' && v6) {
        errs.push(invalid(`spec.clusterIPs[${i}]`, ip, `expected an IPv4 value as indicated by \`ipFamilies[${i}]\``));
      }
      if (s.ipFamilies[i] === 'IPv6' && !v6) {
        errs.push(invalid(`spec.clusterIPs[${i}]`, ip, `expected an IPv6 value as indicated by \`ipFamilies[${i}]\``));
      }
    }
  }
  return errs;
}

/**
 * The clusterIP-related checks of `ValidateService`: ExternalName may not carry
 * clusterIPs, ipFamilies or ipFamilyPolicy (Forbidden); NodePort and LoadBalancer may
 * not be headless; then {@link validateClusterIPsRelatedFields}.
 */
export function validateServiceIPFields(spec: ServiceIPSpec): FieldError[] {
  const s = work(spec);
  normalize(s, undefined);
  return validateTyped(s);
}

function validateTyped(s: Work): FieldError[] {
  const errs: FieldError[] = [];
  if (s.type === 'ExternalName') {
    if (s.clusterIPs.length > 0 || s.clusterIP !== '') errs.push(forbidden('spec.clusterIPs', 'may not be set for ExternalName services'));
    if (s.ipFamilies.length > 0) errs.push(forbidden('spec.ipFamilies', 'may not be set for ExternalName services'));
    if (s.ipFamilyPolicy !== undefined) errs.push(forbidden('spec.ipFamilyPolicy', 'may not be set for ExternalName services'));
    return errs;
  }
  if (isHeadless(s) && (s.type === 'NodePort' || s.type === 'LoadBalancer')) {
    errs.push(invalid('spec.clusterIPs[0]', CLUSTER_IP_NONE, `may not be set to 'None' for ${s.type} services`));
  }
  errs.push(...validateRelated(s));
  return errs;
}

/**
 * `validateUpgradeDowngradeClusterIPs` + `validateUpgradeDowngradeIPFamilies` (§8.2):
 * the primary clusterIP and family are immutable; dropping the secondary needs
 * `ipFamilyPolicy: SingleStack`. Skipped for ExternalName on either side; headless
 * services may change families.
 */
export function validateServiceIPUpdate(before: ServiceIPSpec, after: ServiceIPSpec): FieldError[] {
  const o = work(before);
  const n = work(after);
  for (const w of [o, n]) {
    w.clusterIP = canon(w.clusterIP);
    w.clusterIPs = w.clusterIPs.map(canon);
  }
  return validateUpdate(o, n);
}

function validateUpdate(o: Work, n: Work): FieldError[] {
  const errs: FieldError[] = [];
  if (n.type === 'ExternalName' || o.type === 'ExternalName') return errs;
  const oldHeadless = isHeadless(o);
  const newHeadless = isHeadless(n);
  if (!(oldHeadless && newHeadless)) {
    const oldIPs = o.clusterIPs;
    const newIPs = n.clusterIPs;
    if (oldIPs.length === newIPs.length) {
      oldIPs.forEach((ip, i) => {
        if (ip !== newIPs[i]) errs.push(invalid(`spec.clusterIPs[${i}]`, newIPs, 'may not change once set'));
      });
    } else if (oldIPs.length > newIPs.length) {
      if (newIPs.length === 0) errs.push(invalid('spec.clusterIPs[0]', newIPs, 'primary clusterIP can not be unset'));
      if (oldIPs.length > 0 && newIPs.length > 0 && newIPs[0] !== oldIPs[0]) {
        errs.push(invalid('spec.clusterIPs[0]', newIPs, 'may not change once set'));
      }
      if (newIPs.length === 1 && n.ipFamilyPolicy !== 'SingleStack') {
        errs.push(invalid('spec.ipFamilyPolicy', n.ipFamilyPolicy, "must be set to 'SingleStack' when releasing the secondary clusterIP"));
      }
    } else if (oldIPs.length > 0 && newIPs[0] !== oldIPs[0]) {
      errs.push(invalid('spec.clusterIPs[0]', newIPs, 'may not change once set'));
    }
  }
  if (newHeadless !== oldHeadless || newHeadless) return errs;
  const oldF = o.ipFamilies;
  const newF = n.ipFamilies;
  if (oldF.length === newF.length) {
    oldF.forEach((f, i) => {
      if (f !== newF[i]) errs.push(invalid('spec.ipFamilies[0]', newF, 'may not change once set'));
    });
  } else if (oldF.length > newF.length) {
    if (n.clusterIPs.length === 0) errs.push(invalid('spec.ipFamilies[0]', newF, 'primary ipFamily can not be unset'));
    if (newF.length > 0 && newF[0] !== oldF[0]) errs.push(invalid('spec.ipFamilies[0]', n.clusterIPs, 'may not change once set'));
    if (newF.length === 1 && n.ipFamilyPolicy !== 'SingleStack') {
      errs.push(invalid('spec.ipFamilyPolicy', n.ipFamilyPolicy, "must be set to 'SingleStack' when releasing the secondary ipFamily"));
    }
  } else if (oldF.length > 0 && newF.length > 0 && newF[0] !== oldF[0]) {
    errs.push(invalid('spec.ipFamilies[0]', n.clusterIPs, 'may not change once set'));
  }
  return errs;
}

/** `normalizeClusterIPs`: keep `clusterIP` and `clusterIPs` in sync for old clients. */
function normalize(n: Work, o: Work | undefined): void {
  if (o === undefined) {
    if (n.clusterIP !== '' && n.clusterIPs.length === 0) n.clusterIPs = [n.clusterIP];
    return;
  }
  if (o.clusterIPs.length > 0 && n.clusterIPs.length === 0 && o.clusterIP === n.clusterIP) {
    n.clusterIPs = [...o.clusterIPs];
  }
  if (o.clusterIP !== n.clusterIP) {
    if (o.clusterIP !== '' && n.clusterIP === '') {
      if (sameStrings(o.clusterIPs, n.clusterIPs)) n.clusterIPs = [];
      return;
    }
    if (n.clusterIP !== '' && sameStrings(o.clusterIPs, n.clusterIPs)) n.clusterIPs = [n.clusterIP];
  }
}

/** The clusterIP half of `patchAllocatedValues`: an update that omits the IPs keeps the allocated ones. */
function patchAllocated(n: Work, o: Work): void {
  if (o.type !== 'ExternalName' && n.type !== 'ExternalName') {
    if (n.clusterIP === '') n.clusterIP = o.clusterIP;
    if (n.clusterIPs.length === 0 && o.clusterIPs.length > 0) n.clusterIPs = [...o.clusterIPs];
  }
}

/** `isMatchingPreferDualStackClusterIPFields`: PreferDualStack services are never auto up/downgraded. */
function matchingPreferDualStack(n: Work, o: Work | undefined): boolean {
  if (o === undefined) return false;
  if (n.ipFamilyPolicy === undefined) return false;
  if (o.type !== n.type) return false;
  if (n.type !== 'ClusterIP' && n.type !== 'NodePort' && n.type !== 'LoadBalancer') return false;
  if (n.ipFamilyPolicy !== 'PreferDualStack') return false;
  if (o.ipFamilyPolicy !== undefined && o.ipFamilyPolicy !== 'PreferDualStack') return false;
  return sameStrings(n.clusterIPs, o.clusterIPs) && sameStrings(n.ipFamilies, o.ipFamilies);
}

function otherFamily(f: string): IPFamily {
  return f === 'IPv4' ? 'IPv6' : 'IPv4';
}

/** `initIPFamilyFields` (§7 steps 1-11), mutating `s`. Throws ServiceInvalidError. */
function initFamilies(s: Work, clusterFamilies: readonly IPFamily[], o: Work | undefined): void {
  if (s.type === 'ExternalName') return;
  if (matchingPreferDualStack(s, o)) return;
  if (s.ipFamilyPolicy === undefined) {
    if (o?.ipFamilyPolicy !== undefined) s.ipFamilyPolicy = o.ipFamilyPolicy;
    else if (s.clusterIP === CLUSTER_IP_NONE && s.selectorless) s.ipFamilyPolicy = 'RequireDualStack';
    else s.ipFamilyPolicy = 'SingleStack';
  }
  const pre = validateRelated(s);
  if (pre.length > 0) throw new ServiceInvalidError(s.name, pre);

  const el: FieldError[] = [];
  if (o !== undefined) {
    if (s.ipFamilyPolicy === 'SingleStack') {
      if (sameStrings(o.clusterIPs, s.clusterIPs) && s.clusterIPs.length > 1) s.clusterIPs = s.clusterIPs.slice(0, 1);
      if (sameStrings(o.ipFamilies, s.ipFamilies) && s.ipFamilies.length > 1) s.ipFamilies = s.ipFamilies.slice(0, 1);
    } else {
      if (s.clusterIPs.length > 0 && s.clusterIPs.length < o.clusterIPs.length) {
        el.push(invalid('spec.ipFamilyPolicy', s.ipFamilyPolicy, "must be 'SingleStack' to release the secondary cluster IP"));
      }
      if (s.ipFamilies.length > 0 && s.ipFamilies.length < o.ipFamilies.length) {
        el.push(invalid('spec.ipFamilyPolicy', s.ipFamilyPolicy, "must be 'SingleStack' to release the secondary IP family"));
      }
    }
  }
  if (s.ipFamilyPolicy === 'SingleStack') {
    if (s.clusterIPs.length === 2) {
      el.push(invalid('spec.ipFamilyPolicy', s.ipFamilyPolicy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"));
    }
    if (s.ipFamilies.length === 2) {
      el.push(invalid('spec.ipFamilyPolicy', s.ipFamilyPolicy, "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"));
    }
  }
  for (let i = 0; i < s.clusterIPs.length; i++) {
    const ip = s.clusterIPs[i] ?? '';
    if (ip === CLUSTER_IP_NONE) break;
    const fam = familyOfValid(ip);
    if (i >= s.ipFamilies.length) {
      if (!clusterFamilies.includes(fam)) {
        el.push(invalid(`spec.clusterIPs[${i}]`, s.clusterIPs, `${fam} is not configured on this cluster`));
      } else {
        s.ipFamilies.push(fam);
      }
    }
  }
  if (el.length > 0) throw new ServiceInvalidError(s.name, el);

  const primary = clusterFamilies[0] ?? 'IPv4';
  if (s.clusterIP === CLUSTER_IP_NONE && s.selectorless) {
    if (s.ipFamilies.length === 0) s.ipFamilies = [primary];
    // Even on a single-stack cluster: headless selectorless services may be dual-stack.
    if (s.ipFamilies.length < 2 && s.ipFamilyPolicy !== 'SingleStack') {
      s.ipFamilies.push(otherFamily(s.ipFamilies[0] ?? primary));
    }
    return;
  }
  if (s.ipFamilyPolicy === 'RequireDualStack' && clusterFamilies.length < 2) {
    el.push(invalid('spec.ipFamilyPolicy', s.ipFamilyPolicy, 'this cluster is not configured for dual-stack services'));
  }
  s.ipFamilies.forEach((fam, i) => {
    if (!clusterFamilies.includes(fam as IPFamily)) el.push(invalid(`spec.ipFamilies[${i}]`, fam, 'not configured on this cluster'));
  });
  if (el.length > 0) throw new ServiceInvalidError(s.name, el);
  if (s.ipFamilies.length === 0) s.ipFamilies = [primary];
  if (s.ipFamilyPolicy !== 'SingleStack' && s.ipFamilies.length === 1 && clusterFamilies.length === 2) {
    s.ipFamilies.push(otherFamily(s.ipFamilies[0] ?? primary));
  }
}

/** Options of {@link planServiceIPs}. */
export interface PlanOptions {
  /**
   * Skip the final validation (type rules and §8.2 update rules). The allocator sets
   * this and runs {@link validateServiceIPs} on the allocated fields instead, because
   * upstream validates *after* `BeginCreate`/`BeginUpdate` allocated (and reverts on
   * failure), which decides which error wins when there are several.
   */
  readonly deferValidation?: boolean;
}

/**
 * Everything before allocation, create (`before` undefined) or update, in upstream
 * order: keep allocated IPs an update omits (`patchAllocatedValues`), normalise
 * clusterIP/clusterIPs, `initIPFamilyFields` (which runs
 * `ValidateServiceClusterIPsRelatedFields` itself), then the final validation
 * ({@link validateServiceIPs}) unless deferred.
 *
 * `clusterFamilies` are the families of the configured service CIDRs, primary first
 * (the primary is the default family). Throws {@link ServiceInvalidError} (422) with
 * the upstream field errors.
 *
 * @example
 * planServiceIPs({ type: 'ClusterIP', ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6'] }, ['IPv4', 'IPv6'])
 * // => { ipFamilies: ['IPv6', 'IPv4'], ipFamilyPolicy: 'PreferDualStack', clusterIPs: [], ... }
 */
export function planServiceIPs(
  after: ServiceIPSpec,
  clusterFamilies: readonly IPFamily[],
  before?: ServiceIPSpec,
  options: PlanOptions = {},
): ServiceIPPlan {
  if (before !== undefined) before = defaultStoredServiceIPs(before, clusterFamilies);
  const n = work(after);
  const o = before === undefined ? undefined : work(before);
  for (const w of o === undefined ? [n] : [n, o]) {
    w.clusterIP = canon(w.clusterIP);
    w.clusterIPs = w.clusterIPs.map(canon);
  }
  // storage.go beginUpdate: patchAllocatedValues, then normalizeClusterIPs.
  if (o !== undefined) patchAllocated(n, o);
  normalize(n, o);
  initFamilies(n, clusterFamilies, o);
  const plan: ServiceIPPlan = {
    name: n.name,
    type: n.type,
    headless: isHeadless(n),
    ipFamilies: n.ipFamilies as IPFamily[],
    clusterIPs: n.clusterIPs,
    ...(n.ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy: n.ipFamilyPolicy as IPFamilyPolicy }),
  };
  if (!options.deferValidation) {
    const errs = validateServiceIPs({ ...plan, clusterIP: n.clusterIP }, before);
    if (errs.length > 0) throw new ServiceInvalidError(n.name, errs);
  }
  return plan;
}

/**
 * The validation upstream runs on the finished object (`BeforeCreate` /
 * `BeforeUpdate` after allocation): the type rules of {@link validateServiceIPFields}
 * and, on update, {@link validateServiceIPUpdate}.
 */
export function validateServiceIPs(final: ServiceIPSpec, before?: ServiceIPSpec): FieldError[] {
  const n = work(final);
  n.clusterIP = canon(n.clusterIP);
  n.clusterIPs = n.clusterIPs.map(canon);
  const errs = validateTyped(n);
  if (before !== undefined) {
    const o = work(before);
    o.clusterIP = canon(o.clusterIP);
    o.clusterIPs = o.clusterIPs.map(canon);
    errs.push(...validateUpdate(o, n));
  }
  return errs;
}
