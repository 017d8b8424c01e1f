/** Type URLs of the xDS resource types Meridian serves (Envoy's `envoy.config.*.v3` messages). */
export const TypeUrl = {
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  Secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;

/** One of the resource type URLs in {@link TypeUrl}. */
export type ResourceTypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/** The type URL of a message given its full name (`envoy.config.cluster.v3.Cluster`). */
export function typeUrlOf(messageFullName: string): string {
  return `type.googleapis.com/${messageFullName}`;
}
