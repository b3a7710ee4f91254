/**
 * Child-process entry: the well-behaved client, alone in its process so its
 * latencies are not inflated by the abusive clients sharing a event loop.
 *
 * argv: udpPort tcpPort everyMs. Every `everyMs` it asks, alternately, over UDP
 * (svc1 A) and on a fresh TCP connection (hdls1 A), checks the answer, and on
 * `{ cmd: 'stop' }` replies `{ latencies, failures }` and exits.
 */
import { decode, makeQuery, tcpExchange, udpExchange } from '../helpers/dns.js';
import { Z } from './_lib.js';

const [udpPort, tcpPort, everyMs] = process.argv.slice(2).map(Number) as [number, number, number];
const SVC1 = JSON.stringify([`svc1.testns.svc.${Z}. 5 IN A 10.0.0.1`]);
const HDLS1 = JSON.stringify(['172.0.0.2', '172.0.0.3', '172.0.0.4', '172.0.0.5'].map((ip) => `hdls1.testns.svc.${Z}. 5 IN A ${ip}`));
const latencies: number[] = [];
const failures: string[] = [];
let running = true;
process.on('message', (m: { cmd: string }) => {
  if (m.cmd === 'stop') running = false;
});
process.on('disconnect', () => process.exit(0));
// warm up both paths (module loading, JIT, the server's answer cache) before measuring
for (let k = 0; k < 5; k++) {
  await udpExchange(udpPort, makeQuery(`svc1.testns.svc.${Z}`, 'A'), '127.0.0.1', 2000).catch(() => undefined);
  await tcpExchange(tcpPort, [makeQuery(`hdls1.testns.svc.${Z}`, 'A')], '127.0.0.1', 2000).catch(() => undefined);
}
process.send!({ ready: true });
let i = 0;
while (running) {
  const tcp = i++ % 2 === 1;
  const id = i & 0xffff;
  const t0 = performance.now();
  try {
    if (tcp) {
      const [r] = await tcpExchange(tcpPort, [makeQuery(`hdls1.testns.svc.${Z}`, 'A', { id })], '127.0.0.1', 2000);
      const d = decode(r!);
      if (d.id !== id || JSON.stringify(d.answer.sort()) !== HDLS1) failures.push(`tcp: wrong answer ${JSON.stringify(d)}`);
    } else {
      const d = decode(await udpExchange(udpPort, makeQuery(`svc1.testns.svc.${Z}`, 'A', { id }), '127.0.0.1', 2000));
      if (d.id !== id || JSON.stringify(d.answer) !== SVC1) failures.push(`udp: wrong answer ${JSON.stringify(d)}`);
    }
    latencies.push(performance.now() - t0);
  } catch (err) {
    failures.push(`${tcp ? 'tcp' : 'udp'}: ${String(err)}`);
  }
  await new Promise((r) => setTimeout(r, everyMs));
}
process.send!({ latencies, failures }, () => process.exit(0));
