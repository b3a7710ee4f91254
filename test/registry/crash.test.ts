/**
 * Crash test (issue #4, "done when"): the real CLI on a zones/ tree, a burst of Service
 * files created, modified and deleted (most without clusterIP), answers recorded with dig
 * between writes, SIGKILL at a random moment, restart; several rounds. Every Service
 * answered before a kill keeps its addresses after the restart, no two Services ever
 * share an IP, and the state file agrees. (The bulk checks after each restart use an
 * in-process UDP client: a few hundred dig processes per round cost more CPU than the
 * server under test.)
 */
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { type Cli, dig, requireTool, startCli } from '../helpers/cli.js';
import { decode, makeQuery, udpExchange } from '../helpers/dns.js';
import { docs, put, svc, tempDir } from './_harness.js';

const Z = 'cluster.local';
const ROUNDS = 5;
const MAX_SERVICES = 60;

/** Small seeded PRNG (mulberry32), so a failure can be replayed with the printed seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Model {
  name: string;
  /** Explicit clusterIP, if the manifest names one (unique, never reused). */
  explicit?: string;
  dual: boolean;
  rev: number;
  deleted: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('SIGKILL during bursts of reloads never loses or duplicates an allocation', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
  t.comment(`seed ${seed} (replay with CRASH_SEED=${seed})`);
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;

  const root = tempDir(t, 'clusterdns-crash-');
  const zones = join(root, 'zones');
  const zoneDir = join(zones, Z);
  const state = join(root, '.clusterdns');
  mkdirSync(zoneDir, { recursive: true });
  const config = join(root, 'config.yaml');
  writeFileSync(config, 'serviceCIDRs: [10.96.0.0/12, "fd00:10:96::/112"]\n');
  const args = ['--zones', zones, '--state', state, '--config', config, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-level', 'warn'];

  const model = new Map<string, Model>();
  /** Diagnostics for a failure: writes and answers per Service, and the last server's log. */
  const history: string[] = [];
  const logs: string[] = [];
  let nextName = 0;
  let nextExplicit = 100;
  const manifest = (m: Model): string =>
    docs(
      svc(
        m.name,
        {
          ...(m.explicit === undefined ? {} : { clusterIP: m.explicit }),
          ...(m.dual ? { ipFamilyPolicy: 'PreferDualStack' } : {}),
          ...(m.rev % 3 === 2 ? { type: 'NodePort' } : {}),
          ports: [{ name: 'http', port: 80 + (m.rev % 5) }],
        },
        'default',
        { rev: String(m.rev) },
      ),
    );
  const file = (m: Model) => join(zoneDir, `${m.name}.yaml`);
  const write = (m: Model): void => {
    history.push(`${Date.now()} ${m.name} write rev ${m.rev}`);
    // Mostly atomic replaces (editors, kubectl-style tools), sometimes in-place writes.
    if (rnd() < 0.7) put(file(m), manifest(m));
    else writeFileSync(file(m), manifest(m));
  };
  const create = (): Model => {
    const m: Model = { name: `svc-${nextName++}`, dual: rnd() < 0.2, rev: 0, deleted: false };
    if (rnd() < 0.25) m.explicit = `10.96.0.${nextExplicit++}`;
    model.set(m.name, m);
    write(m);
    return m;
  };
  for (let i = 0; i < 12; i++) create();

  /** Answers seen: name -> A and AAAA (sorted). */
  const seen = new Map<string, { a: string[]; aaaa: string[] }>();
  /** A and AAAA of a Service with dig; undefined when it has none; throws when the server did not answer. */
  const query = async (cli: Cli, name: string): Promise<{ a: string[]; aaaa: string[] } | undefined> => {
    const q = async (type: string) => {
      const lines = (await dig(cli.port, ['+short', `${name}.default.svc.${Z}`, type])).trim().split('\n').filter(Boolean);
      if (lines.some((l) => l.startsWith(';;'))) throw new Error(`no answer for ${name} ${type}: ${lines.join(' ')}`);
      return lines.sort();
    };
    const [a, aaaa] = await Promise.all([q('A'), q('AAAA')]);
    return a.length === 0 ? undefined : { a, aaaa };
  };
  /** The same over an in-process UDP client (bulk checks). */
  const lookup = async (cli: Cli, name: string): Promise<{ a: string[]; aaaa: string[] } | undefined> => {
    const q = async (type: string) => {
      const reply = decode(await udpExchange(cli.port, makeQuery(`${name}.default.svc.${Z}`, type), '127.0.0.1', 5000));
      return reply.answer.filter((rr) => rr.includes(` IN ${type} `)).map((rr) => rr.split(' ').pop() ?? '').sort();
    };
    const [a, aaaa] = await Promise.all([q('A'), q('AAAA')]);
    return a.length === 0 ? undefined : { a, aaaa };
  };
  /** `fn` over `xs`, 16 at a time. */
  const parallel = async <T, R>(xs: readonly T[], fn: (x: T) => Promise<R>): Promise<R[]> => {
    const out: R[] = new Array<R>(xs.length);
    let i = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (i < xs.length) {
          const k = i++;
          out[k] = await fn(xs[k] as T);
        }
      }),
    );
    return out;
  };
  const record = async (cli: Cli, name: string, where: string): Promise<void> => {
    const got = await query(cli, name);
    if (got === undefined) return;
    const before = seen.get(name);
    history.push(`${Date.now()} ${name} ${where} ${JSON.stringify(got)}`);
    if (before === undefined) seen.set(name, got);
    else if (JSON.stringify(before) !== JSON.stringify(got)) t.fail(`${name} changed ${where}: ${JSON.stringify(before)} -> ${JSON.stringify(got)}`);
  };

  let verified = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const t0 = Date.now();
    const cli = await startCli(t, args);
    const t1 = Date.now();
    // After a restart: every Service answered before keeps its addresses.
    const live = [...model.values()].filter((m) => !m.deleted);
    const ips = new Map<string, string>();
    const answers = await parallel(live, (m) => lookup(cli, m.name));
    for (const [i, m] of live.entries()) {
      const got = answers[i];
      const before = seen.get(m.name);
      if (before !== undefined) {
        if (!t.same(got, before, `round ${round}: ${m.name} kept its addresses across the kill`)) {
          const doc = readFileSync(join(state, Z, 'allocations.json'), 'utf8');
          t.comment(`model ${JSON.stringify(m)}; stored: ${JSON.stringify((JSON.parse(doc) as { services: Record<string, unknown> }).services[`default/${m.name}`])}`);
          t.comment(`history of ${m.name}: ${history.filter((h) => h.includes(` ${m.name} `)).join(' | ')}`);
          t.comment(`previous server stderr: ${logs.join('').split('\n').filter((l) => l.includes(m.name) || l.includes('"level":50') || l.includes('"level":40')).join('\n')}`);
        }
        verified++;
      }
      if (got === undefined) {
        t.fail(`round ${round}: ${m.name} is not served after the restart`);
        continue;
      }
      seen.set(m.name, got);
      history.push(`${Date.now()} ${m.name} after restart ${round} ${JSON.stringify(got)}`);
      for (const ip of [...got.a, ...got.aaaa]) {
        const other = ips.get(ip);
        if (other !== undefined) t.fail(`round ${round}: ${ip} served for ${other} and ${m.name}`);
        ips.set(ip, m.name);
      }
    }
    const deleted = [...model.values()].filter((m) => m.deleted);
    for (const [i, got] of (await parallel(deleted, (m) => lookup(cli, m.name))).entries()) {
      t.equal(got, undefined, `${deleted[i]?.name ?? ''} stays deleted`);
    }

    // The burst, with dig between writes; SIGKILL at a random moment in it.
    const killAfter = 50 + rnd() * 900;
    const exited = new Promise<void>((r) => cli.proc.once('exit', () => r()));
    const killer = sleep(killAfter).then(() => cli.proc.kill('SIGKILL'));
    let alive = true;
    void exited.then(() => (alive = false));
    while (alive) {
      const r = rnd();
      const current = [...model.values()].filter((m) => !m.deleted);
      if (r < 0.4 && model.size < MAX_SERVICES) {
        create();
      } else if (r < 0.7 && current.length > 0) {
        const m = pick(current);
        m.rev++;
        write(m);
      } else if (r < 0.8 && current.length > 4) {
        const m = pick(current);
        m.deleted = true;
        unlinkSync(file(m));
        seen.delete(m.name);
      } else if (current.length > 0) {
        const m = pick(current);
        try {
          await record(cli, m.name, `during round ${round}`);
        } catch {
          // The process died under dig: the loop ends.
        }
      }
      if (rnd() < 0.3) await sleep(rnd() * 40);
    }
    await killer;
    await exited;
    logs.length = 0;
    logs.push(cli.stderr());
    t.comment(`round ${round}: start ${t1 - t0} ms, checks and burst ${Date.now() - t1} ms, ${model.size} services`);
  }

  // Final check, and the state file agrees with what is served.
  const cli = await startCli(t, args);
  const doc = JSON.parse(readFileSync(join(state, Z, 'allocations.json'), 'utf8')) as { services: Record<string, { clusterIPs: string[] }> };
  const owners = new Map<string, string>();
  for (const [key, rec] of Object.entries(doc.services)) {
    for (const ip of rec.clusterIPs) {
      t.notOk(owners.has(ip), `${ip} stored once (${owners.get(ip) ?? ''} ${key})`);
      owners.set(ip, key);
    }
  }
  const all = [...model.values()];
  const finals = await parallel(all, (m) => lookup(cli, m.name));
  for (const [i, m] of all.entries()) {
    const got = finals[i];
    if (m.deleted) {
      t.equal(got, undefined);
      t.notOk(`default/${m.name}` in doc.services, `${m.name} released`);
      continue;
    }
    const before = seen.get(m.name);
    if (before !== undefined) t.same(got, before, `${m.name} final`);
    t.same([...(doc.services[`default/${m.name}`]?.clusterIPs ?? [])].sort(), [...(got?.a ?? []), ...(got?.aaaa ?? [])].sort(), `${m.name}: served = stored`);
    if (m.explicit !== undefined) t.same(got?.a, [m.explicit], `${m.name}: explicit clusterIP honoured`);
  }
  t.ok(verified > 20, `${verified} addresses verified across kills`);
  await cli.stop('SIGTERM');
});
