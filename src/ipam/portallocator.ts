/**
 * The NodePort allocator, ported from Kubernetes
 * `pkg/registry/core/service/portallocator/allocator.go` (+ `operation.go`) over the
 * same {@link AllocationBitmap}, and the NodePort half of
 * `pkg/registry/core/service/storage/alloc.go` (`initNodePorts`, `updateNodePorts`,
 * `releaseNodePorts`) with the matching bits of `patchAllocatedValues` and
 * `dropTypeDependentFields`.
 *
 * ```
 * max    = range size (hi - lo + 1), offset 0 <=> lo, rangeSpec "lo-hi"
 * bands  = KEP-3668: size <= 16 ? 0 : clamp(size / 32, 16, 128)   // 30000-32767 -> 86
 * ```
 *
 * Service ports with the same `port` number (53/TCP and 53/UDP) share one nodePort on
 * create. `healthCheckNodePort` is not modelled (the slim Service has no
 * externalTrafficPolicy); the allocator itself would serve it the same way.
 *
 * @module
 */
import type { Protocol, ServicePort, ServiceType } from '../cluster/model.js';
import { AllocationBitmap, type RandomInt } from './bitmap.js';
import { ErrFull, ErrPortAllocated, ErrPortNotInRange, ErrPortRangeMismatch, InvalidPortRangeError } from './errors.js';
import { type FieldError, ServiceInternalError, ServiceInvalidError, duplicate, forbidden, invalid } from './field.js';

/** kube-apiserver `--service-node-port-range` default. */
export const DEFAULT_NODE_PORT_RANGE = '30000-32767';

function atoi(s: string): number {
  if (!/^[+-]?[0-9]+$/.test(s)) throw new Error(`strconv.Atoi: parsing ${JSON.stringify(s)}: invalid syntax`);
  return Number.parseInt(s, 10);
}

/** `utilnet.PortRange`: `base` and `size`; printed as `lo-hi`. */
export class PortRange {
  readonly base: number;
  readonly size: number;

  constructor(base: number, size: number) {
    this.base = base;
    this.size = size;
  }

  /**
   * `PortRange.Set`: `"lo-hi"`, `"base+offset"` or a single port; `""` is the empty
   * range. Throws {@link InvalidPortRangeError} with the upstream message.
   */
  static parse(text: string): PortRange {
    const value = text.trim();
    if (value === '') return new PortRange(0, 0);
    const hyphen = value.indexOf('-');
    const plus = value.indexOf('+');
    let low: number;
    let high: number;
    try {
      if (hyphen < 0 && plus < 0) {
        low = high = atoi(value);
      } else if (hyphen >= 0 && plus < 0) {
        low = atoi(value.slice(0, hyphen));
        high = atoi(value.slice(hyphen + 1));
      } else if (plus >= 0 && hyphen < 0) {
        low = atoi(value.slice(0, plus));
        high = low + atoi(value.slice(plus + 1));
      } else {
        throw new Error(`unable to parse port range: ${value}`);
      }
    } catch (err) {
      throw new InvalidPortRangeError(text, (err as Error).message);
    }
    if (low > 65535 || high > 65535) throw new InvalidPortRangeError(text, `the port range cannot be greater than 65535: ${value}`);
    if (high < low) throw new InvalidPortRangeError(text, `end port cannot be less than start port: ${value}`);
    return new PortRange(low, high - low + 1);
  }

  contains(port: number): boolean {
    return port >= this.base && port < this.base + this.size;
  }

  /** `"lo-hi"`; `""` for the empty range. */
  toString(): string {
    return this.size === 0 ? '' : `${this.base}-${this.base + this.size - 1}`;
  }
}

/** KEP-3668 static band size: `size <= 16 ? 0 : clamp(size / 32, 16, 128)`. */
export function calculatePortRangeOffset(size: number): number {
  const min = 16;
  const max = 128;
  const step = 32;
  if (size <= min) return 0;
  const offset = Math.floor(size / step);
  if (offset < min) return min;
  if (offset > max) return max;
  return offset;
}

/** `RangeAllocation` of the NodePort allocator in JSON form. */
export interface PortAllocationJSON {
  readonly range: string;
  /** Bitmap bytes (big-endian, minimal) in base64. */
  readonly data: string;
}

/** A Service's NodePort-relevant fields. Ports use the slim model shape. */
export interface NodePortSpec {
  readonly name?: string;
  readonly type: ServiceType;
  readonly ports: readonly ServicePort[];
  /** `spec.allocateLoadBalancerNodePorts` (LoadBalancer only); default true. */
  readonly allocateLoadBalancerNodePorts?: boolean;
}

/** The ports with their nodePorts, plus the transaction (like `ServiceIPAllocation`). */
export interface NodePortAllocation {
  readonly ports: readonly ServicePort[];
  /** NodePorts this call took (released by `revert()`). */
  readonly allocated: readonly number[];
  /** NodePorts the update gives up (released by `commit()`). */
  readonly toRelease: readonly number[];
  readonly dryRun: boolean;
  commit(): void;
  revert(): void;
}

/** Options of {@link PortAllocator}. */
export interface PortAllocatorOptions {
  readonly random?: RandomInt;
}

function needsNodePort(type: ServiceType): boolean {
  return type === 'NodePort' || type === 'LoadBalancer';
}

function shouldAllocate(spec: NodePortSpec): boolean {
  if (spec.type === 'NodePort') return true;
  if (spec.type === 'LoadBalancer') return spec.allocateLoadBalancerNodePorts ?? true;
  return false;
}

function nodePortsOf(ports: readonly ServicePort[]): number[] {
  return ports.map((p) => p.nodePort ?? 0).filter((n) => n !== 0);
}

/** `portallocator.PortAllocator`: the NodePort bitmap. */
export class PortAllocator {
  readonly range: PortRange;
  /** Size of the static band. */
  readonly offset: number;
  readonly #bitmap: AllocationBitmap;

  constructor(range: PortRange | string = DEFAULT_NODE_PORT_RANGE, options: PortAllocatorOptions = {}) {
    this.range = typeof range === 'string' ? PortRange.parse(range) : range;
    this.offset = calculatePortRangeOffset(this.range.size);
    this.#bitmap = new AllocationBitmap(this.range.size, this.range.toString(), {
      offset: this.offset,
      ...(options.random === undefined ? {} : { random: options.random }),
    });
  }

  /** A new allocator for `snap.range` with `snap.data` restored. */
  static fromSnapshot(snap: PortAllocationJSON, options: PortAllocatorOptions = {}): PortAllocator {
    const a = new PortAllocator(snap.range, options);
    a.restore(snap.range, new Uint8Array(Buffer.from(snap.data, 'base64')));
    return a;
  }

  /** Reserves a port. Throws {@link ErrPortNotInRange} or {@link ErrPortAllocated}. */
  allocate(port: number): void {
    if (!Number.isInteger(port) || !this.range.contains(port)) throw new ErrPortNotInRange(this.range.toString());
    if (!this.#bitmap.allocate(port - this.range.base)) throw new ErrPortAllocated();
  }

  /** A free port, upper band first. Throws {@link ErrFull}. */
  allocateNext(): number {
    const off = this.#bitmap.allocateNext();
    if (off === undefined) throw new ErrFull();
    return this.range.base + off;
  }

  /** Frees a port; out of range or free: no-op. */
  release(port: number): void {
    if (!Number.isInteger(port) || !this.range.contains(port)) return;
    this.#bitmap.release(port - this.range.base);
  }

  has(port: number): boolean {
    return Number.isInteger(port) && this.range.contains(port) && this.#bitmap.has(port - this.range.base);
  }

  /** Allocated ports, ascending. */
  forEach(fn: (port: number) => void): void {
    this.#bitmap.forEach((off) => fn(this.range.base + off));
  }

  used(): number {
    return this.range.size - this.#bitmap.free();
  }

  free(): number {
    return this.#bitmap.free();
  }

  snapshot(): { range: string; data: Uint8Array } {
    return { range: this.range.toString(), data: this.#bitmap.snapshot().data };
  }

  /** JSON form of {@link snapshot} (data in base64). */
  snapshotJSON(): PortAllocationJSON {
    const s = this.snapshot();
    return { range: s.range, data: Buffer.from(s.data).toString('base64') };
  }

  /** The range text must be identical, else {@link ErrPortRangeMismatch}. */
  restore(range: PortRange | string, data: Uint8Array): void {
    const text = typeof range === 'string' ? range : range.toString();
    if (text !== this.range.toString()) throw new ErrPortRangeMismatch();
    this.#bitmap.restore(text, data);
  }

  /**
   * NodePorts for a new Service (`initNodePorts`). Only NodePort and LoadBalancer get
   * ports (LoadBalancer with `allocateLoadBalancerNodePorts: false` only keeps explicit
   * ones); service ports with the same number share one nodePort. A requested port that
   * can not be had is a 422 on `spec.ports[i].nodePort`; an exhausted range is a 500
   * `failed to allocate a nodePort: range is full`. All or nothing.
   */
  allocateService(spec: NodePortSpec, options: { dryRun?: boolean } = {}): NodePortAllocation {
    const op = new PortOperation(this, options.dryRun ?? false);
    const ports = spec.ports.map((p) => ({ ...p }));
    try {
      if (needsNodePort(spec.type)) this.#initNodePorts(spec, ports, op);
      this.#validate(spec.name ?? '', spec.type, ports);
    } catch (err) {
      op.rollback();
      throw err;
    }
    return op.result(ports);
  }

  /**
   * NodePorts for an update (`updateNodePorts`): omitted nodePorts are kept from
   * `before` (matched by port name), new ones allocated, ports no longer used released
   * on `commit()`. A change to ClusterIP/ExternalName releases them all.
   */
  updateService(before: NodePortSpec, after: NodePortSpec, options: { dryRun?: boolean } = {}): NodePortAllocation {
    const op = new PortOperation(this, options.dryRun ?? false);
    let ports: Array<ServicePort & { nodePort?: number }> = after.ports.map((p) => ({ ...p }));
    try {
      // patchAllocatedValues
      if (needsNodePort(before.type) && needsNodePort(after.type)) {
        const newUsed = new Set(nodePortsOf(ports));
        const used = new Set(nodePortsOf(before.ports).filter((n) => newUsed.has(n)));
        const byName = new Map<string, number>();
        for (const p of before.ports) byName.set(p.name, p.nodePort ?? 0);
        ports = ports.map((p) => {
          if ((p.nodePort ?? 0) !== 0) return p;
          const old = byName.get(p.name) ?? 0;
          return old !== 0 && !used.has(old) ? { ...p, nodePort: old } : p;
        });
      }
      if (needsNodePort(before.type) && (after.type === 'ClusterIP' || after.type === 'ExternalName')) {
        for (const n of nodePortsOf(before.ports)) op.releaseDeferred(n);
      }
      if (needsNodePort(after.type)) this.#updateNodePorts(before, { ...after, ports }, ports, op);
      // dropTypeDependentFields: no net-new nodePorts on a type that needs none -> wipe them.
      if (needsNodePort(before.type) && !needsNodePort(after.type)) {
        const old = new Set(nodePortsOf(before.ports));
        if (nodePortsOf(ports).every((n) => old.has(n))) ports = ports.map(({ nodePort: _drop, ...p }) => p);
      }
      this.#validate(after.name ?? '', after.type, ports);
    } catch (err) {
      op.rollback();
      throw err;
    }
    return op.result(ports);
  }

  /** Releases every nodePort of a deleted Service now. Returns them. */
  releaseService(spec: Pick<NodePortSpec, 'ports'>): number[] {
    const ports = nodePortsOf(spec.ports);
    for (const p of ports) this.release(p);
    return ports;
  }

  #initNodePorts(spec: NodePortSpec, ports: Array<ServicePort & { nodePort?: number }>, op: PortOperation): void {
    const byPort = new Map<number, number>();
    const name = spec.name ?? '';
    ports.forEach((sp, i) => {
      const requested = sp.nodePort ?? 0;
      if (requested === 0 && !shouldAllocate(spec)) return;
      const allocated = byPort.get(sp.port) ?? 0;
      if (allocated === 0) {
        // Scans forward only: earlier ports with this number are in byPort already.
        const np = ports.find((p) => p.port === sp.port && (p.nodePort ?? 0) !== 0)?.nodePort ?? 0;
        if (np !== 0) {
          op.allocate(np, () => `spec.ports[${i}].nodePort`, name);
          ports[i] = { ...sp, nodePort: np };
          byPort.set(sp.port, np);
        } else {
          const n = op.allocateNext();
          ports[i] = { ...sp, nodePort: n };
          byPort.set(sp.port, n);
        }
      } else if (requested !== allocated) {
        if (requested === 0) ports[i] = { ...sp, nodePort: allocated };
        else op.allocate(requested, () => `spec.ports[${i}].nodePort`, name);
      }
    });
  }

  #updateNodePorts(before: NodePortSpec, after: NodePortSpec, ports: Array<ServicePort & { nodePort?: number }>, op: PortOperation): void {
    const oldNumbers = nodePortsOf(before.ports);
    const seen: Array<{ protocol: Protocol; nodePort: number }> = [];
    const portAllocated = new Set<number>();
    ports.forEach((sp, i) => {
      let np = sp.nodePort ?? 0;
      if (np === 0 && !shouldAllocate(after)) return;
      if (np !== 0) {
        if (!oldNumbers.includes(np) && !portAllocated.has(np)) {
          op.allocate(np, () => `spec.ports[${i}].nodePort`, after.name ?? '');
          portAllocated.add(np);
        }
      } else {
        np = op.allocateNext();
        ports[i] = { ...sp, nodePort: np };
      }
      if (seen.some((s) => s.protocol === sp.protocol && s.nodePort === np)) {
        throw new ServiceInternalError(`duplicate nodePort: {${sp.protocol} ${np}}`);
      }
      seen.push({ protocol: sp.protocol, nodePort: np });
    });
    const newNumbers = new Set(nodePortsOf(ports));
    for (const n of oldNumbers) if (!newNumbers.has(n)) op.releaseDeferred(n);
  }

  /** The nodePort rules of `ValidateService`: none on ClusterIP, no duplicate (protocol, nodePort). */
  #validate(name: string, type: ServiceType, ports: readonly ServicePort[]): void {
    const errs: FieldError[] = [];
    const seen = new Set<string>();
    ports.forEach((p, i) => {
      const np = p.nodePort ?? 0;
      if (np === 0) return;
      if (type === 'ClusterIP') errs.push(forbidden(`spec.ports[${i}].nodePort`, "may not be used when `type` is 'ClusterIP'"));
      const key = `${p.protocol}/${np}`;
      if (seen.has(key)) errs.push(duplicate(`spec.ports[${i}].nodePort`, np));
      seen.add(key);
    });
    if (errs.length > 0) throw new ServiceInvalidError(name, errs);
  }
}

/**
 * `PortAllocationOperation`: allocations happen now and are rolled back unless
 * committed; releases are deferred to commit. Dry-run mirrors upstream: `allocate` only
 * checks `Has` and this operation's own ports (no range check), `allocateNext` invents
 * a port above 32768.
 */
class PortOperation {
  readonly #pa: PortAllocator;
  readonly #dryRun: boolean;
  readonly #allocated: number[] = [];
  readonly #releaseDeferred: number[] = [];

  constructor(pa: PortAllocator, dryRun: boolean) {
    this.#pa = pa;
    this.#dryRun = dryRun;
  }

  allocate(port: number, field: () => string, name: string): void {
    try {
      if (this.#dryRun) {
        if (this.#pa.has(port) || this.#allocated.includes(port)) throw new ErrPortAllocated();
      } else {
        this.#pa.allocate(port);
      }
    } catch (err) {
      throw new ServiceInvalidError(name, [invalid(field(), port, (err as Error).message)]);
    }
    this.#allocated.push(port);
  }

  allocateNext(): number {
    if (this.#dryRun) {
      const last = this.#allocated.length === 0 ? 32768 : Math.max(...this.#allocated);
      this.#allocated.push(last + 1);
      return last + 1;
    }
    try {
      const port = this.#pa.allocateNext();
      this.#allocated.push(port);
      return port;
    } catch (err) {
      throw new ServiceInternalError(`failed to allocate a nodePort: ${(err as Error).message}`, err);
    }
  }

  releaseDeferred(port: number): void {
    this.#releaseDeferred.push(port);
  }

  rollback(): void {
    if (!this.#dryRun) for (const p of this.#allocated) this.#pa.release(p);
  }

  result(ports: ServicePort[]): NodePortAllocation {
    let settled = false;
    const dryRun = this.#dryRun;
    const allocated = dryRun ? [] : [...this.#allocated];
    const toRelease = [...this.#releaseDeferred];
    const pa = this.#pa;
    return {
      ports,
      allocated,
      toRelease,
      dryRun,
      commit() {
        if (settled) return;
        settled = true;
        if (!dryRun) for (const p of toRelease) pa.release(p);
      },
      revert() {
        if (settled) return;
        settled = true;
        if (!dryRun) for (const p of allocated) pa.release(p);
      },
    };
  }
}
