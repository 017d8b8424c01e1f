/**
 * How a typed value is stored. `decode` throws on a malformed value; the typed layer turns that into
 * a `MalformedValueError` naming the key, reports it and skips the value.
 */
export interface Codec<T> {
  /** Shown in error messages, e.g. `json`. */
  readonly name: string;
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON values (the default). `parse` may validate the parsed value and return it typed, or throw to
 * mark it malformed; without it any JSON value is accepted as `T`.
 */
export function jsonCodec<T>(parse?: (value: unknown) => T): Codec<T> {
  return {
    name: 'json',
    encode: (value) => encoder.encode(JSON.stringify(value)),
    decode: (bytes) => {
      const value: unknown = JSON.parse(strictDecoder.decode(bytes));
      return parse ? parse(value) : (value as T);
    },
  };
}

/** UTF-8 text; invalid UTF-8 is malformed. */
export const stringCodec: Codec<string> = {
  name: 'utf-8',
  encode: (value) => encoder.encode(value),
  decode: (bytes) => strictDecoder.decode(bytes),
};

/** Raw bytes, never malformed. */
export const bytesCodec: Codec<Uint8Array> = {
  name: 'bytes',
  encode: (value) => value,
  decode: (bytes) => bytes,
};
