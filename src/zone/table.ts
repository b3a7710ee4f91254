/**
 * NameTable: the authoritative names of one tree (a cluster zone, or the reverse
 * tree), updated per owner (a service, a namespace, the apex) when the cluster
 * changes, read per query with one Map lookup.
 *
 * Each name knows which owners contributed records to it and how many child names
 * exist below it, so a name that is only an ancestor of real names (an empty
 * non-terminal such as `svc.<zone>` or `_tcp.<svc>...`) exists and answers NODATA,
 * while a name with neither records nor children does not exist (NXDOMAIN): the rule
 * of RFC 8020 that resolvers and `dig +search` rely on.
 */
import type { RR } from '../dns/rr.js';

/** Records one owner places at one name for one type, plus their additional records. */
export interface RecordSet {
  readonly name: string;
  readonly type: number;
  readonly rrs: readonly RR[];
  readonly extra?: readonly RR[];
  /**
   * Precedence among owners of the same (name, type): only the sets with the lowest
   * rank are served. PTR uses it so a ClusterIP's service name wins over endpoint
   * names for the same address (CoreDNS reverse.go). A negative rank is exclusive:
   * only the first owner (in key order) is served, as CoreDNS serves the first match.
   */
  readonly rank?: number;
  /**
   * Records computed on demand (then kept in the name's merged view until the name
   * changes) instead of `rrs`/`extra`: large services' address and SRV sets, which
   * at 150k endpoints would otherwise be built and held for names nobody asks.
   */
  readonly build?: () => TypeEntry;
  /**
   * Names below this one answered on demand (a service's endpoint names, one label
   * down, and its `_port._proto` SRV names, two): they are not nodes of the table, so
   * 150k endpoints cost no name strings, nodes or record objects until queried.
   */
  readonly children?: ChildNames;
}

/** Child names served on demand below one name of the table. */
export interface ChildNames {
  /**
   * Records of `name` (= `<rel>.<parent>`, where `rel` is the labels below the parent,
   * which is the name's nearest ancestor in the table), an empty map for a name that
   * exists without records, or undefined when there is no such name.
   */
  lookup(rel: string, name: string): Map<number, TypeEntry> | undefined;
  /** How many child names there are (for statistics). */
  readonly size: number;
  /**
   * Every record of the child names, as `lookup` answers them (zone transfer,
   * src/zone/transfer.ts); generated as read, nothing kept.
   */
  records?(): Generator<RR>;
}

/** A name that exists with no records of its own (namespace, `svc.<zone>`). */
export function exists(name: string): RecordSet {
  return { name, type: 0, rrs: [] };
}

export interface TypeEntry {
  readonly rrs: readonly RR[];
  readonly extra: readonly RR[];
}

interface Node {
  /**
   * Owners of this name and their record sets. Nearly every name has exactly one
   * owner, so that case is two fields; a Map only for names shared by several owners
   * (PTRs of an address behind two services, namespace and service ancestors).
   */
  o1: string | undefined;
  s1: RecordSet[] | undefined;
  more: Map<string, RecordSet[]> | undefined;
  children: number;
  /** Merged view, built on first read after a change. */
  merged: Map<number, TypeEntry> | undefined;
  /** Child names served on demand, and the owner that placed them. */
  dir: ChildNames | undefined;
  dirOwner: string | undefined;
}

export class NameTable {
  readonly #nodes = new Map<string, Node>();
  readonly #byOwner = new Map<string, RecordSet[]>();
  /** Names at or above which child counting stops (the zone apex, `arpa`). */
  readonly #apex: string;

  constructor(apex: string) {
    this.#apex = apex;
  }

  /** Child names served on demand, counted when their owner is set. */
  #dirNames = 0;

  /** Names held: nodes plus on-demand child names. */
  get size(): number {
    return this.#nodes.size + this.#dirNames;
  }

  /** Replace everything `owner` contributes with `sets` (empty: remove the owner). */
  set(owner: string, sets: readonly RecordSet[]): void {
    const old = this.#byOwner.get(owner);
    if (old !== undefined) {
      for (const rs of old) this.#detach(owner, rs.name);
    }
    if (sets.length === 0) {
      this.#byOwner.delete(owner);
      return;
    }
    const list = [...sets];
    this.#byOwner.set(owner, list);
    for (const rs of list) this.#attach(owner, rs);
  }

  has(owner: string): boolean {
    return this.#byOwner.has(owner);
  }

  owners(): IterableIterator<string> {
    return this.#byOwner.keys();
  }

  /**
   * Every owner's record sets as they are now. `set` replaces an owner's list and never
   * changes one in place, and record sets are immutable, so the result is one version
   * of the table however it changes afterwards (a zone transfer's snapshot, RFC 5936
   * §2.2: the whole zone at one serial). Costs one array entry per owner.
   */
  ownerSets(): [owner: string, sets: readonly RecordSet[]][] {
    return [...this.#byOwner];
  }

  /** Whether the name exists (records, or names below it). */
  exists(name: string): boolean {
    return this.#nodes.has(name) || this.#child(name) !== undefined;
  }

  /** The records of `name`, merged across owners; undefined when the name does not exist. */
  lookup(name: string): Map<number, TypeEntry> | undefined {
    const node = this.#nodes.get(name);
    if (node === undefined) return this.#child(name);
    if (node.merged === undefined) node.merged = merge(node);
    return node.merged;
  }

  /**
   * An on-demand name: the nearest ancestor that is a node decides, through its
   * directory (none: no such name), given the labels below it: one (a service's
   * endpoint names), two (`_port._proto` SRV names, whose `_proto` parent is on demand
   * too) or more (zonal names, `<topology-zone>.pin._zone`, whose zone may span labels).
   */
  #child(name: string): Map<number, TypeEntry> | undefined {
    for (let dot = name.indexOf('.'); dot > 0; dot = name.indexOf('.', dot + 1)) {
      const parent = name.slice(dot + 1);
      if (parent.length < this.#apex.length) return undefined;
      const node = this.#nodes.get(parent);
      if (node !== undefined) return node.dir === undefined ? undefined : node.dir.lookup(name.slice(0, dot), name);
    }
    return undefined;
  }

  #attach(owner: string, rs: RecordSet): void {
    let node = this.#nodes.get(rs.name);
    if (node === undefined) {
      node = newNode();
      this.#nodes.set(rs.name, node);
      this.#adjustParent(rs.name, +1);
    }
    node.merged = undefined;
    if (rs.children !== undefined) {
      if (node.dir !== undefined) this.#dirNames -= node.dir.size;
      node.dir = rs.children;
      node.dirOwner = owner;
      this.#dirNames += rs.children.size;
    }
    if (node.o1 === owner) {
      node.s1!.push(rs);
      return;
    }
    if (node.o1 === undefined && (node.more === undefined || node.more.size === 0)) {
      node.o1 = owner;
      node.s1 = [rs];
      return;
    }
    node.more ??= new Map();
    let list = node.more.get(owner);
    if (list === undefined) node.more.set(owner, (list = []));
    list.push(rs);
  }

  #detach(owner: string, name: string): void {
    const node = this.#nodes.get(name);
    if (node === undefined) return;
    if (node.o1 === owner) {
      node.o1 = undefined;
      node.s1 = undefined;
    } else {
      node.more?.delete(owner);
    }
    node.merged = undefined;
    if (node.dirOwner === owner) {
      this.#dirNames -= node.dir!.size;
      node.dir = undefined;
      node.dirOwner = undefined;
    }
    this.#maybeDrop(name, node);
  }

  #maybeDrop(name: string, node: Node): void {
    if (ownerCount(node) === 0 && node.children === 0) {
      this.#nodes.delete(name);
      this.#adjustParent(name, -1);
    }
  }

  /** Count `name` as a child of its parent, creating empty non-terminals on the way. */
  #adjustParent(name: string, delta: number): void {
    if (name === this.#apex) return;
    const dot = name.indexOf('.');
    if (dot < 0) return;
    const parent = name.slice(dot + 1);
    if (parent.length < this.#apex.length) return;
    let node = this.#nodes.get(parent);
    if (node === undefined) {
      if (delta < 0) return;
      node = newNode();
      this.#nodes.set(parent, node);
      this.#adjustParent(parent, +1);
    }
    node.children += delta;
    if (delta < 0) this.#maybeDrop(parent, node);
  }
}

function newNode(): Node {
  return { o1: undefined, s1: undefined, more: undefined, children: 0, merged: undefined, dir: undefined, dirOwner: undefined };
}

function ownerCount(node: Node): number {
  return (node.o1 === undefined ? 0 : 1) + (node.more?.size ?? 0);
}

function merge(node: Node): Map<number, TypeEntry> {
  const byType = new Map<number, RecordSet[]>();
  const all = new Map<string, RecordSet[]>(node.more);
  if (node.o1 !== undefined) all.set(node.o1, node.s1!);
  // Owners in key order, so the merged answer does not depend on event order.
  const owners = [...all.keys()].sort();
  for (const o of owners) {
    for (const rs of all.get(o)!) {
      if (rs.type === 0) continue;
      let l = byType.get(rs.type);
      if (l === undefined) byType.set(rs.type, (l = []));
      l.push(rs);
    }
  }
  const out = new Map<number, TypeEntry>();
  for (const [type, sets] of byType) {
    const best = Math.min(...sets.map((s) => s.rank ?? 0));
    let chosen = sets.filter((s) => (s.rank ?? 0) === best);
    if (best < 0) chosen = chosen.slice(0, 1);
    if (chosen.length === 1) {
      out.set(type, entryOf(chosen[0]!));
      continue;
    }
    const entries = chosen.map(entryOf);
    out.set(type, { rrs: dedupe(entries.flatMap((e) => e.rrs)), extra: dedupe(entries.flatMap((e) => e.extra)) });
  }
  return out;
}

function entryOf(rs: RecordSet): TypeEntry {
  return rs.build !== undefined ? rs.build() : { rrs: rs.rrs, extra: rs.extra ?? [] };
}

function dedupe(rrs: RR[]): RR[] {
  const seen = new Set<string>();
  const out: RR[] = [];
  for (const rr of rrs) {
    const k = `${rr.name}|${rr.type}|${JSON.stringify(rr)}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(rr);
  }
  return out;
}
