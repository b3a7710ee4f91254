/**
 * Service names that start with a digit (KEP-5311, GA in Kubernetes 1.37: Service names
 * are DNS-1123 labels) through the zones/ source as the server runs it (FileSource with
 * the embedded registry: allocator and endpoints controller), answered by the DNS
 * handler: A, SRV and the PTR of the ClusterIP and of the endpoint. Names a current
 * apiserver still refuses are reported with the file and the reason, and the rest serve.
 */
import t from 'tap';
import { DnsHandler } from '../../src/server/handler.js';
import { Resolver } from '../../src/zone/resolver.js';
import { ClusterZone } from '../../src/zone/zone.js';
import type { ZoneOptions } from '../../src/zone/build.js';
import { decode, makeQuery } from '../helpers/dns.js';
import { ZONE, docs, harness, pod, svc } from '../registry/_harness.js';

const OPTS: ZoneOptions = { ttl: 5, pods: 'insecure', ignoreEmptyService: false, endpointPodNames: false, noEndpoints: false, namespaces: undefined };
const Z = ZONE;

function dns(h: Awaited<ReturnType<typeof harness>>): (q: string, type?: string) => { rcode: string; answer: string[]; extra: string[] } {
  const zone = new ClusterZone(Z, h.store(), OPTS);
  const r = new Resolver();
  r.setZones([zone]);
  const handler = new DnsHandler({ resolver: r });
  return (q, type = 'A') => {
    const d = decode(handler.handle(makeQuery(q, type), 'udp') as Buffer);
    return { rcode: d.rcode, answer: [...d.answer].sort(), extra: [...d.extra].sort() };
  };
}

t.test('zones/: a Service named 1web is allocated, gets endpoints and answers A, SRV and PTR', async (t) => {
  const h = await harness(t, {
    'web.yaml': docs(
      svc('1web', { clusterIP: '10.96.0.77', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] }, 'web'),
      // No clusterIP asked: the allocator gives one, as to any Service.
      svc('2db', { ports: [{ name: 'pg', port: 5432 }] }, 'web'),
      pod('web-a', { namespace: 'web', labels: { app: 'web' }, ips: ['10.244.0.5'] }),
    ),
  });
  t.same(
    h.registry.zone(Z).anomalies().filter((a) => a.kind !== 'replaced-slice'),
    [],
    'nothing refused',
  );
  t.same(h.ips('web/1web'), ['10.96.0.77']);
  const allocated = h.ips('web/2db');
  t.equal(allocated?.length, 1, '2db got an address from the allocator');
  t.same(
    h.slices('web/1web').map((s) => s.name),
    ['1web-ipv4-0'],
    'the endpoints controller made its slice (named after the Service)',
  );

  const ask = dns(h);
  t.same(ask(`1web.web.svc.${Z}`).answer, [`1web.web.svc.${Z}. 5 IN A 10.96.0.77`]);
  t.same(ask(`2db.web.svc.${Z}`).answer, [`2db.web.svc.${Z}. 5 IN A ${allocated?.[0]}`]);
  const srv = ask(`_http._tcp.1web.web.svc.${Z}`, 'SRV');
  t.same(srv.answer, [`_http._tcp.1web.web.svc.${Z}. 5 IN SRV 0 100 80 1web.web.svc.${Z}.`]);
  t.same(srv.extra, [`1web.web.svc.${Z}. 5 IN A 10.96.0.77`]);
  t.same(ask('77.0.96.10.in-addr.arpa', 'PTR').answer, [`77.0.96.10.in-addr.arpa. 5 IN PTR 1web.web.svc.${Z}.`], 'ClusterIP PTR');
  t.same(ask('5.0.244.10.in-addr.arpa', 'PTR').answer, [`5.0.244.10.in-addr.arpa. 5 IN PTR 10-244-0-5.1web.web.svc.${Z}.`], 'endpoint PTR');
  t.same(ask(`10-244-0-5.1web.web.svc.${Z}`).answer, [`10-244-0-5.1web.web.svc.${Z}. 5 IN A 10.244.0.5`], 'endpoint name');
  t.equal(ask(`1web.web.svc.${Z}`, 'AAAA').rcode, 'NOERROR', 'NODATA for the family it lacks');
});

t.test('zones/: names a current apiserver refuses are reported (file, name, reason), the others still serve', async (t) => {
  const h = await harness(t, {
    'bad.yaml': docs(svc('-web', {}, 'web'), svc('web-', {}, 'web'), svc('Web1', {}, 'web'), svc(`1${'a'.repeat(63)}`, {}, 'web'), svc('3ok', {}, 'web')),
  });
  t.ok(h.ips('web/3ok')?.length === 1, '3ok is served');
  t.equal(h.store().services.size, 1, 'only 3ok');
  const diags = h.source.diagnostics().filter((d) => d.kind === 'Service');
  t.same(
    diags.map((d) => [d.doc, d.name, d.message]),
    [
      [1, '-web', 'metadata.name: must be a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit), got "-web"'],
      [2, 'web-', 'metadata.name: must be a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit), got "web-"'],
      [3, 'Web1', 'metadata.name: must be a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit), got "Web1"'],
      [4, `1${'a'.repeat(63)}`, `metadata.name: must be a DNS-1123 label (at most 63 lowercase letters, digits or "-", starting and ending with a letter or digit), got "1${'a'.repeat(63)}"`],
    ],
  );
  t.ok(diags.every((d) => d.file.endsWith('bad.yaml') && d.severity === 'error'));
});
