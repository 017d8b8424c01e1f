/**
 * The workload registration gRPC service (`proto/meridian/registry/v1/registry.proto`) and a small
 * client for it (agents, tests, load generators). See the proto for the protocol.
 */
import * as grpc from '@grpc/grpc-js';
import { loadServiceClient, protoPath } from '@meridian/proto';
import type { Lease, Store } from '@meridian/store';
import type { EndpointHealth } from '@meridian/translate';
import type { Logger } from 'pino';
import { InvalidRegistrationError, RegistrationFailedError, RegistrationRefusedError } from './errors.js';
import type { WorkloadRegistration } from './types.js';
import {
  checkRegistration,
  DEFAULT_REGISTRATION_TTL_S,
  type RegistrationCaller,
  toRegistration,
  validateWorkload,
  type WorkloadSpec,
  workloadKey,
} from './workloads.js';

/** Absolute path of the registration proto. */
export const REGISTRY_PROTO_PATH = protoPath('meridian/registry/v1/registry.proto');

type ProtoHealth = 'HEALTH_UNSPECIFIED' | EndpointHealth;

interface ProtoWorkload {
  name: string;
  namespace: string;
  address: string;
  ports: Record<string, number>;
  labels: Record<string, string>;
  service_account: string;
  locality: string;
  network: string;
  health: ProtoHealth;
  weight: number;
}

/** A RegisterRequest as proto-loader decodes it. */
export interface RegisterRequest {
  register?: Partial<ProtoWorkload> | null;
  health?: { health?: ProtoHealth } | null;
  keepalive?: Record<string, never> | null;
  request?: 'register' | 'health' | 'keepalive';
  ttl_seconds?: number;
}

/** A RegisterResponse. */
export interface RegisterResponse {
  lease_id: string;
  ttl_seconds: number;
  revision: string;
  replica_id: string;
}

function serviceConstructor(): grpc.ServiceClientConstructor {
  return loadServiceClient(REGISTRY_PROTO_PATH, 'meridian.registry.v1.WorkloadRegistry');
}

/** Options of the registration service. */
export interface RegistrationServiceOptions {
  readonly store: Store;
  /** This replica's id, stored with each registration. */
  readonly replicaId: string;
  /** Lease TTL when the request does not ask for one (default 15 s). */
  readonly defaultTtlSeconds?: number;
  readonly logger?: Logger;
  /**
   * Who opened the stream (a workload certificate over mTLS, a bootstrap token, or an admin token
   * of role registrar); throws {@link RegistrationRefusedError} when the stream carries no valid
   * credential. Every registration is then checked with {@link checkRegistration}.
   */
  readonly authenticate: (
    call: grpc.ServerDuplexStream<RegisterRequest, RegisterResponse>,
  ) => Promise<RegistrationCaller>;
  /** Called for every refused registration (nothing was written), with the reason label. */
  readonly onRefused?: (reason: RegistrationRefusedError['reason']) => void;
}

function healthOf(h: ProtoHealth | undefined): EndpointHealth {
  return h === 'UNHEALTHY' || h === 'DRAINING' ? h : 'HEALTHY';
}

function specOf(w: Partial<ProtoWorkload>): WorkloadSpec {
  const ports: Record<string, number> = {};
  for (const [k, v] of Object.entries(w.ports ?? {})) ports[k] = Number(v);
  return {
    name: w.name ?? '',
    namespace: w.namespace ?? '',
    address: w.address ?? '',
    ports,
    labels: { ...(w.labels ?? {}) },
    serviceAccount: w.service_account ?? '',
    locality: w.locality ?? '',
    network: w.network ?? '',
    health: healthOf(w.health),
    weight: w.weight ?? 1,
  };
}

type Stream = grpc.ServerDuplexStream<RegisterRequest, RegisterResponse>;

/** One agent's registration stream. */
class Registration {
  #lease: Lease | undefined;
  #record: WorkloadRegistration | undefined;
  #lastSeen = Date.now();
  #chain: Promise<void> = Promise.resolve();
  #watchdog: NodeJS.Timeout | undefined;
  #done = false;
  #caller: Promise<RegistrationCaller> | undefined;

  constructor(
    private readonly call: Stream,
    private readonly opts: RegistrationServiceOptions,
    private readonly onDone: (r: Registration) => void,
  ) {
    call.on('data', (req: RegisterRequest) => {
      this.#lastSeen = Date.now();
      this.#chain = this.#chain.then(() => this.#handle(req));
    });
    call.on('end', () => {
      this.#chain = this.#chain.then(() => this.#finish('deregister'));
    });
    call.on('cancelled', () => void this.#finish('release'));
    call.on('error', () => void this.#finish('release'));
    call.on('close', () => void this.#finish('release'));
  }

  get id(): string {
    return this.#record ? `${this.#record.namespace}/${this.#record.name}` : '?';
  }

  async #handle(req: RegisterRequest): Promise<void> {
    if (this.#done) return;
    try {
      if (req.request === 'register' && req.register)
        await this.#register(req.register, req.ttl_seconds ?? 0);
      else if (req.request === 'health' && req.health) await this.#health(healthOf(req.health.health));
      else if (req.request !== 'keepalive') {
        throw new InvalidRegistrationError(
          this.id,
          'request',
          'one of register, health or keepalive is required',
        );
      }
    } catch (error) {
      if (error instanceof RegistrationRefusedError) {
        this.opts.onRefused?.(error.reason);
        this.opts.logger?.warn(
          { audit: true, peer: this.call.getPeer(), reason: error.reason, err: error.message },
          'registration refused',
        );
        this.#fail(grpc.status[error.status], error.message);
        return;
      }
      const code =
        error instanceof InvalidRegistrationError
          ? grpc.status.INVALID_ARGUMENT
          : error instanceof RegistrationFailedError
            ? grpc.status.UNAVAILABLE
            : grpc.status.INTERNAL;
      this.opts.logger?.warn({ workload: this.id, err: error }, 'registration request failed');
      this.#fail(code, error instanceof Error ? error.message : String(error));
    }
  }

  async #register(w: Partial<ProtoWorkload>, ttlSeconds: number): Promise<void> {
    const spec = specOf(w);
    if (this.#record) {
      throw new InvalidRegistrationError(this.id, 'register', 'this stream already registered a workload');
    }
    validateWorkload(spec);
    this.#caller ??= this.opts.authenticate(this.call);
    const caller = await this.#caller;
    checkRegistration(caller, spec, this.call.getPeer());
    const id = `${spec.namespace}/${spec.name}`;
    const ttl = ttlSeconds > 0 ? ttlSeconds : (this.opts.defaultTtlSeconds ?? DEFAULT_REGISTRATION_TTL_S);
    let lease: Lease;
    try {
      lease = await this.opts.store.grantLease(ttl);
    } catch (cause) {
      throw new RegistrationFailedError(id, 'could not grant a lease', { cause });
    }
    if (this.#done) {
      lease.release();
      return;
    }
    this.#lease = lease;
    lease.onLost((error) => this.#fail(grpc.status.UNAVAILABLE, `registration lease lost: ${error.message}`));
    const record = toRegistration(spec, this.opts.replicaId, new Date());
    this.#record = record;
    await this.#write(record, lease);
    this.#watchdog = setInterval(
      () => {
        if (Date.now() - this.#lastSeen > ttl * 1000) {
          this.#fail(
            grpc.status.DEADLINE_EXCEEDED,
            `no request from the agent within the lease TTL of ${ttl} s`,
          );
        }
      },
      Math.max(100, (ttl * 1000) / 4),
    );
    this.#watchdog.unref();
    this.opts.logger?.info({ workload: id, lease: lease.id, ttl, by: caller.subject }, 'workload registered');
  }

  async #health(health: EndpointHealth): Promise<void> {
    if (!this.#record || !this.#lease) {
      throw new InvalidRegistrationError('?', 'health', 'register first');
    }
    this.#record = { ...this.#record, health };
    await this.#write(this.#record, this.#lease);
    this.opts.logger?.info({ workload: this.id, health }, 'workload health updated');
  }

  async #write(record: WorkloadRegistration, lease: Lease): Promise<void> {
    let revision: number;
    try {
      const res = await this.opts.store.put(
        workloadKey(record.namespace, record.name),
        new TextEncoder().encode(JSON.stringify(record)),
        { lease: lease.id },
      );
      revision = res.revision;
    } catch (cause) {
      throw new RegistrationFailedError(this.id, 'could not store the registration', { cause });
    }
    if (!this.#done) {
      this.call.write({
        lease_id: lease.id,
        ttl_seconds: lease.ttlSeconds,
        revision: String(revision),
        replica_id: this.opts.replicaId,
      });
    }
  }

  #fail(code: grpc.status, details: string): void {
    if (this.#done) return;
    void this.#finish('release');
    try {
      this.call.emit('error', { code, details, metadata: new grpc.Metadata() });
    } catch {
      // the stream is already gone
    }
  }

  /** Ends the registration: `deregister` revokes the lease (the workload is removed now),
   * `release` stops renewing it (removed when the TTL runs out). */
  async #finish(how: 'deregister' | 'release'): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    clearInterval(this.#watchdog);
    const lease = this.#lease;
    this.onDone(this);
    if (how === 'deregister') {
      try {
        await lease?.revoke();
      } catch (err) {
        lease?.release();
        this.opts.logger?.warn({ workload: this.id, err }, 'lease revoke failed; it expires with its TTL');
      }
      this.opts.logger?.info({ workload: this.id }, 'workload deregistered');
      try {
        this.call.end();
      } catch {
        // already closed
      }
    } else {
      lease?.release();
      if (lease)
        this.opts.logger?.info({ workload: this.id }, 'registration stream ended; lease left to expire');
    }
  }

  /** Replica shutdown: stop renewing (the agent re-registers elsewhere before the TTL runs out). */
  drain(): void {
    this.#fail(grpc.status.UNAVAILABLE, 'replica is shutting down; register with another replica');
  }
}

/** A mounted registration service. */
export class RegistrationService {
  readonly #active = new Set<Registration>();

  constructor(private readonly opts: RegistrationServiceOptions) {}

  /** Adds the service to a grpc-js server. */
  register(server: grpc.Server): void {
    server.addService(serviceConstructor().service, {
      Register: (call: Stream) => {
        const r = new Registration(call, this.opts, (done) => this.#active.delete(done));
        this.#active.add(r);
      },
    });
  }

  /** Open registration streams. */
  get activeCount(): number {
    return this.#active.size;
  }

  /** Ends every stream with UNAVAILABLE and stops renewing their leases (not revoked). */
  drain(): void {
    for (const r of [...this.#active]) r.drain();
  }
}

/** Options of a {@link WorkloadAgent}. */
export interface WorkloadAgentOptions {
  /** Lease TTL to ask for (0 or absent: the replica's default). */
  readonly ttlSeconds?: number;
  /** Keepalive period (default TTL/3, or 5 s without a TTL). */
  readonly keepaliveMs?: number;
  /** Channel credentials (default: plaintext; use TLS with the workload certificate on the CA port). */
  readonly credentials?: grpc.ChannelCredentials;
  readonly channelOptions?: grpc.ChannelOptions;
  /** A bootstrap token or an admin token of role registrar, sent as `authorization: Bearer`. */
  readonly token?: string;
}

/**
 * A minimal agent: one Register stream to one replica, keepalives, health updates. `close()`
 * deregisters; `abandon()` drops the stream without deregistering (as a crashed agent would).
 */
export class WorkloadAgent {
  readonly #client: grpc.Client;
  readonly #call: grpc.ClientDuplexStream<RegisterRequest, RegisterResponse>;
  readonly #waiting: { resolve: (r: RegisterResponse) => void; reject: (e: Error) => void }[] = [];
  readonly #timer: NodeJS.Timeout;
  /** The stream's final status, once it ended. */
  ended: grpc.StatusObject | undefined;

  constructor(
    address: string,
    readonly spec: WorkloadSpec,
    private readonly options: WorkloadAgentOptions = {},
  ) {
    const Ctor = serviceConstructor();
    this.#client = new Ctor(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
      options.channelOptions ?? {},
    );
    const metadata = new grpc.Metadata();
    if (options.token !== undefined) metadata.set('authorization', `Bearer ${options.token}`);
    this.#call = (
      this.#client as unknown as {
        Register(metadata: grpc.Metadata): grpc.ClientDuplexStream<RegisterRequest, RegisterResponse>;
      }
    ).Register(metadata);
    this.#call.on('data', (res: RegisterResponse) => this.#waiting.shift()?.resolve(res));
    this.#call.on('status', (s: grpc.StatusObject) => {
      this.ended = s;
      for (const w of this.#waiting.splice(0)) w.reject(new Error(`registration stream ended: ${s.details}`));
    });
    this.#call.on('error', () => {});
    const period = options.keepaliveMs ?? ((options.ttlSeconds ?? 15) * 1000) / 3;
    this.#timer = setInterval(() => this.#send({ keepalive: {} }), period);
    this.#timer.unref();
  }

  #send(req: RegisterRequest): void {
    if (!this.ended && !this.#call.writableEnded) this.#call.write(req);
  }

  #request(req: RegisterRequest): Promise<RegisterResponse> {
    return new Promise((resolve, reject) => {
      if (this.ended) return reject(new Error(`registration stream ended: ${this.ended.details}`));
      this.#waiting.push({ resolve, reject });
      this.#send(req);
    });
  }

  /** Registers the workload; resolves once etcd has it. */
  register(): Promise<RegisterResponse> {
    const s = this.spec;
    return this.#request({
      register: {
        name: s.name,
        namespace: s.namespace,
        address: s.address,
        ports: { ...(s.ports ?? {}) },
        labels: { ...(s.labels ?? {}) },
        service_account: s.serviceAccount ?? '',
        locality: s.locality ?? '',
        network: s.network ?? '',
        health: s.health ?? 'HEALTHY',
        weight: s.weight ?? 1,
      },
      ttl_seconds: this.options.ttlSeconds ?? 0,
    });
  }

  /** Reports the workload's health; resolves once etcd has it. */
  setHealth(health: EndpointHealth): Promise<RegisterResponse> {
    return this.#request({ health: { health } });
  }

  /** Deregisters (half-closes the stream) and closes the channel. */
  close(): void {
    clearInterval(this.#timer);
    this.#call.end();
    setTimeout(() => this.#client.close(), 1000).unref();
  }

  /** Drops the stream without deregistering, like a crashed agent. */
  abandon(): void {
    clearInterval(this.#timer);
    this.#call.cancel();
    this.#client.close();
  }
}
