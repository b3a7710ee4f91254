/**
 * A pod's nameserver forwards everything else: the CLI with a real Knot DNS as
 * `--upstream`, queried with dig over UDP and TCP, cached and uncached; ExternalName
 * targets outside our zones chased through it; metrics show the forwarding and cache.
 */
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { copyZones, dig, digStatus, requireTool, startCli } from './helpers/cli.js';
import { KNOT_TTL, startKnot } from './helpers/knot.js';

t.test('dig through clusterdns to a Knot upstream', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const knot = await startKnot(t);
  if (knot === undefined) return;
  const zones = copyZones(t);
  // An ExternalName pointing at a name only Knot serves.
  writeFileSync(
    `${zones}/cluster.local/default/ext-knot.yaml`.replace('/default/', '/'),
    'apiVersion: v1\nkind: Service\nmetadata: {name: kn, namespace: default}\nspec: {type: ExternalName, externalName: alias.example.test}\n',
  );
  const cli = await startCli(t, ['--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--upstream', `${knot.host}:${knot.port}`]);
  const answer = async (args: string[]) => (await dig(cli.port, ['+noall', '+answer', ...args])).trim();

  for (const transport of ['+notcp', '+tcp']) {
    const first = await answer([transport, 'www.example.test', 'A']);
    t.match(first, /^www\.example\.test\.\s+(\d+)\s+IN\s+A\s+192\.0\.2\.1$/m, `${transport}: forwarded`);
    t.match(await answer([transport, 'www.example.test', 'AAAA']), /2001:db8::1/);
    t.match(await answer([transport, 'chain.example.test', 'A']), /chain\.example\.test\.[\s\S]*alias\.example\.test\.[\s\S]*192\.0\.2\.1/, 'CNAME chain from upstream');
  }
  // Cached: the TTL counts down (maxTTL 30 caps Knot's 300).
  const ttlOf = (s: string) => Number(/\s(\d+)\s+IN\s+A/.exec(s)?.[1]);
  const a = ttlOf(await answer(['www.example.test']));
  t.ok(a <= 30 && a < KNOT_TTL, `cached TTL capped at 30 (${a})`);
  await new Promise((r) => setTimeout(r, 2100));
  const b = ttlOf(await answer(['www.example.test']));
  t.ok(b <= a - 2, `TTL counted down (${a} → ${b})`);
  // Negative answers come through with the upstream's SOA.
  const nx = await dig(cli.port, ['nope.example.test']);
  t.equal(digStatus(nx), 'NXDOMAIN');
  t.match(nx, /example\.test\.\s+\d+\s+IN\s+SOA/);
  t.match(nx, /flags: qr (aa )?rd ra;/, 'RA set when forwarding');
  // Large answers: Knot truncates over UDP; we retry over TCP and give dig what fits.
  t.equal((await dig(cli.port, ['+tcp', '+short', 'big.example.test'])).trim().split('\n').length, 100, 'TCP: all 100 records');
  t.equal((await dig(cli.port, ['+short', 'big.example.test'])).trim().split('\n').length, 100, 'UDP: dig retries over TCP after TC');
  // ExternalName target outside our zones: the CNAME plus the target's records (spec §2.5 E2).
  t.match(await answer(['kn.default.svc.cluster.local', 'A']), /kn\.default\.svc\.cluster\.local\.\s+5\s+IN\s+CNAME\s+alias\.example\.test\.[\s\S]*192\.0\.2\.1/);
  // Cluster names are still ours.
  t.match(await answer(['kubernetes.default.svc.cluster.local']), /10\.96\.0\.1/);
  const m = await (await fetch(`http://127.0.0.1:${cli.httpPort}/metrics`)).text();
  t.match(m, new RegExp(`clusterdns_forward_requests_total\\{to="127\\.0\\.0\\.1:${knot.port}"\\} [1-9]`));
  t.match(m, /clusterdns_cache_hits_total\{type="success"\} [1-9]/);
  t.match(m, /clusterdns_forward_request_duration_seconds_count\{to="[^"]+"\} [1-9]/);
  t.match(m, /clusterdns_dns_responses_total\{[^}]*zone="\."[^}]*plugin="forward"\}/);
});

t.test('an upstream that is down: SERVFAIL in about 2 s, never a hang', async (t) => {
  if (!requireTool(t, 'dig', 'bind9-dnsutils')) return;
  const zones = copyZones(t);
  // 127.0.0.1:9 (discard): nothing answers DNS there.
  const cli = await startCli(t, ['--zones', zones, '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--upstream', '127.0.0.1:9']);
  const start = Date.now();
  const out = await dig(cli.port, ['+time=5', '+tries=1', 'www.example.test']);
  const ms = Date.now() - start;
  t.equal(digStatus(out), 'SERVFAIL');
  t.ok(ms < 3500, `answered in ${ms} ms`);
  t.match(await dig(cli.port, ['+short', 'kubernetes.default.svc.cluster.local']), /10\.96\.0\.1/, 'cluster names unaffected');
});
