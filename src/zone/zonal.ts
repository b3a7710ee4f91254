/**
 * The zonal grammar (CoreDNS `zonal`, 1.14.7, PR #8388; parse.go): below a headless
 * service, `<topology-zone>.pin._zone.<svc>.<ns>.svc.<zone>` names the served endpoints
 * whose EndpointSlice `endpoints[].zone` (discovery/v1) is that topology zone, NODATA
 * when none is; `<topology-zone>.prefer._zone.<svc>...` the same, falling back to every
 * served endpoint when none is. ServiceChildren (build.ts) answers these names on
 * demand: they are never table nodes and never listed (a zone transfer leaves them
 * out, as CoreDNS's does), and nothing is kept per zone or per endpoint for them.
 *
 * `_zone` sits where a `_port._proto` name would (one or two labels below the service)
 * or deeper, but no protocol label is `_zone` and no SRV name ends in `._zone`, so the
 * grammars never collide. A topology zone is a label value, which may contain dots:
 * as CoreDNS does, every label left of the directive is the zone.
 */

/** What the labels below a headless service (`rel`) name in the zonal grammar. */
export type ZonalName =
  /**
   * `_zone`, `pin._zone`, `prefer._zone`: empty non-terminals (NODATA, RFC 8020, as
   * `_tcp.<svc>` is; CoreDNS parses them as an endpoint or a port name and says
   * NXDOMAIN, see README "Where we deliberately differ").
   */
  | { readonly kind: 'ent' }
  /** Below `_zone` but with an unknown directive: NXDOMAIN (CoreDNS errInvalidRequest). */
  | { readonly kind: 'nx' }
  /** A topology zone (lowercase, as the query name is) and its directive. */
  | { readonly kind: 'zone'; readonly zone: string; readonly prefer: boolean };

const ANCHOR = '_zone';
const SUFFIX = `.${ANCHOR}`;
const ENT: ZonalName = Object.freeze({ kind: 'ent' });
const NX: ZonalName = Object.freeze({ kind: 'nx' });

/** The zonal name `rel` is, or undefined when it is not below the `_zone` anchor. */
export function parseZonal(rel: string): ZonalName | undefined {
  if (rel === ANCHOR) return ENT;
  if (!rel.endsWith(SUFFIX)) return undefined;
  const head = rel.slice(0, -SUFFIX.length);
  const dot = head.lastIndexOf('.');
  const directive = head.slice(dot + 1);
  const prefer = directive === 'prefer';
  if (!prefer && directive !== 'pin') return NX;
  if (dot < 0) return ENT;
  const zone = head.slice(0, dot);
  return zone === '' ? NX : { kind: 'zone', zone, prefer };
}

/**
 * Whether an endpoint's zone (as written in the slice) is `zone` (lowercase). Matched
 * case-insensitively: query names are folded to lowercase (CoreDNS lowercases the
 * stored zone for the same reason); label values are ASCII.
 */
export function inZone(endpointZone: string | undefined, zone: string): boolean {
  return endpointZone !== undefined && (endpointZone === zone || endpointZone.toLowerCase() === zone);
}
