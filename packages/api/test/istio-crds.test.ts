// Istio's own CRD validation test data (issue 15, item 6): every document of `*-valid.yaml` is
// accepted and every document of `*-invalid.yaml` refused, for the kinds Meridian serves. The files
// are kept verbatim in testdata/istio-crds/ (source, commit and licence in its SOURCE.md). As in
// Istio's TestCRDs (pkg/config/validation/openapi_test.go), a document's top-level `_err` field is the
// error Istio expects and is removed before validation; the rest goes through Meridian's own YAML
// reader unchanged.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseConfigDocuments } from '@meridian/api';
import { describe, expect, it } from 'vitest';

const DIR = fileURLToPath(new URL('./testdata/istio-crds/', import.meta.url));

interface Doc {
  readonly name: string;
  readonly text: string;
  /** What Istio expects to be refused (invalid files). */
  readonly wantErr: string | undefined;
}

/** The documents of one file: split on `---` lines, `_err` taken out. */
function documents(file: string): Doc[] {
  const text = readFileSync(`${DIR}${file}`, 'utf8');
  return text
    .split(/^---[ \t]*$/m)
    .filter((d) => /^kind:/m.test(d))
    .map((d) => {
      const wantErr = /^_err:\s*(.*)$/m.exec(d)?.[1]?.trim();
      return {
        name: /^ {2}name:\s*(\S+)/m.exec(d)?.[1] ?? '?',
        text: d.replace(/^_err:.*$/m, ''),
        wantErr,
      };
    });
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml'));

describe("Istio's CRD validation test data", () => {
  it('is all here', () => {
    expect(files.sort()).toEqual(
      ['authz', 'destinationrule', 'peerauth', 'serviceentry', 'workloadentry'].flatMap((k) => [
        `${k}-invalid.yaml`,
        `${k}-valid.yaml`,
      ]),
    );
  });

  for (const file of files.filter((f) => f.endsWith('-valid.yaml'))) {
    for (const doc of documents(file)) {
      it(`${file}: ${doc.name} is accepted`, () => {
        const r = parseConfigDocuments(doc.text, { source: file });
        expect(r.ok ? 'accepted' : r.error.message).toBe('accepted');
      });
    }
  }

  for (const file of files.filter((f) => f.endsWith('-invalid.yaml'))) {
    for (const doc of documents(file)) {
      it(`${file}: ${doc.name} is refused (Istio: ${doc.wantErr ?? 'invalid'})`, () => {
        const r = parseConfigDocuments(doc.text, { source: file });
        expect(r.ok, 'accepted a document Istio refuses').toBe(false);
      });
    }
  }
});

describe('the differences the data set showed', () => {
  const one = (text: string) => {
    const r = parseConfigDocuments(text);
    return r.ok
      ? { ok: true as const, config: r.configs[0]! }
      : { ok: false as const, message: r.error.message };
  };
  const policy = (source: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from:
    - source: ${source}
`;

  it("reads a flow sequence item such as 2001:db8:: as Go's YAML reader does (one string)", () => {
    const r = one(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: ns}
spec:
  hosts: [example.com]
  addresses: [1.2.3.4, 2001:db8::, "::1", 10.0.0.0/8]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
`);
    expect(r.ok && r.config.kind === 'ServiceEntry' && r.config.spec.addresses).toEqual([
      '1.2.3.4',
      '2001:db8::',
      '::1',
      '10.0.0.0/8',
    ]);
    // A real one-pair mapping in a flow sequence (a space after the colon) stays a mapping.
    expect(one(policy('{principals: [a: b]}'))).toMatchObject({ ok: false });
  });

  it('AuthorizationPolicy: serviceAccounts as Istio checks them; trustDomains and notTrustDomains', () => {
    expect(one(policy('{serviceAccounts: [sa, ns/sa]}')).ok).toBe(true);
    expect(one(policy('{serviceAccounts: [a/b/c]}'))).toEqual({
      ok: false,
      message:
        "AuthorizationPolicy ns/p: spec.rules[0].from[0].source.serviceAccounts[0]: expected format 'serviceAccount' or 'namespace/serviceAccount', found \"a/b/c\" in serviceAccounts (at line 7, document 0)",
    });
    expect(one(policy('{serviceAccounts: ["ns/*"]}'))).toMatchObject({ ok: false });
    expect(one(policy('{trustDomains: [td, "*.td", "td-*"], notTrustDomains: ["*"]}')).ok).toBe(true);
    expect(one(policy('{trustDomains: ["a*b"]}'))).toMatchObject({
      ok: false,
      message: expect.stringContaining(
        'wildcard is only allowed at the start or end, found in trustDomains: "a*b"',
      ),
    });
    expect(one(policy('{trustDomains: ["td/x"]}'))).toMatchObject({
      ok: false,
      message: expect.stringContaining("trust domain must not contain '/'"),
    });
  });

  it('DestinationRule: connectionPool.http.http2KeepAlive needs both interval and timeout', () => {
    const dr = (keepAlive: string) => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: ns}
spec:
  host: h
  trafficPolicy: {connectionPool: {http: {http2KeepAlive: ${keepAlive}}}}
`;
    expect(one(dr('{interval: 15s, timeout: 5s}')).ok).toBe(true);
    expect(one(dr('{interval: 15s}'))).toMatchObject({
      ok: false,
      message: expect.stringContaining('http2KeepAlive.timeout: http2 keepalive timeout is required'),
    });
  });
});
