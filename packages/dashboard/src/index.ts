/**
 * @meridian/dashboard: the web dashboard every replica serves under `/ui/` on its admin port. The
 * replica's admin server hands requests under `/ui` to {@link handleDashboard}; the static app
 * (Preact + htm as ES modules, no build step, nothing from a CDN) is in `public/`.
 */
export { handleDashboard, isDashboardPath, PAGES } from './handler.js';
export type { DashboardCaller, DashboardHost } from './host.js';
export type { GraphEdge, GraphLayout, GraphNode, PlacedEdge, PlacedNode, ServiceGraph } from './layout.js';
export { edgeLabel, layoutGraph } from './layout.js';
export type { MemberAnswer, MemberEntry } from './members.js';
export { memberBase, memberGet } from './members.js';
export {
  MIN_SESSION_SECONDS,
  readCookie,
  SESSION_TTL_SECONDS,
  sessionCookie,
  sessionCookieName,
  sessionSeconds,
  tokenExpiry,
} from './session.js';
export type { RegistryEndpoint, RegistryService, ServiceEndpoints } from './views.js';
export { COMMANDS, caExpiry, endpointsByCluster, parseLabels } from './views.js';
