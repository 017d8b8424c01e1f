// meridiand's logger: pino JSON lines, every one carrying the mesh, cluster and replica it comes
// from (what a log pipeline aggregating several replicas and clusters filters on); lines about one
// proxy add `proxy` (its node id) and lines about a config snapshot add `revision` (the etcd
// revision), where they are logged. When a person reads a terminal (stdout is a TTY), the lines are
// printed by pino-pretty instead.
import pino, { type Logger } from 'pino';

/** What the logger needs of the replica's settings. */
export interface LoggerSettings {
  readonly meshId: string;
  readonly clusterId: string;
  readonly replicaId: string;
  readonly logLevel: string;
}

/**
 * The replica's root logger. `pretty` (default: stdout is a TTY) prints through pino-pretty (colour,
 * local time, the base fields shown), otherwise JSON to stdout.
 */
export function replicaLogger(settings: LoggerSettings, pretty = process.stdout.isTTY === true): Logger {
  return pino({
    name: 'meridiand',
    level: settings.logLevel,
    base: { mesh: settings.meshId, cluster: settings.clusterId, replica: settings.replicaId },
    // Never log a credential, even if a future log line passes a request's headers.
    redact: {
      paths: ['authorization', '*.authorization', '*.headers.authorization'],
      censor: '[redacted]',
    },
    ...(pretty
      ? {
          transport: {
            target: 'pino-pretty',
            options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' },
          },
        }
      : {}),
  });
}
