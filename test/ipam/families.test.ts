/**
 * Cases I of clusterip-allocator-cases.md: upstream `TestCreateInitIPFields`
 * (pkg/registry/core/service/storage/storage_test.go) as a full matrix, the derived
 * rows with their exact messages, ExternalName, and the update rules (§7, §8.2).
 */
import t from 'tap';
import type { IPFamily } from '../../src/cluster/model.js';
import { ClusterIPAllocator } from '../../src/ipam/allocator.js';
import {
  type ServiceIPSpec,
  defaultStoredServiceIPs,
  ipSpecFromService,
  planServiceIPs,
  validateClusterIPsRelatedFields,
  validateServiceIPFields,
  validateServiceIPUpdate,
} from '../../src/ipam/families.js';
import { ServiceInvalidError, formatFieldError } from '../../src/ipam/field.js';
import { IP } from '../../src/ipam/ip.js';
import { throwsClass } from './fixtures/helpers.js';

const V4 = '10.0.0.0/16';
const V6 = '2000::/108';
const CLUSTERS: Record<string, string[]> = {
  'singlestack:v4': [V4],
  'singlestack:v6': [V6],
  'dualstack:v4v6': [V4, V6],
  'dualstack:v6v4': [V6, V4],
};

const POLICIES = [undefined, 'SingleStack', 'PreferDualStack', 'RequireDualStack'] as const;
const FAMILIES: Record<string, string[] | undefined> = { unset: undefined, v4: ['IPv4'], v6: ['IPv6'], v4v6: ['IPv4', 'IPv6'], v6v4: ['IPv6', 'IPv4'] };
const FAMILY_KEYS = ['unset', 'v4', 'v6', 'v4v6', 'v6v4'];
const IPS: Record<string, string[]> = { unset: [], v4: ['10.0.0.1'], v6: ['2000::1'], v4v6: ['10.0.0.1', '2000::1'], v6v4: ['2000::1', '10.0.0.1'] };

/**
 * Expectations, 20 per row: policies unset, SingleStack, PreferDualStack,
 * RequireDualStack (groups of 5), each with families unset, v4, v6, v4v6, v6v4.
 * `E` = create fails; else `<S|P|R>:<families>` (4 = IPv4, 6 = IPv6, in order).
 */
const E5 = 'E E E E E';
const MATRIX: Record<string, Record<string, string>> = {
  'singlestack:v4': {
    'ClusterIPs:unset': `S:4 S:4 E E E | S:4 S:4 E E E | P:4 P:4 E E E | ${E5}`,
    'ClusterIPs:v4': `S:4 S:4 E E E | S:4 S:4 E E E | P:4 P:4 E E E | ${E5}`,
    'ClusterIPs:v4v6': `${E5} | ${E5} | ${E5} | ${E5}`,
    'ClusterIPs:v6v4': `${E5} | ${E5} | ${E5} | ${E5}`,
    Headless: `S:4 S:4 E E E | S:4 S:4 E E E | P:4 P:4 E E E | ${E5}`,
    HeadlessSelectorless: 'R:46 R:46 R:64 R:46 R:64 | S:4 S:4 S:6 E E | P:46 P:46 P:64 P:46 P:64 | R:46 R:46 R:64 R:46 R:64',
  },
  'singlestack:v6': {
    'ClusterIPs:unset': `S:6 E S:6 E E | S:6 E S:6 E E | P:6 E P:6 E E | ${E5}`,
    'ClusterIPs:v6': `S:6 E S:6 E E | S:6 E S:6 E E | P:6 E P:6 E E | ${E5}`,
    'ClusterIPs:v4v6': `${E5} | ${E5} | ${E5} | ${E5}`,
    'ClusterIPs:v6v4': `${E5} | ${E5} | ${E5} | ${E5}`,
    Headless: `S:6 E S:6 E E | S:6 E S:6 E E | P:6 E P:6 E E | ${E5}`,
    HeadlessSelectorless: 'R:64 R:46 R:64 R:46 R:64 | S:6 S:4 S:6 E E | P:64 P:46 P:64 P:46 P:64 | R:64 R:46 R:64 R:46 R:64',
  },
  'dualstack:v4v6': {
    'ClusterIPs:unset': 'S:4 S:4 S:6 E E | S:4 S:4 S:6 E E | P:46 P:46 P:64 P:46 P:64 | R:46 R:46 R:64 R:46 R:64',
    'ClusterIPs:v4': 'S:4 S:4 E E E | S:4 S:4 E E E | P:46 P:46 E P:46 E | R:46 R:46 E R:46 E',
    'ClusterIPs:v6': 'S:6 E S:6 E E | S:6 E S:6 E E | P:64 E P:64 E P:64 | R:64 E R:64 E R:64',
    'ClusterIPs:v4v6': `${E5} | ${E5} | P:46 P:46 E P:46 E | R:46 R:46 E R:46 E`,
    'ClusterIPs:v6v4': `${E5} | ${E5} | P:64 E P:64 E P:64 | R:64 E R:64 E R:64`,
    Headless: 'S:4 S:4 S:6 E E | S:4 S:4 S:6 E E | P:46 P:46 P:64 P:46 P:64 | R:46 R:46 R:64 R:46 R:64',
    HeadlessSelectorless: 'R:46 R:46 R:64 R:46 R:64 | S:4 S:4 S:6 E E | P:46 P:46 P:64 P:46 P:64 | R:46 R:46 R:64 R:46 R:64',
  },
  // ClusterIPs:unset and :v4 transcribed from upstream; the other rows of this
  // cluster were not read and are the v4v6 rows with IPv6 as the default family.
  'dualstack:v6v4': {
    'ClusterIPs:unset': 'S:6 S:4 S:6 E E | S:6 S:4 S:6 E E | P:64 P:46 P:64 P:46 P:64 | R:64 R:46 R:64 R:46 R:64',
    'ClusterIPs:v4': 'S:4 S:4 E E E | S:4 S:4 E E E | P:46 P:46 E P:46 E | R:46 R:46 E R:46 E',
    'ClusterIPs:v6': 'S:6 E S:6 E E | S:6 E S:6 E E | P:64 E P:64 E P:64 | R:64 E R:64 E R:64',
    'ClusterIPs:v4v6': `${E5} | ${E5} | P:46 P:46 E P:46 E | R:46 R:46 E R:46 E`,
    'ClusterIPs:v6v4': `${E5} | ${E5} | P:64 E P:64 E P:64 | R:64 E R:64 E R:64`,
    Headless: 'S:6 S:4 S:6 E E | S:6 S:4 S:6 E E | P:64 P:46 P:64 P:46 P:64 | R:64 R:46 R:64 R:46 R:64',
    HeadlessSelectorless: 'R:64 R:46 R:64 R:46 R:64 | S:6 S:4 S:6 E E | P:64 P:46 P:64 P:46 P:64 | R:64 R:46 R:64 R:46 R:64',
  },
};

const POLICY_CODE: Record<string, string> = { S: 'SingleStack', P: 'PreferDualStack', R: 'RequireDualStack' };
const FAM_CODE: Record<string, IPFamily> = { '4': 'IPv4', '6': 'IPv6' };

/** `svctest.MakeService("foo")`: type ClusterIP with a selector. */
function makeService(row: string, policy: string | undefined, families: string[] | undefined): ServiceIPSpec {
  const base: ServiceIPSpec = { name: 'foo', namespace: 'default', type: 'ClusterIP', selector: { k: 'v' } };
  let ips: string[] = [];
  let selector: Record<string, string> | undefined = { k: 'v' };
  if (row.startsWith('ClusterIPs:')) ips = IPS[row.slice('ClusterIPs:'.length)] ?? [];
  if (row === 'Headless' || row === 'HeadlessSelectorless') ips = ['None'];
  if (row === 'HeadlessSelectorless') selector = undefined;
  return {
    ...base,
    clusterIP: ips[0] ?? '',
    clusterIPs: ips,
    ...(selector === undefined ? { selector: undefined } : { selector }),
    ...(policy === undefined ? {} : { ipFamilyPolicy: policy }),
    ...(families === undefined ? {} : { ipFamilies: families }),
  };
}

t.test('I TestCreateInitIPFields matrix', async (t) => {
  let count = 0;
  for (const [cluster, cidrs] of Object.entries(CLUSTERS)) {
    for (const [row, spec] of Object.entries(MATRIX[cluster] ?? {})) {
      const cells = spec.replaceAll('|', ' ').split(/\s+/).filter(Boolean);
      t.equal(cells.length, 20, `${cluster} ${row} has 20 cells`);
      POLICIES.forEach((policy, pi) => {
        FAMILY_KEYS.forEach((fk, fi) => {
          const want = cells[pi * 5 + fi] ?? '?';
          const name = `${cluster} ${row}_Policy:${policy ?? 'unset'}_Families:${fk}`;
          const alloc = new ClusterIPAllocator(cidrs);
          const svc = makeService(row, policy, FAMILIES[fk]);
          count++;
          if (want === 'E') {
            throwsClass(t, () => alloc.allocateService(svc), ServiceInvalidError, undefined, name);
            t.same(alloc.usage().map((u) => u.used), cidrs.map(() => 0), `${name}: nothing stays allocated`);
            return;
          }
          const [p, f] = want.split(':');
          const wantFamilies = [...(f ?? '')].map((c) => FAM_CODE[c]);
          let got;
          try {
            got = alloc.allocateService(svc);
          } catch (err) {
            t.fail(`${name}: unexpected ${(err as Error).message}`);
            return;
          }
          t.equal(got.ipFamilyPolicy, POLICY_CODE[p ?? ''], `${name}: policy`);
          t.same(got.ipFamilies, wantFamilies, `${name}: families`);
          if (row.startsWith('Headless')) {
            t.same([got.clusterIP, got.clusterIPs], ['None', ['None']], `${name}: headless`);
            t.same(got.allocated, [], `${name}: nothing allocated`);
          } else {
            t.equal(got.clusterIPs.length, wantFamilies.length, `${name}: one IP per family`);
            t.same(got.clusterIPs.map((ip) => IP.parse(ip)?.family), wantFamilies, `${name}: IP families in order`);
            t.equal(got.clusterIP, got.clusterIPs[0], `${name}: clusterIP == clusterIPs[0]`);
            const requested = IPS[row.slice('ClusterIPs:'.length)] ?? [];
            requested.forEach((ip, i) => t.equal(got.clusterIPs[i], ip, `${name}: requested IP kept`));
          }
        });
      });
    }
  }
  t.equal(count, 2 * 6 * 20 + 2 * 7 * 20, 'every upstream case: 6 rows per single-stack cluster, 7 per dual-stack one');
});

function planErr(spec: ServiceIPSpec, families: IPFamily[]): string[] {
  try {
    planServiceIPs(spec, families);
  } catch (err) {
    if (err instanceof ServiceInvalidError) return err.fieldErrors.map(formatFieldError);
    throw err;
  }
  return [];
}

t.test('I derived rows with exact messages', async (t) => {
  const svc = (o: Partial<ServiceIPSpec>): ServiceIPSpec => ({ name: 'foo', type: 'ClusterIP', selector: { a: 'b' }, ...o });
  const v4: IPFamily[] = ['IPv4'];
  const dual: IPFamily[] = ['IPv4', 'IPv6'];

  t.same(planErr(svc({ clusterIP: 'None', clusterIPs: ['None'], ipFamilies: ['IPv6'] }), v4), [
    'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster',
  ]);
  t.same(planErr(svc({ clusterIP: '2000::1', clusterIPs: ['2000::1'] }), v4), [
    'spec.clusterIPs[0]: Invalid value: []string{"2000::1"}: IPv6 is not configured on this cluster',
  ]);
  t.same(planErr(svc({ ipFamilyPolicy: 'RequireDualStack' }), v4), [
    'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services',
  ]);
  t.same(planErr(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', '2000::1'] }), dual), [
    "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
  ]);
  t.same(planErr(svc({ ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'SingleStack' }), dual), [
    "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
  ]);
  t.same(planErr(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', '10.0.0.2'], ipFamilyPolicy: 'RequireDualStack' }), dual), [
    'spec.clusterIPs: Invalid value: []string{"10.0.0.1", "10.0.0.2"}: may specify no more than one IP for each IP family',
  ]);
  t.same(planErr(svc({ ipFamilies: ['IPv4', 'IPv4'] }), dual), ['spec.ipFamilies[1]: Duplicate value: "IPv4"']);
  t.same(planErr(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1'], ipFamilies: ['IPv6'] }), dual), [
    'spec.clusterIPs[0]: Invalid value: "10.0.0.1": expected an IPv6 value as indicated by `ipFamilies[0]`',
  ]);
  t.same(planErr(svc({ clusterIP: '2000::1', clusterIPs: ['2000::1'], ipFamilies: ['IPv4'] }), dual), [
    'spec.clusterIPs[0]: Invalid value: "2000::1": expected an IPv4 value as indicated by `ipFamilies[0]`',
  ]);
  t.same(planErr(svc({ ipFamilies: ['IPv5'] }), dual), [
    'spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
  ]);
  t.same(planErr(svc({ ipFamilyPolicy: 'Sometimes' }), dual), [
    'spec.ipFamilyPolicy: Unsupported value: "Sometimes": supported values: "PreferDualStack", "RequireDualStack", "SingleStack"',
  ]);

  const plan = (s: ServiceIPSpec, f: IPFamily[]) => {
    const p = planServiceIPs(s, f);
    return [p.ipFamilyPolicy, p.ipFamilies, p.clusterIPs];
  };
  t.same(plan(svc({ clusterIP: 'None', clusterIPs: ['None'] }), v4), ['SingleStack', ['IPv4'], ['None']], 'headless+selector');
  t.same(plan(svc({ clusterIP: 'None', clusterIPs: ['None'], ipFamilyPolicy: 'PreferDualStack' }), v4), ['PreferDualStack', ['IPv4'], ['None']]);
  t.same(plan(svc({ clusterIP: 'None', clusterIPs: ['None'], selector: undefined, ipFamilies: ['IPv6'] }), v4), ['RequireDualStack', ['IPv6', 'IPv4'], ['None']], 'no configured-family check on the headless selectorless path');
  t.same(plan(svc({ clusterIP: 'None', clusterIPs: ['None'], selector: {}, ipFamilyPolicy: 'SingleStack' }), v4), ['SingleStack', ['IPv4'], ['None']], 'empty selector counts as selectorless');
  t.same(plan(svc({}), dual), ['SingleStack', ['IPv4'], []]);
  t.same(plan(svc({ ipFamilyPolicy: 'PreferDualStack' }), dual), ['PreferDualStack', ['IPv4', 'IPv6'], []]);
  t.same(plan(svc({ ipFamilyPolicy: 'RequireDualStack' }), dual), ['RequireDualStack', ['IPv4', 'IPv6'], []]);
  t.same(plan(svc({ ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6'] }), dual), ['PreferDualStack', ['IPv6', 'IPv4'], []]);
  t.same(plan(svc({ ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv6'] }), dual), ['SingleStack', ['IPv6'], []]);
  t.same(plan(svc({ clusterIP: '2000::1', clusterIPs: ['2000::1'] }), dual), ['SingleStack', ['IPv6'], ['2000::1']]);
  t.same(plan(svc({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', '2000::1'], ipFamilyPolicy: 'PreferDualStack' }), dual), ['PreferDualStack', ['IPv4', 'IPv6'], ['10.0.0.1', '2000::1']]);
  t.same(plan(svc({ clusterIP: '2000::1', clusterIPs: ['2000::1', '10.0.0.1'], ipFamilyPolicy: 'RequireDualStack' }), dual), ['RequireDualStack', ['IPv6', 'IPv4'], ['2000::1', '10.0.0.1']]);
  t.same(plan(svc({}), ['IPv6', 'IPv4']), ['SingleStack', ['IPv6'], []], 'default = first flag CIDR');
  t.same(plan(svc({ clusterIP: '2001:DB8::0001', clusterIPs: ['2001:DB8::0001'] }), ['IPv6']), ['SingleStack', ['IPv6'], ['2001:db8::1']], 'requested IPs are canonicalised');
  t.same(plan(svc({ clusterIP: '10.0.0.7' }), v4), ['SingleStack', ['IPv4'], ['10.0.0.7']], 'normalizeClusterIPs: clusterIP alone fills clusterIPs');

  // The full message of the 422.
  const err = throwsClass(t, () => planServiceIPs(svc({ ipFamilies: ['IPv4', 'IPv4'] }), dual), ServiceInvalidError);
  t.equal(err?.message, 'Service "foo" is invalid: spec.ipFamilies[1]: Duplicate value: "IPv4"');
  t.equal(err?.status, 422);
  t.equal(err?.code, 'ERR_IPAM_INVALID');
});

t.test('I ExternalName (TestCreateIgnoresIPsForExternalName)', async (t) => {
  for (const cidrs of Object.values(CLUSTERS)) {
    const alloc = new ClusterIPAllocator(cidrs);
    const got = alloc.allocateService({ name: 'foo', type: 'ExternalName' });
    t.same([got.ipFamilyPolicy, got.ipFamilies, got.clusterIP, got.clusterIPs], [undefined, [], '', []]);
    for (const [extra, field] of [
      [{ ipFamilyPolicy: 'SingleStack' }, 'spec.ipFamilyPolicy'],
      [{ ipFamilies: ['IPv4'] }, 'spec.ipFamilies'],
      [{ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1'] }, 'spec.clusterIPs'],
    ] as const) {
      const err = throwsClass(t, () => alloc.allocateService({ name: 'foo', type: 'ExternalName', ...extra }), ServiceInvalidError);
      t.same(err?.fieldErrors.map(formatFieldError), [`${field}: Forbidden: may not be set for ExternalName services`]);
    }
    t.same(alloc.usage().map((u) => u.used), cidrs.map(() => 0));
  }
});

t.test('I TestCreateInitClusterIPsFromClusterIP', async (t) => {
  for (const [cluster, cidrs] of Object.entries(CLUSTERS)) {
    const ip = cluster === 'singlestack:v6' ? '2000::1' : '10.0.0.1';
    for (const clusterIP of ['', ip]) {
      const alloc = new ClusterIPAllocator(cidrs);
      const got = alloc.allocateService({ name: 'foo', type: 'ClusterIP', selector: { a: 'b' }, clusterIP });
      t.not(got.clusterIP, '', `${cluster} ${clusterIP || 'unset'}: clusterIP set`);
      t.equal(got.clusterIPs[0], got.clusterIP);
      if (clusterIP !== '') t.equal(got.clusterIP, clusterIP);
    }
  }
});

t.test('§8.1 validateClusterIPsRelatedFields', async (t) => {
  const v = (o: Partial<ServiceIPSpec>) => validateClusterIPsRelatedFields({ type: 'ClusterIP', ...o }).map(formatFieldError);
  t.same(v({ clusterIP: '10.0.0.1', clusterIPs: [] }), ['spec.clusterIPs: Required value']);
  t.same(v({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.2'] }), ['spec.clusterIPs: Invalid value: []string{"10.0.0.2"}: first value must match `clusterIP`']);
  t.same(v({ clusterIP: '', clusterIPs: ['10.0.0.1'] }), ['spec.clusterIPs: Invalid value: []string{"10.0.0.1"}: must be empty when `clusterIP` is not specified']);
  t.same(v({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', 'None'] }), [
    'spec.clusterIPs[1]: Invalid value: "None": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
  ]);
  t.same(v({ clusterIP: 'None', clusterIPs: ['None', '10.0.0.1'] }), [
    'spec.clusterIPs: Invalid value: []string{"None", "10.0.0.1"}: \'None\' must be the first and only value',
  ]);
  t.same(v({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', '2000::1', '10.0.0.2'] }), [
    'spec.clusterIPs: Invalid value: []string{"10.0.0.1", "2000::1", "10.0.0.2"}: may only hold up to 2 values',
    'spec.clusterIPs: Invalid value: []string{"10.0.0.1", "2000::1", "10.0.0.2"}: may specify no more than one IP for each IP family',
  ]);
  t.same(v({ clusterIP: 'x', clusterIPs: ['x', 'y'] }), [
    'spec.clusterIPs[0]: Invalid value: "x": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
    'spec.clusterIPs[1]: Invalid value: "y": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)',
  ], 'stops before the dual-stack checks when an IP is invalid');
  t.same(v({ clusterIP: 'None', clusterIPs: ['None'], ipFamilies: ['IPv6'] }), [], 'headless: no IP/family match check');
  t.same(v({ type: 'ExternalName', clusterIP: 'junk', ipFamilies: ['x'] }), [], 'ExternalName is skipped');

  const typed = (o: Partial<ServiceIPSpec>) => validateServiceIPFields({ type: 'ClusterIP', ...o }).map(formatFieldError);
  t.same(typed({ type: 'NodePort', clusterIP: 'None' }), ['spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for NodePort services']);
  t.same(typed({ type: 'LoadBalancer', clusterIP: 'None', clusterIPs: ['None'] }), ['spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for LoadBalancer services']);
  t.same(typed({ type: 'ClusterIP', clusterIP: 'None' }), [], 'headless ClusterIP is fine');
});

t.test('§8.2 validateServiceIPUpdate', async (t) => {
  const old: ServiceIPSpec = { type: 'ClusterIP', clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', '2000::1'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'PreferDualStack' };
  const u = (n: Partial<ServiceIPSpec>, o: ServiceIPSpec = old) => validateServiceIPUpdate(o, { ...o, ...n }).map(formatFieldError);
  t.same(u({}), []);
  t.same(u({ clusterIP: '10.0.0.2', clusterIPs: ['10.0.0.2', '2000::1'] }), [
    'spec.clusterIPs[0]: Invalid value: []string{"10.0.0.2", "2000::1"}: may not change once set',
  ]);
  t.same(u({ clusterIPs: [], clusterIP: '' }), ['spec.clusterIPs[0]: Invalid value: []string{}: primary clusterIP can not be unset']);
  t.same(u({ clusterIPs: ['10.0.0.1'] }), [
    "spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be set to 'SingleStack' when releasing the secondary clusterIP",
  ]);
  t.same(u({ clusterIPs: ['10.0.0.1'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' }), []);
  t.same(u({ ipFamilies: ['IPv4'] }), [
    "spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be set to 'SingleStack' when releasing the secondary ipFamily",
  ]);
  t.same(u({ ipFamilies: ['IPv6', 'IPv4'] }), [
    'spec.ipFamilies[0]: Invalid value: []string{"IPv6", "IPv4"}: may not change once set',
    'spec.ipFamilies[0]: Invalid value: []string{"IPv6", "IPv4"}: may not change once set',
  ]);
  const single: ServiceIPSpec = { type: 'ClusterIP', clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1'], ipFamilies: ['IPv4'] };
  t.same(u({ clusterIP: '10.0.0.9', clusterIPs: ['10.0.0.9', '2000::1'] }, single), [
    'spec.clusterIPs[0]: Invalid value: []string{"10.0.0.9", "2000::1"}: may not change once set',
  ]);
  t.same(u({ clusterIPs: ['10.0.0.1', '2000::1'], ipFamilies: ['IPv4', 'IPv6'] }, single), [], 'upgrade');
  t.same(u({ type: 'ExternalName', clusterIP: '', clusterIPs: [] }), [], 'ExternalName is skipped');
  const headless: ServiceIPSpec = { type: 'ClusterIP', clusterIP: 'None', clusterIPs: ['None'], ipFamilies: ['IPv4'] };
  t.same(u({ ipFamilies: ['IPv6'] }, headless), [], 'headless may change families');
  t.same(u({ clusterIPs: ['10.0.0.1'], clusterIP: '10.0.0.1' }, headless), [
    'spec.clusterIPs[0]: Invalid value: []string{"10.0.0.1"}: may not change once set',
  ]);
  t.same(u({ clusterIP: '10.0.0.1', clusterIPs: ['::ffff:10.0.0.1', '2000:0::1'] }), [], 'compared as canonical IPs');
});

t.test('ipSpecFromService adapts the slim model', async (t) => {
  const base = { namespace: 'ns', name: 'a', ports: [], publishNotReadyAddresses: false, labels: {} } as const;
  t.same(ipSpecFromService({ ...base, type: 'ClusterIP', clusterIPs: [], headless: true }), {
    name: 'a', namespace: 'ns', type: 'ClusterIP', clusterIP: 'None', clusterIPs: ['None'],
  });
  t.same(ipSpecFromService({ ...base, type: 'ClusterIP', clusterIPs: ['10.0.0.5'], headless: false, clusterIPsRequested: true, ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv4'], selector: { a: 'b' } }), {
    name: 'a', namespace: 'ns', type: 'ClusterIP', clusterIP: '10.0.0.5', clusterIPs: ['10.0.0.5'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'PreferDualStack', selector: { a: 'b' },
  });
  t.same(ipSpecFromService({ ...base, type: 'ClusterIP', clusterIPs: ['10.0.0.5'], headless: false, clusterIPsRequested: false }).clusterIPs, []);
  t.same(ipSpecFromService({ ...base, type: 'ClusterIP', clusterIPs: ['10.0.0.5'], headless: false, clusterIPsRequested: false }, { stored: true }).clusterIPs, ['10.0.0.5'], 'stored: allocated IPs count');
});

t.test('defaultStoredServiceIPs (defaultOnReadIPFamilies)', async (t) => {
  const d = (s: Partial<ServiceIPSpec>, f: IPFamily[]) => {
    const out = defaultStoredServiceIPs({ type: 'ClusterIP', ...s }, f);
    return [out.ipFamilyPolicy, out.ipFamilies, out.clusterIPs];
  };
  t.same(d({ clusterIP: '10.0.0.1' }, ['IPv4']), ['SingleStack', ['IPv4'], ['10.0.0.1']], 'clusterIP only');
  t.same(d({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', '2000::1'] }, ['IPv4', 'IPv6']), ['RequireDualStack', ['IPv4', 'IPv6'], ['10.0.0.1', '2000::1']]);
  t.same(d({ clusterIP: '2000::1', clusterIPs: ['2000::1'] }, ['IPv4', 'IPv6']), ['SingleStack', ['IPv6'], ['2000::1']]);
  t.same(d({ clusterIP: 'None', clusterIPs: ['None'] }, ['IPv6']), ['PreferDualStack', ['IPv6', 'IPv4'], ['None']], 'headless selectorless');
  t.same(d({ clusterIP: 'None', clusterIPs: ['None'], selector: { a: 'b' } }, ['IPv4']), ['SingleStack', ['IPv4'], ['None']]);
  t.same(d({ clusterIP: 'None', clusterIPs: ['None'], selector: { a: 'b' } }, ['IPv4', 'IPv6']), ['PreferDualStack', ['IPv4', 'IPv6'], ['None']]);
  t.same(d({}, ['IPv4']), [undefined, [], []], 'nothing to infer from');
  const set: ServiceIPSpec = { type: 'ClusterIP', clusterIPs: ['10.0.0.1'], ipFamilyPolicy: 'SingleStack' };
  t.equal(defaultStoredServiceIPs(set, ['IPv4']), set, 'policy set: untouched');
  const en: ServiceIPSpec = { type: 'ExternalName' };
  t.equal(defaultStoredServiceIPs(en, ['IPv4']), en, 'ExternalName: untouched');
});
