// @meridian/auth: who may use the control-plane APIs. Admin tokens (ES256 JWTs signed by a key in
// the cluster's etcd), roles and role bindings, the replica-side authority that checks them, and
// the operator's credentials file.

export type { Caller, RevokedToken, RoleBinding } from './authority.js';
export {
  AdminAuthority,
  bootstrapCredential,
  deleteRoleBinding,
  ensureSigningKey,
  parseRoleBinding,
  putRoleBinding,
  REVOKED_TOKENS_PREFIX,
  ROLE_BINDINGS_PREFIX,
  SIGNING_KEYS_PREFIX,
  validateBindingName,
} from './authority.js';
export type { CredentialContext, CredentialsFile } from './credentials.js';
export {
  defaultCredentialsPath,
  parseCredentials,
  readCredentials,
  saveContext,
  selectContext,
} from './credentials.js';
export type { AuthErrorStatus } from './errors.js';
export { AuthError, ForbiddenError, InvalidAuthInputError, UnauthenticatedError } from './errors.js';
export type { Role } from './roles.js';
export { grants, isRole, ROLES } from './roles.js';
export type { AdminSigningKey, AdminTokenClaims } from './tokens.js';
export {
  ADMIN_TOKEN_AUDIENCE,
  ADMIN_TOKEN_ISSUER,
  AdminTokenVerifier,
  generateAdminSigningKey,
  isAdminToken,
  MAX_ADMIN_TOKEN_TTL_S,
  mintAdminToken,
  OPERATOR_NAMESPACE,
  operatorSubject,
  validateSubject,
} from './tokens.js';
