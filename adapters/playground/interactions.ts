/**
 * What people do in a tab, handed to the Bot: a typed line becomes a command (or plain chat), a
 * button click an action, a reaction a reaction event. The Bot answers user errors itself; any
 * error it throws is logged here and the person gets a short private apology, so nothing a person
 * does goes unanswered.
 */
import type { BotPort } from '../../commands/port.js';
import type { ChatForm, ChatMessage, Invocation, PostedMessage } from '../../commands/types.js';
import { AtelierError, ValidationError } from '../../src/errors.js';
import type { ReplyTarget, Requester } from '../../src/jobs/types.js';
import type { Logger } from '../../src/log.js';
import { PLATFORM } from './adapter.js';
import type { ChannelHub, Interaction } from './hub.js';
import type { ClientFrame } from './protocol.js';
import type { PlaygroundUser } from './users.js';

/** The reactions the page offers under a result (the Bot gives each a meaning). */
export const REACTION_EMOJIS = ['🔄', '⭐', '✖'] as const;

export const GENERIC_FAILURE: ChatMessage = {
  text: 'Something went wrong on my side and I could not do that. Please try again in a moment.',
};

type Frame<T extends ClientFrame['type']> = Extract<ClientFrame, { type: T }>;

/** What a tab's actions call on the bot (commands/port.ts). */
type InteractionsBot = Pick<
  BotPort,
  'parseText' | 'command' | 'action' | 'submitForm' | 'reaction' | 'autocomplete'
>;

/** Forms opened and not yet submitted that are remembered (for the title a submission shows). */
const REMEMBERED_FORMS = 500;

export class Interactions {
  readonly #hub: ChannelHub;
  readonly #bot: InteractionsBot;
  readonly #logger: Logger;
  /** The titles of forms opened, by `userId formId`, to say what a submission was. */
  readonly #forms = new Map<string, string>();

  constructor(hub: ChannelHub, bot: InteractionsBot, logger: Logger) {
    this.#hub = hub;
    this.#bot = bot;
    this.#logger = logger;
  }

  async say(user: PlaygroundUser, { channelId, text }: Frame<'say'>): Promise<void> {
    const line = text.trim();
    if (line.length === 0) return;
    if (!line.startsWith('/')) {
      this.#hub.postFromUser(channelId, user, line);
      return;
    }
    let parsed: ReturnType<InteractionsBot['parseText']>;
    try {
      parsed = this.#bot.parseText(line);
    } catch (error) {
      // The usage message is for the person who typed the line, nobody else.
      const typed = line.split(/\s/, 1)[0];
      this.#privately(channelId, user, { user, action: `used ${typed}` }, error);
      return;
    }
    const interaction = { user, action: `used /${parsed.command}` };
    await this.#run(channelId, user, interaction, (inv) =>
      this.#bot.command(inv, parsed.command, parsed.args),
    );
  }

  /** A button click; `openForm` shows a form in the tab that clicked (the bot may ask for one). */
  async click(
    user: PlaygroundUser,
    { channelId, messageId, customId }: Frame<'click'>,
    openForm?: (form: ChatForm) => void,
  ): Promise<void> {
    const button = this.#hub.feed
      .find(messageId, user.id)
      ?.message.buttons.flat()
      .find((b) => b.customId === customId);
    const what = button ? [button.emoji, button.label].filter(Boolean).join(' ') : 'a button';
    const forms = openForm && {
      openForm: async (form: ChatForm) => {
        this.#rememberForm(user.id, form);
        openForm(form);
      },
    };
    await this.#run(
      channelId,
      user,
      { user, action: `clicked ${what}` },
      (inv) => this.#bot.action(inv, customId),
      forms,
    );
  }

  /** A form the bot opened, submitted from the tab's dialog. */
  async submit(user: PlaygroundUser, { channelId, formId, values }: Frame<'submit'>): Promise<void> {
    const key = `${user.id} ${formId}`;
    const title = this.#forms.get(key);
    this.#forms.delete(key);
    await this.#run(channelId, user, { user, action: `submitted ${title ?? 'a form'}` }, (inv) =>
      this.#bot.submitForm(inv, formId, values),
    );
  }

  #rememberForm(userId: string, form: ChatForm): void {
    const key = `${userId} ${form.id}`;
    this.#forms.delete(key);
    this.#forms.set(key, form.title);
    if (this.#forms.size > REMEMBERED_FORMS) this.#forms.delete(this.#forms.keys().next().value!);
  }

  async react(
    user: PlaygroundUser,
    { channelId, messageId, emoji }: Frame<'react' | 'unreact'>,
    on: boolean,
  ): Promise<void> {
    if (!(REACTION_EMOJIS as readonly string[]).includes(emoji)) return;
    if (!this.#hub.react(messageId, user, emoji, on) || !on) return;
    const message: PostedMessage = { platform: PLATFORM, channelId, messageId };
    try {
      await this.#bot.reaction({ requester: requester(user), message, emoji, where: target(channelId) });
    } catch (error) {
      this.#logger.error({ err: error, emoji, messageId }, 'playground: reaction failed');
      this.#hub.tellPrivately(channelId, user.id, GENERIC_FAILURE);
    }
  }

  async autocomplete(user: PlaygroundUser, frame: Frame<'autocomplete'>) {
    try {
      const choices = await this.#bot.autocomplete(
        requester(user),
        frame.command,
        frame.option,
        frame.partial,
      );
      return choices.slice(0, 25);
    } catch (error) {
      this.#logger.warn(
        { err: error, command: frame.command, option: frame.option },
        'playground: autocomplete failed',
      );
      return [];
    }
  }

  /** Runs one Bot call with an Invocation whose answers land in `channelId`. */
  async #run(
    channelId: string,
    user: PlaygroundUser,
    interaction: Interaction,
    call: (inv: Invocation) => Promise<void>,
    extra: Pick<Invocation, 'openForm'> = {},
  ): Promise<void> {
    const inv: Invocation = {
      ...extra,
      requester: requester(user),
      where: target(channelId),
      reply: async (message) => ({
        platform: PLATFORM,
        channelId,
        messageId: this.#hub.postFromBot(channelId, message, interaction),
      }),
      replyPrivately: async (message) => this.#hub.tellPrivately(channelId, user.id, message, interaction),
    };
    try {
      await call(inv);
    } catch (error) {
      this.#privately(channelId, user, interaction, error);
    }
  }

  /** A refusal the Bot raised shows its own message; anything else is logged and apologised for. */
  #privately(channelId: string, user: PlaygroundUser, interaction: Interaction, error: unknown): void {
    if (!(error instanceof ValidationError))
      this.#logger.error(
        { err: error, user: user.id, action: interaction.action },
        'playground: bot call failed',
      );
    const shown = error instanceof AtelierError && error.code !== 'UNKNOWN' && error.code !== 'PIPELINE';
    this.#hub.tellPrivately(
      channelId,
      user.id,
      shown ? { text: error.userMessage } : GENERIC_FAILURE,
      interaction,
    );
  }
}

function requester(user: PlaygroundUser): Requester {
  return { platform: PLATFORM, userId: user.id, displayName: user.name };
}

function target(channelId: string): ReplyTarget {
  return { platform: PLATFORM, channelId };
}
