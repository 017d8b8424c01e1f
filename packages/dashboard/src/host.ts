/**
 * What the dashboard needs from the replica it runs in: its admin authority (tokens, roles,
 * sessions), its own `/debug/*` answers, the config API's list and its log.
 */
import type { IncomingMessage } from 'node:http';
import type { ConfigObject } from '@meridian/api';

/** The caller as the admin authority sees it. */
export interface DashboardCaller {
  readonly subject: string;
  readonly roles: ReadonlySet<string>;
}

/** What the dashboard needs from the replica's admin server. */
export interface DashboardHost {
  readonly auth: {
    authenticateToken(token: string): Promise<DashboardCaller>;
    /** Throws an error with `status` 403 when the caller's roles do not grant `role`. */
    authorize(caller: DashboardCaller, role: 'view', action: string): void;
    mint(subject: string, ttlSeconds: number): Promise<{ token: string; expiresAt: Date }>;
    /**
     * Revokes a token for every replica of the cluster before it expires (resolves once the store
     * has it); throws an error with `status` 401 for a token that does not verify.
     */
    revoke(token: string): Promise<{ subject: string; expiresAt: Date }>;
  };
  /** The replica's own `/debug/*` answers (`/debug/replica`, `/debug/replicas`, `/debug/leader`, ...). */
  debugInfo(path: string): unknown;
  /** The config API's list. */
  listConfig(kind: string, namespace?: string): Promise<{ revision: number; items: readonly ConfigObject[] }>;
  /** The mesh trust bundle (PEM) when the admin port serves TLS: members are asked over HTTPS. */
  trustBundle?(): string | undefined;
  /**
   * The caller a verified mesh client certificate of this request proves (admin port over TLS), with
   * the certificate's expiry; undefined without one. Throws (`status` 401) for an untrusted one.
   */
  clientCertificate?(req: IncomingMessage): { caller: DashboardCaller; expiresAt: Date } | undefined;
  readonly log: {
    info(obj: Record<string, unknown>, msg: string): void;
    warn(obj: Record<string, unknown>, msg: string): void;
  };
  onRefused?(reason: string): void;
}
