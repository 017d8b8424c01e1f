import * as grpc from '@grpc/grpc-js';
import {
  addRootToBundle,
  ClusterCaRuntime,
  caStoreFrom,
  createBootstrapToken,
  createCaServerCredentials,
  createCertificate,
  createCertificateServiceClient,
  createCsr,
  createRootCa,
  generateKek,
  generateTokenSigningKey,
  installClusterCa,
  parseKek,
  publishTokenKey,
  type SecretChange,
  type WorkloadSecret,
} from '@meridian/ca';
import { Keyspace, MemoryStore } from '@meridian/store';
import { eventually } from '@meridian/testkit';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ecKey, id, makeMesh, uri } from './helpers.js';

describe('ClusterCaRuntime: what a replica runs', () => {
  const mesh = makeMesh(['east']);
  const kek = parseKek(generateKek(), 'test');
  const store = new MemoryStore({ keyspace: Keyspace.of('m', 'east') });
  const cleanup: Array<() => Promise<void> | void> = [];
  afterAll(async () => {
    for (const fn of cleanup.reverse()) await fn();
  });

  it('loads from the store, serves CreateCertificate, follows CA and token-key changes', async () => {
    await installClusterCa(caStoreFrom(store), mesh.clusters.east!, kek);
    const runtime = await ClusterCaRuntime.start({
      store,
      clusterId: 'east',
      kek,
      logger: pino({ level: 'silent' }),
    });
    cleanup.push(() => runtime.close());
    expect(runtime.tokenVerifier).toBeUndefined();

    const server = new grpc.Server();
    runtime.mount(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', createCaServerCredentials(runtime.serving), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    cleanup.push(() => new Promise<void>((r) => server.tryShutdown(() => r())));
    const client = createCertificateServiceClient(
      `127.0.0.1:${port}`,
      grpc.credentials.createSsl(Buffer.from(mesh.root.certPem)),
      { 'grpc.ssl_target_name_override': 'localhost' },
    );
    cleanup.push(() => client.close());

    // A token key published after start is picked up from the watch.
    const key = await generateTokenSigningKey();
    await publishTokenKey(caStoreFrom(store), key.publicJwk);
    await eventually('the token key', () => runtime.tokenVerifier !== undefined);
    const alice = id('shop', 'alice');
    const token = await createBootstrapToken({
      signingKeyPem: key.privateKeyPem,
      identity: alice,
      ttlSeconds: 60,
    });
    const chain = await createCertificate(
      client,
      { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }) },
      { token },
    );
    expect(chain).toHaveLength(3);

    // A rotation step written to the store reaches the issuer, the workload secrets (every watched
    // identity re-issued, then one notice naming both SDS secrets) and the serving bundle.
    const deliveries: WorkloadSecret[] = [];
    const events: string[] = [];
    const changes: SecretChange[] = [];
    const stopWatch = runtime.secrets.watch(alice, (s) => {
      deliveries.push(s);
      events.push(`secret:${s.reason}`);
    });
    cleanup.push(stopWatch);
    const stopNotices = runtime.onSecretChange((c) => {
      changes.push(c);
      events.push(`notice:${c.reason}`);
    });
    const newRoot = createRootCa({ trustDomain: 'cluster.local', keyType: 'ecdsa-p256' });
    await installClusterCa(caStoreFrom(store), addRootToBundle(mesh.clusters.east!, newRoot.certPem), kek);
    await eventually('the reloaded CA', () => runtime.ca.trustBundle.roots.length === 2);
    expect(runtime.secrets.trustBundlePem()).toBe(mesh.root.certPem + newRoot.certPem);
    expect(events).toEqual(['secret:initial', 'secret:ca-changed', 'notice:ca-changed']);
    expect(deliveries.at(-1)?.trustBundlePem).toBe(mesh.root.certPem + newRoot.certPem);
    expect(changes).toHaveLength(1);
    expect([...changes[0]!.names].sort()).toEqual(['ROOTCA', 'default']);
    stopNotices();
    stopNotices();
    const again = await createCertificate(
      client,
      { csr: createCsr({ key: ecKey(), uris: [uri(alice)] }) },
      { token },
    );
    expect(again.at(-1)).toBe(mesh.root.certPem);
    expect(runtime.metrics()).toMatchObject({
      citadel_server_csr_count: 2,
      citadel_server_success_cert_issuance_count: 2,
      citadel_server_authentication_failure_count: 0,
    });
  });
});
