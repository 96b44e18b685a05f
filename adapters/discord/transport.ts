/**
 * The REST calls the surface makes, typed, through discord.js's REST client — which owns rate
 * limits: it queues per bucket, waits out 429s (`retry_after`) and retries, so nothing here ever
 * loops on a 429. Interaction callbacks and webhook routes authenticate with the interaction
 * token, not the bot token. Every failure is rethrown once as a DiscordRequestError.
 */
import {
  type APIChannel,
  type APIMessage,
  type APIModalInteractionResponseCallbackData,
  InteractionResponseType,
  type REST,
  type RESTPostAPIInteractionCallbackWithResponseResult,
  Routes,
} from 'discord.js';
import { asDiscordError, DiscordNotConnectedError } from './errors.js';
import type { InteractionReference } from './references.js';
import type { RenderedMessage } from './render.js';

/** The interaction itself (id + token) for its one initial callback. */
export interface InteractionHandleRef {
  id: string;
  token: string;
}

export class DiscordTransport {
  #rest: REST | undefined;

  /** Sends through `rest` from now on (the client's, once logged in); `undefined` stops sending. */
  use(rest: REST | undefined): void {
    this.#rest = rest;
  }

  get connected(): boolean {
    return this.#rest !== undefined;
  }

  /**
   * The initial answer (type 4: a message, ephemeral or not), returning the message Discord
   * created — `with_response` saves a second request for its id.
   */
  async respondWithMessage(interaction: InteractionHandleRef, message: RenderedMessage): Promise<APIMessage> {
    const result = await this.#call('answer an interaction', (rest) =>
      rest.post(Routes.interactionCallback(interaction.id, interaction.token), {
        auth: false,
        body: { type: InteractionResponseType.ChannelMessageWithSource, data: message.body },
        files: message.files,
        query: new URLSearchParams({ with_response: 'true' }),
      }),
    );
    const created = (result as RESTPostAPIInteractionCallbackWithResponseResult).resource?.message;
    if (!created) throw asDiscordError(new Error('Discord returned no message'), 'answer an interaction');
    return created;
  }

  /** Type 5 (a public "thinking…" message to fill later) or 6 (acknowledge a click silently). */
  async defer(interaction: InteractionHandleRef, kind: 'reply' | 'update'): Promise<void> {
    const type =
      kind === 'reply'
        ? InteractionResponseType.DeferredChannelMessageWithSource
        : InteractionResponseType.DeferredMessageUpdate;
    await this.#call('defer an interaction', (rest) =>
      rest.post(Routes.interactionCallback(interaction.id, interaction.token), {
        auth: false,
        body: { type },
      }),
    );
  }

  /** Type 9: a modal, as the first and only answer to a click (Discord allows it only then). */
  async showModal(
    interaction: InteractionHandleRef,
    modal: APIModalInteractionResponseCallbackData,
  ): Promise<void> {
    await this.#call('open a modal', (rest) =>
      rest.post(Routes.interactionCallback(interaction.id, interaction.token), {
        auth: false,
        body: { type: InteractionResponseType.Modal, data: modal },
      }),
    );
  }

  /** Type 8: autocomplete suggestions. */
  async suggest(interaction: InteractionHandleRef, choices: { name: string; value: string | number }[]) {
    await this.#call('answer autocomplete', (rest) =>
      rest.post(Routes.interactionCallback(interaction.id, interaction.token), {
        auth: false,
        body: { type: InteractionResponseType.ApplicationCommandAutocompleteResult, data: { choices } },
      }),
    );
  }

  /** Reads an interaction's message (`@original` or a follow-up) through its webhook. */
  async getInteractionMessage(interaction: InteractionReference, messageId: string): Promise<APIMessage> {
    return (await this.#call('read an interaction message', (rest) =>
      rest.get(Routes.webhookMessage(interaction.applicationId, interaction.token, messageId), {
        auth: false,
      }),
    )) as APIMessage;
  }

  /** Edits an interaction's message (`@original` or a follow-up) through its webhook. */
  async editInteractionMessage(
    interaction: InteractionReference,
    messageId: string,
    message: RenderedMessage,
  ): Promise<APIMessage> {
    return (await this.#call('edit an interaction message', (rest) =>
      rest.patch(Routes.webhookMessage(interaction.applicationId, interaction.token, messageId), {
        auth: false,
        body: message.body,
        files: message.files,
      }),
    )) as APIMessage;
  }

  async deleteInteractionMessage(interaction: InteractionReference, messageId: string): Promise<void> {
    await this.#call('delete an interaction message', (rest) =>
      rest.delete(Routes.webhookMessage(interaction.applicationId, interaction.token, messageId), {
        auth: false,
      }),
    );
  }

  /** A follow-up message (public or ephemeral per the body's flags). */
  async followUp(interaction: InteractionReference, message: RenderedMessage): Promise<APIMessage> {
    return (await this.#call('send a follow-up', (rest) =>
      rest.post(Routes.webhook(interaction.applicationId, interaction.token), {
        auth: false,
        body: message.body,
        files: message.files,
        query: new URLSearchParams({ wait: 'true' }),
      }),
    )) as APIMessage;
  }

  async createMessage(channelId: string, message: RenderedMessage): Promise<APIMessage> {
    return (await this.#call('post a message', (rest) =>
      rest.post(Routes.channelMessages(channelId), { body: message.body, files: message.files }),
    )) as APIMessage;
  }

  async editMessage(channelId: string, messageId: string, message: RenderedMessage): Promise<APIMessage> {
    return (await this.#call('edit a message', (rest) =>
      rest.patch(Routes.channelMessage(channelId, messageId), { body: message.body, files: message.files }),
    )) as APIMessage;
  }

  async deleteMessage(channelId: string, messageId: string): Promise<void> {
    await this.#call('delete a message', (rest) => rest.delete(Routes.channelMessage(channelId, messageId)));
  }

  /** The DM channel with `userId` (Discord returns the existing one when there is one). */
  async openDm(userId: string): Promise<APIChannel> {
    return (await this.#call('open a DM', (rest) =>
      rest.post(Routes.userChannels(), { body: { recipient_id: userId } }),
    )) as APIChannel;
  }

  async #call<T>(what: string, send: (rest: REST) => Promise<T>): Promise<T> {
    const rest = this.#rest;
    if (!rest) throw new DiscordNotConnectedError(what);
    try {
      return await send(rest);
    } catch (error) {
      throw asDiscordError(error, what);
    }
  }
}
