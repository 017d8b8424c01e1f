// Minimal DER (ITU-T X.690) encoder and reader: just what X.509 certificates and PKCS#10 requests
// need. Hand-built so that issuing a certificate is one synchronous pass (no ASN.1 schema objects),
// which keeps issuance close to the cost of the signature itself (see bench/ca.ts).

/** Universal and context tags used by X.509 / PKCS#10. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** A DER syntax error, with the byte offset where reading failed. */
export class DerError extends Error {
  override readonly name = 'DerError';
  readonly code = 'MALFORMED_DER';
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} (at byte ${offset})`);
  }
}

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  let v = n;
  while (v > 0) {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Tag-length-value with the given tag byte. */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = content.length === 1 ? content[0]! : Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export const seq = (...items: Buffer[]): Buffer => tlv(Tag.SEQUENCE, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(Tag.SET, ...items);
export const nullValue = (): Buffer => Buffer.from([Tag.NULL, 0]);
export const bool = (v: boolean): Buffer => Buffer.from([Tag.BOOLEAN, 1, v ? 0xff : 0]);
export const octets = (b: Buffer): Buffer => tlv(Tag.OCTET_STRING, b);
export const bitString = (b: Buffer, unusedBits = 0): Buffer =>
  tlv(Tag.BIT_STRING, Buffer.from([unusedBits]), b);
export const utf8 = (s: string): Buffer => tlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'));
/** Explicit context tag [n], constructed. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);

/** A non-negative INTEGER from unsigned big-endian bytes (adds a 0x00 pad when the top bit is set). */
export function uint(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  let b = bytes.subarray(start);
  if (b.length === 0) b = Buffer.from([0]);
  if ((b[0]! & 0x80) !== 0) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(Tag.INTEGER, b);
}

export const smallInt = (n: number): Buffer => uint(Buffer.from([n]));

const oidCache = new Map<string, Buffer>();
/** OBJECT IDENTIFIER from dotted form (cached: the same few OIDs are encoded for every certificate). */
export function oid(dotted: string): Buffer {
  const hit = oidCache.get(dotted);
  if (hit) return hit;
  const parts = dotted.split('.').map(Number);
  const out: number[] = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack: number[] = [p & 0x7f];
    let v = Math.floor(p / 128);
    while (v > 0) {
      stack.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...stack);
  }
  const enc = tlv(Tag.OID, Buffer.from(out));
  oidCache.set(dotted, enc);
  return enc;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 4.1.2.5). */
export function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest = `${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
  if (y < 2050 && y >= 1950) return tlv(Tag.UTC_TIME, Buffer.from(`${pad(y % 100)}${rest}`, 'ascii'));
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(`${pad(y, 4)}${rest}`, 'ascii'));
}

/** One decoded element: its tag, the whole encoding and the content bytes. */
export interface DerNode {
  readonly tag: number;
  /** The complete TLV bytes (a view into the input). */
  readonly raw: Buffer;
  /** The content bytes (a view into the input). */
  readonly content: Buffer;
}

/** Reads one element at `offset` of `buf`; throws DerError when it is malformed or overruns. */
export function readNode(buf: Buffer, offset = 0): DerNode {
  if (offset + 2 > buf.length) throw new DerError('truncated element header', offset);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported', offset);
  let len = buf[offset + 1]!;
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length encoding', offset + 1);
    if (offset + 2 + n > buf.length) throw new DerError('truncated length', offset + 1);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[offset + 2 + i]!;
    hdr += n;
  }
  const end = offset + hdr + len;
  if (end > buf.length) throw new DerError(`element length ${len} overruns the input`, offset);
  return { tag, raw: buf.subarray(offset, end), content: buf.subarray(offset + hdr, end) };
}

/** The children of a constructed element. */
export function children(node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  let off = 0;
  while (off < node.content.length) {
    const child = readNode(node.content, off);
    out.push(child);
    off += child.raw.length;
  }
  return out;
}

/** Reads exactly one element spanning the whole buffer. */
export function readWhole(buf: Buffer): DerNode {
  const node = readNode(buf, 0);
  if (node.raw.length !== buf.length) throw new DerError('trailing bytes after the element', node.raw.length);
  return node;
}

/** Decodes an OBJECT IDENTIFIER node to dotted form. */
export function decodeOid(node: DerNode): string {
  if (node.tag !== Tag.OID) throw new DerError(`expected OID, got tag 0x${node.tag.toString(16)}`, 0);
  const b = node.content;
  if (b.length === 0) throw new DerError('empty OID', 0);
  const first = b[0]!;
  const parts: number[] = [first < 80 ? Math.floor(first / 40) : 2, first < 80 ? first % 40 : first - 80];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if ((b[i]! & 0x80) === 0) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** Converts DER to PEM with the given label. */
export function toPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

/** All PEM blocks with one of the given labels, as DER, in order. */
export function pemBlocks(pem: string, labels: readonly string[]): Buffer[] {
  const out: Buffer[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  for (let m = re.exec(pem); m !== null; m = re.exec(pem)) {
    if (labels.includes(m[1]!)) out.push(Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64'));
  }
  return out;
}
