// The `mesh` benchmark's side of its processes (bench/mesh.ts): forking the client processes and
// asking all of them at once (sync progress, ended streams), the sidecars' specs, the replicas'
// admin API (applying the mesh and its edits, waiting for a revision, push counters), the commit
// measured, and the units the benchmark's lines print figures in.
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { REPO_ROOT, type ReplicaProcess } from '../../packages/server/test/harness.js';
import type { LatencyRecorder } from './latency.js';
import type { ProxySpec } from './mesh-client.js';
import { type MeshObjects, type RawObject, sidecarNode } from './mesh-objects.js';
import { IpcChild, rssBytes } from './proc.js';
import { formatMs, log, round3 } from './report.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A wait that ran out of time. */
export class TimedOut extends Error {}

export const p99 = (r: LatencyRecorder) => (r.count ? r.percentile(99) : Number.NaN);
export const p50 = (r: LatencyRecorder) => (r.count ? r.percentile(50) : Number.NaN);
/** A figure for the result line: rounded, or null when there is none. */
export const num = (x: number) => (Number.isFinite(x) ? round3(x) : null);
export const kb = (bytes: number) => `${(bytes / 1024).toFixed(0)} KB`;
export const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** Forks a TypeScript file as an IPC child (added to `children`, which the caller kills). */
export function forkTs(file: string, name: string, children: ChildProcess[]): IpcChild {
  const child = fork(file, [], {
    execArgv: ['--conditions=@meridian/source', '--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  children.push(child);
  return new IpcChild(name, child);
}

/** The same command to every client process; their replies in order. */
export type All = <T>(cmd: Record<string, unknown>, timeoutMs?: number) => Promise<T[]>;

/** A simulated sidecar and the replica it connects to. */
export type SidecarSpec = ProxySpec & { replicaIndex: number };

/** A client process's answer to `status`. */
export interface Status {
  total: number;
  synced: number;
  lastSynced: number;
  ended: number;
  reconnects: number;
  firstEnded?: string;
  endReasons: Record<string, number>;
  acked: { cds: number; eds: number; lds: number; rds: number };
}

/** The commit measured, and whether the push path's packages have uncommitted changes (the
 * benchmark runs the working tree's sources). */
export function codeState(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT }).toString().trim();
    const dirty = execFileSync(
      'git',
      [
        'status',
        '--porcelain',
        '--',
        'packages/server/src',
        'packages/xds/src',
        'packages/translate/src',
        'packages/envoy/src',
      ],
      { cwd: REPO_ROOT },
    )
      .toString()
      .split('\n')
      .filter(Boolean).length;
    return `${head}${dirty ? ` + ${dirty} uncommitted files in packages/{server,xds,translate,envoy}/src` : ''}`;
  } catch {
    return 'unknown (no git)';
  }
}

/** Proxy k is the workload of WorkloadEntry floor(k * W / N) (spread over every service and
 * namespace), on replica k % 3. */
export function proxySpecs(mesh: MeshObjects, n: number, replicas: readonly ReplicaProcess[]): SidecarSpec[] {
  const W = mesh.workloads.length;
  return Array.from({ length: n }, (_, k) => {
    const w = mesh.workloads[Math.floor((k * W) / n)]!;
    return { index: k, replicaIndex: k % 3, address: replicas[k % 3]!.xds, node: sidecarNode(w, 'c1') };
  });
}

/** `pilot_xds_pushes` of every replica by type, divided by the sidecars. */
export async function responsesPerProxy(
  replicas: readonly ReplicaProcess[],
  proxies: number,
): Promise<Record<string, number>> {
  const totals: Record<string, number> = {};
  for (const r of replicas) {
    const { body } = await r.text('/metrics');
    for (const m of body.matchAll(/^pilot_xds_pushes\{[^}]*type="([a-z]+)"[^}]*\} ([0-9.e+]+)$/gm))
      totals[m[1]!] = (totals[m[1]!] ?? 0) + Number(m[2]);
  }
  return Object.fromEntries(Object.entries(totals).map(([t, n]) => [t, n / proxies]));
}

/** Applies objects through the admin API (JSON, at most 10,000 per request); returns the last revision. */
export async function applyAll(replica: ReplicaProcess, objects: readonly RawObject[]): Promise<number> {
  let revision = 0;
  for (let i = 0; i < objects.length; i += 10_000) {
    const chunk = objects.slice(i, i + 10_000);
    // The whole mesh in one apply can take minutes on a loaded machine.
    const res = await replica.api('POST', '/apis/v1/apply', JSON.stringify(chunk), 600_000);
    if (res.status !== 200)
      throw new Error(
        `apply of ${chunk.length} objects: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 500)}`,
      );
    revision = Number(res.body.revision);
  }
  return revision;
}

/** Applies one object through the admin API. */
export async function applyOne(replica: ReplicaProcess, object: RawObject): Promise<void> {
  const res = await replica.api('POST', '/apis/v1/apply', JSON.stringify(object));
  if (res.status !== 200)
    throw new Error(
      `apply ${object.kind} ${object.metadata.namespace}/${object.metadata.name}: HTTP ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`,
    );
}

/** Waits until every replica's snapshot is at `revision` or later. */
export async function waitRevision(
  replicas: readonly ReplicaProcess[],
  revision: number,
  timeoutMs: number,
): Promise<number> {
  const start = performance.now();
  for (;;) {
    const revs = await Promise.all(
      replicas.map((r) =>
        r.getJson<{ snapshotRevision?: number }>('/debug/replica').then(
          (d) => d.snapshotRevision ?? 0,
          () => 0,
        ),
      ),
    );
    if (revs.every((x) => x >= revision)) return performance.now() - start;
    if (performance.now() - start > timeoutMs)
      throw new TimedOut(`replicas at revisions ${revs.join(', ')} after ${timeoutMs} ms, want ${revision}`);
    await sleep(250);
  }
}

/** The most frequent reasons streams ended, over every client process. */
function topReasons(st: readonly Status[]): string {
  const m = new Map<string, number>();
  for (const s of st) for (const [k, v] of Object.entries(s.endReasons)) m.set(k, (m.get(k) ?? 0) + v);
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([k, v]) => `${v} x ${k}`)
    .join('; ');
}

/** How many sidecars' streams ended (the server closed them; they reconnect as Envoy does). */
export async function streamEnds(
  all: All,
): Promise<{ ended: number; reconnects: number; firstEnded?: string }> {
  const st = await all<Status>({ cmd: 'status' });
  const first = st.find((s) => s.firstEnded)?.firstEnded;
  return {
    ended: st.reduce((a, s) => a + s.ended, 0),
    reconnects: st.reduce((a, s) => a + s.reconnects, 0),
    ...(first ? { firstEnded: topReasons(st) } : {}),
  };
}

/** Waits until `n` sidecars have ACKed every type, a replica exits, or `timeoutMs` passes; logs
 * progress every 15 s. */
export async function waitSynced(
  all: All,
  n: number,
  timeoutMs: number,
  replicas: readonly ReplicaProcess[],
) {
  const start = performance.now();
  let lastLog = start;
  for (;;) {
    const st = await all<Status>({ cmd: 'status' });
    const synced = st.reduce((a, s) => a + s.synced, 0);
    const ended = st.reduce((a, s) => a + s.ended, 0);
    const out = {
      synced,
      ended,
      lastSynced: Math.max(...st.map((s) => s.lastSynced)),
      firstEnded: st.find((s) => s.firstEnded)?.firstEnded,
    };
    if (synced === n) return out;
    const now = performance.now();
    if (now - lastLog > 15_000) {
      lastLog = now;
      const a = st.reduce(
        (x, s) => ({
          cds: x.cds + s.acked.cds,
          eds: x.eds + s.acked.eds,
          lds: x.lds + s.acked.lds,
          rds: x.rds + s.acked.rds,
        }),
        { cds: 0, eds: 0, lds: 0, rds: 0 },
      );
      log(
        `  ${formatMs(now - start)}: ${synced}/${n} synced (ACKed CDS ${a.cds}, EDS ${a.eds}, LDS ${a.lds}, RDS ${a.rds}; ${ended} sidecars' streams ended${ended ? `: ${topReasons(st)}` : ''}); replica RSS ${replicas.map((r) => mb(rssBytes(r.child?.pid))).join(', ')}`,
      );
    }
    if (replicas.some((r) => !r.running)) {
      log(
        `  a replica exited: ${replicas
          .filter((r) => !r.running)
          .map((r) => `${r.spec.id}: ${r.output.slice(-5).join(' | ')}`)
          .join('; ')}`,
      );
      return out;
    }
    if (now - start > timeoutMs) return out;
    await sleep(500);
  }
}
