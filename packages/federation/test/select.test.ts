import { describe, expect, test } from 'vitest';
import { EXPORT_LABEL, exportDecision } from '../src/index.js';
import { svc } from './helpers.js';

const service = (o: { exportTo?: string[]; labels?: Record<string, string> }) =>
  svc('east', 'a', 1, o).service;

describe('export selection (Istio exportTo semantics)', () => {
  test.each([
    [[], true, 'exportTo absent (mesh default "*")'],
    [['*'], true, 'exportTo ["*"] reaches other namespaces'],
    [['other-ns'], true, 'exportTo ["other-ns"] reaches other namespaces'],
    [['.', 'other-ns'], true, 'exportTo [".","other-ns"] reaches other namespaces'],
    [['.'], false, 'exportTo ["."] keeps the service inside its namespace'],
    [['~'], false, 'exportTo ["~"] keeps the service inside its namespace'],
  ])('mode all, exportTo %j', (exportTo, exported, reason) => {
    expect(exportDecision(service({ exportTo }), { mode: 'all' })).toEqual({ exported, reason });
  });

  test('mode marked exports only labelled services, and still honours exportTo', () => {
    expect(exportDecision(service({}), { mode: 'marked' })).toEqual({
      exported: false,
      reason: `label ${EXPORT_LABEL} is not "true"`,
    });
    expect(exportDecision(service({ labels: { [EXPORT_LABEL]: 'true' } }), { mode: 'marked' }).exported).toBe(
      true,
    );
    expect(
      exportDecision(service({ labels: { [EXPORT_LABEL]: 'true' }, exportTo: ['.'] }), { mode: 'marked' })
        .exported,
    ).toBe(false);
    expect(
      exportDecision(service({ labels: { mine: 'true' } }), { mode: 'marked', label: 'mine' }).exported,
    ).toBe(true);
  });

  test('wildcard hosts are never exported', () => {
    expect(exportDecision({ ...service({}), hostname: '*.example.com' }, { mode: 'all' })).toEqual({
      exported: false,
      reason: 'hostname "*.example.com" is not an exportable DNS name',
    });
  });
});
