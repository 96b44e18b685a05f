/** /queue and /cancel: a user's jobs (admins: everyone's) with positions and ETA; cancel by owner or admin. */
import { NotFoundError } from '../../src/errors.js';
import { formatDuration } from '../../src/scheduler/index.js';
import { shownPrompt, WAITING_FOR_WORKER } from '../presenter.js';
import type { Choice, CommandArgs, Invocation } from '../types.js';
import { allowanceLine } from './allowance.js';
import { type BotContext, isAdmin, tell } from './context.js';

export async function queue(ctx: BotContext, inv: Invocation, args: CommandArgs): Promise<void> {
  const all = args.all === true && isAdmin(ctx, inv.requester);
  const entries = ctx.app.scheduler.list(inv.requester, { all });
  const paused = ctx.app.scheduler.isPaused ? '⏸️ The queue is paused.\n' : '';
  const left = `\n${allowanceLine(ctx.app.scheduler.allowance(inv.requester))}`;
  if (entries.length === 0) {
    await inv.replyPrivately(
      tell(`${paused}${all ? 'The queue is empty.' : 'You have no jobs in the queue.'}${left}`),
    );
    return;
  }
  const lines = entries.map((e) => {
    const where = e.state === 'running' ? '🎨 running' : `⏳ #${e.position}`;
    const who = all ? ` · <@${e.job.spec.requester.userId}>` : '';
    const when = e.waitingForRunner ? WAITING_FOR_WORKER : `about ${formatDuration(e.etaMs)}`;
    return `${where} · ${when} · \`${e.job.id}\` · ${shownPrompt(e.job.spec.params.prompt).slice(0, 60)}${who}`;
  });
  await inv.replyPrivately(tell(`${paused}${all ? 'Every job' : 'Your jobs'}:\n${lines.join('\n')}${left}`));
}

export async function cancel(ctx: BotContext, inv: Invocation, args: CommandArgs): Promise<void> {
  let jobId = typeof args.job === 'string' ? args.job.trim() : undefined;
  if (!jobId) {
    const mine = ctx.app.scheduler.list(inv.requester);
    const newest = mine.sort((a, b) => b.job.createdAt - a.job.createdAt)[0];
    if (!newest) throw new NotFoundError('job', 'You have no job to cancel.');
    jobId = newest.job.id;
  }
  const job = await ctx.app.scheduler.cancel(jobId, inv.requester);
  await inv.replyPrivately(
    tell(`✖️ Cancelled \`${job.id}\` (${shownPrompt(job.spec.params.prompt).slice(0, 60)}).`),
  );
}

/** The user's waiting and running jobs, for /cancel's job option. */
export function cancelChoices(
  ctx: BotContext,
  inv: Pick<Invocation, 'requester'>,
  partial: string,
): Choice[] {
  const text = partial.toLowerCase();
  return ctx.app.scheduler
    .list(inv.requester, { all: false })
    .filter(
      (e) => e.job.id.toLowerCase().includes(text) || e.job.spec.params.prompt.toLowerCase().includes(text),
    )
    .slice(0, 25)
    .map((e) => ({
      name: `${e.state === 'running' ? 'running' : `#${e.position}`} · ${e.job.spec.params.prompt}`.slice(
        0,
        100,
      ),
      value: e.job.id,
    }));
}
