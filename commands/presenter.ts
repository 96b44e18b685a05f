/**
 * What a job looks like in chat at each stage: queued (position, ETA), running (progress bar,
 * preview), done (image, parameters, buttons), failed, cancelled; and single images and showcase
 * posts. Pure functions of the job: every adapter renders the same words.
 */
import { loraSummary } from '../src/jobs/loras.js';
import type { JobRecord, JobResult } from '../src/jobs/types.js';
import { denoisedSteps } from '../src/pipeline/sampling/schedule.js';
import { formatDuration } from '../src/scheduler/index.js';
import { SAMPLER_LABELS, WAITING_FOR_WORKER } from '../src/vocabulary.js';
import { encodeButton } from './custom-id.js';
import type { ChatButton, ChatImage, ChatMessage } from './types.js';

const SHOWN_PROMPT = 300;

/** The prompt as shown in chat: shortened, with chat markup characters defused. */
export function shownPrompt(prompt: string): string {
  const chars = [...prompt.replace(/\s+/g, ' ').trim()];
  const cut = chars.length > SHOWN_PROMPT ? `${chars.slice(0, SHOWN_PROMPT).join('')}…` : chars.join('');
  return cut.replace(/[*`]/g, '').replace(/</g, '‹').replace(/>/g, '›');
}

function headline(job: JobRecord): string {
  const { params, requester, kind, parent } = job.spec;
  const prompt = `**${shownPrompt(params.prompt)}**`;
  const who = `<@${requester.userId}>`;
  switch (kind) {
    case 'reroll':
      return `🔄 ${prompt} — reroll by ${who}`;
    case 'variation': {
      const strength = params.variation ? `${params.variation} ` : '';
      return `🎲 ${prompt} — ${strength}variation${parent?.imageIndex !== undefined ? ` of image ${parent.imageIndex + 1}` : ''} by ${who}`;
    }
    case 'upscale':
      return `⬆️ ${prompt} — upscaled 2× by ${who}`;
    default:
      return `${prompt} — ${who}`;
  }
}

function cancelButton(job: JobRecord): ChatButton[][] {
  return [
    [
      {
        id: encodeButton({ action: 'cancel', jobId: job.id }),
        label: 'Cancel',
        emoji: '✖️',
        style: 'secondary',
      },
    ],
  ];
}

/** What a waiting job waits for when no GPU worker is online (the distributed mode). */
export { WAITING_FOR_WORKER };

/**
 * A waiting job: its place and ETA, or, with `waitingForRunner` (no worker online to run jobs),
 * what it waits for instead of a time that would mean nothing.
 */
export function queuedView(
  job: JobRecord,
  position: number,
  etaMs: number,
  options: { waitingForRunner?: boolean } = {},
): ChatMessage {
  const where = position <= 1 ? 'next in line' : `position ${position} in the queue`;
  const when = options.waitingForRunner
    ? `${WAITING_FOR_WORKER}; it starts as soon as one is`
    : `about ${formatDuration(etaMs)}`;
  return {
    text: `${headline(job)}\n⏳ Queued: ${where} · ${when}`,
    buttons: cancelButton(job),
  };
}

export function startedView(job: JobRecord, etaMs: number): ChatMessage {
  return {
    text: `${headline(job)}\n🎨 Starting… about ${formatDuration(etaMs)}`,
    buttons: cancelButton(job),
  };
}

export function progressView(job: JobRecord, step: number, total: number, preview?: ChatImage): ChatMessage {
  const width = 12;
  const filled = Math.round((step / Math.max(1, total)) * width);
  const bar = `${'▰'.repeat(filled)}${'▱'.repeat(width - filled)}`;
  return {
    text: `${headline(job)}\n🎨 ${bar} step ${step}/${total}`,
    ...(preview ? { preview } : {}),
    buttons: cancelButton(job),
  };
}

function parametersLine(job: JobRecord, result: JobResult): string {
  const p = job.spec.params;
  const size = result.images[0]
    ? `${result.images[0].width}×${result.images[0].height}`
    : `${p.width}×${p.height}`;
  const seeds = result.images.map((image) => image.seed);
  const seed = seeds.length > 1 ? `seeds ${seeds[0]}–${seeds.at(-1)}` : `seed ${seeds[0] ?? p.seed}`;
  // An img2img (variation, upscale) runs only the last steps of its schedule: say how many ran,
  // as its progress counted them.
  const steps =
    p.strength === undefined
      ? `${p.steps} steps`
      : `${denoisedSteps(p.steps, p.strength)} of ${p.steps} steps (strength ${p.strength})`;
  const parts = [seed, steps, `CFG ${p.guidance}`, SAMPLER_LABELS[p.sampler], size];
  // The model it ran on (several models: the name people pick; rerolls and variations keep it).
  if (p.model) parts.push(`model ${p.model.name}`);
  if (p.style) parts.push(`style ${p.style.name}`);
  if (p.loras?.length) parts.push(loraSummary(p.loras));
  if (p.negativePrompt) parts.push(`no: ${shownPrompt(p.negativePrompt).slice(0, 80)}`);
  return parts.join(' · ');
}

export function doneView(
  job: JobRecord,
  result: JobResult,
  image: ChatImage | undefined,
  elapsedMs?: number,
): ChatMessage {
  const lines = [
    headline(job),
    `${parametersLine(job, result)}${elapsedMs ? ` · ${(elapsedMs / 1000).toFixed(1)} s` : ''}`,
  ];
  if (result.promptTruncated) {
    lines.push('ℹ️ Your prompt was longer than the model reads (77 tokens); only its beginning was used.');
  }
  return { text: lines.join('\n'), ...(image ? { image } : {}), buttons: resultButtons(job, result) };
}

/** U1–U4 and V1–V4 for a grid; for one image only what makes sense for it. */
export function resultButtons(job: JobRecord, result: JobResult): ChatButton[][] {
  const id = job.id;
  const count = result.images.length;
  const reroll: ChatButton = {
    id: encodeButton({ action: 'reroll', jobId: id }),
    label: 'Reroll',
    emoji: '🔄',
  };
  const del: ChatButton = {
    id: encodeButton({ action: 'delete', jobId: id }),
    label: 'Delete',
    emoji: '✖️',
    style: 'danger',
  };
  if (count > 1) {
    const indices = result.images.map((_, i) => i);
    return [
      indices.map((i) => ({
        id: encodeButton({ action: 'single', jobId: id, index: i }),
        label: `U${i + 1}`,
      })),
      indices.map((i) => ({
        id: encodeButton({ action: 'variation', jobId: id, index: i }),
        label: `V${i + 1}`,
      })),
      [reroll, { id: encodeButton({ action: 'share', jobId: id }), label: 'Share', emoji: '⭐' }, del],
    ];
  }
  return [singleImageButtons(job, 0, { reroll: true }), [del]];
}

function singleImageButtons(job: JobRecord, index: number, options: { reroll: boolean }): ChatButton[] {
  const id = job.id;
  // Two strengths (generation.variation.subtle / strong); a grid's V1–V4 keep the one in between.
  const buttons: ChatButton[] = [
    { id: encodeButton({ action: 'varySubtle', jobId: id, index }), label: 'Vary (Subtle)', emoji: '🎲' },
    { id: encodeButton({ action: 'varyStrong', jobId: id, index }), label: 'Vary (Strong)', emoji: '🎲' },
  ];
  if (options.reroll)
    buttons.push({ id: encodeButton({ action: 'reroll', jobId: id }), label: 'Reroll', emoji: '🔄' });
  // Upscaling an upscale would leave the size the model was trained for far behind.
  if (job.spec.kind !== 'upscale') {
    buttons.push({
      id: encodeButton({ action: 'upscale', jobId: id, index }),
      label: 'Upscale 2×',
      emoji: '⬆️',
    });
  }
  buttons.push({ id: encodeButton({ action: 'share', jobId: id, index }), label: 'Share', emoji: '⭐' });
  return buttons;
}

/** One image of a grid on its own (U1–U4), full size, with its own seed. */
export function singleImageView(
  job: JobRecord,
  result: JobResult,
  index: number,
  image: ChatImage,
): ChatMessage {
  const seed = result.images[index]?.seed;
  const style = job.spec.params.style ? ` · style ${job.spec.params.style.name}` : '';
  return {
    text: `**${shownPrompt(job.spec.params.prompt)}** — image ${index + 1} of ${result.images.length} · seed ${seed}${style} · <@${job.spec.requester.userId}>`,
    image,
    buttons: [
      singleImageButtons(job, index, { reroll: false }),
      [
        {
          id: encodeButton({ action: 'delete', jobId: job.id }),
          label: 'Delete',
          emoji: '✖️',
          style: 'danger',
        },
      ],
    ],
  };
}

/** A result shared to the showcase channel, crediting its author and who shared it. */
export function sharedView(
  job: JobRecord,
  result: JobResult,
  index: number | undefined,
  image: ChatImage,
  sharedBy: string,
): ChatMessage {
  const seed = index === undefined ? result.images[0]?.seed : result.images[index]?.seed;
  return {
    text: `⭐ **${shownPrompt(job.spec.params.prompt)}**\nby <@${job.spec.requester.userId}> · shared by <@${sharedBy}> · seed ${seed}`,
    image,
    buttons: [[{ id: encodeButton({ action: 'reroll', jobId: job.id }), label: 'Reroll', emoji: '🔄' }]],
  };
}

export function failedView(job: JobRecord, userMessage: string): ChatMessage {
  return { text: `${headline(job)}\n⚠️ ${userMessage}` };
}

export function cancelledView(job: JobRecord, by: string): ChatMessage {
  const who = by && by !== job.spec.requester.userId ? ` by <@${by.replace(/^[a-z]+:/, '')}>` : '';
  return { text: `${headline(job)}\n✖️ Cancelled${who}.` };
}
