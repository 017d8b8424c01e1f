// Issue 17, item 5: the control plane traces its push pipeline. A replica with
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP receiver in this test exports, for a config
// write, one trace `meridian.push` (revision, version, what changed) with the steps debounce, build,
// send and converge, the last ending when the connected proxy has ACKed the revision.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TypeUrl } from '@meridian/envoy';
import { type EtcdCluster, eventually, SimulatedProxy, startEtcd } from '@meridian/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveOptions } from '../src/options.js';
import { Replica } from '../src/replica.js';
import { adminFetch, xdsClient } from './harness.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: { key: string; value: { stringValue?: string; intValue?: string | number } }[];
}

let etcd: EtcdCluster | undefined;
let replica: Replica | undefined;
let receiver: Server;
const spans: OtlpSpan[] = [];
const contentTypes = new Set<string>();
let proxy: SimulatedProxy | undefined;

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const attr = (s: OtlpSpan, key: string): string | undefined => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v?.stringValue ?? (v?.intValue !== undefined ? String(v.intValue) : undefined);
};

beforeAll(async () => {
  receiver = createServer(async (req, res) => {
    contentTypes.add(String(req.headers['content-type']));
    if (req.method === 'POST' && req.url === '/v1/traces') {
      const payload = JSON.parse(await body(req)) as {
        resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const rs of payload.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  etcd = await startEtcd();
  replica = await Replica.start(
    resolveOptions(
      [
        ...['--mesh-id', 'traces', '--cluster-id', 'c1', '--replica-id', 'traces-a'],
        ...['--etcd-endpoints', etcd.endpoints.join(','), '--debounce-ms', '20'],
        ...['--xds-address', '127.0.0.1:0', '--admin-address', '127.0.0.1:0'],
        ...['--monitoring-address', 'off', '--snapshot-dir', 'off'],
      ],
      {},
    ),
    { logger: pino({ level: 'silent' }) },
  );
}, 90_000);

afterAll(async () => {
  proxy?.disconnect();
  await replica?.stop().catch(() => undefined);
  await etcd?.stop();
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  receiver.closeAllConnections();
  await new Promise<void>((r) => receiver.close(() => r()));
});

describe('push pipeline traces', () => {
  it('one trace per revision: debounce, build, send, converge (ended once the proxy ACKed)', async () => {
    proxy = new SimulatedProxy({
      nodeId: 'sidecar~10.9.0.7~web-0.default~default.svc.cluster.local',
      metadata: { NAMESPACE: 'default', CLUSTER_ID: 'c1', LABELS: { app: 'web' } },
      variant: 'sotw',
      subscriptions: [{ typeUrl: TypeUrl.Cluster }, { typeUrl: TypeUrl.Listener }],
    });
    proxy.connect(xdsClient(replica!.xdsAddress));
    await eventually('the proxy synced', () => proxy!.state.size === 2, 30_000, 50);
    const apply = await adminFetch(replica!, '/apis/v1/apply?source=t.yaml', {
      method: 'POST',
      body: `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.9.0.1, labels: {app: api}}]
`,
    });
    expect(apply.status).toBe(200);
    const revision = String(((await apply.json()) as { revision: number }).revision);
    expect(Number(revision)).toBeGreaterThan(0);
    let root: OtlpSpan | undefined;
    await eventually(
      'a finished meridian.push trace with a converge step for the new config',
      () => {
        root = spans.find(
          (s) =>
            s.name === 'meridian.push' &&
            attr(s, 'meridian.configs_changed') === '1' &&
            spans.some((c) => c.parentSpanId === s.spanId && c.name === 'meridian.converge'),
        );
        return root !== undefined;
      },
      30_000,
      50,
    );
    const children = spans.filter((s) => s.parentSpanId === root!.spanId);
    expect(children.map((s) => s.name).sort()).toEqual([
      'meridian.build',
      'meridian.converge',
      'meridian.debounce',
      'meridian.send',
    ]);
    for (const c of children) expect(c.traceId).toBe(root!.traceId);
    expect(attr(root!, 'meridian.revision')).toBe(revision);
    expect(attr(root!, 'meridian.reason')).toContain('ServiceEntry');
    const converge = children.find((s) => s.name === 'meridian.converge')!;
    expect(attr(converge, 'meridian.proxies')).toBe('1');
    expect(attr(converge, 'meridian.synced')).toBe('1');
    // The steps are in order and inside the root span.
    const t = (s: OtlpSpan, end = false) => BigInt(end ? s.endTimeUnixNano : s.startTimeUnixNano);
    const by = (n: string) => children.find((s) => s.name === n)!;
    expect(t(by('meridian.debounce')) >= t(root!)).toBe(true);
    expect(t(by('meridian.build')) >= t(by('meridian.debounce'), true) - 1_000_000n).toBe(true);
    expect(t(by('meridian.converge')) >= t(by('meridian.build'))).toBe(true);
    expect(t(root!, true) >= t(converge, true)).toBe(true);
    expect([...contentTypes]).toContain('application/json');
  }, 90_000);
});
