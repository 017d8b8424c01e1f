// @meridian/federation: Service discovery federated across clusters over NATS
export {};
