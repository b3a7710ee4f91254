/**
 * The userspace proxy in network namespaces (issue #11 §3), from both sources: the embedded
 * zones/ folder (every check) and the Kubernetes API through the fake API server (every
 * check but the pre-start and --cleanup ones). Checks and topology: test/proxy/_netns.ts.
 */
import t from 'tap';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { apiSource, canRun, modeSuite, zonesSource } from './_netns.js';

t.setTimeout(240_000);

if (canRun(t)) {
  await t.test('userspace proxy, zones source', { timeout: 120_000 }, (t) => modeSuite(t, 'userspace', async (_topo, view) => zonesSource(t, view), { full: true }));
  await t.test('userspace proxy, Kubernetes API source', { timeout: 120_000 }, async (t) => {
    const fake = await new FakeApiServer().start();
    t.teardown(() => fake.close());
    await modeSuite(t, 'userspace', (topo, view) => apiSource(t, topo, fake, view), { full: false });
  });
}
