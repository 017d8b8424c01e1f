/**
 * Which local services a cluster exports. The operator picks `all` or `marked` (only services carrying
 * the export label); in both modes Istio's `exportTo` (annotation `networking.istio.io/exportTo` or the
 * resource field) is honoured where it applies across clusters:
 * - `.` (this namespace only) and `~` (nobody): not exported: other clusters are outside the namespace;
 * - `*` or any named namespace: exported; the list travels on the wire so the importing side can keep
 *   the service visible only to those namespaces;
 * - empty / absent: the mesh default (`*`): exported.
 * Wildcard hostnames (`*.example.com`) are never exported: they have no endpoints to federate.
 */
import { isExportableHostname, isNamespace } from './naming.js';
import type { FederatedService } from './wire.js';

/** Label that marks a service for export in `marked` mode (value `"true"`). */
export const EXPORT_LABEL = 'federation.meridian.io/export';

/** The operator's export selection. */
export type ExportSelection = { readonly mode: 'all' } | { readonly mode: 'marked'; readonly label?: string };

/** Outcome of `exportDecision`: whether to export and, if not, why (for logs and debug output). */
export interface ExportDecision {
  readonly exported: boolean;
  readonly reason: string;
}

/** Decides whether `service` is exported under `selection`. Pure. */
export function exportDecision(service: FederatedService, selection: ExportSelection): ExportDecision {
  if (!isExportableHostname(service.hostname))
    return {
      exported: false,
      reason: `hostname ${JSON.stringify(service.hostname)} is not an exportable DNS name`,
    };
  if (!isNamespace(service.namespace))
    return { exported: false, reason: `namespace ${JSON.stringify(service.namespace)} is not a DNS label` };
  if (selection.mode === 'marked') {
    const label = selection.label ?? EXPORT_LABEL;
    if (service.labels[label] !== 'true') return { exported: false, reason: `label ${label} is not "true"` };
  }
  const to = service.exportTo;
  if (to.length === 0) return { exported: true, reason: 'exportTo absent (mesh default "*")' };
  if (to.some((e) => e !== '.' && e !== '~'))
    return { exported: true, reason: `exportTo ${JSON.stringify(to)} reaches other namespaces` };
  return { exported: false, reason: `exportTo ${JSON.stringify(to)} keeps the service inside its namespace` };
}
