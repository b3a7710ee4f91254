/**
 * Throwaway PKI for tests: a self-signed CA and a server certificate for 127.0.0.1, made with the
 * openssl CLI in a temp dir that is removed before returning (only the PEM text is kept).
 *
 * Each call makes a fresh CA, so two calls give two CAs that do not trust each other: that is how
 * tests prove a client rejects a server whose CA it was not given.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  /** PEM of the self-signed CA certificate (what a kubeconfig embeds as certificate-authority-data). */
  readonly caCert: string;
  /** PEM of the server certificate (CN and SAN IP:127.0.0.1, DNS:localhost), signed by the CA. */
  readonly serverCert: string;
  /** PEM of the server's private key (P-256). */
  readonly serverKey: string;
}

let opensslChecked = false;

function openssl(args: readonly string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') {
      throw new Error(
        'test/helpers/tls.ts: the `openssl` CLI was not found on PATH; it is needed to generate the ' +
          'throwaway CA and server certificate for TLS tests (Debian: apt-get install openssl)',
      );
    }
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? String(err)}`);
  }
}

/**
 * Generates a CA and a server certificate valid for 127.0.0.1 (SAN IP:127.0.0.1 and DNS:localhost).
 * Throws a clear error when the openssl CLI is missing.
 */
export function generateTestPki(cn = 'fake-apiserver'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'clusterdns-pki-'));
  try {
    if (!opensslChecked) {
      openssl(['version'], dir);
      opensslChecked = true;
    }
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    openssl(
      [
        'req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2',
        '-subj', `/CN=${cn}-ca`,
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
    writeFileSync(
      join(dir, 'server.ext'),
      [
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '',
      ].join('\n'),
    );
    openssl(
      [
        'x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
        '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext',
      ],
      dir,
    );
    return {
      caCert: readFileSync(join(dir, 'ca.crt'), 'utf8'),
      serverCert: readFileSync(join(dir, 'server.crt'), 'utf8'),
      serverKey: readFileSync(join(dir, 'server.key'), 'utf8'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
