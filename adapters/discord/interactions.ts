/**
 * INTERACTION_CREATE → the Bot: slash commands to `bot.command`, button clicks to `bot.action`
 * (which may open a modal: a remix form), submitted modals to `bot.submitForm`, autocomplete to
 * `bot.autocomplete`. Every command and click is answered inside Discord's
 * window by an InteractionResponder, whatever the Bot does — a Bot that throws gets its error
 * logged and the user a short private apology.
 */
import {
  ApplicationCommandOptionType,
  type AutocompleteInteraction,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type CommandInteractionOption,
  type Interaction,
  type ModalSubmitInteraction,
} from 'discord.js';
import type { BotPort } from '../../commands/port.js';
import type { CommandArgs, Invocation } from '../../commands/types.js';
import { asAtelierError } from '../../src/errors.js';
import type { ReplyTarget } from '../../src/jobs/types.js';
import type { Logger } from '../../src/log.js';
import { choiceName } from './commands.js';
import { memberInfo, requesterOf, targetOf } from './identity.js';
import { submittedValues } from './modal.js';
import type { InteractionReference } from './references.js';
import { type InteractionKind, InteractionResponder } from './responder.js';
import type { DiscordTransport } from './transport.js';
import type { UploadLimits } from './upload-limits.js';

/** Discord shows at most 25 autocomplete suggestions. */
const MAX_SUGGESTIONS = 25;

export interface InteractionContext {
  bot: Pick<BotPort, 'command' | 'action' | 'submitForm' | 'autocomplete'>;
  transport: DiscordTransport;
  limits: UploadLimits;
  logger: Logger;
  deferAfterMs: number;
}

type Answerable = ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction;

/** Handles one interaction to the end; never rejects. */
export async function handleInteraction(
  context: InteractionContext,
  interaction: Interaction,
): Promise<void> {
  context.limits.observe(interaction.guildId, interaction.attachmentSizeLimit);
  try {
    if (interaction.isChatInputCommand()) {
      const { name, args } = commandOf(interaction);
      await answer(context, interaction, 'command', (invocation) =>
        context.bot.command(invocation, name, args),
      );
    } else if (interaction.isButton()) {
      await answer(context, interaction, 'component', (invocation) =>
        context.bot.action(invocation, interaction.customId),
      );
    } else if (interaction.isModalSubmit()) {
      // Answered as a click: a new message (the job's), or a silent acknowledgement when slow.
      await answer(context, interaction, 'component', (invocation) =>
        context.bot.submitForm(invocation, interaction.customId, submittedValues(interaction)),
      );
    } else if (interaction.isAutocomplete()) {
      await suggest(context, interaction);
    }
  } catch (error) {
    context.logger.error(
      { err: asAtelierError(error), interactionId: interaction.id },
      'discord: interaction failed',
    );
  }
}

/** `atelier showcase` for a subcommand; option values by name (a channel option's value is its id). */
export function commandOf(interaction: Pick<ChatInputCommandInteraction, 'commandName' | 'options'>): {
  name: string;
  args: CommandArgs;
} {
  let options: readonly CommandInteractionOption[] = interaction.options.data;
  let name = interaction.commandName;
  const sub = options.find((option) => option.type === ApplicationCommandOptionType.Subcommand);
  if (sub) {
    name = `${name} ${sub.name}`;
    options = sub.options ?? [];
  }
  const args: CommandArgs = {};
  for (const option of options) {
    if (option.value !== undefined && option.value !== null) args[option.name] = option.value;
  }
  return { name, args };
}

async function answer(
  context: InteractionContext,
  interaction: Answerable,
  kind: InteractionKind,
  run: (invocation: Invocation) => Promise<void>,
): Promise<void> {
  const { logger, transport, deferAfterMs } = context;
  const requester = requesterOf(interaction.user, interaction.guildId, memberInfo(interaction.member));
  const reference: InteractionReference = {
    applicationId: interaction.applicationId,
    token: interaction.token,
    createdAt: interaction.createdTimestamp,
    userId: interaction.user.id,
  };
  const where: ReplyTarget = {
    ...targetOf(interaction.channelId ?? '', interaction.guildId, interaction.channel),
    extra: { interaction: reference },
  };
  const responder = new InteractionResponder({
    id: interaction.id,
    kind,
    reference,
    where,
    transport,
    deferAfterMs,
    onDropped: (dropped) => logger.warn({ dropped }, 'discord: message trimmed to fit Discord limits'),
  });
  responder.arm();
  const invocation: Invocation = {
    requester,
    where,
    reply: (message) => responder.reply(message),
    replyPrivately: (message) => responder.replyPrivately(message),
    // Discord opens modals for commands and clicks, never in answer to a submitted modal.
    ...(interaction.isModalSubmit() ? {} : { openForm: (form) => responder.openModal(form) }),
  };
  try {
    await run(invocation);
  } catch (error) {
    const failure = asAtelierError(error);
    logger.error(
      { err: failure, interactionId: interaction.id, kind },
      'discord: the bot failed on an interaction',
    );
    await responder
      .replyPrivately({ text: failure.userMessage })
      .catch((reason) => logger.error({ err: asAtelierError(reason) }, 'discord: could not apologise'));
  } finally {
    await responder.finish();
  }
}

async function suggest(context: InteractionContext, interaction: AutocompleteInteraction): Promise<void> {
  const focused = interaction.options.getFocused(true);
  const sub = interaction.options.getSubcommand(false);
  const command = sub ? `${interaction.commandName} ${sub}` : interaction.commandName;
  const requester = requesterOf(interaction.user, interaction.guildId, memberInfo(interaction.member));
  let choices: { name: string; value: string | number }[] = [];
  try {
    const found = await context.bot.autocomplete(requester, command, focused.name, String(focused.value));
    choices = found
      .slice(0, MAX_SUGGESTIONS)
      .map((choice) => ({ name: choiceName(choice), value: choice.value }));
  } catch (error) {
    // No suggestions is a fine answer while typing; the command itself is validated on submit.
    context.logger.error({ err: asAtelierError(error), command }, 'discord: autocomplete failed');
  }
  await context.transport.suggest({ id: interaction.id, token: interaction.token }, choices);
}
