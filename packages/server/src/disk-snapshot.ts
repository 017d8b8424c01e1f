/**
 * The last-known-good snapshot on disk: the replica's config and workload
 * registrations with their revisions, written after each applied revision, so that a replica
 * restarted while etcd is unreachable serves what it last knew instead of nothing.
 *
 * File format (`<dir>/<mesh>.<cluster>.lkg`), two lines:
 * 1. a header, JSON: `{format, meshId, clusterId, etcdEndpoints, revision, watchedRevision, writtenAt,
 *    bytes, sha256}`;
 * 2. the body, JSON: `{configs: [[key, resourceVersion, object]...], registrations: [[key, modRevision, registration]...]}`.
 *
 * `sha256` and `bytes` are those of the body line. A file that does not parse, whose checksum or size
 * does not match, of another format, or foreign (another mesh or cluster, or an etcd none of whose
 * endpoints this replica uses) is refused with a log line and never served. Writes go to a temporary file renamed over the old one (never a torn file),
 * at most one every {@link WRITE_DELAY_MS} (the latest state wins), and are skipped with a warning
 * past `maxBytes` (the previous snapshot stays).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ConfigObject } from '@meridian/api';
import type { WorkloadRegistration } from '@meridian/registry';
import { metrics } from '@opentelemetry/api';
import type { Logger } from 'pino';

/** The format tag of the header. */
export const SNAPSHOT_FORMAT = 'meridian-lkg/1';
/** Default bound on the body (64 MiB). */
export const MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024;
/** Writes are coalesced: at most one per this many milliseconds. */
export const WRITE_DELAY_MS = 500;
/**
 * Writes are at least this far apart: serializing and hashing a mesh-sized snapshot costs tens of
 * milliseconds of the event loop, and under steady endpoint churn a write per burst would be a
 * write every half second. The snapshot only has to be recent enough to start from when etcd is
 * unreachable; the replica catches up from etcd as soon as it answers.
 */
export const MIN_WRITE_INTERVAL_MS = 5000;

/** What is saved and served: the replica's watched state. */
export interface SnapshotState {
  /** The snapshot stamp (highest resourceVersion of what is visible). */
  readonly revision: number;
  /** The etcd revision the state was watched up to: catching up resumes after it. */
  readonly watchedRevision: number;
  readonly configs: readonly (readonly [key: string, resourceVersion: number, object: ConfigObject])[];
  readonly registrations: readonly (readonly [
    key: string,
    modRevision: number,
    registration: WorkloadRegistration,
  ])[];
}

/** A snapshot read back from disk. */
export interface LoadedSnapshot extends SnapshotState {
  readonly writtenAt: Date;
  readonly file: string;
}

interface Header {
  readonly format: string;
  readonly meshId: string;
  readonly clusterId: string;
  readonly etcdEndpoints: readonly string[];
  readonly revision: number;
  readonly watchedRevision: number;
  readonly writtenAt: string;
  readonly bytes: number;
  readonly sha256: string;
}

/** The snapshot file of one replica's mesh and cluster. */
export function snapshotFile(dir: string, meshId: string, clusterId: string): string {
  return join(dir, `${meshId}.${clusterId}.lkg`);
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Reads and writes the snapshot of one mesh and cluster. */
export class DiskSnapshot {
  readonly file: string;
  #timer: NodeJS.Timeout | undefined;
  #pending: (() => SnapshotState) | undefined;
  /** When the last scheduled write began (ms since epoch): writes are MIN_WRITE_INTERVAL_MS apart. */
  #lastWriteStartedAt: number | undefined;
  #writing: Promise<void> = Promise.resolve();
  #lastWritten: { revision: number; at: Date } | undefined;
  #serving: LoadedSnapshot | undefined;
  #closed = false;

  constructor(
    dir: string,
    private readonly meshId: string,
    private readonly clusterId: string,
    private readonly etcdEndpoints: readonly string[],
    private readonly log: Logger,
    private readonly maxBytes = MAX_SNAPSHOT_BYTES,
  ) {
    this.file = snapshotFile(dir, meshId, clusterId);
    const meter = metrics.getMeter('@meridian/server');
    meter
      .createObservableGauge('meridian_disk_snapshot_serving', {
        description:
          '1 while the replica serves its last-known-good snapshot from disk (etcd unreachable since start).',
      })
      .addCallback((r) => r.observe(this.#serving ? 1 : 0));
    meter
      .createObservableGauge('meridian_disk_snapshot_revision', {
        description: 'Revision of the snapshot served from disk, else of the last one written.',
      })
      .addCallback((r) => r.observe(this.#serving?.revision ?? this.#lastWritten?.revision ?? 0));
    meter
      .createObservableGauge('meridian_disk_snapshot_age_seconds', {
        description: 'Age of the snapshot served from disk, else of the last one written.',
        unit: 's',
      })
      .addCallback((r) => {
        const at = this.#serving?.writtenAt ?? this.#lastWritten?.at;
        r.observe(at ? (Date.now() - at.getTime()) / 1000 : 0);
      });
  }

  /** The snapshot being served from disk, while it is. */
  get serving(): LoadedSnapshot | undefined {
    return this.#serving;
  }

  /** Marks the loaded snapshot as served (or no longer, once the store has been reached). */
  setServing(snapshot: LoadedSnapshot | undefined): void {
    this.#serving = snapshot;
  }

  /** Reads the snapshot; undefined (with one log line saying why) when absent, corrupt or foreign. */
  async load(): Promise<LoadedSnapshot | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') this.log.warn({ file: this.file }, 'no snapshot on disk');
      else this.log.error({ file: this.file, err: error }, 'snapshot on disk refused: unreadable');
      return undefined;
    }
    const refuse = (reason: string): undefined => {
      this.log.error({ file: this.file, reason }, `snapshot on disk refused: ${reason}`);
      return undefined;
    };
    const newline = text.indexOf('\n');
    if (newline < 0) return refuse('corrupt (no header line)');
    let header: Header;
    try {
      header = JSON.parse(text.slice(0, newline)) as Header;
    } catch {
      return refuse('corrupt (header is not JSON)');
    }
    if (header?.format !== SNAPSHOT_FORMAT) return refuse(`unknown format ${JSON.stringify(header?.format)}`);
    if (header.meshId !== this.meshId || header.clusterId !== this.clusterId)
      return refuse(
        `foreign: written for mesh "${header.meshId}" cluster "${header.clusterId}", this replica is mesh "${this.meshId}" cluster "${this.clusterId}"`,
      );
    if (
      !Array.isArray(header.etcdEndpoints) ||
      !header.etcdEndpoints.some((e) => this.etcdEndpoints.includes(e))
    )
      return refuse(
        `foreign: written for etcd at ${JSON.stringify(header.etcdEndpoints)}, this replica uses ${this.etcdEndpoints.join(', ')}`,
      );
    const body = text.slice(newline + 1).replace(/\n$/, '');
    if (Buffer.byteLength(body) !== header.bytes || sha256(body) !== header.sha256)
      return refuse('corrupt (checksum mismatch)');
    let parsed: { configs: SnapshotState['configs']; registrations: SnapshotState['registrations'] };
    try {
      parsed = JSON.parse(body) as typeof parsed;
      if (!Array.isArray(parsed.configs) || !Array.isArray(parsed.registrations)) throw new Error('shape');
    } catch {
      return refuse('corrupt (body is not a snapshot)');
    }
    return {
      revision: header.revision,
      watchedRevision: header.watchedRevision,
      configs: parsed.configs,
      registrations: parsed.registrations,
      writtenAt: new Date(header.writtenAt),
      file: this.file,
    };
  }

  /** Saves `state()` soon (coalescing: a burst of revisions is one write of the latest). */
  schedule(state: () => SnapshotState): void {
    if (this.#closed) return;
    this.#pending = state;
    if (this.#timer) return;
    const sinceLast =
      this.#lastWriteStartedAt === undefined ? Infinity : Date.now() - this.#lastWriteStartedAt;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        const take = this.#pending;
        this.#pending = undefined;
        this.#lastWriteStartedAt = Date.now();
        if (take) this.#writing = this.#writing.then(() => this.#write(take()));
      },
      Math.max(WRITE_DELAY_MS, MIN_WRITE_INTERVAL_MS - sinceLast),
    );
    this.#timer.unref();
  }

  /** Writes what is scheduled now, and waits for writes in flight. */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const take = this.#pending;
    this.#pending = undefined;
    if (take) {
      this.#lastWriteStartedAt = Date.now();
      this.#writing = this.#writing.then(() => this.#write(take()));
    }
    await this.#writing;
  }

  async #write(state: SnapshotState): Promise<void> {
    try {
      const body = JSON.stringify({ configs: state.configs, registrations: state.registrations });
      const bytes = Buffer.byteLength(body);
      if (bytes > this.maxBytes) {
        this.log.warn(
          { bytes, maxBytes: this.maxBytes, revision: state.revision },
          'snapshot larger than its bound: not written (the previous one stays)',
        );
        return;
      }
      const writtenAt = new Date();
      const header: Header = {
        format: SNAPSHOT_FORMAT,
        meshId: this.meshId,
        clusterId: this.clusterId,
        etcdEndpoints: this.etcdEndpoints,
        revision: state.revision,
        watchedRevision: state.watchedRevision,
        writtenAt: writtenAt.toISOString(),
        bytes,
        sha256: sha256(body),
      };
      await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
      const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, `${JSON.stringify(header)}\n${body}\n`, { mode: 0o600 });
      await rename(tmp, this.file).catch(async (error: unknown) => {
        await rm(tmp, { force: true });
        throw error;
      });
      this.#lastWritten = { revision: state.revision, at: writtenAt };
      this.log.debug({ revision: state.revision, bytes }, 'snapshot written to disk');
    } catch (error) {
      this.log.warn({ err: error, file: this.file }, 'cannot write the snapshot to disk');
    }
  }

  /** Writes what is pending and stops. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }
}

/** How `/readyz` words it: `degraded: store unreachable, serving revision N from disk (age 1m5s)`. */
export function describeServing(s: LoadedSnapshot, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - s.writtenAt.getTime()) / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const age = `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${seconds % 60}s`;
  return `degraded: store unreachable, serving revision ${s.revision} from disk (age ${age})`;
}
