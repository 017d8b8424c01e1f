// Scalars of the fast path: proto3 JSON values of each scalar kind and of enums converted to what
// protobufjs writes (bailing on anything the walker might read differently), and their writers.
import type protobuf from 'protobufjs';
import { bail, type Convert, type Put } from './compiled-base.js';

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const INTEGER = /^-?\d+$/;

/** The converter of one scalar kind's JSON (bails on anything proto3 JSON does not allow). */
export function scalarConverter(kind: string): Convert {
  switch (kind) {
    case 'string':
      return (v) => (typeof v === 'string' ? v : bail());
    case 'bool':
      return (v) => (typeof v === 'boolean' ? v : bail());
    case 'bytes':
      return (v) => (typeof v === 'string' && BASE64.test(v) ? Buffer.from(v, 'base64') : bail());
    case 'double':
    case 'float':
      return (v) =>
        typeof v === 'number' ? v : v === 'NaN' || v === 'Infinity' || v === '-Infinity' ? Number(v) : bail();
    case 'int32':
    case 'sint32':
    case 'sfixed32':
      return (v) => {
        const n = integer(v);
        return n >= -(2 ** 31) && n < 2 ** 31 ? n : bail();
      };
    case 'uint32':
    case 'fixed32':
      return (v) => {
        const n = integer(v);
        return n >= 0 && n < 2 ** 32 ? n : bail();
      };
    case 'int64':
    case 'sint64':
    case 'sfixed64':
      return (v) => {
        const n = integer(v);
        return Number.isSafeInteger(n) ? n : bail();
      };
    case 'uint64':
    case 'fixed64':
      return (v) => {
        const n = integer(v);
        return Number.isSafeInteger(n) && n >= 0 ? n : bail();
      };
  }
  return () => bail();
}

/** proto3 JSON integers: a number, or a string of decimal digits (64-bit values are strings). */
function integer(value: unknown): number {
  const n = typeof value === 'string' && INTEGER.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) ? n : bail();
}

/** The converter of an enum's JSON: one of its names, or a number. */
export function enumConverter(type: protobuf.Enum): Convert {
  // Only the enum's own names (a name inherited from Object.prototype is left to the walker).
  const numbers = new Map<string, number>();
  for (const name of Object.keys(type.values)) numbers.set(name, type.values[name]!);
  return (v) => {
    if (typeof v === 'string') {
      const number = numbers.get(v);
      return number === undefined ? bail() : number;
    }
    return typeof v === 'number' && Number.isInteger(v) ? v : bail();
  };
}

/** The writer of one scalar kind. */
export function putScalar(kind: string): Put {
  switch (kind) {
    case 'double':
      return (w, v) => w.double(v as number);
    case 'float':
      return (w, v) => w.float(v as number);
    case 'int32':
      return (w, v) => w.int32(v as number);
    case 'uint32':
      return (w, v) => w.uint32(v as number);
    case 'sint32':
      return (w, v) => w.sint32(v as number);
    case 'fixed32':
      return (w, v) => w.fixed32(v as number);
    case 'sfixed32':
      return (w, v) => w.sfixed32(v as number);
    case 'int64':
      return (w, v) => w.int64(v as number);
    case 'uint64':
      return (w, v) => w.uint64(v as number);
    case 'sint64':
      return (w, v) => w.sint64(v as number);
    case 'fixed64':
      return (w, v) => w.fixed64(v as number);
    case 'sfixed64':
      return (w, v) => w.sfixed64(v as number);
    case 'bool':
      return (w, v) => w.bool(v as boolean);
    case 'string':
      return (w, v) => w.string(v as string);
    case 'bytes':
      return (w, v) => w.bytes(v as Uint8Array);
  }
  return () => bail();
}
