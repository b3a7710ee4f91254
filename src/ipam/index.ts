/**
 * The ClusterIP / NodePort allocator core (no DNS imports): Kubernetes' bitmap
 * allocators, dual-stack field handling, the repair pass and endpoint IP validation.
 *
 * @module
 */
export * from './errors.js';
export * from './field.js';
export * from './ip.js';
export * from './bitmap.js';
export * from './range.js';
export * from './families.js';
export * from './allocator.js';
export * from './portallocator.js';
export * from './repair.js';
export * from './validate.js';
