// @meridian/testkit: Real etcd/NATS processes, simulated proxies and fault injection for tests and benchmarks

export type { EtcdCluster, EtcdClusterOptions, EtcdMember } from './etcd.js';
export { EtcdLeaderError, etcdHealthy, startEtcd, startEtcdCluster } from './etcd.js';
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
export * from './xds/index.js';
