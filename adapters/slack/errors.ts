/**
 * Slack's answers turned into the core's typed errors, so the bot can react to "that message is
 * gone" or "I am not in that channel" the same way on every platform.
 */
import { ForbiddenError, NotFoundError } from '../../src/errors.js';

/** The `error` code of a Web API refusal (`{ ok: false, error }`), if `error` is one. */
export function slackErrorCode(error: unknown): string | undefined {
  const data = (error as { data?: { error?: unknown } } | undefined)?.data;
  return typeof data?.error === 'string' ? data.error : undefined;
}

const GONE = new Set(['message_not_found', 'channel_not_found', 'thread_not_found', 'cant_update_message']);
const NOT_IN_CHANNEL = new Set(['not_in_channel', 'is_archived', 'restricted_action']);

/** The bot cannot post where it was asked to: the user is told how to fix it. */
export class SlackNotInChannelError extends ForbiddenError {
  constructor(
    readonly channelId: string,
    readonly slackError: string,
  ) {
    super(
      "I can't post in this conversation. Invite me with `/invite @atelier` (or use me in a channel I'm in) and try again.",
    );
  }
}

/**
 * Rethrows a Web API failure as a typed error: NotFoundError for messages or channels that are
 * gone, SlackNotInChannelError when the bot is not a member; anything else unchanged.
 */
export function asSlackError(error: unknown, what: { channelId: string; messageId?: string }): unknown {
  const code = slackErrorCode(error);
  if (!code) return error;
  if (GONE.has(code)) {
    const target = what.messageId
      ? `Slack message ${what.channelId}/${what.messageId}`
      : `Slack channel ${what.channelId}`;
    const gone = new NotFoundError(target, 'That message is gone.');
    gone.cause = error;
    return gone;
  }
  if (NOT_IN_CHANNEL.has(code)) return new SlackNotInChannelError(what.channelId, code);
  return error;
}
