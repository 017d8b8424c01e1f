// The cluster the replica suites run against (replicas.test.ts, replicas-failover.test.ts): a real
// 3-member etcd and 3 meridiand processes (a, b, c), simulated proxies connected to them, the
// meridian CLI with the cluster's admin token, and the reviews service and route the tests apply.
// On a failed test the replicas' last log lines are printed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@grpc/grpc-js';
import { TypeUrl } from '@meridian/envoy';
import { type EtcdCluster, freePorts, type SimulatedProxy, startEtcdCluster } from '@meridian/testkit';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { held, type ReplicaProcess, spawnTs, startReplicas, xdsClient } from './harness.js';

const CLI = fileURLToPath(new URL('../../cli/src/main.ts', import.meta.url));

export const HOST = 'reviews.default.svc.cluster.local';
const CLUSTER = `outbound|9080||${HOST}`;
export const SERVICE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [${HOST}]
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  resolution: STATIC
  workloadSelector:
    labels:
      app: reviews
`;
export const routeTo = (subsetTimeout: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [${HOST}]
  http:
  - timeout: ${subsetTimeout}
    route:
    - destination:
        host: ${HOST}
        port:
          number: 9080
`;

/** Whether a proxy holds the reviews cluster (a SotW proxy keeps resources by position, not name:
 * the three fixed clusters plus reviews). */
export const hasCluster = (p: SimulatedProxy) =>
  p.options.variant === 'sotw' ? held(p, TypeUrl.Cluster).size === 4 : held(p, TypeUrl.Cluster).has(CLUSTER);

/** The EDS resources a replica last sent to a proxy, as JSON text. */
export async function edsDump(replica: ReplicaProcess, proxy: SimulatedProxy): Promise<string> {
  const dump = await replica.getJson<Record<string, { eds?: unknown[] }>>(
    `/debug/config_dump?proxy=${encodeURIComponent(proxy.options.nodeId)}`,
  );
  return JSON.stringify(Object.values(dump).map((c) => c.eds ?? []));
}

/** One suite's etcd cluster and replicas ({@link useReplicaCluster}). */
export class ReplicaCluster {
  readonly tmp = mkdtempSync(join(tmpdir(), 'meridian-server-test-'));
  etcd!: EtcdCluster;
  /** The running replicas (a test that kills one leaves the survivors here). */
  replicas!: ReplicaProcess[];
  readonly clients: Client[] = [];
  readonly proxies: SimulatedProxy[] = [];

  connect(proxy: SimulatedProxy, replica: ReplicaProcess, withVersions = false): SimulatedProxy {
    const client = xdsClient(replica.xds);
    this.clients.push(client);
    proxy.connect(client, withVersions);
    if (!this.proxies.includes(proxy)) this.proxies.push(proxy);
    return proxy;
  }

  /** Runs the meridian CLI with the cluster's admin token; resolves with exit code and output. */
  async cli(
    args: string[],
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ code: number | null; out: string; err: string }> {
    const child = spawnTs(CLI, args, {
      // Never the developer's own credentials file.
      MERIDIAN_CREDENTIALS: join(this.tmp, 'no-credentials.yaml'),
      MERIDIAN_TOKEN: await this.replicas[0]!.token(),
      ...env,
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
    });
    return new Promise((resolve) => child.once('exit', (code) => resolve({ code, out, err })));
  }

  async setUp(): Promise<void> {
    this.etcd = await startEtcdCluster({ size: 3, fastElection: true });
    const ports = await freePorts(6);
    this.replicas = await startReplicas(
      ['a', 'b', 'c'].map((id, i) => ({
        id,
        etcd: this.etcd.endpoints,
        xdsPort: ports[2 * i]!,
        adminPort: ports[2 * i + 1]!,
        extraArgs: [
          '--replica-lease-ttl',
          '1',
          '--registration-ttl',
          '15',
          '--debounce-ms',
          '20',
          '--store-timeout-ms',
          '1500',
          '--log-level',
          'debug',
        ],
      })),
    );
  }

  /** Prints each replica's last log lines (after a failed test). */
  printLastLines(): void {
    for (const r of this.replicas ?? []) {
      const lines = r.output
        .filter(
          (l) =>
            !l.includes('"level":10') && !l.includes('proxy connected') && !l.includes('xDS stream ended'),
        )
        .slice(-25)
        .map((l) => l.slice(0, 400));
      console.log(`--- replica ${r.spec.id} (last lines)\n${lines.join('\n')}`);
    }
  }

  async tearDown(): Promise<void> {
    for (const p of this.proxies) p.disconnect();
    for (const c of this.clients) c.close();
    await Promise.all((this.replicas ?? []).map((r) => r.kill('SIGKILL')));
    await this.etcd?.stop();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** A {@link ReplicaCluster} started before the file's tests and stopped after them. */
export function useReplicaCluster(): ReplicaCluster {
  const cluster = new ReplicaCluster();
  beforeAll(() => cluster.setUp(), 120_000);
  afterEach((ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    cluster.printLastLines();
  });
  afterAll(() => cluster.tearDown(), 60_000);
  return cluster;
}
