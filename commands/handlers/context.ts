/** What every command, button and reaction handler works with. */
import { AtelierError, asAtelierError } from '../../src/errors.js';
import type { JobSpec, ReplyTarget, Requester } from '../../src/jobs/types.js';
import type { ValidationOptions } from '../../src/jobs/validate.js';
import type { BotCore } from '../core.js';
import type { JobMessenger } from '../messenger.js';
import { queuedView } from '../presenter.js';
import type { ChatMessage, CommandDef, Invocation, PostedMessage } from '../types.js';

export interface BotContext {
  app: BotCore;
  messenger: JobMessenger;
  commands(): CommandDef[];
}

/** Validation options for `requester`'s team: the bot-wide blocked terms plus the team's own. */
export function validationFor(ctx: BotContext, requester: Requester): ValidationOptions {
  const base = ctx.app.validation();
  if (!requester.teamId) return base;
  const team = ctx.app.store.teamSettings.get(requester.platform, requester.teamId);
  return team.blockedTerms?.length
    ? { ...base, blockedTerms: [...base.blockedTerms, ...team.blockedTerms] }
    : base;
}

export function isAdmin(ctx: BotContext, requester: Requester): boolean {
  return ctx.app.scheduler.isAdmin(requester);
}

export function tell(text: string): ChatMessage {
  return { text };
}

/**
 * Enqueues a job and shows it: the answer to the interaction when there is one (it becomes the
 * job's message), else a new message where the job answers. Refusals go privately to the user.
 */
export async function enqueueAndShow(ctx: BotContext, spec: JobSpec, inv?: Invocation): Promise<void> {
  const receipt = await ctx.app.scheduler.enqueue(spec);
  const view = queuedView(receipt.job, receipt.position, receipt.etaMs, receipt);
  if (receipt.paused) view.text += '\n⏸️ The queue is paused by an admin; your job waits until it resumes.';
  let posted: PostedMessage;
  try {
    if (inv) posted = await inv.reply(view);
    else {
      const adapter = ctx.messenger.adapterFor(spec.reply.platform);
      if (!adapter) throw new Error(`no adapter for ${spec.reply.platform}`);
      posted = await adapter.post(spec.reply, view);
    }
  } catch (error) {
    // Nowhere to show it (the bot is not in the channel, the message failed): don't make an
    // image nobody will see, and give the user's images back.
    ctx.messenger.forget(receipt.job.id);
    await ctx.app.scheduler.cancel(receipt.job.id, spec.requester, { refund: true }).catch(() => {});
    throw error;
  }
  ctx.messenger.attach(receipt.job.id, posted);
}

/** Where a job started from `inv` answers: the same channel and thread. */
export function replyTargetOf(where: ReplyTarget): ReplyTarget {
  const { platform, channelId, threadId, teamId, extra } = where;
  return {
    platform,
    channelId,
    ...(threadId ? { threadId } : {}),
    ...(teamId ? { teamId } : {}),
    ...(extra ? { extra } : {}),
  };
}

/** Runs a handler; anything it throws becomes a private answer (typed errors say what to do). */
export async function answering(ctx: BotContext, inv: Invocation, run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (error) {
    const e = asAtelierError(error);
    if (!(error instanceof AtelierError)) ctx.app.logger.error({ err: error }, 'command failed');
    await inv.replyPrivately(tell(`⚠️ ${e.userMessage}`)).catch((err: unknown) => {
      ctx.app.logger.warn({ err }, 'could not answer privately');
    });
  }
}
