/** /imagine: validate the options (with the user's saved defaults), enqueue, show the queue notice. */
import { validateJobParams } from '../../src/jobs/validate.js';
import type { CommandArgs, Invocation } from '../types.js';
import { type BotContext, enqueueAndShow, replyTargetOf, validationFor } from './context.js';

export async function imagine(ctx: BotContext, inv: Invocation, args: CommandArgs): Promise<void> {
  const { requester } = inv;
  const saved = ctx.app.store.userSettings.get(requester.platform, requester.userId);
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
    },
    validationFor(ctx, requester),
    { userDefaults: saved },
  );
  await enqueueAndShow(ctx, { kind: 'txt2img', requester, params, reply: replyTargetOf(inv.where) }, inv);
}
