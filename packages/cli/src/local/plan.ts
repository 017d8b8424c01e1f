// The plan of a local mesh, made once by the first `meridian up` and kept in <state-dir>/state.json:
// the topology and every port (free ports chosen then, so two meshes or a test run side by side),
// plus the paths and command lines derived from them.
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../context.js';
import { allocatePorts, type ProcSpec, readJson } from './procs.js';
import type { ClusterTopology, Topology } from './topology.js';

/** Ports of one etcd member. */
export interface EtcdPorts {
  readonly client: number;
  readonly peer: number;
}
/** Ports of one NATS server. */
export interface NatsPorts {
  readonly client: number;
  readonly route: number;
  readonly gateway: number;
  readonly monitor: number;
}
/** Ports of one replica. */
export interface ReplicaPorts {
  readonly ca: number;
  readonly admin: number;
  readonly monitoring: number;
}
/** Ports of one cluster's demo: echo v1 and v2 and their agents, the client's agent. */
export interface DemoPorts {
  readonly v1: number;
  readonly v2: number;
  readonly agentV1: number;
  readonly agentV2: number;
  readonly agentClient: number;
  readonly metricsV1: number;
  readonly metricsV2: number;
  readonly metricsClient: number;
}

/** One cluster of the plan. */
export interface ClusterPlan extends ClusterTopology {
  readonly etcd: readonly EtcdPorts[];
  readonly nats: readonly NatsPorts[];
  readonly replicaPorts: readonly ReplicaPorts[];
  readonly demo: DemoPorts;
}

/** What state.json holds. */
export interface MeshPlan {
  readonly version: 1;
  readonly createdAt: string;
  readonly topologyFile: string;
  readonly mesh: string;
  readonly trustDomain: string;
  readonly demo: Topology['demo'];
  readonly clusters: readonly ClusterPlan[];
}

/** The default state directory: ~/.meridian/local. */
export const defaultStateDir = (): string => join(homedir(), '.meridian', 'local');

/** The repository root (this file is packages/cli/{src,dist}/local/plan.{ts,js}). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** The default topology file. */
export const DEFAULT_TOPOLOGY = join(REPO_ROOT, 'deploy/local/two-clusters.yaml');

/** Paths under the state directory. */
export class StatePaths {
  constructor(readonly dir: string) {}
  get stateFile(): string {
    return join(this.dir, 'state.json');
  }
  get logs(): string {
    return join(this.dir, 'logs');
  }
  get run(): string {
    return join(this.dir, 'run');
  }
  get credentials(): string {
    return join(this.dir, 'credentials.yaml');
  }
  get rootDir(): string {
    return join(this.dir, 'ca', 'root');
  }
  cluster(c: string): string {
    return join(this.dir, 'clusters', c);
  }
  caDir(c: string): string {
    return join(this.cluster(c), 'ca');
  }
  kek(c: string): string {
    return join(this.cluster(c), 'ca-kek');
  }
  tokenKey(c: string): string {
    return join(this.cluster(c), 'token-key.pem');
  }
  demo(c: string): string {
    return join(this.cluster(c), 'demo');
  }
  traffic(c: string): string {
    return join(this.demo(c), 'traffic.json');
  }
  log(id: string): string {
    return join(this.logs, `${id.replace('/', '-')}.log`);
  }
  pid(id: string): string {
    return join(this.run, `${id.replace('/', '-')}.pid`);
  }
}

/** Makes a plan for `t` with fresh free ports. */
export async function makePlan(t: Topology, topologyFile: string): Promise<MeshPlan> {
  const clusters: ClusterPlan[] = [];
  // One allocation for the whole mesh: ports found free in separate calls may coincide (none is
  // bound until the processes start).
  const p = await allocatePorts(
    t.clusters.reduce((n, c) => n + c.etcdMembers * 2 + c.natsServers * 4 + c.replicas * 3 + 8, 0),
  );
  let i = 0;
  const next = () => p[i++]!;
  for (const c of t.clusters) {
    clusters.push({
      ...c,
      etcd: Array.from({ length: c.etcdMembers }, () => ({ client: next(), peer: next() })),
      nats: Array.from({ length: c.natsServers }, () => ({
        client: next(),
        route: next(),
        gateway: next(),
        monitor: next(),
      })),
      replicaPorts: Array.from({ length: c.replicas }, () => ({
        ca: next(),
        admin: next(),
        monitoring: next(),
      })),
      demo: {
        v1: next(),
        v2: next(),
        agentV1: next(),
        agentV2: next(),
        agentClient: next(),
        metricsV1: next(),
        metricsV2: next(),
        metricsClient: next(),
      },
    });
  }
  return {
    version: 1,
    createdAt: new Date().toISOString(),
    topologyFile,
    mesh: t.mesh,
    trustDomain: t.trustDomain,
    demo: t.demo,
    clusters,
  };
}

/** The shape of a plan without its ports (to tell whether a second `up` asks for another mesh). */
export function shapeOf(p: { mesh: string; clusters: readonly ClusterTopology[] }): string {
  return JSON.stringify({
    mesh: p.mesh,
    clusters: p.clusters.map((c) => [c.name, c.region, c.zones, c.replicas, c.etcdMembers, c.natsServers]),
  });
}

/** Reads state.json, or undefined when the state dir has no mesh. */
export async function loadPlan(paths: StatePaths): Promise<MeshPlan | undefined> {
  return readJson<MeshPlan>(paths.stateFile);
}

/** Reads state.json; a UsageError naming the state dir when there is none. */
export async function requirePlan(paths: StatePaths): Promise<MeshPlan> {
  const plan = await loadPlan(paths);
  if (!plan) throw new UsageError(`no local mesh in ${paths.dir} (run: meridian up${stateFlag(paths)})`);
  return plan;
}

/** ` --state-dir DIR` unless DIR is the default. */
export function stateFlag(paths: StatePaths): string {
  return resolve(paths.dir) === resolve(defaultStateDir()) ? '' : ` --state-dir ${paths.dir}`;
}

/** Writes state.json atomically. */
export async function savePlan(paths: StatePaths, plan: MeshPlan): Promise<void> {
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  const tmp = `${paths.stateFile}.tmp`;
  await writeFile(tmp, `${JSON.stringify(plan, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, paths.stateFile);
}

// ---- command lines --------------------------------------------------------------------------

const FROM_SOURCE = fileURLToPath(import.meta.url).endsWith('.ts');

/**
 * How to run one of the repository's programs: the built JavaScript (dist/) when this CLI runs from
 * dist, the TypeScript sources through tsx when it runs from source (tests).
 */
export function program(pkg: string, entry: string, nodeFlags: readonly string[] = []): string[] {
  const base = join(REPO_ROOT, 'packages', pkg);
  if (!FROM_SOURCE) return [...nodeFlags, join(base, 'dist', `${entry}.js`)];
  const tsx = join(REPO_ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs');
  return [
    ...nodeFlags,
    '--conditions=@meridian/source',
    '--import',
    `file://${tsx}`,
    join(base, 'src', `${entry}.ts`),
  ];
}

/** Fails with a one-line hint when the built programs are missing (no `pnpm build` yet). */
export function checkBuilt(): void {
  if (FROM_SOURCE) return;
  for (const [pkg, entry] of [
    ['server', 'main'],
    ['agent', 'main'],
    ['cli', 'local/demo-app'],
  ] as const) {
    const f = join(REPO_ROOT, 'packages', pkg, 'dist', `${entry}.js`);
    if (!existsSync(f)) throw new UsageError(`${f} is missing: run "pnpm build" in ${REPO_ROOT}`);
  }
}

const etcdUrls = (c: ClusterPlan) => c.etcd.map((e) => `http://127.0.0.1:${e.client}`);

/** The etcd client URLs of a cluster. */
export const etcdEndpoints = etcdUrls;

/** The admin URL of a cluster's replica `i`. */
export const adminUrl = (c: ClusterPlan, i: number) => `http://127.0.0.1:${c.replicaPorts[i]!.admin}`;

/** Zone of replica `i`. */
export const replicaZone = (c: ClusterPlan, i: number) => c.zones[i % c.zones.length]!;

/** The context name of a cluster's admin credential. */
export const contextName = (plan: MeshPlan, c: ClusterPlan) => `${plan.mesh}-${c.name}`;

/** etcd member `i` of cluster `c`. */
export function etcdSpec(paths: StatePaths, c: ClusterPlan, i: number): ProcSpec {
  const id = `${c.name}/etcd-${i}`;
  const e = c.etcd[i]!;
  const initial = c.etcd.map((m, j) => `${c.name}-m${j}=http://127.0.0.1:${m.peer}`).join(',');
  return {
    id,
    command: 'etcd',
    args: [
      ...['--name', `${c.name}-m${i}`, '--data-dir', join(paths.cluster(c.name), `etcd-${i}`)],
      ...['--listen-client-urls', `http://127.0.0.1:${e.client}`],
      ...['--advertise-client-urls', `http://127.0.0.1:${e.client}`],
      ...['--listen-peer-urls', `http://127.0.0.1:${e.peer}`],
      ...['--initial-advertise-peer-urls', `http://127.0.0.1:${e.peer}`],
      ...['--initial-cluster', initial, '--initial-cluster-state', 'new'],
      ...['--initial-cluster-token', `meridian-local-${c.name}`],
      ...['--heartbeat-interval', '100', '--election-timeout', '1000'],
    ],
    log: paths.log(id),
    pidFile: paths.pid(id),
    marker: paths.dir,
    health: {
      kind: 'http',
      url: `http://127.0.0.1:${e.client}/health`,
      check: (status, body) => status === 200 && body.includes('"true"'),
    },
  };
}

/** NATS server `i` of cluster `c` (its config file is written by `natsConfig`). */
export function natsSpec(paths: StatePaths, c: ClusterPlan, i: number): ProcSpec {
  const id = `${c.name}/nats-${i}`;
  return {
    id,
    command: 'nats-server',
    args: ['-c', natsConfigFile(paths, c, i)],
    log: paths.log(id),
    pidFile: paths.pid(id),
    marker: paths.dir,
    health: {
      kind: 'http',
      url: `http://127.0.0.1:${c.nats[i]!.monitor}/healthz`,
      check: (status) => status === 200,
    },
  };
}

/** Where NATS server `i` of `c` keeps its config. */
export const natsConfigFile = (paths: StatePaths, c: ClusterPlan, i: number) =>
  join(paths.cluster(c.name), `nats-${i}`, 'nats.conf');

/** The config of NATS server `i` of `c`: routes to its cluster, gateways to every other cluster. */
export function natsConfig(paths: StatePaths, plan: MeshPlan, c: ClusterPlan, i: number): string {
  const q = JSON.stringify;
  const n = c.nats[i]!;
  const routes = c.nats.map((s) => q(`nats-route://127.0.0.1:${s.route}`)).join(', ');
  const gateways = plan.clusters
    .map(
      (o) =>
        `    { name: ${q(o.name)}, urls: [${o.nats.map((s) => q(`nats://127.0.0.1:${s.gateway}`)).join(', ')}] }`,
    )
    .join('\n');
  const lines = [
    `# NATS server ${i} of cluster ${c.name} (meridian up). Routes join the cluster's servers; the`,
    '# gateway joins it to the other clusters of the mesh.',
    `server_name: ${q(`${c.name}-${i}`)}`,
    `listen: ${q(`127.0.0.1:${n.client}`)}`,
    `http: ${q(`127.0.0.1:${n.monitor}`)}`,
    `jetstream { store_dir: ${q(join(paths.cluster(c.name), `nats-${i}`, 'js'))}, max_memory_store: 64MB, max_file_store: 256MB }`,
  ];
  // A lone server of a lone cluster runs standalone: with a cluster block, JetStream would wait for
  // a meta leader among peers that do not exist.
  if (plan.clusters.length === 1 && c.nats.length === 1) return `${lines.join('\n')}\n`;
  lines.push(`cluster { name: ${q(c.name)}, listen: ${q(`127.0.0.1:${n.route}`)}, routes: [${routes}] }`);
  if (plan.clusters.length > 1)
    lines.push(
      'gateway {',
      `  name: ${q(c.name)}`,
      `  listen: ${q(`127.0.0.1:${n.gateway}`)}`,
      '  gateways: [',
      gateways,
      '  ]',
      '}',
    );
  return `${lines.join('\n')}\n`;
}

/** Replica `i` of cluster `c`. */
export function replicaSpec(paths: StatePaths, plan: MeshPlan, c: ClusterPlan, i: number): ProcSpec {
  const id = `${c.name}/replica-${i}`;
  const r = c.replicaPorts[i]!;
  return {
    id,
    command: process.execPath,
    args: [
      ...program('server', 'main', ['--max-semi-space-size=64']),
      ...['--mesh-id', plan.mesh, '--cluster-id', c.name, '--replica-id', `${c.name}-${i}`],
      ...['--locality', `${c.region}/${replicaZone(c, i)}`],
      ...['--etcd-endpoints', etcdUrls(c).join(',')],
      ...['--trust-domain', plan.trustDomain],
      ...['--xds-address', 'off', '--ca-address', `127.0.0.1:${r.ca}`, '--ca-kek-file', paths.kek(c.name)],
      ...['--admin-address', `127.0.0.1:${r.admin}`, '--monitoring-address', `127.0.0.1:${r.monitoring}`],
      ...['--nats-url', c.nats.map((n) => `nats://127.0.0.1:${n.client}`).join(',')],
      ...['--snapshot-dir', join(paths.cluster(c.name), `replica-${i}`)],
      ...['--federation-grace', '10', '--debounce-ms', '50'],
    ],
    log: paths.log(id),
    pidFile: paths.pid(id),
    marker: paths.dir,
    // Ready and reaching etcd: /readyz answers 200 also while degraded (serving its last snapshot,
    // writes refused), which a replica is for a moment after etcd restarts; `up` applies next.
    health: {
      kind: 'http',
      url: `http://127.0.0.1:${r.monitoring}/readyz`,
      check: (s, body) => s === 200 && body.trim() === 'ok',
    },
  };
}
