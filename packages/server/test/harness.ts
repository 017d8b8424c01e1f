// Test/bench harness: meridiand replicas as real processes (node + tsx on the sources), simulated
// proxies, admin API calls. Every process started here is killed by `stopAll` and on exit.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client, credentials } from '@grpc/grpc-js';
import type { RootCa } from '@meridian/ca';
import { TypeUrl } from '@meridian/envoy';
import { eventually, SimulatedProxy } from '@meridian/testkit';

/** The repository root. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Runs a TypeScript file from the sources as a child process. */
export function spawnTs(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  options: { stdin?: boolean } = {},
): ChildProcess {
  const child = spawn(process.execPath, ['--conditions=@meridian/source', '--import', 'tsx', file, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

const adminTokens = new Map<string, Promise<string>>();

/**
 * An admin token (role admin) for the cluster `meshId`/`clusterId` of the etcd at `endpoints`, made
 * as `meridian auth bootstrap` makes one: signing key, role binding and token written straight to
 * etcd. Cached per keyspace, so every replica of a test shares it.
 */
export function adminTokenFor(
  endpoints: readonly string[],
  meshId: string,
  clusterId: string,
): Promise<string> {
  const cacheKey = `${endpoints.join(',')}|${meshId}|${clusterId}`;
  let token = adminTokens.get(cacheKey);
  if (!token) {
    token = (async () => {
      const { bootstrapCredential, operatorSubject } = await import('@meridian/auth');
      const { EtcdStore, Keyspace } = await import('@meridian/store');
      const store = await EtcdStore.connect({ endpoints, keyspace: Keyspace.of(meshId, clusterId) });
      try {
        const out = await bootstrapCredential(store, {
          subject: operatorSubject('cluster.local', 'test-admin'),
          role: 'admin',
          bindingName: 'test-admin',
          ttlSeconds: 24 * 3600,
        });
        return out.token;
      } finally {
        await store.close();
      }
    })();
    token.catch(() => adminTokens.delete(cacheKey));
    adminTokens.set(cacheKey, token);
  }
  return token;
}

/** Headers of an authenticated admin API call (`content-type` when there is a body). */
export async function adminHeaders(token: string, body?: string): Promise<Record<string, string>> {
  return {
    authorization: `Bearer ${token}`,
    ...(body === undefined
      ? {}
      : { 'content-type': body.trimStart().startsWith('{') ? 'application/json' : 'application/yaml' }),
  };
}

/**
 * `fetch` on an in-process replica's admin API with its cluster's admin token (and a YAML/JSON
 * content-type when there is a body).
 */
export async function adminFetch(
  replica: {
    readonly adminAddress: string;
    readonly options: { etcdEndpoints: readonly string[]; meshId: string; clusterId: string };
  },
  path: string,
  init: { method?: string; body?: string } = {},
): Promise<Response> {
  const o = replica.options;
  const token = await adminTokenFor(o.etcdEndpoints, o.meshId, o.clusterId);
  return fetch(`http://${replica.adminAddress}${path}`, {
    ...init,
    headers: await adminHeaders(token, init.body),
    signal: AbortSignal.timeout(15_000),
  });
}

/** Settings of one replica process. */
export interface ReplicaSpec {
  readonly id: string;
  readonly etcd: readonly string[];
  readonly xdsPort: number;
  readonly adminPort: number;
  readonly extraArgs?: readonly string[];
}

/** One meridiand process. */
export class ReplicaProcess {
  child: ChildProcess | undefined;
  readonly output: string[] = [];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({
    code: null,
    signal: null,
  });

  constructor(readonly spec: ReplicaSpec) {}

  /** The value of `flag` in the replica's arguments (the last one wins, as in meridiand). */
  #arg(flag: string, fallback: string): string {
    const args = this.spec.extraArgs ?? [];
    const i = args.lastIndexOf(flag);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
  }

  /** The admin token of this replica's cluster (role admin). */
  token(): Promise<string> {
    return adminTokenFor(this.spec.etcd, this.#arg('--mesh-id', 'test'), this.#arg('--cluster-id', 'c1'));
  }

  get xds(): string {
    return `127.0.0.1:${this.spec.xdsPort}`;
  }

  get admin(): string {
    return `http://127.0.0.1:${this.spec.adminPort}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts the process and waits until /readyz answers 200. */
  async start(timeoutMs = 60_000): Promise<void> {
    const s = this.spec;
    const child = spawnTs(MAIN, [
      '--mesh-id',
      'test',
      '--cluster-id',
      'c1',
      '--locality',
      'region1/zone1',
      '--etcd-endpoints',
      s.etcd.join(','),
      '--xds-address',
      this.xds,
      '--admin-address',
      `127.0.0.1:${s.adminPort}`,
      '--monitoring-address',
      '127.0.0.1:0',
      '--replica-id',
      s.id,
      ...(s.extraArgs ?? []),
    ]);
    this.child = child;
    this.exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line) this.output.push(line);
      if (this.output.length > 2000) this.output.splice(0, this.output.length - 2000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    await eventually(
      `${s.id} ready`,
      async () => {
        if (!this.running) throw new Error(`${s.id} exited:\n${this.output.slice(-20).join('\n')}`);
        const res = await fetch(`${this.admin}/readyz`, { signal: AbortSignal.timeout(1000) });
        await res.text();
        return res.status === 200;
      },
      timeoutMs,
      100,
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\n${this.output.slice(-20).join('\n')}`);
    });
  }

  /** Sends `signal` and waits for the exit. */
  async kill(
    signal: NodeJS.Signals = 'SIGKILL',
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child?.kill(signal);
    return this.exit;
  }

  async getJson<T>(path: string): Promise<T> {
    const res = await fetch(`${this.admin}${path}`, {
      headers: await adminHeaders(await this.token()),
      signal: AbortSignal.timeout(5000),
    });
    return (await res.json()) as T;
  }

  async text(path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`${this.admin}${path}`, {
      headers: await adminHeaders(await this.token()),
      signal: AbortSignal.timeout(5000),
    });
    return { status: res.status, body: await res.text() };
  }

  /** Calls the config API; returns status and parsed body. */
  async api(
    method: string,
    path: string,
    body?: string,
    timeoutMs = 15_000,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${this.admin}${path}`, {
      method,
      headers: await adminHeaders(await this.token(), body),
      ...(body === undefined ? {} : { body }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  apply(yaml: string): Promise<{ status: number; body: Record<string, unknown> }> {
    return this.api('POST', '/apis/v1/apply', yaml);
  }
}

/** Starts replicas together. */
export async function startReplicas(specs: readonly ReplicaSpec[]): Promise<ReplicaProcess[]> {
  const replicas = specs.map((s) => new ReplicaProcess(s));
  const results = await Promise.allSettled(replicas.map((r) => r.start()));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(replicas.map((r) => r.kill()));
    throw (failed as PromiseRejectedResult).reason;
  }
  return replicas;
}

/** Every xDS type, subscribed by wildcard in Envoy's order. */
export const ALL_TYPES = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
];

/** A simulated sidecar in namespace `default`. */
export function sidecar(
  i: number,
  variant: 'sotw' | 'delta',
  ip = `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
): SimulatedProxy {
  return new SimulatedProxy({
    nodeId: `sidecar~${ip}~client-${i}.default~default.svc.cluster.local`,
    metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c1', LABELS: { app: 'client' } },
    variant,
    subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
  });
}

/** A gRPC channel to a replica's xDS port. */
export function xdsClient(address: string): Client {
  return new Client(address, credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.max_receive_message_length': -1,
  });
}

/** Waits (30 s at most) until the last-known-good snapshot `file` has been written at `revision` or later. */
export async function snapshotWritten(file: string, revision: number): Promise<void> {
  await eventually(
    'snapshot written',
    () => {
      const header = JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!) as { revision: number };
      return header.revision >= revision;
    },
    30_000,
    50,
  );
}

/** name -> version of what a proxy holds of one type. */
export function held(proxy: SimulatedProxy, typeUrl: string): Map<string, string> {
  return new Map(proxy.state.get(typeUrl)?.resources ?? []);
}

/** The config the benchmark and the fan-out floor use: one ServiceEntry and a VirtualService whose
 * timeout is `round` seconds (so each round changes one route). */
export function benchConfig(round: number): string {
  const host = 'reviews.default.svc.cluster.local';
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [${host}]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.8.0.1, labels: {app: reviews}}, {address: 10.8.0.2, labels: {app: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [${host}]
  http:
  - timeout: ${round + 1}s
    route:
    - destination: {host: ${host}, port: {number: 9080}}
`;
}

/** What installClusterCaForTest put in etcd. */
export interface TestClusterCa {
  readonly root: RootCa;
  /** The KEK, also written (mode 0600) to the `kekFile` given. */
  readonly kekText: string;
  /** The private key signing bootstrap tokens (its public JWK is published). */
  readonly signingKeyPem: string;
}

/**
 * Installs a fresh cluster CA (an ECDSA P-256 root and the intermediate of cluster `c1`) and a bootstrap
 * token signing key into the etcd keyspace `meshId`/`c1`, and writes the KEK to `kekFile`, as a replica
 * started with `--ca-kek-file kekFile` expects. (@meridian/ca and @meridian/store are loaded only here,
 * so processes importing this harness for other helpers do not load them.)
 */
export async function installClusterCaForTest(
  endpoints: readonly string[],
  meshId: string,
  kekFile: string,
  trustDomain = 'cluster.local',
): Promise<TestClusterCa> {
  const ca = await import('@meridian/ca');
  const { EtcdStore, Keyspace } = await import('@meridian/store');
  const store = await EtcdStore.connect({ endpoints, keyspace: Keyspace.of(meshId, 'c1') });
  try {
    const kekText = ca.generateKek();
    writeFileSync(kekFile, kekText, { mode: 0o600 });
    const root = ca.createRootCa({ trustDomain, keyType: 'ecdsa-p256' });
    const material = ca.createIntermediateCa({ root, clusterId: 'c1', trustDomain, keyType: 'ecdsa-p256' });
    await ca.installClusterCa(ca.caStoreFrom(store), material, ca.parseKek(kekText, 'test'));
    const signing = await ca.generateTokenSigningKey();
    await ca.publishTokenKey(ca.caStoreFrom(store), signing.publicJwk);
    return { root, kekText, signingKeyPem: signing.privateKeyPem };
  } finally {
    await store.close();
  }
}
