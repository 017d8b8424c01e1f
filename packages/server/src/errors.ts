import type { FieldError } from '@meridian/api';

/** Machine-readable codes of admin API errors; `reason` is kubectl's word for the same thing. */
export type AdminErrorCode =
  | 'INVALID_CONFIG'
  | 'CONFLICT'
  | 'NOT_FOUND'
  | 'STORE_UNAVAILABLE'
  | 'BAD_REQUEST'
  | 'TOO_LARGE';

const STATUS: Record<AdminErrorCode, { http: number; reason: string }> = {
  INVALID_CONFIG: { http: 422, reason: 'Invalid' },
  CONFLICT: { http: 409, reason: 'Conflict' },
  NOT_FOUND: { http: 404, reason: 'NotFound' },
  STORE_UNAVAILABLE: { http: 503, reason: 'ServiceUnavailable' },
  BAD_REQUEST: { http: 400, reason: 'BadRequest' },
  TOO_LARGE: { http: 413, reason: 'RequestEntityTooLarge' },
};

/** The JSON body of an admin API error response. */
export interface AdminErrorBody {
  readonly code: AdminErrorCode;
  /**
   * kubectl's status reason: `Invalid`, `Conflict`, `NotFound`, `ServiceUnavailable`, `BadRequest`,
   * `RequestEntityTooLarge`.
   */
  readonly reason: string;
  readonly message: string;
  /** Field errors of an `INVALID_CONFIG` error. */
  readonly errors?: readonly FieldError[];
  /** The object concerned (`Kind/namespace/name`), when there is one. */
  readonly object?: string;
}

/** An admin API failure, converted to an HTTP status at the server's edge only. */
export class AdminError extends Error {
  override readonly name = 'AdminError';
  constructor(
    readonly code: AdminErrorCode,
    message: string,
    readonly details: { readonly object?: string; readonly errors?: readonly FieldError[] } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get httpStatus(): number {
    return STATUS[this.code].http;
  }

  get reason(): string {
    return STATUS[this.code].reason;
  }

  toBody(): AdminErrorBody {
    return {
      code: this.code,
      reason: this.reason,
      message: this.message,
      ...(this.details.object ? { object: this.details.object } : {}),
      ...(this.details.errors ? { errors: this.details.errors } : {}),
    };
  }
}

/** A bad flag, environment variable or config file value. */
export class ServerConfigError extends Error {
  override readonly name = 'ServerConfigError';
  constructor(
    /** The setting, e.g. `--etcd-endpoints` or `MERIDIAN_XDS_ADDRESS`. */
    readonly setting: string,
    readonly reason: string,
  ) {
    super(`${setting}: ${reason}`);
  }
}
