// Roles of the control-plane APIs. Pure.
//
// | role | may |
// |---|---|
// | `view` | read config, sync status and debug output (secrets redacted) |
// | `edit` | `view`, plus apply and delete config |
// | `registrar` | register workloads of any identity at any address (an agent on a gateway host) |
// | `admin` | all of the above, plus minting tokens and managing role bindings |

/** A role a subject can be bound to. */
export type Role = 'view' | 'edit' | 'registrar' | 'admin';

/** Every role, weakest first. */
export const ROLES: readonly Role[] = ['view', 'edit', 'registrar', 'admin'];

/** What each role grants (a role grants itself and the roles listed). */
const GRANTS: Readonly<Record<Role, readonly Role[]>> = {
  view: ['view'],
  edit: ['view', 'edit'],
  registrar: ['registrar'],
  admin: ['view', 'edit', 'registrar', 'admin'],
};

/** Whether any of `held` grants `needed`. */
export function grants(held: Iterable<Role>, needed: Role): boolean {
  for (const r of held) if (GRANTS[r].includes(needed)) return true;
  return false;
}

/** Whether `value` names a role. */
export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
