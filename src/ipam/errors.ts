/**
 * Error classes of the ClusterIP / NodePort allocators.
 *
 * Upstream (`pkg/registry/core/service/ipallocator/interfaces.go`,
 * `.../portallocator/allocator.go`, `.../allocator/bitmap.go`) uses sentinel error
 * values and callers branch on identity. Here every condition is a class with a stable
 * `code` (undici style), so callers branch on `instanceof` or `code`, never on the
 * message: the message text is the upstream one, but upstream itself has shipped two
 * texts for `ErrNotInRange` (see the doc of that class).
 *
 * @module
 */

/** Base class: every error thrown by `src/ipam/` carries a stable `code`. */
export class IpamError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An IP string did not parse (`ParseIPSloppy` returned nil). */
export class InvalidIPError extends IpamError {
  readonly input: string;
  constructor(input: string) {
    super('ERR_IPAM_INVALID_IP', `invalid IP address: ${JSON.stringify(input)}`);
    this.input = input;
  }
}

/** A CIDR string did not parse. The message starts like Go's `invalid CIDR address: <text>`. */
export class InvalidCidrError extends IpamError {
  readonly input: string;
  readonly reason: string;
  constructor(input: string, reason: string) {
    super('ERR_IPAM_INVALID_CIDR', `invalid CIDR address: ${input}: ${reason}`);
    this.input = input;
    this.reason = reason;
  }
}

/**
 * `AllocationBitmap.Allocate(offset)` outside `[0, max)`. Upstream text
 * `"offset %d out of range [0,%d]"`; the printed bound is `max`, which is exclusive.
 */
export class OffsetOutOfRangeError extends IpamError {
  readonly offset: number;
  readonly max: number;
  constructor(offset: number, max: number) {
    super('ERR_IPAM_OFFSET_OUT_OF_RANGE', `offset ${offset} out of range [0,${max}]`);
    this.offset = offset;
    this.max = max;
  }
}

/** `AllocationBitmap.Restore` with a different range spec (upstream `bitmap.go`). */
export class RangeSpecMismatchError extends IpamError {
  constructor() {
    super('ERR_IPAM_RANGE_SPEC_MISMATCH', 'the provided range does not match the current range');
  }
}

/** No free item left (`ErrFull`, shared text for IPs and ports). */
export class ErrFull extends IpamError {
  constructor() {
    super('ERR_IPAM_FULL', 'range is full');
  }
}

/** The requested IP is already taken (`ipallocator.ErrAllocated`). */
export class ErrAllocated extends IpamError {
  constructor() {
    super('ERR_IPAM_ALLOCATED', 'provided IP is already allocated');
  }
}

/**
 * The IP is not allocatable in this range: outside the CIDR, the network address, the
 * IPv4 broadcast, or past the IPv6 65535-address cap (`ipallocator.ErrNotInRange`).
 *
 * Upstream has two texts in stored versions; this uses the long-standing one
 * (`"the provided IP (%v) is not in the valid range. The range of valid IPs is %s"`).
 * Match on the class or `code`, not the text.
 */
export class ErrNotInRange extends IpamError {
  /** Canonical text of the rejected IP. */
  readonly ip: string;
  /** The CIDR of the range, e.g. `10.0.0.0/24`. */
  readonly validRange: string;
  constructor(ip: string, validRange: string) {
    super(
      'ERR_IPAM_NOT_IN_RANGE',
      `the provided IP (${ip}) is not in the valid range. The range of valid IPs is ${validRange}`,
    );
    this.ip = ip;
    this.validRange = validRange;
  }
}

/** `Range.Restore` with another network, or an IP of a family/CIDR no allocator serves. */
export class ErrMismatchedNetwork extends IpamError {
  constructor() {
    super('ERR_IPAM_MISMATCHED_NETWORK', 'the provided network does not match the current range');
  }
}

/** `Range.Restore` failed inside the bitmap (upstream wraps it as `restoring snapshot encountered %v`). */
export class SnapshotRestoreError extends IpamError {
  constructor(cause: Error) {
    super('ERR_IPAM_RESTORE', `restoring snapshot encountered ${cause.message}`, { cause });
  }
}

/** NodePort already taken (`portallocator.ErrAllocated`). */
export class ErrPortAllocated extends IpamError {
  constructor() {
    super('ERR_IPAM_PORT_ALLOCATED', 'provided port is already allocated');
  }
}

/** NodePort outside the configured range (`portallocator.ErrNotInRange`). */
export class ErrPortNotInRange extends IpamError {
  readonly validPorts: string;
  constructor(validPorts: string) {
    super(
      'ERR_IPAM_PORT_NOT_IN_RANGE',
      `provided port is not in the valid range. The range of valid ports is ${validPorts}`,
    );
    this.validPorts = validPorts;
  }
}

/** `PortAllocator.Restore` with another port range (`portallocator.ErrMismatchedNetwork`). */
export class ErrPortRangeMismatch extends IpamError {
  constructor() {
    super('ERR_IPAM_PORT_RANGE_MISMATCH', 'the provided port range does not match the current port range');
  }
}

/** A port range string (`--service-node-port-range`) did not parse (`utilnet.PortRange.Set`). */
export class InvalidPortRangeError extends IpamError {
  readonly input: string;
  constructor(input: string, message: string) {
    super('ERR_IPAM_INVALID_PORT_RANGE', message);
    this.input = input;
  }
}

/**
 * The service CIDR configuration is unusable (kube-apiserver `validateClusterIPFlags`).
 * `errors` holds every upstream message; `message` joins them with `; `.
 */
export class ServiceCidrConfigError extends IpamError {
  readonly errors: readonly string[];
  constructor(errors: readonly string[]) {
    super('ERR_IPAM_CONFIG', errors.join('; '));
    this.errors = errors;
  }
}
