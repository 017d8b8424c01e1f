/**
 * Typed errors of the federation package. Every error carries a stable `code` (one per class) and
 * names the object and field that is wrong; wire errors also carry the `reason` under which the
 * importer counts the rejected message.
 */

/** Why an importer refused a message; also the `reason` attribute of the rejection counter. */
export type RejectReason =
  | 'malformed' // not JSON, or a field has the wrong type or range (epoch, seq, hostname, ...)
  | 'unsupported_version' // `v` is not a protocol version this importer speaks
  | 'origin_mismatch' // claimed origin (or namespace/hostname) differs from the subject or KV key
  | 'wrong_mesh' // the record names another mesh
  | 'fenced'; // epoch older than the newest epoch already seen from that cluster

/** Machine-readable error codes, one per error class. */
export type FederationErrorCode =
  | 'WIRE_FORMAT'
  | 'INVALID_NAME'
  | 'EXPORTER_FENCED'
  | 'NATS_FAILED'
  | 'INVALID_STATE';

/** Base class: every error thrown by `@meridian/federation`. */
export abstract class FederationError extends Error {
  override readonly name: string = 'FederationError';
  abstract readonly code: FederationErrorCode;
}

/** A value on the wire (NATS message or JetStream KV entry) is not a valid federation message. */
export class WireFormatError extends FederationError {
  override readonly name = 'WireFormatError';
  readonly code = 'WIRE_FORMAT';
  /** Why the importer rejects the value: the `reason` label of the rejection counter. */
  readonly reason: RejectReason;
  /** Dotted path of the offending field, e.g. `endpoints[2].port`; `''` for the whole message. */
  readonly field: string;
  /** The subject or KV key the value came from, when known. */
  readonly subject: string | undefined;
  constructor(
    message: string,
    opts: { reason: RejectReason; field: string; subject?: string; cause?: unknown },
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.reason = opts.reason;
    this.field = opts.field;
    this.subject = opts.subject;
  }
}

/** A name (mesh, cluster, namespace, hostname) cannot be used in NATS subjects or KV keys. */
export class InvalidNameError extends FederationError {
  override readonly name = 'InvalidNameError';
  readonly code = 'INVALID_NAME';
  /** Which name: `mesh`, `cluster`, `namespace` or `hostname`. */
  readonly field: string;
  readonly value: string;
  constructor(field: string, value: string, why: string) {
    super(`invalid ${field} ${JSON.stringify(value)}: ${why}`);
    this.field = field;
    this.value = value;
  }
}

/**
 * The exporter found state written by a newer epoch (another leader took over): it stops publishing.
 * The replica should stop the exporter and let the current leader export.
 */
export class ExporterFencedError extends FederationError {
  override readonly name = 'ExporterFencedError';
  readonly code = 'EXPORTER_FENCED';
  readonly cluster: string;
  /** This exporter's epoch. */
  readonly epoch: number;
  /** The newer epoch found in JetStream. */
  readonly newerEpoch: number;
  /** The KV key where the newer epoch was found. */
  readonly key: string;
  constructor(cluster: string, epoch: number, newerEpoch: number, key: string) {
    super(
      `exporter of cluster ${JSON.stringify(cluster)} with epoch ${epoch} is fenced: key ${JSON.stringify(key)} holds epoch ${newerEpoch}`,
    );
    this.cluster = cluster;
    this.epoch = epoch;
    this.newerEpoch = newerEpoch;
    this.key = key;
  }
}

/** A NATS or JetStream operation failed; `op` says which, `cause` holds the NATS error. */
export class FederationNatsError extends FederationError {
  override readonly name = 'FederationNatsError';
  readonly code = 'NATS_FAILED';
  readonly op: string;
  readonly cluster: string;
  constructor(op: string, cluster: string, cause: unknown) {
    super(
      `federation ${op} for cluster ${JSON.stringify(cluster)} failed: ${(cause as Error)?.message ?? String(cause)}`,
      {
        cause,
      },
    );
    this.op = op;
    this.cluster = cluster;
  }
}

/** The exporter or importer is used after `stop()` or before `start()`. */
export class FederationStateError extends FederationError {
  override readonly name = 'FederationStateError';
  readonly code = 'INVALID_STATE';
}
