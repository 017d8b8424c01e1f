// Every CA error carries one stable `code` (per class) and the gRPC `status` it is answered with.
import { describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  CaConfigError,
  CaUnavailableError,
  InvalidRequestError,
  PermissionDeniedError,
  TokenReplayError,
} from '../src/index.js';

describe('CA errors', () => {
  it.each([
    [
      new InvalidRequestError('csr', 'not a CSR'),
      'InvalidRequestError',
      'INVALID_REQUEST',
      'INVALID_ARGUMENT',
    ],
    [
      new PermissionDeniedError('not yours', 'spiffe://td/ns/a/sa/b'),
      'PermissionDeniedError',
      'PERMISSION_DENIED',
      'PERMISSION_DENIED',
    ],
    [new AuthenticationError('no token'), 'AuthenticationError', 'AUTHENTICATION_FAILED', 'UNAUTHENTICATED'],
    [
      new TokenReplayError({ trustDomain: 'td', namespace: 'a', serviceAccount: 'b' }),
      'TokenReplayError',
      'TOKEN_REPLAYED',
      'UNAUTHENTICATED',
    ],
    [new CaUnavailableError('etcd down'), 'CaUnavailableError', 'CA_UNAVAILABLE', 'UNAVAILABLE'],
    [
      new CaConfigError('no intermediate', 'ca/intermediate'),
      'CaConfigError',
      'CA_MISCONFIGURED',
      'FAILED_PRECONDITION',
    ],
  ])('%o: name %s, code %s, status %s', (error, name, code, status) => {
    expect(error).toMatchObject({ name, code, status });
  });
});
