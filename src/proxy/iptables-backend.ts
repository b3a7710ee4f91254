/**
 * iptables mode, applying half: kube-proxy's iptables proxier sync mechanics
 * (pkg/proxy/iptables/proxier.go `syncProxyRules`, `CleanupLeftovers`;
 * pkg/util/iptables/iptables.go `RestoreAll`, `EnsureChain`, `EnsureRule`) on top of the
 * pure renderer in iptables.ts. One instance per IP family (iptables / ip6tables).
 */
import type { RulesBackend, RulesBackendOptions, SyncRequest, SyncResult } from './backend.js';
import { exec as defaultExec, firstLine, type Exec, type ExecResult } from './exec.js';
import { FILTER_CHAINS, JUMP_RULES, NAT_CHAINS, isServiceChainName, renderIptables } from './iptables.js';
import type { Family, RulesOptions } from './types.js';

/**
 * `-w 5 -W 100000`: wait up to 5 s for the xtables lock, polling every 100 ms
 * (kube-proxy's WaitSecondsValue / WaitIntervalString, used with iptables >= 1.6.2).
 */
const WAIT = ['-w', '5', '-W', '100000'];

/**
 * A full sync of a view with more endpoints than this restores the per-service chains in
 * chunks of about this many chains first (iptables.ts `IptablesRender.chunks`).
 */
const CHUNK_CHAINS = 1000;

/** iptables >= 1.6.2: -W (wait interval) and MASQUERADE --random-fully. */
const MIN_VERSION: readonly [number, number, number] = [1, 6, 2];

interface Tools {
  readonly iptables: string;
  readonly restore: string;
  readonly save: string;
}

function tools(family: Family): Tools {
  return family === 6
    ? { iptables: 'ip6tables', restore: 'ip6tables-restore', save: 'ip6tables-save' }
    : { iptables: 'iptables', restore: 'iptables-restore', save: 'iptables-save' };
}

/** Chain names of one table in `iptables-save` output (`GetChainsFromTable`). */
export function chainsInSave(save: string, table: string): Set<string> {
  const out = new Set<string>();
  let inTable = false;
  for (const line of save.split('\n')) {
    if (line.startsWith('*')) inTable = line.slice(1).trim() === table;
    else if (line === 'COMMIT') inTable = false;
    else if (inTable && line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0];
      if (name) out.add(name);
    }
  }
  return out;
}

function versionAtLeast(text: string, min: readonly [number, number, number]): boolean | undefined {
  const m = /v(\d+)\.(\d+)\.(\d+)/.exec(text);
  if (!m) return undefined;
  const v = [Number(m[1]), Number(m[2]), Number(m[3])];
  for (let i = 0; i < 3; i++) {
    if (v[i]! !== min[i]!) return v[i]! > min[i]!;
  }
  return true;
}

/** A restore failure with the offending line, as kube-proxy logs `ExtractLines` around it. */
function restoreError(tool: string, res: ExecResult, input: string): Error {
  const m = /line:? (\d+)/i.exec(res.stderr);
  let where = '';
  if (m) {
    const line = input.split('\n')[Number(m[1]) - 1];
    if (line !== undefined) where = ` (input line ${m[1]}: ${line})`;
  }
  return new Error(`${tool} failed (exit ${res.code}): ${firstLine(res.stderr) || 'no message'}${where}`);
}

export class IptablesBackend implements RulesBackend {
  readonly mode = 'iptables' as const;
  readonly family: Family;
  private readonly opts: RulesOptions;
  private readonly exec: Exec;
  private readonly tools: Tools;
  /** Per-service nat chains active after the last successful restore. */
  private activeChains = new Set<string>();
  /** The same by Service (what a partial render carries over for unchanged Services). */
  private chainsByService = new Map<string, string[]>();
  /**
   * A restore has succeeded since construction / the last failure / cleanup: until
   * then every sync is full (kube-proxy's needFullSync), whatever the runner asks.
   */
  private synced = false;
  private conntrackTCPLiberal = false;

  constructor(options: RulesBackendOptions) {
    const { exec, ...opts } = options;
    this.family = opts.family;
    this.opts = opts;
    this.exec = exec ?? defaultExec;
    this.tools = tools(opts.family);
  }

  /** The per-service nat chains the kernel should hold now (for tests and metrics). */
  get chains(): ReadonlySet<string> {
    return this.activeChains;
  }

  /** The same by Service (benchmarks: a partial render as the backend does it). */
  get byService(): ReadonlyMap<string, readonly string[]> {
    return this.chainsByService;
  }

  async preflight(): Promise<void> {
    const t = this.tools;
    const v = await this.exec(t.restore, ['--version']);
    if (v.code !== 0) throw new Error(`${t.restore} unusable: ${firstLine(v.stderr) || `exit ${v.code}`}`);
    if (versionAtLeast(v.stdout + v.stderr, MIN_VERSION) === false) {
      throw new Error(`${t.restore}: ${firstLine(v.stdout)} is too old; need iptables >= ${MIN_VERSION.join('.')} (-W, --random-fully)`);
    }
    // Listing needs CAP_NET_ADMIN like every later call: fail here with one clear line.
    const s = await this.exec(t.save, ['-t', 'nat']);
    if (s.code !== 0) throw new Error(`${t.save} -t nat failed (CAP_NET_ADMIN needed): ${firstLine(s.stderr) || `exit ${s.code}`}`);
    // NewProxier: with nf_conntrack_tcp_be_liberal set, INVALID packets are not dropped.
    // Read through exec so it is the sysctl of the namespace the rules go to.
    const l = await this.exec('cat', ['/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal']);
    this.conntrackTCPLiberal = l.code === 0 && l.stdout.trim() !== '' && l.stdout.trim() !== '0';
  }

  async sync(req: SyncRequest): Promise<SyncResult> {
    const full = req.full || !this.synced;
    let previous: ReadonlySet<string> = this.activeChains;
    if (full) {
      try {
        await this.ensureJumps();
      } catch (err) {
        this.synced = false;
        throw err;
      }
      // As kube-proxy (every sync there, full syncs here since partial ones know what
      // they wrote): service chains in the kernel that this ruleset no longer uses go.
      // This also removes leftovers of a crashed run. On failure, only tracked ones.
      const s = await this.exec(this.tools.save, ['-t', 'nat']);
      if (s.code === 0) {
        const found = [...chainsInSave(s.stdout, 'nat')].filter(isServiceChainName);
        previous = new Set([...this.activeChains, ...found]);
      }
    }
    const r = renderIptables(
      req.ports,
      this.opts,
      { full, changed: req.changed, previousChains: previous, ...(full ? { chunkChains: CHUNK_CHAINS } : { previousByService: this.chainsByService }) },
      { conntrackTCPLiberal: this.conntrackTCPLiberal },
    );
    // A large full sync: the per-service chains first, a chunk a restore; each leaves a
    // consistent ruleset, the last (KUBE-SERVICES and the rest) makes them reachable.
    for (const chunk of r.chunks ?? []) {
      const c = await this.exec(this.tools.restore, [...WAIT, '--noflush', '--counters'], chunk);
      if (c.code !== 0) {
        this.synced = false;
        throw restoreError(this.tools.restore, c, chunk);
      }
    }
    // RestoreAll(data, NoFlushTables, RestoreCounters): only declared chains are flushed.
    const res = await this.exec(this.tools.restore, [...WAIT, '--noflush', '--counters'], r.text);
    if (res.code !== 0) {
      // The restore is atomic, so the kernel still has the previous ruleset; but the
      // change set that led here is spent, so the next sync must be full.
      this.synced = false;
      throw restoreError(this.tools.restore, res, r.text);
    }
    this.activeChains = r.natChains;
    this.chainsByService = r.byService;
    this.synced = true;
    let bytes = Buffer.byteLength(r.text);
    for (const chunk of r.chunks ?? []) bytes += Buffer.byteLength(chunk);
    return { rulesWritten: r.rules, bytes };
  }

  /**
   * Full syncs only, as kube-proxy (partial ones assume the jumps are still there; the
   * runner forces a full sync when they might not be): each chain exists
   * (`EnsureChain`), then each jump `-C` (check) or else `-I` (prepend, `EnsureRule`).
   */
  private async ensureJumps(): Promise<void> {
    const t = this.tools;
    const seen = new Set<string>();
    for (const j of JUMP_RULES) {
      const key = `${j.table} ${j.to}`;
      if (!seen.has(key)) {
        seen.add(key);
        const n = await this.exec(t.iptables, [...WAIT, '-t', j.table, '-N', j.to]);
        // Exit 1 "Chain already exists" is the normal case after the first sync.
        if (n.code !== 0 && !/exist/i.test(n.stderr)) {
          throw new Error(`${t.iptables} -t ${j.table} -N ${j.to} failed: ${firstLine(n.stderr) || `exit ${n.code}`}`);
        }
      }
      const c = await this.exec(t.iptables, [...WAIT, '-t', j.table, '-C', j.from, ...j.args]);
      if (c.code === 0) continue;
      const i = await this.exec(t.iptables, [...WAIT, '-t', j.table, '-I', j.from, ...j.args]);
      if (i.code !== 0) {
        throw new Error(`${t.iptables} -t ${j.table} -I ${j.from} (jump to ${j.to}) failed: ${firstLine(i.stderr) || `exit ${i.code}`}`);
      }
    }
  }

  /**
   * `CleanupLeftovers`: unlink our chains from the built-in ones, then flush and delete
   * every chain of ours that exists (top-level and per-service, nat and filter) in one
   * restore per table. Absent rules, chains or tables are fine; other failures are
   * collected and reported after everything was tried.
   */
  async cleanup(): Promise<void> {
    const t = this.tools;
    const errors: string[] = [];
    for (const j of JUMP_RULES) {
      // Delete every copy (there is one unless something else inserted it too).
      for (let k = 0; k < 16; k++) {
        const d = await this.exec(t.iptables, [...WAIT, '-t', j.table, '-D', j.from, ...j.args]);
        if (d.code !== 0) break;
      }
    }
    const own: Record<'nat' | 'filter', (c: string) => boolean> = {
      nat: (c) => NAT_CHAINS.includes(c) || isServiceChainName(c),
      filter: (c) => FILTER_CHAINS.includes(c),
    };
    for (const table of ['nat', 'filter'] as const) {
      const s = await this.exec(t.save, ['-t', table]);
      if (s.code !== 0) {
        // nft-based iptables has no table until something created it: nothing to remove.
        if (!/does not exist|no such|not found/i.test(s.stderr)) errors.push(`${t.save} -t ${table}: ${firstLine(s.stderr) || `exit ${s.code}`}`);
        continue;
      }
      const chains = [...chainsInSave(s.stdout, table)].filter(own[table]).sort();
      if (chains.length === 0) continue;
      // One restore, as kube-proxy; with many chains, in chunks (iptables-nft's restore is
      // quadratic in the chains one input names, see iptables.ts `chunks`): all flushed
      // first, so no rule still jumps to a chain when it is deleted, then deleted.
      const groups: string[][] = [];
      for (let i = 0; i < chains.length; i += CHUNK_CHAINS) groups.push(chains.slice(i, i + CHUNK_CHAINS));
      const inputs =
        groups.length === 1
          ? [[`*${table}`, ...chains.map((c) => `:${c} - [0:0]`), ...chains.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n')]
          : [
              ...groups.map((g) => [`*${table}`, ...g.map((c) => `:${c} - [0:0]`), 'COMMIT', ''].join('\n')),
              ...groups.map((g) => [`*${table}`, ...g.map((c) => `:${c} - [0:0]`), ...g.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n')),
            ];
      for (const input of inputs) {
        const r = await this.exec(t.restore, [...WAIT, '--noflush', '--counters'], input);
        if (r.code !== 0) {
          errors.push(restoreError(t.restore, r, input).message);
          break;
        }
      }
    }
    this.activeChains = new Set();
    this.chainsByService = new Map();
    this.synced = false;
    if (errors.length > 0) throw new Error(`iptables cleanup: ${errors.join('; ')}`);
  }
}
