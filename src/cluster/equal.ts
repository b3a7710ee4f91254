/**
 * Structural equality for slim objects (plain data: primitives, arrays, plain objects).
 *
 * Sources call this before touching the store so that an update that changes nothing
 * DNS can see (a new resourceVersion, a status heartbeat, managedFields) costs no
 * rebuild. Slim objects only hold DNS-visible fields, so comparing them whole is the
 * equivalence check CoreDNS spreads over `serviceModified`/`endpointsEquivalent`.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a as object).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b as object).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}
