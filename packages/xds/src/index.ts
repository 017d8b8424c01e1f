// @meridian/xds: Aggregated Discovery Service (SotW and Delta) with push queue and encoded-resource cache
export {};
