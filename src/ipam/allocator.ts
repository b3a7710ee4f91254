/**
 * `ClusterIPAllocator`: the ClusterIP allocator of the embedded registry, one bitmap
 * {@link Range} per configured service CIDR (at most two, one per family, primary
 * first), plus the Service-level allocation flow of Kubernetes
 * `pkg/registry/core/service/storage/alloc.go` (`allocateCreate` / `allocateUpdate`,
 * `allocClusterIPs`, `allocIPs`, `updateClusterIPs`, `releaseClusterIPs`).
 *
 * The CIDR list is validated like kube-apiserver's `--service-cluster-ip-range`
 * (`cmd/kube-apiserver/app/options/validation.go` `validateClusterIPFlags`, maxCIDRBits 20).
 *
 * Every Service-level call is all-or-nothing: when one family fails, IPs already taken
 * for the others are released before the error is thrown. The returned
 * {@link ServiceIPAllocation} is upstream's transaction: `commit()` performs the
 * releases an update deferred (dropped secondary IP, type change to ExternalName),
 * `revert()` gives back what the call allocated (use it when a later step, such as
 * NodePort allocation or persisting the object, fails).
 *
 * @module
 */
import type { IPFamily, IPFamilyPolicy, ServiceType } from '../cluster/model.js';
import type { RandomInt } from './bitmap.js';
import { ErrMismatchedNetwork, ServiceCidrConfigError } from './errors.js';
import {
  type ServiceIPPlan,
  type ServiceIPSpec,
  CLUSTER_IP_NONE,
  defaultStoredServiceIPs,
  planServiceIPs,
  validateServiceIPs,
} from './families.js';
import { ServiceInternalError, ServiceInvalidError, invalid } from './field.js';
import { Cidr, IP, toIP } from './ip.js';
import { type IPRangeAllocator, Range } from './range.js';

/** `maxCIDRBits` of kube-apiserver: at most 2^20 addresses per service CIDR. */
export const MAX_SERVICE_CIDR_BITS = 20;

/**
 * Validates a service CIDR list like `--service-cluster-ip-range` and returns the parsed
 * CIDRs, primary first. Accepts the comma-separated flag text or a list. Throws
 * {@link ServiceCidrConfigError} listing every upstream message, e.g.
 * `specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12`.
 */
export function validateServiceCidrs(cidrs: string | readonly string[]): Cidr[] {
  const list = (typeof cidrs === 'string' ? cidrs.split(',') : [...cidrs]).map((s) => s.trim());
  const errors: string[] = [];
  if (list.length === 0 || (list.length === 1 && list[0] === '')) {
    throw new ServiceCidrConfigError(['--service-cluster-ip-range must contain at least one valid cidr']);
  }
  if (list.length > 2) errors.push('--service-cluster-ip-range must not contain more than two entries');
  const parsed: Cidr[] = [];
  for (let i = 0; i < Math.min(list.length, 2); i++) {
    try {
      parsed.push(Cidr.parse(list[i] ?? ''));
    } catch (err) {
      errors.push(`service-cluster-ip-range[${i}] is not a valid cidr: ${(err as Error).message}`);
    }
  }
  const maxRange = (c: Cidr, flag: string) => {
    if (c.hostBits > MAX_SERVICE_CIDR_BITS) {
      errors.push(`specified ${flag} is too large; for ${c.bits}-bit addresses, the mask must be >= ${c.bits - MAX_SERVICE_CIDR_BITS}`);
    }
  };
  const [primary, secondary] = parsed;
  if (errors.length === 0 && primary !== undefined) {
    maxRange(primary, '--service-cluster-ip-range');
    if (secondary !== undefined) {
      if (secondary.family === primary.family) {
        errors.push('--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family');
      }
      maxRange(secondary, '--service-cluster-ip-range[1]');
    }
  }
  if (errors.length > 0) throw new ServiceCidrConfigError(errors);
  return parsed;
}

/** One range in a {@link ClusterIPSnapshot}: a `RangeAllocation` with the bitmap as base64 (its JSON wire form). */
export interface RangeAllocationJSON {
  readonly family: IPFamily;
  /** The CIDR, e.g. `10.96.0.0/12`. */
  readonly range: string;
  /** Bitmap bytes (big-endian, minimal) in base64; `""` when nothing is allocated. */
  readonly data: string;
}

/** JSON-serialisable state of every family, primary first. */
export interface ClusterIPSnapshot {
  readonly ranges: readonly RangeAllocationJSON[];
}

/**
 * The IP fields a Service ends up with, plus the transaction of the call.
 * ExternalName: `clusterIP ''`, no IPs, no families, policy undefined.
 * Headless: `clusterIP 'None'`, `clusterIPs ['None']`, families but nothing allocated.
 */
export interface ServiceIPAllocation {
  readonly name: string;
  readonly type: ServiceType;
  readonly clusterIP: string;
  readonly clusterIPs: readonly string[];
  readonly ipFamilies: readonly IPFamily[];
  readonly ipFamilyPolicy?: IPFamilyPolicy;
  /** IPs this call took from the allocator (what `revert()` gives back). */
  readonly allocated: readonly string[];
  /** IPs the update gives up; released by `commit()`. Always empty on create. */
  readonly toRelease: readonly string[];
  readonly dryRun: boolean;
  /** Success: release `toRelease`. Idempotent; a no-op after `revert()`. */
  commit(): void;
  /** Failure of a later step: release `allocated`. Idempotent; a no-op after `commit()`. */
  revert(): void;
}

/** Options of {@link ClusterIPAllocator}. */
export interface ClusterIPAllocatorOptions {
  /** Injectable RNG (tests). */
  readonly random?: RandomInt;
}

/** Options of a Service-level call. */
export interface AllocateOptions {
  /** Validate and compute without changing any bitmap (`?dryRun=All`). */
  readonly dryRun?: boolean;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function toBase64(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
}

function fromBase64(data: string): Uint8Array {
  return new Uint8Array(Buffer.from(data, 'base64'));
}

/** The ClusterIP allocator over one range per configured family. */
export class ClusterIPAllocator {
  /** Configured families, primary (default) first. */
  readonly families: readonly IPFamily[];
  readonly #ranges: Range[];
  readonly #byFamily = new Map<IPFamily, Range>();

  /**
   * @param cidrs `--service-cluster-ip-range` text (`"10.96.0.0/12,fd00::/108"`) or a list.
   * Throws {@link ServiceCidrConfigError}.
   */
  constructor(cidrs: string | readonly string[], options: ClusterIPAllocatorOptions = {}) {
    const parsed = validateServiceCidrs(cidrs);
    const rangeOptions = options.random === undefined ? {} : { random: options.random };
    this.#ranges = parsed.map((c) => new Range(c, rangeOptions));
    for (const r of this.#ranges) this.#byFamily.set(r.family, r);
    this.families = this.#ranges.map((r) => r.family);
  }

  /** Builds the allocator for the snapshot's ranges and restores them. */
  static fromSnapshot(snap: ClusterIPSnapshot, options: ClusterIPAllocatorOptions = {}): ClusterIPAllocator {
    const a = new ClusterIPAllocator(snap.ranges.map((r) => r.range), options);
    a.restore(snap);
    return a;
  }

  /** The default family: that of the first CIDR. */
  get primaryFamily(): IPFamily {
    return this.families[0] ?? 'IPv4';
  }

  /** The ranges, primary first. */
  get ranges(): readonly Range[] {
    return this.#ranges;
  }

  /** The range serving a family, if configured. */
  rangeFor(family: IPFamily): Range | undefined {
    return this.#byFamily.get(family);
  }

  #rangeForIP(ip: IP): Range {
    const r = this.#byFamily.get(ip.family);
    if (r === undefined) throw new ErrMismatchedNetwork();
    return r;
  }

  /**
   * Reserves one specific IP. Throws ErrMismatchedNetwork when its family has no range,
   * else what `Range.allocate` throws (ErrNotInRange, ErrAllocated).
   */
  allocateSpecific(ip: IP | string): string {
    const addr = toIP(ip);
    this.#rangeForIP(addr).allocate(addr);
    return addr.toString();
  }

  /** Allocates a free IP of a family (default: the primary). Throws ErrFull or ErrMismatchedNetwork. */
  allocateNext(family: IPFamily = this.primaryFamily): string {
    const r = this.#byFamily.get(family);
    if (r === undefined) throw new ErrMismatchedNetwork();
    return r.allocateNext().toString();
  }

  /** Releases an IP; a no-op for unconfigured families, out-of-range or free IPs. */
  release(ip: IP | string): void {
    const addr = toIP(ip);
    this.#byFamily.get(addr.family)?.release(addr);
  }

  /** True when the IP is allocated in its family's range. Unparseable text gives false. */
  has(ip: IP | string): boolean {
    const addr = typeof ip === 'string' ? IP.parse(ip) : ip;
    if (addr === undefined) return false;
    return this.#byFamily.get(addr.family)?.has(addr) ?? false;
  }

  /** Per-family usage, primary first. */
  usage(): Array<{ family: IPFamily; cidr: string; size: number; used: number; free: number }> {
    return this.#ranges.map((r) => ({ family: r.family, cidr: r.cidr.toString(), size: r.max, used: r.used(), free: r.free() }));
  }

  /**
   * Creates a Service's IP fields (`allocateCreate`): families and policy per
   * `initIPFamilyFields`, then one IP per family (the requested one, or the next free).
   *
   * Throws {@link ServiceInvalidError} (422) for validation errors and for a requested
   * IP that can not be had (`failed to allocate IP 10.0.0.5: provided IP is already allocated`),
   * and {@link ServiceInternalError} (500) when a range is full
   * (`failed to allocate a serviceIP: range is full`). Nothing stays allocated on error.
   */
  allocateService(spec: ServiceIPSpec, options: AllocateOptions = {}): ServiceIPAllocation {
    const dryRun = options.dryRun ?? false;
    const plan = planServiceIPs(spec, this.families, undefined, { deferValidation: true });
    const { clusterIPs, allocated } = this.#allocClusterIPs(plan, dryRun);
    return this.#validated(this.#result(plan, clusterIPs, allocated, [], dryRun), undefined);
  }

  /** Upstream validates after allocating (BeforeCreate/BeforeUpdate) and reverts on failure. */
  #validated(result: ServiceIPAllocation, before: ServiceIPSpec | undefined): ServiceIPAllocation {
    const errs = validateServiceIPs(result, before);
    if (errs.length > 0) {
      result.revert();
      throw new ServiceInvalidError(result.name, errs);
    }
    return result;
  }

  /**
   * Updates a Service's IP fields (`allocateUpdate` / `updateClusterIPs`). `before` is
   * the stored object (e.g. the previous {@link ServiceIPAllocation}); `after` the new
   * spec. IPs the update omits are kept. Cases: ExternalName -> other type allocates
   * fresh IPs; other -> ExternalName releases all on commit; single -> dual allocates the
   * secondary; dual -> single (policy SingleStack) releases the old secondary on commit.
   */
  updateService(before: ServiceIPSpec, after: ServiceIPSpec, options: AllocateOptions = {}): ServiceIPAllocation {
    // Not an upstream state (a stored Service always has its IPs): a `before` that never
    // got an address is treated as a create, so the result cannot lack IPs.
    const hasIPs = (before.clusterIPs?.length ?? 0) > 0 || (before.clusterIP ?? '') !== '';
    if (before.type !== 'ExternalName' && !hasIPs) return this.allocateService(after, options);
    const stored = defaultStoredServiceIPs(before, this.families);
    const result = this.#update(stored, after, options.dryRun ?? false);
    return this.#validated(result, stored);
  }

  #update(before: ServiceIPSpec, after: ServiceIPSpec, dryRun: boolean): ServiceIPAllocation {
    const plan = planServiceIPs(after, this.families, before, { deferValidation: true });
    const oldIPs = [...(before.clusterIPs ?? (before.clusterIP ? [before.clusterIP] : []))].map((ip) => IP.parse(ip)?.toString() ?? ip);
    const oldFamilies = [...(before.ipFamilies ?? [])];
    const noop = () => this.#result(plan, [...plan.clusterIPs], [], [], dryRun);

    if (before.type === 'ExternalName' && plan.type !== 'ExternalName') {
      const { clusterIPs, allocated } = this.#allocClusterIPs(plan, dryRun);
      return this.#result(plan, clusterIPs, allocated, [], dryRun);
    }
    if (oldIPs[0] === CLUSTER_IP_NONE) return noop();
    if (before.type !== 'ExternalName' && plan.type === 'ExternalName') {
      const toRelease = oldIPs.filter((ip) => ip !== '');
      // strategy.go dropTypeDependentFields: fields left as they were are wiped.
      const sameIPs = sameStrings(plan.clusterIPs, oldIPs);
      const dropped: ServiceIPPlan = {
        name: plan.name,
        type: plan.type,
        headless: false,
        ipFamilies: sameStrings(plan.ipFamilies, oldFamilies) ? [] : plan.ipFamilies,
        clusterIPs: sameIPs ? [] : plan.clusterIPs,
        ...(plan.ipFamilyPolicy === undefined || plan.ipFamilyPolicy === before.ipFamilyPolicy
          ? {}
          : { ipFamilyPolicy: plan.ipFamilyPolicy }),
      };
      return this.#result(dropped, [...dropped.clusterIPs], [], toRelease, dryRun);
    }
    if (oldFamilies.length === 1 && plan.ipFamilies.length === 2) {
      const clusterIPs = [...plan.clusterIPs];
      if (clusterIPs.length < 2) clusterIPs.push('');
      const family = plan.ipFamilies[1] as IPFamily;
      const ip = this.#allocOne(plan.name, family, clusterIPs[1] ?? '', clusterIPs, dryRun);
      clusterIPs[1] = ip;
      return this.#result(plan, clusterIPs, dryRun ? [] : [ip], [], dryRun);
    }
    if (oldFamilies.length === 2 && plan.ipFamilies.length === 1) {
      const secondary = oldIPs[1];
      return this.#result(plan, [...plan.clusterIPs], [], secondary === undefined ? [] : [secondary], dryRun);
    }
    return noop();
  }

  /**
   * Releases a deleted Service's clusterIPs (`releaseClusterIPs`): nothing for
   * ExternalName or headless; IPs of unconfigured families are skipped. Returns the IPs
   * handed back.
   */
  releaseService(svc: Pick<ServiceIPSpec, 'type' | 'clusterIP' | 'clusterIPs'>): string[] {
    if (svc.type === 'ExternalName') return [];
    const ips = svc.clusterIPs !== undefined && svc.clusterIPs.length > 0 ? svc.clusterIPs : svc.clusterIP ? [svc.clusterIP] : [];
    if (ips[0] === CLUSTER_IP_NONE) return [];
    const released: string[] = [];
    for (const text of ips) {
      const ip = IP.parse(text);
      if (ip === undefined) continue;
      const r = this.#byFamily.get(ip.family);
      if (r === undefined) continue;
      r.release(ip);
      released.push(ip.toString());
    }
    return released;
  }

  /** `allocClusterIPs`: one IP per family of the plan; all or nothing. */
  #allocClusterIPs(plan: ServiceIPPlan, dryRun: boolean): { clusterIPs: string[]; allocated: string[] } {
    // ExternalName gets nothing; whatever the user set stays for validation to reject.
    if (plan.type === 'ExternalName') return { clusterIPs: [...plan.clusterIPs], allocated: [] };
    if (plan.headless) return { clusterIPs: [CLUSTER_IP_NONE], allocated: [] };
    // Pad with "" markers, as upstream does (they show up in the 422 error value).
    const clusterIPs = plan.ipFamilies.map((_, i) => plan.clusterIPs[i] ?? '');
    const allocated: string[] = [];
    const out: string[] = [];
    try {
      plan.ipFamilies.forEach((family, i) => {
        const ip = this.#allocOne(plan.name, family, clusterIPs[i] ?? '', clusterIPs, dryRun);
        if (!dryRun) allocated.push(ip);
        out.push(ip);
      });
    } catch (err) {
      for (const ip of allocated) this.release(ip);
      throw err;
    }
    return { clusterIPs: out, allocated };
  }

  /** `allocIPs` for one family: next free when `want` is "", else that IP. */
  #allocOne(name: string, family: IPFamily, want: string, clusterIPs: readonly string[], dryRun: boolean): string {
    const range = this.#byFamily.get(family);
    if (range === undefined) throw new ServiceInternalError(`failed to allocate a serviceIP: ${new ErrMismatchedNetwork().message}`);
    const r: IPRangeAllocator = dryRun ? range.dryRun() : range;
    if (want === '') {
      try {
        return r.allocateNext().toString();
      } catch (err) {
        throw new ServiceInternalError(`failed to allocate a serviceIP: ${(err as Error).message}`, err);
      }
    }
    try {
      r.allocate(want);
    } catch (err) {
      throw new ServiceInvalidError(name, [
        invalid('spec.clusterIPs', clusterIPs, `failed to allocate IP ${want}: ${(err as Error).message}`),
      ]);
    }
    return want;
  }

  #result(
    plan: ServiceIPPlan,
    clusterIPs: string[],
    allocated: string[],
    toRelease: string[],
    dryRun: boolean,
  ): ServiceIPAllocation {
    let settled = false;
    const self = this;
    return {
      name: plan.name,
      type: plan.type,
      clusterIP: clusterIPs[0] ?? '',
      clusterIPs,
      ipFamilies: plan.ipFamilies,
      ...(plan.ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy: plan.ipFamilyPolicy }),
      allocated,
      toRelease,
      dryRun,
      commit() {
        if (settled) return;
        settled = true;
        if (!dryRun) for (const ip of toRelease) self.release(ip);
      },
      revert() {
        if (settled) return;
        settled = true;
        if (!dryRun) for (const ip of allocated) self.release(ip);
      },
    };
  }

  /** JSON-serialisable snapshot of every range, primary first. */
  snapshot(): ClusterIPSnapshot {
    return {
      ranges: this.#ranges.map((r) => {
        const s = r.snapshot();
        return { family: r.family, range: s.range, data: toBase64(s.data) };
      }),
    };
  }

  /**
   * Replaces the state with a snapshot. Every entry must match a configured range
   * (same network and prefix) or nothing changes and {@link ErrMismatchedNetwork} is
   * thrown. Configured ranges absent from the snapshot become empty.
   */
  restore(snap: ClusterIPSnapshot): void {
    const next = new Map<Range, Uint8Array>();
    for (const entry of snap.ranges) {
      const cidr = Cidr.parse(entry.range);
      const r = this.#byFamily.get(cidr.family);
      if (r === undefined || !r.cidr.equals(cidr) || next.has(r)) throw new ErrMismatchedNetwork();
      next.set(r, fromBase64(entry.data));
    }
    for (const r of this.#ranges) r.restore(r.cidr, next.get(r) ?? new Uint8Array(0));
  }
}
