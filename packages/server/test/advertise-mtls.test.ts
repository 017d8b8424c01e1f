// Replicas bound to 0.0.0.0, as the Kubernetes manifests bind them (issue 16): the rate-limit
// cluster proxies are sent names each replica's advertised host, which its real serving certificate
// carries, so an mTLS client checking that SAN completes its handshake. etcd and in-process replicas
// with the cluster CA, real TLS over loopback (127.0.0.2 stands for a pod IP: the CA port listens on
// every address), workload certificates from the replicas' CreateCertificate.
// - Replica a: `--advertise-address 127.0.0.2 --serving-names meridiand.meridian-system.svc`.
// - Replica b: no --advertise-address: it advertises this host's first non-loopback address, and
//   says so in its log.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { checkServerIdentity, connect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { createCertificateServiceClient, parseKek } from '@meridian/ca';
import { decodeResource, type EnvoyJson, TypeUrl } from '@meridian/envoy';
import {
  type EtcdCluster,
  eventually,
  SimulatedProxy,
  type SotwResponseView,
  startEtcd,
} from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chooseAdvertiseAddress } from '../src/listen-address.js';
import type { ReplicaInfo } from '../src/membership.js';
import { ReplicaMtls } from '../src/mtls.js';
import { resolveOptions } from '../src/options.js';
import { rateLimitServiceClient } from '../src/ratelimit-service.js';
import { Replica } from '../src/replica.js';
import { loadServingMaterial, namesNotCovered, servingMaterialFile } from '../src/serving-material.js';
import { adminFetch, installClusterCaForTest } from './harness.js';
import { issueWorkloadCertificate, upstreamValidationContext } from './mtls-fixtures.js';

const TD = 'cluster.local';
const MESH = 'advertise';
const POD_IP = '127.0.0.2';
const SERVICE = 'meridiand.meridian-system.svc';
const tmp = mkdtempSync(join(tmpdir(), 'meridian-advertise-'));
const snapshots = join(tmp, 'snapshots');
let etcd: EtcdCluster | undefined;
let rootPem = '';
let api: { key: string; chain: string } | undefined;
const replicas: Replica[] = [];
const clients: grpc.Client[] = [];
const proxies: SimulatedProxy[] = [];
const logOf = new Map<string, string[]>();

const CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.shop.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-1, namespace: shop}
spec: {address: 10.9.0.1, ports: {http: 8080}, labels: {app: api}, serviceAccount: api}
---
apiVersion: policy.meridian.io/v1alpha1
kind: RateLimit
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  global: {limits: [{requestsPerUnit: 1000, unit: HOUR}]}
`;

/** A replica bound to 0.0.0.0 (CA port; plaintext xDS off), with `extra` settings. */
async function startReplica(id: string, extra: readonly string[]): Promise<Replica> {
  const lines: string[] = [];
  logOf.set(id, lines);
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const r = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', MESH, '--cluster-id', 'c1', '--replica-id', id],
        ...['--etcd-endpoints', etcd!.endpoints.join(','), '--debounce-ms', '10'],
        ...['--xds-address', 'off', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', '127.0.0.1:0', '--snapshot-dir', join(snapshots, id)],
        ...['--ca-address', '0.0.0.0:0', '--ca-kek-file', join(tmp, 'kek')],
        ...['--rate-limit-plaintext', 'off'],
        ...extra,
      ],
      {},
    ),
    { logger: pino({ level: 'info' }, sink) },
  );
  replicas.push(r);
  return r;
}

const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
const at = (host: string, address: string) => `${host.includes(':') ? `[${host}]` : host}:${portOf(address)}`;

/** TLS to `address`, the server checked against `rootPem` and `name` (SNI and the SAN check). */
function handshake(address: string, name: string): Promise<string> {
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve, reject) => {
    const socket = connect(
      {
        host,
        port: portOf(address),
        ca: rootPem,
        key: api!.key,
        cert: api!.chain,
        ALPNProtocols: ['h2'],
        ...(/^[\d.]+$|:/.test(name) ? {} : { servername: name }),
        // Node's own check, against the name the client stands for having dialled.
        checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert),
      },
      () => {
        resolve(socket.getPeerCertificate().subjectaltname ?? '');
        socket.destroy();
      },
    );
    socket.on('error', reject);
  });
}

/** A rate-limit call to `address` with the api workload's certificate; gRPC checks `address`'s host. */
function shouldRateLimit(address: string, options: grpc.ChannelOptions = {}): Promise<string> {
  const Ctor = rateLimitServiceClient();
  const c = new Ctor(
    address,
    grpc.credentials.createSsl(Buffer.from(rootPem), Buffer.from(api!.key), Buffer.from(api!.chain)),
    options,
  );
  clients.push(c);
  const call = c as unknown as {
    ShouldRateLimit: (
      req: unknown,
      options: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, res: { overall_code: string }) => void,
    ) => void;
  };
  return new Promise((resolve, reject) =>
    call.ShouldRateLimit(
      {
        domain: 'meridian',
        descriptors: [{ entries: [{ key: 'meridian_limit', value: 'shop/api/0' }] }],
        hits_addend: 1,
      },
      { deadline: Date.now() + 10_000 },
      (e, res) => (e ? reject(e) : resolve(res.overall_code)),
    ),
  );
}

/** A sidecar of shop/api on `address` over mTLS (its workload certificate; the replica's SAN checked). */
function sidecar(address: string): SimulatedProxy {
  const channel = new grpc.Client(
    address,
    grpc.credentials.createSsl(Buffer.from(rootPem), Buffer.from(api!.key), Buffer.from(api!.chain)),
  );
  clients.push(channel);
  const p = new SimulatedProxy({
    nodeId: 'sidecar~10.9.0.1~api-1.shop~shop.svc.cluster.local',
    metadata: { NAMESPACE: 'shop', CLUSTER_ID: 'c1', LABELS: { app: 'api' } },
    variant: 'sotw',
    subscriptions: [{ typeUrl: TypeUrl.Cluster }],
    record: true,
  });
  p.connect(channel);
  proxies.push(p);
  return p;
}

/** The rate-limit cluster of `p`'s last CDS response. */
function rateLimitCluster(p: SimulatedProxy): EnvoyJson | undefined {
  const r = p.responses.findLast((x) => x.typeUrl === TypeUrl.Cluster) as SotwResponseView | undefined;
  return r?.resources
    .map((bytes) => decodeResource(TypeUrl.Cluster, bytes))
    .find((c) => c.name === 'meridian-ratelimit');
}

const endpointsOf = (c: EnvoyJson | undefined): string[] =>
  (
    ((c?.load_assignment as EnvoyJson | undefined)?.endpoints as EnvoyJson[] | undefined)?.[0]
      ?.lb_endpoints as EnvoyJson[] | undefined
  )?.map((e) => {
    const a = ((e.endpoint as EnvoyJson).address as EnvoyJson).socket_address as EnvoyJson;
    return at(String(a.address), `:${String(a.port_value)}`);
  }) ?? [];

const sansOf = (c: EnvoyJson | undefined) => upstreamValidationContext(c)?.match_typed_subject_alt_names;

beforeAll(async () => {
  etcd = await startEtcd();
  const ca = await installClusterCaForTest(etcd.endpoints, MESH, join(tmp, 'kek'), TD);
  rootPem = ca.root.certPem;
  const a = await startReplica('adv-a', ['--advertise-address', POD_IP, '--serving-names', SERVICE]);
  const res = await adminFetch(a, '/apis/v1/apply', { method: 'POST', body: CONFIG });
  expect(res.status, await res.clone().text()).toBe(200);
  // CreateCertificate at the advertised address, the TLS client checking that IP SAN.
  const client = createCertificateServiceClient(
    at(POD_IP, a.caAddress),
    grpc.credentials.createSsl(Buffer.from(rootPem)),
  );
  try {
    const cert = await issueWorkloadCertificate(client, ca.signingKeyPem, {
      trustDomain: TD,
      namespace: 'shop',
      serviceAccount: 'api',
    });
    api = { key: cert.keyPem, chain: cert.chainPem };
  } finally {
    client.close();
  }
  await eventually(
    'the config is served',
    async () => (a.snapshot?.config.rateLimits.length ?? 0) === 1,
    20_000,
    50,
  );
}, 120_000);

afterAll(async () => {
  for (const p of proxies) p.disconnect();
  for (const c of clients) c.close();
  await Promise.all(replicas.map((r) => r.stop().catch(() => undefined)));
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('a replica bound to 0.0.0.0 with --advertise-address', () => {
  it('records the advertised host in membership and serves proxies a rate-limit cluster naming it', async () => {
    const a = replicas[0]!;
    expect(a.caAddress).toMatch(/^0\.0\.0\.0:\d+$/);
    const members = (await (await adminFetch(a, '/debug/replicas')).json()) as ReplicaInfo[];
    expect(members).toEqual([
      expect.objectContaining({ id: 'adv-a', caAddress: a.caAddress, advertiseAddress: POD_IP }),
    ]);
    // A sidecar connected over mTLS to the advertised address (gRPC checks its IP SAN).
    const p = sidecar(at(POD_IP, a.caAddress));
    await eventually(
      'the sidecar holds the rate-limit cluster',
      async () => !!rateLimitCluster(p),
      20_000,
      50,
    );
    const cluster = rateLimitCluster(p);
    expect(endpointsOf(cluster)).toEqual([at(POD_IP, a.caAddress)]);
    expect(cluster?.type).toBe('STATIC');
    expect(sansOf(cluster)).toEqual([{ san_type: 'IP_ADDRESS', matcher: { exact: POD_IP } }]);
  }, 60_000);

  it("an mTLS client checking that SAN completes its handshake against the replica's certificate, and gets a decision", async () => {
    const a = replicas[0]!;
    const sans = (await handshake(at(POD_IP, a.caAddress), POD_IP)).split(', ');
    expect(sans).toEqual(expect.arrayContaining(['DNS:localhost', `IP Address:${POD_IP}`, `DNS:${SERVICE}`]));
    // The unspecified bind host is no name of the certificate.
    expect(sans).not.toContain('IP Address:0.0.0.0');
    // The extra name (the Kubernetes Service) is checked the same way.
    await expect(handshake(at('127.0.0.1', a.caAddress), SERVICE)).resolves.toContain(`DNS:${SERVICE}`);
    // The check is real: a name the certificate does not carry fails the handshake.
    await expect(handshake(at('127.0.0.1', a.caAddress), '127.0.0.3')).rejects.toThrow(
      /IP: 127\.0\.0\.3 is not in the cert's list/,
    );
    // The rate-limit service itself, as a proxy calls it: gRPC over mTLS, the IP SAN checked.
    expect(await shouldRateLimit(at(POD_IP, a.caAddress))).toBe('OK');
    await expect(
      shouldRateLimit(at(POD_IP, a.caAddress), { 'grpc.ssl_target_name_override': 'elsewhere.example' }),
    ).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  }, 60_000);

  it('keeps a serving certificate carrying those names on disk', async () => {
    const a = replicas[0]!;
    const file = servingMaterialFile(join(snapshots, 'adv-a'), MESH, 'c1');
    const kek = parseKek(readFileSync(join(tmp, 'kek'), 'utf8'), 'test');
    await eventually(
      'the serving material is written',
      async () => !!(await loadServingMaterial(file, kek, 'c1').catch(() => undefined)),
      10_000,
      50,
    );
    const m = await loadServingMaterial(file, kek, 'c1');
    expect(m.servingNames).toEqual(expect.arrayContaining(['localhost', POD_IP, SERVICE]));
    expect(namesNotCovered(m.certChainPem, ['localhost', POD_IP, SERVICE])).toEqual([]);
    expect(namesNotCovered(m.certChainPem, ['127.0.0.3', 'other.example'])).toEqual([
      '127.0.0.3',
      'other.example',
    ]);
    // Restarted from disk (etcd unreachable) with names the kept certificate lacks: it says which.
    const fromDisk = async (names: string[]) => {
      const lines: string[] = [];
      const log = pino(
        { level: 'warn' },
        new Writable({
          write(chunk: Buffer, _enc, done) {
            lines.push(...chunk.toString().split('\n').filter(Boolean));
            done();
          },
        }),
      );
      const mtls = await ReplicaMtls.fromDisk({
        store: undefined as never,
        clusterId: 'c1',
        trustDomain: TD,
        kekFile: join(tmp, 'kek'),
        servingDnsNames: names,
        servingFile: file,
        log,
      });
      expect(mtls).toBeDefined();
      await mtls?.stop(100);
      return lines.map((l) => JSON.parse(l) as { msg: string; missing?: string[] });
    };
    const missing = (await fromDisk(['localhost', POD_IP, SERVICE])).filter((l) => l.missing);
    expect(missing).toEqual([]);
    const moved = (await fromDisk(['localhost', '127.0.0.9', SERVICE])).find((l) => l.missing);
    expect(moved).toMatchObject({
      missing: ['127.0.0.9'],
      msg: 'the certificate kept on disk does not name every host of this replica (--advertise-address or --serving-names changed): clients that check those names fail their handshake until the CA loads',
    });
    expect(a.caAddress).toMatch(/^0\.0\.0\.0:/);
  }, 30_000);

  it("without the setting, advertises the host's first non-loopback address, says so, and proxies are sent both", async () => {
    const a = replicas[0]!;
    const expected = chooseAdvertiseAddress({
      advertiseAddress: '',
      caAddress: '0.0.0.0:0',
      xdsAddress: 'off',
    });
    const b = await startReplica('adv-b', []);
    expect(expected.source).toBe(expected.host === '' ? 'none' : 'interface');
    const line = logOf.get('adv-b')!.map((l) => JSON.parse(l) as { msg: string; advertiseAddress?: string });
    if (expected.host === '') {
      // A host without a non-loopback address: nothing to advertise, and a warning says so.
      expect(
        line.some((l) => l.msg.startsWith('no address to advertise: --ca-address binds 0.0.0.0:0')),
      ).toBe(true);
      return;
    }
    expect(line).toContainEqual(
      expect.objectContaining({
        advertiseAddress: expected.host,
        msg: `advertising ${expected.host} to proxies and agents: --ca-address binds 0.0.0.0:0, so this host's first non-loopback address is used (--advertise-address or MERIDIAN_ADVERTISE_ADDRESS to choose)`,
      }),
    );
    const want = [at(POD_IP, a.caAddress), at(expected.host, b.caAddress)];
    const p = proxies[0]!;
    await eventually(
      'the sidecar is sent both replicas',
      async () => JSON.stringify(endpointsOf(rateLimitCluster(p))) === JSON.stringify(want),
      20_000,
      50,
    );
    expect(sansOf(rateLimitCluster(p))).toEqual(
      [POD_IP, expected.host].sort().map((h) => ({ san_type: 'IP_ADDRESS', matcher: { exact: h } })),
    );
    // Replica b's own certificate names the address it advertises.
    expect((await handshake(at(expected.host, b.caAddress), expected.host)).split(', ')).toContain(
      `IP Address:${expected.host}`,
    );
    expect(await shouldRateLimit(at(expected.host, b.caAddress))).toBe('OK');
  }, 60_000);
});
