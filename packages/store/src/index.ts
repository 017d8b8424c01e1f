// @meridian/store: Typed access to cluster state: etcd and in-memory implementations of one interface
export {};
