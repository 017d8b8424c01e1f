// Typed errors of @meridian/ca. Each carries a gRPC-style `code` so the server edge (grpc.ts) can map
// it to a status without inspecting messages; `field` names the input that was wrong.
import type { WorkloadIdentity } from './spiffe.js';

/** The status a CA error maps to at the gRPC edge (names as in grpc.status). */
export type CaErrorCode =
  | 'INVALID_ARGUMENT'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'FAILED_PRECONDITION'
  | 'UNAVAILABLE'
  | 'INTERNAL';

/** Base class of every error thrown by @meridian/ca. */
export class CaError extends Error {
  override name = 'CaError';
  constructor(
    readonly code: CaErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A CSR or request parameter that cannot be accepted (malformed, unsupported, out of range). */
export class InvalidRequestError extends CaError {
  override name = 'InvalidRequestError';
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', `${field}: ${message}`, field, options);
  }
}

/** The caller is authenticated but asked for something its identity does not allow. */
export class PermissionDeniedError extends CaError {
  override name = 'PermissionDeniedError';
  constructor(
    message: string,
    readonly identity: string,
    field = 'csr',
  ) {
    super('PERMISSION_DENIED', message, field);
  }
}

/** The caller could not be authenticated (no/invalid/expired token, no valid client certificate). */
export class AuthenticationError extends CaError {
  override name = 'AuthenticationError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNAUTHENTICATED', message, 'authorization', options);
  }
}

/** Refusal reason of a replayed single-use bootstrap token (carries no token material). */
export const TOKEN_REPLAY_REASON = 'bootstrap token was already used';

/** A single-use bootstrap token that was already spent (on this or any other replica). */
export class TokenReplayError extends AuthenticationError {
  override name = 'TokenReplayError';
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
  constructor(message: string, options?: { cause?: unknown }) {
    super('UNAVAILABLE', message, undefined, options);
  }
}

/** CA material is missing, inconsistent, or cannot be decrypted. */
export class CaConfigError extends CaError {
  override name = 'CaConfigError';
  constructor(
    message: string,
    readonly key?: string,
    options?: { cause?: unknown },
  ) {
    super('FAILED_PRECONDITION', message, key, options);
  }
}
