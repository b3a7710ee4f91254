/**
 * What a newcomer types first: `clusterdns --version`, and commands run in one folder
 * agreeing on one configuration (./clusterdns.yaml when no --config is given).
 */
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { BIN, ROOT } from './helpers/cli.js';
import { findConfigFile } from '../src/config.js';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function cli(args: string[], cwd = ROOT): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('--version and version print ours and the runtime', async (t) => {
  for (const arg of ['--version', 'version']) {
    const r = cli([arg]);
    t.equal(r.code, 0, `${arg} exits 0`);
    t.equal(r.stdout, `clusterdns ${VERSION} (node ${process.version})\n`, arg);
  }
});

t.test('findConfigFile: --config wins, else ./clusterdns.yaml when present', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cdns-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.same(findConfigFile(undefined, dir), { path: undefined, implicit: false });
  writeFileSync(join(dir, 'clusterdns.yaml'), 'ttl: 7\n');
  t.same(findConfigFile(undefined, dir), { path: join(dir, 'clusterdns.yaml'), implicit: true });
  t.same(findConfigFile('other.yaml', dir), { path: 'other.yaml', implicit: false });
});

t.test('ipam in the example folder reads ./clusterdns.yaml as npm start does', async (t) => {
  // A copy of the example (zones/ and clusterdns.yaml) with its own state folder.
  const dir = mkdtempSync(join(tmpdir(), 'cdns-ipam-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(ROOT, 'zones'), join(dir, 'zones'), { recursive: true });
  cpSync(join(ROOT, 'clusterdns.yaml'), join(dir, 'clusterdns.yaml'));
  const withFile = cli(['ipam', '--json'], dir);
  t.equal(withFile.code, 0, withFile.stderr);
  const report = JSON.parse(withFile.stdout) as { configFile?: string; serviceCIDRs: string[]; anomalyCount: number };
  t.equal(report.configFile, join(dir, 'clusterdns.yaml'), 'the file found is named in the report');
  t.same(report.serviceCIDRs, ['10.96.0.0/12', 'fd00:10:96::/112'], 'its dual-stack CIDRs are used');
  const text = cli(['ipam'], dir);
  t.equal(text.stdout.split('\n')[0], `configuration: ${join(dir, 'clusterdns.yaml')}`, 'first line names the configuration');
  t.notMatch(text.stdout, /refused-service Service shop\/cart/, 'the dual-stack cart service is not refused');

  // Without the file: the defaults, and the example's dual-stack service is refused.
  rmSync(join(dir, 'clusterdns.yaml'));
  const bare = cli(['ipam'], dir);
  t.equal(bare.code, 0);
  t.equal(bare.stdout.split('\n')[0], 'configuration: defaults (no --config, no ./clusterdns.yaml)');
  t.match(bare.stdout, /refused-service Service shop\/cart .*not configured for dual-stack/, 'without the dual-stack CIDRs cart is refused');
});

t.test('serve says which configuration it found in its first line', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cdns-serve-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(ROOT, 'zones'), join(dir, 'zones'), { recursive: true });
  writeFileSync(join(dir, 'clusterdns.yaml'), 'ttl: nope\n');
  // A bad found file is an error naming it: proof that it was read, and that nothing is guessed.
  const r = cli(['serve', '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--no-upstream'], dir);
  t.equal(r.code, 2);
  t.match(r.stderr, `${join(dir, 'clusterdns.yaml')}: ttl: must be a whole number`);
  // rules reads it too (and logs the configuration line first, on stderr).
  writeFileSync(join(dir, 'clusterdns.yaml'), 'ttl: 7\n');
  const rules = cli(['rules', '--mode', 'nftables', '--log-level', 'info'], dir);
  t.equal(rules.code, 0, rules.stderr);
  const first = JSON.parse(rules.stderr.split('\n')[0]!) as { msg: string };
  t.match(first.msg, `configuration: ${join(dir, 'clusterdns.yaml')} (found in the current folder`);
});
