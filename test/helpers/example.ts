/**
 * The dig checks every source must pass on the shipped example (zones/cluster.local):
 * shared by the zones/ e2e test and the Kubernetes-API e2e test, so both sources are
 * held to exactly the same answers.
 */
import type { Test } from 'tap';
import { dig } from './cli.js';

const Z = 'cluster.local';

export function exampleNameChecks(t: Test, port: number): void {
  const short = async (name: string, type: string, extra: string[]) =>
    (await dig(port, ['+short', ...extra, name, type])).trim().split('\n').filter(Boolean).sort();
  for (const transport of ['+notcp', '+tcp']) {
    t.test(`every example name (${transport})`, async (t) => {
      const q = (name: string, type = 'A') => short(name, type, [transport]);
      t.same(await q(`kubernetes.default.svc.${Z}`), ['10.96.0.1']);
      t.same(await q(`kube-dns.kube-system.svc.${Z}`), ['10.96.0.10']);
      t.same(await q(`frontend.shop.svc.${Z}`), ['10.96.10.10']);
      t.same(await q(`cart.shop.svc.${Z}`), ['10.96.10.20']);
      t.same(await q(`cart.shop.svc.${Z}`, 'AAAA'), ['fd00:10:96::14']);
      t.same(await q(`web.shop.svc.${Z}`), ['10.244.1.20', '10.244.2.21'], 'headless: ready endpoints only');
      t.same(await q(`web-0.web.shop.svc.${Z}`), ['10.244.1.20']);
      t.same(await q(`web-2.web.shop.svc.${Z}`), [], 'not-ready pod has no name');
      t.same(await q(`zk-0.zk-hs.data.svc.${Z}`), ['10.244.1.40'], 'publishNotReadyAddresses');
      t.same(await q(`example.default.svc.${Z}`, 'CNAME'), ['www.example.com.']);
      t.same(await q(`kubernetes-api.default.svc.${Z}`), ['kubernetes.default.svc.cluster.local.', '10.96.0.1'].sort(), 'in-zone ExternalName chased');
      t.same(await q(`_https._tcp.kubernetes.default.svc.${Z}`, 'SRV'), [`0 100 443 kubernetes.default.svc.${Z}.`]);
      t.same(await q(`_http._tcp.web.shop.svc.${Z}`, 'SRV'), [`0 50 80 web-0.web.shop.svc.${Z}.`, `0 50 80 web-1.web.shop.svc.${Z}.`]);
      t.same(await q(`dns-version.${Z}`, 'TXT'), ['"1.1.0"']);
      t.same(await q(`10-244-1-20.shop.pod.${Z}`), ['10.244.1.20'], 'pods insecure (kubeadm default)');
      t.same(await q(`external-db.data.svc.${Z}`), ['192.168.50.11', '192.168.50.12'], 'selectorless service with legacy Endpoints');
    });
  }
}
