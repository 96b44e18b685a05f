/** /settings: a user's defaults for new images (aspect, steps, count, negative prompt, guidance, sampler). */
import { validateUserDefaults } from '../../src/jobs/validate.js';
import type { UserSettings } from '../../src/store/types.js';
import { SAMPLER_LABELS, type SamplerName } from '../../src/vocabulary.js';
import type { CommandArgs, Invocation } from '../types.js';
import { type BotContext, tell, validationFor } from './context.js';

export async function settings(ctx: BotContext, inv: Invocation, args: CommandArgs): Promise<void> {
  const { platform, userId } = inv.requester;
  const repo = ctx.app.store.userSettings;
  if (args.reset === true) {
    repo.clear(platform, userId);
    await inv.replyPrivately(tell('Your defaults are cleared; new images use the bot’s defaults.'));
    return;
  }
  const given = validateUserDefaults(
    {
      aspect: args.aspect,
      steps: args.steps,
      count: args.count,
      guidance: args.guidance,
      sampler: args.sampler,
      negativePrompt: args.negative as string | undefined,
    },
    validationFor(ctx, inv.requester),
  );
  const saved = Object.keys(given).length
    ? repo.patch(platform, userId, given as Partial<UserSettings>)
    : repo.get(platform, userId);
  await inv.replyPrivately(tell(`${Object.keys(given).length ? 'Saved. ' : ''}${describe(saved)}`));
}

function describe(s: Partial<UserSettings>): string {
  const parts = [
    s.aspect && `aspect ${s.aspect}`,
    s.steps !== undefined && `${s.steps} steps`,
    s.count !== undefined && `${s.count} image(s)`,
    s.guidance !== undefined && `guidance ${s.guidance}`,
    s.sampler && SAMPLER_LABELS[s.sampler as SamplerName],
    s.negativePrompt && `negative prompt “${s.negativePrompt}”`,
  ].filter(Boolean);
  return parts.length
    ? `Your defaults: ${parts.join(', ')}. Options you give with /imagine still win.`
    : 'You have no defaults of your own; /settings with options saves some.';
}
