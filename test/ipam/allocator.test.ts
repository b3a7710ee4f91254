/**
 * Cases J (custom clusterIP errors), L (--service-cluster-ip-range validation) and the
 * update rows of I, on ClusterIPAllocator; plus transactions and snapshots.
 */
import t from 'tap';
import { ClusterIPAllocator, validateServiceCidrs } from '../../src/ipam/allocator.js';
import { ErrAllocated, ErrFull, ErrMismatchedNetwork, ErrNotInRange, ServiceCidrConfigError } from '../../src/ipam/errors.js';
import type { ServiceIPSpec } from '../../src/ipam/families.js';
import { ServiceInternalError, ServiceInvalidError } from '../../src/ipam/field.js';
import { seeded, throwsClass } from './fixtures/helpers.js';

t.test('L apiserver flag validation', async (t) => {
  t.same(validateServiceCidrs('10.92.0.0/12').map(String), ['10.80.0.0/12'], '10.92.0.0/12 OK (masked like ParseCIDR)');
  t.same(validateServiceCidrs('3000::/108').map(String), ['3000::/108'], '3000::/108 OK');
  t.same(validateServiceCidrs(['10.96.0.0/12', 'fd00::/108']).map(String), ['10.96.0.0/12', 'fd00::/108']);
  t.same(validateServiceCidrs(' fd00::/112 , 10.0.0.0/24').map(String), ['fd00::/112', '10.0.0.0/24'], 'primary first, whitespace trimmed');
  const bad: Array<[string | string[], string[]]> = [
    ['10.92.0.0/8', ['specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12']],
    ['3000::/64', ['specified --service-cluster-ip-range is too large; for 128-bit addresses, the mask must be >= 108']],
    ['10.0.0.0/24,fd00::/64', ['specified --service-cluster-ip-range[1] is too large; for 128-bit addresses, the mask must be >= 108']],
    ['10.0.0.0/24,10.1.0.0/24', ['--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family']],
    ['10.0.0.0/24,fd00::/112,10.1.0.0/24', ['--service-cluster-ip-range must not contain more than two entries']],
    ['', ['--service-cluster-ip-range must contain at least one valid cidr']],
    [[], ['--service-cluster-ip-range must contain at least one valid cidr']],
    ['10.0.0.0', ['service-cluster-ip-range[0] is not a valid cidr: invalid CIDR address: 10.0.0.0: missing "/<prefix length>"']],
    ['10.0.0.0/24,bogus/64', ['service-cluster-ip-range[1] is not a valid cidr: invalid CIDR address: bogus/64: "bogus" is not an IP address']],
  ];
  for (const [input, errors] of bad) {
    const err = throwsClass(t, () => validateServiceCidrs(input), ServiceCidrConfigError, errors.join('; '), JSON.stringify(input));
    t.same(err?.errors, errors);
    t.equal(err?.code, 'ERR_IPAM_CONFIG');
    throwsClass(t, () => new ClusterIPAllocator(input), ServiceCidrConfigError, undefined, `constructor ${JSON.stringify(input)}`);
  }
  const a = new ClusterIPAllocator('fd00::/108,10.96.0.0/12');
  t.same(a.families, ['IPv6', 'IPv4']);
  t.equal(a.primaryFamily, 'IPv6');
  t.same(a.usage(), [
    { family: 'IPv6', cidr: 'fd00::/108', size: 65535, used: 0, free: 65535 },
    { family: 'IPv4', cidr: '10.96.0.0/12', size: 1048574, used: 0, free: 1048574 },
  ]);
});

const svc = (o: Partial<ServiceIPSpec> = {}): ServiceIPSpec => ({ name: 'foo', namespace: 'ns', type: 'ClusterIP', selector: { a: 'b' }, ...o });
const withIP = (ip: string, o: Partial<ServiceIPSpec> = {}) => svc({ clusterIP: ip, clusterIPs: [ip], ...o });

t.test('J custom clusterIP allocation errors (10.0.0.0/24)', async (t) => {
  const a = new ClusterIPAllocator('10.0.0.0/24', { random: seeded(1) });
  const first = a.allocateService(withIP('10.0.0.10'));
  t.same([first.clusterIP, first.clusterIPs, first.allocated], ['10.0.0.10', ['10.0.0.10'], ['10.0.0.10']]);
  t.ok(a.has('10.0.0.10'));

  const dup = throwsClass(t, () => a.allocateService(withIP('10.0.0.10', { name: 'bar' })), ServiceInvalidError,
    'Service "bar" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.10"}: failed to allocate IP 10.0.0.10: provided IP is already allocated');
  t.equal(dup?.status, 422);
  for (const ip of ['10.0.0.0', '10.0.0.255', '10.0.1.5']) {
    throwsClass(t, () => a.allocateService(withIP(ip)), ServiceInvalidError,
      `Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"${ip}"}: failed to allocate IP ${ip}: the provided IP (${ip}) is not in the valid range. The range of valid IPs is 10.0.0.0/24`);
  }
  throwsClass(t, () => a.allocateService(withIP('None', { type: 'NodePort' })), ServiceInvalidError,
    'Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for NodePort services');
  const headless = a.allocateService(withIP('None'));
  t.same([headless.clusterIP, headless.clusterIPs, headless.allocated], ['None', ['None'], []], 'None, ClusterIP type: OK');
  throwsClass(t, () => a.allocateService(svc({ clusterIP: '', clusterIPs: ['10.0.0.1'] })), ServiceInvalidError,
    'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: must be empty when `clusterIP` is not specified');
  throwsClass(t, () => a.allocateService(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.2'] })), ServiceInvalidError,
    'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.2"}: first value must match `clusterIP`');
  // cases.md expects "'None' must be the first and only value" here, but upstream only
  // says that when None is at index 0; at index 1 it fails IsValidIP first.
  throwsClass(t, () => a.allocateService(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', 'None'] })), ServiceInvalidError,
    'Service "foo" is invalid: spec.clusterIPs[1]: Invalid value: "None": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)');
  throwsClass(t, () => a.allocateService(svc({ clusterIP: 'None', clusterIPs: ['None', '10.0.0.1'] })), ServiceInvalidError,
    'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"None", "10.0.0.1"}: \'None\' must be the first and only value');
  const three = throwsClass(t, () => a.allocateService(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', '2000::1', '10.0.0.3'], ipFamilyPolicy: 'RequireDualStack' })), ServiceInvalidError);
  t.match(three?.message, /may only hold up to 2 values/);
  t.equal(a.usage()[0]?.used, 1, 'failed calls left nothing allocated');

  // Dry-run: network address, nothing allocated.
  const dry = a.allocateService(svc(), { dryRun: true });
  t.same([dry.clusterIP, dry.allocated, dry.dryRun], ['10.0.0.0', [], true]);
  const dryReq = a.allocateService(withIP('10.0.0.10'), { dryRun: true });
  t.equal(dryReq.clusterIP, '10.0.0.10', 'dry-run does not check whether the IP is taken');
  t.equal(a.usage()[0]?.used, 1);

  // Exhaust, then a dynamic request is a 500.
  for (let i = 0; i < 253; i++) a.allocateService(svc({ name: `s${i}` }));
  t.equal(a.usage()[0]?.free, 0);
  const full = throwsClass(t, () => a.allocateService(svc()), ServiceInternalError,
    'Internal error occurred: failed to allocate a serviceIP: range is full');
  t.equal(full?.status, 500);
  t.equal(full?.detail, 'failed to allocate a serviceIP: range is full');
  t.ok(full?.cause instanceof ErrFull);
});

t.test('all-or-nothing across families', async (t) => {
  const a = new ClusterIPAllocator('10.0.0.0/30,fd00::/120', { random: seeded(2) });
  a.allocateSpecific('fd00::5');
  throwsClass(t, () => a.allocateService(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', 'fd00::5'], ipFamilyPolicy: 'RequireDualStack' })), ServiceInvalidError,
    'Service "foo" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.1", "fd00::5"}: failed to allocate IP fd00::5: provided IP is already allocated');
  t.notOk(a.has('10.0.0.1'), 'the v4 IP taken first was released');
  // Dynamic v6 fails after v4 succeeded: the "" marker shows in the error value.
  const b = new ClusterIPAllocator('10.0.0.0/24,fd00::/127');
  b.allocateNext('IPv6');
  throwsClass(t, () => b.allocateService(svc({ ipFamilyPolicy: 'RequireDualStack' })), ServiceInternalError, 'Internal error occurred: failed to allocate a serviceIP: range is full');
  t.equal(b.usage()[0]?.used, 0, 'v4 released');
  throwsClass(t, () => b.allocateService(svc({ clusterIP: '10.0.0.9', clusterIPs: ['10.0.0.9'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'PreferDualStack' })), ServiceInternalError);
  t.notOk(b.has('10.0.0.9'));
  // revert() of a successful create gives everything back; commit() after revert is a no-op.
  const ok = a.allocateService(svc({ ipFamilyPolicy: 'PreferDualStack' }));
  t.equal(ok.allocated.length, 2);
  t.ok(ok.allocated.every((ip) => a.has(ip)));
  ok.revert();
  t.ok(ok.allocated.every((ip) => !a.has(ip)));
  ok.commit();
  ok.revert();
  t.ok(ok.allocated.every((ip) => !a.has(ip)));
});

t.test('final validation after allocation reverts (NodePort + None never allocates; LB type errors revert)', async (t) => {
  const a = new ClusterIPAllocator('10.0.0.0/24');
  throwsClass(t, () => a.allocateService(svc({ type: 'LoadBalancer', clusterIP: 'None' })), ServiceInvalidError);
  t.equal(a.usage()[0]?.used, 0);
});

t.test('I update rows (dual-stack cluster 10.0.0.0/24, fd00::/120)', async (t) => {
  const mk = () => new ClusterIPAllocator('10.0.0.0/24,fd00::/120', { random: seeded(3) });

  t.test('SingleStack [v4] -> PreferDualStack allocates the v6 secondary', async (t) => {
    const a = mk();
    const old = a.allocateService(withIP('10.0.0.5'));
    t.same([old.ipFamilyPolicy, old.ipFamilies], ['SingleStack', ['IPv4']]);
    const up = a.updateService(old, { ...withIP('10.0.0.5'), ipFamilies: ['IPv4'], ipFamilyPolicy: 'PreferDualStack' });
    t.same(up.ipFamilies, ['IPv4', 'IPv6']);
    t.equal(up.clusterIPs.length, 2);
    t.equal(up.clusterIPs[0], '10.0.0.5');
    t.match(up.clusterIPs[1], /^fd00::/);
    t.same(up.allocated, [up.clusterIPs[1]]);
    t.ok(a.has(up.clusterIPs[1] ?? ''));
    up.revert();
    t.notOk(a.has(up.clusterIPs[1] ?? ''), 'revert releases the new secondary');
    t.ok(a.has('10.0.0.5'), 'but never the kept primary');
  });

  t.test('PreferDualStack [v4, v6] -> SingleStack truncates; v6 released on commit', async (t) => {
    const a = mk();
    const old = a.allocateService(svc({ ipFamilyPolicy: 'PreferDualStack' }));
    const [v4, v6] = old.clusterIPs;
    const down = a.updateService(old, { ...old, ipFamilyPolicy: 'SingleStack' });
    t.same([down.clusterIPs, down.ipFamilies, down.toRelease], [[v4], ['IPv4'], [v6]]);
    t.ok(a.has(v6 ?? ''), 'not released before commit');
    down.commit();
    t.notOk(a.has(v6 ?? ''), 'released after commit');
    t.ok(a.has(v4 ?? ''));
  });

  t.test('PreferDualStack [v4, v6] -> clusterIPs [v4] keeps PreferDualStack: error', async (t) => {
    const a = mk();
    const old = a.allocateService(svc({ ipFamilyPolicy: 'PreferDualStack' }));
    throwsClass(t, () => a.updateService(old, { ...old, clusterIPs: old.clusterIPs.slice(0, 1) }), ServiceInvalidError,
      'Service "foo" is invalid: spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be \'SingleStack\' to release the secondary cluster IP');
  });

  t.test('changing clusterIPs[0]', async (t) => {
    const a = mk();
    const old = a.allocateService(withIP('10.0.0.5'));
    throwsClass(t, () => a.updateService(old, withIP('10.0.0.6')), ServiceInvalidError,
      'Service "foo" is invalid: spec.clusterIPs[0]: Invalid value: []string{"10.0.0.6"}: may not change once set');
    t.notOk(a.has('10.0.0.6'));
  });

  t.test('clusterIPs emptied while clusterIP kept: restored from the old object', async (t) => {
    const a = mk();
    const old = a.allocateService(withIP('10.0.0.5'));
    const up = a.updateService(old, svc({ clusterIP: '10.0.0.5', clusterIPs: [] }));
    t.same([up.clusterIP, up.clusterIPs, up.allocated, up.toRelease], ['10.0.0.5', ['10.0.0.5'], [], []]);
  });

  t.test('an update that omits the IPs keeps them (re-reading a manifest)', async (t) => {
    const a = mk();
    const old = a.allocateService(svc({ ipFamilyPolicy: 'RequireDualStack' }));
    const up = a.updateService(old, svc());
    t.same([up.clusterIPs, up.ipFamilies, up.ipFamilyPolicy, up.allocated, up.toRelease], [old.clusterIPs, old.ipFamilies, 'RequireDualStack', [], []]);
  });

  t.test('PreferDualStack services are not upgraded behind their back', async (t) => {
    const single = new ClusterIPAllocator('10.0.0.0/24');
    const old = single.allocateService(svc({ ipFamilyPolicy: 'PreferDualStack' }));
    t.same(old.ipFamilies, ['IPv4']);
    // The cluster became dual-stack; the same object is written back.
    const a = mk();
    a.allocateSpecific(old.clusterIP);
    const up = a.updateService(old, { ...old });
    t.same([up.ipFamilies, up.clusterIPs, up.allocated], [['IPv4'], [old.clusterIP], []]);
  });

  t.test('ClusterIP -> ExternalName releases on commit; ExternalName -> ClusterIP allocates', async (t) => {
    const a = mk();
    const old = a.allocateService(svc({ ipFamilyPolicy: 'PreferDualStack' }));
    const en = a.updateService(old, { ...old, type: 'ExternalName' });
    t.same([en.clusterIP, en.clusterIPs, en.ipFamilies, en.ipFamilyPolicy], ['', [], [], undefined], 'unchanged fields are dropped');
    t.same(en.toRelease, old.clusterIPs);
    t.ok(old.clusterIPs.every((ip) => a.has(ip)));
    en.commit();
    t.ok(old.clusterIPs.every((ip) => !a.has(ip)));
    const back = a.updateService(en, svc());
    t.same([back.ipFamilyPolicy, back.ipFamilies, back.clusterIPs.length, back.allocated.length], ['SingleStack', ['IPv4'], 1, 1]);
    t.ok(a.has(back.clusterIP));
  });

  t.test('headless stays headless', async (t) => {
    const a = mk();
    const old = a.allocateService(withIP('None', { selector: undefined }));
    t.same([old.ipFamilyPolicy, old.ipFamilies], ['RequireDualStack', ['IPv4', 'IPv6']]);
    const up = a.updateService(old, svc({ selector: undefined }));
    t.same([up.clusterIPs, up.allocated], [['None'], []]);
  });

  t.test('a stored object without dual-stack fields (model Service) is defaulted on read', async (t) => {
    const a = mk();
    a.allocateSpecific('10.0.0.5');
    const before: ServiceIPSpec = { name: 'foo', type: 'ClusterIP', clusterIP: '10.0.0.5', clusterIPs: ['10.0.0.5'] };
    const up = a.updateService(before, { ...svc(), ipFamilyPolicy: 'RequireDualStack' });
    t.same([up.ipFamilies, up.clusterIPs[0], up.allocated.length], [['IPv4', 'IPv6'], '10.0.0.5', 1], 'upgrade detected from the inferred families');
    const same = a.updateService(before, svc());
    t.same([same.ipFamilyPolicy, same.ipFamilies, same.clusterIPs, same.allocated], ['SingleStack', ['IPv4'], ['10.0.0.5'], []]);
  });

  t.test('a before without any IP gets one (defensive)', async (t) => {
    const a = mk();
    const up = a.updateService({ name: 'foo', type: 'ClusterIP' }, svc({ ipFamilyPolicy: 'PreferDualStack' }));
    t.same([up.ipFamilies, up.clusterIPs.length, up.allocated.length], [['IPv4', 'IPv6'], 2, 2]);
    t.ok(up.clusterIPs.every((ip) => a.has(ip)));
  });

  t.test('dry-run update allocates nothing', async (t) => {
    const a = mk();
    const old = a.allocateService(withIP('10.0.0.5'));
    const up = a.updateService(old, { ...withIP('10.0.0.5'), ipFamilyPolicy: 'RequireDualStack' }, { dryRun: true });
    t.same([up.clusterIPs, up.allocated, up.dryRun], [['10.0.0.5', 'fd00::'], [], true]);
    t.equal(a.usage()[1]?.used, 0);
  });
});

t.test('direct API: allocateSpecific / allocateNext / release / has / releaseService', async (t) => {
  const a = new ClusterIPAllocator('10.0.0.0/24', { random: seeded(5) });
  t.equal(a.allocateSpecific('010.000.000.007'), '10.0.0.7');
  throwsClass(t, () => a.allocateSpecific('10.0.0.7'), ErrAllocated);
  throwsClass(t, () => a.allocateSpecific('10.0.0.0'), ErrNotInRange);
  throwsClass(t, () => a.allocateSpecific('fd00::1'), ErrMismatchedNetwork, 'the provided network does not match the current range');
  throwsClass(t, () => a.allocateNext('IPv6'), ErrMismatchedNetwork);
  const n = a.allocateNext();
  t.ok(a.has(n));
  t.notOk(a.has('not-an-ip'));
  t.notOk(a.has('fd00::1'));
  a.release(n);
  t.notOk(a.has(n));
  a.release('fd00::1'); // unconfigured family: no-op
  t.same(a.releaseService({ type: 'ClusterIP', clusterIPs: ['10.0.0.7', 'fd00::1', 'junk'] }), ['10.0.0.7']);
  t.notOk(a.has('10.0.0.7'));
  a.allocateSpecific('10.0.0.8');
  t.same(a.releaseService({ type: 'ClusterIP', clusterIP: '10.0.0.8' }), ['10.0.0.8'], 'singular clusterIP');
  t.same(a.releaseService({ type: 'ClusterIP', clusterIPs: ['None'] }), []);
  t.same(a.releaseService({ type: 'ExternalName', clusterIPs: ['10.0.0.9'] }), []);
  t.equal(a.rangeFor('IPv4')?.cidr.toString(), '10.0.0.0/24');
  t.equal(a.rangeFor('IPv6'), undefined);
});

t.test('snapshot / restore (JSON round trip)', async (t) => {
  const a = new ClusterIPAllocator('10.0.0.0/24,fd00::/120', { random: seeded(6) });
  a.allocateSpecific('10.0.0.1');
  a.allocateSpecific('10.0.0.9');
  a.allocateSpecific('fd00::ff');
  const snap = JSON.parse(JSON.stringify(a.snapshot()));
  t.same(snap, {
    ranges: [
      { family: 'IPv4', range: '10.0.0.0/24', data: Buffer.from([0x01, 0x01]).toString('base64') },
      { family: 'IPv6', range: 'fd00::/120', data: Buffer.from([0x40, ...new Array<number>(31).fill(0)]).toString('base64') },
    ],
  });
  const b = ClusterIPAllocator.fromSnapshot(snap);
  t.same(b.families, ['IPv4', 'IPv6']);
  t.ok(b.has('10.0.0.1') && b.has('10.0.0.9') && b.has('fd00::ff'));
  t.same(b.usage().map((u) => u.used), [2, 1]);

  const c = new ClusterIPAllocator('10.0.0.0/24,fd00::/120');
  c.allocateSpecific('10.0.0.77');
  c.restore({ ranges: [snap.ranges[0]] });
  t.ok(c.has('10.0.0.9'));
  t.notOk(c.has('10.0.0.77'), 'restore replaces the state');
  t.equal(c.usage()[1]?.used, 0, 'a family missing from the snapshot becomes empty');

  throwsClass(t, () => c.restore({ ranges: [{ family: 'IPv4', range: '10.0.1.0/24', data: '' }] }), ErrMismatchedNetwork);
  t.ok(c.has('10.0.0.9'), 'nothing changed on a failed restore');
  const v4only = new ClusterIPAllocator('10.0.0.0/24');
  throwsClass(t, () => v4only.restore(snap), ErrMismatchedNetwork, undefined, 'unconfigured family in the snapshot');
  t.same(new ClusterIPAllocator('10.0.0.0/24').snapshot(), { ranges: [{ family: 'IPv4', range: '10.0.0.0/24', data: '' }] });
});
