/**
 * The replicas' own services as proxies see them: where sidecars reach the rate-limit and
 * access-log services (from the current membership, over the CA's mTLS ports or, for development,
 * the plaintext xDS ports), and who may call the rate-limit service on each of a replica's ports.
 */
import type { PolicyInputs, RegistrySnapshot } from '@meridian/translate';
import type { ServerOptions } from './options.js';
import type { RateLimitAccess } from './ratelimit-access.js';
import { rateLimitServiceAddresses, replicaServiceKey } from './ratelimit-service.js';

/** A member replica's addresses, as the directory lists them. */
export interface MemberAddresses {
  readonly id: string;
  readonly xdsAddress: string;
  readonly caAddress?: string;
  readonly advertiseAddress?: string;
}

/** The replicas' service addresses a config snapshot is built with; `key` tells two results apart. */
export type ReplicaServices = Pick<PolicyInputs, 'rateLimitService' | 'accessLogService'> & {
  readonly key: string;
};

/**
 * Where proxies reach the replicas' own services, from the current membership: the
 * rate-limit service on the replicas' CA mTLS ports when this replica has the CA, on their
 * plaintext xDS ports only with `--rate-limit-plaintext on` and no CA, else nowhere; sidecars'
 * access logs (Telemetry provider `meridian`) likewise: the CA mTLS ports, else the plaintext
 * xDS ports with `--telemetry-plaintext on`. `key` tells two results apart.
 */
export function replicaServices(
  options: Pick<ServerOptions, 'rateLimitAddress' | 'rateLimitPlaintext' | 'telemetryPlaintext'>,
  replicas: readonly MemberAddresses[] | undefined,
  hasCa: boolean,
): ReplicaServices {
  const rateLimitService = rateLimitServiceAddresses(
    options.rateLimitAddress,
    replicas,
    hasCa ? 'mtls' : options.rateLimitPlaintext === 'on' ? 'plaintext' : 'off',
  );
  // Access logs to the CA's mTLS ports when this replica has the CA (the workload
  // certificate identifies the reporter), else the plaintext xDS ports with --telemetry-plaintext on.
  const accessLogService = hasCa
    ? rateLimitServiceAddresses('', replicas, 'mtls')
    : options.telemetryPlaintext === 'on'
      ? rateLimitServiceAddresses('', replicas, 'plaintext')
      : undefined;
  return {
    rateLimitService,
    ...(accessLogService ? { accessLogService } : {}),
    key: `${replicaServiceKey(rateLimitService)}|${replicaServiceKey(accessLogService)}`,
  };
}

/** Who may call the rate-limit service on the plaintext (`secure` false) or the CA mTLS port. */
export function rateLimitAccess(
  options: Pick<ServerOptions, 'rateLimitPlaintext' | 'trustDomain'>,
  secure: boolean,
  sources: {
    /** The CA's trust domain, while the CA is loaded. */
    readonly caTrustDomain: () => string | undefined;
    readonly registry: () => RegistrySnapshot | undefined;
    /** The mesh root namespace of the translator in use now. */
    readonly rootNamespace: string;
  },
): RateLimitAccess {
  return {
    secure,
    plaintext: options.rateLimitPlaintext === 'on',
    trustDomain: () => sources.caTrustDomain() ?? options.trustDomain,
    registry: sources.registry,
    rootNamespace: sources.rootNamespace,
  };
}
