// The load generator at small N: 200 SotW and 200 Delta proxies converge on a change every proxy
// receives; a proxy that stops reading does not hold the others back; a graceful drain ends every
// stream with UNAVAILABLE. Figures are logged, never asserted (timings belong in bench/).
import { TypeUrl } from '@meridian/envoy';
import {
  clusterName,
  LoadGenerator,
  listenerName,
  nextSnapshot,
  percentile,
  type TestService,
  translateServices,
} from '@meridian/testkit';
import { ResourceCache, type StaticSnapshot, XdsServer, xdsLogger } from '@meridian/xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SERVICES = 10;
const services = (generation: number): TestService[] =>
  Array.from({ length: SERVICES }, (_, i) => ({
    host: `svc-${i}.default.svc.cluster.local`,
    port: 80,
    // 100 endpoints per service: each endpoint change is about 25 KB per proxy.
    endpoints: Array.from({ length: 100 }, (_, e) => ({
      address: `10.${generation % 250}.${i}.${e + 1}`,
      port: 8080,
    })),
    padding: 500,
  }));

describe.each(['sotw', 'delta'] as const)('load generator, 200 %s proxies', (variant) => {
  const lines: string[] = [];
  const server = new XdsServer({
    logger: xdsLogger({ level: 'info', write: (l) => lines.push(l) }),
    debounce: { quietMs: 10, maxDelayMs: 100 },
    stuckTimeoutMs: 5000,
  });
  const cache = new ResourceCache();
  let snapshot: StaticSnapshot | undefined;
  let generation = 0;
  let gen: LoadGenerator;
  const publish = () => {
    generation++;
    snapshot = nextSnapshot(cache, snapshot, `v${generation}`, translateServices(services(generation)));
    server.update(snapshot, {
      full: false,
      types: new Set([TypeUrl.ClusterLoadAssignment]),
      reason: ['endpoints'],
      at: performance.now(),
    });
  };

  beforeAll(async () => {
    generation++;
    snapshot = nextSnapshot(cache, undefined, 'v1', translateServices(services(generation)));
    server.update(snapshot);
    const port = await server.listen();
    const all = services(0);
    gen = new LoadGenerator({
      address: `127.0.0.1:${port}`,
      proxies: 200,
      isolated: new Set([0]),
      // HTTP/2's default window, so the proxy that stops reading blocks after a few pushes.
      flowControlWindow: 65_535,
      proxy: (i) => ({
        nodeId: `sidecar~10.8.${Math.floor(i / 250)}.${i % 250}~load-${i}.default~default.svc.cluster.local`,
        variant,
        subscriptions: [
          { typeUrl: TypeUrl.Cluster },
          { typeUrl: TypeUrl.ClusterLoadAssignment, names: all.map(clusterName) },
          { typeUrl: TypeUrl.Listener },
          { typeUrl: TypeUrl.RouteConfiguration, names: all.map(listenerName) },
        ],
      }),
    });
    gen.connect();
    await gen.waitFor(
      () => gen.proxies.every((p) => (p.state.get(TypeUrl.RouteConfiguration)?.acks ?? 0) > 0),
      30_000,
    );
  });
  afterAll(async () => {
    gen?.close();
    server.close();
  });

  it('every proxy converges on an endpoint change; sync status is SYNCED everywhere', async () => {
    gen.mark();
    publish();
    const ok = await gen.waitFor(() => gen.latencies(TypeUrl.ClusterLoadAssignment).length === 200, 30_000);
    expect(ok).toBe(true);
    const lat = gen.latencies(TypeUrl.ClusterLoadAssignment);
    console.log(
      `${variant} 200 proxies: change -> ACK p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${percentile(lat, 99).toFixed(1)} ms`,
    );
    await gen.waitFor(() => server.syncStatus().every((s) => s.types.eds?.state === 'SYNCED'), 10_000);
    const status = server.syncStatus();
    expect(status).toHaveLength(200);
    expect(status.filter((s) => s.types.eds?.state !== 'SYNCED')).toEqual([]);
    // Convergence to the ACK: every proxy holds all of the current snapshot.
    const version = server.snapshot?.version;
    await gen.waitFor(() => server.convergence().synced === 200, 10_000);
    expect(server.convergence()).toEqual({ version, proxies: 200, synced: 200 });
    expect(server.syncStatus().filter((s) => s.syncedVersion !== version)).toEqual([]);
  });

  it('a proxy that stops reading does not hold the others back and is closed as stuck', async () => {
    const stuck = gen.proxies[0]!;
    stuck.stopReading();
    // Push until the stuck proxy's stream is full and the server closes it; the others converge on each.
    for (let round = 0; round < 30 && server.metrics.count('pilot_xds_write_timeout') === 0; round++) {
      gen.mark();
      publish();
      const ok = await gen.waitFor(
        () => gen.latencies(TypeUrl.ClusterLoadAssignment, gen.proxies.slice(1)).length === 199,
        30_000,
      );
      expect(ok).toBe(true);
    }
    await gen.waitFor(() => server.metrics.count('pilot_xds_write_timeout') === 1, 10_000);
    expect(server.metrics.count('pilot_xds_write_timeout')).toBe(1);
    expect(
      lines.some((l) => l.includes('closing xDS stream: proxy stopped reading') && l.includes('load-0.')),
    ).toBe(true);
  });

  it('a graceful drain ends every stream with UNAVAILABLE', async () => {
    // Proxy 0 stopped reading: grpc-js reports its (reset) status only once it reads again.
    const open = gen.proxies.slice(1).filter((p) => p.ended === undefined);
    expect(open.length).toBeGreaterThan(100);
    await server.drain(15_000);
    const ok = await gen.waitFor(() => open.every((p) => p.ended !== undefined), 20_000);
    expect(ok).toBe(true);
    expect(new Set(open.map((p) => `${p.ended?.code} ${p.ended?.details}`))).toEqual(
      new Set(['14 server is shutting down']),
    );
  });
});
