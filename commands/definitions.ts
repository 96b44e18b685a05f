/**
 * The commands Atelier offers, once, for every platform: names, options with their types,
 * ranges and choices (drawn from the operator's configuration), and aliases for text surfaces.
 */
import { LORA_OPTIONS } from '../src/jobs/loras.js';
import { DEFAULT_MODEL, DRAFT_MODE } from '../src/jobs/models.js';
import { NO_STYLE } from '../src/jobs/styles.js';
import type { ValidationOptions } from '../src/jobs/validate.js';
import { MAX_SEED, SAMPLER_LABELS } from '../src/vocabulary.js';
import type { CommandDef, OptionDef } from './types.js';

/** Discord's limit on fixed choices per option; longer lists use autocomplete. */
const MAX_CHOICES = 25;

export function defineCommands(v: ValidationOptions): CommandDef[] {
  const aspect: OptionDef = {
    name: 'aspect',
    description: 'Aspect ratio of the image',
    type: 'string',
    aliases: ['ar'],
    ...withChoices(v.aspects),
  };
  const steps: OptionDef = {
    name: 'steps',
    description: `Denoising steps (${v.ranges.steps.min}–${v.ranges.steps.max}; more is slower, finer)`,
    type: 'integer',
    min: v.ranges.steps.min,
    max: v.ranges.steps.max,
  };
  const guidance: OptionDef = {
    name: 'guidance',
    description: `How closely to follow the prompt (${v.ranges.guidance.min}–${v.ranges.guidance.max})`,
    type: 'number',
    min: v.ranges.guidance.min,
    max: v.ranges.guidance.max,
    aliases: ['cfg'],
  };
  const count: OptionDef = {
    name: 'count',
    description: `Number of images (${v.ranges.count.min}–${v.ranges.count.max})`,
    type: 'integer',
    min: v.ranges.count.min,
    max: v.ranges.count.max,
    aliases: ['n'],
  };
  const sampler: OptionDef = {
    name: 'sampler',
    description: 'Sampling method',
    type: 'string',
    choices: v.samplers.map((s) => ({ name: SAMPLER_LABELS[s], value: s })),
  };
  // Only where the operator configured styles; `none` overrides a saved default style.
  const styleNames = Object.keys(v.styles ?? {});
  const style: OptionDef[] = styleNames.length
    ? [
        {
          name: 'style',
          description: 'A style for the prompt (none: no style)',
          type: 'string',
          ...withChoices([...styleNames, NO_STYLE]),
        },
      ]
    : [];
  // Only where several models are configured (models.list): which one, and draft mode.
  const modelNames = (v.models ?? []).map((m) => m.name);
  const several = modelNames.length > 1;
  const model: OptionDef[] = several
    ? [
        {
          name: 'model',
          description: 'Which model makes the image',
          type: 'string',
          ...withChoices(modelNames),
        },
      ]
    : [];
  const mode: OptionDef[] = several
    ? [
        {
          name: 'mode',
          description: 'draft: the fastest loaded model, with its own defaults',
          type: 'string',
          choices: [{ name: DRAFT_MODE, value: DRAFT_MODE }],
          presets: { fast: DRAFT_MODE },
        },
      ]
    : [];
  // /settings and /atelier model: `default` forgets the saved choice.
  const modelDefault: OptionDef[] = several
    ? [
        {
          name: 'model',
          description: `The model new images use (${DEFAULT_MODEL}: no model of your own)`,
          type: 'string',
          ...withChoices([...modelNames, DEFAULT_MODEL]),
        },
      ]
    : [];
  // Only where the operator allows LoRAs: Discord has no repeated options, so three of them, each
  // autocompleted with the allowed names (commands/lora-choices.ts); typed, --lora repeats.
  const lora: OptionDef[] = v.loras?.length
    ? LORA_OPTIONS.map((name, i) => ({
        name,
        description:
          i === 0
            ? 'A LoRA: name or name:weight (e.g. pixel:0.8)'
            : `A ${i === 1 ? 'second' : 'third'} LoRA (name or name:weight)`,
        type: 'string' as const,
        autocomplete: true,
        maxLength: 100,
        ...(i === 0 ? { repeatable: true } : {}),
      }))
    : [];
  const negative: OptionDef = {
    name: 'negative',
    description: 'What to keep out of the image',
    type: 'string',
    maxLength: v.negativePromptMaxLength,
    aliases: ['no'],
  };

  return [
    {
      name: 'imagine',
      description: 'Make images from a prompt',
      options: [
        {
          name: 'prompt',
          description: 'What to draw',
          type: 'string',
          required: true,
          maxLength: v.promptMaxLength,
        },
        negative,
        aspect,
        {
          name: 'seed',
          description: 'Seed, to reproduce an image (random when left out)',
          type: 'integer',
          min: 0,
          max: MAX_SEED,
        },
        steps,
        guidance,
        count,
        sampler,
        ...style,
        ...model,
        ...mode,
        ...lora,
      ],
    },
    {
      name: 'queue',
      description: 'Your jobs in the queue, with positions and ETA (admins: everyone’s)',
      options: [{ name: 'all', description: 'Admins: show every job', type: 'boolean' }],
    },
    {
      name: 'cancel',
      description: 'Cancel one of your jobs (the newest when none is named)',
      options: [{ name: 'job', description: 'The job to cancel', type: 'string', autocomplete: true }],
    },
    {
      name: 'settings',
      description: 'Your defaults for new images (no options: show them)',
      options: [
        aspect,
        steps,
        count,
        negative,
        guidance,
        sampler,
        ...style,
        ...modelDefault,
        {
          name: 'remix',
          description: 'Reroll and Vary buttons open a form to edit the prompt first',
          type: 'boolean',
        },
        { name: 'reset', description: 'Forget all your defaults', type: 'boolean' },
      ],
    },
    { name: 'help', description: 'How to use Atelier' },
    {
      name: 'atelier',
      description: 'Admin settings for this server or workspace',
      adminOnly: true,
      subcommands: [
        {
          name: 'showcase',
          description: 'Set the channel where shared images are posted',
          options: [
            { name: 'channel', description: 'The showcase channel', type: 'channel', required: true },
          ],
        },
        {
          name: 'limits',
          description: 'Image limits for members of this server (no options: show them)',
          options: [
            { name: 'images', description: 'Images per window per user', type: 'integer', min: 1, max: 1000 },
            { name: 'minutes', description: 'Window length in minutes', type: 'integer', min: 1, max: 1440 },
            { name: 'burst', description: 'Images at once', type: 'integer', min: 1, max: 100 },
            {
              name: 'queued',
              description: 'Jobs one user may have waiting',
              type: 'integer',
              min: 1,
              max: 100,
            },
            { name: 'reset', description: 'Back to the bot-wide limits', type: 'boolean' },
          ],
        },
        ...(several
          ? [
              {
                name: 'model',
                description: 'The model new images here use unless people pick one (no options: show it)',
                options: modelDefault.map((o) => ({
                  ...o,
                  description: `The model (${DEFAULT_MODEL}: the bot-wide default)`,
                  positional: true,
                })),
              },
            ]
          : []),
        { name: 'pause', description: 'Pause the queue: new jobs are refused, running ones finish' },
        { name: 'resume', description: 'Resume the queue' },
        { name: 'status', description: 'Queue size, model and pipeline' },
      ],
    },
  ];
}

/**
 * Fixed choices for a short list; autocomplete over the same list beyond Discord's 25 (the bot
 * answers autocomplete from `choices`, which adapters then do not show as a fixed list).
 */
function withChoices(values: readonly string[]): Pick<OptionDef, 'choices' | 'autocomplete'> {
  const choices = values.map((value) => ({ name: value, value }));
  return values.length <= MAX_CHOICES ? { choices } : { choices, autocomplete: true };
}

/** Finds a command, or a subcommand given as "atelier showcase". */
export function findCommand(commands: readonly CommandDef[], name: string): CommandDef | undefined {
  const [top, sub] = name.trim().split(/\s+/);
  const command = commands.find((c) => c.name === top);
  if (!command || sub === undefined) return command;
  return command.subcommands?.find((s) => s.name === sub);
}
