// SDS served by the agent itself: the workload's key is made here and never leaves the node, so the
// relay answers Secret requests (`default`, `ROOTCA`) from the agent's certificates instead of
// forwarding them, and pushes a rotation to every stream that holds a secret.
import { createHash } from 'node:crypto';
import { encodeResource, TypeUrl } from '@meridian/envoy';
import type { WorkloadCertificates } from './certificates.js';
import { anyMessage } from './wire.js';

/** One secret as the relay sends it. */
export interface LocalSecret {
  readonly name: string;
  /** Content hash: the same secret has the same version. */
  readonly version: string;
  /** The encoded `google.protobuf.Any` of the `Secret`. */
  readonly any: Uint8Array;
}

/** The secrets an agent serves locally. */
export interface LocalSecrets {
  /** The current secrets by name (empty before the first certificate). */
  current(): ReadonlyMap<string, LocalSecret>;
  /** Calls `listener` after every rotation; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** The local secrets of a {@link WorkloadCertificates}. */
export function certificateSecrets(certs: WorkloadCertificates): LocalSecrets {
  let cache: { key: string; map: Map<string, LocalSecret> } | undefined;
  return {
    current() {
      const m = certs.current();
      const key = m ? `${m.serial}|${m.rootCertPem.length}` : '';
      if (cache?.key === key) return cache.map;
      const map = new Map<string, LocalSecret>();
      for (const json of certs.secrets()) {
        const bytes = encodeResource(TypeUrl.Secret, json);
        const name = String(json.name);
        map.set(name, {
          name,
          version: createHash('sha256').update(bytes).digest('hex').slice(0, 16),
          any: anyMessage(TypeUrl.Secret, bytes),
        });
      }
      cache = { key, map };
      return map;
    },
    onChange(listener) {
      return certs.onRotate(() => listener());
    },
  };
}
