// Every issuance and refusal is logged (pino) and counted, with the identity, serial and expiry.
import { type Logger, pino } from 'pino';
import type { CaErrorCode } from './errors.js';

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
      readonly code: CaErrorCode;
      readonly reason: string;
      readonly via?: AuthMethod;
    };

/** How the caller proved its identity. */
export type AuthMethod = 'token' | 'mtls' | 'internal';

/** Counts of decisions since start, refusals by status code. */
export interface CaCounters {
  issued: number;
  refused: number;
  refusedByCode: Partial<Record<CaErrorCode, number>>;
}

/** Logs and counts CA decisions; subscribers (metrics exporters, tests) see every event. */
export class CaAudit {
  readonly counters: CaCounters = { issued: 0, refused: 0, refusedByCode: {} };
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
    if (e.outcome === 'issued') {
      this.counters.issued++;
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
        { identity: e.identity, code: e.code, reason: e.reason, via: e.via },
        'certificate refused',
      );
    }
    for (const fn of this.listeners) fn(e);
  }
}
