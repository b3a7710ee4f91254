/** One query with dig (loopback), parsed to rcode and answer records. */
import { run } from './proc.js';

export interface DigAnswer {
  rcode: string; // NOERROR, NXDOMAIN, REFUSED, ... or TIMEOUT / ERROR
  /** Answer records normalised to `name type rdata` (lower case, TTL dropped). */
  answer: string[];
  ttls: number[];
}

export async function digQuery(host: string, port: number, name: string, type: string, timeoutS = 2): Promise<DigAnswer> {
  const r = await run(
    'dig',
    [`@${host}`, '-p', String(port), '+norec', '+noedns', `+time=${timeoutS}`, '+tries=1', '+nocookie', name, type],
    { timeoutMs: (timeoutS + 3) * 1000 },
  );
  if (r.code === 'error') throw new Error('dig not found (Debian package bind9-dnsutils)');
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1];
  if (status === undefined) return { rcode: r.timedOut || /timed out|no servers/.test(r.stdout) ? 'TIMEOUT' : 'ERROR', answer: [], ttls: [] };
  const answer: string[] = [];
  const ttls: number[] = [];
  const sec = /;; ANSWER SECTION:\n([\s\S]*?)(?:\n\n|$)/.exec(r.stdout)?.[1] ?? '';
  for (const line of sec.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    ttls.push(Number(f[1]));
    answer.push([f[0]!.toLowerCase(), f[3], ...f.slice(4)].join(' ').toLowerCase());
  }
  answer.sort();
  return { rcode: status, answer, ttls };
}
