// The workload's registration: the agent registers the workload beside it with a
// replica (WorkloadAgent of @meridian/registry: one Register stream, keepalives renew the lease), proving
// the identity with the workload certificate over mTLS (or a token). When the stream ends (the replica
// stopped, was killed, or lost its lease) the agent registers again on a new stream, with backoff, at
// the address the supplier gives then (the relay's current replica). A readiness probe of the local
// app (HTTP GET: 2xx/3xx healthy; or TCP connect) drives the endpoint's health: UNHEALTHY after K
// consecutive failures, HEALTHY after one success, as Kubernetes' readiness probe with
// successThreshold 1. The replica accepts only the address the stream comes from and the namespace and
// service account of the certificate (registry's checkRegistration).
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Timers } from '@meridian/ca';
import {
  InvalidRegistrationError,
  validateWorkload,
  WorkloadAgent,
  type WorkloadSpec,
} from '@meridian/registry';
import { type Logger, pino } from 'pino';

/** An endpoint's health as the registry stores it. */
export type WorkloadHealth = NonNullable<WorkloadSpec['health']>;

/** How the local app's readiness is checked. */
export type ReadinessProbe =
  /** GET `url` (http or https, certificate not verified, as the kubelet); 200..399 is ready. */
  | { readonly kind: 'http'; readonly url: string }
  /** A TCP connection to `host:port` (default host 127.0.0.1) that opens is ready. */
  | { readonly kind: 'tcp'; readonly host?: string; readonly port: number };

/** One probe's outcome. */
export interface ProbeResult {
  readonly ok: boolean;
  /** What was seen: `HTTP 200`, `connected`, or the error. */
  readonly detail: string;
}

/** The readiness state a probe result moves. */
export interface ReadinessState {
  readonly health: WorkloadHealth;
  /** Consecutive failed probes (0 after a success). */
  readonly consecutiveFailures: number;
}

/** The registration's state, as {@link AgentRegistration.status} and `onChange` report it. */
export interface RegistrationStatus {
  /** `registered`: a stream holds the registration; `connecting`: (re)registering or waiting to. */
  readonly state: 'connecting' | 'registered' | 'closed';
  /** The replica address of the current (or last tried) stream. */
  readonly address: string | undefined;
  /** The replica that holds the registration (from its answer). */
  readonly replicaId: string | undefined;
  readonly leaseId: string | undefined;
  readonly health: WorkloadHealth;
  readonly consecutiveFailures: number;
  /** Successful registrations so far (the first one and every re-registration). */
  readonly registrations: number;
  /** Why the last stream ended or the last attempt failed (cleared on success). */
  readonly lastError: AgentRegistrationError | undefined;
}

/**
 * A registration option is wrong, or a replica refused or dropped the registration. `field` names
 * what is at fault: an option (`workload.name`, `probe.url`, `ttlSeconds`, ...), `address` (the
 * replica could not be reached or went away), `credentials` (not authenticated) or `workload` (the
 * identity or address does not match the credential). `code` is the gRPC status name, when any.
 */
export class AgentRegistrationError extends Error {
  override readonly name = 'AgentRegistrationError';
  constructor(
    readonly field: string,
    message: string,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${message}`, options);
  }
}

/** Options of {@link AgentRegistration}. */
export interface AgentRegistrationOptions {
  /** The workload to register (its health comes from the probe). */
  readonly workload: Omit<WorkloadSpec, 'health'>;
  /** The replica to register with now: called for every (re)registration (the relay's current replica). */
  readonly address: () => string;
  /** mTLS credentials with the workload certificate (WorkloadCertificates.channelCredentials()). */
  readonly credentials?: grpc.ChannelCredentials | (() => grpc.ChannelCredentials);
  readonly channelOptions?: grpc.ChannelOptions;
  /** Instead of a certificate: a bootstrap token or a registrar's admin token (`authorization: Bearer`). */
  readonly token?: string | (() => string | Promise<string>);
  /** Lease TTL to ask for (default: the replica's, 15 s); keepalives go every TTL/3. */
  readonly ttlSeconds?: number;
  /** Readiness probe of the local app (none: always HEALTHY). */
  readonly probe?: ReadinessProbe;
  /** Period of the probe (default 10 s). */
  readonly probeIntervalMs?: number;
  /** Timeout of one probe (default 1 s). */
  readonly probeTimeoutMs?: number;
  /** Consecutive failures that make the endpoint UNHEALTHY (default 3). */
  readonly failureThreshold?: number;
  /** Re-registration backoff: first delay and cap (default 500 ms and 30 s), ±20 % jitter. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** How often the stream is checked for its end (default 250 ms). */
  readonly streamCheckMs?: number;
  readonly timers?: Timers;
  readonly random?: () => number;
  readonly logger?: Logger;
}

const defaultTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * The readiness rule (Kubernetes' readiness probe with successThreshold 1): one success makes the
 * endpoint HEALTHY; `failureThreshold` consecutive failures make it UNHEALTHY; fewer leave it as it is.
 */
export function nextReadiness(state: ReadinessState, ok: boolean, failureThreshold: number): ReadinessState {
  if (ok) return { health: 'HEALTHY', consecutiveFailures: 0 };
  const consecutiveFailures = state.consecutiveFailures + 1;
  return {
    health: consecutiveFailures >= failureThreshold ? 'UNHEALTHY' : state.health,
    consecutiveFailures,
  };
}

/** Runs one readiness probe; never rejects (a failure is `ok: false` with the reason). */
export function runProbe(probe: ReadinessProbe, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: ProbeResult) => {
      if (!done) {
        done = true;
        resolve(r);
      }
    };
    if (probe.kind === 'tcp') {
      const socket = connect({ host: probe.host ?? '127.0.0.1', port: probe.port });
      socket.setTimeout(timeoutMs, () => {
        socket.destroy();
        finish({ ok: false, detail: `no connection within ${timeoutMs} ms` });
      });
      socket.once('connect', () => {
        socket.destroy();
        finish({ ok: true, detail: 'connected' });
      });
      socket.once('error', (e) => finish({ ok: false, detail: e.message }));
      return;
    }
    const url = new URL(probe.url);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(
      url,
      {
        method: 'GET',
        agent: false,
        timeout: timeoutMs,
        headers: { 'user-agent': 'meridian-agent-probe', connection: 'close' },
        ...(url.protocol === 'https:' ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        finish({ ok: status >= 200 && status < 400, detail: `HTTP ${status}` });
      },
    );
    req.once('timeout', () => {
      req.destroy();
      finish({ ok: false, detail: `no answer within ${timeoutMs} ms` });
    });
    req.once('error', (e) => finish({ ok: false, detail: e.message }));
    req.end();
  });
}

function validateProbe(probe: ReadinessProbe | undefined): void {
  if (!probe) return;
  if (probe.kind === 'http') {
    let url: URL;
    try {
      url = new URL(probe.url);
    } catch {
      throw new AgentRegistrationError('probe.url', `"${probe.url}" is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new AgentRegistrationError('probe.url', `"${probe.url}" is not an http(s) URL`);
  } else if (probe.kind === 'tcp') {
    if (!Number.isInteger(probe.port) || probe.port < 1 || probe.port > 65535)
      throw new AgentRegistrationError('probe.port', `must be 1..65535, got ${probe.port}`);
  } else {
    throw new AgentRegistrationError(
      'probe.kind',
      `must be http or tcp, got ${String((probe as { kind: unknown }).kind)}`,
    );
  }
}

function positive(field: string, value: number | undefined, integer = false): void {
  if (value === undefined) return;
  if (!(value > 0) || (integer && !Number.isInteger(value)))
    throw new AgentRegistrationError(
      field,
      `must be a positive ${integer ? 'integer' : 'number'}, got ${value}`,
    );
}

/** Maps a stream's final status to the field at fault. */
function streamError(
  status: grpc.StatusObject | undefined,
  error: unknown,
  address: string,
): AgentRegistrationError {
  if (!status) {
    return new AgentRegistrationError(
      'address',
      `registration at ${address} failed: ${(error as Error)?.message ?? String(error)}`,
      undefined,
      {
        cause: error,
      },
    );
  }
  const code = grpc.status[status.code] ?? String(status.code);
  const field =
    status.code === grpc.status.UNAUTHENTICATED
      ? 'credentials'
      : status.code === grpc.status.PERMISSION_DENIED || status.code === grpc.status.INVALID_ARGUMENT
        ? 'workload'
        : 'address';
  return new AgentRegistrationError(
    field,
    `registration stream at ${address} ended: ${status.details}`,
    code,
    {
      cause: error,
    },
  );
}

/**
 * Keeps the workload registered with one replica at a time and its health current. `start()` probes
 * once (so the first registration carries the app's real readiness) and registers; it resolves after
 * the first successful registration. Afterwards the probe runs every `probeIntervalMs` and any change
 * of health is sent on the stream; an ended stream is replaced by a new one at `address()` after a
 * backoff. `close()` deregisters (the replica revokes the lease: the endpoint leaves EDS at once).
 */
export class AgentRegistration {
  readonly #o: AgentRegistrationOptions;
  readonly #timers: Timers;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #threshold: number;
  readonly #listeners = new Set<(s: RegistrationStatus) => void>();
  #readiness: ReadinessState = { health: 'HEALTHY', consecutiveFailures: 0 };
  #agent: WorkloadAgent | undefined;
  #registered = false;
  #address: string | undefined;
  #replicaId: string | undefined;
  #leaseId: string | undefined;
  #registrations = 0;
  #lastError: AgentRegistrationError | undefined;
  #failures = 0;
  #closed = false;
  #started: Promise<void> | undefined;
  #firstRegistered: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #probeTimer: unknown;
  #streamTimer: unknown;
  #retryTimer: unknown;

  constructor(options: AgentRegistrationOptions) {
    try {
      validateWorkload({ ...options.workload, health: 'HEALTHY' });
    } catch (error) {
      if (error instanceof InvalidRegistrationError)
        throw new AgentRegistrationError(`workload.${error.field}`, error.reason, undefined, {
          cause: error,
        });
      throw error;
    }
    validateProbe(options.probe);
    positive('probeIntervalMs', options.probeIntervalMs);
    positive('probeTimeoutMs', options.probeTimeoutMs);
    positive('failureThreshold', options.failureThreshold, true);
    positive('ttlSeconds', options.ttlSeconds, true);
    positive('streamCheckMs', options.streamCheckMs);
    if (options.credentials !== undefined && options.token !== undefined)
      throw new AgentRegistrationError('token', 'give credentials (mTLS) or a token, not both');
    this.#o = options;
    this.#timers = options.timers ?? defaultTimers;
    this.#random = options.random ?? Math.random;
    this.#log = options.logger ?? pino({ name: 'meridian-agent' });
    this.#threshold = options.failureThreshold ?? 3;
  }

  /** The current state (a copy). */
  status(): RegistrationStatus {
    return {
      state: this.#closed ? 'closed' : this.#registered ? 'registered' : 'connecting',
      address: this.#address,
      replicaId: this.#replicaId,
      leaseId: this.#leaseId,
      health: this.#readiness.health,
      consecutiveFailures: this.#readiness.consecutiveFailures,
      registrations: this.#registrations,
      lastError: this.#lastError,
    };
  }

  /** Calls `listener` with the new status after every change; returns an unsubscribe (safe twice). */
  onChange(listener: (status: RegistrationStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Probes once, registers, and starts the probe loop; resolves after the first successful
   * registration (retried with backoff until then), rejects if `close()` comes first.
   */
  start(): Promise<void> {
    this.#started ??= (async () => {
      const first = new Promise<void>((resolve, reject) => {
        this.#firstRegistered = { resolve, reject };
      });
      if (this.#o.probe) {
        const r = await runProbe(this.#o.probe, this.#o.probeTimeoutMs ?? 1000);
        // Not ready until a probe succeeds (as a starting pod).
        this.#readiness = r.ok
          ? { health: 'HEALTHY', consecutiveFailures: 0 }
          : { health: 'UNHEALTHY', consecutiveFailures: 1 };
        this.#scheduleProbe();
      }
      void this.#connect();
      await first;
    })();
    return this.#started;
  }

  /** Stops probing and re-registering; deregisters (revokes the lease) unless `deregister` is false. */
  close(deregister = true): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [this.#probeTimer, this.#streamTimer, this.#retryTimer])
      if (t !== undefined) this.#timers.clearTimeout(t);
    const agent = this.#agent;
    this.#agent = undefined;
    this.#registered = false;
    if (agent) {
      if (deregister) agent.close();
      else agent.abandon();
    }
    this.#firstRegistered?.reject(
      new AgentRegistrationError('address', 'closed before the first registration'),
    );
    this.#firstRegistered = undefined;
    this.#emit();
  }

  #emit(): void {
    const s = this.status();
    for (const l of [...this.#listeners]) {
      try {
        l(s);
      } catch (err) {
        this.#log.error({ err }, 'registration status listener failed');
      }
    }
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    this.#retryTimer = undefined;
    let address: string;
    let agent: WorkloadAgent;
    const health = this.#readiness.health;
    let token: string | undefined;
    try {
      const t = this.#o.token;
      token = t === undefined ? undefined : typeof t === 'function' ? await t() : t;
    } catch (error) {
      this.#failed(
        new AgentRegistrationError('token', `could not be read: ${(error as Error).message}`, undefined, {
          cause: error,
        }),
      );
      return;
    }
    if (this.#closed) return;
    try {
      address = this.#o.address();
      this.#address = address;
      const creds = this.#o.credentials;
      agent = new WorkloadAgent(
        address,
        { ...this.#o.workload, health },
        {
          ...(this.#o.ttlSeconds === undefined ? {} : { ttlSeconds: this.#o.ttlSeconds }),
          ...(creds === undefined ? {} : { credentials: typeof creds === 'function' ? creds() : creds }),
          ...(this.#o.channelOptions === undefined ? {} : { channelOptions: this.#o.channelOptions }),
          ...(token === undefined ? {} : { token }),
        },
      );
    } catch (error) {
      this.#failed(
        new AgentRegistrationError(
          'address',
          `cannot open a registration stream: ${(error as Error).message}`,
          undefined,
          { cause: error },
        ),
      );
      return;
    }
    this.#agent = agent;
    let response: Awaited<ReturnType<WorkloadAgent['register']>>;
    try {
      response = await agent.register();
    } catch (error) {
      this.#ended(agent, error);
      return;
    }
    if (this.#agent !== agent) return;
    this.#registered = true;
    this.#replicaId = response.replica_id;
    this.#leaseId = response.lease_id;
    this.#registrations++;
    this.#failures = 0;
    this.#lastError = undefined;
    this.#log.info(
      {
        address,
        replica: response.replica_id,
        lease: response.lease_id,
        health,
        registrations: this.#registrations,
      },
      this.#registrations === 1 ? 'workload registered' : 'workload registered again on a new stream',
    );
    this.#firstRegistered?.resolve();
    this.#firstRegistered = undefined;
    this.#emit();
    // The probe may have changed the health while the registration was in flight.
    if (this.#readiness.health !== health) this.#sendHealth(agent, this.#readiness.health);
    this.#watchStream(agent);
  }

  #watchStream(agent: WorkloadAgent): void {
    // WorkloadAgent records its stream's end in `ended`; it offers no callback, so it is polled.
    this.#streamTimer = this.#timers.setTimeout(() => {
      this.#streamTimer = undefined;
      if (this.#agent !== agent || this.#closed) return;
      if (agent.ended) this.#ended(agent, undefined);
      else this.#watchStream(agent);
    }, this.#o.streamCheckMs ?? 250);
  }

  #ended(agent: WorkloadAgent, error: unknown): void {
    if (this.#agent !== agent) return;
    this.#agent = undefined;
    this.#registered = false;
    if (this.#streamTimer !== undefined) this.#timers.clearTimeout(this.#streamTimer);
    this.#streamTimer = undefined;
    agent.abandon();
    if (this.#closed) return;
    this.#failed(streamError(agent.ended, error, this.#address ?? '?'));
  }

  #failed(e: AgentRegistrationError): void {
    this.#lastError = e;
    const initial = this.#o.retry?.initialMs ?? 500;
    const max = this.#o.retry?.maxMs ?? 30_000;
    const base = Math.min(max, initial * 2 ** Math.min(this.#failures, 30));
    this.#failures++;
    const delay = Math.max(1, Math.round(base * (0.8 + 0.4 * this.#random())));
    const fields = { err: e.message, code: e.code, address: this.#address, retryInMs: delay };
    // A refusal will not go away by itself: say so loudly; a lost replica is routine.
    if (e.field === 'address') this.#log.warn(fields, 'registration stream ended; registering again');
    else this.#log.error(fields, 'registration refused; retrying');
    this.#emit();
    this.#retryTimer = this.#timers.setTimeout(() => void this.#connect(), delay);
  }

  #sendHealth(agent: WorkloadAgent, health: WorkloadHealth): void {
    agent.setHealth(health).then(
      () => this.#log.info({ health, replica: this.#replicaId }, 'workload health reported'),
      // The stream ended: the watcher re-registers, with the health current then.
      () => undefined,
    );
  }

  #scheduleProbe(): void {
    if (this.#closed || !this.#o.probe) return;
    this.#probeTimer = this.#timers.setTimeout(() => {
      this.#probeTimer = undefined;
      void this.#probe();
    }, this.#o.probeIntervalMs ?? 10_000);
  }

  async #probe(): Promise<void> {
    const r = await runProbe(this.#o.probe!, this.#o.probeTimeoutMs ?? 1000);
    if (this.#closed) return;
    const before = this.#readiness;
    this.#readiness = nextReadiness(before, r.ok, this.#threshold);
    if (this.#readiness.health !== before.health) {
      this.#log.info(
        {
          health: this.#readiness.health,
          probe: r.detail,
          consecutiveFailures: this.#readiness.consecutiveFailures,
        },
        'readiness changed',
      );
      if (this.#agent && this.#registered) this.#sendHealth(this.#agent, this.#readiness.health);
    }
    if (
      this.#readiness.consecutiveFailures !== before.consecutiveFailures ||
      this.#readiness.health !== before.health
    )
      this.#emit();
    this.#scheduleProbe();
  }
}
