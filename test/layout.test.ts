/**
 * The layout of src/, read from the imports of every src/**\/*.ts. Every kind counts:
 * `import` and `import type`, `export ... from`, side-effect imports, dynamic `import()`
 * and type-level `import('...')`. They are read with TypeScript's own pre-processor, so
 * an import in a comment or a string does not count. Only relative specifiers are
 * modules of ours (`node:*` and packages are not).
 *
 * Forbidden:
 * 1. A cycle between modules, of any length, type-only edges included (a type cycle ties
 *    two modules together as much as a value cycle does).
 * 2. An upward import into the composition root. The root is the top-level files that wire
 *    a process: app.ts, main.ts, config.ts, sources.ts, node.ts, forwarding.ts, replica.ts.
 *    No module in a subdirectory of src/ (cluster, dns, zone, ipam, registry, upstream,
 *    server, ops, proxy, net, and whatever comes) imports one of them: a subdirectory
 *    declares the narrow types it needs (cluster/provider.ts, KubeSourcesConfig, ...) and
 *    the root passes its values down. The exceptions still standing are in
 *    ROOT_EXCEPTIONS, each with its reason; one that is no longer used fails as well, so
 *    the list only shrinks.
 * 3. src/log.ts is no part of the root but a leaf every layer may use: it imports nothing
 *    from src/.
 * 4. src/net/ (address parsing and text, shared by dns, cluster, ipam, upstream, server
 *    and proxy) imports nothing from the project.
 * 5. A cycle between the subdirectories of src/ (a subdirectory counts with everything
 *    below it: cluster/kube is cluster): they form layers, e.g. net < dns < zone < server.
 *
 * Allowed: the root imports anything; a subdirectory imports another one as long as 5
 * holds; test/ and bench/ are not checked.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

const ROOT = ['app.ts', 'main.ts', 'config.ts', 'sources.ts', 'node.ts', 'forwarding.ts', 'replica.ts'];
const LEAF = 'log.ts';

/** `importer -> imported` (paths relative to src/) still allowed to point into the root, and why. */
const ROOT_EXCEPTIONS: Readonly<Record<string, string>> = {
  'registry/config.ts -> config.ts':
    "DEFAULT_CONFIG: the registry's defaults are the configuration's (`clusterdns ipam` without --config sees what `serve` allocates); moving them down means editing DEFAULT_CONFIG",
  'registry/cli.ts -> config.ts': 'loadConfigFile: `clusterdns ipam` is an entry point of its own, beside main.ts',
};

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Module (path relative to src/) → the modules it imports, and the imports that resolve to no file. */
function importGraph(): { graph: Map<string, string[]>; unresolved: string[] } {
  const graph = new Map<string, string[]>();
  const unresolved: string[] = [];
  for (const file of sources(SRC)) {
    const from = relative(SRC, file);
    const deps = new Set<string>();
    for (const { fileName } of ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles) {
      if (!fileName.startsWith('.')) continue;
      const target = resolve(dirname(file), fileName.replace(/\.js$/, '.ts'));
      if (!existsSync(target)) {
        unresolved.push(`${from}: ${fileName}`);
        continue;
      }
      deps.add(relative(SRC, target));
    }
    graph.set(from, [...deps].sort());
  }
  return { graph, unresolved };
}

/** Strongly connected components with more than one member, or a self-loop (Tarjan). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

/** One cycle through the members of a component, for the message: `a.ts -> b.ts -> a.ts`. */
function cyclePath(graph: ReadonlyMap<string, readonly string[]>, scc: readonly string[]): string {
  const members = new Set(scc);
  const start = scc[0]!;
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let x: string | undefined = v; x !== undefined && x !== start; x = prev.get(x)) path.splice(1, 0, x);
        return [...path, start].join(' -> ');
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return scc.join(', ');
}

const topDir = (m: string): string | undefined => (m.includes('/') ? m.slice(0, m.indexOf('/')) : undefined);

const { graph, unresolved } = importGraph();
const edges = [...graph].flatMap(([from, deps]) => deps.map((to) => ({ from, to })));

t.test('the graph is read', async (t) => {
  t.same(unresolved, [], 'every relative import names a file');
  for (const f of [...ROOT, LEAF]) t.ok(graph.has(f), `src/${f} exists`);
  t.ok(graph.has('net/ip.ts'), 'src/net/ip.ts exists');
  // The reader sees what it must: a dynamic import and a type import of the root.
  t.ok(graph.get('app.ts')?.includes('cluster/kube/index.ts'), "app.ts's dynamic import() counts");
  t.ok(edges.length > 200, `${edges.length} imports`);
});

t.test('no cycle between modules', async (t) => {
  const found = cycles(graph).map((scc) => {
    const path = cyclePath(graph, scc);
    const more = scc.length - (path.split(' -> ').length - 1);
    return more > 0 ? `${path} (and ${more} more modules tied to it: ${scc.join(', ')})` : path;
  });
  t.same(found, [], found.length === 0 ? 'none' : `cycles: ${found.join('; ')}`);
});

t.test('nothing below src/ imports the composition root', async (t) => {
  const up = edges.filter((e) => topDir(e.from) !== undefined && ROOT.includes(e.to)).map((e) => `${e.from} -> ${e.to}`);
  const unexpected = up.filter((e) => ROOT_EXCEPTIONS[e] === undefined);
  t.same(unexpected, [], 'upward imports (declare a narrow type below, or pass the value down)');
  const stale = Object.keys(ROOT_EXCEPTIONS).filter((e) => !up.includes(e));
  t.same(stale, [], 'exceptions no longer needed: delete them from ROOT_EXCEPTIONS');
});

t.test('src/log.ts is a leaf', async (t) => {
  t.same(graph.get(LEAF), []);
});

t.test('src/net imports nothing from the project', async (t) => {
  const out = edges.filter((e) => topDir(e.from) === 'net' && topDir(e.to) !== 'net').map((e) => `${e.from} -> ${e.to}`);
  t.same(out, []);
});

t.test('the subdirectories of src/ form layers', async (t) => {
  const dirs = new Map<string, string[]>();
  const why = new Map<string, string>();
  for (const { from, to } of edges) {
    const a = topDir(from);
    const b = topDir(to);
    if (a === undefined || b === undefined || a === b) continue;
    const list = dirs.get(a) ?? [];
    if (!list.includes(b)) list.push(b);
    dirs.set(a, list);
    if (!dirs.has(b)) dirs.set(b, []);
    why.set(`${a}>${b}`, `${from} -> ${to}`);
  }
  const found = cycles(dirs).map((scc) => {
    const path = cyclePath(dirs, scc).split(' -> ');
    return path
      .slice(1)
      .map((d, i) => why.get(`${path[i]}>${d}`))
      .join(', ');
  });
  t.same(found, [], found.length === 0 ? 'no cycle' : `directory cycles through: ${found.join('; ')}`);
});
