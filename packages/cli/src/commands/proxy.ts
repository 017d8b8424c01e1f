// `meridian proxy-status` (alias `ps`) and `meridian proxy-config` (alias `pc`): istioctl's views of
// the proxies, from the replicas' authenticated admin API.
//
// Across replicas: the CLI asks the replica it was pointed at for its cluster's members
// (`GET /debug/replicas`, from the membership entries in etcd, each with its admin address), then asks
// every member itself for `/debug/syncz` with the operator's own credential. No replica calls another
// on the caller's behalf: a bearer token is never forwarded by a server, an mTLS caller (who has no
// token to forward) works the same way, and no server-to-server admin trust is added. The price: the
// CLI must reach every replica's admin address (bind `--admin-address` to a routable address when
// replicas run on several hosts). Across clusters (each with its own etcd and credentials):
// `--all-contexts` asks every context of the credentials file.
import { defaultCredentialsPath, readCredentials } from '@meridian/auth/credentials';
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import {
  type AdminTarget,
  adminCall,
  fail,
  resolveTarget,
  type TargetFlags,
  withTargetOptions,
} from '../admin-client.js';
import type { CliContext } from '../context.js';
import {
  type ConfigDump,
  clusterTable,
  displayName,
  endpointTable,
  type Json,
  listenerTable,
  matchesProxy,
  type ProxySync,
  type ReplicaProxySync,
  routeTable,
  secretTable,
  statusTable,
  syncDiff,
} from './proxy-format.js';

/** A replica's membership entry as `/debug/replicas` lists it. */
interface ReplicaEntry {
  readonly id: string;
  readonly clusterId: string;
  readonly adminAddress: string;
}

/** One replica to ask, with the credential to ask it with. */
interface ReplicaTarget {
  readonly id: string;
  readonly clusterId: string;
  readonly target: AdminTarget;
}

/** What one replica said, or why it could not be asked. */
type Answer<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** An admin call whose failure is returned, not printed (one unreachable replica is a warning). */
async function tryCall<T>(target: AdminTarget, path: string): Promise<Answer<T>> {
  const lines: string[] = [];
  const quiet: CliContext = { out: () => {}, err: (l) => lines.push(l) };
  try {
    return { ok: true, value: (await adminCall(quiet, target, 'GET', path)) as T };
  } catch (error) {
    return { ok: false, error: lines.join(' ') || (error as Error).message };
  }
}

/** The admin URL of a member: its address, with a wildcard host replaced by the host asked first. */
function memberServer(entry: ReplicaEntry, asked: AdminTarget): string {
  const base = new URL(asked.server);
  const m = /^(.*):(\d+)$/.exec(entry.adminAddress);
  let host = m ? m[1]! : entry.adminAddress;
  const port = m ? m[2]! : base.port;
  if (host === '0.0.0.0' || host === '::' || host === '[::]' || host === '') host = base.hostname;
  if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `${base.protocol}//${host}:${port}`;
}

interface ProxyFlags extends TargetFlags {
  readonly allContexts?: boolean;
  readonly namespace?: string;
  readonly output?: string;
}

/** The admin targets to start from: the one of the flags, or every context of the credentials file. */
async function startTargets(ctx: CliContext, o: ProxyFlags): Promise<AdminTarget[]> {
  if (!o.allContexts) return [await resolveTarget(o)];
  const file = o.credentials ?? defaultCredentialsPath();
  const creds = await readCredentials(file);
  if (creds.contexts.length === 0) fail(ctx, `error: --all-contexts: no contexts in ${file}`);
  return Promise.all(creds.contexts.map((c) => resolveTarget({ ...o, server: undefined, context: c.name })));
}

/**
 * Every replica of the clusters of `starts`: each start's `/debug/replicas` (its cluster's
 * members), de-duplicated by cluster and replica id. A start that cannot be asked fails the command.
 */
async function discoverReplicas(ctx: CliContext, starts: readonly AdminTarget[]): Promise<ReplicaTarget[]> {
  const out = new Map<string, ReplicaTarget>();
  for (const start of starts) {
    const members = (await adminCall(ctx, start, 'GET', '/debug/replicas')) as ReplicaEntry[];
    for (const m of members) {
      const key = `${m.clusterId}/${m.id}`;
      if (!out.has(key))
        out.set(key, {
          id: m.id,
          clusterId: m.clusterId,
          target: { ...start, server: memberServer(m, start) },
        });
    }
  }
  return [...out.values()].sort((a, b) => (a.clusterId + a.id < b.clusterId + b.id ? -1 : 1));
}

/** Every replica's sync status; an unreachable replica is reported on stderr and skipped. */
async function gatherStatus(
  ctx: CliContext,
  replicas: readonly ReplicaTarget[],
): Promise<ReplicaProxySync[]> {
  const answers = await Promise.all(replicas.map((r) => tryCall<ProxySync[]>(r.target, '/debug/syncz')));
  const rows: ReplicaProxySync[] = [];
  answers.forEach((a, i) => {
    const r = replicas[i]!;
    if (!a.ok)
      ctx.err(`warning: replica ${r.id} (cluster ${r.clusterId}, ${r.target.server}) not asked: ${a.error}`);
    else for (const status of a.value) rows.push({ replica: r.id, status });
  });
  return rows;
}

/** The replica and connection serving `proxy` (node id or `<pod>.<namespace>`); fails if none. */
async function locate(
  ctx: CliContext,
  o: ProxyFlags,
  proxy: string,
): Promise<{ replica: ReplicaTarget; status: ProxySync; others: number }> {
  const replicas = await discoverReplicas(ctx, await startTargets(ctx, o));
  const rows = await gatherStatus(ctx, replicas);
  const found = rows.filter((r) => matchesProxy(r.status, proxy));
  if (found.length === 0)
    fail(
      ctx,
      `error: proxy "${proxy}" is not connected to any replica (asked ${replicas.map((r) => r.id).join(', ')}); give its node id or <pod>.<namespace> (see meridian proxy-status)`,
    );
  const first = found[0]!;
  return {
    replica: replicas.find((r) => r.id === first.replica)!,
    status: first.status,
    others: found.length - 1,
  };
}

/** What a replica sent (or would send now, `view` current) to one connection of the proxy. */
async function dumpOf(
  ctx: CliContext,
  replica: ReplicaTarget,
  status: ProxySync,
  view: 'sent' | 'current',
): Promise<Readonly<Record<string, readonly DumpedList[]>>> {
  const path = `/debug/config_dump?proxy=${encodeURIComponent(status.proxyId)}${view === 'current' ? '&view=current' : ''}`;
  const dump = (await adminCall(ctx, replica.target, 'GET', path)) as ConfigDump;
  const conn = dump[status.connectionId] ?? Object.values(dump)[0];
  if (!conn) fail(ctx, `error: replica ${replica.id} no longer serves proxy "${displayName(status)}"`);
  return conn as Readonly<Record<string, readonly DumpedList[]>>;
}
type DumpedList = ConfigDump[string][string][number];

const CONFIG_TYPES: Readonly<Record<string, { type: string; table: (r: readonly Json[]) => string[] }>> = {
  cluster: { type: 'cds', table: clusterTable },
  listener: { type: 'lds', table: listenerTable },
  route: { type: 'rds', table: routeTable },
  endpoint: { type: 'eds', table: endpointTable },
  secret: { type: 'sds', table: (r) => secretTable(r) },
};
/** istioctl's plural spellings. */
const CONFIG_ALIASES: Readonly<Record<string, string>> = {
  clusters: 'cluster',
  c: 'cluster',
  listeners: 'listener',
  l: 'listener',
  routes: 'route',
  r: 'route',
  endpoints: 'endpoint',
  ep: 'endpoint',
  secrets: 'secret',
  s: 'secret',
};

/** Registers `meridian proxy-status` and `meridian proxy-config`. */
export function registerProxyCommands(program: Command, ctx: CliContext): void {
  withTargetOptions(program.command('proxy-status').alias('ps'))
    .description(
      "sync status of every proxy on every replica (istioctl's columns), or for one proxy the diff between what was sent and what is current",
    )
    .argument(
      '[proxy]',
      'a node id or <pod>.<namespace>: show what was sent to it against the current config',
    )
    .addOption(new Option('-n, --namespace <ns>', 'only proxies of this namespace'))
    .addOption(
      new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'),
    )
    .addOption(
      new Option(
        '--all-contexts',
        'ask the replicas of every context of the credentials file (every cluster)',
      ),
    )
    .action(async (proxy: string | undefined, o: ProxyFlags) => {
      if (proxy !== undefined) {
        const { replica, status, others } = await locate(ctx, o, proxy);
        const [sent, current] = await Promise.all([
          dumpOf(ctx, replica, status, 'sent'),
          dumpOf(ctx, replica, status, 'current'),
        ]);
        if (others > 0)
          ctx.err(
            `note: "${proxy}" has ${others + 1} streams; showing ${status.connectionId} on ${replica.id}`,
          );
        for (const line of syncDiff(replica.id, status, sent, current)) ctx.out(line);
        return;
      }
      const replicas = await discoverReplicas(ctx, await startTargets(ctx, o));
      let rows = await gatherStatus(ctx, replicas);
      if (o.namespace !== undefined) rows = rows.filter((r) => r.status.namespace === o.namespace);
      if (o.output === 'json') {
        ctx.out(
          JSON.stringify(
            rows.map((r) => ({ replica: r.replica, ...r.status })),
            null,
            2,
          ),
        );
        return;
      }
      if (rows.length === 0) {
        ctx.err(`No proxies found (asked ${replicas.length} replica${replicas.length === 1 ? '' : 's'})`);
        return;
      }
      for (const line of statusTable(rows)) ctx.out(line);
    });

  withTargetOptions(program.command('proxy-config').alias('pc'))
    .description(
      "what a replica sent one proxy, in istioctl's tables: cluster, listener, route, endpoint or secret (keys redacted)",
    )
    .argument('<type>', 'cluster, listener, route, endpoint or secret')
    .argument('<proxy>', 'a node id or <pod>.<namespace>')
    .addOption(
      new Option('-o, --output <format>', 'short, json or yaml')
        .choices(['short', 'json', 'yaml'])
        .default('short'),
    )
    .addOption(new Option('--all-contexts', 'look for the proxy in every context of the credentials file'))
    .action(async (typeArg: string, proxy: string, o: ProxyFlags) => {
      const kind = CONFIG_ALIASES[typeArg] ?? typeArg;
      const spec = CONFIG_TYPES[kind];
      if (!spec)
        fail(
          ctx,
          `error: unknown config type "${typeArg}" (one of: ${Object.keys(CONFIG_TYPES).join(', ')})`,
        );
      const { replica, status } = await locate(ctx, o, proxy);
      const sent = await dumpOf(ctx, replica, status, 'sent');
      const resources = (sent[spec.type] ?? [])
        .map((r) => r.resource)
        .filter((r): r is Json => r !== undefined);
      if (o.output === 'json') {
        ctx.out(JSON.stringify(resources, null, 4));
        return;
      }
      if (o.output === 'yaml') {
        ctx.out(stringify(resources).trimEnd());
        return;
      }
      if (!status.types[spec.type]) {
        ctx.err(`proxy "${displayName(status)}" does not watch ${spec.type.toUpperCase()}`);
        return;
      }
      for (const line of spec.table(resources)) ctx.out(line);
    });
}
