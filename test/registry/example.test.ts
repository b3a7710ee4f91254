/**
 * The shipped example (zones/cluster.local, with clusterdns.yaml as `npm start` runs it)
 * through the registry: nothing refused, and
 * the EndpointSlices the controller generates from its Pods serve what the slices
 * written in the files served (same addresses, readiness, hostnames, ports). The written
 * slices of selector Services stand for what the controller writes, so they carry its
 * label and are replaced, as on a cluster (an unlabelled slice would be served beside
 * the generated ones: test/registry/custom-slices.test.ts).
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { FileSource } from '../../src/cluster/files.js';
import type { EndpointSlice } from '../../src/cluster/model.js';
import { loadConfigFile } from '../../src/config.js';
import { EXAMPLE_CONFIG, ROOT } from '../helpers/cli.js';
import { ZONE, harness, tempDir } from './_harness.js';
import { endpointList } from '../../src/cluster/packed.js';
import { CONTROLLER_NAME, MANAGED_BY_LABEL } from '../../src/registry/endpoints.js';

/**
 * What DNS reads of a service's endpoints, order-free. Published = ready, or any with
 * publishNotReadyAddresses (the controller marks those ready; DNS honours the field
 * for hand-written slices).
 */
function served(slices: readonly EndpointSlice[], publishNotReady: boolean): string[] {
  const rows = slices
    .flatMap((s) => endpointList(s.endpoints).map((e) => `${s.addressType} ${e.addresses.join(',')} published=${e.conditions.ready || publishNotReady} host=${e.hostname ?? ''} pod=${e.podName ?? ''} ports=${s.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`).join(',')}`))
    .sort();
  return [...new Set(rows)];
}

t.test('the shipped example: same services and endpoints with and without the registry', async (t) => {
  const root = tempDir(t);
  cpSync(join(ROOT, 'zones'), join(root, 'zones'), { recursive: true });
  const plain = new FileSource({ dir: join(root, 'zones'), watch: false });
  t.teardown(() => plain.stop());
  await plain.start();
  const config = loadConfigFile(EXAMPLE_CONFIG);
  const h = await harness(t, {}, { zones: join(root, 'zones'), config: { serviceCIDRs: config.serviceCIDRs, nodePortRange: config.nodePortRange } });
  const before = plain.storeFor(ZONE);
  const after = h.store();

  const z = h.registry.zone(ZONE);
  t.same(
    z.anomalies().filter((a) => a.kind !== 'replaced-slice'),
    [],
    'nothing refused, no address refused, no state problem',
  );
  t.same([...after.services.keys()].sort(), [...before.services.keys()].sort());
  for (const [key, svc] of before.services) {
    const now = after.services.get(key);
    t.same(now?.clusterIPs, svc.clusterIPs, `${key}: same cluster IPs`);
    t.equal(now?.headless, svc.headless);
    t.same(served(after.endpointsOf(key), svc.publishNotReadyAddresses), served(before.endpointsOf(key), svc.publishNotReadyAddresses), `${key}: same endpoints`);
  }
  // Without the example's configuration (single-stack default), the dual-stack cart is refused.
  const v4 = await harness(t, {}, { zones: join(root, 'zones'), stateDir: join(root, 'state-v4') });
  t.equal(v4.service('shop/cart'), undefined);
  t.equal(
    v4.registry.zone(ZONE).anomalies().find((a) => a.kind === 'refused-service')?.message,
    'Service "cart" is invalid: [spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services, spec.ipFamilies[1]: Invalid value: "IPv6": not configured on this cluster]',
  );
  // The written slices of selector Services are all the controller's (labelled), so all
  // are regenerated: none is served beside the generated ones.
  const written = [...before.slices.values()].filter((s) => before.services.get(`${s.namespace}/${s.serviceName}`)?.selector !== undefined);
  const names = written.map((s) => s.name).sort();
  t.same(names, ['cart-h7d2k', 'cart-m4s8t', 'frontend-x9k4d', 'kube-dns-7xk2p', 'web-5zq8m', 'zk-hs-q8w2c'], 'the written slices of selector Services');
  t.same(written.filter((s) => s.labels[MANAGED_BY_LABEL] !== CONTROLLER_NAME).map((s) => s.name), [], `every one labelled managed-by ${CONTROLLER_NAME}`);
  t.same(z.anomalies().filter((a) => a.kind === 'replaced-slice').map((a) => a.name).sort(), names, 'every one regenerated (reported replaced)');
  for (const s of written) t.equal(after.slices.get(`${s.namespace}/${s.name}`), undefined, `${s.namespace}/${s.name}: replaced`);
});
