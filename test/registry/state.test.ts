/**
 * The state file: encoding, strict decoding, and the atomic write (a failure at any
 * step leaves the previous file untouched and no temp file behind).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  type AllocationState,
  type StateFs,
  StateFormatError,
  decodeState,
  emptyState,
  encodeState,
  moveAside,
  nodeStateFs,
  stateKey,
  writeStateFile,
} from '../../src/registry/state.js';
import { tempDir } from './_harness.js';

const state: AllocationState = {
  ...emptyState(['10.96.0.0/12', 'fd00:10:96::/112'], '30000-32767'),
  records: new Map([
    ['shop/cart', { type: 'ClusterIP', clusterIPs: ['10.96.10.20', 'fd00:10:96::14'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack', ports: [{ name: 'http', port: 80, protocol: 'TCP' }], request: 'sha256:x' }],
    ['a/np', { type: 'NodePort', clusterIPs: ['10.96.0.5'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', ports: [{ name: '', port: 53, protocol: 'UDP', nodePort: 30053 }], request: 'sha256:y' }],
    ['a/hl', { type: 'ClusterIP', clusterIPs: ['None'], ipFamilies: ['IPv4'], ports: [], request: 'sha256:z' }],
  ]),
};

t.test('encode / decode round trip; keys sorted; stateKey ignores generation and time', async (t) => {
  const text = encodeState('cluster.local', state, { generation: 4, serviceCIDRs: ['10.96.0.0/12', 'fd00:10:96::/112'], nodePortRange: '30000-32767', writtenAt: '2026-01-01T00:00:00.000Z' });
  const doc = JSON.parse(text) as Record<string, unknown>;
  t.same(Object.keys(doc.services as object), ['a/hl', 'a/np', 'shop/cart']);
  const back = decodeState(text);
  t.equal(back.generation, 4);
  t.equal(back.writtenAt, '2026-01-01T00:00:00.000Z');
  t.equal(stateKey(back), stateKey(state));
  const later = encodeState('cluster.local', state, { generation: 5, serviceCIDRs: [], nodePortRange: '30000-32767' });
  t.equal(stateKey(decodeState(later)), stateKey(state));
});

t.test('decode refuses what it cannot trust, naming the problem', async (t) => {
  const good = JSON.parse(encodeState('z', state, { generation: 1, serviceCIDRs: [], nodePortRange: '30000-32767' })) as Record<string, any>;
  const cases: Array<[string, (d: Record<string, any>) => unknown, RegExp]> = [
    ['not JSON', () => '{', /^not JSON: /],
    ['wrong format', (d) => ({ ...d, format: 'v0' }), /^format: must be "clusterdns\.allocations\/v1", got "v0"$/],
    ['bad generation', (d) => ({ ...d, generation: -1 }), /^generation: must be a whole number$/],
    ['bad bitmap', (d) => ({ ...d, ranges: [{ family: 'IPv4', range: '10.96.0.0/12', data: '!!' }] }), /^ranges\[0\]\.data: must be base64$/],
    ['bad CIDR', (d) => ({ ...d, ranges: [{ family: 'IPv4', range: '10.96.0.0/99', data: '' }] }), /^ranges\[0\]\.range: not a CIDR/],
    ['bad key', (d) => ({ ...d, services: { nokey: d.services['a/np'] } }), /key must be namespace\/name/],
    ['non-canonical IP', (d) => ({ ...d, services: { 'a/np': { ...d.services['a/np'], clusterIPs: ['010.96.0.5'] } } }), /clusterIPs\[0\]: not a canonical IP: "010\.96\.0\.5"/],
    ['bad port', (d) => ({ ...d, services: { 'a/np': { ...d.services['a/np'], ports: [{ name: '', port: 0, protocol: 'UDP' }] } } }), /ports\[0\]\.port: must be a port number/],
    ['unknown type', (d) => ({ ...d, services: { 'a/np': { ...d.services['a/np'], type: 'Weird' } } }), /\.type: unknown type "Weird"/],
  ];
  for (const [what, mutate, re] of cases) {
    const v = mutate(structuredClone(good));
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    t.throws(() => decodeState(text), StateFormatError, what);
    try {
      decodeState(text);
    } catch (err) {
      t.match((err as Error).message, re, what);
    }
  }
});

t.test('atomic write: a failure at any step leaves the old file and no temp file', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'z', 'allocations.json');
  writeStateFile(nodeStateFs, path, 'old\n');
  t.equal(readFileSync(path, 'utf8'), 'old\n');
  for (const step of ['writeDurable', 'rename'] as const) {
    const fs: StateFs = {
      ...nodeStateFs,
      [step]: (...args: [string, string]) => {
        if (step === 'writeDurable') {
          // Half a file, then the disk fills up.
          writeFileSync(args[0], 'ne');
        }
        const err = new Error(`ENOSPC: no space left on device (${step})`) as NodeJS.ErrnoException;
        err.code = 'ENOSPC';
        throw err;
      },
    };
    t.throws(() => writeStateFile(fs, path, 'new\n'), { code: 'ENOSPC' }, step);
    t.equal(readFileSync(path, 'utf8'), 'old\n', `${step} failing: old content intact`);
    t.same(readdirSync(join(dir, 'z')), ['allocations.json'], `${step} failing: temp removed`);
  }
  const synced: string[] = [];
  writeStateFile({ ...nodeStateFs, fsyncDir: (p) => synced.push(p) }, path, 'new\n');
  t.equal(readFileSync(path, 'utf8'), 'new\n');
  t.same(synced, [join(dir, 'z')], 'the directory is fsynced after the rename');
  const fresh = join(dir, 'a', 'b', 'allocations.json');
  const synced2: string[] = [];
  writeStateFile({ ...nodeStateFs, fsyncDir: (p) => synced2.push(p) }, fresh, 'x');
  t.same(synced2, [dir, join(dir, 'a', 'b')], 'a created directory is made durable in its parent too');
});

t.test('moveAside never overwrites an older copy', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'allocations.json');
  const now = Date.UTC(2026, 0, 2, 3, 4, 5);
  writeFileSync(path, 'one');
  const a = moveAside(nodeStateFs, path, now);
  writeFileSync(path, 'two');
  const b = moveAside(nodeStateFs, path, now);
  t.equal(a, `${path}.corrupt-20260102T030405Z`);
  t.equal(b, `${path}.corrupt-20260102T030405Z-1`);
  t.equal(readFileSync(a, 'utf8'), 'one');
  t.equal(readFileSync(b, 'utf8'), 'two');
  t.notOk(existsSync(path));
});
