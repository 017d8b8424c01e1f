// The stream context carries the identity the TLS peer certificate proves (its spiffe:// URI SAN):
// a real mTLS handshake with certificates made by openssl.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, credentials, ServerCredentials } from '@grpc/grpc-js';
import { TypeUrl } from '@meridian/envoy';
import { eventually, makeTempDir, nextSnapshot, SimulatedProxy, translateServices } from '@meridian/testkit';
import { ResourceCache, XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SPIFFE = 'spiffe://cluster.local/ns/default/sa/client';

function makeCerts(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=test-root',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
  );
  const leaf = (name: string, san: string) => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
    );
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    );
  };
  leaf('server', 'IP:127.0.0.1,DNS:localhost');
  leaf('client', `URI:${SPIFFE}`);
}

describe('authenticated identity', () => {
  let tmp: { path: string; remove(): void } | undefined;
  let dir = '';
  const server = new XdsServer({
    logger: xdsLogger({ level: 'warn', write: () => {} }),
    debounce: { quietMs: 0 },
  });
  let client: Client | undefined;
  let proxy: SimulatedProxy | undefined;

  beforeAll(async () => {
    tmp = makeTempDir('xds-identity');
    dir = tmp.path;
    makeCerts(dir);
  });
  afterAll(() => {
    proxy?.disconnect();
    client?.close();
    server.close();
    tmp?.remove();
  });

  it('is the spiffe:// URI SAN of the client certificate on an mTLS stream', async () => {
    const read = (f: string) => readFileSync(join(dir, f));
    server.update(nextSnapshot(new ResourceCache(), undefined, 'v1', translateServices([])));
    const port = await server.listen(
      '127.0.0.1',
      0,
      ServerCredentials.createSsl(
        read('ca.pem'),
        [{ cert_chain: read('server.pem'), private_key: read('server.key') }],
        true,
      ),
    );
    client = new Client(
      `127.0.0.1:${port}`,
      credentials.createSsl(read('ca.pem'), read('client.key'), read('client.pem')),
      { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' },
    );
    proxy = new SimulatedProxy({
      nodeId: 'sidecar~10.4.0.1~tls.default~default.svc.cluster.local',
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Cluster }],
    });
    proxy.connect(client);
    await eventually('CDS synced', () => server.syncStatus()[0]?.types.cds?.state === 'SYNCED', 15_000, 20);
    const [status] = server.syncStatus();
    expect(status?.authenticatedIdentity).toBe(SPIFFE);
    expect(status?.types.cds?.state).toBe('SYNCED');
  });
});
