/**
 * The mesh the dashboard browser tests (browser-session, browser-pages) look at: a 3-member etcd
 * with the cluster CA installed, 3 meridiand processes of cluster c1 serving the dashboard on their
 * admin ports, a replica w of a second cluster c2 federated over one NATS server with JetStream,
 * simulated sidecars (testkit) on b, c and w, demo access logs (frontend -> payments), an operator
 * with role view, and Debian's Chromium (playwright-core) on a fresh profile. Everything started is
 * stopped by `stop()`, also after a start that failed halfway.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@grpc/grpc-js';
import { bootstrapCredential, operatorSubject } from '@meridian/auth';
import { EtcdStore, Keyspace } from '@meridian/store';
import {
  type EtcdCluster,
  eventually,
  freePorts,
  SimulatedProxy,
  type StandaloneNatsServer,
  startEtcdCluster,
  startNats,
} from '@meridian/testkit';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { expect } from 'vitest';
import {
  encodeAccessLogs,
  FRONTEND_IP,
  FRONTEND_YAML,
  httpEntry,
  PAYMENTS_IP,
  PAYMENTS_YAML,
  sidecarNodeId,
  streamAccessLogs,
} from '../../server/test/access-log-client.js';
import {
  ALL_TYPES,
  installClusterCaForTest,
  type ReplicaProcess,
  sidecar,
  startReplicas,
  xdsClient,
} from '../../server/test/harness.js';

const CHROMIUM = '/usr/bin/chromium';
/** Whether Debian's Chromium is installed; the browser tests skip (with a message) when it is not. */
export const haveChromium = existsSync(CHROMIUM);
if (!haveChromium)
  console.warn(
    `dashboard browser tests SKIPPED: ${CHROMIUM} not found (install Debian's chromium: apt-get install -y chromium)`,
  );

const SHOTS = process.env.MERIDIAN_TEST_OUTPUT ?? join(tmpdir(), 'meridian-dashboard-screens');

const FRONTEND = FRONTEND_IP;
const PAYMENTS = PAYMENTS_IP;
const CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.8.0.1, labels: {app: reviews}, locality: region1/zone1}
  - {address: 10.8.0.2, labels: {app: reviews}, locality: region1/zone2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v9, port: {number: 9080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-1, namespace: default}
spec:
  address: 10.8.0.1
  labels: {app: reviews, version: v1}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-from-client, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/client]}}]
    to: [{operation: {methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-only, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny-debug, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: [/debug/*]}}]
---
${PAYMENTS_YAML}---
${FRONTEND_YAML}`;
/** Cluster c2's reviews endpoint: exported over NATS, imported by c1's replicas beside their own. */
const REMOTE_CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.9.0.1, labels: {app: reviews}, locality: region2/zone1}
`;

/** The processes, clients and browser of one test file, filled in as they start. */
export class DashboardMesh {
  etcd: EtcdCluster | undefined;
  /** Cluster c1's replicas a, b and c. */
  replicas: ReplicaProcess[] = [];
  /** Cluster c2's replica w. */
  remote: ReplicaProcess | undefined;
  nats: StandaloneNatsServer | undefined;
  context: BrowserContext | undefined;
  page: Page | undefined;
  /** An admin token of role view (operator `viewer`). */
  viewToken = '';
  readonly clients: Client[] = [];
  readonly proxies: SimulatedProxy[] = [];
  /** Chromium's user data directory, which also holds the cluster CA's key-encryption key. */
  profile: string | undefined;

  /** Starts everything (up to a few minutes under load); on failure, `stop()` still cleans up. */
  async start(): Promise<void> {
    this.profile = mkdtempSync(join(tmpdir(), 'meridian-chromium-'));
    const etcd = await startEtcdCluster({ size: 3, fastElection: true });
    this.etcd = etcd;
    // The cluster CA, so the Mesh page has certificate expiry to show.
    const kekFile = join(this.profile, 'kek');
    await installClusterCaForTest(etcd.endpoints, 'test', kekFile);
    // Federation: one NATS server with JetStream, and a replica of a second cluster c2 (its own
    // keyspace on the same etcd) whose heartbeats c1's replicas import.
    const nats = await startNats({ jetstream: true });
    this.nats = nats;
    const ports = await freePorts(11);
    const replicas = await startReplicas(
      ['a', 'b', 'c'].map((id, i) => ({
        id,
        etcd: etcd.endpoints,
        xdsPort: ports[2 * i]!,
        adminPort: ports[2 * i + 1]!,
        extraArgs: [
          ...['--debounce-ms', '20', '--locality', `region1/zone${i + 1}`, '--telemetry-plaintext', 'on'],
          ...['--ca-address', `127.0.0.1:${ports[6 + i]}`, '--ca-kek-file', kekFile],
          ...['--nats-url', nats.url],
        ],
      })),
    );
    this.replicas = replicas;
    const [remote] = await startReplicas([
      {
        id: 'w',
        etcd: etcd.endpoints,
        xdsPort: ports[9]!,
        adminPort: ports[10]!,
        extraArgs: ['--cluster-id', 'c2', '--locality', 'region2/zone1', '--nats-url', nats.url],
      },
    ]);
    this.remote = remote;
    // A second operator with role view only: enough to look.
    const store = await EtcdStore.connect({ endpoints: etcd.endpoints, keyspace: Keyspace.of('test', 'c1') });
    try {
      await replicas[0]!.token(); // the signing key and the admin binding first
      this.viewToken = (
        await bootstrapCredential(store, {
          subject: operatorSubject('cluster.local', 'viewer'),
          role: 'view',
          bindingName: 'viewer',
          ttlSeconds: 3600,
        })
      ).token;
    } finally {
      await store.close();
    }
    const applied = await replicas[0]!.apply(CONFIG);
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    const remoteApplied = await remote!.apply(REMOTE_CONFIG);
    expect(remoteApplied.status, JSON.stringify(remoteApplied.body)).toBe(200);
    for (const [i, r] of [
      [1, replicas[1]!],
      [2, replicas[2]!],
    ] as const) {
      const client = xdsClient(r.xds);
      this.clients.push(client);
      const p = sidecar(i, i === 1 ? 'delta' : 'sotw');
      p.connect(client);
      this.proxies.push(p);
    }
    // A sidecar of c2 on its replica w: c1's Proxies page lists it from w's convergence summary
    // over NATS (c2's replicas are not asked: their admin keys differ).
    {
      const client = xdsClient(remote!.xds);
      this.clients.push(client);
      const p = new SimulatedProxy({
        nodeId: 'sidecar~10.2.0.9~remote-0.default~default.svc.cluster.local',
        metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c2', LABELS: { app: 'remote' } },
        variant: 'delta',
        subscriptions: ALL_TYPES.map((typeUrl) => ({ typeUrl })),
      });
      p.connect(client);
      this.proxies.push(p);
    }
    await eventually(
      'the sidecars hold all four types',
      () => this.proxies.every((p) => p.state.size === 4),
      30_000,
      50,
    );
    // Demo traffic for the graph: frontend -> payments, 40 answered and 10 failed, reported by the
    // caller's proxy to replicas a and b (Envoy's access-log service).
    const call = (code: number) =>
      httpEntry({
        direction: 'outbound',
        downstream: `${FRONTEND}:41000`,
        upstream: `${PAYMENTS}:8080`,
        upstreamCluster: 'outbound|8080||payments.pay.svc.cluster.local',
        code,
        durationMs: 12,
      });
    const node = sidecarNodeId(FRONTEND, 'frontend-v1', 'shop');
    for (const [r, ok, failed] of [
      [replicas[0]!, 25, 4],
      [replicas[1]!, 15, 6],
    ] as const) {
      await eventually(
        `${r.spec.id} takes the access logs`,
        async () => {
          const sent = await streamAccessLogs(r.xds, [
            encodeAccessLogs(
              {
                http: [
                  ...Array.from({ length: ok }, () => call(200)),
                  ...Array.from({ length: failed }, () => call(503)),
                ],
              },
              node,
            ),
          ]);
          return sent.code === 0;
        },
        30_000,
        50,
      );
    }
    // A fresh profile directory (playwright takes it as the persistent context's user data dir).
    const context = await chromium.launchPersistentContext(this.profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1400, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    this.context = context;
    this.page = await context.newPage();
  }

  /** Stops what was started, the browser first. */
  async stop(): Promise<void> {
    await this.context?.close().catch(() => undefined);
    for (const p of this.proxies) p.disconnect();
    for (const c of this.clients) c.close();
    await Promise.all(
      [...this.replicas, ...(this.remote ? [this.remote] : [])].map((r) => r.kill('SIGKILL')),
    );
    await this.nats?.stop();
    await this.etcd?.stop();
    if (this.profile) rmSync(this.profile, { recursive: true, force: true });
    console.log(`dashboard screenshots: ${SHOTS}`);
  }

  /** Saves a full-page screenshot of the page as `<name>.png` under MERIDIAN_TEST_OUTPUT (or a tmp dir). */
  async shot(name: string): Promise<void> {
    mkdirSync(SHOTS, { recursive: true });
    await this.page!.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }
}
