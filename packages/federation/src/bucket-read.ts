/**
 * One consistent read of every `svc.*` key of a federation KV bucket: an ordered push consumer with
 * deliver policy last-per-subject, so the whole state arrives in one stream of messages instead of one
 * request per key (a 500-service bucket: tens of ms instead of seconds). Uses only the JetStream API
 * calls `clusterPermissions` allows (consumer create/info, flow control).
 */
import { DeliverPolicy, jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

/** One KV entry as read from the bucket's stream. */
export interface BucketEntry {
  readonly key: string;
  readonly value: Uint8Array;
  readonly operation: 'PUT' | 'DEL' | 'PURGE';
  /** Stream sequence = KV revision. */
  readonly revision: number;
}

/** Reads the newest entry of every key under `svc.>`; rejects after `timeoutMs`. */
export async function readServiceEntries(
  nc: NatsConnection,
  bucket: string,
  timeoutMs: number,
): Promise<BucketEntry[]> {
  const prefix = `$KV.${bucket}.`;
  const js = jetstream(nc);
  const stream = `KV_${bucket}`;
  // Count first (stream info with a subject filter), so an empty bucket needs no consumer.
  const si = await (await js.jetstreamManager()).streams.info(stream, { subjects_filter: `${prefix}svc.>` });
  if (Object.keys(si.state.subjects ?? {}).length === 0) return [];
  const pc = await js.consumers.get(stream, {
    filter_subjects: `${prefix}svc.>`,
    deliver_policy: DeliverPolicy.LastPerSubject,
  });
  const messages = await pc.consume();
  const out: BucketEntry[] = [];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      messages.stop();
      reject(
        new Error(`reading bucket ${bucket} took longer than ${timeoutMs} ms (${out.length} entries so far)`),
      );
    }, timeoutMs);
  });
  const read = (async () => {
    for await (const m of messages) {
      const op = m.headers?.get('KV-Operation');
      out.push({
        key: m.subject.slice(prefix.length),
        value: m.data,
        operation: op === 'DEL' || op === 'PURGE' ? op : 'PUT',
        revision: m.seq,
      });
      if (m.info.pending === 0) break;
    }
    return out;
  })();
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
    messages.stop();
  }
}
