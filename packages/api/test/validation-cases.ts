/**
 * Table-driven validation cases shared by validation-virtual-service and validation-destination-rule:
 * each case validates one spec and expects exactly the listed error lines.
 */
import { expect, it } from 'vitest';
import { specErrors } from './helpers.js';

/** One spec and the exact error lines validation reports for it ([] when valid). */
export interface Case {
  name: string;
  spec: unknown;
  errors: string[];
}

/** Declares one test per case: the spec of `kind` validates to exactly `errors`. */
export function run(kind: 'VirtualService' | 'DestinationRule', cases: Case[]): void {
  for (const c of cases) {
    it(c.name, () => {
      expect(specErrors(kind, c.spec)).toEqual(c.errors);
    });
  }
}
