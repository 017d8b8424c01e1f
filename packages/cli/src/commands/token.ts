// `meridian token ...`: bootstrap tokens for workloads (signed, expiring, bound to trust domain,
// namespace and service account), and the signing key they are made with.
import { writeFile } from 'node:fs/promises';
import {
  caStoreFrom,
  createBootstrapToken,
  generateTokenSigningKey,
  publicJwkOf,
  publishTokenKey,
} from '@meridian/ca';
import { DEFAULT_MESH_ID, EtcdStore, Keyspace } from '@meridian/store';
import type { Command } from 'commander';
import { type CliContext, parseDuration, parseList, readFlagFile } from '../context.js';

/** Registers `meridian token` and its subcommands. */
export function registerTokenCommands(program: Command, ctx: CliContext): void {
  const token = program.command('token').description('bootstrap tokens for workload certificates');

  token
    .command('keygen')
    .description('create a token signing key (ES256); replicas get only its public part (token publish)')
    .requiredOption('--out <file>', 'private key file to write (mode 0600)')
    .action(async (o: { out: string }) => {
      const key = await generateTokenSigningKey();
      await writeFile(o.out, key.privateKeyPem, { mode: 0o600, flag: 'wx' });
      ctx.out(`token signing key written to ${o.out} (kid ${key.publicJwk.kid})`);
    });

  token
    .command('create')
    .description('print a bootstrap token for one namespace and service account')
    .requiredOption('--ns <namespace>', 'namespace')
    .requiredOption('--sa <serviceaccount>', 'service account')
    .option('--ttl <duration>', 'token lifetime', parseDuration, parseDuration('1h'))
    .requiredOption('--key <file>', 'token signing key (token keygen)')
    .option('--trust-domain <domain>', 'trust domain', 'cluster.local')
    .option(
      '--single-use',
      'accept the token once in the whole cluster (replicas record its id in etcd until it expires)',
    )
    .action(
      async (o: {
        ns: string;
        sa: string;
        ttl: number;
        key: string;
        trustDomain: string;
        singleUse?: boolean;
      }) => {
        const t = await createBootstrapToken({
          signingKeyPem: await readFlagFile('--key', o.key),
          identity: { trustDomain: o.trustDomain, namespace: o.ns, serviceAccount: o.sa },
          ttlSeconds: Math.round(o.ttl / 1000),
          singleUse: o.singleUse === true,
        });
        ctx.out(t);
      },
    );

  token
    .command('publish')
    .description("publish a signing key's verification key to a cluster's etcd")
    .requiredOption('--key <file>', 'token signing key (token keygen)')
    .requiredOption('--cluster <id>', 'cluster id')
    .requiredOption('--etcd <urls>', 'etcd client URLs, comma-separated', parseList)
    .option('--mesh <id>', "mesh id: meridiand's --mesh-id", DEFAULT_MESH_ID)
    .action(async (o: { key: string; cluster: string; etcd: string[]; mesh: string }) => {
      const jwk = await publicJwkOf(await readFlagFile('--key', o.key));
      const store = await EtcdStore.connect({ endpoints: o.etcd, keyspace: Keyspace.of(o.mesh, o.cluster) });
      try {
        await publishTokenKey(caStoreFrom(store), jwk);
        ctx.out(`verification key ${jwk.kid} published to ${store.keyspace.root}`);
      } finally {
        await store.close();
      }
    });
}
