/**
 * The persisted state of one zone's registry, and how it is written so that a crash at
 * any moment (SIGKILL, power loss) leaves the last good state.
 *
 * ## Location
 *
 * `<stateDir>/<zone>/allocations.json`, where `stateDir` is `--state` (default
 * `.clusterdns/` next to the zones folder) and `<zone>` the zone folder's name
 * (`cluster.local`).
 *
 * ## Format (`format: "clusterdns.allocations/v1"`)
 *
 * ```json
 * {
 *   "format": "clusterdns.allocations/v1",
 *   "zone": "cluster.local",
 *   "generation": 7,                       // +1 per write
 *   "writtenAt": "2026-01-01T00:00:00.000Z",
 *   "serviceCIDRs": ["10.96.0.0/12", "fd00:10:96::/112"],
 *   "nodePortRange": "30000-32767",
 *   "ranges": [                            // upstream RangeAllocation per family:
 *     { "family": "IPv4", "range": "10.96.0.0/12", "data": "<base64 bitmap>" }
 *   ],                                     // bit i = network+1+i, big-endian minimal bytes
 *   "nodePorts": { "range": "30000-32767", "data": "<base64 bitmap>" },
 *   "services": {                          // the stored Services (upstream: etcd), by namespace/name
 *     "shop/cart": {
 *       "type": "ClusterIP",
 *       "clusterIPs": ["10.96.10.20", "fd00:10:96::14"],   // ["None"] headless, [] ExternalName
 *       "ipFamilies": ["IPv4", "IPv6"],
 *       "ipFamilyPolicy": "RequireDualStack",
 *       "ports": [{ "name": "http", "port": 80, "protocol": "TCP" }],   // + "nodePort"
 *       "request": "sha256:…"            // fingerprint of the manifest fields it was made from
 *     }
 *   },
 *   "released": {                          // recently deleted Services (see below)
 *     "shop/old": { "clusterIPs": ["10.96.7.7"], "nodePorts": [], "at": "2026-01-01T00:00:00.000Z" }
 *   }
 * }
 * ```
 *
 * `released` remembers the addresses of Services deleted in the last hour. They are
 * free (a manifest may ask for them, and the bitmaps do not hold them), but random
 * allocation avoids them and the same Service, if it comes back without asking for
 * specific addresses, gets them again: a file that is briefly empty or moved between
 * folders does not cost its Services their addresses. Absent in older files (empty).
 *
 * The bitmaps and the Services are two records of the same facts, as upstream keeps a
 * `RangeAllocation` next to the Service objects: the repair pass compares them (leaks,
 * IPs missing from the bitmap, out-of-range IPs after a CIDR change).
 *
 * ## Writing
 *
 * Write-ahead and atomic: the whole document goes to `allocations.json.tmp-<pid>`,
 * which is fsynced and closed, then renamed over `allocations.json`, then the
 * directory is fsynced (so the rename itself is durable). A reader sees either the
 * old or the new file, never a mix. Temp files left by a killed process are removed
 * at the next load (only those whose pid is not running).
 *
 * All I/O goes through {@link StateFs} (synchronous: the zones/ transform that calls
 * it is synchronous and must not return before the state is on disk), so tests can
 * inject failures (ENOSPC, EROFS) without root-only tricks.
 *
 * @module
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { IPFamily, IPFamilyPolicy, Protocol, ServiceType } from '../cluster/model.js';
import type { RangeAllocationJSON } from '../ipam/allocator.js';
import { Cidr, IP } from '../ipam/ip.js';
import type { PortAllocationJSON } from '../ipam/portallocator.js';

/** Name of the state file inside `<stateDir>/<zone>/`. */
export const STATE_FILE = 'allocations.json';
/** Value of the `format` key. */
export const STATE_FORMAT = 'clusterdns.allocations/v1';

/** One Service port as stored: what NodePort allocation needs. */
export interface PortRecord {
  readonly name: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly nodePort?: number;
}

/** A stored Service: the address fields the registry gave it. */
export interface AllocationRecord {
  readonly type: ServiceType;
  /** Allocated IPs in family order; `['None']` for headless, `[]` for ExternalName. */
  readonly clusterIPs: readonly string[];
  readonly ipFamilies: readonly IPFamily[];
  readonly ipFamilyPolicy?: IPFamilyPolicy;
  readonly ports: readonly PortRecord[];
  /** Fingerprint of the manifest fields the record was made from (see `requestFingerprint`). */
  readonly request: string;
}

/** The addresses a deleted Service had, remembered for a while. */
export interface ReleasedRecord {
  readonly clusterIPs: readonly string[];
  readonly nodePorts: readonly PortRecord[];
  /** When it was deleted (ms since the epoch). */
  readonly at: number;
}

/** The state of one zone: bitmaps plus stored Services. */
export interface AllocationState {
  readonly ranges: readonly RangeAllocationJSON[];
  readonly nodePorts: PortAllocationJSON;
  /** By `namespace/name`. */
  readonly records: ReadonlyMap<string, AllocationRecord>;
  /** Recently deleted Services by `namespace/name` (absent: none). */
  readonly released?: ReadonlyMap<string, ReleasedRecord>;
}

/** What a state file holds besides the state. */
export interface StateFileMeta {
  readonly generation: number;
  readonly serviceCIDRs: readonly string[];
  readonly nodePortRange: string;
  readonly writtenAt?: string;
}

/** The file's content is not a valid state document. */
export class StateFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateFormatError';
  }
}

/** An empty state for the configured ranges. */
export function emptyState(serviceCIDRs: readonly string[], nodePortRange: string): AllocationState {
  return {
    ranges: serviceCIDRs.map((c) => ({ family: Cidr.parse(c).family, range: Cidr.parse(c).toString(), data: '' })),
    nodePorts: { range: nodePortRange, data: '' },
    records: new Map(),
  };
}

function sortedRecords(records: ReadonlyMap<string, AllocationRecord>): Record<string, AllocationRecord> {
  const out: Record<string, AllocationRecord> = {};
  for (const key of [...records.keys()].sort()) {
    const r = records.get(key) as AllocationRecord;
    out[key] = {
      type: r.type,
      clusterIPs: [...r.clusterIPs],
      ipFamilies: [...r.ipFamilies],
      ...(r.ipFamilyPolicy === undefined ? {} : { ipFamilyPolicy: r.ipFamilyPolicy }),
      ports: r.ports.map(portJSON),
      request: r.request,
    };
  }
  return out;
}

function portJSON(p: PortRecord): PortRecord {
  return { name: p.name, port: p.port, protocol: p.protocol, ...(p.nodePort === undefined ? {} : { nodePort: p.nodePort }) };
}

function sortedReleased(released: ReadonlyMap<string, ReleasedRecord> | undefined): Record<string, { clusterIPs: string[]; nodePorts: PortRecord[]; at: string }> {
  const out: Record<string, { clusterIPs: string[]; nodePorts: PortRecord[]; at: string }> = {};
  if (released === undefined) return out;
  for (const key of [...released.keys()].sort()) {
    const r = released.get(key) as ReleasedRecord;
    out[key] = { clusterIPs: [...r.clusterIPs], nodePorts: r.nodePorts.map(portJSON), at: new Date(r.at).toISOString() };
  }
  return out;
}

/** Canonical JSON of the state alone (no generation or time): equal text, equal state. */
export function stateKey(state: AllocationState): string {
  return JSON.stringify({
    ranges: state.ranges.map((r) => ({ family: r.family, range: r.range, data: r.data })),
    nodePorts: { range: state.nodePorts.range, data: state.nodePorts.data },
    services: sortedRecords(state.records),
    released: sortedReleased(state.released),
  });
}

/** The file text for a state. */
export function encodeState(zone: string, state: AllocationState, meta: StateFileMeta): string {
  const doc = {
    format: STATE_FORMAT,
    zone,
    generation: meta.generation,
    writtenAt: meta.writtenAt ?? new Date().toISOString(),
    serviceCIDRs: [...meta.serviceCIDRs],
    nodePortRange: meta.nodePortRange,
    ranges: state.ranges.map((r) => ({ family: r.family, range: r.range, data: r.data })),
    nodePorts: { range: state.nodePorts.range, data: state.nodePorts.data },
    services: sortedRecords(state.records),
    released: sortedReleased(state.released),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

// --- decoding --------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(path: string, what: string): never {
  throw new StateFormatError(`${path}: ${what}`);
}

function str(o: Obj, key: string, path: string): string {
  const v = o[key];
  if (typeof v !== 'string') bad(`${path}.${key}`, 'must be a string');
  return v;
}

function base64(o: Obj, key: string, path: string): string {
  const v = str(o, key, path);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) bad(`${path}.${key}`, 'must be base64');
  return v;
}

const TYPES: readonly string[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const FAMILIES: readonly string[] = ['IPv4', 'IPv6'];
const POLICIES: readonly string[] = ['SingleStack', 'PreferDualStack', 'RequireDualStack'];
const PROTOCOLS: readonly string[] = ['TCP', 'UDP', 'SCTP'];

function port(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) bad(path, 'must be a port number');
  return v;
}

function decodePorts(v: unknown, path: string): PortRecord[] {
  if (!Array.isArray(v)) bad(path, 'must be a list');
  return v.map((p, i): PortRecord => {
    const pp = `${path}[${i}]`;
    if (!isObj(p)) bad(pp, 'must be an object');
    const protocol = str(p, 'protocol', pp);
    if (!PROTOCOLS.includes(protocol)) bad(`${pp}.protocol`, 'unknown protocol');
    const np = p['nodePort'];
    return {
      name: str(p, 'name', pp),
      port: port(p['port'], `${pp}.port`),
      protocol: protocol as Protocol,
      ...(np === undefined ? {} : { nodePort: port(np, `${pp}.nodePort`) }),
    };
  });
}

function decodeIPs(v: unknown, path: string): string[] {
  if (!Array.isArray(v) || v.length > 2) bad(path, 'must be a list of at most 2 entries');
  return v.map((ip, i) => {
    if (typeof ip !== 'string') bad(`${path}[${i}]`, 'must be a string');
    if (ip === 'None' && v.length === 1) return ip;
    const parsed = IP.parse(ip);
    if (parsed === undefined || parsed.toString() !== ip) bad(`${path}[${i}]`, `not a canonical IP: ${JSON.stringify(ip)}`);
    return ip;
  });
}

function decodeReleased(v: unknown, path: string): ReleasedRecord {
  if (!isObj(v)) bad(path, 'must be an object');
  const at = Date.parse(str(v, 'at', path));
  if (Number.isNaN(at)) bad(`${path}.at`, 'must be a time');
  const clusterIPs = decodeIPs(v['clusterIPs'], `${path}.clusterIPs`);
  if (clusterIPs.includes('None')) bad(`${path}.clusterIPs`, 'must be IPs');
  return { clusterIPs, nodePorts: decodePorts(v['nodePorts'], `${path}.nodePorts`), at };
}

function decodeRecord(v: unknown, path: string): AllocationRecord {
  if (!isObj(v)) bad(path, 'must be an object');
  const type = str(v, 'type', path);
  if (!TYPES.includes(type)) bad(`${path}.type`, `unknown type ${JSON.stringify(type)}`);
  const clusterIPs = decodeIPs(v['clusterIPs'], `${path}.clusterIPs`);
  const fams = v['ipFamilies'];
  if (!Array.isArray(fams) || fams.length > 2 || fams.some((f) => typeof f !== 'string' || !FAMILIES.includes(f))) {
    bad(`${path}.ipFamilies`, 'must be a list of IPv4/IPv6');
  }
  const policy = v['ipFamilyPolicy'];
  if (policy !== undefined && (typeof policy !== 'string' || !POLICIES.includes(policy))) bad(`${path}.ipFamilyPolicy`, 'unknown policy');
  const ports = decodePorts(v['ports'], `${path}.ports`);
  return {
    type: type as ServiceType,
    clusterIPs,
    ipFamilies: fams as IPFamily[],
    ...(policy === undefined ? {} : { ipFamilyPolicy: policy as IPFamilyPolicy }),
    ports,
    request: str(v, 'request', path),
  };
}

/**
 * Parses a state file. Throws {@link StateFormatError} naming the first problem
 * (`not JSON: ...`, `services["a/b"].clusterIPs[0]: not a canonical IP: "x"`).
 */
export function decodeState(text: string): AllocationState & StateFileMeta {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new StateFormatError(`not JSON: ${(err as Error).message}`);
  }
  if (!isObj(doc)) bad('document', 'must be an object');
  if (doc['format'] !== STATE_FORMAT) bad('format', `must be ${JSON.stringify(STATE_FORMAT)}, got ${JSON.stringify(doc['format'])}`);
  const generation = doc['generation'];
  if (typeof generation !== 'number' || !Number.isInteger(generation) || generation < 0) bad('generation', 'must be a whole number');
  const cidrs = doc['serviceCIDRs'];
  if (!Array.isArray(cidrs) || cidrs.some((c) => typeof c !== 'string')) bad('serviceCIDRs', 'must be a list of strings');
  const rawRanges = doc['ranges'];
  if (!Array.isArray(rawRanges)) bad('ranges', 'must be a list');
  const ranges = rawRanges.map((r, i): RangeAllocationJSON => {
    const p = `ranges[${i}]`;
    if (!isObj(r)) bad(p, 'must be an object');
    const family = str(r, 'family', p);
    if (!FAMILIES.includes(family)) bad(`${p}.family`, 'must be IPv4 or IPv6');
    const range = str(r, 'range', p);
    try {
      Cidr.parse(range);
    } catch {
      bad(`${p}.range`, `not a CIDR: ${JSON.stringify(range)}`);
    }
    return { family: family as IPFamily, range, data: base64(r, 'data', p) };
  });
  const np = doc['nodePorts'];
  if (!isObj(np)) bad('nodePorts', 'must be an object');
  const nodePorts = { range: str(np, 'range', 'nodePorts'), data: base64(np, 'data', 'nodePorts') };
  const services = doc['services'];
  if (!isObj(services)) bad('services', 'must be an object');
  const records = new Map<string, AllocationRecord>();
  for (const [key, v] of Object.entries(services)) {
    if (!/^[a-z0-9-]+\/[a-z0-9-]+$/.test(key)) bad(`services[${JSON.stringify(key)}]`, 'key must be namespace/name');
    records.set(key, decodeRecord(v, `services[${JSON.stringify(key)}]`));
  }
  const released = new Map<string, ReleasedRecord>();
  const rawReleased = doc['released'];
  if (rawReleased !== undefined) {
    if (!isObj(rawReleased)) bad('released', 'must be an object');
    for (const [key, v] of Object.entries(rawReleased)) {
      if (!/^[a-z0-9-]+\/[a-z0-9-]+$/.test(key)) bad(`released[${JSON.stringify(key)}]`, 'key must be namespace/name');
      released.set(key, decodeReleased(v, `released[${JSON.stringify(key)}]`));
    }
  }
  const writtenAt = doc['writtenAt'];
  return {
    ranges,
    nodePorts,
    records,
    released,
    generation,
    serviceCIDRs: cidrs as string[],
    nodePortRange: typeof doc['nodePortRange'] === 'string' ? doc['nodePortRange'] : nodePorts.range,
    ...(typeof writtenAt === 'string' ? { writtenAt } : {}),
  };
}

/** `sha256:<hex>` of a JSON value (record fingerprints). */
export function fingerprint(value: unknown): string {
  return `sha256:${createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 32)}`;
}

// --- file system -----------------------------------------------------------------

/**
 * The synchronous file operations the state needs. {@link nodeStateFs} is the real
 * one; tests wrap it to inject failures. Errors are Node's (`err.code`).
 */
export interface StateFs {
  /** Whole file as UTF-8. */
  readFile(path: string): string;
  /** Create `path` (and its parents). Returns the first directory it created, if any. */
  mkdirp(path: string): string | undefined;
  /** Create or truncate `path`, write `data`, fsync, close. */
  writeDurable(path: string, data: string): void;
  rename(from: string, to: string): void;
  /** fsync a directory (makes a rename or create in it durable). */
  fsyncDir(path: string): void;
  unlink(path: string): void;
  readdir(path: string): string[];
}

/** {@link StateFs} over `node:fs`. */
export const nodeStateFs: StateFs = {
  readFile: (path) => readFileSync(path, 'utf8'),
  mkdirp: (path) => mkdirSync(path, { recursive: true }),
  writeDurable: (path, data) => {
    const fd = openSync(path, 'w', 0o644);
    try {
      const buf = Buffer.from(data, 'utf8');
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
  rename: (from, to) => renameSync(from, to),
  fsyncDir: (path) => {
    const fd = openSync(path, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
  unlink: (path) => unlinkSync(path),
  readdir: (path) => readdirSync(path),
};

/** Outcome of {@link readStateFile}. */
export type ReadResult =
  | { readonly kind: 'missing' }
  | { readonly kind: 'ok'; readonly text: string }
  | { readonly kind: 'error'; readonly error: NodeJS.ErrnoException };

function code(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** Reads the state file; ENOENT is `missing` (and so is ENOTDIR: a path whose parent is a file has no state). */
export function readStateFile(fs: StateFs, path: string): ReadResult {
  try {
    return { kind: 'ok', text: fs.readFile(path) };
  } catch (err) {
    if (code(err) === 'ENOENT') return { kind: 'missing' };
    return { kind: 'error', error: err as NodeJS.ErrnoException };
  }
}

/**
 * Atomically replaces `path` with `text` (temp file, fsync, rename, fsync the
 * directory). Creates the directory if needed (and fsyncs the parent of the first
 * directory it created). Throws the first failure; the old file is then untouched.
 */
export function writeStateFile(fs: StateFs, path: string, text: string): void {
  const dir = dirname(path);
  const created = fs.mkdirp(dir);
  if (created !== undefined) fs.fsyncDir(dirname(created));
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    fs.writeDurable(tmp, text);
    fs.rename(tmp, path);
  } catch (err) {
    try {
      fs.unlink(tmp);
    } catch {
      // Not written, or already renamed: nothing to clean.
    }
    throw err;
  }
  fs.fsyncDir(dir);
}

/** `2026-01-02T03:04:05.678Z` → `20260102T030405Z` (for file names). */
function stamp(now: number): string {
  return new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/**
 * Renames a corrupt or unreadable state file aside to `<file>.corrupt-<time>` (a
 * counter is appended if that exists). Returns the new path; throws when it cannot.
 */
export function moveAside(fs: StateFs, path: string, now: number): string {
  let target = `${path}.corrupt-${stamp(now)}`;
  const taken = new Set<string>();
  try {
    for (const n of fs.readdir(dirname(path))) taken.add(join(dirname(path), n));
  } catch {
    // Listing is only to avoid clobbering an older copy.
  }
  for (let i = 1; taken.has(target); i++) target = `${path}.corrupt-${stamp(now)}-${i}`;
  fs.rename(path, target);
  fs.fsyncDir(dirname(path));
  return target;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return code(err) === 'EPERM';
  }
}

/** Removes `<file>.tmp-<pid>` files of processes that are gone (left by a crash). Best effort. */
export function removeStaleTemps(fs: StateFs, path: string): string[] {
  const removed: string[] = [];
  const dir = dirname(path);
  const prefix = `${path.slice(dir.length + 1)}.tmp-`;
  let names: string[];
  try {
    names = fs.readdir(dir);
  } catch {
    return removed;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(n.slice(prefix.length));
    if (!Number.isInteger(pid) || pid <= 0 || alive(pid)) continue;
    try {
      fs.unlink(join(dir, n));
      removed.push(join(dir, n));
    } catch {
      // Someone else cleaned it.
    }
  }
  return removed;
}
