// One meridian-agent: the replica selector, the local xDS relay on a localhost port, and the
// last-known-good cache, wired together.
import * as grpc from '@grpc/grpc-js';
import pino, { type Logger } from 'pino';
import { LastKnownGood } from './cache.js';
import { AgentMetrics } from './metrics.js';
import type { AgentPlace } from './rank.js';
import { XdsRelay } from './relay.js';
import { ReplicaSelector } from './replicas.js';
import type { LocalSecrets } from './sds.js';

/** What {@link Agent.start} needs. */
export interface AgentOptions {
  /** Replica addresses to discover from (one or more per cluster). */
  readonly seeds: readonly string[];
  readonly place: AgentPlace;
  /** Where the local client connects (default `127.0.0.1:15101`; port 0 picks one). */
  readonly listenAddress?: string;
  /** Directory of the last-known-good cache (none: no cache). */
  readonly cacheDir?: string;
  /** Dial replicas' TLS port with these credentials (else plaintext xDS, no credentials). */
  readonly tlsCredentials?: () => grpc.ChannelCredentials;
  readonly channelOptions?: grpc.ChannelOptions;
  readonly refreshMs?: number;
  readonly moveBackJitterMs?: number;
  readonly failedHoldMs?: number;
  /** Secrets the agent serves itself over SDS (its own workload certificate). */
  readonly secrets?: LocalSecrets;
  readonly logger?: Logger;
}

/** A running agent. */
export class Agent {
  address = '';
  #server: grpc.Server | undefined;

  private constructor(
    readonly selector: ReplicaSelector,
    readonly relay: XdsRelay,
    readonly log: Logger,
  ) {}

  /** Discovers the replicas (an unreachable control plane is not an error: the cache serves) and listens. */
  static async start(o: AgentOptions): Promise<Agent> {
    const log = o.logger ?? pino({ name: 'meridian-agent' });
    const selector = new ReplicaSelector({
      seeds: o.seeds,
      place: o.place,
      tls: o.tlsCredentials !== undefined,
      credentials: o.tlsCredentials ?? (() => grpc.credentials.createInsecure()),
      ...(o.channelOptions ? { channelOptions: o.channelOptions } : {}),
      ...(o.refreshMs !== undefined ? { refreshMs: o.refreshMs } : {}),
      ...(o.moveBackJitterMs !== undefined ? { moveBackJitterMs: o.moveBackJitterMs } : {}),
      ...(o.failedHoldMs !== undefined ? { failedHoldMs: o.failedHoldMs } : {}),
      log: log.child({ part: 'replicas' }),
    });
    await selector.start();
    const metrics = new AgentMetrics();
    const relay = new XdsRelay({
      selector,
      log: log.child({ part: 'relay' }),
      metrics,
      ...(o.cacheDir ? { cache: new LastKnownGood(o.cacheDir, log.child({ part: 'cache' })) } : {}),
      ...(o.secrets ? { secrets: o.secrets } : {}),
    });
    const agent = new Agent(selector, relay, log);
    metrics.observeUpstream(() => {
      const current = selector.current;
      return {
        rank: selector.rankOf(current),
        replica: selector.ranked.find((c) => c.address === current)?.replica.id,
        streams: relay.streams.size,
      };
    });
    const server = new grpc.Server({
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    });
    relay.register(server);
    const listen = o.listenAddress ?? '127.0.0.1:15101';
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    agent.#server = server;
    agent.address = `${listen.slice(0, listen.lastIndexOf(':'))}:${port}`;
    const best = selector.pick();
    log.info(
      { address: agent.address, replica: best?.replica.id, replicas: selector.ranked.length },
      best ? 'meridian-agent ready' : 'meridian-agent ready; no replica reachable yet',
    );
    return agent;
  }

  /** The replica the streams are on, its rank, and the ranking. */
  status(): {
    current: string | undefined;
    rank: number;
    ranked: { id: string; address: string; locality: string; rttMs: number | undefined }[];
    streams: number;
  } {
    return {
      current: this.selector.current,
      rank: this.selector.rankOf(this.selector.current),
      ranked: this.selector.ranked.map((c) => ({
        id: c.replica.id,
        address: c.address,
        locality: c.replica.locality,
        rttMs: c.rttMs,
      })),
      streams: this.relay.streams.size,
    };
  }

  async stop(): Promise<void> {
    this.relay.close();
    const server = this.#server;
    if (server) await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    this.selector.stop();
  }
}
