/**
 * The Dockerfile, checked without a Docker engine: its instructions are parsed and held to
 * what the image must be (multi-stage, non-root, port 53 by capability, HEALTHCHECK on
 * /healthz, the npm scripts CI runs), then the build stage's command (`npm run build`) is run
 * into a temporary folder laid out as the runtime stage's COPY instructions say, and the image's
 * ENTRYPOINT is started there: it must print its banner, answer /healthz, /readyz and a DNS
 * query, and exit 0 on SIGTERM. The runtime stage also carries the service proxy's tools
 * (iptables, nftables, conntrack from Debian), and every workload in deploy/kubernetes keeps
 * the file capabilities of the image's node in its bounding set (else node does not start).
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { decode, makeQuery, udpExchange } from './helpers/dns.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

interface Instruction {
  readonly keyword: string; // upper case
  readonly rest: string;
  readonly line: number;
}

interface Stage {
  readonly base: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Dockerfile → stages (parser directives, comments and line continuations handled). */
function parseDockerfile(text: string): Stage[] {
  const lines = text.split(/\r?\n/);
  let escape = '\\';
  // Parser directives: leading `# key=value` comments, before anything else.
  for (const l of lines) {
    const m = /^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(l);
    if (m === null) break;
    if (m[1]!.toLowerCase() === 'escape') escape = m[2]!;
  }
  const stages: Stage[] = [];
  let buf = '';
  let start = 0;
  const flush = (): void => {
    const s = buf.trim();
    buf = '';
    if (s === '') return;
    const m = /^(\S+)\s*([\s\S]*)$/.exec(s)!;
    const ins: Instruction = { keyword: m[1]!.toUpperCase(), rest: m[2]!.trim(), line: start };
    if (ins.keyword === 'FROM') {
      const f = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.rest);
      if (f === null) throw new Error(`line ${start}: cannot read FROM ${ins.rest}`);
      stages.push({ base: f[1]!, name: f[2]?.toLowerCase(), instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) {
        if (ins.keyword !== 'ARG') throw new Error(`line ${start}: ${ins.keyword} before FROM`);
      } else {
        stage.instructions.push(ins);
      }
    }
  };
  lines.forEach((raw, i) => {
    if (/^\s*#/.test(raw)) return; // comments, also inside a continued instruction
    if (buf === '') start = i + 1;
    const trimmed = raw.replace(/\s+$/, '');
    if (trimmed.endsWith(escape)) {
      buf += `${trimmed.slice(0, -escape.length)} `;
    } else {
      buf += trimmed;
      flush();
    }
  });
  flush();
  return stages;
}

/** Exec form (JSON array) or shell form. */
function execForm(rest: string): string[] | undefined {
  if (!rest.startsWith('[')) return undefined;
  const v = JSON.parse(rest) as unknown;
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
}

/** `--flag=value` options in front of an instruction's arguments. */
function options(rest: string): { opts: Map<string, string>; args: string } {
  const opts = new Map<string, string>();
  let r = rest;
  for (let m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(r); m !== null; m = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(r)) {
    opts.set(m[1]!, m[2] ?? '');
    r = r.slice(m[0].length);
  }
  return { opts, args: r };
}

const all = (s: Stage, kw: string): Instruction[] => s.instructions.filter((i) => i.keyword === kw);
const last = (s: Stage, kw: string): Instruction | undefined => all(s, kw).at(-1);
const workdir = (s: Stage): string => last(s, 'WORKDIR')?.rest ?? '/';

function argValue(args: readonly string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (args[i]!.startsWith(`${flag}=`)) return args[i]!.slice(flag.length + 1);
  }
  return undefined;
}

const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(text);
const runtime = stages.at(-1)!;
const fromBuild = all(runtime, 'COPY')
  .map((i) => options(i.rest).opts.get('from'))
  .filter((x): x is string => x !== undefined);
const build = stages.find((s) => s.name !== undefined && s.name === fromBuild[0]?.toLowerCase());
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  engines?: { node?: string };
};
const tsconfigBuild = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { compilerOptions?: { outDir?: string } };
const entrypoint = execForm(last(runtime, 'ENTRYPOINT')?.rest ?? '');
const cmd = execForm(last(runtime, 'CMD')?.rest ?? '');
const runtimeHttpPort = Number(/:(\d+)$/.exec(argValue(cmd ?? [], '--http') ?? '')?.[1]);

t.test('multi-stage: a build stage, and a runtime stage that copies its results', async (t) => {
  t.ok(stages.length >= 2, `${stages.length} stages`);
  t.ok(build, `the runtime copies --from a named stage (${fromBuild.join(', ')})`);
  t.not(build, runtime, 'that stage is not the runtime stage');
  t.same([...new Set(fromBuild.map((x) => x.toLowerCase()))], [build?.name], 'and only from it');
  for (const s of stages) t.match(s.base, /^[^:@\s]+(:(?!latest$)[\w.-]+|@sha256:[0-9a-f]{64})$/, `FROM ${s.base} is pinned to a tag`);
  // node_modules built in the build stage run in the runtime stage: same Node.
  t.equal(runtime.base, build?.base, 'both stages use the same base image');
  const major = Number(/^node:(\d+)/.exec(runtime.base)?.[1]);
  const min = Number(/(\d+)/.exec(pkg.engines?.node ?? '0')?.[1]);
  t.ok(major >= min, `node ${major} in the image satisfies engines.node ${pkg.engines?.node}`);
  const runtimeRuns = all(runtime, 'RUN').map((i) => i.rest).join('\n');
  t.notMatch(runtimeRuns, /\bnpm (ci|install)\b|\btsc\b/, 'the runtime stage installs and compiles nothing');
});

t.test('build stage: the npm scripts CI runs, on the files they need', async (t) => {
  if (build === undefined) return t.fail('no build stage');
  const runs = all(build, 'RUN').map((i) => i.rest);
  const ci = runs.findIndex((r) => /\bnpm ci\b/.test(r));
  const bld = runs.findIndex((r) => /\bnpm run build\b/.test(r));
  t.ok(ci >= 0, 'RUN npm ci');
  t.ok(bld > ci, 'RUN npm run build, after npm ci');
  t.match(runs.join('\n'), /npm prune --omit=dev|npm ci [^\n]*--omit=dev/, 'dev dependencies are dropped before the runtime copies node_modules');
  for (const r of runs) {
    for (const m of r.matchAll(/\bnpm run(?:-script)? ([\w:-]+)/g)) t.type(pkg.scripts[m[1]!], 'string', `package.json has the "${m[1]}" script`);
  }
  // npm ci needs the lock file, and it must be there before npm ci runs.
  const ciLine = all(build, 'RUN')[ci]?.line ?? 0;
  const copiedBefore = all(build, 'COPY')
    .filter((i) => i.line < ciLine)
    .flatMap((i) => options(i.rest).args.split(/\s+/).slice(0, -1));
  t.ok(copiedBefore.includes('package-lock.json'), 'package-lock.json is copied before npm ci');
  // Every file copied from the build context exists.
  for (const s of stages) {
    for (const i of [...all(s, 'COPY'), ...all(s, 'ADD')]) {
      const { opts, args } = options(i.rest);
      if (opts.has('from')) continue;
      const parts = execForm(args) ?? args.split(/\s+/);
      for (const src of parts.slice(0, -1)) t.ok(existsSync(join(ROOT, src)), `line ${i.line}: ${src} exists in the repository`);
    }
  }
  // What the runtime copies from the build stage is what the build produces there.
  const outDir = tsconfigBuild.compilerOptions?.outDir;
  const froms = all(runtime, 'COPY')
    .filter((i) => options(i.rest).opts.has('from'))
    .map((i) => options(i.rest).args.split(/\s+/)[0]!);
  t.ok(froms.includes(posix.join(workdir(build), outDir ?? '?')), `the runtime copies ${posix.join(workdir(build), outDir ?? '?')} (tsconfig.build.json outDir)`);
});

t.test('runtime stage: non-root, port 53 by capability, EXPOSE, HEALTHCHECK, exec-form ENTRYPOINT', async (t) => {
  const user = last(runtime, 'USER')?.rest;
  t.ok(user !== undefined, 'USER is set');
  t.notMatch(user ?? 'root', /^(root|0)(:|$)/, `USER ${user} is not root`);
  // The Deployment's runAsUser must be that user (node is uid 1000 in the official node images).
  const uid = user === 'node' ? 1000 : Number(user?.split(':')[0]);
  const deployment = join(ROOT, 'deploy', 'kubernetes', 'base', 'deployment.yaml');
  if (existsSync(deployment)) {
    const d = parseYaml(readFileSync(deployment, 'utf8')) as { spec: { template: { spec: { securityContext?: { runAsUser?: number } } } } };
    t.equal(d.spec.template.spec.securityContext?.runAsUser, uid, `deploy/kubernetes runs as the image's user (${uid})`);
  }
  const runs = all(runtime, 'RUN').map((i) => i.rest).join('\n');
  t.match(runs, /setcap\s+['"]?cap_net_bind_service[=+]+ep\b/, 'node gets cap_net_bind_service as a file capability (port 53 without root)');

  const exposed = all(runtime, 'EXPOSE').flatMap((i) => i.rest.split(/\s+/).map((p) => (p.includes('/') ? p.toLowerCase() : `${p}/tcp`)));
  for (const p of ['53/udp', '53/tcp', `${runtimeHttpPort}/tcp`]) t.ok(exposed.includes(p), `EXPOSE ${p}`);

  const hc = last(runtime, 'HEALTHCHECK');
  t.ok(hc, 'HEALTHCHECK present');
  const { opts, args } = options(hc?.rest ?? '');
  t.match(args, /^CMD\s/, 'HEALTHCHECK CMD …');
  const probe = args.replace(/^CMD\s+/, '');
  const url = /https?:\/\/(127\.0\.0\.1|localhost|\[::1\]):(\d+)(\/[\w/]*)/.exec(probe);
  t.equal(url?.[3], '/healthz', 'it asks /healthz');
  t.equal(Number(url?.[2]), runtimeHttpPort, `on the --http port of CMD (${runtimeHttpPort})`);
  t.ok(opts.has('interval') && opts.has('timeout'), 'with an interval and a timeout');
  const probeArgv = execForm(probe);
  t.ok(probeArgv === undefined || !['curl', 'wget'].includes(probeArgv[0]!), 'uses no tool the slim image lacks');

  t.ok(entrypoint, 'ENTRYPOINT in exec form (node is PID 1 and gets SIGTERM)');
  t.equal(entrypoint?.[0], 'node');
  const script = entrypoint?.[1] ?? '';
  const wd = workdir(runtime);
  t.ok(script.startsWith(`${wd}/`), `the entrypoint script ${script} is under WORKDIR ${wd}`);
  t.ok(existsSync(join(ROOT, posix.relative(wd, script))), `${posix.relative(wd, script)} exists in the repository`);
  t.ok(cmd, 'CMD in exec form');
  t.equal(cmd?.[0], 'serve', 'CMD serve …');
  t.match(argValue(cmd ?? [], '--dns') ?? '', /^(0\.0\.0\.0|\[::\]):53$/, 'DNS on :53 on every address');
  t.match(argValue(cmd ?? [], '--http') ?? '', /^(0\.0\.0\.0|\[::\]):\d+$/, 'http on every address');
});

/** The simple commands of a shell script (split at &&, ||, ;, | and newlines), as words. */
function shellCommands(script: string): string[][] {
  return script
    .split(/&&|\|\||[;|\n]/)
    .map((c) => c.trim().split(/\s+/).filter((w) => w !== ''))
    .filter((w) => w.length > 0);
}

/** `apt-get <verb> …` / `apt <verb> …` commands: their options and package names. */
function aptCommands(script: string, verbs: readonly string[]): { verb: string; options: string[]; packages: string[] }[] {
  return shellCommands(script)
    .filter((w) => (w[0] === 'apt-get' || w[0] === 'apt') && verbs.includes(w[1] ?? ''))
    .map((w) => ({ verb: w[1]!, options: w.slice(2).filter((x) => x.startsWith('-')), packages: w.slice(2).filter((x) => !x.startsWith('-')) }));
}

/** The service proxy's tools (src/proxy: iptables-restore, ip6tables-restore, nft, conntrack) and their Debian packages. */
const PROXY_TOOLS: Readonly<Record<string, string>> = {
  'iptables-restore': 'iptables',
  'ip6tables-restore': 'iptables',
  'iptables-save': 'iptables',
  nft: 'nftables',
  conntrack: 'conntrack',
};

t.test('runtime stage: the service proxy\'s tools from Debian (iptables, nftables, conntrack), and nothing left of apt', async (t) => {
  t.match(runtime.base, /bookworm|trixie|bullseye|debian/, `${runtime.base} is Debian-based (apt, and the packages by these names)`);
  const runs = all(runtime, 'RUN').map((i) => i.rest);
  const installed = new Set<string>();
  for (const run of runs) {
    const installs = aptCommands(run, ['install']);
    if (installs.length === 0) continue;
    const cmds = shellCommands(run).map((w) => w.join(' '));
    const first = cmds.findIndex((c) => /^apt(-get)? install\b/.test(c));
    t.ok(cmds.slice(0, first).some((c) => /^apt(-get)? update\b/.test(c)), `apt-get update in the same RUN, before the install (no stale index layer)`);
    t.ok(cmds.slice(first).some((c) => /^rm -rf \/var\/lib\/apt\/lists\/?\*?$/.test(c)), 'rm -rf /var/lib/apt/lists/* after it, in the same RUN (no package lists in the image)');
    for (const i of installs) {
      t.ok(i.options.includes('--no-install-recommends'), `apt-get install ${i.packages.join(' ')}: --no-install-recommends`);
      t.ok(i.options.includes('-y') || i.options.includes('--yes') || i.options.includes('-qy'), `apt-get install ${i.packages.join(' ')}: non-interactive (-y)`);
      for (const p of i.packages) installed.add(p);
    }
    for (const r of aptCommands(run, ['purge', 'remove'])) for (const p of r.packages) installed.delete(p);
  }
  for (const [tool, p] of Object.entries(PROXY_TOOLS)) t.ok(installed.has(p), `${p} is installed and kept (${tool})`);
  t.notOk(installed.has('libcap2-bin'), 'setcap (libcap2-bin) is purged once used');
  // Tools the proxy runs as root with NET_ADMIN (deploy/kubernetes/node); the default user stays the DNS server's.
  t.notMatch(last(runtime, 'USER')?.rest ?? 'root', /^(root|0)(:|$)/, 'the image\'s USER is still not root (the DaemonSet sets runAsUser 0 itself)');
});

/** Workload pod templates of every manifest under deploy/kubernetes that runs this image's ENTRYPOINT. */
function imageWorkloads(): { what: string; containers: Record<string, unknown>[] }[] {
  const dir = join(ROOT, 'deploy', 'kubernetes');
  const out: { what: string; containers: Record<string, unknown>[] }[] = [];
  if (!existsSync(dir)) return out;
  const visit = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) visit(p);
      else if (/\.ya?ml$/.test(e.name) && !/^kustomization\.ya?ml$/.test(e.name)) {
        const parsed = parseAllDocuments(readFileSync(p, 'utf8'), { version: '1.1' });
        for (const doc of Array.isArray(parsed) ? parsed : []) {
          const o = doc.toJS() as { kind?: string; metadata?: { name?: string }; spec?: { template?: { spec?: Record<string, unknown> } } } | null;
          const pod = o?.spec?.template?.spec;
          if (pod === undefined) continue;
          const containers = ((pod['containers'] ?? []) as Record<string, unknown>[]).filter(
            (c) => typeof c['image'] === 'string' && (c['image'] as string).startsWith('ghcr.io/clusterdns/clusterdns') && c['command'] === undefined,
          );
          if (containers.length > 0) out.push({ what: `${relative(ROOT, p).split(sep).join('/')} ${o?.kind} ${o?.metadata?.name}`, containers });
        }
      }
    }
  };
  visit(dir);
  return out;
}

t.test('every workload running the image keeps node\'s file capabilities in its bounding set', async (t) => {
  // A binary whose file capabilities (effective bit set) are not all in the bounding set is not
  // started at all (execve: EPERM), whatever the user: a pod that drops capabilities must add back
  // every one setcap gives node.
  const runs = all(runtime, 'RUN').map((i) => i.rest).join('\n');
  const fileCaps = [...runs.matchAll(/setcap\s+['"]?([a-z_,]+)[=+]+ep\b/g)].flatMap((m) => m[1]!.split(',')).map((c) => c.replace(/^cap_/, '').toUpperCase());
  t.ok(fileCaps.length > 0, `node's file capabilities: ${fileCaps.join(', ')}`);
  const workloads = imageWorkloads();
  t.ok(workloads.length >= 2, `${workloads.length} workloads run the image (the DNS Deployment, the proxy DaemonSet)`);
  for (const w of workloads) {
    for (const c of w.containers) {
      const caps = ((c['securityContext'] as { capabilities?: { add?: string[]; drop?: string[] } } | undefined)?.capabilities) ?? {};
      const dropped = (caps.drop ?? []).map((x) => x.toUpperCase());
      const added = new Set((caps.add ?? []).map((x) => x.toUpperCase().replace(/^CAP_/, '')));
      for (const cap of fileCaps) {
        const kept = dropped.includes('ALL') ? added.has(cap) : !dropped.includes(cap) && !dropped.includes(`CAP_${cap}`);
        t.ok(kept, `${w.what} container ${String(c['name'])}: ${cap} stays in the bounding set`);
      }
    }
  }
});

/** Bare package names imported by the .js files under dir. */
function importedPackages(dir: string): Set<string> {
  const out = new Set<string>();
  const visit = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.name.endsWith('.js')) {
        const src = readFileSync(p, 'utf8');
        for (const m of src.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g)) {
          const spec = m[1]!;
          if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:') || isBuiltin(spec)) continue;
          // Not a package name: text that merely reads like an import (`from "${x}"` in a message).
          if (!/^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(\/[\w.@/-]*)?$/i.test(spec)) continue;
          out.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
        }
      }
    }
  };
  visit(dir);
  return out;
}

t.test('the build, laid out as the runtime stage, starts and answers /healthz', async (t) => {
  if (build === undefined || entrypoint === undefined) return t.fail('no build stage or ENTRYPOINT to run');
  const tmp = mkdtempSync(join(tmpdir(), 'clusterdns-image-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const wd = workdir(runtime);
  const inImage = (p: string): string => {
    const abs = posix.resolve(wd, p);
    if (abs !== wd && !abs.startsWith(`${wd}/`)) throw new Error(`${p} is outside WORKDIR ${wd}: extend this test`);
    return join(tmp, posix.relative(wd, abs));
  };

  // The runtime stage's COPY instructions, in order. From the build stage: node_modules is the
  // checkout's (a symlink: its dev dependencies are the difference, checked below) and the
  // compiled output is built right where it lands.
  const outDir = posix.join(workdir(build), tsconfigBuild.compilerOptions?.outDir ?? 'dist');
  let built = false;
  for (const i of all(runtime, 'COPY')) {
    const { opts, args } = options(i.rest);
    const parts = execForm(args) ?? args.split(/\s+/);
    const dest = parts.at(-1)!;
    const srcs = parts.slice(0, -1);
    for (const src of srcs) {
      const target = srcs.length > 1 || dest.endsWith('/') ? join(inImage(dest), posix.basename(src)) : inImage(dest);
      mkdirSync(dirname(target), { recursive: true });
      if (opts.has('from')) {
        if (src === posix.join(workdir(build), 'node_modules')) {
          symlinkSync(join(ROOT, 'node_modules'), target, 'dir');
        } else if (src === outDir) {
          const r = spawnSync('npm', ['run', 'build', '--', '--outDir', target], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
          t.equal(r.status, 0, `npm run build -- --outDir <tmp>: ${r.stdout.slice(-2000)}${r.stderr.slice(-2000)}`);
          if (r.status !== 0) return;
          built = true;
        } else {
          return t.fail(`line ${i.line}: COPY --from ${src}: this test does not know how the build stage makes it`);
        }
      } else {
        cpSync(join(ROOT, src), target, { recursive: true });
      }
    }
  }
  t.ok(built, 'the compiled output was built');
  t.notOk(existsSync(join(tmp, 'src')), 'no TypeScript sources in the image (bin/ runs the compiled build)');

  // npm prune --omit=dev leaves only dependencies: the compiled code may import nothing else.
  // (node_modules is a symlink here, so the walk does not enter it.)
  for (const p of importedPackages(tmp)) t.ok(p in pkg.dependencies, `${p} is a production dependency (imported by the compiled code)`);

  // Start it as the image would: ENTRYPOINT + our args, in WORKDIR, with the stage's ENV.
  const env: Record<string, string> = { ...(process.env as Record<string, string>) };
  for (const i of all(runtime, 'ENV')) {
    for (const m of i.rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
  }
  const script = join(tmp, posix.relative(wd, entrypoint[1]!));
  const proc = spawn(process.execPath, [script, 'serve', '--zones', 'zones', '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0'], {
    cwd: tmp,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  const deadline = Date.now() + 20_000;
  while (!/^try: dig /m.test(out)) {
    if (proc.exitCode !== null) return t.fail(`exited ${proc.exitCode} before its banner: ${err.slice(-2000)}`);
    if (Date.now() > deadline) return t.fail(`no banner within 20 s: ${out} ${err.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.pass('banner printed');
  const dnsPort = Number(/ on [^ ]*?:(\d+)/.exec(out)?.[1]);
  const httpPort = Number(/http on [^ ]*?:(\d+)/.exec(out)?.[1]);
  t.ok(dnsPort > 0 && httpPort > 0, `dns on ${dnsPort}, http on ${httpPort}`);

  const health = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
  t.equal(health.status, 200, '/healthz 200');
  let ready = 0;
  for (let i = 0; i < 100 && ready !== 200; i++) {
    ready = (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status;
    if (ready !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(ready, 200, '/readyz 200 once zones/ is loaded');
  const answer = decode(await udpExchange(dnsPort, makeQuery('kubernetes.default.svc.cluster.local', 'A')));
  t.equal(answer.rcode, 'NOERROR');
  t.match(answer.answer.join('\n'), /\sA\s+10\.96\.0\.1$/m, 'kubernetes.default answers 10.96.0.1');

  proc.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000))]);
  t.equal(code, 0, `exits 0 after SIGTERM (lame duck included) ${err.slice(-1000)}`);
});
