/**
 * The Kubernetes API source (issue #3). The composition root needs `kubeSources` (the
 * source behind its `Sources` interface) or `KubeSource` itself, `KubeConfigError` (a
 * configuration that cannot work: print it, exit), `inClusterAvailable` and, for config
 * validation, `labelSelectorError`.
 */
export { KubeSource, type KubeSourceEvents, type KubeSourceOptions, type KubeSourceStatus } from './source.js';
export { KubeConfigError, inClusterAvailable, SERVICE_ACCOUNT_DIR, type ClientDescription } from './config.js';
export { labelSelectorError } from './selector.js';
export type { ResourceStatus, RestartReason, WatcherState } from './watcher.js';
export { kubeSources, type KubeSources, type KubeSourcesConfig, type KubeSourcesOptions } from './sources.js';
