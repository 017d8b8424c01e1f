// @meridian/testkit: Real etcd/NATS processes, simulated proxies and fault injection for tests and benchmarks
export {};
