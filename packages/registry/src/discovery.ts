/**
 * Replica discovery (`proto/meridian/registry/v1/discovery.proto`): the service a replica serves
 * from its cluster's membership entries, and a small client for node agents.
 */
import type * as grpc from '@grpc/grpc-js';
import { loadServiceClient, protoPath } from '@meridian/proto';

/** Absolute path of the discovery proto. */
export const DISCOVERY_PROTO_PATH = protoPath('meridian/registry/v1/discovery.proto');

/** One replica as an agent sees it. */
export interface DiscoveredReplica {
  readonly id: string;
  readonly meshId: string;
  readonly clusterId: string;
  /** `region/zone/subzone` (any part may be empty). */
  readonly locality: string;
  /** Plaintext xDS address, '' when not served. */
  readonly xdsAddress: string;
  /** TLS xDS/CA address, '' when not served. */
  readonly caAddress: string;
  /** Open xDS streams when last reported (0: unknown). */
  readonly connections: number;
}

interface WireReplica {
  id: string;
  mesh_id: string;
  cluster_id: string;
  locality: string;
  xds_address: string;
  ca_address: string;
  connections: number;
}

function serviceConstructor(): grpc.ServiceClientConstructor {
  return loadServiceClient(DISCOVERY_PROTO_PATH, 'meridian.registry.v1.ReplicaDiscovery');
}

/** What a replica answers with: itself and the live members of its cluster. */
export interface ReplicaDiscoverySource {
  readonly selfId: string;
  replicas(): readonly DiscoveredReplica[];
}

/** Adds ReplicaDiscovery to a grpc-js server. */
export function addReplicaDiscoveryService(server: grpc.Server, source: ReplicaDiscoverySource): void {
  server.addService(serviceConstructor().service, {
    ListReplicas: (
      _call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<{ responder: string; replicas: WireReplica[] }>,
    ) => {
      callback(null, {
        responder: source.selfId,
        replicas: source.replicas().map((r) => ({
          id: r.id,
          mesh_id: r.meshId,
          cluster_id: r.clusterId,
          locality: r.locality,
          xds_address: r.xdsAddress,
          ca_address: r.caAddress,
          connections: r.connections,
        })),
      });
    },
  });
}

type DiscoveryStub = grpc.Client & {
  ListReplicas(
    req: object,
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: { responder: string; replicas: WireReplica[] }) => void,
  ): void;
};

/**
 * A channel to one replica that asks it for its cluster's replicas. The channel (`client`) is a
 * plain grpc-js client, so other services (an ADS stream) can share its HTTP/2 connection.
 */
export class ReplicaDiscoveryClient {
  readonly #stub: DiscoveryStub;

  constructor(
    readonly address: string,
    credentials: grpc.ChannelCredentials,
    channelOptions: grpc.ChannelOptions = {},
  ) {
    const Ctor = serviceConstructor();
    this.#stub = new Ctor(address, credentials, channelOptions) as unknown as DiscoveryStub;
  }

  /** The underlying channel's client. */
  get client(): grpc.Client {
    return this.#stub;
  }

  /** The replicas the replica knows of (rejects with the gRPC error). */
  list(deadlineMs = 3000): Promise<{ responder: string; replicas: DiscoveredReplica[] }> {
    return new Promise((resolve, reject) => {
      this.#stub.ListReplicas({}, { deadline: Date.now() + deadlineMs }, (err, res) => {
        if (err || !res) return reject(err ?? new Error('empty response'));
        resolve({
          responder: res.responder,
          replicas: res.replicas.map((r) => ({
            id: r.id,
            meshId: r.mesh_id,
            clusterId: r.cluster_id,
            locality: r.locality,
            xdsAddress: r.xds_address,
            caAddress: r.ca_address,
            connections: Number(r.connections),
          })),
        });
      });
    });
  }

  close(): void {
    this.#stub.close();
  }
}

/** Asks the replica at `address` for its cluster's replicas (one call on a fresh channel). */
export async function listReplicas(
  address: string,
  credentials: grpc.ChannelCredentials,
  o: { deadlineMs?: number; channelOptions?: grpc.ChannelOptions } = {},
): Promise<{ responder: string; replicas: DiscoveredReplica[] }> {
  const client = new ReplicaDiscoveryClient(address, credentials, o.channelOptions);
  try {
    return await client.list(o.deadlineMs);
  } finally {
    client.close();
  }
}
