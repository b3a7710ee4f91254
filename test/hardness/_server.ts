/**
 * Child-process entry: the server under test, alone in its process, so that
 * latency, memory and crashes are its own and not the abusive clients'.
 *
 * argv[2]: JSON Partial<ListenOptions>. Sends `{ ready, udpPort, tcpPort }`, then
 * answers `{ cmd: 'stats' }` with connections, memory (after GC on `{ gc: true }`),
 * queries handled per transport and errors reported, and applies `{ cmd: 'ops' }`
 * (store upserts and removes, as a source would) acknowledging them once the store
 * has delivered the change to the zone (so the new state is served from then on).
 */
import v8 from 'node:v8';
import type { ClusterObject, Kind } from '../../src/cluster/model.js';
import { buildServer, listenOn } from './_lib.js';

export type StoreOp = { readonly op: 'upsert'; readonly obj: ClusterObject } | { readonly op: 'remove'; readonly kind: Kind; readonly key: string };

/** Queries handled per transport, and SRV queries (the probers never ask SRV). */
const handled = { udp: 0, tcp: 0, srv: 0 };
const errors: string[] = [];
const s = buildServer({
  onQuery: (e) => {
    handled[e.transport]++;
    if (e.qtype === 33) handled.srv++;
  },
});
const l = await listenOn(s, { ...(JSON.parse(process.argv[2] ?? '{}') as object), onError: (err, where) => void errors.push(`${where}: ${String(err)}`) });

export interface ServerStats {
  readonly conns: number;
  readonly mem: NodeJS.MemoryUsage;
  readonly handled: { udp: number; tcp: number; srv: number };
  readonly errors: string[];
  /** V8 heap spaces: physical bytes each (the young generation grows with allocation rate). */
  readonly spaces: Record<string, number>;
}

process.on('message', (m: { cmd: string; id: number; gc?: boolean; ops?: StoreOp[] }) => {
  if (m.cmd === 'ops') {
    for (const o of m.ops ?? []) {
      if (o.op === 'upsert') s.store.upsert(o.obj);
      else s.store.remove(o.kind, o.key);
    }
    // The store delivers changes on its own setImmediate (scheduled by the first op,
    // so it runs before this one): acknowledge once the zone serves the new state.
    setImmediate(() => process.send!({ id: m.id, applied: true }));
  } else if (m.cmd === 'stats') {
    if (m.gc === true) (globalThis as { gc?: () => void }).gc?.();
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, x.physical_space_size]));
    const stats: ServerStats = { conns: l.tcpConnections(), mem: process.memoryUsage(), handled, errors: [...errors, ...s.errors.map(String)], spaces };
    process.send!({ id: m.id, stats });
  } else if (m.cmd === 'exit') {
    void l.close().then(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true, udpPort: l.udpPort, tcpPort: l.tcpPort });
