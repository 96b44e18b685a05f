/**
 * MESSAGE_REACTION_ADD → the Bot's ReactionEvent. discord.js delivers reactions on messages it
 * never cached as partials (the Reaction/Message/User partials are enabled), so only ids are
 * relied on; a missing user name or member is fetched. The bot's own reactions and other bots'
 * are ignored, as are custom server emoji (the Bot only knows unicode ones).
 */
import type { Client, MessageReaction, PartialMessageReaction, PartialUser, User } from 'discord.js';
import type { ReactionEvent } from '../../commands/types.js';
import { memberInfo, requesterOf, targetOf } from './identity.js';
import { postedMessage } from './references.js';

/**
 * A reaction's emoji as the Bot reads it: Discord already names standard emoji by their unicode
 * text (e.g. `🔄`, `✖️` with its variation selector), which the Bot matches itself, synonyms
 * included. Custom server emoji have an id and no unicode form: undefined.
 */
export function unicodeEmoji(emoji: { id: string | null; name: string | null }): string | undefined {
  if (emoji.id !== null || !emoji.name) return undefined;
  return emoji.name;
}

/** The ReactionEvent for a reaction, or undefined when it is not one the Bot should see. */
export async function reactionEventOf(
  client: Client,
  reaction: MessageReaction | PartialMessageReaction,
  reactor: User | PartialUser,
): Promise<ReactionEvent | undefined> {
  if (reactor.id === client.user?.id) return undefined;
  const emoji = unicodeEmoji(reaction.emoji);
  if (!emoji) return undefined;
  const user = reactor.partial ? await reactor.fetch() : reactor;
  if (user.bot) return undefined;
  const message = reaction.message;
  const guildId = message.guildId;
  const guild = guildId ? client.guilds.cache.get(guildId) : undefined;
  const member = guild ? (guild.members.cache.get(user.id) ?? (await guild.members.fetch(user.id))) : null;
  const channel = message.channel ?? client.channels.cache.get(message.channelId) ?? null;
  const where = targetOf(message.channelId, guildId, channel);
  return {
    requester: requesterOf(user, guildId, memberInfo(member)),
    message: postedMessage(where, message.id),
    emoji,
    where,
  };
}
