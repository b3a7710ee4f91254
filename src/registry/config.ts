/**
 * Settings of the embedded registry: the service CIDRs and the NodePort range (the
 * kube-apiserver flags `--service-cluster-ip-range` and `--service-node-port-range`),
 * validated once.
 *
 * Defaults are the configuration's (`DEFAULT_CONFIG`: `10.96.0.0/12`, `30000-32767`), so
 * `clusterdns ipam` without `--config` sees what `clusterdns serve` without `--config`
 * allocates. The shipped example is dual-stack and is run with `clusterdns.yaml`
 * (`serviceCIDRs: [10.96.0.0/12, fd00:10:96::/112]`).
 *
 * @module
 */
import { DEFAULT_CONFIG } from '../config.js';
import { validateServiceCidrs } from '../ipam/allocator.js';
import { PortRange } from '../ipam/portallocator.js';

/** Service CIDRs used when no configuration is given, primary first (the configuration's default). */
export const DEFAULT_REGISTRY_SERVICE_CIDRS: readonly string[] = DEFAULT_CONFIG.serviceCIDRs;

/** The two `Config` keys the registry reads. */
export interface RegistryConfig {
  /** Service CIDRs, primary first (one or two, one per family). */
  readonly serviceCIDRs: readonly string[];
  /** NodePort range, `LOW-HIGH`. */
  readonly nodePortRange: string;
}

/** {@link RegistryConfig} validated, CIDRs in canonical text. */
export interface RegistrySettings extends RegistryConfig {
  readonly serviceCIDRs: readonly string[];
  readonly nodePortRange: string;
}

/**
 * Validates the registry keys of a configuration (defaults: `DEFAULT_CONFIG`'s). Throws
 * `ServiceCidrConfigError` / `InvalidPortRangeError` with the upstream messages.
 */
export function registrySettings(config?: Partial<RegistryConfig>): RegistrySettings {
  const cidrs = validateServiceCidrs(config?.serviceCIDRs ?? DEFAULT_CONFIG.serviceCIDRs).map((c) => c.toString());
  const ports = PortRange.parse(config?.nodePortRange ?? DEFAULT_CONFIG.nodePortRange).toString();
  return Object.freeze({ serviceCIDRs: Object.freeze(cidrs), nodePortRange: ports });
}
