// Per-stream subscription and ACK state of one ADS stream: the protocol state of each watched type
// (what protocol.ts decides from the requests), the bookkeeping that state does not hold (push and ACK
// times, the newest shared response taken, the map each type was last served from), the stream's own
// nonce counter, the types whose last push failed to build, and the sync status the server and
// /debug/syncz report: whether the proxy holds, ACKed, everything a snapshot version gives it.
import { type DeltaWatch, type SotwWatch, syncState } from './protocol.js';
import type { ResourceMap } from './types.js';

/** The protocol variant of a stream. */
export type Variant = 'sotw' | 'delta';

/** Per-type bookkeeping the protocol state does not hold. */
export interface TypeBook {
  lastPushAt: number | undefined;
  /** `Date.now()` of the last ACK of this type. */
  lastAckAt: number | undefined;
  /** Earliest change (performance.now()) sent on this type and not yet ACKed. */
  changeAt: number | undefined;
  /** When the current nonce was sent (performance.now()), for the push-to-ACK time. */
  sentAt: number | undefined;
  /** The highest shared-response seq this stream has received for this type (see SharedResponse in
   * stream-push.ts). */
  sharedSeq: number;
  /**
   * The snapshot map this type was last brought up to date from, and the subscription it was for:
   * while both are the same objects, a change cannot alter what the stream should hold (maps are
   * immutable), so the push skips the type without comparing resources.
   */
  servedFrom: ResourceMap | undefined;
  servedNames: ReadonlySet<string> | undefined;
}

/** Why the last push could not be built for this stream (shown in /debug/syncz). */
export interface PushFailure {
  readonly message: string;
  readonly snapshotVersion: string;
  /** `Date.now()` of the failure. */
  readonly at: number;
}

/** The state of one stream's subscriptions, responses and ACKs. */
export class StreamState {
  readonly watches = new Map<string, SotwWatch | DeltaWatch>();
  readonly books = new Map<string, TypeBook>();
  /** Types whose last push failed to build: reconsidered on every later push. */
  readonly retry = new Set<string>();
  /** The last push that failed to build, until one succeeds. */
  pushFailure: PushFailure | undefined;
  /** The newest snapshot version whose resources this proxy has ACKed in full, and when. */
  syncedVersion: string | undefined;
  syncedAt: number | undefined;
  /** Responses written on this stream. */
  writes = 0;
  #nonce = 0;
  /** The snapshot version of the last push that wrote something, until all of it is ACKed. */
  #awaiting: { version: string; changeAt: number | undefined } | undefined;

  constructor(
    /** The stream's number: the first part of the nonces it makes itself. */
    readonly streamNumber: number,
    /** Called each time the proxy becomes synced to a snapshot version. */
    readonly onSynced: (version: string, changeAt: number | undefined) => void,
  ) {}

  /** A nonce of this stream's own (`<stream>-<n>`, n increasing), for responses it cannot share. */
  nextNonce(): string {
    this.#nonce++;
    return `${this.streamNumber.toString(36)}-${this.#nonce.toString(36)}`;
  }

  book(type: string): TypeBook {
    let b = this.books.get(type);
    if (!b) {
      b = {
        lastPushAt: undefined,
        lastAckAt: undefined,
        changeAt: undefined,
        sentAt: undefined,
        sharedSeq: 0,
        servedFrom: undefined,
        servedNames: undefined,
      };
      this.books.set(type, b);
    }
    return b;
  }

  /** Every watched type's last response ACKed (nothing sent and unanswered, no NACK outstanding). */
  allAcked(): boolean {
    if (this.watches.size === 0) return false;
    for (const w of this.watches.values()) if (syncState(w) !== 'SYNCED') return false;
    return true;
  }

  /** A push from snapshot `version` wrote responses: the proxy is synced to it once all are ACKed. */
  awaitAcks(version: string, changeAt: number | undefined): void {
    this.#awaiting = { version, changeAt };
  }

  /** An ACK arrived: synced to the awaited version if it completed the set. */
  acked(): void {
    if (this.#awaiting && this.allAcked()) {
      const { version, changeAt } = this.#awaiting;
      this.#awaiting = undefined;
      this.#markSynced(version, changeAt);
    }
  }

  /**
   * A new snapshot that does not change what this stream holds (the server did not push it): the
   * proxy is synced to it as soon as it is synced at all.
   */
  unaffectedBy(version: string, changeAt: number): void {
    if (this.#awaiting) this.#awaiting = { ...this.#awaiting, version };
    else if (this.allAcked()) this.#markSynced(version, changeAt);
  }

  #markSynced(version: string, changeAt: number | undefined): void {
    this.syncedVersion = version;
    this.syncedAt = Date.now();
    this.onSynced(version, changeAt);
  }
}
