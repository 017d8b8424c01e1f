/**
 * Shared by the istio-crds-* tests, which check that Meridian agrees with Istio on what is a valid
 * config (issue 15, item 6): for the kinds Meridian serves (AuthorizationPolicy, DestinationRule,
 * PeerAuthentication, ServiceEntry, WorkloadEntry), each case is a small document that Istio accepts
 * or refuses, and `parseConfigDocuments` must do the same. The cases follow Istio's validation rules
 * (its webhook validation in pkg/config/validation and the OpenAPI schemas of its CRDs), one rule per
 * case where possible; the documents, names, hosts and values are written for Meridian, not taken
 * from Istio's test data. For a refusal, `refused` is a fragment of Meridian's error that names the
 * offending field.
 */
import { parseConfigDocuments } from '@meridian/api';
import { describe, expect, it } from 'vitest';

/** One document body and whether Istio accepts it. */
export interface Case {
  readonly name: string;
  readonly yaml: string;
  /** Absent: Istio accepts the document. Present: Istio refuses it; a fragment of Meridian's error. */
  readonly refused?: string;
}

/** The kinds whose documents are compared with Istio's validation. */
export type Kind =
  | 'AuthorizationPolicy'
  | 'DestinationRule'
  | 'PeerAuthentication'
  | 'ServiceEntry'
  | 'WorkloadEntry';

const API: Record<Kind, string> = {
  AuthorizationPolicy: 'security.istio.io/v1',
  DestinationRule: 'networking.istio.io/v1',
  PeerAuthentication: 'security.istio.io/v1',
  ServiceEntry: 'networking.istio.io/v1',
  WorkloadEntry: 'networking.istio.io/v1',
};

/** A document of `kind` named `name` in namespace `shop`; `body` holds its top-level `spec` (or not). */
const doc = (kind: Kind, name: string, body: string) =>
  `apiVersion: ${API[kind]}\nkind: ${kind}\nmetadata: {name: ${name}, namespace: shop}\n${body}`;

/**
 * Declares the agreement suite for `cases`: one test per case (accepted, or refused with the
 * fragment), and a check that every kind given has both valid and invalid cases.
 */
export function describeAgreementWithIstio<K extends Kind>(cases: Record<K, readonly Case[]>): void {
  describe('agreement with Istio on valid and invalid documents', () => {
    for (const [kind, kindCases] of Object.entries(cases) as [Kind, readonly Case[]][]) {
      describe(kind, () => {
        kindCases.forEach((c, i) => {
          const text = doc(kind, `case-${i}`, c.yaml);
          if (c.refused === undefined) {
            it(`accepts ${c.name}`, () => {
              const r = parseConfigDocuments(text, { source: `${kind}.yaml` });
              expect(r.ok ? 'accepted' : r.error.message).toBe('accepted');
            });
          } else {
            const fragment = c.refused;
            it(`refuses ${c.name}`, () => {
              const r = parseConfigDocuments(text, { source: `${kind}.yaml` });
              expect(r.ok, 'accepted a document Istio refuses').toBe(false);
              if (!r.ok) expect(r.error.message).toContain(fragment);
            });
          }
        });
      });
    }

    it('covers every kind with valid and invalid cases', () => {
      for (const kindCases of Object.values(cases) as (readonly Case[])[]) {
        expect(kindCases.some((c) => c.refused === undefined)).toBe(true);
        expect(kindCases.some((c) => c.refused !== undefined)).toBe(true);
      }
    });
  });
}

/** Parses one document: its config, or the error message. */
export const one = (text: string) => {
  const r = parseConfigDocuments(text);
  return r.ok
    ? { ok: true as const, config: r.configs[0]! }
    : { ok: false as const, message: r.error.message };
};

/** An AuthorizationPolicy `p` in namespace `ns` with one rule whose one `from` has `source`. */
export const policy = (source: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - from:
    - source: ${source}
`;
