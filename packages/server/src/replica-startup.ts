/**
 * What a replica checks and opens before it serves anything: its listen addresses (each bindable),
 * the CA's key-encryption key file, Envoy's schemas loaded, and the etcd client: connected with
 * retries until `--store-connect-timeout-ms`, or, when etcd does not answer at once and a usable
 * last-known-good snapshot is on disk (`--snapshot-dir`), opened without waiting so the replica
 * serves that snapshot meanwhile.
 */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import { EtcdStore, type EtcdStoreOptions, Keyspace, type Store } from '@meridian/store';
import { decodeDeltaRequest, decodeSotwRequest } from '@meridian/xds';
import type { Logger } from 'pino';
import { DiskSnapshot, type LoadedSnapshot } from './disk-snapshot.js';
import { ServerConfigError } from './errors.js';
import { checkListenAddresses, isOff, splitAddress } from './listen-address.js';
import type { ServerOptions } from './options.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A `host:port` to listen on. */
export interface ListenAt {
  readonly host: string;
  readonly port: number;
}

/** The replica's listen addresses; absent when the setting is `off`. */
export interface ListenAddresses {
  readonly xds: ListenAt | undefined;
  readonly admin: ListenAt;
  readonly monitoring: ListenAt | undefined;
  readonly ca: ListenAt | undefined;
}

/**
 * Parses the listen settings and checks that each address can be bound, before anything starts:
 * a taken port or an address not on this host ends start-up with the setting named.
 */
export async function listenAddresses(o: ServerOptions): Promise<ListenAddresses> {
  const xds = isOff(o.xdsAddress) ? undefined : splitAddress(o.xdsAddress, '--xds-address');
  const admin = splitAddress(o.adminAddress, '--admin-address');
  const monitoring = isOff(o.monitoringAddress)
    ? undefined
    : splitAddress(o.monitoringAddress, '--monitoring-address');
  const ca = isOff(o.caAddress) ? undefined : splitAddress(o.caAddress, '--ca-address');
  await checkListenAddresses([
    ...(xds ? [{ setting: '--xds-address', ...xds }] : []),
    { setting: '--admin-address', ...admin },
    ...(monitoring ? [{ setting: '--monitoring-address', ...monitoring }] : []),
    ...(ca ? [{ setting: '--ca-address', ...ca }] : []),
  ]);
  return { xds, admin, monitoring, ca };
}

/** An unreadable `--ca-kek-file` ends start-up at once, naming the setting, not when the CA loads. */
export async function checkKekFile(o: ServerOptions): Promise<void> {
  if (!o.caKekFile) return;
  try {
    await access(o.caKekFile, constants.R_OK);
  } catch (error) {
    throw new ServerConfigError(
      '--ca-kek-file',
      `cannot read ${o.caKekFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

/**
 * Loads Envoy's protobuf schemas (seconds on a loaded machine) before the replica says it is ready,
 * so the first proxy is not the one that waits for them.
 */
export function warmUpSchemas(): void {
  encodeResource(TypeUrl.Listener, { name: 'warm-up' });
  encodeResource(TypeUrl.RouteConfiguration, { name: 'warm-up' });
  encodeResource(TypeUrl.Cluster, { name: 'warm-up' });
  encodeResource(TypeUrl.ClusterLoadAssignment, { cluster_name: 'warm-up' });
  encodeResource('envoy.config.core.v3.Node', { id: 'warm-up' });
  decodeDeltaRequest(Buffer.alloc(0));
  decodeSotwRequest(Buffer.alloc(0));
}

/** The last-known-good snapshot on disk (`--snapshot-dir`), unless off. */
export function diskSnapshotOf(o: ServerOptions, log: Logger): DiskSnapshot | undefined {
  return isOff(o.snapshotDir)
    ? undefined
    : new DiskSnapshot(
        o.snapshotDir,
        o.meshId,
        o.clusterId,
        o.etcdEndpoints,
        log.child({ part: 'snapshot' }),
      );
}

/** Settings of the etcd client. */
export function storeOptions(o: ServerOptions): EtcdStoreOptions {
  return {
    endpoints: o.etcdEndpoints,
    keyspace: Keyspace.of(o.meshId, o.clusterId),
    requestTimeoutMs: o.storeTimeoutMs,
    connectTimeoutMs: Math.min(o.storeTimeoutMs * 2, 5000),
    writeAttemptTimeoutMs: Math.min(1000, o.storeTimeoutMs),
  };
}

/** One short attempt to reach etcd (at most 2 s), before falling back to the snapshot on disk. */
function connectOnce(o: ServerOptions): Promise<Store> {
  return EtcdStore.connect({
    ...storeOptions(o),
    connectTimeoutMs: Math.min(o.storeTimeoutMs, 2000),
  });
}

/** Connects to etcd, retrying every 500 ms; past `timeoutMs`, a ServerConfigError naming the endpoints. */
async function connect(o: ServerOptions, log: Logger, timeoutMs: number): Promise<Store> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await EtcdStore.connect(storeOptions(o));
    } catch (error) {
      if (Date.now() > until) {
        const cause = (error as Error).cause;
        throw new ServerConfigError(
          '--etcd-endpoints',
          `etcd not reachable at ${o.etcdEndpoints.join(', ')} within ${Math.round(timeoutMs / 1000)} s${cause instanceof Error ? ` (${cause.message})` : ''}`,
        );
      }
      log.warn({ err: error }, 'etcd not reachable yet; retrying');
      await sleep(500);
    }
  }
}

/**
 * The etcd client the replica runs on. If etcd cannot be reached at start, the last-known-good
 * snapshot on disk is served at once (`fromDisk`: xDS, admin and health ports open) on a client that
 * has not connected yet, and the parts that need etcd attach when it answers; without a usable
 * snapshot, connecting is retried until `timeoutMs` (then exit 2).
 */
export async function openStore(
  o: ServerOptions,
  log: Logger,
  disk: DiskSnapshot | undefined,
  timeoutMs: number,
): Promise<{ store: Store; fromDisk: LoadedSnapshot | undefined }> {
  let fromDisk: LoadedSnapshot | undefined;
  let store: Store | undefined;
  if (disk) {
    store = await connectOnce(o).catch((error: unknown) => {
      log.warn({ err: error }, 'etcd not reachable at start; looking for a snapshot on disk');
      return undefined;
    });
    if (!store) fromDisk = await disk.load();
  }
  if (fromDisk) store = EtcdStore.open(storeOptions(o));
  return { store: store ?? (await connect(o, log, timeoutMs)), fromDisk };
}
