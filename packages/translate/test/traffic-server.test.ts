// Real traffic to a proxyless gRPC *server*: grpc-js-xds' XdsServer asks Meridian's ADS server for
// `xds.istio.io/grpc/lds/inbound/127.0.0.1:<port>` and serves only once it accepted that listener;
// then a proxyless client in the same node reaches it through the translated client resources.
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistrySnapshot, Translator } from '../src/index.js';
import { configFromYaml, endpoint } from './fixtures.js';
import { ClientProcess, grpcService, TranslatingSnapshot } from './traffic-harness.js';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const address = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

let xds: XdsServer | undefined;
let node: ClientProcess | undefined;
let port = 0;

beforeAll(async () => {
  port = await freePort();
  const service = grpcService('xdsecho', 'grpc', 7070);
  const registry = createRegistrySnapshot(1, [service], {
    [service.hostname]: [endpoint('127.0.0.1', { grpc: port }, { app: 'xdsecho' })],
  });
  xds = new XdsServer({ logger: xdsLogger({ level: process.env.LOG_LEVEL ?? 'silent' }) });
  xds.update(new TranslatingSnapshot(new Translator(), configFromYaml(''), registry));
  const xdsPort = await xds.listen('127.0.0.1', 0);
  node = await ClientProcess.start(xdsPort, '127.0.0.1');
});

afterAll(async () => {
  await node?.stop();
  xds?.close();
});

describe('traffic: proxyless gRPC server listener', { timeout: 120_000 }, () => {
  it('an xDS-enabled grpc-js server accepts the translated inbound listener and serves', async () => {
    if (!node) throw new Error('not started');
    await node.serve(port, 'xds-server-1');
    // A plain (non-xDS) client reaches it directly...
    const plain = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const answer = await new Promise<string>((resolve, reject) =>
        plain.makeUnaryRequest(
          '/meridian.test.Echo/Call',
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (err, value) => (err ? reject(err) : resolve(value?.toString() ?? '')),
        ),
      );
      expect(answer).toBe('xds-server-1');
    } finally {
      plain.close();
    }
    // ...and so does a proxyless client through the translated client-side resources.
    const c = node.target('xdsecho.grpc.svc.cluster.local:7070');
    await c.ready();
    const results = await c.many(20, {}, 4);
    expect(results.every((r) => r.backend === 'xds-server-1')).toBe(true);
  });
});
