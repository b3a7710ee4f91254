/**
 * Upstream forwarding and its cache (CoreDNS `forward`, `cache`, `loop`): the public
 * surface the composition root wires in.
 */
export { Forwarder, FORWARD_DEFAULTS, type ForwarderOptions, type ForwarderStats, type LookupResult, type UpstreamEvent } from './forwarder.js';
export { AnswerCache, CACHE_DEFAULTS, STALE_TTL, type CacheOptions, type CacheStats, type PrefetchOptions } from './cache.js';
export type { HostPort } from '../net/ip.js';
export { formatAddress } from './exchange.js';
export { ERROR_KINDS, type ErrorKind, type Policy, type UpstreamStats } from './pool.js';
export { PROBE_SUFFIX } from './loop.js';
export { isSelf, parseHostPort, parseResolvConf, parseStubDomains, resolvConfUpstreams } from './resolvconf.js';
