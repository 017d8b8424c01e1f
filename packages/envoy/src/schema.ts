import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

/** Directories holding Envoy's, xDS's, googleapis' and protoc-gen-validate's .proto files. */
function includeDirs(): string[] {
  const xdsPackage = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  const deps = join(xdsPackage, 'deps');
  const protobufjsDir = dirname(require.resolve('protobufjs/package.json'));
  return [
    join(deps, 'envoy-api'),
    join(deps, 'xds'),
    join(deps, 'googleapis'),
    join(deps, 'protoc-gen-validate'),
    // google/protobuf/descriptor.proto and friends (the validate annotations import it).
    protobufjsDir,
  ];
}

function walkProtos(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) walkProtos(path, out);
    else if (entry.endsWith('.proto')) out.push(path);
  }
  return out;
}

/** Well-known types protobufjs defines itself (its `common` set), with no file on disk. */
const protobufjsBuiltins = new Set(
  [
    'any',
    'api',
    'duration',
    'empty',
    'field_mask',
    'source_context',
    'struct',
    'timestamp',
    'type',
    'wrappers',
  ].map((name) => `google/protobuf/${name}.proto`),
);

const importPattern = /^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm;

/**
 * The files the copy shipped by @grpc/grpc-js-xds can load: every Envoy v3 and xDS file whose import
 * closure is present (the copy is not import-closed: some files import opencensus or v2 protos that
 * are not shipped).
 */
function loadableFiles(dirs: string[]): string[] {
  const locate = (name: string): string | undefined => {
    if (protobufjsBuiltins.has(name)) return name;
    for (const dir of dirs) {
      const candidate = join(dir, name);
      if (existsSync(candidate)) return candidate;
    }
    return undefined;
  };
  const closes = new Map<string, boolean>();
  const isClosed = (name: string, visiting: Set<string>): boolean => {
    const known = closes.get(name);
    if (known !== undefined) return known;
    if (visiting.has(name)) return true;
    const path = locate(name);
    if (path === undefined) {
      closes.set(name, false);
      return false;
    }
    if (protobufjsBuiltins.has(path)) {
      closes.set(name, true);
      return true;
    }
    visiting.add(name);
    let ok = true;
    for (const match of readFileSync(path, 'utf8').matchAll(importPattern)) {
      if (!isClosed(match[1]!, visiting)) {
        ok = false;
        break;
      }
    }
    visiting.delete(name);
    closes.set(name, ok);
    return ok;
  };
  const [envoyDir, xdsDir] = dirs as [string, string];
  const candidates = [
    ...walkProtos(join(envoyDir, 'envoy'))
      .map((p) => relative(envoyDir, p))
      .filter((p) => /\/v3(alpha)?\//.test(p)),
    ...walkProtos(join(xdsDir, 'xds')).map((p) => relative(xdsDir, p)),
    ...walkProtos(join(xdsDir, 'udpa')).map((p) => relative(xdsDir, p)),
  ];
  return candidates.filter((name) => isClosed(name, new Set())).sort();
}

let cachedRoot: protobuf.Root | undefined;

/**
 * The protobuf root holding every loadable Envoy v3 and xDS message (field names kept in their
 * .proto snake_case). Loaded once per process, on first use (about a second).
 */
export function envoyRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const dirs = includeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of dirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync(loadableFiles(dirs), { keepCase: true });
  root.resolveAll();
  cachedRoot = root;
  return root;
}

/** The include directories for @grpc/proto-loader users (ADS service definitions). */
export function envoyProtoIncludeDirs(): string[] {
  return includeDirs();
}

/** Looks up a message type by its full name (for example `envoy.config.cluster.v3.Cluster`). */
export function lookupMessage(fullName: string): protobuf.Type | undefined {
  try {
    return envoyRoot().lookupType(fullName);
  } catch {
    return undefined;
  }
}
