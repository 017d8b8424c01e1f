import { createCsr, InvalidRequestError, parseCsr } from '@meridian/ca';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ecKey, rsaKey } from './helpers.js';

const pem = (der: Uint8Array) =>
  `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(der).toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
const derOf = (p: string) => Buffer.from(p.replace(/-----[^-]+-----|\s/g, ''), 'base64');

/** parseCsr either accepts or throws InvalidRequestError: never another error, never a crash. */
function onlyInvalidRequest(text: string): boolean {
  try {
    parseCsr(text);
    return true;
  } catch (err) {
    if (!(err instanceof InvalidRequestError)) throw err;
    expect(err.message.startsWith('csr: ')).toBe(true);
    return true;
  }
}

describe('CSR parsing never crashes on hostile input (property tests)', () => {
  const good = [
    createCsr({ key: ecKey(), uris: ['spiffe://cluster.local/ns/a/sa/b'] }),
    createCsr({ key: rsaKey(), uris: ['spiffe://cluster.local/ns/a/sa/b'] }),
  ];

  it('random bytes in a PEM envelope', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => onlyInvalidRequest(pem(bytes))),
      {
        numRuns: 500,
      },
    );
  });

  it('valid requests with bytes flipped, truncated or extended', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...good),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.constantFrom('flip', 'truncate', 'append'),
        (csr, pos, value, how) => {
          const der = derOf(csr);
          const at = pos % der.length;
          let mutated: Buffer;
          if (how === 'flip') {
            mutated = Buffer.from(der);
            mutated[at] = mutated[at]! ^ value;
          } else if (how === 'truncate') mutated = der.subarray(0, at);
          else mutated = Buffer.concat([der, Buffer.alloc(value, 0x30)]);
          const text = pem(mutated);
          try {
            parseCsr(text);
            // A mutated request must never be accepted: every byte is covered by the DER structure
            // or by the signature.
            return false;
          } catch (err) {
            if (!(err instanceof InvalidRequestError)) throw err;
            return true;
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('rejects re-tagged or malleable outer fields that the signature does not cover', () => {
    const der = derOf(good[0]!);
    // signatureAlgorithm re-tagged SEQUENCE -> SET (found by the property above).
    const infoLen = 3 + der[5]!; // headers are 3 bytes at these sizes: 30 81 <len>
    const retagged = Buffer.from(der);
    expect(retagged[3 + infoLen]).toBe(0x30);
    retagged[3 + infoLen] = 0x31;
    expect(() => parseCsr(pem(retagged))).toThrow(
      'csr: malformed certificate request: signatureAlgorithm is not a SEQUENCE (at byte 0)',
    );
    // A non-zero unused-bits byte in the signature BIT STRING.
    const sigAt = 3 + infoLen + 2 + der[3 + infoLen + 1]!;
    const bits = Buffer.from(der);
    expect(bits[sigAt]).toBe(0x03);
    expect(bits[sigAt + 2]).toBe(0);
    bits[sigAt + 2] = 1;
    expect(() => parseCsr(pem(bits))).toThrow(
      'csr: malformed certificate request: signature is not a BIT STRING without unused bits (at byte 0)',
    );
  });

  it('rejects signature algorithm parameters other than their one valid form', () => {
    // An RSA request's sha256WithRSAEncryption NULL parameters re-tagged as an empty OCTET STRING
    // (found by the flip property): the signature does not cover them.
    const der = derOf(good[1]!);
    const sha256WithRsaNull = Buffer.from('06092a864886f70d01010b0500', 'hex');
    const at = der.lastIndexOf(sha256WithRsaNull);
    expect(at).toBeGreaterThan(0);
    const octets = Buffer.from(der);
    octets[at + sha256WithRsaNull.length - 2] = 0x04;
    expect(() => parseCsr(pem(octets))).toThrow(
      'csr: malformed signature algorithm: 1.2.840.113549.1.1.11 must have NULL or no parameters',
    );
    expect(() => parseCsr(good[1]!)).not.toThrow();
  });
});
