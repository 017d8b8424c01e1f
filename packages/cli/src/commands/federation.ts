// `meridian federation ...`: NATS-side trust between clusters: per-cluster nkey users
// allowed to publish only on their own federation subjects and KV bucket. See deploy/nats/README.md.
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type ClusterCredentials,
  clusterPermissions,
  generateClusterCredentials,
  publicKeyOfSeed,
  renderNatsAuthorization,
} from '@meridian/federation';
import { DEFAULT_MESH_ID } from '@meridian/store';
import { type Command, InvalidArgumentError } from 'commander';
import type { CliContext } from '../context.js';

/** File name of the generated authorization block (included by every NATS server's config). */
export const AUTH_FILE = 'meridian-federation-auth.conf';

const collect = (value: string, prev: string[]): string[] => [...prev, value];

/** Parses `<cluster>=<U... public key>` (commander argument parser). */
function parseKeyAssignment(value: string, prev: Record<string, string>): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError(`"${value}" is not <cluster>=<public nkey>`);
  return { ...prev, [value.slice(0, i)]: value.slice(i + 1) };
}

/** Registers `meridian federation` and its subcommands. */
export function registerFederationCommands(program: Command, ctx: CliContext): void {
  const fed = program
    .command('federation')
    .description('federation of service discovery between clusters over NATS');

  fed
    .command('nats-config')
    .description(
      `write the NATS authorization block (${AUTH_FILE}: one nkey user per cluster, publishing only its own subjects) and a seed file <cluster>.nk for every cluster without --public-key`,
    )
    .option(
      '--mesh <id>',
      "mesh id: meridiand's --mesh-id (subject prefix meridian.<mesh>.fed)",
      DEFAULT_MESH_ID,
    )
    .requiredOption('--cluster <id>', 'a cluster of the mesh (repeat for each)', collect, [] as string[])
    .option(
      '--public-key <cluster=Ukey>',
      'use an existing user public key for a cluster instead of generating one (repeatable)',
      parseKeyAssignment,
      {} as Record<string, string>,
    )
    .option(
      '--seed-file <cluster=file>',
      'use an existing seed file for a cluster (repeatable)',
      parseKeyAssignment,
      {} as Record<string, string>,
    )
    .option(
      '--out-dir <dir>',
      'directory to write into (created); without it the block is printed and no key is generated',
    )
    .action(
      async (o: {
        mesh: string;
        cluster: string[];
        publicKey: Record<string, string>;
        seedFile: Record<string, string>;
        outDir?: string;
      }) => {
        for (const c of [...Object.keys(o.publicKey), ...Object.keys(o.seedFile)])
          if (!o.cluster.includes(c))
            throw new Error(`key given for cluster "${c}", which is not in --cluster`);
        const creds: ClusterCredentials[] = [];
        for (const cluster of o.cluster) {
          const pub = o.publicKey[cluster];
          const seedFile = o.seedFile[cluster];
          if (pub !== undefined) creds.push({ cluster, publicKey: pub });
          else if (seedFile !== undefined)
            creds.push({ cluster, publicKey: publicKeyOfSeed(await readFile(seedFile, 'utf8')) });
          else if (o.outDir !== undefined) creds.push(generateClusterCredentials(cluster));
          else
            throw new Error(
              `cluster "${cluster}" has no --public-key or --seed-file: pass --out-dir to generate its key`,
            );
        }
        const text = renderNatsAuthorization({ mesh: o.mesh, clusters: creds });
        if (o.outDir === undefined) {
          ctx.out(text);
          return;
        }
        await mkdir(o.outDir, { recursive: true });
        await writeFile(join(o.outDir, AUTH_FILE), text);
        ctx.out(`wrote ${join(o.outDir, AUTH_FILE)} (include it in every NATS server config of the mesh)`);
        for (const c of creds) {
          if (!c.seed) continue;
          const file = join(o.outDir, `${c.cluster}.nk`);
          await writeFile(file, `${c.seed}\n`, { mode: 0o600, flag: 'wx' });
          await chmod(file, 0o600);
          ctx.out(
            `wrote ${file}: the nkey seed of cluster ${c.cluster} (secret; give it only to that cluster's replicas)`,
          );
        }
      },
    );

  fed
    .command('creds')
    .description("generate one cluster's nkey user: writes the seed file and prints the public key")
    .requiredOption('--cluster <id>', 'cluster id')
    .requiredOption('--out <file>', 'seed file to write (mode 0600; must not exist)')
    .action(async (o: { cluster: string; out: string }) => {
      const c = generateClusterCredentials(o.cluster);
      await writeFile(o.out, `${c.seed}\n`, { mode: 0o600, flag: 'wx' });
      ctx.out(c.publicKey);
    });

  fed
    .command('permissions')
    .description("print a cluster's NATS publish/subscribe permissions as JSON")
    .option('--mesh <id>', "mesh id: meridiand's --mesh-id", DEFAULT_MESH_ID)
    .requiredOption('--cluster <id>', 'cluster id')
    .action((o: { mesh: string; cluster: string }) => {
      ctx.out(JSON.stringify(clusterPermissions(o.mesh, o.cluster), null, 2));
    });
}
