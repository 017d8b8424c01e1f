/**
 * Loading .proto files as gRPC service definitions: the repo's `proto/` directory, the loader
 * options every Meridian and Istio service is decoded with, and one cache of parsed packages.
 */
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * Absolute path of the repo's `proto/` directory (Meridian's own and Istio's protos). Both
 * `src/` and the built `dist/` sit two levels below the package root, so one relative URL serves both.
 */
export const PROTO_DIR: string = fileURLToPath(new URL('../../../proto/', import.meta.url));

/** Absolute path of `file` (for example `meridian/registry/v1/registry.proto`) under {@link PROTO_DIR}. */
export function protoPath(file: string): string {
  return isAbsolute(file) ? file : join(PROTO_DIR, file);
}

/**
 * How Meridian decodes messages: proto field names as written (`cert_chain`, not `certChain`),
 * 64-bit integers as decimal strings (no precision loss), enums by name, absent scalars as their
 * defaults, and the set member of a oneof named in a virtual field.
 */
export const PROTO_LOADER_OPTIONS: Readonly<{
  keepCase: true;
  longs: typeof String;
  enums: typeof String;
  defaults: true;
  oneofs: true;
}> = Object.freeze({ keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });

/** Departures from {@link PROTO_LOADER_OPTIONS}, for protos Meridian does not own (Envoy's). */
export interface ProtoLoadOptions {
  /** How 64-bit integers are decoded (default `String`). */
  readonly longs?: typeof String | typeof Number;
  /** Whether absent scalars decode as their defaults (default `true`). */
  readonly defaults?: boolean;
  /**
   * Directories `file` and its imports are looked up in. Without it `file` is taken relative to
   * {@link PROTO_DIR} and its imports relative to it (Google's well-known types come with the loader).
   */
  readonly includeDirs?: readonly string[];
}

// Parsing a proto tree takes milliseconds to seconds (Envoy's), and servers and clients ask for a
// service each time they are created: parse each (file, options) once per process.
const packages = new Map<string, grpc.GrpcObject>();

/** The gRPC package object of `file` (all the packages it and its imports declare), cached. */
export function loadProtoPackage(file: string, options: ProtoLoadOptions = {}): grpc.GrpcObject {
  const longs = options.longs ?? PROTO_LOADER_OPTIONS.longs;
  const defaults = options.defaults ?? PROTO_LOADER_OPTIONS.defaults;
  const includeDirs = options.includeDirs === undefined ? undefined : [...options.includeDirs];
  const target = includeDirs === undefined ? protoPath(file) : file;
  const key = JSON.stringify([target, includeDirs ?? null, longs.name, defaults]);
  let loaded = packages.get(key);
  if (!loaded) {
    const definition = protoLoader.loadSync(target, {
      ...PROTO_LOADER_OPTIONS,
      longs,
      defaults,
      ...(includeDirs === undefined ? {} : { includeDirs }),
    });
    loaded = grpc.loadPackageDefinition(definition);
    packages.set(key, loaded);
  }
  return loaded;
}

/**
 * The client constructor of `service` (its full name, for example
 * `meridian.registry.v1.WorkloadRegistry`) declared in `file`; its `service` property is the
 * definition a server adds. Throws when `file` declares no such service.
 */
export function loadServiceClient(
  file: string,
  service: string,
  options: ProtoLoadOptions = {},
): grpc.ServiceClientConstructor {
  let node: unknown = loadProtoPackage(file, options);
  for (const part of service.split('.')) {
    node = node !== null && typeof node === 'object' ? (node as grpc.GrpcObject)[part] : undefined;
    if (node === undefined) break;
  }
  if (typeof node !== 'function' || !('service' in node)) {
    throw new Error(`${file} declares no service ${service}`);
  }
  return node as grpc.ServiceClientConstructor;
}

/** The definition of `service` in `file`, as `grpc.Server#addService` takes it. */
export function loadServiceDefinition(
  file: string,
  service: string,
  options: ProtoLoadOptions = {},
): grpc.ServiceDefinition {
  return loadServiceClient(file, service, options).service;
}
