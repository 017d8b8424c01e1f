// The CA mounted on a replica: the cluster CA installed in etcd, CreateCertificate over the replica's
// TLS CA port with a bootstrap token, refused without one. One etcd member, the replica in-process.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type CertificateServiceClient,
  createBootstrapToken,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
} from '@meridian/ca';
import { type EtcdCluster, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { installClusterCaForTest } from './harness.js';

const tmp = mkdtempSync(join(tmpdir(), 'meridian-ca-test-'));
let etcd: EtcdCluster;
let replica: Replica | undefined;
let client: CertificateServiceClient;
let signingKeyPem: string;
let rootPem: string;

beforeAll(async () => {
  etcd = await startEtcd();
  const installed = await installClusterCaForTest(etcd.endpoints, 'catest', join(tmp, 'kek'));
  rootPem = installed.root.certPem;
  signingKeyPem = installed.signingKeyPem;
  replica = await Replica.start(
    resolveOptions(
      [
        '--mesh-id',
        'catest',
        '--cluster-id',
        'c1',
        '--etcd-endpoints',
        etcd.endpoints.join(','),
        '--xds-address',
        '127.0.0.1:0',
        '--admin-address',
        '127.0.0.1:0',
        '--monitoring-address',
        'off',
        '--ca-address',
        '127.0.0.1:0',
        '--ca-kek-file',
        join(tmp, 'kek'),
        '--replica-id',
        'ca-1',
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
  client = createCertificateServiceClient(
    replica.caAddress,
    grpc.credentials.createSsl(Buffer.from(rootPem)),
    {
      'grpc.ssl_target_name_override': 'localhost',
      'grpc.default_authority': 'localhost',
    },
  );
}, 60_000);

afterAll(async () => {
  client?.close();
  await replica?.stop();
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

describe('CA on the replica', () => {
  it('issues a workload certificate for a bootstrap token over TLS', async () => {
    const identity = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'alice' };
    const token = await createBootstrapToken({ signingKeyPem, identity, ttlSeconds: 600 });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const chain = await createCertificate(
      client,
      { csr: createCsr({ key: privateKey, uris: ['spiffe://cluster.local/ns/shop/sa/alice'] }) },
      { token },
    );
    expect(chain).toHaveLength(3); // leaf, cluster intermediate, root
    expect(chain[2]!.trim()).toBe(rootPem.trim());
  });

  it('refuses a request without credentials', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const error = (await createCertificate(client, {
      csr: createCsr({ key: privateKey, uris: ['spiffe://cluster.local/ns/shop/sa/alice'] }),
    }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(error.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(error.details).toBe(
      'no credentials: send "authorization: Bearer <token>" or a valid workload certificate over mTLS',
    );
  });
});
