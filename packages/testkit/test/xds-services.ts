// Services the xDS protocol tests publish: each a `<name>.default.svc.cluster.local:80` with one
// endpoint at `<ip>:8080`.
import type { TestService } from '@meridian/testkit';

/** Service `name` of namespace default, port 80, with one endpoint at `ip`:8080. */
export const svc = (name: string, ip: string): TestService => ({
  host: `${name}.default.svc.cluster.local`,
  port: 80,
  endpoints: [{ address: ip, port: 8080 }],
});
export const A = svc('a', '10.0.0.1');
export const B = svc('b', '10.0.0.2');
export const C = svc('c', '10.0.0.3');
