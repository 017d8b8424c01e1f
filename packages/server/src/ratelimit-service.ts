/**
 * The global rate-limit service: every replica serves Envoy's
 * `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` on its gRPC servers (the plaintext
 * xDS port and the CA's mTLS port), and the replicas of a cluster share the counters through etcd,
 * so a limit holds whichever replica a proxy asks. This module is the gRPC side: Envoy's service
 * definition, the adapter from its wire messages to a decision, and where proxies reach the service.
 * The rest lives apart:
 * - ratelimit-windows.ts: the decisions, fixed windows and batches (the counting and its accuracy);
 * - ratelimit-claims.ts: the counters in etcd (key layout, compare-and-swap claims, window leases);
 * - ratelimit-access.ts: who may ask (the caller's certificate, its own limits only).
 */
import * as grpc from '@grpc/grpc-js';
import { envoyProtoIncludeDirs } from '@meridian/envoy';
import { loadServiceClient } from '@meridian/proto';
import type { ReplicaServiceAddress } from '@meridian/translate';
import { metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { advertisedAddress, isUnspecifiedHost } from './membership.js';
import {
  type RateLimitAccess,
  RateLimitRefusedError,
  rateLimitCaller,
  rateLimitRefusal,
} from './ratelimit-access.js';
import type { GlobalRateLimiter } from './ratelimit-windows.js';

export type { CallerIdentity, RateLimitAccess } from './ratelimit-access.js';
export { RateLimitRefusedError, rateLimitRefusal } from './ratelimit-access.js';
export { RATE_LIMIT_PREFIX } from './ratelimit-claims.js';
export type {
  CounterShare,
  DescriptorEntry,
  DescriptorStatus,
  GlobalRateLimiterOptions,
  RateLimitDecision,
} from './ratelimit-windows.js';
export { GlobalRateLimiter } from './ratelimit-windows.js';

const RLS_PROTO = 'envoy/service/ratelimit/v3/rls.proto';

/** The `envoy.service.ratelimit.v3.RateLimitService` definition, from Envoy's own proto. */
export function rateLimitServiceDefinition(): grpc.ServiceDefinition {
  return rateLimitServiceClient().service;
}

/** A client constructor of Envoy's rate-limit service (tests, benchmarks). */
export function rateLimitServiceClient(): grpc.ServiceClientConstructor {
  return loadServiceClient(RLS_PROTO, 'envoy.service.ratelimit.v3.RateLimitService', {
    longs: Number,
    defaults: false,
    includeDirs: envoyProtoIncludeDirs(),
  });
}

interface WireRequest {
  domain?: string;
  descriptors?: Array<{ entries?: Array<{ key?: string; value?: string }> }>;
  hits_addend?: number;
}

/**
 * Registers `ShouldRateLimit` on a gRPC server: the replica's plaintext xDS server
 * (`access.secure` false) or its CA mTLS server (true). Callers are authenticated and authorised as
 * ratelimit-access.ts says; a refusal is UNAUTHENTICATED or PERMISSION_DENIED with the reason. A
 * failure to reach etcd is answered UNAVAILABLE (the proxy then applies `failure_mode_deny`).
 */
export function addRateLimitService(
  server: grpc.Server,
  limiter: GlobalRateLimiter,
  log: Logger,
  access: RateLimitAccess,
): void {
  const refused = (access.meter ?? metrics.getMeter('@meridian/server')).createCounter(
    'meridian_ratelimit_refused',
    {
      description:
        'Rate-limit calls refused, by reason (unauthenticated, forbidden, internal) and port (mtls, plaintext).',
    },
  );
  const port = access.secure ? 'mtls' : 'plaintext';
  server.addService(rateLimitServiceDefinition(), {
    ShouldRateLimit: (
      call: grpc.ServerUnaryCall<WireRequest, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      const req = call.request;
      const descriptors = (req.descriptors ?? []).map((d) =>
        (d.entries ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' })),
      );
      try {
        const caller = rateLimitCaller(call, access);
        const why = caller
          ? rateLimitRefusal(limiter, caller, descriptors, access.registry?.(), access.rootNamespace)
          : undefined;
        if (why) throw new RateLimitRefusedError(grpc.status.PERMISSION_DENIED, 'forbidden', why);
      } catch (error) {
        const e =
          error instanceof RateLimitRefusedError
            ? error
            : new RateLimitRefusedError(grpc.status.INTERNAL, 'internal', String(error), { cause: error });
        refused.add(1, { reason: e.reason, port });
        log.debug({ reason: e.reason, err: e.message }, 'rate-limit call refused');
        callback({ code: e.code, details: e.message });
        return;
      }
      limiter.decide(req.domain ?? '', descriptors, req.hits_addend || 1).then(
        (d) =>
          callback(null, {
            overall_code: d.overall,
            statuses: d.statuses.map((s) => ({
              code: s.code,
              ...(s.limit
                ? { current_limit: { requests_per_unit: s.limit.requestsPerUnit, unit: s.limit.unit } }
                : {}),
              ...(s.remaining !== undefined ? { limit_remaining: s.remaining } : {}),
              ...(s.resetMs !== undefined
                ? {
                    duration_until_reset: {
                      seconds: Math.floor(s.resetMs / 1000),
                      nanos: (s.resetMs % 1000) * 1e6,
                    },
                  }
                : {}),
            })),
          }),
        (error: unknown) => {
          log.warn({ err: error }, 'rate-limit decision failed');
          callback({
            code: grpc.status.UNAVAILABLE,
            details: `rate-limit counters unavailable: ${(error as Error).message}`,
          });
        },
      );
    },
  });
}

/** How proxies reach the replicas' rate-limit service: mTLS, plaintext (development), or not at all. */
export type RateLimitTransport = 'mtls' | 'plaintext' | 'off';

/**
 * Where proxies reach the rate-limit service: the `--rate-limit-address` setting (`host:port`,
 * comma-separated), else the cluster's replicas (sorted by replica id, so every replica translates
 * the same cluster): their CA mTLS addresses for `mtls` (each marked `mtls`), their plaintext xDS
 * addresses for `plaintext`, none for `off`; each at the replica's advertised host
 * (`--advertise-address`, which its serving certificate names) when its record has one. A replica
 * that advertises nothing and binds an unspecified address such as `0.0.0.0` is left out.
 */
export function rateLimitServiceAddresses(
  setting: string,
  replicas:
    | readonly {
        readonly id: string;
        readonly xdsAddress: string;
        readonly caAddress?: string;
        readonly advertiseAddress?: string;
      }[]
    | undefined,
  transport: RateLimitTransport,
): ReplicaServiceAddress[] {
  if (transport === 'off') return [];
  const mtls = transport === 'mtls';
  const parse = (a: string): ReplicaServiceAddress | undefined => {
    const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(a.trim());
    if (!m || m[1] === '') return undefined;
    return { host: m[1] as string, port: Number(m[2]), ...(mtls ? { mtls: true } : {}) };
  };
  const list =
    (setting ?? '').trim() !== ''
      ? setting.split(',').map(parse)
      : [...(replicas ?? [])]
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
          .map((r) => parse(advertisedAddress(mtls ? r.caAddress : r.xdsAddress, r.advertiseAddress)))
          .filter((a) => a !== undefined && !isUnspecifiedHost(a.host));
  return list.filter((a): a is ReplicaServiceAddress => a !== undefined);
}

/** A string equal exactly when two address lists are (what the config snapshot was built with). */
export function replicaServiceKey(addresses: readonly ReplicaServiceAddress[] | undefined): string {
  return (addresses ?? []).map((a) => `${a.mtls ? 'mtls' : 'plain'}:${a.host}:${a.port}`).join(',');
}
