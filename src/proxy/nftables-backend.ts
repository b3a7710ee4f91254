/**
 * nftables mode, applying half: each sync is one `nft -f -` run, so one netlink batch
 * the kernel commits atomically or not at all (kube-proxy: knftables `Transaction`,
 * `nft.Run`). The first sync, and the first after a failure, is full; later ones are
 * partial (O(changes)) against the state the last successful sync left.
 */
import { release } from 'node:os';
import type { RulesBackend, RulesBackendOptions, SyncRequest, SyncResult } from './backend.js';
import { exec as defaultExec, firstLine, type Exec } from './exec.js';
import {
  NFT_TABLE,
  renderNftables,
  renderStaleChainDeletion,
  stateFromListing,
  withoutStaleChains,
  type NftState,
} from './nftables.js';
import type { Family, RulesOptions } from './types.js';

export interface NftablesBackendOptions extends RulesBackendOptions {
  /**
   * Delete stale chains in a later transaction, ≥ `staleChainDelayMs` after they went
   * stale, as kube-proxy does (kernels < 6.2 release a chain referenced by a deleted map
   * element only after a moment, so deleting it in the same batch fails). Default: when
   * the running kernel is older than 6.2.
   */
  readonly deferStaleChains?: boolean;
  /** Default 1000 (kube-proxy's one second). */
  readonly staleChainDelayMs?: number;
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
  /** The table as the last successful sync left it; undefined: unknown (list first). */
  #state: NftState | undefined;
  /** Base chains are recreated on this process's first full sync (kube-proxy's `flushed`). */
  #baseChainsReset = false;
  /** When each deferred stale chain went stale. */
  readonly #staleSince = new Map<string, number>();

  constructor(opts: NftablesBackendOptions) {
    const { exec, deferStaleChains, staleChainDelayMs, ...rules } = opts;
    this.#opts = rules;
    this.family = opts.family;
    this.#exec = exec ?? defaultExec;
    this.#defer = deferStaleChains ?? kernelBefore62();
    this.#delayMs = staleChainDelayMs ?? 1000;
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
    const probe = renderNftables([], this.#opts, { full: true, changed: new Set() });
    const c = await this.#exec('nft', ['-c', '-f', '-'], probe.text);
    if (c.code !== 0) {
      const line = firstLine(c.stderr);
      const hint = /Operation not permitted/.test(line) ? ' (needs CAP_NET_ADMIN: run as root or grant the capability)' : '';
      throw new Error(`nftables mode: nft check failed: ${line}${hint}`);
    }
  }

  async sync(req: SyncRequest): Promise<SyncResult> {
    let previous = this.#state;
    if (previous === undefined) {
      previous = await this.#listing();
    } else if (previous.staleChains.size > 0) {
      previous = await this.#deleteStaleChains(previous);
    }
    const full = req.full || this.#state === undefined;
    const r = renderNftables(req.ports, this.#opts, {
      full,
      changed: req.changed,
      previous,
      deferStaleChains: this.#defer,
      resetBaseChains: full && !this.#baseChainsReset,
    });
    if (r.text !== '') {
      // Forget what we knew first: if nft fails, the kernel's state is whatever it was,
      // and the next (full) sync lists it again.
      this.#state = undefined;
      const res = await this.#exec('nft', ['-f', '-'], r.text);
      if (res.code !== 0) throw new Error(`nft: ${firstLine(res.stderr) || `exited ${res.code}`}`);
    }
    if (r.full) this.#baseChainsReset = true;
    this.#state = r.state;
    const now = Date.now();
    for (const c of r.state.staleChains) if (!this.#staleSince.has(c)) this.#staleSince.set(c, now);
    for (const c of this.#staleSince.keys()) if (!r.state.staleChains.has(c)) this.#staleSince.delete(c);
    return { rulesWritten: r.rules, bytes: Buffer.byteLength(r.text) };
  }

  async cleanup(): Promise<void> {
    const r = await this.#exec('nft', ['delete', 'table', this.#ipX, NFT_TABLE]);
    this.#state = undefined;
    this.#baseChainsReset = false;
    this.#staleSince.clear();
    if (r.code !== 0 && !notFound(r.stderr)) throw new Error(`nft: ${firstLine(r.stderr) || `exited ${r.code}`}`);
  }

  /**
   * What is in our table when we do not know (first sync, after a failure): its service
   * chains and affinity sets, so the full render reuses or removes them. Chains and
   * sets only (no rules, no elements): kube-proxy lists these on every sync; we do
   * only here.
   */
  async #listing(): Promise<NftState> {
    const chains: string[] = [];
    const sets: { name: string; timeout: number }[] = [];
    const lc = await this.#exec('nft', ['-j', 'list', 'chains', this.#ipX]);
    if (lc.code !== 0 && !notFound(lc.stderr)) throw new Error(`nft: ${firstLine(lc.stderr) || `exited ${lc.code}`}`);
    for (const o of parseListing(lc.stdout)) {
      const c = o.chain;
      if (c !== undefined && c.table === NFT_TABLE && typeof c.name === 'string') chains.push(c.name);
    }
    const ls = await this.#exec('nft', ['-t', '-j', 'list', 'sets', this.#ipX]);
    if (ls.code !== 0 && !notFound(ls.stderr)) throw new Error(`nft: ${firstLine(ls.stderr) || `exited ${ls.code}`}`);
    for (const o of parseListing(ls.stdout)) {
      const s = o.set;
      if (s !== undefined && s.table === NFT_TABLE && typeof s.name === 'string') sets.push({ name: s.name, timeout: typeof s.timeout === 'number' ? s.timeout : -1 });
    }
    return stateFromListing(this.family, chains, sets);
  }

  /**
   * kube-proxy's deferred stale-chain deletion: chains stale for ≥ the delay, in their
   * own transaction; on failure they stay listed and are tried again next sync.
   */
  async #deleteStaleChains(state: NftState): Promise<NftState> {
    const cutoff = Date.now() - this.#delayMs;
    const due = [...state.staleChains].filter((c) => (this.#staleSince.get(c) ?? 0) <= cutoff);
    if (due.length === 0) return state;
    const r = await this.#exec('nft', ['-f', '-'], renderStaleChainDeletion(this.family, due));
    if (r.code !== 0) return state;
    for (const c of due) this.#staleSince.delete(c);
    const next = withoutStaleChains(state, due);
    this.#state = next;
    return next;
  }
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
