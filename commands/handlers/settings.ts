/**
 * /settings: a user's defaults for new images (aspect, steps, count, negative prompt, guidance,
 * sampler, style, model) and remix (Reroll and the variation buttons open a form with the prompt first).
 */
import { DEFAULT_MODEL } from '../../src/jobs/models.js';
import { NO_STYLE } from '../../src/jobs/styles.js';
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
      style: args.style,
      model: args.model,
    },
    validationFor(ctx, inv.requester),
  ) as Partial<UserSettings>;
  // `none` clears the default style, `default` the model (patch drops keys set to undefined).
  if (given.style === NO_STYLE) given.style = undefined;
  if (given.model === DEFAULT_MODEL) given.model = undefined;
  if (typeof args.remix === 'boolean') given.remix = args.remix;
  const changed = Object.keys(given).length > 0;
  const saved = changed ? repo.patch(platform, userId, given) : repo.get(platform, userId);
  await inv.replyPrivately(tell(`${changed ? 'Saved. ' : ''}${describe(saved)}`));
}

function describe(s: Partial<UserSettings>): string {
  const parts = [
    s.aspect && `aspect ${s.aspect}`,
    s.steps !== undefined && `${s.steps} steps`,
    s.count !== undefined && `${s.count} image(s)`,
    s.guidance !== undefined && `guidance ${s.guidance}`,
    s.sampler && SAMPLER_LABELS[s.sampler as SamplerName],
    s.negativePrompt && `negative prompt “${s.negativePrompt}”`,
    s.style && `style ${s.style}`,
    s.model && `model ${s.model}`,
  ].filter(Boolean);
  const defaults = parts.length
    ? `Your defaults: ${parts.join(', ')}. Options you give with /imagine still win.`
    : s.remix === undefined
      ? 'You have no defaults of your own; /settings with options saves some.'
      : 'You have no image defaults of your own.';
  if (s.remix === undefined) return defaults;
  return s.remix
    ? `${defaults} Remix is on: 🔄 Reroll and the Vary/V buttons first open a form where you can edit the prompt.`
    : `${defaults} Remix is off: 🔄 Reroll and the Vary/V buttons queue at once.`;
}
