// `meridian auth ...`: the operator's credentials for the admin API.
//
//   auth bootstrap   first admin credential of a cluster, made directly in its etcd (whoever can reach
//                    etcd already controls the cluster), saved as a context of the credentials file
//   auth whoami      the identity and roles the server sees
//   auth token       mint a token for a user or SPIFFE id (role admin), optionally binding a role
//   auth rolebinding list | set | delete
import {
  bootstrapCredential,
  defaultCredentialsPath,
  isRole,
  operatorSubject,
  ROLES,
  type Role,
  saveContext,
} from '@meridian/auth';
import { DEFAULT_MESH_ID, EtcdStore, Keyspace } from '@meridian/store';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  adminCall,
  DEFAULT_SERVER,
  resolveTarget,
  type TargetFlags,
  withTargetOptions,
} from '../admin-client.js';
import { type CliContext, parseDuration, parseList } from '../context.js';

function parseRole(value: string): Role {
  if (!isRole(value)) throw new InvalidArgumentError(`"${value}" is not a role (${ROLES.join(', ')})`);
  return value;
}

const roleOption = (required: boolean) => {
  const o = new Option('--role <role>', `role: ${ROLES.join(', ')}`).argParser(parseRole);
  return required ? o.makeOptionMandatory() : o;
};

/** Registers `meridian auth` and its subcommands. */
export function registerAuthCommands(program: Command, ctx: CliContext): void {
  const auth = program.command('auth').description('credentials and roles for the admin API');

  auth
    .command('bootstrap')
    .description("create a cluster's first admin credential in its etcd and save it to the credentials file")
    .requiredOption('--etcd <urls>', 'etcd client URLs of the cluster, comma-separated', parseList)
    .requiredOption('--cluster <id>', 'cluster id (meridiand --cluster-id)')
    .option('--mesh <id>', "mesh id: meridiand's --mesh-id", DEFAULT_MESH_ID)
    .option('--user <name>', 'operator name: identity spiffe://<td>/ns/meridian-system/sa/<name>', 'admin')
    .addOption(roleOption(false).default('admin'))
    .option('--trust-domain <domain>', 'trust domain of the identity', 'cluster.local')
    .option('--ttl <duration>', 'token lifetime', parseDuration, parseDuration('8760h'))
    .option('--server <url>', 'admin address saved with the credential', DEFAULT_SERVER)
    .option(
      '--credentials <file>',
      'credentials file (env MERIDIAN_CREDENTIALS, default ~/.meridian/credentials.yaml)',
    )
    .option('--context <name>', 'context name (default: the cluster id)')
    .option('--print-token', 'also print the token (for MERIDIAN_TOKEN)')
    .action(
      async (o: {
        etcd: string[];
        cluster: string;
        mesh: string;
        user: string;
        role: Role;
        trustDomain: string;
        ttl: number;
        server: string;
        credentials?: string;
        context?: string;
        printToken?: boolean;
      }) => {
        const subject = operatorSubject(o.trustDomain, o.user);
        const store = await EtcdStore.connect({
          endpoints: o.etcd,
          keyspace: Keyspace.of(o.mesh, o.cluster),
        });
        let minted: { token: string; expiresAt: Date };
        try {
          minted = await bootstrapCredential(store, {
            subject,
            role: o.role,
            bindingName: o.user,
            ttlSeconds: Math.round(o.ttl / 1000),
          });
        } finally {
          await store.close();
        }
        const file = o.credentials ?? defaultCredentialsPath();
        const name = o.context ?? o.cluster;
        await saveContext(file, { name, server: o.server, token: minted.token });
        ctx.out(
          `${subject} bound to role ${o.role}; token (expires ${minted.expiresAt.toISOString()}) saved to ${file} as context "${name}"`,
        );
        if (o.printToken) ctx.out(minted.token);
      },
    );

  withTargetOptions(auth.command('whoami'))
    .description('show the identity and roles the server sees')
    .action(async (o: TargetFlags) => {
      const me = (await adminCall(ctx, await resolveTarget(o), 'GET', '/apis/v1/auth/whoami')) as {
        subject: string;
        via: string;
        roles: string[];
      };
      ctx.out(`${me.subject} (${me.via}): ${me.roles.length ? me.roles.join(', ') : 'no role'}`);
    });

  withTargetOptions(auth.command('token'))
    .description('mint an admin-API token for a user or SPIFFE id (needs role admin); prints the token')
    .option('--user <name>', 'operator name (identity spiffe://<td>/ns/meridian-system/sa/<name>)')
    .option('--subject <spiffe-id>', 'any SPIFFE id instead of --user')
    .addOption(roleOption(false))
    .option('--ttl <duration>', 'token lifetime', parseDuration, parseDuration('24h'))
    .action(async (o: TargetFlags & { user?: string; subject?: string; role?: Role; ttl: number }) => {
      if ((o.user === undefined) === (o.subject === undefined))
        throw new InvalidArgumentError('give exactly one of --user and --subject');
      const target = await resolveTarget(o);
      const who = o.subject !== undefined ? { subject: o.subject } : { user: o.user };
      const minted = (await adminCall(ctx, target, 'POST', '/apis/v1/auth/tokens', {
        type: 'application/json',
        text: JSON.stringify({ ...who, ttlSeconds: Math.round(o.ttl / 1000) }),
      })) as { subject: string; token: string; expiresAt: string };
      if (o.role) {
        const name = o.user ?? minted.subject.split('/').pop()!;
        await adminCall(ctx, target, 'PUT', `/apis/v1/auth/rolebindings/${encodeURIComponent(name)}`, {
          type: 'application/json',
          text: JSON.stringify({ subject: minted.subject, role: o.role }),
        });
        ctx.err(`rolebinding "${name}": ${minted.subject} -> ${o.role}`);
      }
      ctx.err(`token for ${minted.subject}, expires ${minted.expiresAt}`);
      ctx.out(minted.token);
    });

  const bindings = auth.command('rolebinding').description('who holds which role (needs role admin)');
  withTargetOptions(bindings.command('list'))
    .description('list role bindings')
    .action(async (o: TargetFlags) => {
      const list = (await adminCall(ctx, await resolveTarget(o), 'GET', '/apis/v1/auth/rolebindings')) as {
        items: { name: string; subject: string; role: string }[];
      };
      const rows = list.items.map((b) => [b.name, b.role, b.subject]);
      const head = ['NAME', 'ROLE', 'SUBJECT'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      for (const r of [head, ...rows])
        ctx.out(
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join('   ')
            .trimEnd(),
        );
    });
  withTargetOptions(bindings.command('set'))
    .description('bind a subject to a role')
    .argument('<name>', 'binding name')
    .requiredOption('--subject <spiffe-id>', 'SPIFFE id')
    .addOption(roleOption(true))
    .action(async (name: string, o: TargetFlags & { subject: string; role: Role }) => {
      await adminCall(
        ctx,
        await resolveTarget(o),
        'PUT',
        `/apis/v1/auth/rolebindings/${encodeURIComponent(name)}`,
        {
          type: 'application/json',
          text: JSON.stringify({ subject: o.subject, role: o.role }),
        },
      );
      ctx.out(`rolebinding "${name}" set: ${o.subject} -> ${o.role}`);
    });
  withTargetOptions(bindings.command('delete'))
    .description('delete a role binding')
    .argument('<name>', 'binding name')
    .action(async (name: string, o: TargetFlags) => {
      await adminCall(
        ctx,
        await resolveTarget(o),
        'DELETE',
        `/apis/v1/auth/rolebindings/${encodeURIComponent(name)}`,
      );
      ctx.out(`rolebinding "${name}" deleted`);
    });
}
