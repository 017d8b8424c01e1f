// Issue 12, item 4: a failed translation means no update. A real @grpc/grpc-js-xds client (its own
// process) follows Meridian's ADS server fed by the replica's push path (ProxySnapshot over a
// Translator, one Encoder). A snapshot whose translation fails for the client sends it nothing: it
// keeps its listeners, routes, clusters and endpoints and keeps calling; the failure is counted and
// shown in /debug/syncz (and counted in pilot_total_xds_internal_errors); the next good snapshot is pushed and the error clears.
import { status } from '@grpc/grpc-js';
import { type ConfigObject, validateConfig } from '@meridian/api';
import type { ProxyInfo } from '@meridian/envoy';
import {
  type EchoBackend,
  eventually,
  freePort,
  GrpcClientProcess,
  plaintextXdsBootstrap,
  startEchoBackend,
} from '@meridian/testkit';
import {
  type ConfigSnapshot,
  createConfigSnapshot,
  createRegistrySnapshot,
  type Endpoint,
  type ProxyParts,
  type RegistrySnapshot,
  Translator,
} from '@meridian/translate';
import { type ProxySyncStatus, ResourceCache, XdsServer, xdsLogger } from '@meridian/xds';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Encoder, ProxySnapshot } from '../src/proxy-snapshot.js';

const HOST = 'echo.default.svc.cluster.local';
const PORT = 7070;
const TARGET = `${HOST}:${PORT}`;

/** A translator that fails, as a bug would, for any config holding a VirtualService named `poison`. */
class FailingTranslator extends Translator {
  override translateParts(config: ConfigSnapshot, registry: RegistrySnapshot, proxy: ProxyInfo): ProxyParts {
    if (config.virtualServices.some((vs) => vs.metadata.name === 'poison'))
      throw new Error('forced translation failure (test)');
    return super.translateParts(config, registry, proxy);
  }
}

function config(revision: number, poisoned: boolean): ConfigSnapshot {
  const objects: ConfigObject[] = [];
  if (poisoned) {
    const v = validateConfig({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'poison', namespace: 'default' },
      spec: { hosts: [HOST], http: [{ route: [{ destination: { host: HOST } }] }] },
    });
    if (!v.ok) throw new Error(JSON.stringify(v));
    objects.push(v.config);
  }
  return createConfigSnapshot(revision, objects);
}

function registry(revision: number, ports: number[]): RegistrySnapshot {
  const endpoints: Endpoint[] = ports.map((port) => ({
    address: '127.0.0.1',
    ports: { grpc: port },
    labels: { app: 'echo' },
    locality: { region: 'r1', zone: 'z1', subZone: '' },
    network: '',
    clusterId: 'c1',
    health: 'HEALTHY',
    serviceAccount: '',
    weight: 1,
  }));
  return createRegistrySnapshot(
    revision,
    [
      {
        hostname: HOST,
        namespace: 'default',
        ports: [{ name: 'grpc', port: PORT, protocol: 'GRPC' }],
        labels: { app: 'echo' },
        exportTo: [],
        resolution: 'EDS',
      },
    ],
    new Map([[HOST, endpoints]]),
  );
}

/** testkit's eventually with this file's bound: replicas and grpc-js-xds clients on a loaded machine. */
const waitFor = <T>(what: string, probe: () => T | undefined | Promise<T | undefined>) =>
  eventually(what, probe, 30_000, 100);

describe('a failed translation', () => {
  const backends: EchoBackend[] = [];
  const translator = new FailingTranslator();
  const encoder = new Encoder(new ResourceCache());
  const log = pino({ level: 'silent' });
  let xds: XdsServer;
  let client: GrpcClientProcess;

  const publish = (revision: number, poisoned: boolean, ports: number[]) =>
    xds.update(
      new ProxySnapshot(
        revision,
        config(revision, poisoned),
        registry(revision, ports),
        translator,
        encoder,
        log,
      ),
      {
        full: true,
        reason: ['test'],
        at: performance.now(),
      },
    );
  const clientStatus = (): ProxySyncStatus | undefined => xds.syncStatus().find((s) => s.kind === 'grpc');

  beforeAll(async () => {
    backends.push(
      await startEchoBackend('A', '/meridian.test.Echo/Call'),
      await startEchoBackend('B', '/meridian.test.Echo/Call'),
    );
    xds = new XdsServer({
      logger: xdsLogger({ level: 'silent' }),
      debounce: { quietMs: 10, maxDelayMs: 100 },
    });
    xds.update(
      new ProxySnapshot(1, config(1, false), registry(1, [backends[0]!.port]), translator, encoder, log),
    );
    const port = await freePort();
    await xds.listen('127.0.0.1', port);
    client = await GrpcClientProcess.start(plaintextXdsBootstrap(`127.0.0.1:${port}`, 'client-0'));
    await client.ready(TARGET);
  });

  afterAll(async () => {
    await client?.stop();
    xds?.close();
    for (const b of backends) b.server.forceShutdown();
  });

  it('sends nothing: the client keeps its config and keeps calling; the error is shown in syncz until a good snapshot', async () => {
    const synced = await waitFor('the client synced', () => {
      const s = clientStatus();
      return s &&
        Object.values(s.types).length >= 4 &&
        Object.values(s.types).every((t) => t.state === 'SYNCED')
        ? s
        : undefined;
    });
    const pushesBefore = Object.fromEntries(Object.entries(synced.types).map(([k, t]) => [k, t.nonceSent]));

    // The poisoned snapshot also moves the endpoints to B: if anything were sent, calls would move.
    publish(2, true, [backends[1]!.port]);
    const failed = await waitFor('the push failure in syncz', () => clientStatus()?.pushError);
    expect(failed.message).toContain('forced translation failure (test)');
    expect(failed.snapshotVersion).toBe('2');
    const results = await client.many(TARGET, 40, { deadlineMs: 3000, concurrency: 4 });
    expect(results.map((r) => `${r.code} ${r.backend ?? r.message}`)).toEqual(
      results.map(() => `${status.OK} A`),
    );
    const after = clientStatus()!;
    // It never reached the failed revision: convergence still says revision 1.
    expect(after.syncedVersion).toBe('1');
    expect(xds.convergence()).toEqual({ version: '2', proxies: 1, synced: 0 });
    // Nothing was sent: every type's last nonce is the one from before, and still ACKed.
    for (const [type, t] of Object.entries(after.types)) {
      expect(t.nonceSent, type).toBe(pushesBefore[type]);
      expect(t.state, type).toBe('SYNCED');
    }
    // What was sent (config_dump) still holds the listener, route, cluster and endpoints.
    const dump = xds.configDump(after.proxyId)!;
    const perType = Object.values(dump)[0]!;
    expect(Object.values(perType).every((list) => list.length > 0)).toBe(true);

    // The next good snapshot is pushed: calls move to B and the error clears.
    publish(3, false, [backends[1]!.port]);
    await waitFor('calls answered by B', async () =>
      (await client.call(TARGET, { deadlineMs: 2000 })).backend === 'B' ? true : undefined,
    );
    await waitFor('synced to revision 3', () => (clientStatus()?.syncedVersion === '3' ? true : undefined));
    await waitFor('the error cleared', () =>
      clientStatus() && clientStatus()!.pushError === undefined ? true : undefined,
    );
  });
});
