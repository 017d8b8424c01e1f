// @meridian/testkit: Real etcd/NATS processes, simulated proxies and fault injection for tests and benchmarks
//
// Servers run as real processes on 127.0.0.1, on free ports in 20000..(ephemeral range - 1), with data
// under /tmp/meridian-test-*; every start is a bounded wait that fails with one ServerStartError
// carrying the server's last output lines. Every child is SIGKILLed when the test process exits, gets
// SIGINT/SIGTERM/SIGHUP or (via setpriv's pdeathsig) is itself SIGKILLed.
//
//   await using etcd = await startEtcdCluster({ size: 3, fastElection: true });   // or startEtcd()
//   const leader = await etcd.leader(); await leader.kill(); await etcd.leader(); // new leader
//   await leader.restart(); await etcd.waitHealthy();
//   await using nats = await startNats({ jetstream: true });                      // nats.url
//   await using sc = await startNatsSupercluster({ clusters: [{ name: 'a' }, { name: 'b' }] });
//   await using proxy = await tcpProxy({ target: { host: '127.0.0.1', port } });  // proxy.cut() ...

export type { EtcdCluster, EtcdClusterOptions, EtcdMember } from './etcd.js';
export { EtcdLeaderError, etcdHealthy, startEtcd, startEtcdCluster } from './etcd.js';
export { EventuallyTimeoutError, eventually } from './eventually.js';
export type { TcpProxy, TcpProxyOptions } from './faults.js';
export { tcpProxy } from './faults.js';
export type {
  NatsOptions,
  NatsServer,
  NatsSupercluster,
  NatsSuperclusterOptions,
  StandaloneNatsServer,
} from './nats.js';
export { NatsConnectivityError, natsHealthy, natsMonitor, startNats, startNatsSupercluster } from './nats.js';
export { canBind, freePort, freePorts, PORT_RANGE_HIGH, PORT_RANGE_LOW } from './ports.js';
export type { ProcessSpec, ServerProcess } from './process.js';
export {
  killAllServers,
  liveChildPids,
  ManagedProcess,
  makeTempDir,
  pidAlive,
  ServerStartError,
  startTogether,
  TEMP_PREFIX,
} from './process.js';
export type { EchoBackend } from './xds/echo-backend.js';
export { rawUnaryMethod, startEchoBackend } from './xds/echo-backend.js';
export type { GrpcCallOptions, GrpcCallResult } from './xds/grpc-client-process.js';
export { countByBackend, GrpcClientProcess, plaintextXdsBootstrap } from './xds/grpc-client-process.js';
export type {
  DeltaResponseView,
  LoadGeneratorOptions,
  ProxyTypeState,
  ResourcesJson,
  SimulatedProxyOptions,
  SotwResponseView,
  Subscription,
  TestEndpoint,
  TestService,
} from './xds/index.js';
export {
  clusterFor,
  clusterName,
  deltaRequestBytes,
  LoadGenerator,
  listenerFor,
  listenerName,
  loadAssignmentFor,
  nextSnapshot,
  percentile,
  readDeltaResponse,
  readSotwResponse,
  routeFor,
  SimulatedProxy,
  snapshotOf,
  sotwRequestBytes,
  translateServices,
} from './xds/index.js';
