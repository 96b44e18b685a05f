import { PermissionFlagsBits } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { memberInfo, requesterOf } from '../../adapters/discord/identity.js';

const user = { id: '42', username: 'olga', globalName: 'Olga' };
const raw = (permissions: bigint) =>
  ({ nick: null, roles: ['r1'], permissions: String(permissions) }) as unknown as Parameters<
    typeof memberInfo
  >[0];

describe('Discord requesters', () => {
  it('marks members who may manage the server as team admins, in servers only', () => {
    expect(requesterOf(user, 'g1', memberInfo(raw(PermissionFlagsBits.ManageGuild))).isTeamAdmin).toBe(true);
    expect(requesterOf(user, 'g1', memberInfo(raw(PermissionFlagsBits.Administrator))).isTeamAdmin).toBe(
      true,
    );
    expect(
      requesterOf(user, 'g1', memberInfo(raw(PermissionFlagsBits.SendMessages))).isTeamAdmin,
    ).toBeUndefined();
    expect(requesterOf(user, null, undefined).isTeamAdmin).toBeUndefined();
  });
});
