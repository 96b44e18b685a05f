/**
 * CommandDef → Discord application commands, and their registration (a bulk overwrite, so
 * commands the bot no longer has disappear). Discord's rules shape the translation: required
 * options first, at most 25 choices (autocomplete beyond), string lengths up to 6000, and one
 * level of subcommands.
 * @see https://discord.com/developers/docs/interactions/application-commands#application-command-object
 */
import {
  type APIApplicationCommandBasicOption,
  type APIApplicationCommandOption,
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ApplicationIntegrationType,
  ChannelType,
  InteractionContextType,
  type REST,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
  Routes,
} from 'discord.js';
import type { Choice, CommandDef, OptionDef, OptionType } from '../../commands/types.js';

/** Discord's application command limits (Application Command Object docs). */
export const COMMAND_LIMITS = {
  description: 100,
  options: 25,
  choices: 25,
  choiceName: 100,
  choiceStringValue: 100,
  stringLength: 6000,
} as const;

const NAME_PATTERN = /^[-_'\p{L}\p{N}]{1,32}$/u;

const OPTION_TYPES: Record<OptionType, ApplicationCommandOptionType> = {
  string: ApplicationCommandOptionType.String,
  integer: ApplicationCommandOptionType.Integer,
  number: ApplicationCommandOptionType.Number,
  boolean: ApplicationCommandOptionType.Boolean,
  channel: ApplicationCommandOptionType.Channel,
};

/** Where a result can be posted: text channels, announcement channels and threads. */
const POSTABLE_CHANNELS = [
  ChannelType.GuildText,
  ChannelType.GuildAnnouncement,
  ChannelType.PublicThread,
  ChannelType.PrivateThread,
  ChannelType.AnnouncementThread,
] as const;

export type ApplicationCommandBody = RESTPostAPIChatInputApplicationCommandsJSONBody;

/**
 * The application commands for `defs`. Everyone may use every command in servers and in DMs
 * with the bot, except admin commands, which are per server (the bot checks who is an admin).
 */
export function toApplicationCommands(defs: readonly CommandDef[]): ApplicationCommandBody[] {
  return defs.map((def) => ({
    type: ApplicationCommandType.ChatInput,
    name: commandName(def.name),
    description: describe(def.description),
    options: def.subcommands?.length
      ? def.subcommands.map(subcommand)
      : (def.options ?? []).map(toOption).sort(requiredFirst),
    integration_types: [ApplicationIntegrationType.GuildInstall],
    contexts: def.adminOnly
      ? [InteractionContextType.Guild]
      : [InteractionContextType.Guild, InteractionContextType.BotDM],
  }));
}

function subcommand(def: CommandDef): APIApplicationCommandOption {
  return {
    type: ApplicationCommandOptionType.Subcommand,
    name: commandName(def.name),
    description: describe(def.description),
    options: (def.options ?? []).map(toOption).sort(requiredFirst),
  };
}

/** One option; a choice list longer than Discord's 25 becomes autocomplete over the same list. */
export function toOption(def: OptionDef): APIApplicationCommandBasicOption {
  const base = {
    name: commandName(def.name),
    description: describe(def.description),
    required: def.required ?? false,
  };
  const choices = def.choices && def.choices.length <= COMMAND_LIMITS.choices ? def.choices : undefined;
  const autocomplete = def.autocomplete || (def.choices?.length ?? 0) > COMMAND_LIMITS.choices;
  switch (def.type) {
    case 'string':
      return {
        ...base,
        type: ApplicationCommandOptionType.String,
        ...(def.maxLength !== undefined
          ? { max_length: Math.min(Math.max(def.maxLength, 1), COMMAND_LIMITS.stringLength) }
          : {}),
        ...(autocomplete
          ? { autocomplete: true }
          : choices
            ? { choices: choices.map((c) => stringChoice(c)) }
            : {}),
      };
    case 'integer':
    case 'number': {
      const type = OPTION_TYPES[def.type] as
        | ApplicationCommandOptionType.Integer
        | ApplicationCommandOptionType.Number;
      return {
        ...base,
        type,
        ...(def.min !== undefined ? { min_value: def.min } : {}),
        ...(def.max !== undefined ? { max_value: def.max } : {}),
        ...(autocomplete
          ? { autocomplete: true }
          : choices
            ? { choices: choices.map((c) => ({ name: choiceName(c), value: Number(c.value) })) }
            : {}),
      } as APIApplicationCommandBasicOption;
    }
    case 'boolean':
      return { ...base, type: ApplicationCommandOptionType.Boolean };
    case 'channel':
      return { ...base, type: ApplicationCommandOptionType.Channel, channel_types: [...POSTABLE_CHANNELS] };
  }
}

function stringChoice(choice: Choice) {
  return { name: choiceName(choice), value: String(choice.value).slice(0, COMMAND_LIMITS.choiceStringValue) };
}

/** Choice names are 1–100 characters. */
export function choiceName(choice: Choice): string {
  const name = Array.from(choice.name).slice(0, COMMAND_LIMITS.choiceName).join('');
  return name || String(choice.value).slice(0, COMMAND_LIMITS.choiceName);
}

/** Discord refuses a required option after an optional one; the order is otherwise kept. */
function requiredFirst(a: { required?: boolean }, b: { required?: boolean }): number {
  return Number(b.required ?? false) - Number(a.required ?? false);
}

function describe(text: string): string {
  const chars = Array.from(text.trim() || '…');
  return chars.length <= COMMAND_LIMITS.description
    ? chars.join('')
    : `${chars.slice(0, COMMAND_LIMITS.description - 1).join('')}…`;
}

/** A definition bug, not a user error: say which name Discord would refuse and why. */
function commandName(name: string): string {
  if (!NAME_PATTERN.test(name) || name !== name.toLowerCase()) {
    throw new TypeError(
      `Expected a Discord command or option name (1–32 lowercase letters, digits, - or _), got \`${name}\``,
    );
  }
  return name;
}

/**
 * Registers `commands`: in each of `guildIds` (shown at once; not in DMs) or, with none,
 * globally. A bulk overwrite removes commands left from an earlier version.
 */
export async function registerCommands(
  rest: REST,
  applicationId: string,
  commands: readonly ApplicationCommandBody[],
  guildIds: readonly string[],
): Promise<void> {
  if (guildIds.length === 0) {
    await rest.put(Routes.applicationCommands(applicationId), { body: commands });
    return;
  }
  // Guild commands have no contexts or integration types: they live in that server only.
  const guildCommands = commands.map(({ contexts: _c, integration_types: _i, ...rest }) => rest);
  await Promise.all(
    guildIds.map((guildId) =>
      rest.put(Routes.applicationGuildCommands(applicationId, guildId), { body: guildCommands }),
    ),
  );
}
