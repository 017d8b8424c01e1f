// `meridian up`: a whole local mesh from a topology file, step by step, reusing whatever already runs.
// Per cluster: etcd members, NATS servers (routes within the cluster, gateways to every other
// cluster), the cluster's intermediate CA under one mesh root (installed in its etcd), meridiand
// replicas with localities and federation, an admin credential, and the demo application (echo v1
// and v2 behind meridian-agents that register them, a proxyless gRPC client behind its own agent).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { type CliContext, UsageError } from '../context.js';
import { adminApply, adminGet, clusterToken, type FederationInfo, type ReplicaInfo } from './admin.js';
import type { TrafficFile } from './demo-app.js';
import {
  adminUrl,
  type ClusterPlan,
  checkBuilt,
  contextName,
  DEFAULT_TOPOLOGY,
  etcdEndpoints,
  etcdSpec,
  loadPlan,
  type MeshPlan,
  makePlan,
  natsConfig,
  natsConfigFile,
  natsSpec,
  program,
  replicaSpec,
  replicaZone,
  StatePaths,
  savePlan,
  shapeOf,
  stateFlag,
} from './plan.js';
import { ensureStarted, type ProcSpec, probe, readJson, StartError, tail, waitHealthy } from './procs.js';
import { Progress } from './progress.js';
import { overrideTopology, parseTopology } from './topology.js';

/** Flags of `meridian up`. */
export interface UpOptions {
  readonly topology?: string;
  readonly clusters?: number;
  readonly replicas?: number;
  readonly stateDir: string;
  /** Bound on each wait (default 120 s). */
  readonly timeoutMs?: number;
}

/** The demo service every cluster runs. */
export const DEMO_HOST = 'echo.demo.svc.cluster.local';
export const DEMO_PORT = 7070;
export const DEMO_TARGET = `${DEMO_HOST}:${DEMO_PORT}`;

const DEMO_CONFIG = `# The demo service (meridian up): echo v1 and v2 register through their agents.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: demo}
spec:
  hosts: [${DEMO_HOST}]
  location: MESH_INTERNAL
  ports: [{number: ${DEMO_PORT}, name: grpc, protocol: GRPC}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: demo}
spec:
  host: ${DEMO_HOST}
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 15s}
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
`;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Polls `check` every `everyMs` until it returns a value; fails with `what` after `timeoutMs`. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 250,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`);
    await sleep(everyMs);
  }
}

/** Starts every spec (reusing those that run) and waits until each is healthy. */
async function startAll(
  specs: readonly ProcSpec[],
  timeoutMs: number,
  note: (d: string) => void,
): Promise<string> {
  let started = 0;
  for (const s of specs) if ((await ensureStarted(s)).started) started++;
  let healthy = 0;
  note(`0/${specs.length} healthy`);
  await Promise.all(
    specs.map(async (s) => {
      await waitHealthy(s, timeoutMs);
      note(`${++healthy}/${specs.length} healthy`);
    }),
  );
  return started === 0
    ? `${specs.length} running (reused)`
    : `${started} started${specs.length > started ? `, ${specs.length - started} reused` : ''}`;
}

/** Resolves the plan: the state dir's, or a new one from the topology and overrides. */
async function resolvePlan(paths: StatePaths, o: UpOptions): Promise<{ plan: MeshPlan; fresh: boolean }> {
  const existing = await loadPlan(paths);
  const file = resolve(o.topology ?? existing?.topologyFile ?? DEFAULT_TOPOLOGY);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (existing && o.topology === undefined) return { plan: existing, fresh: false };
    throw new UsageError(
      `--topology ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  const wanted = overrideTopology(parseTopology(text, file), o);
  if (existing) {
    const explicit = o.topology !== undefined || o.clusters !== undefined || o.replicas !== undefined;
    if (explicit && shapeOf(existing) !== shapeOf(wanted))
      throw new UsageError(
        `${paths.dir} holds another mesh (${existing.clusters.map((c) => `${c.name}×${c.replicas}`).join(', ')}); run "meridian down --purge${stateFlag(paths)}" first or pick another --state-dir`,
      );
    return { plan: existing, fresh: false };
  }
  const plan = await makePlan(wanted, file);
  await savePlan(paths, plan);
  return { plan, fresh: true };
}

function commandOnPath(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** Runs `meridian up`. */
export async function up(ctx: CliContext, o: UpOptions): Promise<void> {
  const paths = new StatePaths(resolve(o.stateDir));
  const timeout = o.timeoutMs ?? 120_000;
  checkBuilt();
  for (const [cmd, pkg] of [
    ['etcd', 'etcd-server'],
    ['nats-server', 'nats-server'],
  ] as const)
    if (!commandOnPath(cmd))
      throw new UsageError(`${cmd} is not on PATH (scripts/setup.sh installs it; or apt-get install ${pkg})`);
  const progress = new Progress(ctx);
  ctx.out(`meridian up: state and logs in ${paths.dir}`);
  try {
    const { plan } = await progress.step(
      'topology',
      () => resolvePlan(paths, o),
      ({ plan, fresh }) =>
        `${plan.clusters.map((c) => `${c.name} (${c.region}, ${plural(c.replicas, 'replica')})`).join(', ')}${fresh ? '; ports chosen and saved in state.json' : '; from state.json'}`,
    );
    await progress.step('etcd', (note) =>
      startAll(
        plan.clusters.flatMap((c) => c.etcd.map((_, i) => etcdSpec(paths, c, i))),
        timeout,
        note,
      ),
    );
    await progress.step('NATS', async (note) => {
      for (const c of plan.clusters)
        for (let i = 0; i < c.nats.length; i++) {
          const file = natsConfigFile(paths, c, i);
          await mkdir(join(file, '..'), { recursive: true });
          await writeFile(file, natsConfig(paths, plan, c, i));
        }
      const r = await startAll(
        plan.clusters.flatMap((c) => c.nats.map((_, i) => natsSpec(paths, c, i))),
        timeout,
        note,
      );
      note('waiting for the gateways');
      await until('NATS gateways between every pair of clusters', () => gatewaysUp(plan), timeout);
      return plan.clusters.length > 1 ? `${r}; gateways linked` : r;
    });
    await progress.step('mesh CA', (note) => ensureCa(paths, plan, note));
    await progress.step('replicas', (note) =>
      startAll(
        plan.clusters.flatMap((c) => c.replicaPorts.map((_, i) => replicaSpec(paths, plan, c, i))),
        timeout,
        note,
      ),
    );
    const user = await progress.step('admin credentials', () => ensureCredentials(paths, plan));
    if (plan.demo.enabled) {
      await progress.step('demo config', async () => {
        for (const c of plan.clusters)
          await adminApply(c, 0, (await clusterToken(paths, plan, c))!, DEMO_CONFIG);
        return `ServiceEntry and DestinationRule echo.demo in ${plural(plan.clusters.length, 'cluster')}`;
      });
      await progress.step('demo backends', async (note) => {
        const specs = plan.clusters.flatMap((c) => demoBackendSpecs(paths, plan, c));
        await prepareDemo(paths, plan);
        const r = await startAll(specs, timeout, note);
        note('waiting for their registrations');
        await until(
          'echo v1 and v2 registered in every cluster',
          async () => {
            for (const c of plan.clusters) {
              const token = await clusterToken(paths, plan, c);
              let n = 0;
              for (let i = 0; i < c.replicas; i++)
                n += (await adminGet<ReplicaInfo>(c, i, token, '/debug/replica'))?.registrations ?? 0;
              if (n < 2) return false;
            }
            return true;
          },
          timeout,
        );
        return `${r}; v1 and v2 registered in every cluster`;
      });
      await progress.step('demo clients', async (note) => {
        const r = await startAll(
          plan.clusters.flatMap((c) => demoClientSpecs(paths, plan, c)),
          timeout,
          note,
        );
        note('waiting for answered calls');
        await until(
          'demo traffic answered in every cluster',
          async () => {
            for (const c of plan.clusters) {
              const t = await readJson<TrafficFile>(paths.traffic(c.name)).catch(() => undefined);
              if (!t?.recent.some(([at, from]) => from !== '' && at > Date.now() - 3000)) return false;
            }
            return true;
          },
          timeout,
        );
        return `${r}; calls answered in every cluster`;
      });
    }
    await progress.step('federation', async () => {
      await until('every cluster importing every other cluster', () => federated(paths, plan), timeout);
      return plan.clusters.length > 1 ? 'every cluster imports every other cluster' : 'single cluster';
    });
    ctx.out('');
    ctx.out(`mesh "${plan.mesh}" is up in ${progress.elapsed()}.`);
    const { status } = await import('./status.js');
    await status(ctx, { stateDir: paths.dir });
    ctx.out('');
    ctx.out('Next:');
    ctx.out(
      `  admin credential: user "${user}", contexts ${plan.clusters.map((c) => `"${contextName(plan, c)}"`).join(', ')} in ${paths.credentials}${process.env.MERIDIAN_CREDENTIALS ? ` and ${process.env.MERIDIAN_CREDENTIALS}` : ' and ~/.meridian/credentials.yaml'} (current: "${contextName(plan, plan.clusters[0]!)}")`,
    );
    ctx.out(`  admin URLs: ${plan.clusters.map((c) => `${c.name} ${adminUrl(c, 0)}`).join(', ')}`);
    ctx.out(
      `  meridian get se -n demo -o yaml        meridian --context ${contextName(plan, plan.clusters.at(-1)!)} proxy-status`,
    );
    ctx.out(
      `  meridian status${stateFlag(paths)}    meridian demo failover${stateFlag(paths)}    meridian down${stateFlag(paths)}`,
    );
    ctx.out(`  logs: ${paths.logs}`);
  } catch (error) {
    if (error instanceof StartError) {
      const last = tail(error.log);
      if (last) ctx.err(`last lines of ${error.log}:\n${last}`);
      throw new Error(
        `${error.message}; log: ${error.log} (what started keeps running: meridian down${stateFlag(paths)} stops it)`,
      );
    }
    if (error instanceof UsageError) throw error;
    throw new Error(
      `${(error as Error).message} (logs in ${paths.logs}; meridian down${stateFlag(paths)} stops what started)`,
      {
        cause: error,
      },
    );
  }
}

async function gatewaysUp(plan: MeshPlan): Promise<boolean> {
  if (plan.clusters.length < 2) return true;
  for (const c of plan.clusters)
    for (const n of c.nats) {
      try {
        const res = await fetch(`http://127.0.0.1:${n.monitor}/gatewayz`, {
          signal: AbortSignal.timeout(2000),
        });
        const gz = (await res.json()) as { outbound_gateways?: Record<string, { connection?: unknown }> };
        for (const o of plan.clusters)
          if (o.name !== c.name && !gz.outbound_gateways?.[o.name]?.connection) return false;
      } catch {
        return false;
      }
    }
  return true;
}

async function ensureCa(paths: StatePaths, plan: MeshPlan, note: (d: string) => void): Promise<string> {
  const ca = await import('@meridian/ca');
  const { EtcdStore, Keyspace } = await import('@meridian/store');
  const made: string[] = [];
  let root: Awaited<ReturnType<typeof ca.readRootCa>>;
  if (existsSync(join(paths.rootDir, 'root-key.pem'))) root = await ca.readRootCa(paths.rootDir);
  else {
    note('mesh root');
    root = ca.createRootCa({ trustDomain: plan.trustDomain, keyType: 'ecdsa-p256' });
    await ca.writeRootCa(paths.rootDir, root);
    made.push('root');
  }
  for (const c of plan.clusters) {
    const dir = paths.caDir(c.name);
    const installed = join(dir, '.installed');
    if (existsSync(installed)) continue;
    note(`intermediate of ${c.name}`);
    const m = ca.createIntermediateCa({
      root,
      clusterId: c.name,
      trustDomain: plan.trustDomain,
      keyType: 'ecdsa-p256',
    });
    await ca.writePluginCa(dir, m);
    const kek = ca.generateKek();
    await writeFile(paths.kek(c.name), kek, { mode: 0o600 });
    const signing = await ca.generateTokenSigningKey();
    await writeFile(paths.tokenKey(c.name), signing.privateKeyPem, { mode: 0o600 });
    const store = await EtcdStore.connect({
      endpoints: etcdEndpoints(c),
      keyspace: Keyspace.of(plan.mesh, c.name),
    });
    try {
      await ca.installClusterCa(ca.caStoreFrom(store), m, ca.parseKek(kek, paths.kek(c.name)));
      await ca.publishTokenKey(ca.caStoreFrom(store), signing.publicJwk);
    } finally {
      await store.close();
    }
    await writeFile(installed, `${new Date().toISOString()}\n`);
    made.push(`intermediate ${c.name}`);
  }
  return made.length === 0
    ? `root and ${plan.clusters.length} intermediates in place (reused)`
    : `created ${made.join(', ')}; installed in each cluster's etcd (key sealed)`;
}

async function ensureCredentials(paths: StatePaths, plan: MeshPlan): Promise<string> {
  const { bootstrapCredential, operatorSubject } = await import('@meridian/auth');
  const { defaultCredentialsPath, saveContext } = await import('@meridian/auth/credentials');
  const { EtcdStore, Keyspace } = await import('@meridian/store');
  let user = 'admin';
  try {
    user =
      userInfo()
        .username.toLowerCase()
        .replace(/[^a-z0-9-]/g, '-') || 'admin';
  } catch {
    // no user name: admin
  }
  // Saved last to first, so the first cluster's context ends as the current one.
  for (const c of [...plan.clusters].reverse()) {
    let token = await clusterToken(paths, plan, c).catch(() => undefined);
    if (token && !(await adminGet(c, 0, token, '/apis/v1/auth/whoami'))) token = undefined;
    if (!token) {
      const store = await EtcdStore.connect({
        endpoints: etcdEndpoints(c),
        keyspace: Keyspace.of(plan.mesh, c.name),
      });
      try {
        token = (
          await bootstrapCredential(store, {
            subject: operatorSubject(plan.trustDomain, user),
            role: 'admin',
            bindingName: user,
            ttlSeconds: 30 * 86_400,
          })
        ).token;
      } finally {
        await store.close();
      }
    }
    const context = { name: contextName(plan, c), server: adminUrl(c, 0), token };
    await saveContext(paths.credentials, context);
    await saveContext(defaultCredentialsPath(), context);
  }
  return user;
}

/** Tokens, bootstrap files and directories of the demo (fresh bootstrap tokens on every up). */
async function prepareDemo(paths: StatePaths, plan: MeshPlan): Promise<void> {
  const { createBootstrapToken } = await import('@meridian/ca');
  for (const c of plan.clusters) {
    const dir = paths.demo(c.name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const signingKeyPem = await readFile(paths.tokenKey(c.name), 'utf8');
    for (const sa of ['echo', 'client']) {
      const token = await createBootstrapToken({
        signingKeyPem,
        identity: { trustDomain: plan.trustDomain, namespace: 'demo', serviceAccount: sa },
        ttlSeconds: 3600,
      });
      await writeFile(join(dir, `${sa}.token`), token, { mode: 0o600 });
    }
    const bootstrap = join(dir, 'client-grpc-bootstrap.json');
    if (existsSync(bootstrap)) continue;
    const [node, ...args] = [process.execPath, ...program('agent', 'main')];
    const r = spawnSync(
      node!,
      [
        ...args,
        'bootstrap',
        ...['--kind', 'grpc', '--ip', '127.0.0.1', '--pod', `client-${c.name}`, '--namespace', 'demo'],
        ...['--service-account', 'client', '--cluster-id', c.name, '--mesh-id', plan.mesh],
        ...['--labels', 'app=client', '--locality', `${c.region}/${replicaZone(c, 0)}`],
        ...['--agent-address', `127.0.0.1:${c.demo.agentClient}`, '--cert-dir', join(dir, 'client-certs')],
        ...['--out', bootstrap],
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0)
      throw new Error(
        `meridian-agent bootstrap for client-${c.name} failed: ${(r.stderr || r.stdout).trim().split('\n')[0]}`,
      );
  }
}

/** A meridian-agent beside a demo workload of `c`. */
function agentSpec(
  paths: StatePaths,
  plan: MeshPlan,
  c: ClusterPlan,
  o: {
    role: string;
    sa: string;
    listen: number;
    metrics: number;
    zone: string;
    labels: string;
    register?: { port: number };
  },
): ProcSpec {
  const id = `${c.name}/agent-${o.role}`;
  const dir = join(paths.demo(c.name), `agent-${o.role}`);
  return {
    id,
    command: process.execPath,
    args: [
      ...program('agent', 'main'),
      'run',
      ...['--seeds', c.replicaPorts.map((r) => `127.0.0.1:${r.ca}`).join(',')],
      ...[
        '--root-cert',
        join(paths.rootDir, 'root-cert.pem'),
        '--token-file',
        join(paths.demo(c.name), `${o.sa}.token`),
      ],
      ...[
        '--ip',
        '127.0.0.1',
        '--pod',
        `${o.role}-${c.name}`,
        '--namespace',
        'demo',
        '--service-account',
        o.sa,
      ],
      ...['--cluster-id', c.name, '--mesh-id', plan.mesh, '--trust-domain', plan.trustDomain],
      ...['--labels', o.labels, '--locality', `${c.region}/${o.zone}`],
      ...['--listen', `127.0.0.1:${o.listen}`, '--metrics-address', `127.0.0.1:${o.metrics}`],
      ...['--cache-dir', join(dir, 'cache'), '--cert-dir', join(dir, 'certs')],
      ...(o.register
        ? [
            '--register',
            `${o.role}-${c.name}`,
            '--ports',
            `grpc=${o.register.port}`,
            '--probe',
            `tcp:${o.register.port}`,
          ]
        : []),
    ],
    log: paths.log(id),
    pidFile: paths.pid(id),
    marker: paths.dir,
    health: { kind: 'http', url: `http://127.0.0.1:${o.metrics}/metrics`, check: (s) => s === 200 },
  };
}

/** The echo backends of `c` (one process serving v1 and v2) and their two agents. */
export function demoBackendSpecs(paths: StatePaths, plan: MeshPlan, c: ClusterPlan): ProcSpec[] {
  const id = `${c.name}/echo`;
  const zone2 = c.zones[1 % c.zones.length]!;
  return [
    echoSpec(paths, c, id),
    agentSpec(paths, plan, c, {
      role: 'echo-v1',
      sa: 'echo',
      listen: c.demo.agentV1,
      metrics: c.demo.metricsV1,
      zone: c.zones[0]!,
      labels: 'app=echo,version=v1',
      register: { port: c.demo.v1 },
    }),
    agentSpec(paths, plan, c, {
      role: 'echo-v2',
      sa: 'echo',
      listen: c.demo.agentV2,
      metrics: c.demo.metricsV2,
      zone: zone2,
      labels: 'app=echo,version=v2',
      register: { port: c.demo.v2 },
    }),
  ];
}

/** The echo process of `c` (v1 and v2). */
export function echoSpec(paths: StatePaths, c: ClusterPlan, id = `${c.name}/echo`): ProcSpec {
  return {
    id,
    command: process.execPath,
    args: [
      ...program('cli', 'local/demo-app'),
      'backend',
      ...[
        '--cluster',
        c.name,
        '--v1',
        String(c.demo.v1),
        '--v2',
        String(c.demo.v2),
        '--state-dir',
        paths.dir,
      ],
    ],
    log: paths.log(id),
    pidFile: paths.pid(id),
    marker: paths.dir,
    health: { kind: 'tcp', port: c.demo.v2 },
  };
}

/** The demo client of `c` and its agent. */
export function demoClientSpecs(paths: StatePaths, plan: MeshPlan, c: ClusterPlan): ProcSpec[] {
  const id = `${c.name}/client`;
  return [
    agentSpec(paths, plan, c, {
      role: 'client',
      sa: 'client',
      listen: c.demo.agentClient,
      metrics: c.demo.metricsClient,
      zone: c.zones[0]!,
      labels: 'app=client',
    }),
    {
      id,
      command: process.execPath,
      args: [
        ...program('cli', 'local/demo-app'),
        'client',
        ...['--cluster', c.name, '--target', DEMO_TARGET, '--rps', String(plan.demo.rps)],
        ...['--out', paths.traffic(c.name), '--state-dir', paths.dir],
      ],
      env: { GRPC_XDS_BOOTSTRAP: join(paths.demo(c.name), 'client-grpc-bootstrap.json') },
      log: paths.log(id),
      pidFile: paths.pid(id),
      marker: paths.dir,
      health: { kind: 'alive' },
    },
  ];
}

async function federated(paths: StatePaths, plan: MeshPlan): Promise<boolean> {
  if (plan.clusters.length < 2) return true;
  for (const c of plan.clusters) {
    const token = await clusterToken(paths, plan, c);
    for (let i = 0; i < c.replicas; i++) {
      const f = await adminGet<FederationInfo>(c, i, token, '/debug/federation');
      if (!f?.natsConnected) return false;
      for (const o of plan.clusters) {
        if (o.name === c.name) continue;
        const r = f.remoteClusters.find((x) => x.cluster === o.name);
        if (!r || r.stale || !r.synced || (plan.demo.enabled && r.services < 1)) return false;
      }
    }
  }
  return true;
}

/** Health of a spec right now (for status). */
export async function specHealthy(spec: ProcSpec): Promise<boolean> {
  return probe(spec.health);
}
