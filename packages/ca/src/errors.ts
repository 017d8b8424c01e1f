// Typed errors of @meridian/ca. Each carries a stable `code` (one per class, as in the other
// packages) and the gRPC `status` it is answered with, so the server edge (grpc.ts) maps it without
// inspecting messages; `field` names the input that was wrong.
import type { WorkloadIdentity } from './spiffe.js';

/** Machine-readable error codes, one per error class. */
export type CaErrorCode =
  | 'INVALID_REQUEST'
  | 'PERMISSION_DENIED'
  | 'AUTHENTICATION_FAILED'
  | 'TOKEN_REPLAYED'
  | 'CA_UNAVAILABLE'
  | 'CA_MISCONFIGURED';

/** The status a CA error maps to at the gRPC edge (names as in grpc.status). */
export type CaStatus =
  | 'INVALID_ARGUMENT'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'FAILED_PRECONDITION'
  | 'UNAVAILABLE'
  | 'INTERNAL';

const STATUS_OF_CODE: Readonly<Record<CaErrorCode, CaStatus>> = {
  INVALID_REQUEST: 'INVALID_ARGUMENT',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  AUTHENTICATION_FAILED: 'UNAUTHENTICATED',
  TOKEN_REPLAYED: 'UNAUTHENTICATED',
  CA_UNAVAILABLE: 'UNAVAILABLE',
  CA_MISCONFIGURED: 'FAILED_PRECONDITION',
};

/** Base class of every error thrown by @meridian/ca. */
export abstract class CaError extends Error {
  override name = 'CaError';
  abstract readonly code: CaErrorCode;
  constructor(
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The gRPC status this error is answered with (and counted under in the CA's metrics). */
  get status(): CaStatus {
    return STATUS_OF_CODE[this.code];
  }
}

/** A CSR or request parameter that cannot be accepted (malformed, unsupported, out of range). */
export class InvalidRequestError extends CaError {
  override name = 'InvalidRequestError';
  readonly code = 'INVALID_REQUEST';
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super(`${field}: ${message}`, field, options);
  }
}

/** The caller is authenticated but asked for something its identity does not allow. */
export class PermissionDeniedError extends CaError {
  override name = 'PermissionDeniedError';
  readonly code = 'PERMISSION_DENIED';
  constructor(
    message: string,
    readonly identity: string,
    field = 'csr',
  ) {
    super(message, field);
  }
}

/** The caller could not be authenticated (no/invalid/expired token, no valid client certificate). */
export class AuthenticationError extends CaError {
  override name = 'AuthenticationError';
  readonly code: CaErrorCode = 'AUTHENTICATION_FAILED';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'authorization', options);
  }
}

/** Refusal reason of a replayed single-use bootstrap token (carries no token material). */
export const TOKEN_REPLAY_REASON = 'bootstrap token was already used';

/** A single-use bootstrap token that was already spent (on this or any other replica). */
export class TokenReplayError extends AuthenticationError {
  override name = 'TokenReplayError';
  override readonly code: CaErrorCode = 'TOKEN_REPLAYED';
  constructor(
    /** The identity the (validly signed) token names. */
    readonly identity: WorkloadIdentity,
  ) {
    super(TOKEN_REPLAY_REASON);
  }
}

/** Something the decision depends on (the cluster store) cannot be reached now; retry later. */
export class CaUnavailableError extends CaError {
  override name = 'CaUnavailableError';
  readonly code = 'CA_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, undefined, options);
  }
}

/** CA material is missing, inconsistent, or cannot be decrypted. */
export class CaConfigError extends CaError {
  override name = 'CaConfigError';
  readonly code = 'CA_MISCONFIGURED';
  constructor(
    message: string,
    readonly key?: string,
    options?: { cause?: unknown },
  ) {
    super(message, key, options);
  }
}
