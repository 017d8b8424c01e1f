// @meridian/api: Istio-compatible config kinds: parsing and validation with precise errors
export {};
