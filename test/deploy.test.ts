/**
 * deploy/kubernetes/: every manifest is valid against the Kubernetes schemas (offline, with
 * kubernetes-models, plus an unknown-field check from @kubernetes/client-node's models, as
 * `kubectl apply --validate=strict` would reject a misspelt field), and the objects say what the
 * operations docs promise: least-privilege RBAC covering what the source reads, probes on
 * /healthz and /readyz, a hardened pod, the kube-dns Service on 10.96.0.10, a config that
 * parseConfig accepts, and container args that the CLI's own `serve --help` lists. The node
 * overlay (node/: `clusterdns proxy` as kube-proxy's replacement) is held to the same: RBAC that
 * is exactly what the proxy's API source reads, a DaemonSet on the host network with NET_ADMIN
 * and NET_RAW and nothing privileged, a config with the `proxy:` keys, args that
 * `clusterdns proxy --help` lists.
 *
 * Kustomizations are resolved by a small emulation (resources + inline JSON 6902 patches, and
 * nothing else: anything more fails here until the emulation learns it); when kubectl is on
 * PATH its `kubectl kustomize` output must equal the emulation's.
 */
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { API_VERSIONS } from '../src/cluster/convert.js';
import { type Config, parseConfig } from '../src/config.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DEPLOY = join(ROOT, 'deploy', 'kubernetes');
const BIN = join(ROOT, 'bin', 'clusterdns.js');
const NAMESPACE = 'kube-system';
const CLUSTER_SCOPED = new Set(['ClusterRole', 'ClusterRoleBinding', 'Namespace', 'PriorityClass']);
/** The labels of kube-proxy's pods (kubeadm's DaemonSet). */
const KUBE_PROXY_POD_LABELS: Record<string, string>[] = [{ 'k8s-app': 'kube-proxy' }];
/** The labels of CoreDNS's pods (kubeadm; coredns/deployment adds app.kubernetes.io/name). */
const COREDNS_POD_LABELS: Record<string, string>[] = [{ 'k8s-app': 'kube-dns' }, { 'k8s-app': 'kube-dns', 'app.kubernetes.io/name': 'coredns' }];

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata?: k8s.V1ObjectMeta;
  [field: string]: unknown;
}

interface Doc {
  readonly file: string; // relative to deploy/kubernetes, posix
  readonly index: number;
  readonly obj: K8sObject;
}

const rel = (p: string): string => relative(DEPLOY, p).split('\\').join('/') || '.';
const isKustomization = (name: string): boolean => /^(kustomization\.ya?ml|Kustomization)$/.test(name);
const isManifest = (name: string): boolean => /\.(ya?ml|json)$/.test(name) && !isKustomization(name);
const idOf = (o: K8sObject): string => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
const byId = (a: K8sObject, b: K8sObject): number => idOf(a).localeCompare(idOf(b));

// ---------------------------------------------------------------------------------------
// Loading

/** Problems found while loading, reported by the first test (not thrown at import time). */
const loadProblems: string[] = [];
/** Documents whose YAML 1.1 reading (Kubernetes') differs from the YAML 1.2 one. */
const ambiguous: string[] = [];

function walk(dir: string): { dirs: string[]; files: string[] } {
  const dirs = [dir];
  const files: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      const sub = walk(p);
      dirs.push(...sub.dirs);
      files.push(...sub.files);
    } else if (e.isFile()) {
      files.push(p);
    }
  }
  return { dirs, files };
}

/** Every YAML document of a file, read as Kubernetes reads it (YAML 1.1). */
function loadDocs(path: string): unknown[] {
  const text = readFileSync(path, 'utf8');
  const asK8s = parseAllDocuments(text, { version: '1.1' });
  const as12 = parseAllDocuments(text);
  if (!Array.isArray(asK8s) || !Array.isArray(as12)) return [];
  const out: unknown[] = [];
  asK8s.forEach((doc, i) => {
    for (const e of [...doc.errors, ...doc.warnings]) loadProblems.push(`${rel(path)} document ${i + 1}: ${e.message}`);
    const v = doc.toJS() as unknown;
    if (JSON.stringify(v) !== JSON.stringify(as12[i]?.toJS())) ambiguous.push(`${rel(path)} document ${i + 1}`);
    if (v !== null && v !== undefined) out.push(v);
  });
  return out;
}

const tree = existsSync(DEPLOY) ? walk(DEPLOY) : { dirs: [], files: [] };
if (!existsSync(DEPLOY)) loadProblems.push('deploy/kubernetes/ does not exist');
const docs: Doc[] = [];
for (const file of tree.files.filter((f) => isManifest(f.split(/[\\/]/).pop()!))) {
  loadDocs(file).forEach((obj, index) => {
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      loadProblems.push(`${rel(file)} document ${index + 1}: not a mapping`);
      return;
    }
    const o = obj as K8sObject;
    if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string') {
      loadProblems.push(`${rel(file)} document ${index + 1}: apiVersion and kind are required`);
      return;
    }
    docs.push({ file: rel(file), index, obj: o });
  });
}

// ---------------------------------------------------------------------------------------
// Kustomize, the part these manifests use

interface Kustomization {
  apiVersion?: string;
  kind?: string;
  resources?: string[];
  patches?: { target?: Record<string, string>; patch?: string; path?: string }[];
}

const KNOWN_KUSTOMIZE_KEYS = new Set(['apiVersion', 'kind', 'resources', 'patches']);

function readKustomization(dir: string): Kustomization {
  const name = readdirSync(dir).find(isKustomization);
  if (name === undefined) throw new Error(`${rel(dir)}: no kustomization.yaml`);
  const k = parseYaml(readFileSync(join(dir, name), 'utf8')) as Kustomization;
  const unknown = Object.keys(k).filter((key) => !KNOWN_KUSTOMIZE_KEYS.has(key));
  if (unknown.length > 0) {
    throw new Error(`${rel(dir)}/${name}: ${unknown.join(', ')} not understood by test/deploy.test.ts's kustomize emulation; teach it`);
  }
  return k;
}

type JsonPatchOp = { op: string; path: string; value?: unknown };

function pointer(path: string): string[] {
  if (!path.startsWith('/')) throw new Error(`JSON pointer ${path} must start with /`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function applyJsonPatch(obj: K8sObject, ops: JsonPatchOp[]): void {
  for (const { op, path, value } of ops) {
    const keys = pointer(path);
    const last = keys.pop()!;
    let at: unknown = obj;
    for (const k of keys) {
      at = (at as Record<string, unknown> | undefined)?.[k];
      if (typeof at !== 'object' || at === null) throw new Error(`${op} ${path}: ${k} does not exist in ${idOf(obj)}`);
    }
    if (Array.isArray(at)) {
      const parent = at as unknown[];
      const i = last === '-' ? parent.length : Number(last);
      if (op === 'remove') parent.splice(i, 1);
      else if (op === 'add') parent.splice(i, 0, value);
      else if (op === 'replace') parent[i] = value;
      else throw new Error(`JSON patch op ${op} not supported by the emulation`);
    } else {
      const parent = at as Record<string, unknown>;
      if ((op === 'remove' || op === 'replace') && !(last in parent)) throw new Error(`${op} ${path}: no such field in ${idOf(obj)}`);
      if (op === 'remove') delete parent[last];
      else if (op === 'add' || op === 'replace') parent[last] = value;
      else throw new Error(`JSON patch op ${op} not supported by the emulation`);
    }
  }
}

function targets(o: K8sObject, target: Record<string, string>): boolean {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const want: Record<string, string | undefined> = {
    group,
    version,
    kind: o.kind,
    name: o.metadata?.name,
    namespace: o.metadata?.namespace,
  };
  return Object.entries(target).every(([k, v]) => {
    if (!(k in want)) throw new Error(`patch target field ${k} not supported by the emulation`);
    return want[k] === v;
  });
}

/** The objects `kubectl kustomize dir` prints, as far as the emulation goes. */
function kustomize(dir: string): K8sObject[] {
  const k = readKustomization(dir);
  const out: K8sObject[] = [];
  for (const r of k.resources ?? []) {
    const p = join(dir, r);
    if (statSync(p).isDirectory()) out.push(...kustomize(p));
    else for (const d of docs.filter((x) => x.file === rel(p))) out.push(structuredClone(d.obj));
  }
  for (const p of k.patches ?? []) {
    if (p.path !== undefined || p.patch === undefined) throw new Error(`${rel(dir)}: only inline patches are emulated`);
    const ops = parseYaml(p.patch) as unknown;
    if (!Array.isArray(ops)) throw new Error(`${rel(dir)}: only JSON 6902 patches (a list of ops) are emulated`);
    const hit = out.filter((o) => targets(o, p.target ?? {}));
    if (hit.length === 0) throw new Error(`${rel(dir)}: patch target ${JSON.stringify(p.target)} matches nothing`);
    for (const o of hit) applyJsonPatch(o, ops as JsonPatchOp[]);
  }
  return out.sort(byId);
}

const kustomizeDirs = tree.dirs.filter((d) => readdirSync(d).some(isKustomization));

// ---------------------------------------------------------------------------------------
// Schema validation

type Validating = new (data: unknown) => { validate(): void };

async function modelClass(apiVersion: string, kind: string): Promise<Validating> {
  if (!/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/.test(apiVersion) || !/^[A-Z][A-Za-z0-9]+$/.test(kind)) {
    throw new Error(`not a Kubernetes apiVersion/kind: ${apiVersion} ${kind}`);
  }
  const mod = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, unknown>;
  const cls = mod[kind];
  if (typeof cls !== 'function') throw new Error(`kubernetes-models has no ${apiVersion} ${kind}`);
  return cls as Validating;
}

interface Attribute {
  readonly baseName: string;
  readonly type: string;
}
type Model = { getAttributeTypeMap(): Attribute[] };
const MODELS = k8s as unknown as Record<string, Model | undefined>;
const SCALARS = new Set(['string', 'number', 'boolean', 'Date', 'any', 'object', 'IntOrString']);

/** Fields that no Kubernetes type has (kubernetes-models' schemas let them through). */
function unknownFields(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined || SCALARS.has(type)) return;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr !== null) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, arr[1]!, `${path}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map !== null) {
    if (typeof value === 'object') for (const [k, v] of Object.entries(value)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return;
  }
  const model = MODELS[type];
  if (typeof model?.getAttributeTypeMap !== 'function') {
    out.push(`${path}: no model for ${type}`);
    return;
  }
  if (typeof value !== 'object' || Array.isArray(value)) return; // a type error: the schema check reports it
  const attrs = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    const tp = attrs.get(k);
    if (tp === undefined) out.push(`${path === '' ? '' : `${path}.`}${k}`);
    else unknownFields(v, tp, path === '' ? k : `${path}.${k}`, out);
  }
}

/** client-node's name of a top-level type: apps/v1 Deployment → V1Deployment. */
function modelName(o: K8sObject): string {
  const version = o.apiVersion.split('/').pop()!;
  return `${version[0]!.toUpperCase()}${version.slice(1)}${o.kind}`;
}

// ---------------------------------------------------------------------------------------
// Helpers for the assertions

type Labels = Record<string, string>;

function selects(sel: k8s.V1LabelSelector | undefined, labels: Labels | undefined): boolean {
  if (sel === undefined) return false;
  const l = labels ?? {};
  const ml = sel.matchLabels ?? {};
  const exprs = sel.matchExpressions ?? [];
  if (Object.keys(ml).length === 0 && exprs.length === 0) return true;
  return (
    Object.entries(ml).every(([k, v]) => l[k] === v) &&
    exprs.every((e) => {
      const has = e.key in l;
      switch (e.operator) {
        case 'In':
          return has && (e.values ?? []).includes(l[e.key]!);
        case 'NotIn':
          return !has || !(e.values ?? []).includes(l[e.key]!);
        case 'Exists':
          return has;
        case 'DoesNotExist':
          return !has;
        default:
          throw new Error(`unknown selector operator ${e.operator}`);
      }
    })
  );
}

/** A Service's plain map selector, as a label selector. */
const mapSelector = (m: Labels | undefined): k8s.V1LabelSelector | undefined => (m === undefined ? undefined : { matchLabels: m });

function only<T>(set: readonly K8sObject[], kind: string, name?: string): T {
  const hits = set.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  if (hits.length !== 1) throw new Error(`expected one ${kind}${name === undefined ? '' : ` ${name}`}, found ${hits.length}`);
  return hits[0] as unknown as T;
}

/** `--flag value` or `--flag=value` from an args list. */
function argValue(args: readonly string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === flag) return args[i + 1];
    if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
  }
  return undefined;
}

const portOf = (hostPort: string | undefined): number | undefined => {
  const m = /:(\d+)$/.exec(hostPort ?? '');
  return m === null ? undefined : Number(m[1]);
};

function containerPort(c: k8s.V1Container, port: k8s.IntOrString | undefined, protocol = 'TCP'): k8s.V1ContainerPort | undefined {
  return (c.ports ?? []).find(
    (p) => (typeof port === 'string' ? p.name === port : p.containerPort === port) && (p.protocol ?? 'TCP') === protocol,
  );
}

interface Workload {
  readonly dep: k8s.V1Deployment;
  readonly pod: k8s.V1PodSpec;
  readonly labels: Labels;
  readonly c: k8s.V1Container;
  readonly args: readonly string[];
}

function workload(set: readonly K8sObject[]): Workload {
  const dep = only<k8s.V1Deployment>(set, 'Deployment', 'clusterdns');
  const pod = dep.spec!.template.spec!;
  const c = pod.containers.find((x) => x.name === 'clusterdns') ?? pod.containers[0]!;
  return { dep, pod, labels: dep.spec!.template.metadata?.labels ?? {}, c, args: c.args ?? [] };
}

interface NodeAgent {
  readonly ds: k8s.V1DaemonSet;
  readonly pod: k8s.V1PodSpec;
  readonly labels: Labels;
  readonly c: k8s.V1Container;
  readonly args: readonly string[];
}

function daemon(set: readonly K8sObject[]): NodeAgent {
  const ds = only<k8s.V1DaemonSet>(set, 'DaemonSet', 'clusterdns-proxy');
  const pod = ds.spec!.template.spec!;
  const c = pod.containers.find((x) => x.name === 'clusterdns-proxy') ?? pod.containers[0]!;
  return { ds, pod, labels: ds.spec!.template.metadata?.labels ?? {}, c, args: c.args ?? [] };
}

/**
 * The file --config names is the ConfigMap's config.yaml, mounted read-only without subPath.
 * Returns the ConfigMap's config.yaml text.
 */
function checkConfigMount(t: Test, cm: k8s.V1ConfigMap, pod: k8s.V1PodSpec, c: k8s.V1Container, args: readonly string[]): string | undefined {
  const text = cm.data?.['config.yaml'];
  t.type(text, 'string', 'has config.yaml');
  const file = argValue(args, '--config');
  t.ok(file?.startsWith('/'), `--config ${file} is an absolute path`);
  const mount = (c.volumeMounts ?? []).find((m) => file !== undefined && posix.dirname(file) === m.mountPath.replace(/\/$/, ''));
  t.ok(mount, `a volume is mounted at ${file === undefined ? '?' : posix.dirname(file)}`);
  t.equal(mount?.subPath, undefined, 'no subPath (a subPath mount never sees ConfigMap updates, so reload could not work)');
  t.equal(mount?.readOnly, true, 'mounted read-only');
  const vol = (pod.volumes ?? []).find((v) => v.name === mount?.name);
  t.equal(vol?.configMap?.name, cm.metadata!.name, 'from the ConfigMap');
  const name = file === undefined ? '' : posix.basename(file);
  const items = vol?.configMap?.items;
  const key = items === undefined ? name : items.find((i) => i.path === name)?.key;
  t.equal(key, 'config.yaml', `${name} in the volume is the ConfigMap's config.yaml`);
  return text;
}

/** The Kubernetes API collections of resources.ts's *Spec functions: kind → [group, resource]. */
async function sourceCollections(t: Test): Promise<Map<string, [string, string]> | undefined> {
  // Loaded by a computed specifier: the API source is young, and this test should follow it
  // without making the type check depend on its exports.
  const file = join(ROOT, 'src', 'cluster', 'kube', 'resources.ts');
  if (!existsSync(file)) return undefined;
  const spec = '../src/cluster/kube/resources.js';
  const mod = (await import(spec)) as Record<string, unknown>;
  const out = new Map<string, [string, string]>();
  for (const [name, fn] of Object.entries(mod)) {
    if (!name.endsWith('Spec') || typeof fn !== 'function') continue;
    const s = (fn as (o: object) => unknown)({}) as { path?: unknown; kind?: unknown };
    if (typeof s?.path !== 'string') continue;
    // /api/v1/<resource> or /apis/<group>/<version>/<resource>; the discovery GETs
    // (/apis/discovery.k8s.io/v1) are granted to every account by system:discovery.
    const m = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)\/([a-z]+)$/.exec(s.path);
    t.ok(m, `${name}: ${s.path} is a cluster-wide collection`);
    if (m === null) continue;
    out.set(typeof s.kind === 'string' ? s.kind : name, [m[1] ?? '', m[2]!]);
  }
  return out;
}

/** group|resource|verb of every grant of a ClusterRole (checking it names no resourceNames or URLs). */
function grants(t: Test, role: k8s.V1ClusterRole): Set<string> {
  const granted = new Set<string>();
  for (const rule of role.rules ?? []) {
    t.same(rule.resourceNames ?? [], [], 'no resourceNames');
    t.same(rule.nonResourceURLs ?? [], [], 'no nonResourceURLs');
    for (const g of rule.apiGroups ?? []) for (const r of rule.resources ?? []) for (const v of rule.verbs) granted.add(`${g}|${r}|${v}`);
  }
  return granted;
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

// The sets `kubectl apply -k` would send.
const kustomizeProblems: string[] = [];
const sets = new Map<string, K8sObject[]>();
for (const d of kustomizeDirs) {
  try {
    sets.set(rel(d), kustomize(d));
  } catch (err) {
    kustomizeProblems.push((err as Error).message);
    sets.set(rel(d), []);
  }
}
const full = sets.get('.') ?? [];
const base = sets.get('base') ?? [];
const beside = sets.get('beside') ?? [];
const node = sets.get('node') ?? [];

// ---------------------------------------------------------------------------------------

t.test('every file loads; YAML means the same to Kubernetes (1.1) and to 1.2 readers', async (t) => {
  t.same(loadProblems, [], 'no YAML errors or warnings');
  t.same(ambiguous, [], 'no scalar that YAML 1.1 and 1.2 read differently (yes/no, 0644, …): quote it');
  t.ok(docs.length >= 8, `${docs.length} objects found`);
});

t.test('each kustomization lists every manifest beside it, and every entry exists', async (t) => {
  t.ok(kustomizeDirs.includes(DEPLOY), 'deploy/kubernetes/kustomization.yaml exists');
  for (const d of tree.dirs) {
    const manifests = readdirSync(d).filter((f) => isManifest(f) && statSync(join(d, f)).isFile());
    if (!kustomizeDirs.includes(d)) {
      t.same(manifests, [], `${rel(d)}: manifests without a kustomization.yaml`);
      continue;
    }
    const k = readKustomization(d);
    t.equal(k.apiVersion, 'kustomize.config.k8s.io/v1beta1', `${rel(d)}: apiVersion`);
    t.equal(k.kind, 'Kustomization', `${rel(d)}: kind`);
    const listed = new Set(k.resources ?? []);
    for (const f of manifests) t.ok(listed.has(f), `${rel(d)}/kustomization.yaml lists ${f}`);
    for (const r of listed) {
      const p = join(d, r);
      t.ok(existsSync(p) && (statSync(p).isFile() || readdirSync(p).some(isKustomization)), `${rel(d)}: resource ${r} exists`);
    }
  }
});

t.test('every object validates against the Kubernetes schemas, with no unknown field', async (t) => {
  for (const d of docs) {
    const what = `${d.file}#${d.index + 1} ${d.obj.apiVersion} ${d.obj.kind} ${d.obj.metadata?.name ?? '(no name)'}`;
    let cls: Validating;
    try {
      cls = await modelClass(d.obj.apiVersion, d.obj.kind);
    } catch (err) {
      t.fail(`${what}: unknown kind (${(err as Error).message.split('\n')[0]})`);
      continue;
    }
    try {
      new cls(d.obj).validate();
      t.pass(`${what}: schema`);
    } catch (err) {
      t.fail(`${what}: ${(err as Error).message}`);
    }
    const extra: string[] = [];
    unknownFields(d.obj, modelName(d.obj), '', extra);
    t.same(extra, [], `${what}: no unknown fields`);
    t.ok(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(d.obj.metadata?.name ?? ''), `${what}: has a valid name`);
    if (CLUSTER_SCOPED.has(d.obj.kind)) t.equal(d.obj.metadata?.namespace, undefined, `${what}: cluster-scoped, no namespace`);
    else t.equal(d.obj.metadata?.namespace, NAMESPACE, `${what}: in ${NAMESPACE}`);
  }
});

t.test('the kustomizations resolve: no duplicates; kube-dns only in the full set', async (t) => {
  t.same(kustomizeProblems, [], 'the emulation understands every kustomization');
  for (const [name, set] of sets) {
    const ids = set.map(idOf);
    t.same(ids, [...new Set(ids)], `${name}: no object twice`);
  }
  t.same(
    full.map((o) => `${o.kind}/${o.metadata?.name}`).sort(),
    [
      'ClusterRole/clusterdns',
      'ClusterRoleBinding/clusterdns',
      'ConfigMap/clusterdns',
      'Deployment/clusterdns',
      'PodDisruptionBudget/clusterdns',
      'Service/kube-dns',
      'ServiceAccount/clusterdns',
    ],
    'deploy/kubernetes: the objects clusterdns needs, and nothing else',
  );
  // Rollback runs `kubectl delete -k` on these two: it must never take the cluster's DNS Service.
  for (const [name, set] of [['base', base], ['beside', beside]] as const) {
    t.ok(set.length > 0, `${name} resolves`);
    t.notOk(set.some((o) => o.kind === 'Service' && o.metadata?.name === 'kube-dns'), `${name} has no kube-dns Service`);
  }
  // The patched Deployment of beside/ is still a valid Deployment.
  const dep = beside.find((o) => o.kind === 'Deployment');
  if (dep !== undefined) {
    const cls = await modelClass(dep.apiVersion, dep.kind);
    t.doesNotThrow(() => new cls(dep).validate(), 'beside/ Deployment validates');
  }
});

t.test('kubectl kustomize, when kubectl is here, renders what the emulation does', async (t) => {
  const probe = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 30_000 });
  if (probe.error !== undefined) {
    t.skip('kubectl is not installed: the emulation alone checked the kustomizations', () => {});
    return;
  }
  for (const d of kustomizeDirs) {
    const r = spawnSync('kubectl', ['kustomize', d], { encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 0, `kubectl kustomize ${rel(d)}: ${r.stderr.trim()}`);
    const rendered = parseAllDocuments(r.stdout, { version: '1.1' });
    const objs = (Array.isArray(rendered) ? rendered : []).map((x) => x.toJS() as K8sObject).filter((x) => x !== null).sort(byId);
    t.same(objs, sets.get(rel(d)), `${rel(d)}: same objects`);
  }
});

t.test('RBAC: exactly list+watch on what the source reads, bound to the Deployment\'s ServiceAccount', async (t) => {
  const role = only<k8s.V1ClusterRole>(full, 'ClusterRole', 'clusterdns');
  t.equal(role.aggregationRule, undefined, 'not aggregated');
  const granted = grants(t, role);
  const expected = new Set<string>();
  for (const [g, r] of [
    ['', 'services'],
    ['', 'endpoints'],
    ['', 'namespaces'],
    ['', 'pods'],
    ['discovery.k8s.io', 'endpointslices'],
    ['multicluster.x-k8s.io', 'serviceimports'],
  ] as const) {
    for (const v of ['list', 'watch']) expected.add(`${g}|${r}|${v}`);
  }
  t.same([...granted].sort(), [...expected].sort(), 'granted = list+watch of services, endpoints, namespaces, pods, endpointslices, serviceimports; no wildcard');

  // Whatever kinds the converters read must be listable and watchable: adding a kind to the
  // source without RBAC fails here.
  for (const [kind, apiVersion] of Object.entries(API_VERSIONS)) {
    const group = apiVersion.includes('/') ? apiVersion.split('/')[0]! : '';
    const plural = kind.toLowerCase().endsWith('s') ? kind.toLowerCase() : `${kind.toLowerCase()}s`;
    for (const v of ['list', 'watch']) t.ok(granted.has(`${group}|${plural}|${v}`), `${v} ${group || 'core'}/${plural} (source reads ${apiVersion} ${kind})`);
  }

  const binding = only<k8s.V1ClusterRoleBinding>(full, 'ClusterRoleBinding', 'clusterdns');
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata!.name }, 'binds the ClusterRole');
  const { dep, pod } = workload(full);
  t.same(
    binding.subjects,
    [{ kind: 'ServiceAccount', name: pod.serviceAccountName, namespace: dep.metadata!.namespace }],
    'to the Deployment\'s ServiceAccount only',
  );
  t.ok(pod.serviceAccountName !== undefined && pod.serviceAccountName !== 'default', 'the Deployment names its own ServiceAccount');
  const sa = only<k8s.V1ServiceAccount>(full, 'ServiceAccount', pod.serviceAccountName);
  t.equal(sa.metadata?.namespace, dep.metadata?.namespace, 'the ServiceAccount is in the Deployment\'s namespace');
  t.not(sa.automountServiceAccountToken, false, 'its token is mounted (in-cluster API access)');
  t.not(pod.automountServiceAccountToken, false, 'the pod mounts the token');
});

t.test('RBAC grants list+watch on every collection the API source watches', async (t) => {
  const collections = await sourceCollections(t);
  if (collections === undefined) {
    t.skip('no src/cluster/kube/resources.ts: the converters\' kinds were checked above', () => {});
    return;
  }
  const granted = grants(t, only<k8s.V1ClusterRole>(full, 'ClusterRole', 'clusterdns'));
  for (const [kind, [group, resource]] of collections) {
    for (const verb of ['list', 'watch']) t.ok(granted.has(`${group}|${resource}|${verb}`), `${verb} ${group || 'core'}/${resource} (${kind})`);
  }
  t.ok(collections.size > 0, `${collections.size} collections found in resources.ts`);
});

t.test('ConfigMap config.yaml passes parseConfig and is mounted where --config points', async (t) => {
  const cm = only<k8s.V1ConfigMap>(full, 'ConfigMap', 'clusterdns');
  const { pod, c, args } = workload(full);
  const text = checkConfigMount(t, cm, pod, c, args);
  const config = parseConfig(parseYaml(text ?? '') as unknown, 'deploy/kubernetes ConfigMap config.yaml');
  t.equal(config.ttl, 30, 'ttl 30 as kubeadm');
  t.equal(config.pods, 'insecure', 'pods insecure as kubeadm');
});

t.test('Deployment: CoreDNS-like placement, probes, resources and image', async (t) => {
  const { dep, pod, labels, c, args } = workload(full);
  t.equal(dep.spec!.replicas, 2, '2 replicas');
  t.equal(pod.priorityClassName, 'system-cluster-critical');
  t.equal(pod.dnsPolicy, 'Default', 'dnsPolicy Default: the node\'s resolver, never itself');
  t.same(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
  const tol = pod.tolerations ?? [];
  t.ok(tol.some((x) => x.key === 'CriticalAddonsOnly' && x.operator === 'Exists'), 'tolerates CriticalAddonsOnly');
  t.ok(
    tol.some((x) => x.key === 'node-role.kubernetes.io/control-plane' && x.effect === 'NoSchedule' && x.value === undefined),
    'tolerates control-plane nodes',
  );

  t.equal(labels['k8s-app'], 'kube-dns', 'pods carry k8s-app: kube-dns like CoreDNS\'s');
  t.equal(labels['app.kubernetes.io/name'], 'clusterdns', 'and app.kubernetes.io/name: clusterdns');
  t.ok(selects(dep.spec!.selector, labels), 'the Deployment selects its pods');
  const anti = pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
  const host = anti.find((a) => a.topologyKey === 'kubernetes.io/hostname');
  t.ok(host, 'required anti-affinity by hostname');
  t.ok(selects(host?.labelSelector, labels), 'the anti-affinity matches its own pods');
  for (const other of [dep.spec!.selector, host?.labelSelector]) {
    for (const coredns of COREDNS_POD_LABELS) {
      t.notOk(selects(other, coredns), `selector ${JSON.stringify(other)} does not match CoreDNS pods ${JSON.stringify(coredns)}`);
    }
  }

  t.equal(c.image, `ghcr.io/clusterdns/clusterdns:${pkg.version}`, 'image tag is the package version');
  t.equal(args[0], 'serve', 'runs `serve` (the image\'s ENTRYPOINT is the CLI)');
  t.equal(c.command, undefined, 'keeps the image\'s ENTRYPOINT');
  t.ok(args.includes('--in-cluster'), 'reads the cluster through the API');
  t.equal(argValue(args, '--domain'), 'cluster.local');

  const dnsPort = portOf(argValue(args, '--dns'));
  const httpPort = portOf(argValue(args, '--http'));
  t.equal(dnsPort, 53, '--dns on :53');
  t.match(argValue(args, '--http') ?? '', /^0\.0\.0\.0:|^\[::\]:/, '--http on all addresses (kubelet probes the pod IP)');
  t.same(
    (c.ports ?? []).map((p) => [p.name, p.containerPort, p.protocol ?? 'TCP']),
    [
      ['dns', 53, 'UDP'],
      ['dns-tcp', 53, 'TCP'],
      ['http', httpPort, 'TCP'],
    ],
    'ports dns 53/UDP, dns-tcp 53/TCP, http = --http port',
  );
  t.equal(httpPort, 8080);
  for (const [probe, path] of [
    [c.livenessProbe, '/healthz'],
    [c.readinessProbe, '/readyz'],
  ] as const) {
    t.equal(probe?.httpGet?.path, path, `${path} probe path`);
    t.equal(containerPort(c, probe?.httpGet?.port)?.containerPort, httpPort, `${path} probe on the http port`);
    t.not(probe?.httpGet?.scheme, 'HTTPS', `${path} over plain HTTP`);
  }
  const live = c.livenessProbe!;
  t.ok((live.initialDelaySeconds ?? 0) >= 30 && (live.failureThreshold ?? 3) * (live.periodSeconds ?? 10) >= 30, 'liveness is patient (CoreDNS: 60 s delay, 5 failures)');
  t.ok((live.timeoutSeconds ?? 1) >= 5, 'liveness timeout 5 s as CoreDNS');
  t.same(c.resources?.requests, { cpu: '100m', memory: '70Mi' }, 'requests as CoreDNS');
  t.same(c.resources?.limits, { memory: '170Mi' }, 'memory limit as CoreDNS, no CPU limit (no throttled DNS)');
});

t.test('Deployment: non-root, read-only root, only NET_BIND_SERVICE (Pod Security "restricted")', async (t) => {
  const { pod, c } = workload(full);
  const psc = pod.securityContext ?? {};
  const sc = c.securityContext ?? {};
  t.equal(sc.runAsNonRoot ?? psc.runAsNonRoot, true, 'runAsNonRoot');
  t.equal(sc.runAsUser ?? psc.runAsUser, 1000, 'runs as uid 1000 (the image\'s node user)');
  t.equal(sc.runAsGroup ?? psc.runAsGroup, 1000, 'gid 1000');
  t.equal(sc.readOnlyRootFilesystem, true, 'readOnlyRootFilesystem');
  t.equal(sc.allowPrivilegeEscalation, false, 'allowPrivilegeEscalation false');
  t.not(sc.privileged, true, 'not privileged');
  t.same(sc.capabilities?.drop, ['ALL'], 'drops ALL capabilities');
  t.same(sc.capabilities?.add, ['NET_BIND_SERVICE'], 'adds back only NET_BIND_SERVICE (port 53)');
  t.equal((sc.seccompProfile ?? psc.seccompProfile)?.type, 'RuntimeDefault', 'seccomp RuntimeDefault');
  t.notOk(pod.hostNetwork || pod.hostPID || pod.hostIPC, 'no host namespaces');
  t.notOk((c.ports ?? []).some((p) => p.hostPort !== undefined), 'no hostPort');
  t.notOk((pod.volumes ?? []).some((v) => v.hostPath !== undefined), 'no hostPath volume');
});

t.test('Service kube-dns: 10.96.0.10, UDP and TCP 53, selecting the pods', async (t) => {
  const svc = only<k8s.V1Service>(full, 'Service', 'kube-dns');
  const { labels, c } = workload(full);
  t.equal(svc.metadata?.namespace, 'kube-system');
  t.equal(svc.spec?.clusterIP, '10.96.0.10');
  t.ok(svc.spec?.type === undefined || svc.spec.type === 'ClusterIP', 'type ClusterIP');
  const ports = svc.spec?.ports ?? [];
  t.same(
    ports.map((p) => [p.name, p.port, p.protocol ?? 'TCP']),
    [
      ['dns', 53, 'UDP'],
      ['dns-tcp', 53, 'TCP'],
    ],
    'dns 53/UDP and dns-tcp 53/TCP',
  );
  for (const p of ports) {
    t.equal(containerPort(c, p.targetPort ?? p.port, p.protocol ?? 'TCP')?.containerPort, 53, `${p.name} reaches the container's ${p.protocol} 53`);
  }
  t.ok(selects(mapSelector(svc.spec?.selector), labels), 'the selector matches the pod template labels');
  t.same(svc.spec?.selector, { 'k8s-app': 'kube-dns' }, 'the selector CoreDNS pods also match (kubeadm\'s), so both serve while both run');
  t.equal(svc.metadata?.annotations?.['prometheus.io/scrape'], 'true');
  t.equal(svc.metadata?.annotations?.['prometheus.io/port'], String(containerPort(c, 'http')?.containerPort), 'prometheus.io/port is the http port');
});

t.test('PodDisruptionBudget: policy/v1, maxUnavailable 1, exactly the clusterdns pods', async (t) => {
  for (const [name, set] of [['full', full], ['beside', beside]] as const) {
    const pdb = only<k8s.V1PodDisruptionBudget>(set, 'PodDisruptionBudget', 'clusterdns');
    t.equal((pdb as K8sObject).apiVersion, 'policy/v1');
    t.equal(pdb.spec?.maxUnavailable, 1);
    t.equal(pdb.spec?.minAvailable, undefined, 'maxUnavailable, not minAvailable');
    t.ok(selects(pdb.spec?.selector, workload(set).labels), `${name}: selects the pods`);
    for (const coredns of COREDNS_POD_LABELS) t.notOk(selects(pdb.spec?.selector, coredns), `${name}: never CoreDNS's pods`);
  }
});

t.test('beside/: its own Service, and pods the kube-dns Service does not select', async (t) => {
  const kubeDns = only<k8s.V1Service>(full, 'Service', 'kube-dns');
  const { dep, labels } = workload(beside);
  const svc = only<k8s.V1Service>(beside, 'Service');
  t.not(svc.metadata?.name, 'kube-dns');
  t.not(svc.spec?.clusterIP, kubeDns.spec?.clusterIP, 'not the cluster DNS address');
  t.ok(selects(mapSelector(svc.spec?.selector), labels), 'its Service selects the pods');
  t.notOk(selects(mapSelector(kubeDns.spec?.selector), labels), 'kube-dns (k8s-app: kube-dns) does not select them: CoreDNS keeps all traffic');
  t.ok(selects(dep.spec!.selector, labels), 'the Deployment still selects its pods');
  t.same(
    (svc.spec?.ports ?? []).map((p) => [p.port, p.protocol]),
    [
      [53, 'UDP'],
      [53, 'TCP'],
    ],
  );
  // Apart from the label, the same Deployment: switching to the full set only adds it.
  const fullDep = structuredClone(workload(full).dep);
  delete fullDep.spec!.template.metadata!.labels!['k8s-app'];
  t.same(dep, fullDep, 'beside/ Deployment = full Deployment without the k8s-app pod label');
});

// ---------------------------------------------------------------------------------------
// node/: `clusterdns proxy` as kube-proxy's replacement

/** kube-proxy's defaults (../shared/docs/kube-proxy.md §0.2), as the ConfigMap spells them out. */
const KUBE_PROXY_DEFAULTS = { syncPeriod: '30s', minSyncPeriod: '1s', masqueradeAll: false } as const;
/** kube-proxy's healthz port (its --healthz-bind-address default 0.0.0.0:10256). */
const KUBE_PROXY_HEALTHZ_PORT = 10256;
/** What node/ may grant: list+watch of the collections the proxy's API source reads. */
const PROXY_READS = [
  ['', 'services'],
  ['', 'endpoints'],
  ['', 'namespaces'],
  ['discovery.k8s.io', 'endpointslices'],
] as const;

/** The node/ ConfigMap's config.yaml, as YAML. */
function nodeConfigYaml(): Record<string, unknown> {
  const cm = only<k8s.V1ConfigMap>(node, 'ConfigMap', 'clusterdns-proxy');
  const raw = parseYaml(cm.data?.['config.yaml'] ?? '') as unknown;
  return typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
}

t.test('node/: the proxy\'s objects only, apart from the DNS sets and from kube-proxy\'s', async (t) => {
  t.same(
    node.map((o) => `${o.kind}/${o.metadata?.name}`).sort(),
    [
      'ClusterRole/clusterdns-proxy',
      'ClusterRoleBinding/clusterdns-proxy',
      'ConfigMap/clusterdns-proxy',
      'DaemonSet/clusterdns-proxy',
      'ServiceAccount/clusterdns-proxy',
    ],
    'deploy/kubernetes/node: the objects the proxy needs, and nothing else',
  );
  const dns = new Set([...full, ...beside].map(idOf));
  t.same(
    node.map(idOf).filter((id) => dns.has(id)),
    [],
    'no object shared with deploy/kubernetes or beside/ (each is applied and deleted on its own)',
  );
  t.notOk(
    node.some((o) => /^(kube-proxy|system:node-proxier)$/.test(o.metadata?.name ?? '')),
    'no object named as kube-proxy\'s (kubeadm\'s DaemonSet, ConfigMap, ServiceAccount, role)',
  );
  const { ds, labels } = daemon(node);
  t.ok(selects(ds.spec!.selector, labels), 'the DaemonSet selects its pods');
  for (const other of [...COREDNS_POD_LABELS, ...KUBE_PROXY_POD_LABELS, workload(full).labels, workload(beside).labels]) {
    t.notOk(selects(ds.spec!.selector, other), `its selector does not match pods labelled ${JSON.stringify(other)}`);
  }
  for (const [name, set] of [['full', full], ['beside', beside]] as const) {
    const { dep } = workload(set);
    t.notOk(selects(dep.spec!.selector, labels), `${name}: the DNS Deployment's selector does not match the proxy's pods`);
    for (const pdb of set.filter((o) => o.kind === 'PodDisruptionBudget') as unknown as k8s.V1PodDisruptionBudget[]) {
      t.notOk(selects(pdb.spec?.selector, labels), `${name}: no PodDisruptionBudget covers the proxy's pods`);
    }
  }
});

t.test('node/ RBAC: exactly list+watch on what the proxy source reads, bound to the DaemonSet\'s ServiceAccount', async (t) => {
  const role = only<k8s.V1ClusterRole>(node, 'ClusterRole', 'clusterdns-proxy');
  t.equal(role.aggregationRule, undefined, 'not aggregated');
  const granted = grants(t, role);
  const expected = new Set(PROXY_READS.flatMap(([g, r]) => ['list', 'watch'].map((v) => `${g}|${r}|${v}`)));
  t.same(
    [...granted].sort(),
    [...expected].sort(),
    'granted = list+watch of services, endpoints, namespaces, endpointslices: no pods, nodes or events, no get, no write, no wildcard',
  );

  // Every kind the converters read but Pods (watched only for `pods: verified`, which the
  // ConfigMap must not set: checked below) and ServiceImports (watched only for DNS
  // `multicluster` zones, nothing the proxy reads), and every collection resources.ts defines.
  const notProxy = new Set(['Pod', 'ServiceImport']);
  for (const [kind, apiVersion] of Object.entries(API_VERSIONS)) {
    if (notProxy.has(kind)) continue;
    const group = apiVersion.includes('/') ? apiVersion.split('/')[0]! : '';
    const plural = kind.toLowerCase().endsWith('s') ? kind.toLowerCase() : `${kind.toLowerCase()}s`;
    for (const v of ['list', 'watch']) t.ok(granted.has(`${group}|${plural}|${v}`), `${v} ${group || 'core'}/${plural} (source reads ${apiVersion} ${kind})`);
  }
  for (const [kind, [group, resource]] of (await sourceCollections(t)) ?? []) {
    if (notProxy.has(kind)) continue;
    for (const verb of ['list', 'watch']) t.ok(granted.has(`${group}|${resource}|${verb}`), `${verb} ${group || 'core'}/${resource} (resources.ts, ${kind})`);
  }

  const binding = only<k8s.V1ClusterRoleBinding>(node, 'ClusterRoleBinding', 'clusterdns-proxy');
  t.same(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata!.name }, 'binds the ClusterRole');
  const { ds, pod } = daemon(node);
  t.same(binding.subjects, [{ kind: 'ServiceAccount', name: pod.serviceAccountName, namespace: ds.metadata!.namespace }], 'to the DaemonSet\'s ServiceAccount only');
  t.ok(pod.serviceAccountName !== undefined && pod.serviceAccountName !== 'default', 'the DaemonSet names its own ServiceAccount');
  t.not(pod.serviceAccountName, workload(full).pod.serviceAccountName, 'not the DNS server\'s ServiceAccount (which may read Pods)');
  const sa = only<k8s.V1ServiceAccount>(node, 'ServiceAccount', pod.serviceAccountName);
  t.equal(sa.metadata?.namespace, ds.metadata?.namespace, 'the ServiceAccount is in the DaemonSet\'s namespace');
  t.not(sa.automountServiceAccountToken, false, 'its token is mounted (in-cluster API access)');
  t.not(pod.automountServiceAccountToken, false, 'the pod mounts the token');
});

t.test('node/ RBAC covers every request the API source makes with the node/ configuration', async (t) => {
  // The source run as the proxy runs it (kubeSources with the proxy's options and the
  // ConfigMap's settings) against the fake API server, with EndpointSlices served and without
  // (the legacy Endpoints fallback): every request it makes must be granted, and every grant used.
  const granted = grants(t, only<k8s.V1ClusterRole>(node, 'ClusterRole', 'clusterdns-proxy'));
  // While parseConfig does not know `proxy:` (asserted on its own below), the rest of the file
  // still says which collections are watched.
  const raw = nodeConfigYaml();
  let config: Config;
  try {
    config = parseConfig(raw, 'deploy/kubernetes/node ConfigMap config.yaml');
  } catch {
    const { proxy: _proxy, ...rest } = raw;
    config = parseConfig(rest, 'deploy/kubernetes/node ConfigMap config.yaml without proxy:');
  }
  const { kubeSources } = await import('../src/cluster/kube/sources.js');
  const { FakeApiServer } = await import('./helpers/fake-apiserver.js');
  const { silentLogger } = await import('../src/log.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const used = new Set<string>();
  for (const endpointSlices of [true, false]) {
    const server = await new FakeApiServer().start({ endpointSlices });
    const dir = mkdtempSync(join(tmpdir(), 'clusterdns-deploy-'));
    const opts = {
      kubeconfig: server.writeKubeconfig(dir),
      context: undefined,
      inCluster: false,
      domain: 'cluster.local',
      config,
      proxy: true,
      tuning: { backoff: { initialMs: 20, maxMs: 200 } },
    };
    const sources = kubeSources(opts as Parameters<typeof kubeSources>[0], silentLogger());
    try {
      await sources.start();
      t.ok(sources.synced(), `synced (EndpointSlices ${endpointSlices ? 'served' : 'not served'})`);
      // Until every list is followed by its watch.
      for (let i = 0; i < 100 && !sources.source.status().resources.every((r) => r.connected); i++) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await sources.stop();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
    for (const req of server.requests) {
      // Discovery and /version: every account may GET them (system:discovery, system:public-info-viewer).
      if (/^\/(version|api|apis)(\/[^/]+(\/[^/]+)?)?\/?$/.test(req.path) && !/^\/api\/v1\/[a-z]/.test(req.path)) continue;
      const m = /^\/(?:api\/v1|apis\/([^/]+)\/[^/]+)\/([a-z]+)$/.exec(req.path);
      const verb = req.method === 'GET' ? (req.watch ? 'watch' : 'list') : req.method.toLowerCase();
      const key = m === null ? `?|${req.path}|${verb}` : `${m[1] ?? ''}|${m[2]}|${verb}`;
      if (used.has(key)) continue;
      used.add(key);
      t.ok(granted.has(key), `${req.method} ${req.path}${req.watch ? ' (watch)' : ''}: granted as ${verb} ${m === null ? req.path : `${m[1] ?? 'core'}/${m[2]}`}`);
    }
  }
  t.same([...granted].filter((g) => !used.has(g)).sort(), [], 'every grant is used by one of the two runs');
});

t.test('node/ ConfigMap: config.yaml passes parseConfig with the proxy: keys, mounted where --config points', async (t) => {
  const cm = only<k8s.V1ConfigMap>(node, 'ConfigMap', 'clusterdns-proxy');
  const { pod, c, args } = daemon(node);
  checkConfigMount(t, cm, pod, c, args);
  const raw = nodeConfigYaml();
  const proxy = raw['proxy'] as Record<string, unknown> | undefined;
  t.type(proxy, 'object', 'config.yaml has a proxy: section');
  for (const [k, v] of Object.entries(KUBE_PROXY_DEFAULTS)) t.equal(proxy?.[k], v, `proxy.${k}: ${v}, kube-proxy's default`);
  t.equal(proxy?.['nodeName'], undefined, 'no proxy.nodeName: every node has its own (NODE_NAME, --node-name)');
  t.notOk(raw['pods'] === 'verified', 'no `pods: verified` (the source would watch Pods, which node/ does not grant)');

  let config: Config | undefined;
  try {
    config = parseConfig(raw, 'deploy/kubernetes/node ConfigMap config.yaml');
  } catch (err) {
    const msg = (err as Error).message;
    t.fail(
      /unknown key "proxy"/.test(msg)
        ? `parseConfig does not know the proxy: key yet (issue 11's proxy.* config keys are not in src/config.ts): ${msg}`
        : `parseConfig rejects node/'s config.yaml: ${msg}`,
    );
  }
  if (config === undefined) return;
  t.pass('parseConfig accepts node/\'s config.yaml');
  const parsed = (config as unknown as Record<string, unknown>)['proxy'];
  t.type(parsed, 'object', 'the parsed config has proxy settings');
  // The ConfigMap writes out kube-proxy's defaults: parseConfig's defaults must be the same.
  const defaults = (parseConfig({ proxy: {} }, 'proxy: {}') as unknown as Record<string, unknown>)['proxy'];
  t.same(parsed, defaults, 'proxy settings = parseConfig\'s defaults for proxy: {} (kube-proxy\'s §0.2 defaults)');
  t.not(config.pods, 'verified', 'parsed pods mode is not verified');
  t.same(config.multicluster, [], 'no multicluster zones (the source would watch ServiceImports, which node/ does not grant)');
});

t.test('node/ DaemonSet: kube-proxy-like placement, host network, node name, probes, resources, image', async (t) => {
  const { ds, pod, c, args } = daemon(node);
  t.equal((ds as K8sObject).apiVersion, 'apps/v1');
  t.equal(ds.metadata?.namespace, 'kube-system');
  t.equal(ds.spec?.updateStrategy?.type, 'RollingUpdate', 'RollingUpdate');
  t.equal(ds.spec?.updateStrategy?.rollingUpdate?.maxUnavailable, 1, 'one node at a time');
  t.equal(ds.spec?.updateStrategy?.rollingUpdate?.maxSurge ?? 0, 0, 'no surge (two proxies on one node would fight over its rules and port)');
  t.equal(pod.hostNetwork, true, 'hostNetwork: the rules go into the node\'s network namespace');
  // Not ClusterFirstWithHostNet: the cluster DNS is a ClusterIP, reachable only once this proxy runs.
  t.equal(pod.dnsPolicy, 'Default', 'dnsPolicy Default: the node\'s resolver, never the cluster DNS it makes reachable');
  t.equal(pod.priorityClassName, 'system-node-critical', 'system-node-critical, as kube-proxy');
  t.same(pod.nodeSelector, { 'kubernetes.io/os': 'linux' });
  t.ok(
    (pod.tolerations ?? []).some((x) => x.operator === 'Exists' && x.key === undefined && x.effect === undefined),
    'tolerates every taint (operator Exists, no key, no effect)',
  );
  t.equal(pod.affinity, undefined, 'no affinity: every node');

  t.equal(c.image, workload(full).c.image, 'the DNS server\'s image');
  t.equal(c.image, `ghcr.io/clusterdns/clusterdns:${pkg.version}`, 'image tag is the package version');
  t.equal(c.command, undefined, 'keeps the image\'s ENTRYPOINT');
  t.equal(args[0], 'proxy', 'runs `proxy`');
  t.equal(argValue(args, '--mode'), 'iptables', '--mode iptables, kube-proxy\'s default');
  t.ok(args.includes('--in-cluster'), 'reads the cluster through the API');
  t.notOk(args.includes('--cleanup'), 'not --cleanup (that exits)');
  t.equal(argValue(args, '--zones'), undefined, 'no --zones');

  // The node name: --node-name $(NODE_NAME) and/or NODE_NAME, from the downward API.
  const env = c.env ?? [];
  const nodeName = env.find((e) => e.name === 'NODE_NAME');
  t.equal(nodeName?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName', 'NODE_NAME from the downward API spec.nodeName');
  const flag = argValue(args, '--node-name');
  t.ok(flag === undefined || flag === '$(NODE_NAME)', `--node-name ${flag ?? '(unset: NODE_NAME)'} is the downward API's`);

  // The API server by its own address: the kubernetes Service's ClusterIP (the kubelet's
  // KUBERNETES_SERVICE_HOST) only works once a service proxy runs on the node.
  const cm = only<k8s.V1ConfigMap>(node, 'ConfigMap', 'clusterdns-proxy');
  for (const name of ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT']) {
    const e = env.find((x) => x.name === name);
    t.ok(e !== undefined, `${name} is set, in place of the kubelet's (the kubernetes Service's ClusterIP)`);
    const ref = e?.valueFrom?.configMapKeyRef;
    if (ref !== undefined) {
      t.equal(ref.name, cm.metadata!.name, `${name} from the ConfigMap`);
      t.type(cm.data?.[ref.key], 'string', `the ConfigMap has ${ref.key}`);
      t.not(ref.optional, true, `${name}: not optional (without it the pod must not start)`);
    }
  }
  for (const e of env) {
    const ref = e.valueFrom?.configMapKeyRef;
    if (ref !== undefined && ref.name === cm.metadata!.name) t.type(cm.data?.[ref.key], 'string', `${e.name}: ConfigMap key ${ref.key} exists`);
  }
  const host = cm.data?.['api-server-host'] ?? '';
  t.notMatch(host, /^10\.96\.0\.1$|^kubernetes(\.default)?(\.svc)?/, 'api-server-host is not the kubernetes Service');
  t.not(host, '', `api-server-host is set (${host})`);
  t.match(cm.data?.['api-server-port'] ?? '', /^\d+$/, 'api-server-port is a port number');

  // Port and probes: kube-proxy's healthz port, on every address (the kubelet probes the node IP).
  const http = argValue(args, '--http');
  t.match(http ?? '', /^0\.0\.0\.0:|^\[::\]:/, '--http on all addresses');
  const httpPort = portOf(http);
  t.equal(httpPort, KUBE_PROXY_HEALTHZ_PORT, `--http on ${KUBE_PROXY_HEALTHZ_PORT}, kube-proxy's healthz port`);
  t.same(
    (c.ports ?? []).map((p) => [p.containerPort, p.protocol ?? 'TCP']),
    [[httpPort, 'TCP']],
    'one port: the --http port',
  );
  for (const p of c.ports ?? []) t.ok(p.hostPort === undefined || p.hostPort === p.containerPort, 'hostPort = containerPort (host network)');
  for (const [probe, path] of [
    [c.livenessProbe, '/healthz'],
    [c.readinessProbe, '/readyz'],
  ] as const) {
    t.equal(probe?.httpGet?.path, path, `${path} probe path`);
    t.equal(containerPort(c, probe?.httpGet?.port)?.containerPort, httpPort, `${path} probe on the --http port`);
    t.not(probe?.httpGet?.scheme, 'HTTPS', `${path} over plain HTTP`);
    t.equal(probe?.httpGet?.host, undefined, `${path} probe on the pod (= node) IP, where --http listens`);
  }
  const live = c.livenessProbe!;
  t.ok((live.failureThreshold ?? 3) * (live.periodSeconds ?? 10) >= 30, 'liveness tolerates 30 s of failures (a slow first sync)');

  const req = c.resources?.requests ?? {};
  const lim = c.resources?.limits ?? {};
  t.ok(req['cpu'] !== undefined && req['memory'] !== undefined, `requests cpu and memory (${JSON.stringify(req)})`);
  t.ok(lim['memory'] !== undefined, `a memory limit (${lim['memory']})`);
  t.equal(lim['cpu'], undefined, 'no CPU limit (a throttled proxy syncs late)');
});

t.test('node/ DaemonSet: root with NET_ADMIN and NET_RAW only, not privileged, host paths as kube-proxy\'s', async (t) => {
  const { pod, c } = daemon(node);
  const psc = pod.securityContext ?? {};
  const sc = c.securityContext ?? {};
  // The image's USER is 1000 (DNS); added capabilities reach only a root process's effective set.
  t.equal(sc.runAsUser ?? psc.runAsUser, 0, 'runAsUser 0, explicitly (the image\'s USER is 1000)');
  t.equal(sc.runAsGroup ?? psc.runAsGroup, 0, 'runAsGroup 0, explicitly (the image\'s group is 1000)');
  t.not(sc.runAsNonRoot ?? psc.runAsNonRoot, true, 'runAsNonRoot not set');
  t.not(sc.privileged, true, 'not privileged (kube-proxy is; capabilities are enough)');
  t.equal(sc.allowPrivilegeEscalation, false, 'allowPrivilegeEscalation false');
  t.equal(sc.readOnlyRootFilesystem, true, 'readOnlyRootFilesystem (the tools read their input from stdin)');
  t.equal(sc.procMount, undefined, 'default procMount');
  t.same(sc.capabilities?.drop, ['ALL'], 'drops ALL capabilities');
  // NET_BIND_SERVICE: the image's node binary carries it as a file capability, and a binary
  // whose file capabilities are not all in the bounding set does not start (test/dockerfile.test.ts).
  t.same(
    [...(sc.capabilities?.add ?? [])].sort(),
    ['NET_ADMIN', 'NET_BIND_SERVICE', 'NET_RAW'],
    'adds back NET_ADMIN (netfilter, conntrack), NET_RAW (legacy iptables) and the image\'s file capability NET_BIND_SERVICE',
  );
  t.equal((sc.seccompProfile ?? psc.seccompProfile)?.type, 'RuntimeDefault', 'seccomp RuntimeDefault');
  t.notOk(pod.hostPID || pod.hostIPC, 'no host PID or IPC namespace');
  t.same(psc.sysctls ?? [], [], 'no sysctls');

  const vols = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  const host = (pod.volumes ?? []).filter((v) => v.hostPath !== undefined).map((v) => v.hostPath!.path).sort();
  t.same(host, ['/lib/modules', '/run/xtables.lock'], 'host paths: /run/xtables.lock and /lib/modules only');
  const mountOf = (path: string): k8s.V1VolumeMount | undefined => (c.volumeMounts ?? []).find((m) => vols.get(m.name)?.hostPath?.path === path);
  const lock = mountOf('/run/xtables.lock');
  t.equal(vols.get(lock?.name ?? '')?.hostPath?.type, 'FileOrCreate', 'xtables.lock: FileOrCreate (a file, made if the node has none yet)');
  t.equal(lock?.mountPath, '/run/xtables.lock', 'mounted where iptables looks for it');
  t.not(lock?.readOnly, true, 'writable (iptables takes the lock)');
  const modules = mountOf('/lib/modules');
  t.equal(modules?.mountPath, '/lib/modules', '/lib/modules at /lib/modules');
  t.equal(modules?.readOnly, true, '/lib/modules read-only');
  for (const m of c.volumeMounts ?? []) t.equal(m.subPath, undefined, `${m.name}: no subPath`);
});

t.test('container args use only flags that `clusterdns serve --help` lists', async (t) => {
  const { args } = workload(full);
  checkArgsAgainstHelp(t, 'serve', args);
});

t.test('node/: container args use only flags that `clusterdns proxy --help` lists', async (t) => {
  const { args } = daemon(node);
  const help = checkArgsAgainstHelp(t, 'proxy', args);
  for (const mode of ['userspace', 'iptables', 'nftables']) t.match(help, new RegExp(`\\b${mode}\\b`), `proxy --help names the ${mode} mode`);
});

/**
 * `clusterdns <command> --help` exits 0 and its part of the usage text (from the first
 * `clusterdns <command>` line to the next other command's, when one text covers every command)
 * lists every flag of args (args[0] is the command); a flag that takes a value is given one, a
 * switch is not. Returns that part of the text.
 */
function checkArgsAgainstHelp(t: Test, command: string, args: readonly string[]): string {
  const r = spawnSync(process.execPath, [BIN, command, '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 0, `${command} --help exits 0 ${r.stderr}`);
  const lines = r.stdout.split('\n');
  const usage = (l: string): string | undefined => /^\s*(?:usage:\s*)?clusterdns ([a-z][a-z-]*)/.exec(l)?.[1];
  const from = lines.findIndex((l) => usage(l) === command);
  t.ok(from >= 0, `usage text for ${command}`);
  const rest = lines.slice(Math.max(from, 0));
  const to = rest.findIndex((l) => usage(l) !== undefined && usage(l) !== command);
  const help = (to < 0 ? rest : rest.slice(0, to)).join('\n');
  const flags = helpFlags(help);
  t.equal(args[0], command);
  for (let i = 1; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) {
      t.fail(`argument "${a}" is neither a flag nor a flag's value (${command} takes no positional arguments)`);
      continue;
    }
    const [name, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const kind = flags.get(name);
    if (kind === undefined) {
      t.fail(`${name} is not listed by \`clusterdns ${command} --help\` (lists ${[...flags.keys()].join(' ')})`);
      if (inline === undefined && args[i + 1] !== undefined && !args[i + 1]!.startsWith('--')) i++;
      continue;
    }
    if (kind === 'boolean') {
      t.equal(inline, undefined, `${name} takes no value`);
      t.pass(`${name} is listed (switch)`);
    } else if (inline !== undefined) {
      t.pass(`${name}=${inline} is listed`);
    } else {
      const v = args[i + 1];
      t.ok(v !== undefined && !v.startsWith('--'), `${name} is listed and given a value (${v})`);
      i++;
    }
  }
  return help;
}

/**
 * Flags in a usage text: `--name VALUE`, `--name=VALUE`, `--name <v>`, `--name a|b|c` take a
 * value; `[--name]` or `--name  text` do not.
 */
function helpFlags(text: string): Map<string, 'value' | 'boolean' | 'unknown'> {
  const out = new Map<string, 'value' | 'boolean' | 'unknown'>();
  for (const m of text.matchAll(/(--[a-z][a-z0-9-]*)(?=([^\n]*))/g)) {
    const [, name, rest] = m as unknown as [string, string, string];
    const kind = /^(=|\s)(<[^>]+>|[A-Z][A-Z0-9_:.\-]*|[a-z0-9-]+(\|[a-z0-9-]+)+)/.test(rest)
      ? 'value'
      : /^(\]|\s{2,}|$)/.test(rest)
        ? 'boolean'
        : 'unknown';
    const had = out.get(name);
    out.set(name, had === 'value' || kind === 'value' ? 'value' : had === 'boolean' || kind === 'boolean' ? 'boolean' : 'unknown');
  }
  return out;
}

t.test('deploy/kubernetes/README.md explains each entry point', async (t) => {
  const readme = readFileSync(join(DEPLOY, 'README.md'), 'utf8');
  for (const d of kustomizeDirs.filter((x) => rel(x) !== 'base')) {
    const path = rel(d) === '.' ? 'deploy/kubernetes' : `deploy/kubernetes/${rel(d)}`;
    t.match(readme, new RegExp(`kubectl apply[^\\n]*-k ${path.replace(/[/.]/g, '\\$&')}(?![\\w/-])`), `shows kubectl apply -k ${path}`);
  }
  t.match(readme, /rollback|roll back/i, 'says how to roll back');
});

t.test('deploy/kubernetes/README.md: the node overlay\'s section', async (t) => {
  const readme = readFileSync(join(DEPLOY, 'README.md'), 'utf8');
  const at = readme.search(/^## Instead of kube-proxy$/m);
  t.ok(at >= 0, 'has an "Instead of kube-proxy" section');
  const section = readme.slice(at);
  t.match(section, /kubectl apply --server-side -k deploy\/kubernetes\/node\b/, 'how to apply it');
  t.match(section, /kubeadm init --skip-phases=addon\/kube-proxy/, 'a new kubeadm cluster without kube-proxy');
  t.match(section, /delete daemonset kube-proxy/, 'removing kube-proxy from an existing cluster');
  t.match(section, /delete configmap kube-proxy/, 'and its ConfigMap (else kubeadm upgrade deploys it again)');
  t.match(section, /clusterdns proxy --cleanup/, 'cleanup with clusterdns proxy --cleanup');
  t.match(section, /--mode iptables/, 'the mode it runs in');
  t.match(section, /nftables/, 'how to switch to nftables');
  const cm = only<k8s.V1ConfigMap>(node, 'ConfigMap', 'clusterdns-proxy');
  for (const key of Object.keys(cm.data ?? {}).filter((k) => k !== 'config.yaml')) t.match(section, new RegExp(`\\b${key}\\b`), `explains ${key}`);
  t.match(section, new RegExp(`\\b${KUBE_PROXY_HEALTHZ_PORT}\\b`), `names port ${KUBE_PROXY_HEALTHZ_PORT}`);
  for (const cap of ['NET_ADMIN', 'NET_RAW']) t.match(section, new RegExp(cap), `explains ${cap}`);
});
