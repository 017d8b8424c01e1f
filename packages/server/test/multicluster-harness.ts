// Multi-cluster harness (issue 7): a NATS gateway pair whose gateway links go through fault-injecting
// TCP proxies, grpc-js backends, the proxyless client process (testkit's GrpcClientProcess) and a reader
// of the ClusterLoadAssignments a simulated proxy holds.
import * as grpc from '@grpc/grpc-js';
import { decodeResource, TypeUrl } from '@meridian/envoy';
import {
  eventually,
  freePorts,
  type GrpcCallResult,
  GrpcClientProcess,
  natsMonitor,
  rawUnaryMethod,
  type SimulatedProxy,
  type StandaloneNatsServer,
  startNats,
  type TcpProxy,
  tcpProxy,
} from '@meridian/testkit';

const METHOD = '/meridian.test.Echo/Call';

/** Two single-server NATS clusters (JetStream on) joined by gateways that can be cut. */
export interface NatsPair {
  readonly east: StandaloneNatsServer;
  readonly west: StandaloneNatsServer;
  cut(): Promise<void>;
  heal(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the NATS gateway pair east <-> west; every gateway connection goes through a TCP proxy. */
export async function startNatsPair(): Promise<NatsPair> {
  const [eastGw, westGw, eastRoute, westRoute] = (await freePorts(4)) as [number, number, number, number];
  const toEast: TcpProxy = await tcpProxy({ target: { host: '127.0.0.1', port: eastGw } });
  const toWest: TcpProxy = await tcpProxy({ target: { host: '127.0.0.1', port: westGw } });
  const conf = (
    name: string,
    gw: number,
    route: number,
    self: TcpProxy,
    other: string,
    otherProxy: TcpProxy,
  ) =>
    [
      `server_name: "mc-${name}"`,
      `cluster { name: "${name}", listen: "127.0.0.1:${route}", routes: ["nats-route://127.0.0.1:${route}"] }`,
      'gateway {',
      `  name: "${name}"`,
      `  listen: "127.0.0.1:${gw}"`,
      `  advertise: "${self.address}"`,
      `  gateways: [ { name: "${other}", urls: ["nats://${otherProxy.address}"] } ]`,
      '}',
    ].join('\n');
  let east: StandaloneNatsServer | undefined;
  let west: StandaloneNatsServer | undefined;
  const stop = async () => {
    await toEast.close().catch(() => undefined);
    await toWest.close().catch(() => undefined);
    await Promise.all([east?.stop(), west?.stop()]);
  };
  try {
    [east, west] = await Promise.all([
      startNats({ jetstream: true, configExtra: conf('east', eastGw, eastRoute, toEast, 'west', toWest) }),
      startNats({ jetstream: true, configExtra: conf('west', westGw, westRoute, toWest, 'east', toEast) }),
    ]);
    const e = east;
    const w = west;
    const gatewaysUp = async () => {
      for (const [s, other] of [
        [e, 'west'],
        [w, 'east'],
      ] as const) {
        const gz = await natsMonitor<{
          outbound_gateways?: Record<string, { connection?: unknown }>;
          inbound_gateways?: Record<string, unknown[]>;
        }>(s.monitorPort, 'gatewayz');
        if (!gz.outbound_gateways?.[other]?.connection || !(gz.inbound_gateways?.[other]?.length ?? 0))
          return false;
      }
      return true;
    };
    await eventually('NATS gateways east <-> west', gatewaysUp, 60_000, 100);
    return {
      east: e,
      west: w,
      async cut() {
        await Promise.all([toEast.cut(), toWest.cut()]);
      },
      async heal() {
        await Promise.all([toEast.heal(), toWest.heal()]);
        await eventually('NATS gateways back', gatewaysUp, 60_000, 100).catch(async (error: Error) => {
          const state = await Promise.all(
            [e, w].map((x) => natsMonitor<Record<string, unknown>>(x.monitorPort, 'gatewayz').catch(String)),
          );
          throw new Error(`${error.message}; gatewayz east, west: ${JSON.stringify(state)}`);
        });
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A grpc-js backend answering `/meridian.test.Echo/Call` with its name; restartable on its port. */
export class Backend {
  #server: grpc.Server | undefined;
  port = 0;
  calls = 0;

  constructor(readonly name: string) {}

  /** Starts (or restarts, on the same port) the backend. */
  async start(): Promise<void> {
    const server = new grpc.Server();
    server.addService(
      { Call: rawUnaryMethod(METHOD) },
      {
        Call: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
          this.calls++;
          cb(null, Buffer.from(this.name));
        },
      },
    );
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${this.port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    this.#server = server;
  }

  /** Kills the backend at once (connections reset). */
  stop(): void {
    this.#server?.forceShutdown();
    this.#server = undefined;
  }
}

/** One call's outcome in the client process. */
export type CallResult = GrpcCallResult;

/** The proxyless gRPC client process (one grpc-js-xds bootstrap per process): testkit's GrpcClientProcess. */
export class ClientProcess {
  readonly #client: GrpcClientProcess;

  private constructor(client: GrpcClientProcess) {
    this.#client = client;
  }

  /** Forks a client of the ADS server at `xds`, node in cluster `cluster` at `region/zone`. */
  static async start(xds: string, cluster: string, region: string, zone: string): Promise<ClientProcess> {
    const bootstrap = JSON.stringify({
      xds_servers: [{ server_uri: xds, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: {
        id: `sidecar~10.250.0.1~client-0.default~default.svc.cluster.local`,
        metadata: { GENERATOR: 'grpc', NAMESPACE: 'default', CLUSTER_ID: cluster, LABELS: { app: 'client' } },
        locality: { region, zone },
      },
      server_listener_resource_name_template: 'xds.istio.io/grpc/lds/inbound/%s',
    });
    return new ClientProcess(await GrpcClientProcess.start(bootstrap));
  }

  call(target: string, deadlineMs = 5000): Promise<CallResult> {
    return this.#client.call(target, { deadlineMs });
  }

  many(target: string, n: number, concurrency = 10): Promise<CallResult[]> {
    return this.#client.many(target, n, { concurrency, deadlineMs: 5000 });
  }

  /** Starts continuous load (`concurrency` callers back to back, 2 s deadline each). */
  loadStart(target: string, concurrency = 4): Promise<void> {
    return this.#client.loadStart(target, { concurrency, deadlineMs: 2000, pauseMs: 5 });
  }

  loadStop(): Promise<CallResult[]> {
    return this.#client.loadStop();
  }

  stop(): Promise<void> {
    return this.#client.stop();
  }
}

/** One endpoint of a decoded ClusterLoadAssignment. */
export interface ClaEndpoint {
  readonly address: string;
  readonly region: string;
  readonly health: string;
  readonly priority: number;
}

/** The latest ClusterLoadAssignment `name` a (recording, Delta) simulated proxy received, decoded. */
export function latestCla(proxy: SimulatedProxy, name: string): ClaEndpoint[] | undefined {
  for (let i = proxy.responses.length - 1; i >= 0; i--) {
    const r = proxy.responses[i]!;
    if (r.typeUrl !== TypeUrl.ClusterLoadAssignment || !('resources' in r)) continue;
    const res = (r.resources as readonly { name: string; value: Uint8Array | undefined }[]).find(
      (x) => x.name === name,
    );
    if (!res?.value) continue;
    const cla = decodeResource(TypeUrl.ClusterLoadAssignment, res.value) as {
      endpoints?: {
        locality?: { region?: string };
        priority?: number;
        lb_endpoints?: {
          endpoint?: { address?: { socket_address?: { address?: string; port_value?: number } } };
          health_status?: string | number;
        }[];
      }[];
    };
    const out: ClaEndpoint[] = [];
    for (const l of cla.endpoints ?? [])
      for (const e of l.lb_endpoints ?? []) {
        const sa = e.endpoint?.address?.socket_address;
        out.push({
          address: `${sa?.address}:${sa?.port_value}`,
          region: l.locality?.region ?? '',
          health: String(e.health_status ?? 'UNKNOWN'),
          priority: l.priority ?? 0,
        });
      }
    return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }
  return undefined;
}

/** How many CLA responses a recording proxy received. */
export function claResponses(proxy: SimulatedProxy): number {
  return proxy.responses.filter((r) => r.typeUrl === TypeUrl.ClusterLoadAssignment).length;
}
