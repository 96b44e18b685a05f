/** /imagine: validate the options (with the user's saved defaults), enqueue, show the queue notice. */
import { loraText } from '../../src/jobs/loras.js';
import { validateJobParams } from '../../src/jobs/validate.js';
import { ImageLimitError } from '../../src/scheduler/limits.js';
import type { CommandArgs, Invocation } from '../types.js';
import { type BotContext, enqueueAndShow, replyTargetOf, validationFor } from './context.js';

export async function imagine(ctx: BotContext, inv: Invocation, args: CommandArgs): Promise<void> {
  const { requester } = inv;
  const saved = ctx.app.store.userSettings.get(requester.platform, requester.userId);
  // The server's default model (/atelier model), below the user's own.
  const team = requester.teamId ? ctx.app.store.teamSettings.get(requester.platform, requester.teamId) : {};
  const params = validateJobParams(
    {
      prompt: args.prompt,
      negativePrompt: args.negative,
      aspect: args.aspect,
      seed: args.seed,
      steps: args.steps,
      guidance: args.guidance,
      count: args.count,
      sampler: args.sampler,
      style: args.style,
      model: args.model,
      mode: args.mode,
      loras: loraText(args),
    },
    validationFor(ctx, requester),
    { userDefaults: saved, teamDefaults: { model: team.model } },
  );
  try {
    await enqueueAndShow(ctx, { kind: 'txt2img', requester, params, reply: replyTargetOf(inv.where) }, inv);
  } catch (error) {
    throw fewerNow(error);
  }
}

/**
 * A typed or slash /imagine can ask for fewer images, so its refusal says how many would work now
 * (a button's cannot, so the limits never say it themselves).
 */
function fewerNow(error: unknown): unknown {
  if (!(error instanceof ImageLimitError)) return error;
  const { availableNow: n, cost } = error;
  if (n < 1 || n >= cost) return error;
  const hint = ` Or ask for ${n} ${n === 1 ? 'image' : 'images'} now (count ${n}).`;
  return new ImageLimitError(
    error.limit as 'user' | 'team',
    error.retryAfterMs,
    `${error.userMessage}${hint}`,
    n,
    cost,
  );
}
