/**
 * Settings of the embedded registry: the service CIDRs and the NodePort range (the
 * kube-apiserver flags `--service-cluster-ip-range` and `--service-node-port-range`),
 * validated once.
 *
 * Default when no configuration is given: `10.96.0.0/12` (kubeadm's) plus
 * `fd00:10:96::/112` (kind's IPv6 service subnet) as the secondary family. The IPv6
 * range only matters to Services that ask for it (`ipFamilyPolicy` PreferDualStack or
 * RequireDualStack, `ipFamilies: [IPv6]`, an IPv6 clusterIP, or headless selectorless
 * ones); a plain Service stays SingleStack IPv4 as upstream. The shipped example
 * (`zones/cluster.local/shop/cart.yaml`) is such a dual-stack Service.
 *
 * @module
 */
import { validateServiceCidrs } from '../ipam/allocator.js';
import { DEFAULT_NODE_PORT_RANGE, PortRange } from '../ipam/portallocator.js';

/** Service CIDRs used when no configuration is given, primary first. */
export const DEFAULT_REGISTRY_SERVICE_CIDRS: readonly string[] = Object.freeze(['10.96.0.0/12', 'fd00:10:96::/112']);

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
 * Validates the registry keys of a configuration (default: {@link DEFAULT_REGISTRY_SERVICE_CIDRS}
 * and `30000-32767`). Throws `ServiceCidrConfigError` / `InvalidPortRangeError` with the
 * upstream messages.
 */
export function registrySettings(config?: Partial<RegistryConfig>): RegistrySettings {
  const cidrs = validateServiceCidrs(config?.serviceCIDRs ?? DEFAULT_REGISTRY_SERVICE_CIDRS).map((c) => c.toString());
  const ports = PortRange.parse(config?.nodePortRange ?? DEFAULT_NODE_PORT_RANGE).toString();
  return Object.freeze({ serviceCIDRs: Object.freeze(cidrs), nodePortRange: ports });
}
