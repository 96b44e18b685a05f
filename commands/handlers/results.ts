/**
 * What people do with a result, from a button or a reaction: view one image alone (U), make
 * variations (V1–V4, Vary (Subtle), Vary (Strong)), reroll, upscale, share to the showcase channel,
 * delete. Every action resolves its job from the database, so it works on any earlier result after
 * restarts; a forged, stale or deleted reference gets a polite private answer.
 *
 * Remix (`/settings remix:true`): Reroll and the variation buttons first open a form with the
 * prompt, where the surface has forms; the job is queued when the form comes back (`submitRemix`).
 */
import { randomInt } from 'node:crypto';
import { ForbiddenError, NotFoundError, ValidationError } from '../../src/errors.js';
import { currentLoras } from '../../src/jobs/loras.js';
import { configuredModelOf, jobModelOf, modelGoneError } from '../../src/jobs/models.js';
import type {
  JobKind,
  JobParams,
  JobRecord,
  JobResult,
  ReplyTarget,
  Requester,
  VariationKind,
} from '../../src/jobs/types.js';
import { validatePrompt } from '../../src/jobs/validate.js';
import { MAX_SEED } from '../../src/vocabulary.js';
import { type ButtonAction, type ButtonRef, decodeForm, encodeForm } from '../custom-id.js';
import { sharedView, singleImageView } from '../presenter.js';
import type { ChatForm, Invocation, PostedMessage } from '../types.js';
import { type BotContext, enqueueAndShow, isAdmin, replyTargetOf, tell, validationFor } from './context.js';

export interface Finished {
  job: JobRecord;
  result: JobResult;
}

/**
 * The finished, not deleted job `jobId` of the platform and team `where` is in, or a NotFoundError a
 * user can read: a button or reaction never acts on another platform's or workspace's job (the same
 * app installed in several Slack workspaces, a forged playground click).
 */
export function finishedJob(
  ctx: BotContext,
  jobId: string,
  where: Pick<ReplyTarget, 'platform' | 'teamId'>,
): Finished {
  const job = ctx.app.scheduler.getJob(jobId);
  const home = job?.spec.reply;
  const ours =
    home && home.platform === where.platform && (home.teamId === undefined || home.teamId === where.teamId);
  if (!job || !ours)
    throw new NotFoundError(`job ${jobId}`, "That button doesn't belong to an image I know.");
  if (ctx.app.store.results.isDeleted(jobId))
    throw new NotFoundError(`job ${jobId}`, 'That image was deleted.');
  const result = job.result ?? ctx.app.store.results.get(jobId);
  if (job.state !== 'done' || !result) {
    throw new NotFoundError(`result of ${jobId}`, 'That job has no finished image (yet).');
  }
  return { job, result };
}

function imageIndex(found: Finished, index: number | undefined): number {
  const i = index ?? 0;
  if (!Number.isInteger(i) || i < 0 || i >= found.result.images.length) {
    throw new ValidationError(
      'image',
      `That result has ${found.result.images.length} image(s); there is no image ${i + 1}.`,
    );
  }
  return i;
}

interface Derivation {
  kind: JobKind;
  requester: Requester;
  where: ReplyTarget;
  /** The image (0-based) a variation or upscale starts from. */
  index?: number;
  /** The interaction to answer with the job's message; none for a reaction. */
  inv?: Invocation;
  /** Vary (Subtle) or Vary (Strong); none for V1–V4. */
  variation?: VariationKind;
  /** The prompt edited in a remix form, instead of the earlier job's. */
  prompt?: string;
}

/**
 * The model a job made from `found` runs on: the same checkpoint (found by its hash, so a renamed
 * model is still found), under its configured name now; a NotFoundError naming the configured
 * models when it is no longer configured. A job from before several models names none: the default.
 */
export function parentModel(ctx: BotContext, found: Finished): JobParams['model'] {
  const recorded = found.job.spec.params.model;
  if (!recorded) return undefined;
  const models = ctx.app.validation().models ?? [];
  const now = configuredModelOf(models, recorded);
  if (!now) throw modelGoneError(recorded, models);
  return jobModelOf(now);
}

/**
 * What a job made from `found` takes over as configured now: its model (parentModel) and its
 * LoRAs, as long as they are still allowed (else refused, naming the allowed ones).
 */
function inherited(ctx: BotContext, found: Finished): Pick<JobParams, 'model' | 'loras'> {
  const { loras } = found.job.spec.params;
  const model = parentModel(ctx, found);
  return {
    ...(model ? { model } : {}),
    ...(loras ? { loras: currentLoras(loras, ctx.app.validation().loras ?? []) } : {}),
  };
}

/** A new job from an earlier one, asked for by `requester` and answered where they are. */
async function derive(ctx: BotContext, found: Finished, d: Derivation): Promise<void> {
  const { kind, index } = d;
  const { variation: _variation, model: _model, ...parent } = found.job.spec.params;
  const params: JobParams = { ...parent, seed: randomInt(0, MAX_SEED + 1), ...inherited(ctx, found) };
  if (d.prompt !== undefined) params.prompt = d.prompt;
  const g = ctx.app.config.generation;
  if (kind === 'variation') {
    params.strength = d.variation ? g.variation[d.variation] : g.variation.strength;
    if (d.variation) params.variation = d.variation;
  }
  if (kind === 'upscale') {
    params.strength = g.upscale.strength;
    params.count = 1;
    params.seed = found.result.images[index ?? 0].seed;
  }
  if (kind === 'reroll') delete params.strength;
  await enqueueAndShow(
    ctx,
    {
      kind,
      requester: d.requester,
      params,
      parent: { jobId: found.job.id, ...(index === undefined ? {} : { imageIndex: index }) },
      reply: replyTargetOf(d.where),
    },
    d.inv,
  );
}

export async function reroll(
  ctx: BotContext,
  jobId: string,
  requester: Requester,
  where: ReplyTarget,
  inv?: Invocation,
) {
  await derive(ctx, finishedJob(ctx, jobId, where), { kind: 'reroll', requester, where, inv });
}

/** The buttons that open the remix form for someone with remix on. */
const REMIXABLE: ReadonlySet<ButtonAction> = new Set(['reroll', 'variation', 'varySubtle', 'varyStrong']);

/** Queues what a reroll or variation button asks for, with `prompt` when a remix form edited it. */
function deriveFromButton(
  ctx: BotContext,
  inv: Invocation,
  found: Finished,
  ref: ButtonRef,
  prompt?: string,
): Promise<void> {
  const base = {
    requester: inv.requester,
    where: inv.where,
    inv,
    ...(prompt === undefined ? {} : { prompt }),
  };
  switch (ref.action) {
    case 'reroll':
      return derive(ctx, found, { ...base, kind: 'reroll' });
    case 'variation':
      return derive(ctx, found, { ...base, kind: 'variation', index: imageIndex(found, ref.index) });
    case 'varySubtle':
    case 'varyStrong':
      return derive(ctx, found, {
        ...base,
        kind: 'variation',
        index: imageIndex(found, ref.index),
        variation: ref.action === 'varySubtle' ? 'subtle' : 'strong',
      });
    default:
      throw new ValidationError('form', "That form doesn't belong to an image I know.");
  }
}

function remixOn(ctx: BotContext, requester: Requester): boolean {
  return ctx.app.store.userSettings.get(requester.platform, requester.userId).remix === true;
}

const REMIX_TITLES: Partial<Record<ButtonAction, string>> = {
  reroll: 'Remix · Reroll',
  varySubtle: 'Remix · Vary (Subtle)',
  varyStrong: 'Remix · Vary (Strong)',
};

/** The form a remixable button opens: the earlier job's own prompt (not its style's), to edit. */
function remixForm(ctx: BotContext, found: Finished, ref: ButtonRef): ChatForm {
  const title = REMIX_TITLES[ref.action] ?? `Remix · V${(ref.index ?? 0) + 1}`;
  return {
    id: encodeForm(ref),
    title,
    submitLabel: 'Make it',
    fields: [
      {
        id: 'prompt',
        label: 'Prompt',
        value: found.job.spec.params.prompt,
        multiline: true,
        required: true,
        maxLength: ctx.app.validation().promptMaxLength,
      },
    ],
  };
}

/** A remix form came back: the job its button stands for, with the prompt as edited. */
export async function submitRemix(
  ctx: BotContext,
  inv: Invocation,
  formId: string,
  values: Readonly<Record<string, string | undefined>>,
): Promise<void> {
  const ref = decodeForm(formId);
  if (!ref || !REMIXABLE.has(ref.action)) {
    await inv.replyPrivately(tell("That form doesn't belong to an image I know."));
    return;
  }
  const found = finishedJob(ctx, ref.jobId, inv.where);
  const prompt = validatePrompt(values.prompt, validationFor(ctx, inv.requester));
  await deriveFromButton(ctx, inv, found, ref, prompt);
}

/** Runs a button click. */
export async function runButton(ctx: BotContext, inv: Invocation, ref: ButtonRef): Promise<void> {
  if (ref.action === 'cancel') {
    await ctx.app.scheduler.cancel(ref.jobId, inv.requester);
    await inv.replyPrivately(tell('✖️ Cancelled.'));
    return;
  }
  const found = finishedJob(ctx, ref.jobId, inv.where);
  if (REMIXABLE.has(ref.action)) {
    if (inv.openForm && remixOn(ctx, inv.requester)) {
      // Refused before any form opens: its image, its model or a LoRA of it is gone.
      if (ref.action !== 'reroll') imageIndex(found, ref.index);
      inherited(ctx, found);
      await inv.openForm(remixForm(ctx, found, ref));
      return;
    }
    return deriveFromButton(ctx, inv, found, ref);
  }
  switch (ref.action) {
    case 'single': {
      const i = imageIndex(found, ref.index);
      const image = await ctx.messenger.resultImage(found.result, i, inv.where);
      const posted = await inv.reply(singleImageView(found.job, found.result, i, image));
      record(ctx, found.job.id, posted);
      return;
    }
    case 'upscale':
      return derive(ctx, found, {
        kind: 'upscale',
        requester: inv.requester,
        where: inv.where,
        index: imageIndex(found, ref.index),
        inv,
      });
    case 'share':
      await share(ctx, found, ref.index, inv.requester, inv.where);
      await inv.replyPrivately(tell('⭐ Shared to the showcase channel.'));
      return;
    case 'delete':
      await remove(ctx, found, inv.requester);
      await inv.replyPrivately(tell('✖️ Deleted.'));
      return;
  }
}

/** Posts a result to the team's showcase channel, crediting its author and who shared it. */
export async function share(
  ctx: BotContext,
  found: Finished,
  index: number | undefined,
  by: Requester,
  where: ReplyTarget,
): Promise<void> {
  const channelId = showcaseChannel(ctx, by);
  if (!channelId) {
    throw new NotFoundError(
      'showcase channel',
      'No showcase channel is set here yet. An admin can set one with /atelier showcase.',
    );
  }
  const adapter = ctx.messenger.adapterFor(by.platform);
  if (!adapter) return;
  const target: ReplyTarget = {
    platform: by.platform,
    channelId,
    ...(where.teamId ? { teamId: where.teamId } : {}),
  };
  const i = index === undefined ? undefined : imageIndex(found, index);
  const image = await ctx.messenger.resultImage(found.result, i ?? 'grid', target);
  const posted = await adapter.post(target, sharedView(found.job, found.result, i, image, by.userId));
  record(ctx, found.job.id, posted);
}

export function showcaseChannel(ctx: BotContext, requester: Requester): string | undefined {
  const team = requester.teamId ? ctx.app.store.teamSettings.get(requester.platform, requester.teamId) : {};
  if (team.showcaseChannelId) return team.showcaseChannelId;
  const platform = requester.platform as 'discord' | 'slack';
  return (
    (ctx.app.config[platform] as { showcaseChannelId?: string | null } | undefined)?.showcaseChannelId ??
    undefined
  );
}

/** Deletes every message showing the result (owner or admin) and marks it deleted. */
export async function remove(ctx: BotContext, found: Finished, by: Requester): Promise<void> {
  const owner = found.job.spec.requester;
  const mine = owner.platform === by.platform && owner.userId === by.userId;
  if (!mine && !isAdmin(ctx, by))
    throw new ForbiddenError('Only the person who made this image, or an admin, can delete it.');
  ctx.app.store.results.markDeleted(found.job.id, `${by.platform}:${by.userId}`, Date.now());
  const adapter = ctx.messenger.adapterFor(owner.platform);
  for (const message of ctx.app.store.results.messagesOf(found.job.id)) {
    const { threadId, ...extra } = (message.extra ?? {}) as { threadId?: string };
    await adapter
      ?.delete({ ...message, ...(threadId ? { threadId } : {}), extra })
      .catch((err: unknown) =>
        ctx.app.logger.warn({ err, jobId: found.job.id }, 'could not delete a message'),
      );
  }
}

/** Links a message that shows a result (single image, showcase post) to its job, for clicks and reactions on it. */
function record(ctx: BotContext, jobId: string, posted: PostedMessage): void {
  const { platform, channelId, messageId, extra, threadId } = posted;
  ctx.app.store.results.recordMessage(
    jobId,
    { platform, channelId, messageId, extra: { ...extra, ...(threadId ? { threadId } : {}) } },
    Date.now(),
  );
}
