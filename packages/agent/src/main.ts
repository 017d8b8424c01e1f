#!/usr/bin/env node
// meridian-agent: runs beside a workload, as istio-agent does beside Envoy.
//
//   meridian-agent run --seeds <replica,...> --cluster-id c1 --locality region/zone ...
//       local xDS relay on --listen for Envoy or a proxyless gRPC client, following the nearest
//       healthy replica; with --root-cert and a bootstrap token (--token-file), the workload
//       certificate is made here, served over SDS and written to --cert-dir for gRPC's file_watcher.
//   meridian-agent bootstrap --kind envoy|grpc ...
//       prints (or writes, --out) the bootstrap that points the proxy at the agent.
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import pino from 'pino';
import { Agent } from './agent.js';
import { envoyBootstrap, grpcBootstrap, type WorkloadNodeOptions } from './bootstrap.js';
import { WorkloadCertificates } from './certificates.js';
import { AgentRegistration, type ReadinessProbe } from './registration.js';
import { certificateSecrets } from './sds.js';

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

function labels(v: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list(v)) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new InvalidArgumentError(`"${kv}" is not key=value`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

function ports(v: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kv of list(v)) {
    const [name, port] = kv.split('=');
    const n = Number(port);
    if (!name || !Number.isInteger(n) || n < 1 || n > 65535)
      throw new InvalidArgumentError(`"${kv}" is not name=port`);
    out[name] = n;
  }
  return out;
}

/** `http://127.0.0.1:8080/ready` or `tcp:8080` / `tcp:host:8080`. */
function probe(v: string): ReadinessProbe {
  if (/^https?:\/\//.test(v)) return { kind: 'http', url: v };
  const m = /^tcp:(?:([^:]+):)?(\d+)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`"${v}" is not an http(s):// URL or tcp:[host:]port`);
  return { kind: 'tcp', ...(m[1] ? { host: m[1] } : {}), port: Number(m[2]) };
}

/** A bad flag found while running a command: one line, exit 2. */
class UsageError extends Error {}

function readFlagFile(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(
      `${flag} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
}

interface WorkloadFlags {
  ip: string;
  pod: string;
  namespace: string;
  serviceAccount: string;
  clusterId: string;
  meshId: string;
  network?: string;
  labels?: Record<string, string>;
  locality: string;
}

function workloadOptions(program: Command): Command {
  return program
    .option('--ip <address>', 'workload IP (env INSTANCE_IP)', process.env.INSTANCE_IP ?? '127.0.0.1')
    .option(
      '--pod <name>',
      'pod or instance name (env POD_NAME)',
      process.env.POD_NAME ?? hostname().toLowerCase(),
    )
    .option('--namespace <ns>', 'namespace (env POD_NAMESPACE)', process.env.POD_NAMESPACE ?? 'default')
    .option(
      '--service-account <sa>',
      'service account (env SERVICE_ACCOUNT)',
      process.env.SERVICE_ACCOUNT ?? 'default',
    )
    .option(
      '--cluster-id <id>',
      'cluster of the workload (env CLUSTER_ID)',
      process.env.CLUSTER_ID ?? 'cluster1',
    )
    .option('--mesh-id <id>', 'mesh id', 'mesh1')
    .option('--network <name>', 'network of the workload')
    .option('--labels <k=v,...>', 'workload labels', labels)
    .option('--locality <region/zone/subzone>', 'locality of the workload', '');
}

function node(o: WorkloadFlags): WorkloadNodeOptions {
  return {
    ip: o.ip,
    podName: o.pod,
    namespace: o.namespace,
    serviceAccount: o.serviceAccount,
    clusterId: o.clusterId,
    meshId: o.meshId,
    locality: o.locality,
    ...(o.network ? { network: o.network } : {}),
    ...(o.labels ? { labels: o.labels } : {}),
  };
}

/** Builds the program; errors are CommanderErrors (tests run it in-process). */
export function createProgram(out: (s: string) => void = (s) => process.stdout.write(s)): Command {
  const program = new Command('meridian-agent').description('Meridian node agent').exitOverride();

  workloadOptions(program.command('bootstrap'))
    .description('print the bootstrap pointing the proxy at the local agent')
    .requiredOption('--kind <kind>', 'envoy | grpc')
    .option('--agent-address <host:port>', 'where the agent listens', '127.0.0.1:15101')
    .option('--cert-dir <dir>', 'gRPC: directory of cert-chain.pem, key.pem, root-cert.pem', './certs')
    .option('--admin-port <port>', 'Envoy admin port', Number, 15000)
    .option('--delta', 'Envoy: use Delta xDS')
    .option('--out <file>', 'write to a file instead of stdout')
    .action(
      (
        o: WorkloadFlags & {
          kind: string;
          agentAddress: string;
          certDir: string;
          adminPort: number;
          delta?: boolean;
          out?: string;
        },
      ) => {
        let doc: unknown;
        if (o.kind === 'envoy')
          doc = envoyBootstrap({
            ...node(o),
            agentAddress: o.agentAddress,
            adminPort: o.adminPort,
            delta: o.delta ?? false,
          });
        else if (o.kind === 'grpc')
          doc = grpcBootstrap({ ...node(o), agentAddress: o.agentAddress, certificateDir: o.certDir });
        else throw new UsageError(`--kind must be envoy or grpc, got "${o.kind}"`);
        const text = `${JSON.stringify(doc, null, 2)}\n`;
        if (o.out) writeFileSync(o.out, text);
        else out(text);
      },
    );

  workloadOptions(program.command('run'))
    .description('run the local xDS relay (and, with --root-cert, the workload certificate)')
    .requiredOption(
      '--seeds <host:port,...>',
      'replica addresses to discover from (their TLS port with --root-cert)',
      list,
    )
    .option('--listen <host:port>', 'local xDS address', '127.0.0.1:15101')
    .option('--cache-dir <dir>', 'last-known-good cache directory', './meridian-agent-cache')
    .option(
      '--root-cert <file>',
      "mesh root (PEM): use the replicas' TLS port and make the workload certificate",
    )
    .option('--token-file <file>', 'bootstrap token for the first certificate (meridian token create)')
    .option('--trust-domain <domain>', 'trust domain', 'cluster.local')
    .option('--cert-dir <dir>', 'also write cert-chain.pem, key.pem, root-cert.pem here (gRPC file_watcher)')
    .option(
      '--register <name>',
      'register the workload under this name (needs --ports; mTLS with --root-cert)',
    )
    .option('--ports <name=port,...>', "the workload's ports, for registration", ports)
    .option('--probe <url|tcp:port>', 'readiness probe of the local app driving the endpoint health')
    .option(
      '--metrics-address <host:port>',
      'Prometheus /metrics of the agent (off: none)',
      '127.0.0.1:15020',
    )
    .option('--log-level <level>', 'pino log level', 'info')
    .action(
      async (
        o: WorkloadFlags & {
          seeds: string[];
          listen: string;
          cacheDir: string;
          rootCert?: string;
          tokenFile?: string;
          trustDomain: string;
          certDir?: string;
          register?: string;
          ports?: Record<string, number>;
          probe?: string;
          metricsAddress: string;
          logLevel: string;
        },
      ) => {
        const log = pino({ name: 'meridian-agent', level: o.logLevel });
        let exporter: PrometheusExporter | undefined;
        if (o.metricsAddress !== 'off') {
          const i = o.metricsAddress.lastIndexOf(':');
          const port = Number(o.metricsAddress.slice(i + 1));
          if (i <= 0 || !Number.isInteger(port))
            throw new UsageError(`--metrics-address: expected host:port, got "${o.metricsAddress}"`);
          exporter = new PrometheusExporter({ host: o.metricsAddress.slice(0, i), port });
          metrics.setGlobalMeterProvider(
            new MeterProvider({
              resource: resourceFromAttributes({ 'service.name': 'meridian-agent', 'meridian.pod': o.pod }),
              readers: [exporter],
            }),
          );
        }
        let certs: WorkloadCertificates | undefined;
        // Declared before the certificates, whose CA address callback reads it (undefined until the
        // relay starts: the first certificate comes from a seed).
        let agent: Agent | undefined;
        if (o.rootCert) {
          const rootCertPem = readFlagFile('--root-cert', o.rootCert);
          const tokenFile = o.tokenFile;
          certs = new WorkloadCertificates({
            identity: {
              trustDomain: o.trustDomain,
              namespace: o.namespace,
              serviceAccount: o.serviceAccount,
            },
            caAddress: () => agent?.selector.pick()?.address ?? o.seeds[0]!,
            rootCertPem,
            ...(tokenFile ? { token: () => readFlagFile('--token-file', tokenFile).trim() } : {}),
            serverName: 'localhost',
            logger: log.child({ part: 'certificates' }),
          });
          await certs.start();
          if (o.certDir) {
            const dir = o.certDir;
            await certs.writeFiles(dir);
            certs.onRotate(() => {
              certs
                ?.writeFiles(dir)
                .catch((error: unknown) =>
                  log.error({ err: error, dir }, 'could not write the certificate files'),
                );
            });
          }
        }
        const c = certs;
        agent = await Agent.start({
          seeds: o.seeds,
          place: { clusterId: o.clusterId, locality: o.locality },
          listenAddress: o.listen,
          cacheDir: o.cacheDir,
          logger: log,
          ...(c
            ? {
                tlsCredentials: () => c.channelCredentials(),
                channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
                secrets: certificateSecrets(c),
              }
            : {}),
        });
        const running = agent;
        let registration: AgentRegistration | undefined;
        if (o.register) {
          if (!o.ports) throw new InvalidArgumentError('--register needs --ports');
          if (!c)
            throw new InvalidArgumentError(
              '--register needs --root-cert (registration is authenticated by the workload certificate)',
            );
          registration = new AgentRegistration({
            workload: {
              name: o.register,
              namespace: o.namespace,
              address: o.ip,
              ports: o.ports,
              labels: o.labels ?? {},
              serviceAccount: o.serviceAccount,
              locality: o.locality,
              ...(o.network ? { network: o.network } : {}),
            },
            address: () => running.selector.pick()?.address ?? o.seeds[0]!,
            credentials: () => c.channelCredentials(),
            channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
            ...(o.probe ? { probe: probe(o.probe) } : {}),
            logger: log.child({ part: 'registration' }),
          });
          await registration.start();
        }
        await new Promise<void>((resolve) => {
          const stop = () => {
            registration?.close();
            void exporter?.shutdown();
            void running.stop().finally(() => {
              certs?.close();
              resolve();
            });
          };
          process.once('SIGTERM', stop);
          process.once('SIGINT', stop);
        });
      },
    );
  return program;
}

const invokedDirectly = (() => {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
})();
if (invokedDirectly) {
  createProgram()
    .parseAsync(process.argv)
    .then(
      () => process.exit(0),
      (error: unknown) => {
        if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
        if (error instanceof UsageError) {
          process.stderr.write(`meridian-agent: ${error.message}\n`);
          process.exit(2);
        }
        process.stderr.write(`meridian-agent: ${(error as Error).message}\n`);
        process.exit(1);
      },
    );
}
