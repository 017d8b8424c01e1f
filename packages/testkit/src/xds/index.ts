export type { LoadGeneratorOptions, ProxyTypeState, SimulatedProxyOptions, Subscription } from './load.js';
export { LoadGenerator, percentile, SimulatedProxy } from './load.js';
export type { ResourcesJson, TestEndpoint, TestService } from './translator.js';
export {
  clusterFor,
  clusterName,
  listenerFor,
  listenerName,
  loadAssignmentFor,
  nextSnapshot,
  routeFor,
  snapshotOf,
  translateServices,
} from './translator.js';
export type { DeltaResponseView, SotwResponseView } from './wire.js';
export { deltaRequestBytes, readDeltaResponse, readSotwResponse, sotwRequestBytes } from './wire.js';
