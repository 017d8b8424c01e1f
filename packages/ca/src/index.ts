// @meridian/ca: Mesh root and per-cluster intermediate CAs, workload certificate issuance (Istio CreateCertificate)
export {};
