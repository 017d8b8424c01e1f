// What the agent's multi-process tests share: the echo service the gRPC client calls.

export const ECHO_HOST = 'echo.default.svc.cluster.local';
export const ECHO_PORT = 7070;
/** The client's target (GrpcClientProcess adds `xds:///`). */
export const ECHO_TARGET = `${ECHO_HOST}:${ECHO_PORT}`;

/** A ServiceEntry for the echo backend listening on 127.0.0.1:`backendPort`. */
export const echoServiceEntry = (backendPort: number) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [${ECHO_HOST}]
  location: MESH_INTERNAL
  ports: [{number: ${ECHO_PORT}, name: grpc, protocol: GRPC}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {grpc: ${backendPort}}}]
`;
