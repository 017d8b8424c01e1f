// Encryption at rest of a cluster CA's private key: AES-256-GCM under a key-encryption key (KEK) that
// lives in a file or an environment variable on the replicas and never in etcd. The cluster id is the
// associated data, so a sealed key copied to another cluster's entry does not decrypt.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CaConfigError } from './errors.js';

/** A private key sealed with AES-256-GCM (all binary fields base64). */
export interface SealedKey {
  readonly alg: 'AES-256-GCM';
  readonly iv: string;
  readonly tag: string;
  readonly ciphertext: string;
}

/** The environment variable meridiand's settings and the CLI read the KEK from (base64 of 32 bytes). */
export const KEK_ENV = 'MERIDIAN_CA_KEK';

/** A fresh random KEK, base64 (what `meridian ca kek` writes). */
export function generateKek(): string {
  return randomBytes(32).toString('base64');
}

/** Decodes a KEK given as base64 or hex text of 32 bytes, or as 32 raw bytes. */
export function parseKek(value: string | Buffer, source: string): Buffer {
  if (Buffer.isBuffer(value) && value.length === 32) return Buffer.from(value);
  const text = value.toString().trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(text)) key = Buffer.from(text, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) key = Buffer.from(text, 'base64');
  if (key?.length !== 32) {
    throw new CaConfigError(`${source}: the key-encryption key must be 32 bytes (base64 or hex)`, source);
  }
  return key;
}

/**
 * Loads the KEK from a file if given, else from `value` (the KEK as text, as the caller read it from
 * its settings), named in errors by `source` (default MERIDIAN_CA_KEK). This module reads no
 * environment: the program's settings do.
 */
export async function loadKek(
  opts: { file?: string | undefined; value?: string | undefined; source?: string } = {},
): Promise<Buffer> {
  if (opts.file) {
    let raw: Buffer;
    try {
      raw = await readFile(opts.file);
    } catch (err) {
      throw new CaConfigError(`cannot read the key-encryption key file ${opts.file}`, opts.file, {
        cause: err,
      });
    }
    return parseKek(raw, opts.file);
  }
  const name = opts.source ?? KEK_ENV;
  if (!opts.value) throw new CaConfigError(`no key-encryption key: set ${name} or give a key file`, name);
  return parseKek(opts.value, name);
}

/** Seals a private key PEM for `clusterId`. */
export function sealPrivateKey(keyPem: string, kek: Buffer, clusterId: string): SealedKey {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, iv);
  cipher.setAAD(Buffer.from(clusterId, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(keyPem, 'utf8'), cipher.final()]);
  return {
    alg: 'AES-256-GCM',
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    ciphertext: ciphertext.toString('base64'),
  };
}

/** Opens a sealed key; CaConfigError when the KEK or the cluster id is wrong or the data was altered. */
export function openPrivateKey(sealed: SealedKey, kek: Buffer, clusterId: string): string {
  if (sealed.alg !== 'AES-256-GCM') {
    throw new CaConfigError(`unsupported key encryption "${String(sealed.alg)}"`, 'ca/intermediate');
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(sealed.iv, 'base64'));
    decipher.setAAD(Buffer.from(clusterId, 'utf8'));
    decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
    return Buffer.concat([
      decipher.update(Buffer.from(sealed.ciphertext, 'base64')),
      decipher.final(),
    ]).toString('utf8');
  } catch (err) {
    throw new CaConfigError(
      `cannot decrypt the CA key of cluster "${clusterId}": wrong key-encryption key, wrong cluster, or altered data`,
      'ca/intermediate',
      { cause: err },
    );
  }
}
