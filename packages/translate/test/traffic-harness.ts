// Real-traffic harness: real grpc-js backends, Meridian's ADS server (@meridian/xds) serving this
// package's translation, and @grpc/grpc-js-xds clients. grpc-js-xds reads its bootstrap once per
// process, so each traffic test file starts its own ADS server and sets the bootstrap before the
// first xds channel is created.
import * as grpc from '@grpc/grpc-js';
import type { ResourceTypeUrl } from '@meridian/envoy';
import { encodeResource } from '@meridian/envoy';
import { countByBackend, type GrpcCallResult, GrpcClientProcess } from '@meridian/testkit';
import {
  type EncodedResource,
  encodedResource,
  type ProxyContext,
  type ResourceMap,
  XdsServer,
  type XdsSnapshot,
  xdsLogger,
} from '@meridian/xds';
import {
  type ConfigSnapshot,
  createRegistrySnapshot,
  type Endpoint,
  type NamedResource,
  type RegistrySnapshot,
  resourcesByTypeUrl,
  type Service,
  Translator,
} from '../src/index.js';
import { endpoint } from './fixtures.js';

/** What a backend does with a call. */
export interface BackendBehaviour {
  /** Always answer UNAVAILABLE. */
  readonly fail?: boolean;
  /** Answer UNAVAILABLE to a first attempt (no `grpc-previous-rpc-attempts` header). */
  readonly failFirstAttempt?: boolean;
  /** Answer after this many milliseconds. */
  readonly delayMs?: number;
}

/** A running grpc-js backend that answers `/meridian.test.Echo/Call` with its name. */
export interface Backend {
  readonly name: string;
  readonly port: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly locality: string;
  calls: number;
  stop(): Promise<void>;
}

const METHOD = '/meridian.test.Echo/Call';
const passthrough = {
  path: METHOD,
  requestStream: false,
  responseStream: false,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
} as const;

/** Starts one backend on 127.0.0.1 (a free port). */
export async function startBackend(
  name: string,
  labels: Record<string, string>,
  behaviour: BackendBehaviour = {},
  locality = 'us-east1/us-east1-b/',
): Promise<Backend> {
  const server = new grpc.Server();
  const backend: Backend = {
    name,
    port: 0,
    labels,
    locality,
    calls: 0,
    stop: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000).unref();
      }),
  };
  server.addService(
    { Call: passthrough },
    {
      Call: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        backend.calls++;
        const retried = call.metadata.get('grpc-previous-rpc-attempts').length > 0;
        const answer = () => {
          if (behaviour.fail || (behaviour.failFirstAttempt && !retried)) {
            callback({ code: grpc.status.UNAVAILABLE, details: `${name} fails` });
          } else callback(null, Buffer.from(name));
        };
        if (behaviour.delayMs) setTimeout(answer, behaviour.delayMs);
        else answer();
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  (backend as { port: number }).port = port;
  return backend;
}

/** The registry view of backends serving `name.<ns>` on service port `port` (protocol GRPC). */
export function grpcService(name: string, namespace: string, port: number): Service {
  return {
    hostname: `${name}.${namespace}.svc.cluster.local`,
    namespace,
    ports: [{ name: 'grpc', port, protocol: 'GRPC' }],
    labels: { app: name },
    exportTo: [],
    resolution: 'EDS',
  };
}

/** Backends as registry endpoints (address 127.0.0.1, the backend's own port). */
export function endpointsOf(backends: readonly Backend[]): Endpoint[] {
  return backends.map((b) => endpoint('127.0.0.1', { grpc: b.port }, b.labels, b.locality));
}

/** An XdsSnapshot over this package's Translator: translate per proxy, encode each resource once. */
export class TranslatingSnapshot implements XdsSnapshot {
  readonly version: string;
  private readonly encoded = new WeakMap<NamedResource, EncodedResource>();
  private readonly maps = new WeakMap<readonly NamedResource[], ResourceMap>();

  constructor(
    private readonly translator: Translator,
    private readonly config: ConfigSnapshot,
    private readonly registry: RegistrySnapshot,
  ) {
    this.version = `${config.revision}.${registry.revision}`;
  }

  resources(ctx: ProxyContext, typeUrl: ResourceTypeUrl): ResourceMap | undefined {
    const all = this.translator.translate(this.config, this.registry, ctx.proxy);
    const list = resourcesByTypeUrl(all).get(typeUrl);
    if (!list) return undefined;
    const cached = this.maps.get(list);
    if (cached) return cached;
    const map = new Map<string, EncodedResource>();
    for (const r of list) {
      let e = this.encoded.get(r);
      if (!e) {
        e = encodedResource(typeUrl, r.name, encodeResource(typeUrl, r.resource));
        this.encoded.set(r, e);
      }
      map.set(r.name, e);
    }
    this.maps.set(list, map);
    return map;
  }
}

/** A running mesh: ADS server, backends, and a way to swap config. */
export interface Mesh {
  readonly xdsPort: number;
  readonly translator: Translator;
  update(config: ConfigSnapshot, registry: RegistrySnapshot): void;
  stop(): Promise<void>;
}

/** Starts Meridian's ADS server serving `config` over `services` backed by `backends` (by hostname). */
export async function startMesh(
  config: ConfigSnapshot,
  services: readonly Service[],
  backends: ReadonlyMap<string, readonly Backend[]>,
): Promise<Mesh> {
  const translator = new Translator();
  const xds = new XdsServer({
    logger: xdsLogger({ level: process.env.LOG_LEVEL ?? 'silent' }),
    debounce: { quietMs: 10, maxDelayMs: 50 },
  });
  const endpoints = new Map<string, Endpoint[]>();
  for (const [host, list] of backends) endpoints.set(host, endpointsOf(list));
  const registry = createRegistrySnapshot(1, services, endpoints);
  xds.update(new TranslatingSnapshot(translator, config, registry));
  const xdsPort = await xds.listen('127.0.0.1', 0);
  return {
    xdsPort,
    translator,
    update(c, r) {
      xds.update(new TranslatingSnapshot(translator, c, r), {
        full: true,
        reason: ['test'],
        at: performance.now(),
      });
    },
    async stop() {
      xds.close();
      await Promise.all([...backends.values()].flat().map((b) => b.stop()));
    },
  };
}

/** One call's outcome: the backend's name, or the gRPC status code of the failure. */
export type CallResult = GrpcCallResult;

/**
 * The proxyless client process (testkit's GrpcClientProcess, plain Node), bootstrapped for a client in
 * namespace `grpc` at locality us-east1/us-east1-b, node id `sidecar~10.99.0.1~client-0.grpc~...`.
 */
export class ClientProcess {
  private constructor(private readonly client: GrpcClientProcess) {}

  /** Forks the client process and points grpc-js-xds at the ADS server on `xdsPort`. */
  static async start(xdsPort: number, nodeIp = '10.99.0.1'): Promise<ClientProcess> {
    const bootstrap = JSON.stringify({
      xds_servers: [
        {
          server_uri: `127.0.0.1:${xdsPort}`,
          channel_creds: [{ type: 'insecure' }],
          server_features: ['xds_v3'],
        },
      ],
      node: {
        id: `sidecar~${nodeIp}~client-0.grpc~grpc.svc.cluster.local`,
        metadata: { GENERATOR: 'grpc', NAMESPACE: 'grpc', CLUSTER_ID: 'cluster1', LABELS: { app: 'client' } },
        locality: { region: 'us-east1', zone: 'us-east1-b' },
      },
      server_listener_resource_name_template: 'xds.istio.io/grpc/lds/inbound/%s',
    });
    return new ClientProcess(await GrpcClientProcess.start(bootstrap));
  }

  /** A client of `xds:///<target>` (target `host:port`). */
  target(target: string) {
    return {
      call: (headers: Record<string, string> = {}, deadlineMs = 10_000) =>
        this.client.call(target, { headers, deadlineMs }),
      many: (n: number, headers: Record<string, string> = {}, concurrency = 20, deadlineMs = 10_000) =>
        this.client.many(target, n, { headers, concurrency, deadlineMs }),
      ready: (headers: Record<string, string> = {}, timeoutMs = 45_000) =>
        this.client.ready(target, { headers, timeoutMs }),
    };
  }

  /** Starts a proxyless gRPC server (grpc-js-xds XdsServer) on 127.0.0.1:`port`; resolves once it serves. */
  serve(port: number, name: string, timeoutMs = 45_000): Promise<void> {
    return this.client.serve(port, name, timeoutMs);
  }

  /** Ends the process (closing its channels); kills it if it does not exit within 2 s. */
  stop(): Promise<void> {
    return this.client.stop();
  }
}

/** Counts results by backend name (failures under their status code). */
export const countBy: (results: readonly CallResult[]) => Record<string, number> = countByBackend;
