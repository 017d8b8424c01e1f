// X.509 certificates and PKCS#10 requests, built and read with the DER helpers in der.ts and signed or
// verified with native `crypto`.
//
// Why not node-forge: it has no ECDSA (neither P-256 workload keys nor EC CA keys) and signs RSA in
// JavaScript, an order of magnitude slower than OpenSSL. Why not @peculiar/x509 on the hot path: it is
// asynchronous over WebCrypto and goes through ASN.1 schema objects; issuance here is one synchronous
// pass whose cost is dominated by `crypto.sign` (bench/ca.ts measures the ratio). @peculiar/x509 is
// used by the tests as an independent implementation that generates the CSRs we parse.

import { createHash, createPublicKey, type KeyObject, randomBytes, sign, verify } from 'node:crypto';
import { isIP } from 'node:net';
import {
  bitString,
  bool,
  children,
  DerError,
  type DerNode,
  decodeOid,
  explicit,
  nullValue,
  octets,
  oid,
  pemBlocks,
  readWhole,
  seq,
  set,
  smallInt,
  Tag,
  time,
  tlv,
  toPem,
  uint,
  utf8,
} from './der.js';
import { InvalidRequestError } from './errors.js';

export const OID = {
  rsaEncryption: '1.2.840.113549.1.1.1',
  sha256WithRSA: '1.2.840.113549.1.1.11',
  sha384WithRSA: '1.2.840.113549.1.1.12',
  sha512WithRSA: '1.2.840.113549.1.1.13',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  extensionRequest: '1.2.840.113549.1.9.14',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** Key types the CA accepts or generates. */
export type KeyType = 'rsa2048' | 'rsa3072' | 'rsa4096' | 'ecdsa-p256' | 'ecdsa-p384';

/** How a given private key signs: the hash for crypto.sign and the AlgorithmIdentifier DER. */
export interface SignatureAlgorithm {
  readonly hash: 'sha256' | 'sha384';
  readonly algorithmIdentifier: Buffer;
}

const RSA_SHA256: SignatureAlgorithm = {
  hash: 'sha256',
  algorithmIdentifier: seq(oid(OID.sha256WithRSA), nullValue()),
};
const ECDSA_SHA256: SignatureAlgorithm = {
  hash: 'sha256',
  algorithmIdentifier: seq(oid(OID.ecdsaWithSHA256)),
};
const ECDSA_SHA384: SignatureAlgorithm = {
  hash: 'sha384',
  algorithmIdentifier: seq(oid(OID.ecdsaWithSHA384)),
};

/** The key type of a key object, or undefined when it is not one the CA supports. */
export function keyTypeOf(key: KeyObject): KeyType | undefined {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d?.modulusLength;
    if (bits === 2048 || bits === 3072 || bits === 4096) return `rsa${bits}`;
    return undefined;
  }
  if (key.asymmetricKeyType === 'ec') {
    if (d?.namedCurve === 'prime256v1') return 'ecdsa-p256';
    if (d?.namedCurve === 'secp384r1') return 'ecdsa-p384';
  }
  return undefined;
}

/** A readable description of any key ("RSA 1024 bits", "EC secp521r1", "ed25519"). */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return `RSA ${d?.modulusLength ?? '?'} bits`;
  if (key.asymmetricKeyType === 'ec') return `EC ${d?.namedCurve ?? '?'}`;
  return String(key.asymmetricKeyType);
}

/** The signature algorithm a CA key signs certificates with (SHA-256, SHA-384 for P-384). */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  const t = keyTypeOf(key);
  if (t === undefined) throw new InvalidRequestError('key', `unsupported CA key (${describeKey(key)})`);
  if (t === 'ecdsa-p256') return ECDSA_SHA256;
  if (t === 'ecdsa-p384') return ECDSA_SHA384;
  return RSA_SHA256;
}

/** One relative distinguished name attribute. */
export interface NameAttribute {
  readonly type: 'CN' | 'O' | 'OU';
  readonly value: string;
}

const NAME_OIDS = { CN: OID.commonName, O: OID.organization, OU: OID.organizationalUnit } as const;

/** A Name (RDNSequence), one attribute per RDN, in the given order. */
export function encodeName(attrs: readonly NameAttribute[]): Buffer {
  return seq(...attrs.map((a) => set(seq(oid(NAME_OIDS[a.type]), utf8(a.value)))));
}

/** One Extension. */
export function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

/** basicConstraints; pathLen only for CAs. */
export function basicConstraints(ca: boolean, pathLen?: number): Buffer {
  if (!ca) return extension(OID.basicConstraints, true, seq());
  const parts = [bool(true)];
  if (pathLen !== undefined) parts.push(smallInt(pathLen));
  return extension(OID.basicConstraints, true, seq(...parts));
}

/** keyUsage bits (RFC 5280 4.2.1.3): bit 0 digitalSignature ... bit 5 keyCertSign, bit 6 cRLSign. */
export function keyUsage(bits: readonly number[]): Buffer {
  let v = 0;
  for (const b of bits) v |= 0x80 >> b;
  // Encode one byte, with the trailing zero bits declared unused (DER: minimal named bit list).
  let unused = 0;
  while (unused < 8 && (v & (1 << unused)) === 0) unused++;
  return extension(OID.keyUsage, true, bitString(Buffer.from([v]), unused === 8 ? 0 : unused));
}
export const KU = { digitalSignature: 0, keyEncipherment: 2, keyCertSign: 5, cRLSign: 6 } as const;

export function extKeyUsage(oids: readonly string[]): Buffer {
  return extension(OID.extKeyUsage, false, seq(...oids.map((o) => oid(o))));
}

/** subjectAltName with URIs and DNS names; critical when the subject is empty (RFC 5280 4.2.1.6). */
export function subjectAltName(
  uris: readonly string[],
  dnsNames: readonly string[],
  critical: boolean,
): Buffer {
  // A name that is an IP address becomes an iPAddress entry (TLS checks IP targets against those).
  const names = [
    ...uris.map((u) => tlv(0x86, Buffer.from(u, 'ascii'))),
    ...dnsNames.map((d) => {
      const ip = ipBytes(d);
      return ip ? tlv(0x87, ip) : tlv(0x82, Buffer.from(d, 'ascii'));
    }),
  ];
  return extension(OID.subjectAltName, critical, seq(...names));
}

/** The 4 or 16 bytes of an IPv4/IPv6 literal, or undefined when `text` is not one. */
function ipBytes(text: string): Buffer | undefined {
  const kind = isIP(text);
  if (kind === 4) return Buffer.from(text.split('.').map(Number));
  if (kind !== 6) return undefined;
  const [head = '', tail = ''] = text.includes('::') ? text.split('::') : [text, ''];
  const parse = (part: string): number[] =>
    part === '' ? [] : part.split(':').map((h) => Number.parseInt(h, 16));
  let h = parse(head);
  let t = parse(tail);
  // An embedded IPv4 tail (::ffff:1.2.3.4).
  const last = (text.includes('::') ? tail : head).split(':').pop() ?? '';
  if (last.includes('.')) {
    const v4 = last.split('.').map(Number);
    const words = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    if (text.includes('::')) t = [...t.slice(0, -1), ...words];
    else h = [...h.slice(0, -1), ...words];
  }
  const words = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => {
    out.writeUInt16BE(w, i * 2);
  });
  return out;
}

/**
 * nameConstraints permitting only URIs whose host is `host`. RFC 5280 4.2.1.10: a URI constraint is a
 * host name, so `spiffe://cluster.local/...` is permitted by the constraint `cluster.local` (this is
 * how OpenSSL, and so Node's TLS, evaluates it).
 */
export function uriNameConstraint(host: string): Buffer {
  const subtree = seq(tlv(0x86, Buffer.from(host, 'ascii')));
  return extension(OID.nameConstraints, true, seq(tlv(0xa0, subtree)));
}

/** subjectKeyIdentifier value: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1). */
export function keyIdentifier(spki: Buffer): Buffer {
  const top = children(readWhole(spki));
  const bits = top[1];
  if (!bits || bits.tag !== Tag.BIT_STRING) throw new DerError('SubjectPublicKeyInfo without BIT STRING', 0);
  return createHash('sha1').update(bits.content.subarray(1)).digest();
}

export const subjectKeyIdentifier = (ski: Buffer): Buffer =>
  extension(OID.subjectKeyIdentifier, false, octets(ski));
export const authorityKeyIdentifier = (ski: Buffer): Buffer =>
  extension(OID.authorityKeyIdentifier, false, seq(tlv(0x80, ski)));

/** 16 random bytes, positive, never starting with a zero byte (RFC 5280 4.1.2.2: at most 20 octets). */
let serialPool = Buffer.alloc(0);
let serialPoolOffset = 0;
export function newSerial(): Buffer {
  // One randomBytes call per 256 serials: the CSPRNG call costs more than everything else here.
  if (serialPoolOffset + 16 > serialPool.length) {
    serialPool = randomBytes(4096);
    serialPoolOffset = 0;
  }
  const b = Buffer.from(serialPool.subarray(serialPoolOffset, serialPoolOffset + 16));
  serialPoolOffset += 16;
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b;
}

/** What a certificate's TBS part holds. */
export interface CertificateTemplate {
  readonly serial: Buffer;
  readonly issuer: Buffer;
  readonly subject: Buffer;
  readonly spki: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly extensions: readonly Buffer[];
}

/** DER of the TBSCertificate for a template, for the given signature algorithm. */
export function encodeTbs(t: CertificateTemplate, alg: SignatureAlgorithm): Buffer {
  return seq(
    explicit(0, smallInt(2)),
    uint(t.serial),
    alg.algorithmIdentifier,
    t.issuer,
    seq(time(t.notBefore), time(t.notAfter)),
    t.subject,
    t.spki,
    explicit(3, seq(...t.extensions)),
  );
}

/** Signs TBS bytes with a CA key: the complete certificate DER. */
export function signTbs(tbs: Buffer, alg: SignatureAlgorithm, key: KeyObject): Buffer {
  const sig = sign(alg.hash, tbs, key);
  return seq(tbs, alg.algorithmIdentifier, bitString(sig));
}

/** The parts of a certificate the CA needs when it issues under it. */
export interface CertificateParts {
  readonly der: Buffer;
  readonly subject: Buffer;
  readonly spki: Buffer;
  /** subjectKeyIdentifier if present, else computed with method 1. */
  readonly keyId: Buffer;
}

/** Reads subject, SPKI and key identifier of a certificate DER. */
export function certificateParts(der: Buffer): CertificateParts {
  const cert = children(readWhole(der));
  const tbs = children(cert[0]!);
  const off = tbs[0]!.tag === 0xa0 ? 1 : 0;
  const subject = tbs[off + 4]!.raw;
  const spki = tbs[off + 5]!.raw;
  let keyId: Buffer | undefined;
  const exts = tbs.find((n) => n.tag === 0xa3);
  if (exts) {
    for (const ext of children(children(exts)[0]!)) {
      const parts = children(ext);
      if (decodeOid(parts[0]!) === OID.subjectKeyIdentifier) {
        keyId = readWhole(parts[parts.length - 1]!.content).content;
      }
    }
  }
  return { der, subject, spki, keyId: keyId ?? keyIdentifier(spki) };
}

/** A parsed, signature-checked PKCS#10 request. */
export interface ParsedCsr {
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
  readonly keyType: KeyType;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly emails: readonly string[];
  /** SAN entries of other kinds (otherName, directoryName, ...), counted. */
  readonly otherNames: number;
}

/** Limits on what a CSR may carry; beyond them the request is INVALID_ARGUMENT. */
export const CSR_LIMITS = {
  /** PEM text of the request. */
  maxPemBytes: 16 * 1024,
  /** Encoded subjectAltName extension value. */
  maxSanBytes: 2048,
  /** Number of subjectAltName entries. */
  maxSanEntries: 16,
} as const;

const ACCEPTED_WORKLOAD_KEYS: readonly KeyType[] = ['rsa2048', 'rsa3072', 'rsa4096', 'ecdsa-p256'];
const CSR_SIG_HASH: Record<string, string> = {
  [OID.sha256WithRSA]: 'sha256',
  [OID.sha384WithRSA]: 'sha384',
  [OID.sha512WithRSA]: 'sha512',
  [OID.ecdsaWithSHA256]: 'sha256',
  [OID.ecdsaWithSHA384]: 'sha384',
  [OID.ecdsaWithSHA512]: 'sha512',
};

const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
const RSA_ALG_ID = seq(oid(OID.rsaEncryption), nullValue());

/**
 * Imports a SubjectPublicKeyInfo. OpenSSL 3.0's generic SPKI decoder costs more than an ECDSA
 * signature, so the two common shapes take cheaper routes with the same result: RSA as its PKCS#1
 * RSAPublicKey, uncompressed P-256 points as JWK coordinates. Anything else uses the SPKI decoder.
 */
export function importSpki(spki: Buffer): KeyObject {
  if (spki.length === 91 && spki.subarray(0, 26).equals(P256_SPKI_PREFIX) && spki[26] === 0x04) {
    return createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: spki.subarray(27, 59).toString('base64url'),
        y: spki.subarray(59, 91).toString('base64url'),
      },
      format: 'jwk',
    });
  }
  const parts = children(readWhole(spki));
  if (parts.length === 2 && parts[0]!.raw.equals(RSA_ALG_ID) && parts[1]!.tag === Tag.BIT_STRING) {
    return createPublicKey({ key: parts[1]!.content.subarray(1), format: 'der', type: 'pkcs1' });
  }
  return createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

function ipToString(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  const groups: string[] = [];
  for (let i = 0; i + 1 < b.length; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

function parseSan(
  value: Buffer,
  out: { uris: string[]; dns: string[]; ips: string[]; emails: string[] },
): number {
  let other = 0;
  const names = children(readWhole(value));
  if (names.length > CSR_LIMITS.maxSanEntries) {
    throw new InvalidRequestError(
      'csr',
      `subjectAltName has ${names.length} entries, at most ${CSR_LIMITS.maxSanEntries} are accepted`,
    );
  }
  for (const n of names) {
    const text = n.content.toString('latin1');
    if (n.tag === 0x86) out.uris.push(text);
    else if (n.tag === 0x82) out.dns.push(text);
    else if (n.tag === 0x81) out.emails.push(text);
    else if (n.tag === 0x87) out.ips.push(ipToString(n.content));
    else other++;
  }
  return other;
}

function csrStructure(der: Buffer): { info: DerNode; infoParts: DerNode[]; sigAlg: DerNode; sig: DerNode } {
  const top = readWhole(der);
  if (top.tag !== Tag.SEQUENCE) throw new DerError('CertificationRequest is not a SEQUENCE', 0);
  const parts = children(top);
  if (parts.length !== 3) throw new DerError('CertificationRequest must have 3 parts', 0);
  const [info, sigAlg, sig] = parts as [DerNode, DerNode, DerNode];
  if (info.tag !== Tag.SEQUENCE) throw new DerError('CertificationRequestInfo is not a SEQUENCE', 0);
  const infoParts = children(info);
  if (
    infoParts.length < 3 ||
    infoParts.length > 4 ||
    infoParts[0]!.tag !== Tag.INTEGER ||
    infoParts[1]!.tag !== Tag.SEQUENCE ||
    infoParts[2]!.tag !== Tag.SEQUENCE ||
    (infoParts[3] !== undefined && infoParts[3].tag !== 0xa0)
  ) {
    throw new DerError('CertificationRequestInfo is malformed', 0);
  }
  if (sigAlg.tag !== Tag.SEQUENCE) throw new DerError('signatureAlgorithm is not a SEQUENCE', 0);
  // The signature's unused-bits byte is not covered by the signature: only 0 is valid.
  if (sig.tag !== Tag.BIT_STRING || sig.content.length < 2 || sig.content[0] !== 0) {
    throw new DerError('signature is not a BIT STRING without unused bits', 0);
  }
  return { info, infoParts, sigAlg, sig };
}

/**
 * Parses a PEM PKCS#10 request, checks its key type and verifies its signature. Throws
 * InvalidRequestError (field `csr`) for anything malformed, unsupported, oversized, asking for a CA
 * certificate, or not signed by its own key. SAN *policy* (which names are allowed) is the issuer's.
 */
export function parseCsr(pem: string | Buffer): ParsedCsr {
  const text = typeof pem === 'string' ? pem : pem.toString('latin1');
  if (text.length > CSR_LIMITS.maxPemBytes) {
    throw new InvalidRequestError(
      'csr',
      `request is ${text.length} bytes, at most ${CSR_LIMITS.maxPemBytes} are accepted`,
    );
  }
  const blocks = pemBlocks(text, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
  if (blocks.length !== 1) {
    throw new InvalidRequestError('csr', 'expected exactly one PEM "CERTIFICATE REQUEST" block');
  }
  let s: ReturnType<typeof csrStructure>;
  try {
    s = csrStructure(blocks[0]!);
  } catch (err) {
    throw new InvalidRequestError('csr', `malformed certificate request: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const spki = s.infoParts[2]!.raw;
  let publicKey: KeyObject;
  try {
    publicKey = importSpki(spki);
  } catch (err) {
    throw new InvalidRequestError('csr', 'unreadable public key', { cause: err });
  }
  const keyType = keyTypeOf(publicKey);
  if (keyType === undefined || !ACCEPTED_WORKLOAD_KEYS.includes(keyType)) {
    throw new InvalidRequestError(
      'csr',
      `unsupported public key (${describeKey(publicKey)}); accepted: RSA 2048/3072/4096, ECDSA P-256`,
    );
  }
  let algOid: string;
  let algParams: DerNode[];
  try {
    const algParts = children(s.sigAlg);
    algOid = decodeOid(algParts[0]!);
    algParams = algParts.slice(1);
  } catch (err) {
    throw new InvalidRequestError('csr', 'malformed signature algorithm', { cause: err });
  }
  const hash = CSR_SIG_HASH[algOid];
  const isRsaAlg = algOid.startsWith('1.2.840.113549.');
  if (hash === undefined || isRsaAlg !== (publicKey.asymmetricKeyType === 'rsa')) {
    throw new InvalidRequestError(
      'csr',
      `unsupported signature algorithm ${algOid} for a ${describeKey(publicKey)} key`,
    );
  }
  // The signature does not cover the algorithm's parameters, so they are held to their one valid
  // form: NULL or absent for RSA PKCS#1 v1.5 (RFC 4055 section 5), absent for ECDSA (RFC 5758
  // section 3.2). Anything else would let a signed request be altered and still accepted.
  const paramsValid = isRsaAlg
    ? algParams.length === 0 ||
      (algParams.length === 1 && algParams[0]!.tag === Tag.NULL && algParams[0]!.content.length === 0)
    : algParams.length === 0;
  if (!paramsValid) {
    throw new InvalidRequestError(
      'csr',
      `malformed signature algorithm: ${algOid} must have ${isRsaAlg ? 'NULL or no parameters' : 'no parameters'}`,
    );
  }
  let ok = false;
  try {
    ok = verify(hash, s.info.raw, publicKey, s.sig.content.subarray(1));
  } catch {
    ok = false;
  }
  if (!ok) throw new InvalidRequestError('csr', 'signature does not verify with the request public key');

  const out = { uris: [] as string[], dns: [] as string[], ips: [] as string[], emails: [] as string[] };
  let otherNames = 0;
  try {
    const attrs = s.infoParts[3];
    if (attrs && attrs.tag === 0xa0) {
      for (const attr of children(attrs)) {
        const [type, values] = children(attr);
        if (!type || !values || decodeOid(type) !== OID.extensionRequest) continue;
        for (const exts of children(values)) {
          for (const ext of children(exts)) {
            const parts = children(ext);
            const id = decodeOid(parts[0]!);
            const value = parts[parts.length - 1]!.content;
            if (id === OID.basicConstraints) {
              const bc = children(readWhole(value));
              if (bc[0]?.tag === Tag.BOOLEAN && bc[0].content[0] !== 0) {
                throw new InvalidRequestError('csr', 'requests a CA certificate (basicConstraints cA=true)');
              }
            } else if (id === OID.subjectAltName) {
              if (value.length > CSR_LIMITS.maxSanBytes) {
                throw new InvalidRequestError(
                  'csr',
                  `subjectAltName is ${value.length} bytes, at most ${CSR_LIMITS.maxSanBytes} are accepted`,
                );
              }
              otherNames += parseSan(value, out);
            }
          }
        }
      }
    }
  } catch (err) {
    if (err instanceof InvalidRequestError) throw err;
    throw new InvalidRequestError('csr', `malformed extension request: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return {
    spki,
    publicKey,
    keyType,
    uris: out.uris,
    dnsNames: out.dns,
    ipAddresses: out.ips,
    emails: out.emails,
    otherNames,
  };
}

/** What a PKCS#10 request built by `createCsr` asks for. */
export interface CsrOptions {
  /** The workload's private key (RSA or EC); the request carries its public key and is signed by it. */
  readonly key: KeyObject;
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  /** Extra encoded Extension values to request (tests use this for basicConstraints cA=true). */
  readonly extraExtensions?: readonly Buffer[];
}

/** Builds a PEM PKCS#10 request (empty subject, SAN in an extensionRequest), as istio-agent does. */
export function createCsr(opts: CsrOptions): string {
  const spki = createPublicKey(opts.key).export({ format: 'der', type: 'spki' });
  const exts: Buffer[] = [];
  const uris = opts.uris ?? [];
  const dns = opts.dnsNames ?? [];
  if (uris.length + dns.length > 0) exts.push(subjectAltName(uris, dns, true));
  exts.push(...(opts.extraExtensions ?? []));
  const attrs = exts.length > 0 ? seq(oid(OID.extensionRequest), set(seq(...exts))) : Buffer.alloc(0);
  const info = seq(smallInt(0), seq(), spki, tlv(0xa0, attrs));
  const rsa = opts.key.asymmetricKeyType === 'rsa';
  const alg = rsa ? RSA_SHA256 : ECDSA_SHA256;
  const sig = sign('sha256', info, opts.key);
  return toPem(seq(info, alg.algorithmIdentifier, bitString(sig)), 'CERTIFICATE REQUEST');
}
