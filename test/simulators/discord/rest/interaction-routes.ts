/**
 * Answering interactions: the initial callback (inside the 3-second window, once) and the
 * interaction webhook (`@original` and follow-ups, for 15 minutes). Every callback attempt is
 * recorded on the InteractionHandle, failed ones included, so tests can assert timing.
 */
import { InteractionResponseType, MessageFlags } from 'discord-api-types/v10';
import type { InteractionHandle } from '../interactions.js';
import { messageJson } from '../serialize.js';
import type { SimMessage } from '../types.js';
import { DiscordErrors, DiscordHttpError, FormErrors, LengthErrors } from './errors.js';
import { afterEdit, asCreated, assertNotEmpty, readMessageBody } from './message-body.js';
import { readModal } from './modal.js';
import {
  noContent,
  ok,
  type RequestContext,
  type RestDeps,
  type RouteDefinition,
  type RouteResponse,
} from './routes.js';

const ALLOWED_CALLBACKS: Record<InteractionHandle['kind'], InteractionResponseType[]> = {
  command: [
    InteractionResponseType.ChannelMessageWithSource,
    InteractionResponseType.DeferredChannelMessageWithSource,
    InteractionResponseType.Modal,
  ],
  autocomplete: [InteractionResponseType.ApplicationCommandAutocompleteResult],
  component: [
    InteractionResponseType.ChannelMessageWithSource,
    InteractionResponseType.DeferredChannelMessageWithSource,
    InteractionResponseType.DeferredMessageUpdate,
    InteractionResponseType.UpdateMessage,
    InteractionResponseType.Modal,
  ],
  // A modal cannot answer a modal; 6 and 7 only when the modal came from a message's component.
  modal: [
    InteractionResponseType.ChannelMessageWithSource,
    InteractionResponseType.DeferredChannelMessageWithSource,
    InteractionResponseType.DeferredMessageUpdate,
    InteractionResponseType.UpdateMessage,
  ],
};

export function interactionRoutes(deps: RestDeps): RouteDefinition[] {
  const { state } = deps;

  const createResponseMessage = (
    handle: InteractionHandle,
    ctx: RequestContext,
    deferred: boolean,
  ): SimMessage => {
    const data = ((ctx.body as { data?: unknown })?.data ?? {}) as Record<string, unknown>;
    const requestedFlags = typeof data.flags === 'number' ? data.flags : 0;
    if (deferred) {
      return state.createMessage({
        channelId: handle.channel.id,
        author: state.bot,
        flags: MessageFlags.Loading | (requestedFlags & MessageFlags.Ephemeral),
        interactionId: handle.id,
        webhookId: state.applicationId,
        ephemeralTo: handle.user.id,
      });
    }
    const body = readMessageBody({ ...ctx, body: data }, state.uploadLimitFor(handle.channel.id));
    assertNotEmpty(asCreated(body));
    return state.createMessage({
      ...body,
      channelId: handle.channel.id,
      author: state.bot,
      interactionId: handle.id,
      webhookId: state.applicationId,
      ephemeralTo: handle.user.id,
    });
  };

  const callback = (handle: InteractionHandle, ctx: RequestContext): RouteResponse => {
    const type = (ctx.body as { type?: unknown })?.type as InteractionResponseType;
    if (handle.isExpired()) throw DiscordErrors.unknownInteraction();
    if (handle.acknowledged) throw DiscordErrors.alreadyAcknowledged();
    const updatesNothing =
      handle.message === null &&
      (type === InteractionResponseType.DeferredMessageUpdate ||
        type === InteractionResponseType.UpdateMessage);
    if (!ALLOWED_CALLBACKS[handle.kind].includes(type) || updatesNothing) {
      const errors = new FormErrors();
      errors.add(
        ['type'],
        'INTERACTION_RESPONSE_TYPE_INVALID',
        `Interaction response type ${String(type)} is not valid here`,
      );
      throw DiscordErrors.invalidFormBody(errors);
    }
    let message: SimMessage | undefined;
    switch (type) {
      case InteractionResponseType.ChannelMessageWithSource:
      case InteractionResponseType.DeferredChannelMessageWithSource:
        message = createResponseMessage(
          handle,
          ctx,
          type === InteractionResponseType.DeferredChannelMessageWithSource,
        );
        handle.originalMessageId = message.id;
        state.interactionMetadata.get(handle.id)!.originalOf = message.id;
        break;
      case InteractionResponseType.DeferredMessageUpdate:
        message = handle.message!;
        handle.originalMessageId = message.id;
        break;
      case InteractionResponseType.UpdateMessage: {
        const target = handle.message!;
        const data = ((ctx.body as { data?: unknown })?.data ?? {}) as Record<string, unknown>;
        const body = readMessageBody({ ...ctx, body: data }, state.uploadLimitFor(target.channelId));
        assertNotEmpty(afterEdit(target, body));
        message = state.editMessage(target, body);
        handle.originalMessageId = message.id;
        break;
      }
      case InteractionResponseType.ApplicationCommandAutocompleteResult:
        validateChoices((ctx.body as { data?: { choices?: unknown } })?.data?.choices);
        break;
      case InteractionResponseType.Modal:
        // The person now sees the modal; nothing is posted (d.submitModal sends what they type).
        handle.modal = readModal((ctx.body as { data?: unknown })?.data);
        break;
      default:
        break;
    }
    const wantsResponse = ctx.query.get('with_response') === 'true';
    if (!wantsResponse) return noContent();
    return ok({
      interaction: {
        id: handle.id,
        type: handle.type,
        activity_instance_id: null,
        ...(message
          ? {
              response_message_id: message.id,
              response_message_loading: (message.flags & MessageFlags.Loading) !== 0,
              response_message_ephemeral: message.ephemeral,
            }
          : {}),
      },
      resource: { type, ...(message ? { message: messageJson(state, message) } : {}) },
    });
  };

  const byToken = (applicationId: string | undefined, token: string | undefined): InteractionHandle => {
    const handle = [...deps.interactions.values()].find((h) => h.token === token);
    if (!handle || applicationId !== state.applicationId || !handle.acknowledged)
      throw DiscordErrors.unknownWebhook();
    if (!handle.tokenValid()) throw DiscordErrors.invalidWebhookToken();
    return handle;
  };

  const webhookMessage = (handle: InteractionHandle, messageId: string | undefined): SimMessage => {
    const id = messageId === '@original' ? handle.originalMessageId : messageId;
    const mine =
      id === handle.originalMessageId || (id !== null && id !== undefined && handle.followUpIds.includes(id));
    const message = mine && id ? state.messages.get(id) : undefined;
    if (!message || message.deleted) throw DiscordErrors.unknownMessage();
    return message;
  };

  return [
    {
      key: 'POST /interactions/:interactionId/:token/callback',
      auth: false,
      rateLimited: false,
      handle: (ctx) => {
        const handle = deps.interactions.get(ctx.params.interactionId!);
        if (!handle || handle.token !== ctx.params.token) throw DiscordErrors.unknownInteraction();
        const at = Date.now();
        const body = ctx.body as
          | { type?: InteractionResponseType; data?: Record<string, unknown> }
          | undefined;
        const record = (status: number, errorCode: number | null) => {
          const entry = {
            type: body?.type as InteractionResponseType,
            data: body?.data,
            at,
            latencyMs: at - handle.sentAt,
            status,
            errorCode,
          };
          handle.callbacks.push(entry);
          state.events.emit('interactionCallback', handle, entry);
        };
        try {
          const response = callback(handle, ctx);
          record(response.status, null);
          return response;
        } catch (error) {
          if (error instanceof DiscordHttpError) record(error.status, error.body.code);
          throw error;
        }
      },
    },
    {
      key: 'POST /webhooks/:applicationId/:token',
      auth: false,
      handle: (ctx) => {
        const handle = byToken(ctx.params.applicationId, ctx.params.token);
        const body = readMessageBody(ctx, state.uploadLimitFor(handle.channel.id));
        let message: SimMessage;
        if (handle.awaitsDeferredContent) {
          // Discord fills the deferred "thinking…" message with the first follow-up.
          const original = handle.original()!;
          assertNotEmpty(afterEdit(original, body));
          message = state.editMessage(original, body);
        } else {
          assertNotEmpty(asCreated(body));
          message = state.createMessage({
            ...body,
            channelId: handle.channel.id,
            author: state.bot,
            interactionId: handle.id,
            webhookId: state.applicationId,
            ephemeralTo: handle.user.id,
          });
          handle.followUpIds.push(message.id);
        }
        return ctx.query.get('wait') === 'false' ? noContent() : ok(messageJson(state, message));
      },
    },
    {
      key: 'GET /webhooks/:applicationId/:token/messages/:messageId',
      auth: false,
      handle: ({ params }) => {
        const handle = byToken(params.applicationId, params.token);
        return ok(messageJson(state, webhookMessage(handle, params.messageId)));
      },
    },
    {
      key: 'PATCH /webhooks/:applicationId/:token/messages/:messageId',
      auth: false,
      handle: (ctx) => {
        const handle = byToken(ctx.params.applicationId, ctx.params.token);
        const message = webhookMessage(handle, ctx.params.messageId);
        const body = readMessageBody(ctx, state.uploadLimitFor(message.channelId));
        assertNotEmpty(afterEdit(message, body));
        return ok(messageJson(state, state.editMessage(message, body)));
      },
    },
    {
      key: 'DELETE /webhooks/:applicationId/:token/messages/:messageId',
      auth: false,
      handle: ({ params }) => {
        const handle = byToken(params.applicationId, params.token);
        state.deleteMessage(webhookMessage(handle, params.messageId));
        return noContent();
      },
    },
  ];
}

/** Autocomplete answers: ≤ 25 choices, names 1–100 chars (50035 otherwise). */
function validateChoices(choices: unknown): void {
  const errors = new FormErrors();
  if (!Array.isArray(choices)) {
    errors.add(['data', 'choices'], LengthErrors.required().code, LengthErrors.required().message);
  } else {
    if (choices.length > 25)
      errors.add(['data', 'choices'], LengthErrors.atMost(25).code, LengthErrors.atMost(25).message);
    choices.forEach((choice: { name?: unknown }, i) => {
      if (typeof choice?.name !== 'string' || choice.name.length < 1 || choice.name.length > 100) {
        errors.add(
          ['data', 'choices', i, 'name'],
          LengthErrors.between(1, 100).code,
          LengthErrors.between(1, 100).message,
        );
      }
    });
  }
  errors.throwIfAny();
}
