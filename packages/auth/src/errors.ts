// Typed errors of @meridian/auth. `status` is the HTTP status the admin edge answers with; the
// message is one line that says why, and never contains token or key material.

/** Why a request was refused: 401 (no or bad credential) or 403 (authenticated, role too weak). */
export type AuthErrorStatus = 401 | 403;

/** Base class of authentication and authorisation refusals. */
export class AuthError extends Error {
  override name = 'AuthError';
  constructor(
    readonly status: AuthErrorStatus,
    message: string,
    /** The authenticated caller, when there is one (403). */
    readonly subject?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** No credential, or one that does not verify (HTTP 401, gRPC UNAUTHENTICATED). */
export class UnauthenticatedError extends AuthError {
  override name = 'UnauthenticatedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(401, message, undefined, options);
  }
}

/** A verified caller whose role does not allow the request (HTTP 403, gRPC PERMISSION_DENIED). */
export class ForbiddenError extends AuthError {
  override name = 'ForbiddenError';
  constructor(subject: string, message: string) {
    super(403, message, subject);
  }
}

/** Bad input to an auth operation (a role binding, a token request): names the field. */
export class InvalidAuthInputError extends Error {
  override name = 'InvalidAuthInputError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}
