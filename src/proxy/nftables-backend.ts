/**
 * nftables mode, applying half: each sync is one `nft -f -` run, so one netlink batch
 * the kernel commits atomically or not at all (kube-proxy: knftables `Transaction`,
 * `nft.Run`), except a large full sync, which the renderer splits into transactions that
 * each leave a consistent ruleset (nftables.ts): the first alone, the service chunks up
 * to `applyConcurrency` at a time (one nft parses while another's batch is in the
 * kernel), the last alone. The first sync, and the first after a failure, is full; later
 * ones are partial (O(changes)) against the state the last successful sync left. Stale
 * chains and affinity sets are deleted by a transaction of their own, after a sync.
 */
import { availableParallelism, release } from 'node:os';
import type { RulesBackend, RulesBackendOptions, SyncRequest, SyncResult } from './backend.js';
import { exec as defaultExec, firstLine, type Exec } from './exec.js';
import { NFT_TABLE, isOurTable, renderNftables, renderStaleDeletion, stateFromListing, streamNftables, withoutStale, type Listed, type NftRender, type NftState } from './nftables.js';
import type { Family, RulesOptions } from './types.js';

export interface NftablesBackendOptions extends RulesBackendOptions {
  /**
   * Flush stale chains and affinity sets in the sync and delete them by a later
   * transaction, ≥ `staleChainDelayMs` after they went stale (default). kube-proxy does
   * this for chains, because kernels < 6.2 release a chain referenced by a deleted map
   * element only after a moment; we do it on every kernel and for sets too, because nft
   * reads every chain of the table into its cache before any deletion (~0.3-1 s at
   * 100,000 endpoints), which a partial sync should not wait for. false: delete them in
   * the sync's own transaction (kernels ≥ 6.2 only).
   */
  readonly deferStaleChains?: boolean;
  /** Default 1000 (kube-proxy's one second). */
  readonly staleChainDelayMs?: number;
  /**
   * The deletion (one nft chain fetch, however many go: ~2-3 s at 100,000 endpoints)
   * runs after a sync without changes (the periodic one), or after any sync once the
   * oldest due item has waited this long. Default five minutes.
   */
  readonly staleMaxAgeMs?: number;
  /** nft processes at once for the service chunks of a split full sync (default 2; 1 on one CPU). */
  readonly applyConcurrency?: number;
  /** Rules per transaction of a split full sync (default nftables.ts `CHUNK_RULES`). */
  readonly chunkRules?: number;
  /** Endpoints per shard table (default nftables.ts `SHARD_ENDPOINTS`; Infinity: one table). */
  readonly shardEndpoints?: number;
}

/** kube-proxy (knftables) needs nft ≥ 1.0.1: older ones parse the whole ruleset. */
const MIN_NFT: readonly [number, number, number] = [1, 0, 1];

/** Whether the kernel is older than 6.2 (major.minor of `uname -r`). */
export function kernelBefore62(rel: string = release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (m === null) return true;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major < 6 || (major === 6 && minor < 2);
}

/** nft's "No such file or directory": the table (or object) is not there. */
function notFound(stderr: string): boolean {
  return /No such file or directory/.test(stderr);
}

export class NftablesBackend implements RulesBackend {
  readonly mode = 'nftables' as const;
  readonly family: Family;
  readonly #opts: RulesOptions;
  readonly #exec: Exec;
  readonly #defer: boolean;
  readonly #delayMs: number;
  readonly #maxAgeMs: number;
  readonly #concurrency: number;
  readonly #chunkRules: number | undefined;
  readonly #shardEndpoints: number | undefined;
  /** The table as the last successful sync left it; undefined: unknown (list first). */
  #state: NftState | undefined;
  /** Base chains are recreated on this process's first full sync (kube-proxy's `flushed`). */
  #baseChainsReset = false;
  /** When each deferred stale chain and set went stale. */
  readonly #chainsSince = new Map<string, number>();
  readonly #setsSince = new Map<string, number>();

  constructor(opts: NftablesBackendOptions) {
    const { exec, deferStaleChains, staleChainDelayMs, staleMaxAgeMs, applyConcurrency, chunkRules, shardEndpoints, ...rules } = opts;
    this.#opts = rules;
    this.family = opts.family;
    this.#exec = exec ?? defaultExec;
    this.#defer = deferStaleChains ?? true;
    if (!this.#defer && kernelBefore62()) {
      // Deleting a chain in the batch that drops the map element naming it fails there.
      this.#defer = true;
    }
    this.#delayMs = staleChainDelayMs ?? 1000;
    this.#maxAgeMs = staleMaxAgeMs ?? 5 * 60 * 1000;
    this.#concurrency = Math.max(1, applyConcurrency ?? Math.min(2, availableParallelism()));
    this.#chunkRules = chunkRules;
    this.#shardEndpoints = shardEndpoints;
  }

  /** The state of the last successful sync (tests; undefined before one or after a failure). */
  get state(): NftState | undefined {
    return this.#state;
  }

  get #ipX(): 'ip' | 'ip6' {
    return this.family === 4 ? 'ip' : 'ip6';
  }

  async preflight(): Promise<void> {
    const v = await this.#exec('nft', ['--version']);
    if (v.code !== 0) throw new Error(`nftables mode: ${firstLine(v.stderr) || `nft --version exited ${v.code}`}`);
    const m = /v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(v.stdout);
    if (m === null) throw new Error(`nftables mode: cannot read the nft version from "${firstLine(v.stdout)}"`);
    const have = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
    const older = have[0]! !== MIN_NFT[0] ? have[0]! < MIN_NFT[0] : have[1]! !== MIN_NFT[1] ? have[1]! < MIN_NFT[1] : have[2]! < MIN_NFT[2];
    if (older) throw new Error(`nftables mode needs nft ≥ ${MIN_NFT.join('.')}; found ${have.join('.')}`);
    // Check (nothing committed) an empty full render: proves netlink access
    // (CAP_NET_ADMIN) and kernel support for every expression our fixed chains use.
    // (As for a table without nodeport-ips: deleting it would make nft read every chain.)
    const probe = renderNftables([], this.#opts, { full: true, changed: new Set(), previous: stateFromListing(this.family, [], []) });
    const c = await this.#exec('nft', ['-c', '-f', '-'], probe.text);
    if (c.code !== 0) {
      const line = firstLine(c.stderr);
      const hint = /Operation not permitted/.test(line) ? ' (needs CAP_NET_ADMIN: run as root or grant the capability)' : '';
      throw new Error(`nftables mode: nft check failed: ${line}${hint}`);
    }
  }

  async sync(req: SyncRequest): Promise<SyncResult> {
    const previous = this.#state ?? (await this.#listing());
    const full = req.full || this.#state === undefined;
    const stream = streamNftables(req.ports, this.#opts, {
      full,
      changed: req.changed,
      previous,
      deferStaleChains: this.#defer,
      resetBaseChains: full && !this.#baseChainsReset,
      ...(this.#chunkRules !== undefined ? { chunkRules: this.#chunkRules } : {}),
      ...(this.#shardEndpoints !== undefined ? { shardEndpoints: this.#shardEndpoints } : {}),
    });
    // Forget what we knew first: if nft fails, the kernel's state is whatever it was, and
    // the next (full) sync lists it again.
    this.#state = undefined;
    const r = await this.#apply(stream);
    if (r.full) this.#baseChainsReset = true;
    this.#state = r.state;
    const now = Date.now();
    track(this.#chainsSince, r.state.staleChains, now);
    track(this.#setsSince, r.state.staleSets.keys(), now);
    await this.#deleteStale(req.changed.size === 0 && !req.full ? 0 : this.#maxAgeMs);
    let bytes = 0;
    for (const t of r.transactions) bytes += Buffer.byteLength(t);
    return { rulesWritten: r.rules, bytes };
  }

  /**
   * Delete the stale chains and affinity sets now, due or not (benchmarks; otherwise
   * syncs do it). Returns how many went.
   */
  async deleteStale(): Promise<number> {
    return this.#deleteStale(0, true);
  }

  /** Delete our tables: `clusterdns` and its shards (tolerant of absent ones). */
  async cleanup(): Promise<void> {
    // Which shard tables exist: the state says, or else a chain listing (each has base
    // chains). Not `nft list tables`: nft reads the whole ruleset, rules included, for it
    // (over a minute at 100,000 endpoints).
    const known = this.#state;
    this.#state = undefined;
    this.#baseChainsReset = false;
    this.#chainsSince.clear();
    this.#setsSince.clear();
    const tables = new Set([NFT_TABLE]);
    if (known !== undefined) {
      for (const t of known.tables) tables.add(t);
    } else {
      const l = await this.#exec('nft', ['-j', 'list', 'chains', this.#ipX]);
      if (l.code === 0) {
        for (const o of parseListing(l.stdout)) {
          const t = o.chain?.table;
          if (typeof t === 'string' && isOurTable(t)) tables.add(t);
        }
      }
    }
    // One transaction for all of them (nft reads every chain before a deletion: once, not
    // once a table); one by one if that fails (a table listed but gone meanwhile).
    if (tables.size > 1) {
      const all = await this.#exec('nft', ['-f', '-'], [...tables].map((t) => `delete table ${this.#ipX} ${t}\n`).join(''));
      if (all.code === 0) return;
    }
    for (const t of tables) {
      const r = await this.#exec('nft', ['delete', 'table', this.#ipX, t]);
      if (r.code !== 0 && !notFound(r.stderr)) throw new Error(`nft: ${firstLine(r.stderr) || `exited ${r.code}`}`);
    }
  }

  /**
   * One `nft -f -` per transaction, while the render goes on: the first alone, the
   * middle ones up to `applyConcurrency` at a time as the renderer hands them out, the
   * last once all of them are in.
   */
  async #apply(stream: Generator<string | undefined, NftRender, undefined>): Promise<NftRender> {
    const run = async (text: string): Promise<void> => {
      const res = await this.#exec('nft', ['-f', '-'], text);
      if (res.code !== 0) throw new Error(`nft: ${firstLine(res.stderr) || `exited ${res.code}`}`);
    };
    const running = new Set<Promise<void>>();
    let failed: unknown;
    let applied = 0;
    let r: NftRender;
    for (;;) {
      const step = stream.next();
      if (step.done === true) {
        r = step.value;
        break;
      }
      if (step.value === undefined) {
        // Let the event loop feed the running nft processes their input.
        if (running.size > 0) await new Promise((resolve) => setImmediate(resolve));
      } else if (applied++ === 0) {
        await run(step.value);
      } else {
        while (running.size >= this.#concurrency) await Promise.race(running);
        const p: Promise<void> = run(step.value).then(
          () => void running.delete(p),
          (err: unknown) => {
            running.delete(p);
            failed ??= err;
          },
        );
        running.add(p);
      }
      if (failed !== undefined) break;
    }
    await Promise.all(running);
    if (failed !== undefined) throw failed;
    for (const t of r!.transactions.slice(applied)) await run(t);
    return r!;
  }

  /**
   * What is in our tables when we do not know (first sync, after a failure): the shard
   * tables, service chains and affinity sets, so the full render reuses or removes them. Chains and
   * sets only (no rules, no elements): kube-proxy lists these on every sync; we do
   * only here.
   */
  async #listing(): Promise<NftState> {
    const chains: Listed[] = [];
    const sets: (Listed & { timeout: number })[] = [];
    const lc = await this.#exec('nft', ['-j', 'list', 'chains', this.#ipX]);
    if (lc.code !== 0 && !notFound(lc.stderr)) throw new Error(`nft: ${firstLine(lc.stderr) || `exited ${lc.code}`}`);
    for (const o of parseListing(lc.stdout)) {
      const c = o.chain;
      if (c !== undefined && typeof c.table === 'string' && isOurTable(c.table) && typeof c.name === 'string') chains.push({ table: c.table, name: c.name });
    }
    const ls = await this.#exec('nft', ['-t', '-j', 'list', 'sets', this.#ipX]);
    if (ls.code !== 0 && !notFound(ls.stderr)) throw new Error(`nft: ${firstLine(ls.stderr) || `exited ${ls.code}`}`);
    for (const o of parseListing(ls.stdout)) {
      const s = o.set;
      if (s !== undefined && typeof s.table === 'string' && isOurTable(s.table) && typeof s.name === 'string') {
        sets.push({ table: s.table, name: s.name, timeout: typeof s.timeout === 'number' ? s.timeout : -1 });
      }
    }
    return stateFromListing(this.family, chains, sets);
  }

  /**
   * Deferred deletion (kube-proxy's stale chains): chains and sets stale for ≥ the delay,
   * in their own transaction, once the oldest of them has waited `minAgeMs` (0: at once);
   * on failure they stay listed and are tried again after a later sync.
   */
  async #deleteStale(minAgeMs: number, all = false): Promise<number> {
    const state = this.#state;
    if (state === undefined || (state.staleChains.size === 0 && state.staleSets.size === 0)) return 0;
    const now = Date.now();
    const cutoff = all ? Infinity : now - this.#delayMs;
    const chains = [...state.staleChains].filter((c) => (this.#chainsSince.get(c) ?? 0) <= cutoff);
    const sets = [...state.staleSets.keys()].filter((s) => (this.#setsSince.get(s) ?? 0) <= cutoff);
    if (chains.length === 0 && sets.length === 0) return 0;
    let oldest = now;
    for (const c of chains) oldest = Math.min(oldest, this.#chainsSince.get(c) ?? 0);
    for (const n of sets) oldest = Math.min(oldest, this.#setsSince.get(n) ?? 0);
    if (!all && now - oldest < minAgeMs) return 0;
    const r = await this.#exec('nft', ['-f', '-'], renderStaleDeletion(this.family, chains, sets));
    if (r.code !== 0) return 0;
    for (const c of chains) this.#chainsSince.delete(c);
    for (const s of sets) this.#setsSince.delete(s);
    this.#state = withoutStale(state, chains, sets);
    return chains.length + sets.length;
  }
}

/** Record when each name first went stale; forget names no longer stale. */
function track(since: Map<string, number>, stale: Iterable<string>, now: number): void {
  const current = new Set(stale);
  for (const n of current) if (!since.has(n)) since.set(n, now);
  for (const n of since.keys()) if (!current.has(n)) since.delete(n);
}

interface ListedObject {
  readonly chain?: { readonly table?: unknown; readonly name?: unknown };
  readonly set?: { readonly table?: unknown; readonly name?: unknown; readonly timeout?: unknown };
}

/** `nft -j` output: `{"nftables": [{metainfo}, {chain: …}, …]}`; empty output = nothing. */
function parseListing(stdout: string): ListedObject[] {
  if (stdout.trim() === '') return [];
  const doc = JSON.parse(stdout) as { nftables?: unknown };
  return Array.isArray(doc.nftables) ? (doc.nftables as ListedObject[]) : [];
}
