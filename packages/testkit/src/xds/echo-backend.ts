// A grpc-js backend that answers one unary method with its own name: the target of traffic tests
// (which backend a call reached is the answer's body).
import {
  type MethodDefinition,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';

const pass = (b: Buffer): Buffer => b;

/** A unary method at `path` whose requests and responses are the raw bytes (no serialization). */
export function rawUnaryMethod(path: string): MethodDefinition<Buffer, Buffer> {
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: pass,
    requestDeserialize: pass,
    responseSerialize: pass,
    responseDeserialize: pass,
  };
}

export interface EchoBackend {
  readonly name: string;
  readonly server: Server;
  readonly port: number;
}

/** Starts a backend on 127.0.0.1 (a free port) answering `method` (default `/test.Echo/Name`). */
export async function startEchoBackend(name: string, method = '/test.Echo/Name'): Promise<EchoBackend> {
  const server = new Server();
  server.addService(
    { Echo: rawUnaryMethod(method) },
    { Echo: (_c: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => cb(null, Buffer.from(name)) },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  return { name, server, port };
}
