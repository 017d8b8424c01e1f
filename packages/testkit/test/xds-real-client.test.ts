// @grpc/grpc-js-xds, an independent xDS client, dialing xds:///<service> through Meridian's ADS server
// to real grpc-js backends. The client reads its bootstrap once per process: it runs in its own
// process (GrpcClientProcess).

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { status } from '@grpc/grpc-js';
import { TypeUrl } from '@meridian/envoy';
import {
  clusterFor,
  clusterName,
  type EchoBackend,
  eventually,
  freePort,
  GrpcClientProcess,
  listenerName,
  nextSnapshot,
  plaintextXdsBootstrap,
  startEchoBackend,
  type TestService,
  translateServices,
} from '@meridian/testkit';
import {
  type ChangeEvent,
  type ProxySyncStatus,
  ResourceCache,
  type StaticSnapshot,
  XdsServer,
  xdsLogger,
} from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const HOST = 'echo.default.svc.cluster.local';
const PORT = 7070;
const TARGET = listenerName({ host: HOST, port: PORT });

/** A call to `xds:///<target>` from the client process; rejects with the gRPC status code and message. */
async function call(client: GrpcClientProcess, target = TARGET, timeoutMs = 5000): Promise<string> {
  const r = await client.call(target, { method: '/test.Echo/Name', deadlineMs: timeoutMs });
  if (r.code !== status.OK) throw Object.assign(new Error(r.message), { code: r.code });
  return r.backend ?? '';
}

const edsChange = (names: string[]): ChangeEvent => ({
  full: false,
  types: new Set([TypeUrl.ClusterLoadAssignment]),
  names: new Map([[TypeUrl.ClusterLoadAssignment, new Set(names)]]),
  reason: ['endpoints'],
  at: performance.now(),
});

describe('@grpc/grpc-js-xds client through Meridian (SotW ADS)', () => {
  const lines: string[] = [];
  const logger = xdsLogger({ level: 'debug', write: (l) => lines.push(l) });
  const cache = new ResourceCache();
  const backends: EchoBackend[] = [];
  let xds: XdsServer;
  let xdsPort = 0;
  let client: GrpcClientProcess;
  let snapshot: StaticSnapshot | undefined;
  let version = 0;

  const publish = (
    services: TestService[],
    change?: ChangeEvent,
    mutate?: (r: ReturnType<typeof translateServices>) => void,
  ) => {
    const resources = translateServices(services);
    mutate?.(resources);
    snapshot = nextSnapshot(cache, snapshot, `v${++version}`, resources);
    xds.update(snapshot, change);
  };
  const service = (...ports: number[]): TestService[] => [
    {
      host: HOST,
      port: PORT,
      endpoints: ports.map((p) => ({ address: '127.0.0.1', port: p, region: 'r1', zone: 'z1' })),
    },
  ];

  beforeAll(async () => {
    backends.push(await startEchoBackend('A'), await startEchoBackend('B'));
    xdsPort = await freePort();
    xds = new XdsServer({ logger, debounce: { quietMs: 10, maxDelayMs: 100 } });
    publish(service(backends[0]!.port));
    await xds.listen('127.0.0.1', xdsPort);
    client = await GrpcClientProcess.start(plaintextXdsBootstrap(`127.0.0.1:${xdsPort}`, 'client-0', 'c1'));
  });

  afterAll(async () => {
    await client?.stop();
    xds?.close();
    for (const b of backends) b.server.forceShutdown();
  });

  const proxyStatus = () => xds.syncStatus().find((s) => s.proxyId.startsWith('sidecar~127.0.0.1~client-0'));

  it('reaches the backend through xds:///', async () => {
    expect(await call(client)).toBe('A');
    const s = await eventually(
      'SYNCED on every type',
      () => {
        const st = proxyStatus();
        return st && ['lds', 'rds', 'cds', 'eds'].every((t) => st.types[t]?.state === 'SYNCED')
          ? st
          : undefined;
      },
      20_000,
      50,
    );
    expect(s.kind).toBe('grpc');
    expect(s.types.lds?.subscribed).toEqual([listenerName({ host: HOST, port: PORT })]);
    expect(s.types.eds?.subscribed).toEqual([clusterName({ host: HOST, port: PORT })]);
  });

  it('uses a backend added through the snapshot and drops a removed one', async () => {
    publish(
      service(backends[0]!.port, backends[1]!.port),
      edsChange([clusterName({ host: HOST, port: PORT })]),
    );
    await eventually(
      'a call answered by B',
      async () => ((await call(client)) === 'B' ? true : undefined),
      20_000,
      50,
    );
    publish(service(backends[1]!.port), edsChange([clusterName({ host: HOST, port: PORT })]));
    // Once the removal is applied every call goes to B.
    await eventually(
      '10 calls in a row answered by B',
      async () => {
        for (let i = 0; i < 10; i++) if ((await call(client)) !== 'B') return undefined;
        return true;
      },
      20_000,
      50,
    );
  });

  it('an invalid resource is NACKed: sync status shows ERROR with the message; the client keeps the last good config', async () => {
    const cdsChange: ChangeEvent = {
      full: false,
      types: new Set([TypeUrl.Cluster]),
      reason: ['test'],
      at: performance.now(),
    };
    publish(service(backends[1]!.port), cdsChange, (r) => {
      const bad = clusterFor(service(backends[1]!.port)[0]!);
      bad.lb_policy = 'MAGLEV';
      r[TypeUrl.Cluster] = [bad];
    });
    const st = await eventually(
      'cds ERROR',
      () => {
        const s = proxyStatus();
        return s?.types.cds?.state === 'ERROR' ? s : undefined;
      },
      20_000,
      50,
    );
    console.log('NACK message:', st.types.cds?.error);
    expect(st.types.cds?.error).toBe(
      'xDS response validation errors: [resource index 0: Cluster message validation failed: [load_balancing_policy unset and unsupported lb_policy: MAGLEV]]',
    );
    expect(lines.some((l) => l.includes('"msg":"NACK: ') && l.includes('MAGLEV'))).toBe(true);
    expect(await call(client)).toBe('B');
    // No resend loop: the rejected response was sent once.
    const nonce = st.types.cds?.nonceSent;
    await new Promise((r) => setTimeout(r, 300));
    expect(proxyStatus()?.types.cds?.nonceSent).toBe(nonce);
    // A good config again: SYNCED.
    publish(service(backends[1]!.port), cdsChange);
    await eventually(
      'cds SYNCED',
      () => (proxyStatus()?.types.cds?.state === 'SYNCED' ? true : undefined),
      20_000,
      50,
    );
  });

  it('Meridian restarted: the client keeps working on its cache and re-syncs on reconnect', async () => {
    xds.close();
    expect(await call(client)).toBe('B');
    // Same snapshot on a new server (as another replica would build it), then a change to prove re-sync.
    const fresh = new XdsServer({ logger, debounce: { quietMs: 10, maxDelayMs: 100 } });
    xds = fresh;
    fresh.update(snapshot!);
    await fresh.listen('127.0.0.1', xdsPort);
    expect(await call(client)).toBe('B');
    await eventually(
      'reconnected and SYNCED',
      () => {
        const st = proxyStatus();
        return st && ['lds', 'rds', 'cds', 'eds'].every((t) => st.types[t]?.state === 'SYNCED')
          ? true
          : undefined;
      },
      40_000,
      50,
    );
    publish(service(backends[0]!.port), edsChange([clusterName({ host: HOST, port: PORT })]));
    await eventually(
      '10 calls in a row answered by A',
      async () => {
        for (let i = 0; i < 10; i++) if ((await call(client)) !== 'A') return undefined;
        return true;
      },
      20_000,
      50,
    );
  });

  it('an unknown service is logged as a missing resource, and the debug handler serves syncz and config_dump', async () => {
    const other = 'nope.default.svc.cluster.local:80';
    try {
      // grpc-js-xds keeps waiting for a listener that does not exist (its resolver never reports).
      const err = await call(client, other, 3000).catch((e: Error) => e);
      expect(err).toMatchObject({ code: status.DEADLINE_EXCEEDED });
      expect((err as Error).message).toContain('waiting for name resolution');
    } finally {
      await client.close(other);
    }
    expect(
      lines.some((l) => l.includes('subscribed resources do not exist: nope.default.svc.cluster.local:80')),
    ).toBe(true);
    const handler = xds.debugHandler();
    const http = createServer((req, res) => {
      if (!handler(req, res)) res.writeHead(404).end();
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
      const syncz = (await (await fetch(`${base}/debug/syncz`)).json()) as ProxySyncStatus[];
      const st = syncz.find((s) => s.proxyId.startsWith('sidecar~127.0.0.1~client-0'))!;
      expect(st.types.cds?.state).toBe('SYNCED');
      const dump = (await (
        await fetch(`${base}/debug/config_dump?proxy=${encodeURIComponent(st.proxyId)}`)
      ).json()) as Record<string, Record<string, { name: string; resource: { cluster_name?: string } }[]>>;
      expect(dump[st.connectionId]?.eds?.[0]?.resource.cluster_name).toBe(
        clusterName({ host: HOST, port: PORT }),
      );
      const missing = await fetch(`${base}/debug/config_dump?proxy=nobody`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toEqual({ error: 'no connected proxy with node id "nobody"' });
    } finally {
      http.close();
    }
  });
});
