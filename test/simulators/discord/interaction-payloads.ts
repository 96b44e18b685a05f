/**
 * Builds INTERACTION_CREATE payloads the way Discord's client + API would: option values typed
 * and checked against the REGISTERED command (a user can only send what the bot registered),
 * `resolved` data for users/channels/attachments, guild vs DM context, permissions.
 */
import {
  type APIApplicationCommand,
  type APIApplicationCommandOption,
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ChannelType,
  ComponentType,
  InteractionContextType,
  type InteractionType,
} from 'discord-api-types/v10';
import { SimulatorUsageError } from '../shared/errors.js';
import { pngSize } from '../shared/image-size.js';
import { BOT_PERMISSIONS, DM_PERMISSIONS, memberPermissions } from './permissions.js';
import { attachmentJson, channelJson, interactionMemberJson, messageJson, userJson } from './serialize.js';
import { snowflake } from './snowflake.js';
import type { DiscordState } from './state.js';
import type { SimAttachment, SimChannel, SimMessage, SimUser } from './types.js';

/** A file a user attaches to an ATTACHMENT option. */
export interface OptionFile {
  filename: string;
  data: Buffer;
  contentType?: string;
}

/** What a test may pass for an option: plain values, or fixtures for USER/CHANNEL options. */
export type OptionValue = string | number | boolean | SimUser | SimChannel | OptionFile;

export interface InteractionContext {
  user: SimUser;
  channel: SimChannel;
}

interface BuiltOptions {
  options: Record<string, unknown>[];
  resolved: Record<string, Record<string, unknown>>;
}

/** Finds the command a user in `channel` can see: guild commands of its server, else global ones. */
export function findCommand(state: DiscordState, name: string, channel: SimChannel): APIApplicationCommand {
  const candidates = [
    ...(channel.guildId ? (state.commands.get(channel.guildId) ?? []) : []),
    ...(state.commands.get('') ?? []),
  ].filter((c) => (c.type ?? ApplicationCommandType.ChatInput) === ApplicationCommandType.ChatInput);
  const command = candidates.find((c) => c.name === name);
  if (!command) {
    const known = candidates.map((c) => `/${c.name}`).join(', ') || 'none';
    throw new SimulatorUsageError(`/${name} is not registered where this channel is (registered: ${known})`);
  }
  if (!channel.guildId) {
    const contexts = command.contexts ?? [InteractionContextType.Guild, InteractionContextType.BotDM];
    if (!contexts.includes(InteractionContextType.BotDM) || command.dm_permission === false) {
      throw new SimulatorUsageError(`/${name} is not available in DMs (its contexts exclude BotDM)`);
    }
  }
  return command;
}

/**
 * Converts `{ prompt: 'a cat', count: 4 }` into typed interaction options. `path` holds the
 * subcommand group/subcommand names ("atelier showcase" → ['showcase']).
 */
export function buildOptions(
  state: DiscordState,
  command: APIApplicationCommand,
  path: string[],
  values: Record<string, OptionValue>,
  context: InteractionContext,
  settings: { unchecked: boolean; focused?: string },
): BuiltOptions {
  const resolved: BuiltOptions['resolved'] = {};
  let definitions: readonly APIApplicationCommandOption[] = command.options ?? [];
  const wrappers: { name: string; type: ApplicationCommandOptionType }[] = [];
  for (const name of path) {
    const sub = definitions.find(
      (o) =>
        o.name === name &&
        (o.type === ApplicationCommandOptionType.Subcommand ||
          o.type === ApplicationCommandOptionType.SubcommandGroup),
    );
    if (!sub || !('options' in sub)) {
      throw new SimulatorUsageError(`/${command.name} has no subcommand "${name}"`);
    }
    wrappers.push({ name, type: sub.type });
    definitions = sub.options ?? [];
  }
  if (definitions.some((o) => o.type === ApplicationCommandOptionType.Subcommand)) {
    throw new SimulatorUsageError(`/${command.name} needs a subcommand: "${command.name} <sub>"`);
  }

  const leafOptions: Record<string, unknown>[] = [];
  for (const [name, value] of Object.entries(values)) {
    const definition = definitions.find((o) => o.name === name);
    if (!definition) {
      const known = definitions.map((o) => o.name).join(', ');
      throw new SimulatorUsageError(`/${command.name} has no option "${name}" (options: ${known})`);
    }
    const focused = settings.focused === name;
    const option = convertOption(state, definition, value, context, resolved, settings.unchecked || focused);
    leafOptions.push(focused ? { ...option, value: String(value), focused: true } : option);
  }
  if (settings.focused !== undefined) {
    const definition = definitions.find((o) => o.name === settings.focused);
    if (!definition || !('autocomplete' in definition) || !definition.autocomplete) {
      throw new SimulatorUsageError(
        `option "${settings.focused}" of /${command.name} is not registered with autocomplete`,
      );
    }
    if (!(settings.focused in values))
      leafOptions.push({ name: settings.focused, type: definition.type, value: '', focused: true });
  } else if (!settings.unchecked) {
    const missing = definitions
      .filter((o) => 'required' in o && o.required && !(o.name in values))
      .map((o) => o.name);
    if (missing.length > 0) {
      throw new SimulatorUsageError(
        `/${command.name} requires ${missing.join(', ')} (Discord's client will not send it without)`,
      );
    }
  }

  let options = leafOptions;
  for (const wrapper of wrappers.reverse()) options = [{ name: wrapper.name, type: wrapper.type, options }];
  return { options, resolved };
}

function convertOption(
  state: DiscordState,
  definition: APIApplicationCommandOption,
  value: OptionValue,
  context: InteractionContext,
  resolved: BuiltOptions['resolved'],
  unchecked: boolean,
): Record<string, unknown> {
  const base = { name: definition.name, type: definition.type };
  const fail = (why: string): never => {
    throw new SimulatorUsageError(
      `option "${definition.name}": ${why} (pass { unchecked: true } to send it anyway)`,
    );
  };
  switch (definition.type) {
    case ApplicationCommandOptionType.String:
    case ApplicationCommandOptionType.Integer:
    case ApplicationCommandOptionType.Number: {
      const isString = definition.type === ApplicationCommandOptionType.String;
      if (isString ? typeof value !== 'string' : typeof value !== 'number') {
        if (!unchecked) fail(`expected a ${isString ? 'string' : 'number'}, got ${typeof value}`);
      }
      if (!unchecked) {
        if (definition.type === ApplicationCommandOptionType.Integer && !Number.isInteger(value))
          fail('not an integer');
        if (definition.choices && !definition.choices.some((c) => c.value === value)) {
          fail(`${JSON.stringify(value)} is not one of the registered choices`);
        }
        if (isString && typeof value === 'string') {
          const def = definition as { min_length?: number; max_length?: number };
          if (value.length < (def.min_length ?? 0) || value.length > (def.max_length ?? 6000))
            fail('length out of range');
        }
        if (!isString && typeof value === 'number') {
          const def = definition as { min_value?: number; max_value?: number };
          if (value < (def.min_value ?? -Infinity) || value > (def.max_value ?? Infinity))
            fail('value out of range');
        }
      }
      return { ...base, value };
    }
    case ApplicationCommandOptionType.Boolean:
      if (typeof value !== 'boolean' && !unchecked) fail('expected a boolean');
      return { ...base, value };
    case ApplicationCommandOptionType.User:
    case ApplicationCommandOptionType.Mentionable: {
      const user = typeof value === 'string' ? state.users.get(value) : (value as SimUser);
      if (!user || !('username' in user)) return fail('expected a SimUser or a user id');
      resolved.users ??= {};
      resolved.users[user.id] = userJson(user);
      const guild = context.channel.guildId ? state.guilds.get(context.channel.guildId) : undefined;
      if (guild?.memberIds.includes(user.id)) {
        const { user: _omit, deaf: _d, mute: _m, ...member } = interactionMemberJson(guild, user);
        resolved.members ??= {};
        resolved.members[user.id] = member;
      }
      return { ...base, value: user.id };
    }
    case ApplicationCommandOptionType.Channel: {
      const channel = typeof value === 'string' ? state.channels.get(value) : (value as SimChannel);
      if (!channel || !('recipientId' in channel)) return fail('expected a SimChannel or a channel id');
      const allowed = 'channel_types' in definition ? definition.channel_types : undefined;
      if (allowed && !allowed.includes(channel.type as never) && !unchecked)
        fail(`channel type ${channel.type} not allowed`);
      resolved.channels ??= {};
      resolved.channels[channel.id] = {
        ...channelJson(state, channel),
        permissions: String(channel.guildId ? BOT_PERMISSIONS : DM_PERMISSIONS),
      };
      return { ...base, value: channel.id };
    }
    case ApplicationCommandOptionType.Role: {
      const guild = context.channel.guildId ? state.guilds.get(context.channel.guildId) : undefined;
      const role = guild?.roles.find((r) => r.id === value || r.name === value);
      if (!role) return fail('expected a role id or name of this server');
      resolved.roles ??= {};
      resolved.roles[role.id] = { id: role.id, name: role.name, permissions: role.permissions, position: 0 };
      return { ...base, value: role.id };
    }
    case ApplicationCommandOptionType.Attachment: {
      const file = value as OptionFile;
      if (!file || !Buffer.isBuffer(file.data)) return fail('expected { filename, data: Buffer }');
      const id = snowflake();
      const size = pngSize(file.data);
      const attachment: SimAttachment = {
        id,
        filename: file.filename,
        contentType: file.contentType,
        size: file.data.length,
        data: file.data,
        url: `${state.baseUrl}/attachments/${context.channel.id}/${id}/${encodeURIComponent(file.filename)}`,
        width: size?.width,
        height: size?.height,
        description: undefined,
      };
      state.userUploads.set(id, attachment);
      resolved.attachments ??= {};
      resolved.attachments[id] = { ...attachmentJson(attachment), ephemeral: true };
      return { ...base, value: id };
    }
    default:
      return fail(`option type ${definition.type} is not supported by the simulator`);
  }
}

/** The fields every interaction carries: who, where, with which permissions and upload cap. */
export function baseInteraction(
  state: DiscordState,
  type: InteractionType,
  context: InteractionContext,
  ids: { id: string; token: string },
): Record<string, unknown> {
  const { user, channel } = context;
  const guild = channel.guildId ? state.guilds.get(channel.guildId) : undefined;
  if (channel.guildId && !guild)
    throw new SimulatorUsageError(`channel ${channel.id} belongs to no known guild`);
  if (guild && !guild.memberIds.includes(user.id)) {
    throw new SimulatorUsageError(`${user.username} is not a member of ${guild.name}`);
  }
  const common = {
    id: ids.id,
    application_id: state.applicationId,
    type,
    token: ids.token,
    version: 1,
    locale: 'en-US',
    entitlements: [],
    attachment_size_limit: state.uploadLimitFor(channel.id),
    channel: channelJson(state, channel),
    channel_id: channel.id,
  };
  if (guild) {
    return {
      ...common,
      guild_id: guild.id,
      guild: { id: guild.id, locale: 'en-US', features: [] },
      guild_locale: 'en-US',
      member: interactionMemberJson(guild, user),
      app_permissions: String(BOT_PERMISSIONS & memberPermissions(guild, state.bot.id)),
      authorizing_integration_owners: { '0': guild.id },
      context: InteractionContextType.Guild,
    };
  }
  return {
    ...common,
    user: userJson(user),
    app_permissions: String(DM_PERMISSIONS),
    authorizing_integration_owners: { '0': '0' },
    context: InteractionContextType.BotDM,
  };
}

export function commandData(command: APIApplicationCommand, built: BuiltOptions, guildId: string | null) {
  return {
    id: command.id,
    name: command.name,
    type: ApplicationCommandType.ChatInput,
    ...(built.options.length > 0 ? { options: built.options } : {}),
    ...(Object.keys(built.resolved).length > 0 ? { resolved: built.resolved } : {}),
    ...(command.guild_id && guildId ? { guild_id: command.guild_id } : {}),
  };
}

export function componentData(state: DiscordState, message: SimMessage, customId: string) {
  return {
    data: { custom_id: customId, component_type: ComponentType.Button },
    message: messageJson(state, message),
  };
}

export function isDm(channel: SimChannel): boolean {
  return channel.type === ChannelType.DM;
}
