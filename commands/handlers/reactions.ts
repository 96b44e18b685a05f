/**
 * Reactions on results: 🔄 rerolls (anyone; counted against their own limits; answered in the
 * same channel, crediting them), ⭐ shares to the showcase channel, ✖ by the owner (or an admin)
 * deletes. Reactions on messages that are not Atelier results are ignored.
 */
import { asAtelierError } from '../../src/errors.js';
import type { ReactionEvent } from '../types.js';
import type { BotContext } from './context.js';
import { finishedJob, remove, reroll, share } from './results.js';

const REROLL = new Set(['🔄', '🔁', '♻️']);
const SHARE = new Set(['⭐', '🌟']);
const DELETE = new Set(['✖️', '✖', '❌', '🗑️']);

export async function onReaction(ctx: BotContext, event: ReactionEvent): Promise<void> {
  const emoji = event.emoji;
  if (!REROLL.has(emoji) && !SHARE.has(emoji) && !DELETE.has(emoji)) return;
  const { platform, channelId, messageId } = event.message;
  const jobId = ctx.app.store.results.findJobByMessage({ platform, channelId, messageId });
  if (!jobId) return;
  try {
    const found = finishedJob(ctx, jobId, event.where);
    if (REROLL.has(emoji)) await reroll(ctx, found.job.id, event.requester, event.where);
    else if (SHARE.has(emoji)) await share(ctx, found, undefined, event.requester, event.where);
    else await remove(ctx, found, event.requester);
  } catch (error) {
    // No interaction to answer: tell the user privately where the platform allows it.
    const adapter = ctx.messenger.adapterFor(event.requester.platform);
    await adapter
      ?.tellPrivately(event.where, event.requester.userId, { text: `⚠️ ${asAtelierError(error).userMessage}` })
      .catch((err: unknown) => ctx.app.logger.warn({ err }, 'could not answer a reaction privately'));
  }
}
