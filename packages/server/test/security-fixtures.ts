// The cluster the control-plane security suites run against (security.test.ts,
// security-admin-tls.test.ts): a real etcd with the cluster CA installed, two meridiand replicas
// in-process (CA port, plaintext xDS, admin and monitoring ports) whose every log line is kept, the
// operator tokens of each role, and helpers for workload identities, mTLS sidecars and agents.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { type CertificateServiceClient, createCertificateServiceClient, type RootCa } from '@meridian/ca';
import { decodeResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import { WorkloadAgent } from '@meridian/registry';
import { type EtcdCluster, SimulatedProxy, type SotwResponseView, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, expect } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { adminTokenFor, installClusterCaForTest } from './harness.js';
import { issueWorkloadCertificate, type WorkloadCertificate } from './mtls-fixtures.js';

export const TD = 'cluster.local';
export const MESH = 'sectest';

const SERVICES = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
`;

export const VS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  http: [{route: [{destination: {host: reviews.bookinfo.svc.cluster.local}}]}]
`;

export const TLS_OPTIONS = { 'grpc.ssl_target_name_override': 'localhost' };

export type Identity = Pick<WorkloadCertificate, 'uri' | 'keyPem' | 'chain'>;

/** An admin API call over plain HTTP. */
export async function call(
  r: Replica,
  method: string,
  path: string,
  o: { token?: string; body?: string; type?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.type) headers['content-type'] = o.type;
  const res = await fetch(`http://${r.adminAddress}${path}`, {
    method,
    headers,
    ...(o.body === undefined ? {} : { body: o.body }),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, text: await res.text() };
}

/** The endpoint addresses of `reviews` a proxy holds. */
export function reviewsEndpoints(p: SimulatedProxy): string[] {
  const r = p.responses.findLast((x) => x.typeUrl === TypeUrl.ClusterLoadAssignment) as
    | SotwResponseView
    | undefined;
  const out: string[] = [];
  for (const bytes of r?.resources ?? []) {
    const cla = decodeResource(TypeUrl.ClusterLoadAssignment, bytes);
    if (!String(cla.cluster_name).endsWith('|reviews.bookinfo.svc.cluster.local')) continue;
    for (const group of (cla.endpoints ?? []) as EnvoyJson[])
      for (const e of (group.lb_endpoints ?? []) as EnvoyJson[]) {
        const sa = ((e.endpoint as EnvoyJson).address as EnvoyJson).socket_address as EnvoyJson;
        out.push(String(sa.address));
      }
  }
  return out;
}

/** One suite's cluster: set up before its tests, torn down after ({@link useSecurityCluster}). */
export class SecurityCluster {
  readonly tmp = mkdtempSync(join(tmpdir(), 'meridian-security-test-'));
  etcd!: EtcdCluster;
  root!: RootCa;
  signingKeyPem!: string;
  readonly replicas: Replica[] = [];
  readonly clients: grpc.Client[] = [];
  readonly proxies: SimulatedProxy[] = [];
  readonly agents: WorkloadAgent[] = [];
  ca!: CertificateServiceClient;
  /** Every log line the replicas wrote (scanned for secrets). */
  readonly logLines: string[] = [];
  /** Every token the suite made or saw (scanned for in outputs). */
  readonly tokens: string[] = [];
  adminToken!: string;
  viewToken!: string;
  editToken!: string;
  registrarToken!: string;

  startReplica(id: string, extra: readonly string[] = []): Promise<Replica> {
    const logLines = this.logLines;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) logLines.push(line);
        done();
      },
    });
    return Replica.start(
      resolveOptions(
        [
          ...['--mesh-id', MESH, '--cluster-id', 'c1', '--replica-id', id],
          ...['--etcd-endpoints', this.etcd.endpoints.join(','), '--debounce-ms', '10'],
          ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
          ...['--monitoring-address', '127.0.0.1:0'],
          ...['--ca-address', '127.0.0.1:0', '--ca-kek-file', join(this.tmp, 'kek')],
          ...extra,
        ],
        {},
      ),
      { logger: pino({ level: 'debug', base: { replica: id } }, sink) },
    );
  }

  /** Binds `user` to `role` and mints a token for it. */
  async mint(user: string, role: string): Promise<string> {
    const r = this.replicas[0]!;
    const put = await call(r, 'PUT', `/apis/v1/auth/rolebindings/${user}`, {
      token: this.adminToken,
      type: 'application/json',
      body: JSON.stringify({ subject: `spiffe://${TD}/ns/meridian-system/sa/${user}`, role }),
    });
    expect(put.status, put.text).toBe(200);
    const res = await call(r, 'POST', '/apis/v1/auth/tokens', {
      token: this.adminToken,
      type: 'application/json',
      body: JSON.stringify({ user, ttlSeconds: 600 }),
    });
    expect(res.status, res.text).toBe(200);
    const token = (JSON.parse(res.text) as { token: string }).token;
    this.tokens.push(token);
    return token;
  }

  async workloadIdentity(namespace: string, serviceAccount: string): Promise<Identity> {
    const cert = await issueWorkloadCertificate(this.ca, this.signingKeyPem, {
      trustDomain: TD,
      namespace,
      serviceAccount,
    });
    this.tokens.push(cert.token);
    return cert;
  }

  tlsCredentials(who: Identity): grpc.ChannelCredentials {
    return grpc.credentials.createSsl(
      Buffer.from(this.root.certPem),
      Buffer.from(who.keyPem),
      Buffer.from(who.chain.slice(0, -1).join('')),
    );
  }

  /** A sidecar on the CA port with its workload certificate, holding its SDS secrets and EDS. */
  mtlsSidecar(r: Replica, who: Identity, i: number): SimulatedProxy {
    const client = new grpc.Client(r.caAddress, this.tlsCredentials(who), TLS_OPTIONS);
    this.clients.push(client);
    const p = new SimulatedProxy({
      nodeId: `sidecar~10.2.0.${i}~productpage-${i}.bookinfo~bookinfo.svc.cluster.local`,
      metadata: { NAMESPACE: 'bookinfo', CLUSTER_ID: 'c1', LABELS: { app: 'productpage' } },
      variant: 'sotw',
      subscriptions: [
        { typeUrl: TypeUrl.Cluster },
        { typeUrl: TypeUrl.ClusterLoadAssignment },
        { typeUrl: TypeUrl.Secret, names: ['default', 'ROOTCA'] },
      ],
      record: true,
    });
    p.connect(client);
    this.proxies.push(p);
    return p;
  }

  agent(
    address: string,
    spec: { name: string; serviceAccount: string; address: string },
    o: { credentials?: grpc.ChannelCredentials; token?: string } = {},
  ): WorkloadAgent {
    const a = new WorkloadAgent(
      address,
      {
        name: spec.name,
        namespace: 'bookinfo',
        address: spec.address,
        ports: { http: 9080 },
        labels: { app: 'reviews' },
        serviceAccount: spec.serviceAccount,
      },
      {
        ttlSeconds: 10,
        ...(o.credentials ? { credentials: o.credentials, channelOptions: TLS_OPTIONS } : {}),
        ...(o.token ? { token: o.token } : {}),
      },
    );
    this.agents.push(a);
    return a;
  }

  /** etcd with the CA, replicas sec-a and sec-b, a token per role, the reviews service applied. */
  async setUp(): Promise<void> {
    this.etcd = await startEtcd();
    ({ root: this.root, signingKeyPem: this.signingKeyPem } = await installClusterCaForTest(
      this.etcd.endpoints,
      MESH,
      join(this.tmp, 'kek'),
      TD,
    ));
    this.replicas.push(await this.startReplica('sec-a'), await this.startReplica('sec-b'));
    this.adminToken = await adminTokenFor(this.etcd.endpoints, MESH, 'c1');
    this.tokens.push(this.adminToken);
    this.viewToken = await this.mint('viewer', 'view');
    this.editToken = await this.mint('editor', 'edit');
    this.registrarToken = await this.mint('gateway-agent', 'registrar');
    const applied = await call(this.replicas[0]!, 'POST', '/apis/v1/apply', {
      token: this.editToken,
      type: 'application/yaml',
      body: SERVICES,
    });
    expect(applied.status, applied.text).toBe(200);
    this.ca = createCertificateServiceClient(
      this.replicas[0]!.caAddress,
      grpc.credentials.createSsl(Buffer.from(this.root.certPem)),
      TLS_OPTIONS,
    );
  }

  async tearDown(): Promise<void> {
    for (const a of this.agents) a.abandon();
    for (const p of this.proxies) p.disconnect();
    for (const c of this.clients) c.close();
    this.ca?.close();
    await Promise.all(this.replicas.map((r) => r.stop().catch(() => undefined)));
    await this.etcd?.stop();
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** A {@link SecurityCluster} set up before the file's tests and torn down after them. */
export function useSecurityCluster(): SecurityCluster {
  const cluster = new SecurityCluster();
  beforeAll(() => cluster.setUp());
  afterAll(() => cluster.tearDown());
  return cluster;
}
