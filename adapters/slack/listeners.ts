/**
 * Bolt listeners: every slash command, every button click (which may open a modal: a remix form),
 * every submitted modal (`view_submission`) and `reaction_added`, handed to the bot as
 * Invocations and ReactionEvents. Each is acknowledged within Slack's 3 seconds whatever
 * the bot does, and anything the bot throws is logged and answered privately, so no user is
 * left with Slack's "operation_timeout" or with silence.
 */
import type { App, BlockAction, ButtonAction, RespondFn } from '@slack/bolt';
import type { BotPort } from '../../commands/port.js';
import type { Invocation, ReactionEvent } from '../../commands/types.js';
import { AtelierError } from '../../src/errors.js';
import type { ReplyTarget, Requester } from '../../src/jobs/types.js';
import type { Logger } from '../../src/log.js';
import { type AckFunction, AckGate } from './ack-gate.js';
import type { SlackChatAdapter } from './chat-adapter.js';
import { SlackInvocation } from './invocation.js';
import { readSubmission } from './modal.js';
import type { SlackPeople } from './people.js';
import { emojiForReaction } from './reactions.js';

export interface ListenerDeps {
  bot: Pick<BotPort, 'command' | 'action' | 'submitForm' | 'reaction' | 'parseText'>;
  adapter: SlackChatAdapter;
  people: SlackPeople;
  logger: Logger;
  /** The bot's own user id (from auth.test): its messages are the only ones reactions act on. */
  botUserId: () => string;
  /** The workspace the bot is installed in (auth.test): only its admins are team admins. */
  teamId?: () => string;
  /** How long a slash command's ack waits for a quick private answer. */
  ackDeadlineMs: number;
}

const GENERIC_FAILURE = '⚠️ Something went wrong on my side. Please try again in a moment.';

export function registerListeners(app: App, deps: ListenerDeps): void {
  app.command(/.*/, async ({ command, ack, respond }) => {
    const gate = new AckGate(ack as AckFunction, deps.ackDeadlineMs, (error) =>
      deps.logger.warn({ err: error }, 'slack: could not acknowledge a slash command'),
    );
    const teamId = command.team_id;
    deps.people.remember(command.user_id, command.user_name);
    const inv = invocation(deps, {
      requester: requester(command.user_id, command.user_name, teamId),
      isTeamAdmin: workspaceAdmin(deps, command.user_id, teamId),
      where: { platform: 'slack', channelId: command.channel_id, ...(teamId ? { teamId } : {}) },
      gate,
      respond,
    });
    try {
      await safely(deps, inv, command.command, async () => {
        const parsed = deps.bot.parseText(`${command.command} ${command.text}`);
        await deps.bot.command(inv, parsed.command, parsed.args);
      });
    } finally {
      await gate.empty();
    }
  });

  app.action<BlockAction<ButtonAction>>({ type: 'block_actions' }, async ({ body, action, ack, respond }) => {
    await ack();
    const channelId = body.channel?.id ?? (body.container.channel_id as string | undefined);
    if (!channelId || action.type !== 'button') return;
    const teamId = body.team?.id ?? body.user.team_id;
    const name = body.user.name ?? body.user.username;
    deps.people.remember(body.user.id, name);
    // A click on a reply in a thread answers in that thread.
    const threadTs = body.message?.thread_ts as string | undefined;
    const inThread = threadTs && threadTs !== body.message?.ts ? threadTs : undefined;
    const inv = invocation(deps, {
      requester: requester(body.user.id, name, teamId),
      isTeamAdmin: workspaceAdmin(deps, body.user.id, teamId),
      where: {
        platform: 'slack',
        channelId,
        ...(inThread ? { threadId: inThread } : {}),
        ...(teamId ? { teamId } : {}),
      },
      respond,
      triggerId: body.trigger_id,
    });
    await safely(deps, inv, `button ${action.action_id}`, () => deps.bot.action(inv, action.action_id));
  });

  app.view({ type: 'view_submission', callback_id: /.*/ }, async ({ ack, body, view }) => {
    // Acked at once (the modal closes); what the bot says about it comes as an ephemeral message.
    await ack();
    const submission = readSubmission(view);
    const teamId = body.team?.id ?? body.user.team_id;
    const name = body.user.name;
    deps.people.remember(body.user.id, name);
    if (!submission) {
      deps.logger.warn({ callbackId: view.callback_id }, 'slack: a submitted modal names no conversation');
      return;
    }
    const inv = invocation(deps, {
      requester: requester(body.user.id, name, teamId),
      isTeamAdmin: workspaceAdmin(deps, body.user.id, teamId),
      where: {
        platform: 'slack',
        channelId: submission.channelId,
        ...(submission.threadId ? { threadId: submission.threadId } : {}),
        ...(teamId ? { teamId } : {}),
      },
    });
    await safely(deps, inv, `form ${submission.formId}`, () =>
      deps.bot.submitForm(inv, submission.formId, submission.values),
    );
  });

  app.event('reaction_added', async ({ event, body }) => {
    const botUserId = deps.botUserId();
    // Reactions count on the bot's own messages only, and never the bot's own reactions.
    if (event.item.type !== 'message' || event.user === botUserId || event.item_user !== botUserId) return;
    const emoji = emojiForReaction(event.reaction);
    if (!emoji) return;
    const teamId = (body as { team_id?: string }).team_id;
    const { channel, ts } = event.item;
    const team = teamId ? { teamId } : {};
    const reaction: ReactionEvent = {
      requester: requester(event.user, await deps.people.displayName(event.user), teamId),
      message: { platform: 'slack', channelId: channel, messageId: ts, ...team },
      emoji,
      where: { platform: 'slack', channelId: channel, ...team },
    };
    try {
      await deps.bot.reaction(reaction);
    } catch (error) {
      deps.logger.error({ err: error, reaction: event.reaction }, 'slack: a reaction failed');
      await deps.adapter
        .tellPrivately(reaction.where, event.user, { text: GENERIC_FAILURE })
        .catch((err: unknown) => deps.logger.warn({ err }, 'slack: could not tell about a failed reaction'));
    }
  });

  app.error(async (error) => {
    deps.logger.error({ err: error }, 'slack: Bolt reported an error');
  });
}

/** Who acted. */
function requester(userId: string, name: string | undefined, teamId: string | undefined): Requester {
  return {
    platform: 'slack',
    userId,
    displayName: name || userId,
    ...(teamId ? { teamId } : {}),
  };
}

/**
 * Whether they administer this workspace, asked only when the bot checks (an admin-only command):
 * a workspace admin or owner (users.info, remembered for a minute) is a team admin, as a Discord
 * member with Manage Server is, and may change this workspace's Atelier settings. Nothing else
 * waits on users.info: a click's trigger_id lasts only 3 seconds.
 */
function workspaceAdmin(
  deps: ListenerDeps,
  userId: string,
  teamId: string | undefined,
): () => Promise<boolean> {
  return () => deps.people.isWorkspaceAdmin(userId, teamId, deps.teamId?.());
}

function invocation(
  deps: ListenerDeps,
  interaction: {
    requester: Requester;
    isTeamAdmin?: () => Promise<boolean>;
    where: ReplyTarget;
    gate?: AckGate;
    respond?: RespondFn;
    triggerId?: string;
  },
): SlackInvocation {
  return new SlackInvocation(interaction, deps.adapter, deps.logger);
}

/**
 * Runs the bot; a thrown error is answered privately: its own words for the core's typed errors
 * (e.g. a usage message from parseText), a generic line for anything else, which is logged.
 */
async function safely(
  deps: ListenerDeps,
  inv: Invocation,
  what: string,
  run: () => Promise<void>,
): Promise<void> {
  try {
    await run();
  } catch (error) {
    const known = error instanceof AtelierError;
    if (!known) deps.logger.error({ err: error, what }, 'slack: the bot failed on an interaction');
    await inv
      .replyPrivately({ text: known ? `⚠️ ${error.userMessage}` : GENERIC_FAILURE })
      .catch((err: unknown) => deps.logger.warn({ err, what }, 'slack: could not answer privately'));
  }
}
