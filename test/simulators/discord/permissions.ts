import { PermissionFlagsBits } from 'discord-api-types/v10';
import type { SimGuild } from './types.js';

const ALL = Object.values(PermissionFlagsBits).reduce((all, bit) => all | bit, 0n);

/** What @everyone may do in the simulated servers: a typical community default. */
export const EVERYONE_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.SendMessagesInThreads |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.UseExternalEmojis |
  PermissionFlagsBits.UseApplicationCommands;

/** The bot's managed role: what a typical invite link grants an image bot. */
export const BOT_PERMISSIONS =
  EVERYONE_PERMISSIONS | PermissionFlagsBits.ManageMessages | PermissionFlagsBits.CreatePublicThreads;

export const ADMIN_PERMISSIONS = PermissionFlagsBits.Administrator;

/** A member's guild-level permissions, as Discord computes them: owner and Administrator get everything. */
export function memberPermissions(guild: SimGuild, userId: string): bigint {
  if (guild.ownerId === userId) return ALL;
  const roleIds = new Set([guild.id, ...(guild.memberRoles.get(userId) ?? [])]);
  const granted = guild.roles
    .filter((role) => roleIds.has(role.id))
    .reduce((bits, role) => bits | BigInt(role.permissions), 0n);
  return (granted & PermissionFlagsBits.Administrator) !== 0n ? ALL : granted;
}

/** Permissions in a DM, as Discord reports them in an interaction's `member`-less context. */
export const DM_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.UseExternalEmojis;
