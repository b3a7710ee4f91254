/**
 * FileSource: serves `zones/<cluster-domain>/**` manifests as one ClusterStore per zone.
 *
 * Layout: each folder directly under `dir` is a zone (its lowercased name is the cluster
 * domain); every `.yaml`, `.yml` or `.json` file below it, in nested folders too, holds
 * Kubernetes objects: YAML multi-document (`---`), and `kind: List` (or `ServiceList`
 * etc.) with `items`. Names starting with `.` and other extensions are ignored.
 *
 * Robustness rules (the previous good version keeps serving):
 * - A file that cannot be read or parsed (a YAML syntax error in any document, a
 *   half-written file) keeps contributing exactly what it contributed before.
 * - An invalid object keeps the previous good version of that object (same kind,
 *   namespace and name, from the same file) if there was one; otherwise it is skipped.
 * - A file that vanished is dropped only once it has stayed missing for `deleteGraceMs`,
 *   so an editor that moves the old file away before writing the new one never makes
 *   names disappear. A changed file is read only once its mtime is `settleMs` old (500 ms
 *   for a file that became empty; never more than 1 s of waiting; not for the initial
 *   load), so a write in progress (truncated, empty) is not applied; and a file whose
 *   size, mtime or inode changes while it is read is read again later.
 * - The same object (kind/namespace/name) in two files: the first file by sorted path
 *   wins, the other copy is reported. Within one file, the first document wins.
 * - Every problem becomes a {@link Diagnostic} (file, document, kind/namespace/name,
 *   reason), logged once when it appears; nothing throws out of the source.
 *
 * Reload: each directory is watched (non-recursive fs.watch, re-synced after each scan),
 * and a cheap rescan (stat: mtime, size, inode) runs every `pollIntervalMs` as a safety net
 * for missed events. Events are debounced by `debounceMs`. Only changed files are re-read
 * and only zones with changes are rebuilt; a rebuild applies the new objects to the store
 * as a diff (upsert, then remove what is gone), so unchanged names never vanish and the
 * store's no-op detection keeps DNS rebuilds to what really changed.
 *
 * Namespaces: a namespace used by any object of a zone but with no Namespace manifest is
 * synthesized (labels `{}`); a Namespace manifest wins.
 *
 * Why not `fs.watch(dir, { recursive: true })`: it works on Node 20.20/Linux in a smoke
 * test, but there it is emulated in JavaScript (inotify watches added asynchronously as
 * folders appear). Watching each folder ourselves and rescanning the whole tree on any
 * event does not depend on that emulation: whatever an event misses, the rescan finds.
 *
 * The initial load applies each zone with `store.replace` (a full change); later reloads
 * use upsert/remove only.
 */
import { type FSWatcher, watch } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import type { Dirent, Stats } from 'node:fs';
import { join } from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import { objectRef, toClusterObject } from './convert.js';
import type { ClusterObject, Kind } from './model.js';
import { objectKey } from './model.js';
import { ClusterStore } from './store.js';

/** The small logging interface sources use (pino adapts to it in `log.ts`). */
export interface SourceLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** One current problem with the zones/ tree. */
export interface Diagnostic {
  /** `error`: something the user wrote is not served; `warning`: ignored on purpose. */
  readonly severity: 'error' | 'warning';
  readonly zone?: string;
  /** Path of the file (or folder), `dir` joined with the relative path. */
  readonly file: string;
  /** 1-based YAML document number (JSON files: 1). */
  readonly doc?: number;
  /** 0-based index in the `items` of a List document. */
  readonly item?: number;
  /** 1-based line where the object (or the YAML error) is. */
  readonly line?: number;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly message: string;
  /** True when a previous good version (of the file or of the object) keeps serving. */
  readonly keptPrevious?: boolean;
}

/** Where a loaded object came from. */
export interface Origin {
  readonly file: string;
  readonly doc: number;
}

/**
 * Hook for the embedded registry (allocator, endpoints controller): gets the full object
 * list of a zone on every (re)load, before namespaces are synthesized, and returns the
 * list to serve. If it throws, the zone keeps its previous state and a diagnostic is
 * reported.
 */
export type Transform = (zone: string, objects: ClusterObject[], origin: Map<ClusterObject, Origin>) => ClusterObject[];

export interface FileSourceOptions {
  /** The zones/ directory. */
  readonly dir: string;
  readonly log?: SourceLog;
  readonly transform?: Transform;
  /** Safety-net rescan period (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** Delay between a watch event and the rescan (default 75 ms). */
  readonly debounceMs?: number;
  /** How long a file must be missing before its objects are dropped (default 250 ms). */
  readonly deleteGraceMs?: number;
  /** How old a changed file's mtime must be before it is read (default 50 ms). */
  readonly settleMs?: number;
  /** Watch directories with fs.watch (default true); polling alone otherwise. */
  readonly watch?: boolean;
}

/** Zones that appeared or disappeared in one scan. */
export interface ZonesChange {
  readonly added: readonly string[];
  readonly removed: readonly string[];
}

const EXTENSIONS = ['.yaml', '.yml', '.json'];
const KINDS: readonly Kind[] = ['Namespace', 'Service', 'EndpointSlice', 'Endpoints', 'Pod', 'ServiceImport'];
/** Give up waiting for a file to settle after this long (a file rewritten non-stop, a future mtime). */
const MAX_SETTLE_WAIT_MS = 1000;
/** Settle time of a file that was emptied (truncated by a writer that is slow to write). */
const EMPTY_SETTLE_MS = 500;
/** Symlinked folders could loop; zones/ trees are shallow. */
const MAX_DEPTH = 16;
const ZONE_NAME = /^[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*$/;

const noopLog: SourceLog = { info() {}, warn() {}, error() {} };

interface Entry {
  readonly obj: ClusterObject;
  readonly doc: number;
}

interface FileState {
  /** Path relative to the zone folder, '/'-separated (sort key for the duplicate rule). */
  readonly rel: string;
  readonly path: string;
  /** dev:ino:size:mtime:ctime of the version `objects` came from ('' before the first read). */
  stamp: string;
  /** identity (`Kind ns/name`) → object, in document order. */
  objects: Map<string, Entry>;
  diagnostics: Diagnostic[];
  missingSince?: number;
  waitingSince?: number;
}

interface ZoneState {
  readonly name: string;
  dir: string;
  readonly files: Map<string, FileState>;
  /** The folder was seen by the last scan. */
  present: boolean;
  missingSince?: number;
  /** Listed by zones() (and announced). */
  announced: boolean;
  /** Keys applied to the store, per kind (for the diff). */
  applied: Map<Kind, Set<string>> | undefined;
  diagnostics: Diagnostic[];
  dirty: boolean;
}

interface Listing {
  readonly files: Map<string, string>; // rel → path
  readonly dirs: string[];
}

function identity(o: ClusterObject): string {
  return `${o.kind} ${objectKey(o.obj)}`;
}

function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Identity of a file version. ctime catches chmod (a file that was unreadable) and renames. */
function stampOf(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

function diagKey(d: Diagnostic): string {
  return JSON.stringify([d.file, d.doc, d.item, d.kind, d.namespace, d.name, d.message, d.severity]);
}

function byPath(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The first line of a YAML error (its pretty form adds a code excerpt below). */
function firstLine(s: string): string {
  const line = s.split('\n', 1)[0] ?? s;
  return line.replace(/:$/, '');
}

interface Candidate {
  readonly value: unknown;
  readonly doc: number;
  readonly item?: number;
  readonly line?: number;
  /** Kind implied by a typed list (`ServiceList` items lack `kind`). */
  readonly kind?: Kind;
}

type Parsed = { ok: true; candidates: Candidate[]; problems: Diagnostic[] } | { ok: false; problem: Diagnostic };

/** Split a file into objects. A syntax error anywhere fails the whole file. */
function parseText(path: string, text: string, zone: string): Parsed {
  const candidates: Candidate[] = [];
  const problems: Diagnostic[] = [];
  const values: { value: unknown; doc: number; line?: number }[] = [];
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (path.toLowerCase().endsWith('.json')) {
    try {
      values.push({ value: JSON.parse(text), doc: 1 });
    } catch (err) {
      return { ok: false, problem: { severity: 'error', zone, file: path, doc: 1, message: `JSON syntax error: ${errText(err)}` } };
    }
  } else {
    const lc = new LineCounter();
    const docs = parseAllDocuments(text, { lineCounter: lc });
    for (const [i, d] of [...docs].entries()) {
      const err = d.errors[0];
      if (err !== undefined) {
        const pos = err.linePos?.[0];
        return {
          ok: false,
          problem: {
            severity: 'error',
            zone,
            file: path,
            doc: i + 1,
            ...(pos === undefined ? {} : { line: pos.line }),
            message: `YAML syntax error: ${firstLine(err.message)}`,
          },
        };
      }
      try {
        // maxAliasCount bounds alias expansion ("billion laughs").
        const start = d.contents?.range[0] ?? d.range[0];
        values.push({ value: d.toJS({ maxAliasCount: 100 }), doc: i + 1, line: lc.linePos(start).line });
      } catch (e) {
        return { ok: false, problem: { severity: 'error', zone, file: path, doc: i + 1, message: `YAML error: ${errText(e)}` } };
      }
    }
  }
  for (const { value, doc, line } of values) {
    const at = line === undefined ? {} : { line };
    if (value === null || value === undefined) continue; // empty document (a trailing `---`, comments only)
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push({ severity: 'error', zone, file: path, doc, ...at, message: 'document is not a Kubernetes object (a mapping)' });
      continue;
    }
    const kind = (value as Record<string, unknown>)['kind'];
    if (typeof kind === 'string' && kind.endsWith('List') && Object.hasOwn(value, 'items')) {
      const items = (value as Record<string, unknown>)['items'];
      if (items === null || items === undefined) continue;
      if (!Array.isArray(items)) {
        problems.push({ severity: 'error', zone, file: path, doc, ...at, kind, message: 'items: must be an array' });
        continue;
      }
      const itemKind = kind === 'List' ? undefined : kind.slice(0, -'List'.length);
      if (itemKind !== undefined && !(KINDS as string[]).includes(itemKind)) {
        const r = toClusterObject({ ...(value as Record<string, unknown>), kind: itemKind });
        problems.push({ severity: 'warning', zone, file: path, doc, ...at, kind, message: r.ok ? 'unexpected list kind' : r.error });
        continue;
      }
      items.forEach((v: unknown, item) => {
        candidates.push({
          value: v,
          doc,
          item,
          ...at,
          ...(itemKind === undefined ? {} : { kind: itemKind as Kind }),
        });
      });
      continue;
    }
    candidates.push({ value, doc, ...at });
  }
  return { ok: true, candidates, problems };
}

/**
 * Loads and hot-reloads a zones/ directory into one ClusterStore per zone folder.
 *
 * ```ts
 * const files = new FileSource({ dir: 'zones', log });
 * files.onZonesChanged(({ added, removed }) => ...);
 * await files.start();                      // initial load done
 * const store = files.storeFor('cluster.local');
 * ...
 * await files.stop();
 * ```
 */
export class FileSource {
  readonly #dir: string;
  readonly #log: SourceLog;
  readonly #transform: Transform | undefined;
  readonly #pollMs: number;
  readonly #debounceMs: number;
  readonly #graceMs: number;
  readonly #settleMs: number;
  readonly #watchEnabled: boolean;

  readonly #zones = new Map<string, ZoneState>();
  readonly #stores = new Map<string, ClusterStore>();
  #rootDiagnostics: Diagnostic[] = [];
  #zoneListeners: ((change: ZonesChange) => void)[] = [];
  #reloadListeners: ((zone: string) => void)[] = [];

  readonly #watchers = new Map<string, FSWatcher>();
  #poll: NodeJS.Timeout | undefined;
  #timer: NodeJS.Timeout | undefined;
  #timerDue = 0;
  #scanning: Promise<void> | undefined;
  #rescanRequested = false;
  #started = false;
  #stopped = false;

  constructor(opts: FileSourceOptions) {
    this.#dir = opts.dir;
    this.#log = opts.log ?? noopLog;
    this.#transform = opts.transform;
    this.#pollMs = opts.pollIntervalMs ?? 1000;
    this.#debounceMs = opts.debounceMs ?? 75;
    this.#graceMs = opts.deleteGraceMs ?? 250;
    this.#settleMs = opts.settleMs ?? 50;
    this.#watchEnabled = opts.watch ?? true;
  }

  /** Initial load; resolves once every zone is in its store. Then watches for changes. */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    await this.#runScan(true);
    if (this.#stopped) return;
    this.#poll = setInterval(() => this.#schedule(0), this.#pollMs);
  }

  /** Stop watching and polling; waits for a scan in progress. The stores keep their data. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#poll !== undefined) clearInterval(this.#poll);
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#poll = this.#timer = undefined;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    await this.#scanning;
  }

  /** Rescan now (tests, SIGHUP); resolves when the scan has been applied. */
  async rescan(): Promise<void> {
    if (this.#stopped) return;
    while (this.#scanning !== undefined) await this.#scanning;
    await this.#runScan(false);
  }

  /** Rebuild a zone now even if no file changed (the registry can write its state again). */
  refresh(zone: string): void {
    const z = this.#zones.get(zone.toLowerCase().replace(/\.$/, ''));
    if (z === undefined) return;
    z.dirty = true;
    this.#schedule(0);
  }

  /** Current zones (folder names, lowercased), sorted. */
  zones(): string[] {
    return [...this.#zones.values()].filter((z) => z.announced).map((z) => z.name).sort();
  }

  /**
   * The store of a zone. Always the same store per zone name, created on first use, so a
   * caller may hold it before the folder exists; it is emptied when the folder goes away.
   */
  storeFor(zone: string): ClusterStore {
    const name = zone.toLowerCase().replace(/\.$/, '');
    let s = this.#stores.get(name);
    if (s === undefined) this.#stores.set(name, (s = new ClusterStore()));
    return s;
  }

  /** Current problems, by file and document. */
  diagnostics(): Diagnostic[] {
    const out = [...this.#rootDiagnostics];
    for (const z of this.#zones.values()) {
      for (const f of z.files.values()) out.push(...f.diagnostics);
      out.push(...z.diagnostics);
    }
    return out.sort((a, b) => byPath(a.file, b.file) || (a.doc ?? 0) - (b.doc ?? 0) || (a.item ?? 0) - (b.item ?? 0));
  }

  /** Called after a scan that added or removed zones. Returns an unsubscribe function. */
  onZonesChanged(listener: (change: ZonesChange) => void): () => void {
    this.#zoneListeners.push(listener);
    return () => {
      this.#zoneListeners = this.#zoneListeners.filter((l) => l !== listener);
    };
  }

  /** Called after a zone's objects were (re)applied to its store. */
  onReload(listener: (zone: string) => void): () => void {
    this.#reloadListeners.push(listener);
    return () => {
      this.#reloadListeners = this.#reloadListeners.filter((l) => l !== listener);
    };
  }

  // -------------------------------------------------------------------------------------
  // Scheduling.

  /** Run a scan in `delayMs` unless one is already due sooner. */
  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    const due = Date.now() + delayMs;
    if (this.#timer !== undefined) {
      if (this.#timerDue <= due) return;
      clearTimeout(this.#timer);
    }
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#runScan(false);
    }, delayMs);
  }

  #runScan(initial: boolean): Promise<void> {
    if (this.#scanning !== undefined) {
      this.#rescanRequested = true;
      return this.#scanning;
    }
    const p = this.#scan(initial)
      .catch((err: unknown) => {
        // Defensive: #scan handles its own I/O errors; this is a bug, not a bad file.
        this.#log.error('zones scan failed', { dir: this.#dir, err: errText(err) });
      })
      .finally(() => {
        this.#scanning = undefined;
        if (this.#rescanRequested) {
          this.#rescanRequested = false;
          this.#schedule(0);
        }
      });
    this.#scanning = p;
    return p;
  }

  // -------------------------------------------------------------------------------------
  // Scanning.

  async #scan(initial: boolean): Promise<void> {
    const now = Date.now();
    const rootDiags: Diagnostic[] = [];
    const watchDirs = new Set<string>();
    let entries: Dirent[] | undefined;
    try {
      entries = await readdir(this.#dir, { withFileTypes: true });
      watchDirs.add(this.#dir);
    } catch (err) {
      const missing = errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR';
      rootDiags.push({ severity: 'error', file: this.#dir, message: missing ? 'zones directory does not exist' : `cannot read zones directory: ${errText(err)}` });
      if (!missing) {
        // Unreadable (permissions, I/O): keep serving everything as it is.
        this.#setRootDiagnostics(rootDiags);
        return;
      }
    }

    // Zone folders present now.
    const seen = new Map<string, { dir: string; listing: Listing }>();
    for (const e of (entries ?? []).sort((a, b) => byPath(a.name, b.name))) {
      if (e.name.startsWith('.')) continue;
      const path = join(this.#dir, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await stat(path).catch(() => undefined);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isFile && EXTENSIONS.some((x) => e.name.toLowerCase().endsWith(x))) {
        rootDiags.push({ severity: 'warning', file: path, message: 'file is not inside a zone folder (zones/<cluster-domain>/); ignored' });
        continue;
      }
      if (!isDir) continue;
      const zone = e.name.toLowerCase().replace(/\.$/, '');
      if (!ZONE_NAME.test(zone) || zone.length > 253) {
        rootDiags.push({ severity: 'warning', file: path, message: `folder name ${JSON.stringify(e.name)} is not a domain name; ignored` });
        continue;
      }
      const other = seen.get(zone);
      if (other !== undefined) {
        rootDiags.push({ severity: 'error', file: path, zone, message: `zone ${zone} is already served from ${other.dir}; folder ignored` });
        continue;
      }
      const listing: Listing = { files: new Map(), dirs: [] };
      await this.#walk(path, '', 0, listing, rootDiags, zone);
      seen.set(zone, { dir: path, listing });
      for (const d of listing.dirs) watchDirs.add(d);
    }
    if (this.#stopped) return;

    const added: string[] = [];
    const removed: string[] = [];
    for (const [name, { dir, listing }] of seen) {
      let z = this.#zones.get(name);
      if (z === undefined) {
        z = { name, dir, files: new Map(), present: true, announced: false, applied: undefined, diagnostics: [], dirty: true };
        this.#zones.set(name, z);
      }
      z.dir = dir;
      z.present = true;
      delete z.missingSince;
      await this.#syncFiles(z, listing.files, now, initial);
    }
    for (const z of this.#zones.values()) {
      if (seen.has(z.name)) continue;
      z.present = false;
      z.missingSince ??= now;
      await this.#syncFiles(z, new Map(), now, initial);
    }
    if (this.#stopped) return;

    for (const z of [...this.#zones.values()]) {
      if (!z.present && z.files.size === 0 && now - (z.missingSince ?? now) >= this.#graceMs) {
        this.#zones.delete(z.name);
        if (z.announced) {
          this.#clearStore(z.name);
          removed.push(z.name);
          this.#log.info('zone removed', { zone: z.name, dir: z.dir });
        }
        continue;
      }
      if (!z.present) this.#schedule(this.#graceMs);
      if (z.dirty || z.applied === undefined) this.#rebuild(z);
      if (!z.announced && z.present) {
        z.announced = true;
        added.push(z.name);
      }
    }

    this.#setRootDiagnostics(rootDiags);
    this.#syncWatchers(watchDirs);
    if (added.length > 0 || removed.length > 0) {
      const change: ZonesChange = { added, removed };
      for (const l of this.#zoneListeners) {
        try {
          l(change);
        } catch (err) {
          this.#log.error('zones listener failed', { err: errText(err) });
        }
      }
    }
  }

  /** Collect supported files (and folders to watch) below a zone folder. */
  async #walk(dir: string, rel: string, depth: number, out: Listing, diags: Diagnostic[], zone: string): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errCode(err) !== 'ENOENT') diags.push({ severity: 'error', zone, file: dir, message: `cannot read folder: ${errText(err)}` });
      return;
    }
    out.dirs.push(dir);
    for (const e of entries.sort((a, b) => byPath(a.name, b.name))) {
      if (e.name.startsWith('.')) continue;
      const path = join(dir, e.name);
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        // Followed: a ConfigMap volume is made of symlinks.
        const st = await stat(path).catch(() => undefined);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isDir) {
        if (depth + 1 >= MAX_DEPTH) {
          diags.push({ severity: 'warning', zone, file: path, message: `folders nested deeper than ${MAX_DEPTH} levels are ignored` });
        } else {
          await this.#walk(path, r, depth + 1, out, diags, zone);
        }
      } else if (isFile && EXTENSIONS.some((x) => e.name.toLowerCase().endsWith(x))) {
        out.files.set(r, path);
      }
    }
  }

  /** Bring a zone's file states up to date with the listing; marks the zone dirty on change. */
  async #syncFiles(z: ZoneState, listed: Map<string, string>, now: number, initial: boolean): Promise<void> {
    for (const [rel, path] of listed) {
      let f = z.files.get(rel);
      if (f === undefined) {
        f = { rel, path, stamp: '', objects: new Map(), diagnostics: [] };
        z.files.set(rel, f);
      }
      if (f.missingSince !== undefined) {
        delete f.missingSince;
        z.dirty = true; // its objects move back to full precedence
      }
      if (await this.#refreshFile(z, f, now, initial)) z.dirty = true;
      if (this.#stopped) return;
    }
    for (const f of [...z.files.values()]) {
      if (listed.has(f.rel)) continue;
      if (f.missingSince === undefined) {
        f.missingSince = now;
        z.dirty = true;
      }
      if (now - f.missingSince >= this.#graceMs) {
        z.files.delete(f.rel);
        z.dirty = true;
      } else {
        this.#schedule(this.#graceMs - (now - f.missingSince));
      }
    }
  }

  /** Re-read a file if it changed. Returns true when its contribution may have changed. */
  async #refreshFile(z: ZoneState, f: FileState, now: number, initial: boolean): Promise<boolean> {
    let before: Stats;
    try {
      before = await stat(f.path);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return false; // vanished since the listing: the next scan sees it missing
      return this.#setFileProblem(z, f, '', `cannot read file: ${errText(err)}`);
    }
    const stamp = stampOf(before);
    if (stamp === f.stamp) return false;
    // A write may be in progress: wait until the mtime has settled (not for the initial
    // load, which must not come up half empty), but not forever. A file that just became
    // empty is most likely truncated by a writer that has not written yet: wait longer.
    const settle = before.size === 0 && f.objects.size > 0 ? EMPTY_SETTLE_MS : this.#settleMs;
    const age = now - before.mtimeMs;
    if (!initial && age < settle) {
      f.waitingSince ??= now;
      if (now - f.waitingSince < MAX_SETTLE_WAIT_MS) {
        this.#schedule(Math.max(1, settle - age));
        return false;
      }
    }
    // Read until the file holds still while we read it (size, mtime and inode unchanged).
    // After the initial load a moving file is simply retried later.
    let expected = stamp;
    for (let attempt = 1; ; attempt++) {
      let text: string;
      let after: Stats;
      try {
        text = await readFile(f.path, 'utf8');
        after = await stat(f.path);
      } catch (err) {
        if (errCode(err) === 'ENOENT') return false;
        return this.#setFileProblem(z, f, expected, `cannot read file: ${errText(err)}`);
      }
      const got = stampOf(after);
      if (got === expected || (initial && attempt >= 3)) {
        delete f.waitingSince;
        f.stamp = got;
        this.#load(z, f, text);
        return true;
      }
      if (!initial) {
        this.#schedule(this.#settleMs);
        return false;
      }
      expected = got;
    }
  }

  /** The file as a whole is unusable: keep its previous contribution. */
  #setFileProblem(z: ZoneState, f: FileState, stamp: string, message: string): boolean {
    f.stamp = stamp;
    this.#setFileDiagnostics(f, [{ severity: 'error', zone: z.name, file: f.path, message, keptPrevious: f.objects.size > 0 }]);
    return false;
  }

  /** Parse and convert a file's text, keeping previous good versions where needed. */
  #load(z: ZoneState, f: FileState, text: string): void {
    const parsed = parseText(f.path, text, z.name);
    if (!parsed.ok) {
      this.#setFileDiagnostics(f, [{ ...parsed.problem, keptPrevious: f.objects.size > 0 }]);
      return;
    }
    const diags = [...parsed.problems];
    const next = new Map<string, Entry>();
    for (const c of parsed.candidates) {
      const where = { zone: z.name, file: f.path, doc: c.doc, ...(c.item === undefined ? {} : { item: c.item }), ...(c.line === undefined ? {} : { line: c.line }) };
      const r = toClusterObject(c.value, c.kind);
      if (r.ok) {
        const id = identity(r.value);
        const first = next.get(id);
        if (first !== undefined) {
          diags.push({ severity: 'error', ...where, ...refOf(r.value), message: `duplicate of ${describe(r.value)} in document ${first.doc} of the same file; ignored` });
          continue;
        }
        next.set(id, { obj: r.value, doc: c.doc });
        continue;
      }
      const ref = objectRef(c.value, c.kind);
      if (r.unsupported === true) {
        diags.push({ severity: 'warning', ...where, ...ref, message: r.error });
        continue;
      }
      // Keep the previous good version of this very object, if this file had one.
      let kept = false;
      if (ref.kind !== undefined && ref.name !== undefined) {
        const id = `${ref.kind} ${ref.namespace === undefined ? ref.name : `${ref.namespace}/${ref.name}`}`;
        const prev = f.objects.get(id);
        if (prev !== undefined && !next.has(id)) {
          next.set(id, prev);
          kept = true;
        }
      }
      diags.push({ severity: 'error', ...where, ...ref, message: r.error, ...(kept ? { keptPrevious: true } : {}) });
    }
    f.objects = next;
    this.#setFileDiagnostics(f, diags);
  }

  // -------------------------------------------------------------------------------------
  // Building a zone.

  #rebuild(z: ZoneState): void {
    z.dirty = false;
    const diags: Diagnostic[] = [];
    const files = [...z.files.values()].sort((a, b) => byPath(a.rel, b.rel));
    const winners = new Map<string, { entry: Entry; file: FileState }>();
    // Files present now win in path order; a file in its deletion grace only fills gaps.
    for (const f of files) {
      if (f.missingSince !== undefined) continue;
      for (const [id, entry] of f.objects) {
        const first = winners.get(id);
        if (first === undefined) {
          winners.set(id, { entry, file: f });
        } else {
          diags.push({
            severity: 'error',
            zone: z.name,
            file: f.path,
            doc: entry.doc,
            ...refOf(entry.obj),
            message: `duplicate of ${describe(entry.obj)} already defined in ${first.file.rel} (document ${first.entry.doc}); ignored`,
          });
        }
      }
    }
    for (const f of files) {
      if (f.missingSince === undefined) continue;
      for (const [id, entry] of f.objects) if (!winners.has(id)) winners.set(id, { entry, file: f });
    }

    let objects: ClusterObject[] = [];
    const origin = new Map<ClusterObject, Origin>();
    for (const { entry, file } of winners.values()) {
      objects.push(entry.obj);
      origin.set(entry.obj, { file: file.path, doc: entry.doc });
    }
    if (this.#transform !== undefined) {
      try {
        objects = this.#transform(z.name, objects, origin);
      } catch (err) {
        diags.push({ severity: 'error', zone: z.name, file: z.dir, message: `transform failed: ${errText(err)}`, keptPrevious: z.applied !== undefined });
        this.#setZoneDiagnostics(z, diags);
        if (z.applied !== undefined) return;
        objects = [];
      }
    }

    // Namespaces nobody declared.
    const declared = new Set<string>();
    for (const o of objects) if (o.kind === 'Namespace') declared.add(o.obj.name);
    const implied = new Set<string>();
    for (const o of objects) if (o.kind !== 'Namespace' && !declared.has(o.obj.namespace)) implied.add(o.obj.namespace);
    for (const name of [...implied].sort()) objects.push({ kind: 'Namespace', obj: { name, labels: {} } });

    this.#apply(z, objects);
    this.#setZoneDiagnostics(z, diags);
    for (const l of this.#reloadListeners) {
      try {
        l(z.name);
      } catch (err) {
        this.#log.error('reload listener failed', { zone: z.name, err: errText(err) });
      }
    }
  }

  /** Make the zone's store hold exactly `objects`, as a diff. */
  #apply(z: ZoneState, objects: ClusterObject[]): void {
    const store = this.storeFor(z.name);
    const byKind = new Map<Kind, ClusterObject[]>(KINDS.map((k) => [k, []]));
    for (const o of objects) byKind.get(o.kind)?.push(o);
    const applied = new Map<Kind, Set<string>>();
    store.batch(() => {
      for (const kind of KINDS) {
        const objs = byKind.get(kind) ?? [];
        const keys = new Set(objs.map((o) => objectKey(o.obj)));
        applied.set(kind, keys);
        if (z.applied === undefined) {
          // Initial load: a full replace (consumers may rebuild everything).
          store.replace(kind, objs);
          continue;
        }
        for (const o of objs) store.upsert(o);
        for (const key of z.applied.get(kind) ?? []) if (!keys.has(key)) store.remove(kind, key);
      }
    });
    const first = z.applied === undefined;
    z.applied = applied;
    const count = (k: Kind): number => applied.get(k)?.size ?? 0;
    this.#log.info(first ? 'zone loaded' : 'zone reloaded', {
      zone: z.name,
      dir: z.dir,
      files: z.files.size,
      namespaces: count('Namespace'),
      services: count('Service'),
      endpointSlices: count('EndpointSlice'),
      endpoints: count('Endpoints'),
      pods: count('Pod'),
      serviceImports: count('ServiceImport'),
    });
  }

  #clearStore(zone: string): void {
    const store = this.storeFor(zone);
    store.batch(() => {
      for (const kind of KINDS) store.replace(kind, []);
    });
  }

  // -------------------------------------------------------------------------------------
  // Watching.

  #syncWatchers(dirs: Set<string>): void {
    if (!this.#watchEnabled || this.#stopped) return;
    for (const [dir, w] of this.#watchers) {
      if (!dirs.has(dir)) {
        w.close();
        this.#watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.#watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: true }, () => this.#schedule(this.#debounceMs));
        w.on('error', () => {
          // The folder went away, or inotify gave up: polling covers it; the next scan re-adds.
          w.close();
          if (this.#watchers.get(dir) === w) this.#watchers.delete(dir);
          this.#schedule(this.#debounceMs);
        });
        this.#watchers.set(dir, w);
      } catch (err) {
        // ENOSPC (inotify watch limit), EMFILE…: polling still picks changes up.
        this.#log.warn('cannot watch folder; relying on the periodic rescan', { dir, err: errText(err) });
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // Diagnostics: logged once when they appear.

  #setFileDiagnostics(f: FileState, diags: Diagnostic[]): void {
    const hadProblems = f.diagnostics.length > 0;
    this.#noteNew(diags, f.diagnostics);
    f.diagnostics = diags;
    if (hadProblems && diags.length === 0) this.#log.info('file problems resolved', { file: f.path });
  }

  #setZoneDiagnostics(z: ZoneState, diags: Diagnostic[]): void {
    this.#noteNew(diags, z.diagnostics);
    z.diagnostics = diags;
  }

  #setRootDiagnostics(diags: Diagnostic[]): void {
    this.#noteNew(diags, this.#rootDiagnostics);
    this.#rootDiagnostics = diags;
  }

  #noteNew(next: Diagnostic[], prev: Diagnostic[]): void {
    const old = new Set(prev.map(diagKey));
    for (const d of next) {
      if (old.has(diagKey(d))) continue;
      const { message, severity, ...fields } = d;
      const text = d.keptPrevious === true ? `${message} (previous version kept)` : message;
      if (severity === 'error') this.#log.error(text, fields);
      else this.#log.warn(text, fields);
    }
  }
}

function refOf(o: ClusterObject): { kind: string; namespace?: string; name: string } {
  return o.kind === 'Namespace' ? { kind: o.kind, name: o.obj.name } : { kind: o.kind, namespace: o.obj.namespace, name: o.obj.name };
}

function describe(o: ClusterObject): string {
  return `${o.kind} ${objectKey(o.obj)}`;
}
