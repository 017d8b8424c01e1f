// `meridian status`: what runs of a local mesh, from the processes (PID files and health probes) and
// the replicas' authenticated admin /debug endpoints (/debug/replica, /debug/leader,
// /debug/federation): clusters, replicas, federation per peer, the CA's expiry, the demo's traffic.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { CliContext } from '../context.js';
import { adminGet, clusterToken, type FederationInfo, type LeaderInfo, type ReplicaInfo } from './admin.js';
import type { TrafficFile } from './demo-app.js';
import {
  adminUrl,
  type ClusterPlan,
  contextName,
  etcdSpec,
  type MeshPlan,
  natsSpec,
  replicaSpec,
  requirePlan,
  StatePaths,
} from './plan.js';
import { type ProcSpec, probe, readJson, runningPid } from './procs.js';
import { demoBackendSpecs, demoClientSpecs } from './up.js';

/** Every process spec of the plan, in start order. */
export function allSpecs(paths: StatePaths, plan: MeshPlan): ProcSpec[] {
  const out: ProcSpec[] = [];
  for (const c of plan.clusters) out.push(...c.etcd.map((_, i) => etcdSpec(paths, c, i)));
  for (const c of plan.clusters) out.push(...c.nats.map((_, i) => natsSpec(paths, c, i)));
  for (const c of plan.clusters) out.push(...c.replicaPorts.map((_, i) => replicaSpec(paths, plan, c, i)));
  if (plan.demo.enabled)
    for (const c of plan.clusters)
      out.push(...demoBackendSpecs(paths, plan, c), ...demoClientSpecs(paths, plan, c));
  return out;
}

/** Requests per second answered by each cluster, and failures, over the last `windowMs` of `t`. */
export function rates(
  t: TrafficFile | undefined,
  windowMs = 5000,
  now = Date.now(),
): {
  byCluster: Record<string, number>;
  failed: number;
} {
  const byCluster: Record<string, number> = {};
  let failed = 0;
  for (const [at, from] of t?.recent ?? []) {
    if (at <= now - windowMs || at > now) continue;
    if (from === '') failed++;
    else byCluster[from] = (byCluster[from] ?? 0) + 1;
  }
  const s = windowMs / 1000;
  for (const k of Object.keys(byCluster)) byCluster[k] = byCluster[k]! / s;
  return { byCluster, failed: failed / s };
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('   ')
      .trimEnd(),
  );
}

const ago = (ms: number | undefined) => (ms === undefined ? 'never' : `${(ms / 1000).toFixed(1)} s ago`);

async function expiry(file: string): Promise<string> {
  try {
    const cert = new X509Certificate(await readFile(file));
    const days = Math.floor((Date.parse(cert.validTo) - Date.now()) / 86_400_000);
    return `${new Date(cert.validTo).toISOString().slice(0, 10)} (${days} days)`;
  } catch {
    return 'missing';
  }
}

/** What `status` found, for callers that check it (the end-to-end test prints and parses the text). */
export interface StatusReport {
  readonly processes: { readonly running: number; readonly total: number; readonly down: readonly string[] };
}

/** Prints the status of the mesh in `stateDir`. */
export async function status(ctx: CliContext, o: { stateDir: string }): Promise<StatusReport> {
  const paths = new StatePaths(resolve(o.stateDir));
  const plan = await requirePlan(paths);
  const specs = allSpecs(paths, plan);
  const health = await Promise.all(
    specs.map(async (s) => runningPid(s.pidFile, s.marker) !== undefined && (await probe(s.health))),
  );
  const down = specs.filter((_, i) => !health[i]).map((s) => s.id);
  const count = (prefix: string, c: ClusterPlan) => {
    const mine = specs
      .map((s, i) => [s, health[i]] as const)
      .filter(([s]) => s.id.startsWith(`${c.name}/${prefix}`));
    return `${mine.filter(([, h]) => h).length}/${mine.length}`;
  };

  ctx.out(
    `MESH ${plan.mesh}   state ${paths.dir}   processes ${specs.length - down.length}/${specs.length} running`,
  );
  ctx.out('');
  ctx.out(
    table([
      ['CLUSTER', 'REGION', 'ETCD', 'NATS', 'REPLICAS', 'CONTEXT', 'ADMIN'],
      ...plan.clusters.map((c) => [
        c.name,
        c.region,
        count('etcd-', c),
        count('nats-', c),
        count('replica-', c),
        contextName(plan, c),
        adminUrl(c, 0),
      ]),
    ]).join('\n'),
  );

  const replicaRows: string[][] = [
    ['REPLICA', 'CLUSTER', 'LOCALITY', 'LEADER', 'PROXIES', 'REGISTERED', 'STORE'],
  ];
  const fedRows: string[][] = [['CLUSTER', 'PEER', 'LAST HEARTBEAT', 'IMPORTED SERVICES', 'STATE']];
  for (const c of plan.clusters) {
    const token = await clusterToken(paths, plan, c).catch(() => undefined);
    let fed: FederationInfo | undefined;
    for (let i = 0; i < c.replicas; i++) {
      const [info, leader] = await Promise.all([
        adminGet<ReplicaInfo>(c, i, token, '/debug/replica'),
        adminGet<LeaderInfo>(c, i, token, '/debug/leader'),
      ]);
      if (!info) {
        replicaRows.push([
          `${c.name}-${i}`,
          c.name,
          '-',
          '-',
          '-',
          '-',
          token ? 'not answering' : 'no credential',
        ]);
        continue;
      }
      fed ??= await adminGet<FederationInfo>(c, i, token, '/debug/federation');
      replicaRows.push([
        info.id,
        c.name,
        info.locality,
        leader?.isLeader ? 'leader' : leader?.leader ? `(${leader.leader})` : '-',
        String(info.connections ?? 0),
        String(info.registrations ?? 0),
        info.store ?? '?',
      ]);
    }
    for (const o of plan.clusters) {
      if (o.name === c.name) continue;
      const r = fed?.remoteClusters.find((x) => x.cluster === o.name);
      fedRows.push([
        c.name,
        o.name,
        ago(r?.heardAgoMs),
        String(r?.services ?? 0),
        !fed
          ? 'unknown'
          : !fed.natsConnected
            ? 'NATS disconnected'
            : !r
              ? 'not heard'
              : r.stale
                ? 'stale'
                : r.synced
                  ? 'federated'
                  : 'syncing',
      ]);
    }
  }
  ctx.out('');
  ctx.out(table(replicaRows).join('\n'));
  if (fedRows.length > 1) {
    ctx.out('');
    ctx.out(table(fedRows).join('\n'));
  }

  ctx.out('');
  const caRows = [
    ['CA', 'EXPIRES'],
    ['mesh root', await expiry(join(paths.rootDir, 'root-cert.pem'))],
  ];
  for (const c of plan.clusters)
    caRows.push([`intermediate ${c.name}`, await expiry(join(paths.caDir(c.name), 'ca-cert.pem'))]);
  ctx.out(table(caRows).join('\n'));

  if (plan.demo.enabled) {
    ctx.out('');
    const rows = [['DEMO CLIENT', 'REQUESTS/S ANSWERED (last 5 s)', 'FAILED/S', 'TOTAL OK', 'TOTAL FAILED']];
    for (const c of plan.clusters) {
      const t = await readJson<TrafficFile>(paths.traffic(c.name)).catch(() => undefined);
      const fresh = t && Date.now() - t.updatedAt < 5000;
      const r = rates(fresh ? t : undefined);
      rows.push([
        `client in ${c.name}`,
        fresh
          ? plan.clusters.map((o) => `${o.name} ${(r.byCluster[o.name] ?? 0).toFixed(1)}`).join('  ')
          : 'not running',
        r.failed.toFixed(1),
        String(Object.values(t?.total.ok ?? {}).reduce((a, b) => a + b, 0)),
        String(t?.total.failed ?? 0),
      ]);
    }
    ctx.out(table(rows).join('\n'));
  }
  if (down.length > 0) {
    ctx.out('');
    ctx.out(`not running or not healthy: ${down.join(', ')} (logs in ${paths.logs})`);
  }
  return { processes: { running: specs.length - down.length, total: specs.length, down } };
}
