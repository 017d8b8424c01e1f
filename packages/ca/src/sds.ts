// The Envoy JSON of SDS Secrets, as the replica's SDS (@meridian/server) and the node agent serve them:
//   `default`: the proxy's own key and chain;
//   `ROOTCA`:  the trust bundle (several roots during a rotation).
// Plain JSON: encoding and serving over xDS is the server's job (this package does not import xds).
import { SDS_DEFAULT_SECRET, SDS_ROOT_SECRET, type WorkloadSecret } from './secrets.js';

/** Envoy JSON of the `default` Secret: key and chain inline (as istio-agent's SDS serves them). */
export function tlsCertificateSecretJson(
  s: Pick<WorkloadSecret, 'certChainPem' | 'keyPem'>,
  name = SDS_DEFAULT_SECRET,
) {
  return {
    name,
    tls_certificate: {
      certificate_chain: { inline_bytes: Buffer.from(s.certChainPem).toString('base64') },
      private_key: { inline_bytes: Buffer.from(s.keyPem).toString('base64') },
    },
  };
}

/** Envoy JSON of the `ROOTCA` Secret: the trust bundle as the validation context. */
export function validationContextSecretJson(trustBundlePem: string, name = SDS_ROOT_SECRET) {
  return {
    name,
    validation_context: { trusted_ca: { inline_bytes: Buffer.from(trustBundlePem).toString('base64') } },
  };
}
