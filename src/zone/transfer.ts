/**
 * The records of one cluster zone as a zone transfer lists them (RFC 5936 §2.2): every
 * record a query would answer, at one version of the zone, generated as they are sent.
 *
 * What is listed, from the zone's NameTable (src/zone/table.ts):
 * - the apex SOA (first and last, placed by the caller), NS, the `ns.dns.<zone>` glue
 *   A/AAAA and the `dns-version` TXT;
 * - per service: its A/AAAA (ClusterIPs, or a headless service's ready endpoints), its
 *   CNAME (ExternalName), the SRV set at its name, and what its ServiceChildren answer
 *   on demand: endpoint names' A/AAAA (under ClusterIP services too, since queries
 *   answer them) and the `_port._proto` SRV sets.
 *
 * Not listed: pod names (`a-b-c-d.<ns>.pod.<zone>`, computed from the question, not
 * records of the zone), zonal names (`..._zone.<svc>...`, answered per query), PTR (the
 * reverse tree is not a zone we transfer), and empty non-terminals (`svc.<zone>`,
 * `<ns>.svc.<zone>`, `_tcp.<svc>...`), which exist through the names below them.
 *
 * Consistency: `snapshotZone` takes the table's owner lists as they are now. The table
 * replaces an owner's list on change and never edits one, record sets are immutable, and
 * their `build` thunks and ServiceChildren read store objects that are replaced, never
 * changed: the generator yields the zone as it was at the snapshot's serial, however long
 * the transfer takes and whatever changes meanwhile. Memory: one array entry per owner
 * (service, namespace, the apex) up front, then one service's records at a time.
 */
import { Type } from '../dns/constants.js';
import type { RR } from '../dns/rr.js';
import type { RecordSet } from './table.js';
import type { ClusterZone } from './zone.js';

export interface ZoneSnapshot {
  /** The zone apex. */
  readonly zone: string;
  /** The SOA of this version (its serial is the version's). */
  readonly soa: RR & { readonly type: typeof Type.SOA };
  /** The serial of this version. */
  readonly serial: number;
  /**
   * Every record but the SOA, apex records first, then the services in key order
   * (`namespace/name`), each service's own sets before the names below it. A record set
   * that cannot be built is left out and reported through `onError` (the query for it
   * would fail too); the generator itself never throws.
   */
  records(): Generator<RR>;
}

/** The zone as it is now, to be listed record by record. */
export function snapshotZone(zone: ClusterZone, onError?: (err: unknown, where: string) => void): ZoneSnapshot {
  const owners = zone.forward.ownerSets();
  // Apex first, then services in a stable order: two transfers of one version list the
  // records in the same order (and a diff of two listings shows what changed).
  owners.sort(([a], [b]) => (a === 'apex' ? -1 : b === 'apex' ? 1 : a < b ? -1 : a > b ? 1 : 0));
  const apex = owners[0]?.[0] === 'apex' ? owners[0][1] : [];
  const soaSet = apex.find((rs) => rs.type === Type.SOA)?.rrs[0];
  const soa = (soaSet?.type === Type.SOA ? soaSet : zone.soa()) as RR & { readonly type: typeof Type.SOA };
  const report = onError ?? (() => {});
  return {
    zone: zone.name,
    soa,
    serial: soa.soa.serial,
    *records(): Generator<RR> {
      for (const [owner, sets] of owners) {
        for (const rs of sets) yield* setRecords(rs, owner, report);
      }
    },
  };
}

/**
 * The records of one set: its own (built on demand for large sets) and those of the
 * names below it. Existence-only sets (type 0) have none. The forward table has one
 * owner per (name, type) (the apex, a namespace, a service: names never overlap), so no
 * merging across owners is needed here, unlike PTR in the reverse tree.
 */
function* setRecords(rs: RecordSet, owner: string, report: (err: unknown, where: string) => void): Generator<RR> {
  if (rs.type !== 0 && rs.type !== Type.SOA) {
    let rrs: readonly RR[];
    try {
      rrs = rs.build !== undefined ? rs.build().rrs : rs.rrs;
    } catch (err) {
      report(err, `transfer ${owner} ${rs.name}`);
      rrs = [];
    }
    yield* rrs;
  }
  const children = rs.children;
  if (children?.records === undefined) return;
  // A child set that fails half-way leaves out the rest of that service's child names,
  // never the rest of the zone.
  const it = children.records();
  for (;;) {
    let r: IteratorResult<RR>;
    try {
      r = it.next();
    } catch (err) {
      report(err, `transfer ${owner} below ${rs.name}`);
      return;
    }
    if (r.done === true) return;
    yield r.value;
  }
}
