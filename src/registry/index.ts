/**
 * The embedded service registry of zones/ (issue #4): stable virtual IPs and NodePorts
 * from the `src/ipam/` allocators, persisted write-ahead under the state directory; the
 * endpoints controller (EndpointSlices from Pods); endpoint address validation; the
 * repair pass; the read-only mirror of Kubernetes mode; `clusterdns ipam`.
 *
 * @module
 */
export * from './config.js';
export * from './state.js';
export * from './usage.js';
export * from './anomalies.js';
export * from './status.js';
export * from './allocate.js';
export * from './endpoints.js';
export * from './addresses.js';
export * from './repair.js';
export * from './zone.js';
export * from './registry.js';
export * from './mirror.js';
export * from './metrics.js';
export * from './cli.js';
