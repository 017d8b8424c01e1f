// Certificates for the SDS and proxyless-mTLS tests that moved here from @meridian/ca: a mesh root
// with one intermediate per cluster, workload keys and chains, and an openssl check of a chain. They
// are the CA package's own test fixtures, used as they are.
export {
  id,
  type Mesh,
  makeMesh,
  opensslVerify,
  quietAudit,
  TD,
  uri,
  type Workload,
  workload,
} from '../../ca/test/helpers.js';
