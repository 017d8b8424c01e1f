import { NodeError, parseNode } from '@meridian/envoy';
import { describe, expect, it } from 'vitest';

describe('parseNode', () => {
  it('reads an Istio sidecar node id and metadata', () => {
    const proxy = parseNode({
      id: 'sidecar~10.1.2.3~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local',
      metadata: {
        CLUSTER_ID: 'west',
        MESH_ID: 'mesh1',
        NETWORK: 'net-west',
        SERVICE_ACCOUNT: 'bookinfo-reviews',
        LABELS: { version: 'v1', app: 'reviews' },
        INSTANCE_IPS: '10.1.2.3,fd00::3',
      },
      locality: { region: 'eu-west', zone: 'eu-west-1a', sub_zone: '' },
    });
    expect(proxy).toMatchObject({
      kind: 'sidecar',
      ipAddresses: ['10.1.2.3', 'fd00::3'],
      workloadName: 'reviews-v1-abc',
      namespace: 'bookinfo',
      dnsDomain: 'bookinfo.svc.cluster.local',
      clusterId: 'west',
      meshId: 'mesh1',
      network: 'net-west',
      serviceAccount: 'bookinfo-reviews',
      labels: { app: 'reviews', version: 'v1' },
      locality: { region: 'eu-west', zone: 'eu-west-1a', subZone: '' },
    });
  });

  it('marks proxyless gRPC clients by GENERATOR=grpc and gateways by router~', () => {
    expect(
      parseNode({ id: 'sidecar~10.0.0.1~c.ns~ns.svc.cluster.local', metadata: { GENERATOR: 'grpc' } }).kind,
    ).toBe('grpc');
    expect(parseNode({ id: 'router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local' }).kind).toBe(
      'router',
    );
  });

  it('accepts a free-form id when metadata.NAMESPACE is set', () => {
    expect(parseNode({ id: 'client-1', metadata: { NAMESPACE: 'shop' } })).toMatchObject({
      namespace: 'shop',
      kind: 'sidecar',
    });
  });

  it('rejects empty and garbage ids with the field named', () => {
    expect(() => parseNode({ id: '' })).toThrow(new NodeError('id', 'is empty'));
    expect(() => parseNode(undefined)).toThrow('node.id: the first request of a stream must carry a node');
    expect(() => parseNode({ id: 'proxy~1~2~3' })).toThrow(
      'node.id: "proxy~1~2~3" has node type "proxy"; expected sidecar or router',
    );
    expect(() => parseNode({ id: '\u0000\u0001garbage' })).toThrow(
      'node.id: "\u0000\u0001garbage" is not an Istio node id (type~ip~pod.namespace~domain) and node.metadata.NAMESPACE is not set',
    );
    expect(() => parseNode({ id: 'sidecar~1~p.ns~ns.svc', metadata: { LABELS: { app: 3 } } })).toThrow(
      'node.metadata.LABELS.app: must be a string',
    );
  });
});
