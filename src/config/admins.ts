/**
 * Who is an admin: exempt from limits, may cancel anyone's job and pause the queue. Configured per
 * platform (`limits.admins`), by user id and, on Discord, by role id.
 */
import type { Requester } from '../jobs/types.js';
import type { AtelierSettings } from './schema.js';

export type AdminSettings = AtelierSettings['limits']['admins'];

export function isAdmin(
  admins: AdminSettings,
  requester: Pick<Requester, 'platform' | 'userId' | 'roleIds'>,
): boolean {
  const platform = (admins as Record<string, { userIds: readonly string[]; roleIds?: readonly string[] }>)[
    requester.platform
  ];
  if (!platform || !Object.hasOwn(admins, requester.platform)) return false;
  if (platform.userIds.includes(requester.userId)) return true;
  const roles = platform.roleIds ?? [];
  return (requester.roleIds ?? []).some((role) => roles.includes(role));
}
