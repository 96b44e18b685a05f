/**
 * Model → Discord JSON. Typed against discord-api-types so the payloads have the fields the real
 * API sends (discord.js reads them without guarding).
 */
import {
  type APIAttachment,
  type APIChannel,
  type APIGuildMember,
  type APIInteractionGuildMember,
  type APIMessage,
  type APIRole,
  type APIUser,
  ChannelType,
  type GatewayGuildCreateDispatchData,
  type GuildMemberFlags,
  type GuildSystemChannelFlags,
  Locale,
  MessageType,
  type RoleFlags,
} from 'discord-api-types/v10';
import { memberPermissions } from './permissions.js';
import { snowflakeTime } from './snowflake.js';
import type { DiscordState } from './state.js';
import type { SimAttachment, SimChannel, SimGuild, SimMessage, SimRole, SimUser } from './types.js';

export function userJson(user: SimUser): APIUser {
  return {
    id: user.id,
    username: user.username,
    discriminator: '0',
    global_name: user.globalName,
    avatar: null,
    ...(user.bot ? { bot: true } : {}),
  };
}

export function roleJson(role: SimRole, position: number): APIRole {
  return {
    id: role.id,
    name: role.name,
    color: 0,
    colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
    hoist: false,
    icon: null,
    unicode_emoji: null,
    position,
    permissions: role.permissions,
    managed: false,
    mentionable: false,
    flags: 0 as RoleFlags,
  };
}

export function memberJson(guild: SimGuild, user: SimUser): APIGuildMember {
  return {
    user: userJson(user),
    nick: null,
    avatar: null,
    banner: null,
    roles: guild.memberRoles.get(user.id) ?? [],
    joined_at: new Date(snowflakeTime(guild.id)).toISOString(),
    premium_since: null,
    deaf: false,
    mute: false,
    flags: 0 as GuildMemberFlags,
    pending: false,
  };
}

/** A member as interactions carry it: with the computed permissions. */
export function interactionMemberJson(guild: SimGuild, user: SimUser): APIInteractionGuildMember {
  return { ...memberJson(guild, user), permissions: String(memberPermissions(guild, user.id)) };
}

export function channelJson(state: DiscordState, channel: SimChannel): APIChannel {
  switch (channel.type) {
    case ChannelType.DM: {
      const recipient = state.users.get(channel.recipientId!)!;
      return {
        id: channel.id,
        type: ChannelType.DM,
        name: null,
        last_message_id: null,
        recipients: [userJson(recipient)],
      };
    }
    case ChannelType.PublicThread:
    case ChannelType.PrivateThread:
      return {
        id: channel.id,
        type: channel.type,
        guild_id: channel.guildId!,
        name: channel.name ?? 'thread',
        parent_id: channel.parentId ?? undefined,
        owner_id: state.guilds.get(channel.guildId!)?.ownerId,
        last_message_id: null,
        rate_limit_per_user: 0,
        message_count: 0,
        member_count: 1,
        total_message_sent: 0,
        thread_metadata: {
          archived: false,
          auto_archive_duration: 1440,
          archive_timestamp: new Date(snowflakeTime(channel.id)).toISOString(),
          locked: false,
        },
      };
    default:
      return {
        id: channel.id,
        type: ChannelType.GuildText,
        guild_id: channel.guildId!,
        name: channel.name ?? 'channel',
        position: 0,
        parent_id: null,
        topic: null,
        nsfw: false,
        last_message_id: null,
        rate_limit_per_user: 0,
        permission_overwrites: [],
      };
  }
}

export function attachmentJson(attachment: SimAttachment): APIAttachment {
  return {
    id: attachment.id,
    filename: attachment.filename,
    size: attachment.size,
    url: attachment.url,
    proxy_url: attachment.url,
    ...(attachment.contentType ? { content_type: attachment.contentType } : {}),
    ...(attachment.description ? { description: attachment.description } : {}),
    ...(attachment.width !== undefined ? { width: attachment.width, height: attachment.height ?? null } : {}),
  };
}

export function messageJson(state: DiscordState, message: SimMessage): APIMessage {
  const interaction = message.interactionId
    ? state.interactionMetadata.get(message.interactionId)
    : undefined;
  return {
    id: message.id,
    channel_id: message.channelId,
    author: userJson(message.author),
    content: message.content,
    timestamp: new Date(message.createdAt).toISOString(),
    edited_timestamp: message.editedAt === null ? null : new Date(message.editedAt).toISOString(),
    tts: false,
    mention_everyone: false,
    mentions: [],
    mention_roles: [],
    attachments: message.attachments.map(attachmentJson),
    embeds: message.embeds,
    pinned: false,
    type: message.referencedMessageId
      ? MessageType.Reply
      : interaction && message.interactionId === interaction.id && interaction.originalOf === message.id
        ? MessageType.ChatInputCommand
        : MessageType.Default,
    flags: message.flags,
    components: message.components,
    ...(message.reactions.length > 0
      ? {
          reactions: message.reactions.map((r) => ({
            emoji: emojiJson(r.emoji),
            count: r.userIds.length,
            count_details: { burst: 0, normal: r.userIds.length },
            me: r.userIds.includes(state.bot.id),
            me_burst: false,
            burst_colors: [],
          })),
        }
      : {}),
    ...(message.webhookId ? { webhook_id: message.webhookId, application_id: state.applicationId } : {}),
    ...(interaction
      ? {
          interaction_metadata: {
            id: interaction.id,
            type: interaction.type,
            user: userJson(state.users.get(interaction.userId)!),
            authorizing_integration_owners: {},
          },
        }
      : {}),
    ...(message.referencedMessageId
      ? { message_reference: { message_id: message.referencedMessageId, channel_id: message.channelId } }
      : {}),
  } as APIMessage;
}

/** `🔄` → `{ id: null, name: '🔄' }`; `party:123` → `{ id: '123', name: 'party' }`. */
export function emojiJson(emoji: string): { id: string | null; name: string } {
  const custom = /^(?<name>[\w~]+):(?<id>\d{17,20})$/.exec(emoji);
  return custom ? { id: custom.groups!.id!, name: custom.groups!.name! } : { id: null, name: emoji };
}

/** The full GUILD_CREATE payload discord.js builds its caches from. */
export function guildCreateJson(state: DiscordState, guild: SimGuild): GatewayGuildCreateDispatchData {
  const channels = [...state.channels.values()].filter((c) => c.guildId === guild.id);
  const payload: GatewayGuildCreateDispatchData = {
    id: guild.id,
    name: guild.name,
    icon: null,
    splash: null,
    discovery_splash: null,
    owner_id: guild.ownerId,
    region: 'europe',
    afk_channel_id: null,
    afk_timeout: 300,
    verification_level: 1,
    default_message_notifications: 1,
    explicit_content_filter: 2,
    roles: guild.roles.map(roleJson),
    emojis: [],
    features: [],
    mfa_level: 0,
    application_id: null,
    system_channel_id: null,
    system_channel_flags: 0 as GuildSystemChannelFlags,
    rules_channel_id: null,
    vanity_url_code: null,
    description: null,
    banner: null,
    premium_tier: 0,
    premium_subscription_count: 0,
    preferred_locale: Locale.EnglishUS,
    public_updates_channel_id: null,
    max_video_channel_users: 25,
    max_stage_video_channel_users: 50,
    nsfw_level: 0,
    stickers: [],
    premium_progress_bar_enabled: false,
    hub_type: null,
    safety_alerts_channel_id: null,
    incidents_data: null,
    joined_at: new Date(snowflakeTime(guild.id)).toISOString(),
    large: false,
    unavailable: false,
    member_count: guild.memberIds.length,
    voice_states: [],
    members: guild.memberIds.map((id) => memberJson(guild, state.users.get(id)!)),
    channels: channels
      .filter((c) => c.type === ChannelType.GuildText)
      .map((c) => channelJson(state, c)) as GatewayGuildCreateDispatchData['channels'],
    threads: channels
      .filter((c) => c.type !== ChannelType.GuildText)
      .map((c) => channelJson(state, c)) as GatewayGuildCreateDispatchData['threads'],
    presences: [],
    stage_instances: [],
    guild_scheduled_events: [],
    soundboard_sounds: [],
  };
  return payload;
}
