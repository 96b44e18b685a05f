/**
 * Who acted and where, in the platform-neutral terms of src/jobs/types.ts. On Discord a thread
 * is a channel of its own; the neutral model says "channel + thread" (as Slack does), so a
 * thread's ReplyTarget names its parent as `channelId` and itself as `threadId`, and messages
 * are sent to `threadId ?? channelId`.
 */
import {
  type APIInteractionGuildMember,
  type Channel,
  type GuildMember,
  PermissionFlagsBits,
  type User,
} from 'discord.js';
import type { ReplyTarget, Requester } from '../../src/jobs/types.js';
import { PLATFORM } from './references.js';

/** What the surface needs of a server member: nickname and role ids. */
export interface MemberInfo {
  nickname: string | null;
  roleIds: string[];
  /** Manage Server (or Administrator): may change this server's Atelier settings. */
  managesServer: boolean;
}

const MANAGES_SERVER = PermissionFlagsBits.ManageGuild | PermissionFlagsBits.Administrator;

/** A member as discord.js caches it, or as an interaction carries it when the server is not cached. */
export function memberInfo(
  member: GuildMember | APIInteractionGuildMember | null | undefined,
): MemberInfo | undefined {
  if (!member) return undefined;
  if (Array.isArray(member.roles)) {
    const raw = member as APIInteractionGuildMember;
    const permissions = BigInt(raw.permissions ?? '0');
    return {
      nickname: raw.nick ?? null,
      roleIds: [...raw.roles],
      managesServer: (permissions & MANAGES_SERVER) !== 0n,
    };
  }
  const cached = member as GuildMember;
  return {
    nickname: cached.nickname,
    roleIds: [...cached.roles.cache.keys()],
    managesServer: cached.permissions.any(MANAGES_SERVER),
  };
}

/** The name people see: the server nickname, else the global display name, else the username. */
export function displayNameOf(user: Pick<User, 'username' | 'globalName'>, member?: MemberInfo): string {
  return member?.nickname ?? user.globalName ?? user.username;
}

export function requesterOf(
  user: Pick<User, 'id' | 'username' | 'globalName'>,
  guildId: string | null,
  member?: MemberInfo,
): Requester {
  return {
    platform: PLATFORM,
    userId: user.id,
    displayName: displayNameOf(user, member),
    ...(guildId ? { teamId: guildId } : {}),
    // @everyone's role id is the guild id: everyone has it, so it says nothing about admins.
    ...(member ? { roleIds: member.roleIds.filter((id) => id !== guildId) } : {}),
    ...(guildId && member?.managesServer ? { isTeamAdmin: true } : {}),
  };
}

/**
 * Where something happened. `channel` is the cached channel when discord.js has it; a thread
 * the cache does not know is treated as a channel (messages still go to the right place,
 * because they are sent to the id Discord gave).
 */
export function targetOf(channelId: string, guildId: string | null, channel?: Channel | null): ReplyTarget {
  const parentId = channel?.isThread() ? channel.parentId : null;
  return {
    platform: PLATFORM,
    channelId: parentId ?? channelId,
    ...(parentId ? { threadId: channelId } : {}),
    ...(guildId ? { teamId: guildId } : {}),
  };
}
