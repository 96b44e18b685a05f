/** Channels, bot-authored messages and reactions. */
import { ChannelType, MessageFlags } from 'discord-api-types/v10';
import { channelJson, messageJson, userJson } from '../serialize.js';
import type { SimChannel, SimMessage } from '../types.js';
import { DiscordErrors, FormErrors } from './errors.js';
import { afterEdit, asCreated, assertNotEmpty, readMessageBody } from './message-body.js';
import { noContent, ok, type RestDeps, type RouteDefinition } from './routes.js';

/** Flags a bot may set on a normal (non-interaction) message. */
const SENDABLE_FLAGS =
  MessageFlags.SuppressEmbeds |
  MessageFlags.SuppressNotifications |
  MessageFlags.IsVoiceMessage |
  MessageFlags.IsComponentsV2;

export function channelRoutes(deps: RestDeps): RouteDefinition[] {
  const { state } = deps;

  const channelOrThrow = (channelId: string | undefined): SimChannel => {
    const channel = channelId ? state.channels.get(channelId) : undefined;
    if (!channel) throw DiscordErrors.unknownChannel();
    return channel;
  };

  /** Ephemeral messages exist only for their user: channel routes cannot see them. */
  const messageOrThrow = (channelId: string | undefined, messageId: string | undefined): SimMessage => {
    const channel = channelOrThrow(channelId);
    const message = messageId ? state.messages.get(messageId) : undefined;
    if (!message || message.channelId !== channel.id || message.deleted || message.ephemeral) {
      throw DiscordErrors.unknownMessage();
    }
    return message;
  };

  /** Unicode emoji, or `name:id` of a custom emoji (none exist in the simulated servers). */
  const emojiOrThrow = (emoji: string | undefined): string => {
    // Plain ASCII like "repeat" is a Slack-style name, not an emoji: Discord answers Unknown Emoji.
    if (!emoji || /^[\x20-\x7e]*$/.test(emoji)) throw DiscordErrors.unknownEmoji();
    return emoji;
  };

  return [
    {
      key: 'GET /channels/:channelId',
      handle: ({ params }) => ok(channelJson(state, channelOrThrow(params.channelId))),
    },
    {
      key: 'GET /channels/:channelId/messages',
      handle: ({ params, query }) => {
        const channel = channelOrThrow(params.channelId);
        const limit = Math.min(100, Math.max(1, Number(query.get('limit') ?? 50)));
        const before = query.get('before');
        const after = query.get('after');
        const visible = state
          .channelMessages(channel.id)
          .filter((m) => !m.ephemeral)
          .filter((m) => (before ? BigInt(m.id) < BigInt(before) : true))
          .filter((m) => (after ? BigInt(m.id) > BigInt(after) : true))
          .reverse()
          .slice(0, limit);
        return ok(visible.map((m) => messageJson(state, m)));
      },
    },
    {
      key: 'POST /channels/:channelId/messages',
      handle: (ctx) => {
        const channel = channelOrThrow(ctx.params.channelId);
        const body = readMessageBody(ctx, state.uploadLimitFor(channel.id));
        assertNotEmpty(asCreated(body));
        if (body.referencedMessageId) {
          const target = state.messages.get(body.referencedMessageId);
          if (!target || target.channelId !== channel.id || target.deleted) {
            const errors = new FormErrors();
            errors.add(['message_reference'], 'MESSAGE_REFERENCE_UNKNOWN_MESSAGE', 'Unknown message');
            throw DiscordErrors.invalidFormBody(errors);
          }
        }
        const message = state.createMessage({
          ...body,
          flags: (body.flags ?? 0) & SENDABLE_FLAGS,
          channelId: channel.id,
          author: state.bot,
        });
        return ok(messageJson(state, message));
      },
    },
    {
      key: 'GET /channels/:channelId/messages/:messageId',
      handle: ({ params }) => ok(messageJson(state, messageOrThrow(params.channelId, params.messageId))),
    },
    {
      key: 'PATCH /channels/:channelId/messages/:messageId',
      handle: (ctx) => {
        const message = messageOrThrow(ctx.params.channelId, ctx.params.messageId);
        if (message.author.id !== state.bot.id) throw DiscordErrors.cannotEditOthersMessage();
        const body = readMessageBody(ctx, state.uploadLimitFor(message.channelId));
        assertNotEmpty(afterEdit(message, body));
        return ok(messageJson(state, state.editMessage(message, body)));
      },
    },
    {
      key: 'DELETE /channels/:channelId/messages/:messageId',
      handle: ({ params }) => {
        const message = messageOrThrow(params.channelId, params.messageId);
        const channel = channelOrThrow(params.channelId);
        // The bot deletes its own messages anywhere; others' only where it has Manage Messages (guilds).
        if (message.author.id !== state.bot.id && channel.type === ChannelType.DM)
          throw DiscordErrors.cannotActOnDm();
        state.deleteMessage(message);
        return noContent();
      },
    },
    {
      key: 'GET /channels/:channelId/messages/:messageId/reactions/:emoji',
      handle: ({ params }) => {
        const message = messageOrThrow(params.channelId, params.messageId);
        const reaction = message.reactions.find((r) => r.emoji === emojiOrThrow(params.emoji));
        return ok((reaction?.userIds ?? []).map((id) => userJson(state.users.get(id)!)));
      },
    },
    {
      key: 'PUT /channels/:channelId/messages/:messageId/reactions/:emoji/@me',
      handle: ({ params }) => {
        const message = messageOrThrow(params.channelId, params.messageId);
        state.addReaction(message, emojiOrThrow(params.emoji), state.bot.id);
        return noContent();
      },
    },
    {
      key: 'DELETE /channels/:channelId/messages/:messageId/reactions/:emoji/@me',
      handle: ({ params }) => {
        const message = messageOrThrow(params.channelId, params.messageId);
        state.removeReaction(message, emojiOrThrow(params.emoji), state.bot.id);
        return noContent();
      },
    },
    {
      key: 'DELETE /channels/:channelId/messages/:messageId/reactions/:emoji/:userId',
      handle: ({ params }) => {
        const message = messageOrThrow(params.channelId, params.messageId);
        if (channelOrThrow(params.channelId).type === ChannelType.DM) throw DiscordErrors.cannotActOnDm();
        state.removeReaction(message, emojiOrThrow(params.emoji), params.userId!);
        return noContent();
      },
    },
  ];
}
