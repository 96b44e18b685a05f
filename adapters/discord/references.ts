/**
 * What a PostedMessage or ReplyTarget carries for Discord, JSON-serialisable so it survives a
 * restart in the job's row: the channel (thread) and message ids, and — for interaction
 * responses — the interaction token, usable for 15 minutes after the interaction was created.
 * Within that time edits go through the interaction webhook (no channel permission needed,
 * its own rate-limit bucket); after it, through the channel message routes, which accept the
 * bot's public interaction responses too.
 * @see https://discord.com/developers/docs/interactions/receiving-and-responding#followup-messages
 */
import type { PostedMessage } from '../../commands/types.js';
import type { ReplyTarget } from '../../src/jobs/types.js';

export const PLATFORM = 'discord';

/** Interaction tokens are valid for 15 minutes; a minute of margin covers clock skew and slow requests. */
export const INTERACTION_TOKEN_TTL_MS = 15 * 60_000;
const TOKEN_MARGIN_MS = 60_000;

/** Stored under `extra.interaction` of PostedMessages and ReplyTargets. */
export interface InteractionReference {
  applicationId: string;
  token: string;
  /** When Discord created the interaction (ms since the epoch, from its snowflake). */
  createdAt: number;
  /** Who invoked it: the only person an ephemeral follow-up can reach. */
  userId: string;
}

/** The channel a message is posted in: the thread when there is one. */
export function channelOf(where: Pick<ReplyTarget, 'channelId' | 'threadId'>): string {
  return where.threadId ?? where.channelId;
}

export function interactionOf(
  holder: Pick<PostedMessage | ReplyTarget, 'extra'> | undefined,
): InteractionReference | undefined {
  const value = holder?.extra?.interaction as Partial<InteractionReference> | undefined;
  if (
    typeof value?.applicationId !== 'string' ||
    typeof value.token !== 'string' ||
    typeof value.createdAt !== 'number' ||
    typeof value.userId !== 'string'
  ) {
    return undefined;
  }
  return value as InteractionReference;
}

/** Whether the interaction token can still be used at `now`. */
export function tokenUsable(reference: InteractionReference | undefined, now = Date.now()): boolean {
  return reference !== undefined && now - reference.createdAt < INTERACTION_TOKEN_TTL_MS - TOKEN_MARGIN_MS;
}

/** A PostedMessage for a message in `where`; `interaction` when it answers one. */
export function postedMessage(
  where: Pick<ReplyTarget, 'channelId' | 'threadId' | 'teamId'>,
  messageId: string,
  interaction?: InteractionReference,
): PostedMessage {
  return {
    platform: PLATFORM,
    channelId: where.channelId,
    messageId,
    ...(where.threadId ? { threadId: where.threadId } : {}),
    ...(where.teamId ? { teamId: where.teamId } : {}),
    ...(interaction ? { extra: { interaction: { ...interaction } } } : {}),
  };
}
