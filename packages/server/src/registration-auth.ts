/**
 * Who may register workloads with a replica: the registration service (registry's
 * `RegistrationService`) as the replica runs it, with its callers authenticated here (an admin
 * token with the registrar role, a bootstrap token, or the workload certificate of an mTLS
 * connection on the CA port) and refusals counted in `meridian_registrations_refused`.
 */
import type * as grpc from '@grpc/grpc-js';
import { type AdminAuthority, grants, isAdminToken } from '@meridian/auth';
import { identityFromPeerCertificate } from '@meridian/ca';
import { type RegistrationCaller, RegistrationRefusedError, RegistrationService } from '@meridian/registry';
import type { Store } from '@meridian/store';
import { metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { ReplicaMtls } from './mtls.js';
import type { ServerOptions } from './options.js';

/** The credentials a registration is checked against; each undefined until it is loaded. */
export interface RegistrationCredentials {
  /** The cluster's admin authority (admin tokens); undefined until etcd has been reached. */
  readonly auth: () => AdminAuthority | undefined;
  /** The CA runtime (bootstrap tokens, workload certificates); undefined without a CA. */
  readonly mtls: () => ReplicaMtls | undefined;
}

/** The replica's registration service, its callers authenticated by {@link authenticateRegistration}. */
export function createRegistrationService(
  store: Store,
  options: Pick<ServerOptions, 'replicaId' | 'registrationTtlSeconds'>,
  log: Logger,
  credentials: RegistrationCredentials,
): RegistrationService {
  const refusedRegistrations = metrics
    .getMeter('@meridian/server')
    .createCounter('meridian_registrations_refused', {
      description: 'Workload registrations refused (no credential, another identity, another address).',
    });
  return new RegistrationService({
    store,
    replicaId: options.replicaId,
    defaultTtlSeconds: options.registrationTtlSeconds,
    logger: log.child({ part: 'registration' }),
    authenticate: (call) => authenticateRegistration(call, credentials),
    onRefused: (reason) => refusedRegistrations.add(1, { reason }),
  });
}

/**
 * Who opened a registration stream: an admin token (role registrar: any workload, any address),
 * a bootstrap token (its workload identity; single-use tokens are spent), or the workload
 * certificate of an mTLS connection on the CA port. Anything else is refused.
 */
export async function authenticateRegistration(
  call: grpc.ServerDuplexStream<unknown, unknown>,
  credentials: RegistrationCredentials,
): Promise<RegistrationCaller> {
  const refuse = (message: string, cause?: unknown): never => {
    throw new RegistrationRefusedError('UNAUTHENTICATED', 'unauthenticated', message, { cause });
  };
  const header = call.metadata.get('authorization')[0];
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(String(header));
    if (!m) return refuse('authorization metadata must be "Bearer <token>"');
    const token = m[1]!;
    if (isAdminToken(token)) {
      let caller: Awaited<ReturnType<AdminAuthority['authenticateToken']>>;
      try {
        caller = await credentials.auth()!.authenticateToken(token);
      } catch (error) {
        return refuse(`admin token: ${(error as Error).message}`, error);
      }
      if (!grants(caller.roles, 'registrar'))
        throw new RegistrationRefusedError(
          'PERMISSION_DENIED',
          'forbidden',
          `${caller.subject} has no role allowing workload registration (registrar or admin)`,
        );
      return { subject: caller.subject, registrar: true };
    }
    const mtls = credentials.mtls();
    if (!mtls) return refuse('bootstrap tokens are not accepted: this replica has no CA');
    try {
      const verified = await mtls.authenticateToken(token);
      const id = verified.identity;
      return {
        subject: `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`,
        workload: { namespace: id.namespace, serviceAccount: id.serviceAccount },
        registrar: false,
      };
    } catch (error) {
      return refuse(`bootstrap token: ${(error as Error).message}`, error);
    }
  }
  const peer = call.getAuthContext?.()?.sslPeerCertificate;
  const mtls = credentials.mtls();
  if (peer?.raw && mtls) {
    try {
      const id = identityFromPeerCertificate(peer.raw, new Date());
      if (id.trustDomain !== mtls.trustDomain)
        return refuse(`certificate of trust domain "${id.trustDomain}", not "${mtls.trustDomain}"`);
      return {
        subject: `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`,
        workload: { namespace: id.namespace, serviceAccount: id.serviceAccount },
        registrar: false,
      };
    } catch (error) {
      return refuse(`client certificate: ${(error as Error).message}`, error);
    }
  }
  return refuse(
    'no credentials: register over mTLS with the workload certificate, or send "authorization: Bearer <token>"',
  );
}
