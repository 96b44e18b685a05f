/**
 * The ChatAdapter port on Discord: how the Bot posts, edits and deletes job messages and tells
 * someone something privately outside an interaction. Edits of interaction responses go through
 * the interaction webhook while its token lives and through the channel route after (a restart
 * or a long queue can outlast the 15-minute token); both reach the same message.
 */
import { type APIMessage, MessageFlags } from 'discord.js';
import { decodeButton } from '../../commands/custom-id.js';
import type { ChatAdapter, ChatMessage, PostedMessage } from '../../commands/types.js';
import type { ReplyTarget } from '../../src/jobs/types.js';
import type { Logger } from '../../src/log.js';
import { DiscordRequestError } from './errors.js';
import {
  channelOf,
  type InteractionReference,
  interactionOf,
  PLATFORM,
  postedMessage,
  tokenUsable,
} from './references.js';
import { type RenderedMessage, renderMessage } from './render.js';
import type { DiscordTransport } from './transport.js';
import type { UploadLimits } from './upload-limits.js';

export class DiscordChatAdapter implements ChatAdapter {
  readonly platform = PLATFORM;
  readonly #transport: DiscordTransport;
  readonly #limits: UploadLimits;
  readonly #logger: Logger;
  /** DM channel ids by user id: Discord returns the same channel every time, so ask once. */
  readonly #dmChannels = new Map<string, string>();

  constructor(options: { transport: DiscordTransport; limits: UploadLimits; logger: Logger }) {
    this.#transport = options.transport;
    this.#limits = options.limits;
    this.#logger = options.logger;
  }

  async post(target: ReplyTarget, message: ChatMessage): Promise<PostedMessage> {
    const sent = await this.#transport.createMessage(channelOf(target), this.#render(message));
    return postedMessage(target, sent.id);
  }

  async edit(posted: PostedMessage, next: ChatMessage): Promise<void> {
    const rendered = this.#render(next);
    await this.#viaInteraction(
      posted,
      (interaction) => this.#transport.editInteractionMessage(interaction, posted.messageId, rendered),
      () => this.#transport.editMessage(channelOf(posted), posted.messageId, rendered),
    );
  }

  /** Deleting a message that is already gone succeeds: the outcome is the same. */
  async delete(posted: PostedMessage): Promise<void> {
    try {
      await this.#viaInteraction(
        posted,
        (interaction) => this.#transport.deleteInteractionMessage(interaction, posted.messageId),
        () => this.#transport.deleteMessage(channelOf(posted), posted.messageId),
      );
    } catch (error) {
      if (!(error instanceof DiscordRequestError && error.gone)) throw error;
    }
  }

  /**
   * An ephemeral follow-up when `target` is a live interaction of `userId`'s, else a DM. A
   * person who does not accept DMs from the bot cannot be reached: that is logged, not thrown.
   */
  async tellPrivately(target: ReplyTarget, userId: string, message: ChatMessage): Promise<void> {
    const interaction = interactionOf(target);
    if (interaction?.userId === userId && tokenUsable(interaction)) {
      try {
        await this.#transport.followUp(interaction, this.#render(message, true));
        return;
      } catch (error) {
        if (!(error instanceof DiscordRequestError && error.tokenExpired)) throw error;
      }
    }
    try {
      await this.#transport.createMessage(await this.#dmChannel(userId), this.#render(message));
    } catch (error) {
      if (error instanceof DiscordRequestError && error.code === 'FORBIDDEN') {
        this.#logger.info({ userId, discordCode: error.discordCode }, 'discord: cannot DM this user');
        return;
      }
      throw error;
    }
  }

  uploadLimit(target: ReplyTarget): number {
    return this.#limits.limitFor(target.teamId);
  }

  /**
   * The answer to the interaction a job came from, after a restart that lost its message id: the
   * interaction's `@original`, read with its token (stored with the job; usable for 15 minutes),
   * if it shows the job (a button of `jobId`) or is still the command's "thinking…" placeholder.
   * A click answered with a follow-up (after a silent acknowledgement) is not found: its
   * `@original` is the message clicked, which shows another job.
   */
  async findAnswer(target: ReplyTarget, jobId: string): Promise<PostedMessage | undefined> {
    const interaction = interactionOf(target);
    if (!interaction || !tokenUsable(interaction)) return undefined;
    let original: APIMessage;
    try {
      original = await this.#transport.getInteractionMessage(interaction, '@original');
    } catch (error) {
      // Never answered (Discord knows no webhook message for it yet), deleted, or expired.
      if (error instanceof DiscordRequestError && (error.tokenExpired || error.gone)) return undefined;
      throw error;
    }
    const placeholder = ((original.flags ?? 0) & MessageFlags.Loading) !== 0;
    if (!placeholder && !showsJob(original, jobId)) return undefined;
    return postedMessage(target, original.id, interaction);
  }

  /** Tries the interaction webhook while the token lives; falls back to the channel route. */
  async #viaInteraction<T>(
    posted: PostedMessage,
    withToken: (interaction: InteractionReference) => Promise<T>,
    withChannel: () => Promise<T>,
  ): Promise<T> {
    const interaction = interactionOf(posted);
    if (interaction && tokenUsable(interaction)) {
      try {
        return await withToken(interaction);
      } catch (error) {
        if (!(error instanceof DiscordRequestError && error.tokenExpired)) throw error;
        this.#logger.debug(
          { messageId: posted.messageId },
          'discord: interaction token refused; using the channel',
        );
      }
    }
    return withChannel();
  }

  async #dmChannel(userId: string): Promise<string> {
    let channelId = this.#dmChannels.get(userId);
    if (!channelId) {
      channelId = (await this.#transport.openDm(userId)).id;
      this.#dmChannels.set(userId, channelId);
    }
    return channelId;
  }

  #render(message: ChatMessage, ephemeral = false): RenderedMessage {
    const rendered = renderMessage(message, { ephemeral });
    if (rendered.dropped.length > 0) {
      this.#logger.warn({ dropped: rendered.dropped }, 'discord: message trimmed to fit Discord limits');
    }
    return rendered;
  }
}

/** Whether a message carries a button of `jobId` (every view of a job has one: Cancel, or the result's). */
function showsJob(message: Pick<APIMessage, 'components'>, jobId: string): boolean {
  const ids: string[] = [];
  const collect = (component: unknown) => {
    const { custom_id: id, components } = component as { custom_id?: unknown; components?: unknown };
    if (typeof id === 'string') ids.push(id);
    if (Array.isArray(components)) for (const child of components) collect(child);
  };
  for (const component of message.components ?? []) collect(component);
  return ids.some((id) => decodeButton(id)?.jobId === jobId);
}
