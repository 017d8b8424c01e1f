// etcd's lease ids are int64 values above 2^53. The etcd3 client decodes them with protobufjs, which
// only keeps them exact (as decimal strings) when it can load the `long` package; when it cannot (for
// example when `require('long')` resolves to the ESM build because the process runs with an `import`
// export condition, as under vitest), it silently decodes them as lossy JS numbers and every lease id
// is wrong. This installs `long` into the protobufjs instance the etcd3 client uses, once.
import { createRequire } from 'node:module';

let done = false;

interface LongClass {
  isLong(value: unknown): boolean;
}
interface Protobuf {
  util: { Long: LongClass | null | undefined };
  configure(): void;
}

/** Makes the etcd3 client decode int64 fields exactly. Idempotent. */
export function ensureExactInt64(): void {
  if (done) return;
  done = true;
  const fromHere = createRequire(import.meta.url);
  const fromEtcd3 = createRequire(fromHere.resolve('etcd3'));
  const fromLoader = createRequire(fromEtcd3.resolve('@grpc/proto-loader'));
  const protobuf = fromLoader('protobufjs') as Protobuf;
  if (typeof protobuf.util.Long?.isLong === 'function') return;
  const fromProtobuf = createRequire(fromLoader.resolve('protobufjs'));
  const mod = fromProtobuf('long') as LongClass | { default: LongClass };
  const Long = 'isLong' in mod ? mod : mod.default;
  protobuf.util.Long = Long;
  protobuf.configure();
}
