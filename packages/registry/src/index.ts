// @meridian/registry: Merged service and endpoint view from local and federated sources
export {};
