/** Machine-readable codes of registry errors. */
export type RegistryErrorCode = 'INVALID_REGISTRATION' | 'REGISTRATION_FAILED' | 'REGISTRATION_REFUSED';

/** Base class of `@meridian/registry` errors. */
export abstract class RegistryError extends Error {
  abstract readonly code: RegistryErrorCode;
}

/** A registration request names a bad field; nothing is written. */
export class InvalidRegistrationError extends RegistryError {
  override readonly name = 'InvalidRegistrationError';
  readonly code = 'INVALID_REGISTRATION';
  constructor(
    /** The workload (`namespace/name`, `?` when unknown). */
    readonly workload: string,
    /** The field path, e.g. `register.ports.http`. */
    readonly field: string,
    readonly reason: string,
  ) {
    super(`workload ${workload}: ${field}: ${reason}`);
  }
}

/** The registration could not be stored (etcd unavailable, lease lost). */
export class RegistrationFailedError extends RegistryError {
  override readonly name = 'RegistrationFailedError';
  readonly code = 'REGISTRATION_FAILED';
  constructor(
    readonly workload: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`workload ${workload}: ${message}`, options);
  }
}

/**
 * A registration the caller may not make: no credential (`UNAUTHENTICATED`), or an identity or
 * address it does not hold (`PERMISSION_DENIED`). Nothing is written. `reason` is a metric label.
 */
export class RegistrationRefusedError extends RegistryError {
  override readonly name = 'RegistrationRefusedError';
  readonly code = 'REGISTRATION_REFUSED';
  constructor(
    readonly status: 'UNAUTHENTICATED' | 'PERMISSION_DENIED',
    readonly reason: 'unauthenticated' | 'identity_mismatch' | 'address_mismatch' | 'forbidden',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
