/**
 * /atelier …: admin settings for a server or workspace (showcase channel, limits, default model),
 * pause/resume, status.
 */
import { ForbiddenError, ValidationError } from '../../src/errors.js';
import { DEFAULT_MODEL } from '../../src/jobs/models.js';
import { validateUserDefaults } from '../../src/jobs/validate.js';
import { formatDuration } from '../../src/scheduler/index.js';
import type { LimitOverrides } from '../../src/store/types.js';
import type { CommandArgs, Invocation } from '../types.js';
import { type BotContext, isAdmin, tell, validationFor } from './context.js';

export async function admin(ctx: BotContext, inv: Invocation, sub: string, args: CommandArgs): Promise<void> {
  // A server's own admins may change its settings; the queue itself is the bot admins'.
  const teamLevel = sub === 'showcase' || sub === 'limits' || sub === 'model';
  if (!isAdmin(ctx, inv.requester) && !(teamLevel && (await isTeamAdmin(inv)))) {
    // A Slack team is a workspace; Discord's (and the default) a server.
    const team = inv.requester.platform === 'slack' ? 'workspace' : 'server';
    throw new ForbiddenError(
      teamLevel
        ? `Only Atelier admins or the admins of this ${team} can change its settings.`
        : 'Only Atelier admins can use /atelier.',
    );
  }
  const { platform, teamId } = inv.requester;
  const teamOnly = () => {
    if (!teamId)
      throw new ValidationError(
        'team',
        'This setting belongs to a server or workspace; use it in one of its channels.',
      );
    return teamId;
  };
  switch (sub) {
    case 'showcase': {
      const channel = String(args.channel ?? '').trim();
      if (!channel) throw new ValidationError('channel', 'Name the showcase channel.');
      ctx.app.store.teamSettings.patch(platform, teamOnly(), { showcaseChannelId: channel });
      await inv.replyPrivately(tell(`⭐ Shared images now go to <#${channel}>.`));
      return;
    }
    case 'limits': {
      const team = teamOnly();
      if (args.reset === true) {
        ctx.app.store.teamSettings.patch(platform, team, { limits: undefined });
        await inv.replyPrivately(tell('Limits are back to the bot-wide ones.'));
        return;
      }
      const current = ctx.app.store.teamSettings.get(platform, team).limits ?? {};
      const user = ctx.app.config.limits.user;
      const base = current.user || { images: user.images, perMs: user.perSeconds * 1000, burst: user.burst };
      const next: LimitOverrides = { ...current };
      if (args.images !== undefined || args.minutes !== undefined || args.burst !== undefined) {
        next.user = {
          images: Number(args.images ?? base.images),
          perMs: args.minutes !== undefined ? Number(args.minutes) * 60_000 : base.perMs,
          burst: Number(args.burst ?? base.burst),
        };
      }
      if (args.queued !== undefined) next.maxQueuedPerUser = Number(args.queued);
      ctx.app.store.teamSettings.patch(platform, team, { limits: next });
      const rule = next.user || base;
      await inv.replyPrivately(
        tell(
          `Limits here: ${rule.images} images per ${formatDuration(rule.perMs)} per user, ${rule.burst} at once, ` +
            `${next.maxQueuedPerUser ?? ctx.app.config.queue.maxQueuedPerUser} jobs waiting per user.`,
        ),
      );
      return;
    }
    case 'model': {
      const team = teamOnly();
      const v = validationFor(ctx, inv.requester);
      const botDefault = v.defaultModel ?? v.models?.[0]?.name ?? 'the only model';
      if (args.model === undefined) {
        const current = ctx.app.store.teamSettings.get(platform, team).model;
        await inv.replyPrivately(
          tell(
            current
              ? `New images here use the model ${current} unless people pick one (the bot-wide default is ${botDefault}).`
              : `New images here use the bot-wide default model, ${botDefault}, unless people pick one.`,
          ),
        );
        return;
      }
      // The same check (and did-you-mean) as /settings model:.
      const { model } = validateUserDefaults({ model: args.model }, v);
      const cleared = model === DEFAULT_MODEL;
      ctx.app.store.teamSettings.patch(platform, team, { model: cleared ? undefined : model });
      await inv.replyPrivately(
        tell(
          cleared
            ? `New images here use the bot-wide default model, ${botDefault}, again.`
            : `New images here now use the model ${model} unless people pick one (their own /settings model: still wins).`,
        ),
      );
      return;
    }
    case 'pause':
      ctx.app.scheduler.pause(inv.requester);
      await inv.replyPrivately(
        tell('⏸️ Paused: new jobs wait; the running one finishes. /atelier resume to continue.'),
      );
      return;
    case 'resume':
      ctx.app.scheduler.resume(inv.requester);
      await inv.replyPrivately(tell('▶️ Resumed.'));
      return;
    case 'status': {
      const s = ctx.app.scheduler;
      const models = ctx.app.validation().models ?? [];
      await inv.replyPrivately(
        tell(
          `Queue: ${s.size} waiting, ${s.pending} running${s.isPaused ? ' (paused)' : ''}.` +
            (models.length > 1 ? `\nModels: ${models.map((m) => m.name).join(', ')}.` : ''),
        ),
      );
      return;
    }
    default:
      throw new ValidationError('command', 'Use /atelier showcase, limits, model, pause, resume or status.');
  }
}

/** The platform's word that the requester administers their team, looked up only now if it is lazy. */
async function isTeamAdmin(inv: Invocation): Promise<boolean> {
  if (inv.requester.isTeamAdmin) return true;
  return (await inv.isTeamAdmin?.()) === true;
}
