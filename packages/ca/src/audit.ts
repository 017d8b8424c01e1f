// Every issuance and refusal is logged (pino) and counted, with the identity, serial and expiry.
import { type Logger, pino } from 'pino';
import type { CaStatus } from './errors.js';

/** One issuance decision. */
export type CaEvent =
  | {
      readonly outcome: 'issued';
      readonly identity: string;
      readonly serial: string;
      readonly notAfter: Date;
      readonly keyType: string;
      readonly via: AuthMethod;
    }
  | {
      readonly outcome: 'refused';
      /** The authenticated identity, or "unauthenticated". */
      readonly identity: string;
      /** The gRPC status the refusal was answered with (the error's `status`). */
      readonly code: CaStatus;
      readonly reason: string;
      readonly via?: AuthMethod;
      /** A replay of a spent single-use bootstrap token (identity: the one the token names). */
      readonly tokenReplay?: boolean;
    };

/** How the caller proved its identity. */
export type AuthMethod = 'token' | 'mtls' | 'internal';

/** Counts of decisions since start, refusals by status code. */
export interface CaCounters {
  issued: number;
  refused: number;
  refusedByCode: Partial<Record<CaStatus, number>>;
  /** CreateCertificate requests (token or mTLS callers, or unauthenticated), issued or refused. */
  csrRequests: number;
  /** Of those, certificates issued. */
  csrIssued: number;
}

/** Logs and counts CA decisions; subscribers (metrics exporters, tests) see every event. */
export class CaAudit {
  readonly counters: CaCounters = { issued: 0, refused: 0, refusedByCode: {}, csrRequests: 0, csrIssued: 0 };
  private readonly listeners = new Set<(e: CaEvent) => void>();
  readonly logger: Logger;

  constructor(logger?: Logger) {
    this.logger = logger ?? pino({ name: 'meridian-ca' });
  }

  /** An audit that counts and notifies subscribers but logs nothing (benchmarks, tests). */
  static silent(): CaAudit {
    return new CaAudit(pino({ level: 'silent' }));
  }

  /** Calls `fn` for every later event; returns an unsubscribe function (safe to call twice). */
  subscribe(fn: (e: CaEvent) => void): () => void {
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
    };
  }

  record(e: CaEvent): void {
    const request = e.via !== 'internal';
    if (request) this.counters.csrRequests++;
    if (e.outcome === 'issued') {
      this.counters.issued++;
      if (request) this.counters.csrIssued++;
      this.logger.info(
        {
          identity: e.identity,
          serial: e.serial,
          notAfter: e.notAfter.toISOString(),
          keyType: e.keyType,
          via: e.via,
        },
        'certificate issued',
      );
    } else {
      this.counters.refused++;
      this.counters.refusedByCode[e.code] = (this.counters.refusedByCode[e.code] ?? 0) + 1;
      this.logger.warn(
        {
          identity: e.identity,
          code: e.code,
          reason: e.reason,
          via: e.via,
          ...(e.tokenReplay ? { tokenReplay: true } : {}),
        },
        e.tokenReplay ? 'certificate refused: single-use bootstrap token replayed' : 'certificate refused',
      );
    }
    for (const fn of this.listeners) fn(e);
  }
}

/** One of istiod's CA metrics: name, Prometheus type and help text (security/pkg/server/ca/monitoring.go). */
export interface IstioCaMetric {
  readonly name: string;
  readonly type: 'counter' | 'gauge';
  readonly help: string;
}

/**
 * istiod's CA metrics (istio/istio security/pkg/server/ca/monitoring.go), in its order, with its
 * help texts: the names {@link istioCaMetrics} fills in.
 */
export const ISTIO_CA_METRICS: readonly IstioCaMetric[] = [
  {
    name: 'citadel_server_csr_count',
    type: 'counter',
    help: 'The number of CSRs received by Citadel server.',
  },
  {
    name: 'citadel_server_authentication_failure_count',
    type: 'counter',
    help: 'The number of authentication failures.',
  },
  {
    name: 'citadel_server_csr_parsing_err_count',
    type: 'counter',
    help: 'The number of errors occurred when parsing the CSR.',
  },
  {
    name: 'citadel_server_id_extraction_err_count',
    type: 'counter',
    help: 'The number of errors occurred when extracting the ID from CSR.',
  },
  {
    name: 'citadel_server_csr_sign_err_count',
    type: 'counter',
    help: 'The number of errors occurred when signing the CSR.',
  },
  {
    name: 'citadel_server_success_cert_issuance_count',
    type: 'counter',
    help: 'The number of certificates issuances that have succeeded.',
  },
  {
    name: 'citadel_server_root_cert_expiry_timestamp',
    type: 'gauge',
    help: 'The unix timestamp, in seconds, when the root cert will expire.',
  },
  {
    name: 'citadel_server_root_cert_expiry_seconds',
    type: 'gauge',
    help: 'The time remaining, in seconds, before the root cert will expire. A negative value indicates the cert is expired.',
  },
  {
    name: 'citadel_server_cert_chain_expiry_timestamp',
    type: 'gauge',
    help: 'The unix timestamp, in seconds, when Istio generated cert chain will expire.',
  },
  {
    name: 'citadel_server_cert_chain_expiry_seconds',
    type: 'gauge',
    help: 'The time remaining, in seconds, before the Istio Generated cert chain will expire. A negative value indicates the cert is expired.',
  },
];

/**
 * The counters under istiod's metric names (security/pkg/server/ca/monitoring.go), so existing
 * dashboards keep working; expiry gauges are Unix seconds of the signing chain, and seconds left
 * before it expires at `now` (negative once expired).
 */
export function istioCaMetrics(
  audit: CaAudit,
  chainExpiry?: { rootNotAfter: Date; chainNotAfter: Date },
  now: Date = new Date(),
): Record<string, number> {
  const c = audit.counters;
  const out: Record<string, number> = {
    citadel_server_csr_count: c.csrRequests,
    citadel_server_success_cert_issuance_count: c.csrIssued,
    citadel_server_authentication_failure_count: c.refusedByCode.UNAUTHENTICATED ?? 0,
    citadel_server_csr_parsing_err_count: c.refusedByCode.INVALID_ARGUMENT ?? 0,
    citadel_server_id_extraction_err_count: c.refusedByCode.PERMISSION_DENIED ?? 0,
    citadel_server_csr_sign_err_count:
      (c.refusedByCode.INTERNAL ?? 0) + (c.refusedByCode.FAILED_PRECONDITION ?? 0),
  };
  if (chainExpiry) {
    const seconds = (d: Date) => Math.floor(d.getTime() / 1000);
    out.citadel_server_root_cert_expiry_timestamp = seconds(chainExpiry.rootNotAfter);
    out.citadel_server_root_cert_expiry_seconds = seconds(chainExpiry.rootNotAfter) - seconds(now);
    out.citadel_server_cert_chain_expiry_timestamp = seconds(chainExpiry.chainNotAfter);
    out.citadel_server_cert_chain_expiry_seconds = seconds(chainExpiry.chainNotAfter) - seconds(now);
  }
  return out;
}
