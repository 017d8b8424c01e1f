/** The proto loader: the repo's services resolve by full name, once per process, with Meridian's options. */
import { existsSync } from 'node:fs';
import {
  loadProtoPackage,
  loadServiceClient,
  loadServiceDefinition,
  PROTO_DIR,
  protoPath,
} from '@meridian/proto';
import { describe, expect, it } from 'vitest';

describe('@meridian/proto', () => {
  it('finds the repo proto directory and files under it', () => {
    expect(existsSync(PROTO_DIR)).toBe(true);
    expect(existsSync(protoPath('istio/security/v1alpha1/ca.proto'))).toBe(true);
    expect(protoPath('/abs/x.proto')).toBe('/abs/x.proto');
  });

  it('loads each service by its full name', () => {
    const ca = loadServiceDefinition(
      'istio/security/v1alpha1/ca.proto',
      'istio.v1.auth.IstioCertificateService',
    );
    expect(ca.CreateCertificate?.path).toBe('/istio.v1.auth.IstioCertificateService/CreateCertificate');
    const registry = loadServiceDefinition(
      'meridian/registry/v1/registry.proto',
      'meridian.registry.v1.WorkloadRegistry',
    );
    expect(Object.values(registry).map((m) => m.path)).toContain(
      '/meridian.registry.v1.WorkloadRegistry/Register',
    );
    const discovery = loadServiceClient(
      'meridian/registry/v1/discovery.proto',
      'meridian.registry.v1.ReplicaDiscovery',
    );
    expect(discovery.service.ListReplicas?.path).toBe('/meridian.registry.v1.ReplicaDiscovery/ListReplicas');
  });

  it('decodes with proto field names, int64 as strings and defaults filled in', () => {
    const ca = loadServiceDefinition(
      'istio/security/v1alpha1/ca.proto',
      'istio.v1.auth.IstioCertificateService',
    );
    const method = ca.CreateCertificate!;
    const bytes = method.requestSerialize({ csr: 'pem', validity_duration: '86400' });
    expect(method.requestDeserialize(bytes)).toMatchObject({ csr: 'pem', validity_duration: '86400' });
    expect(method.requestDeserialize(method.requestSerialize({}))).toMatchObject({
      csr: '',
      validity_duration: '0',
    });
  });

  it('parses a file once per set of options', () => {
    const file = 'meridian/registry/v1/discovery.proto';
    expect(loadProtoPackage(file)).toBe(loadProtoPackage(file));
    expect(loadProtoPackage(file, { longs: Number })).not.toBe(loadProtoPackage(file));
  });

  it('names the file and service it could not find', () => {
    expect(() =>
      loadServiceClient('meridian/registry/v1/discovery.proto', 'meridian.registry.v1.Nope'),
    ).toThrow('meridian/registry/v1/discovery.proto declares no service meridian.registry.v1.Nope');
    expect(() =>
      loadServiceClient('meridian/registry/v1/discovery.proto', 'meridian.registry.v1.Replica'),
    ).toThrow('meridian/registry/v1/discovery.proto declares no service meridian.registry.v1.Replica');
  });
});
