// @meridian/translate: Pure translation of config and registry snapshots to Envoy and proxyless-gRPC xDS resources
export {};
