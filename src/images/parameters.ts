/**
 * Generation parameters as text, in the layout AUTOMATIC1111's web UI writes (`processing.py`
 * create_infotext) and reads (`infotext_utils.py` parse_generation_parameters), so Atelier's
 * images can be read by A1111, Forge, ComfyUI loaders, Civitai and friends:
 *
 *   a cat in a hat
 *   Negative prompt: blurry
 *   Steps: 28, Sampler: Euler, CFG scale: 4.5, Seed: 123, Size: 1024x1024, Model hash: 3f1a9c0b2e, Model: sd3.5_large
 *
 * The negative prompt line is left out when there is none; a value holding "," ":" or a newline
 * is written as a JSON string (A1111's `quote`). A job with a style writes the prompts the model
 * read (the style applied, so the PNG reproduces the image anywhere) and names it (`Style: …`); a
 * Vary (Subtle/Strong) variation says which (`Variation: subtle`) beside its denoising strength.
 */
import { loraTags } from '../jobs/loras.js';
import { styledPrompts } from '../jobs/styles.js';
import type { JobParams } from '../jobs/types.js';
import { parseSampler, SAMPLER_LABELS, type SamplerName } from '../vocabulary.js';

const NEGATIVE_PREFIX = 'Negative prompt:';

function quote(value: string): string {
  return /[,:\n]/.test(value) ? JSON.stringify(value) : value;
}

function unquote(value: string): string {
  if (value.length < 2 || !value.startsWith('"') || !value.endsWith('"')) return value;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === 'string' ? parsed : value;
  } catch {
    return value;
  }
}

/**
 * `modelHash`: the checkpoint's (models-dir/model-hash.ts), written before `Model` as A1111 does;
 * left out when the pipeline gives none.
 */
export function formatParameters(
  params: JobParams,
  extra: {
    model: string;
    seed: number;
    modelHash?: string;
    loraHashes?: readonly { name: string; hash: string }[];
  },
): string {
  const fields: [string, string | number][] = [
    ['Steps', params.steps],
    ['Sampler', SAMPLER_LABELS[params.sampler] ?? params.sampler],
    ['CFG scale', params.guidance],
    ['Seed', extra.seed],
    ['Size', `${params.width}x${params.height}`],
    ...(extra.modelHash ? [['Model hash', extra.modelHash] as [string, string]] : []),
    ['Model', extra.model],
  ];
  if (params.strength !== undefined) fields.push(['Denoising strength', params.strength]);
  if (params.variation !== undefined) fields.push(['Variation', params.variation]);
  if (params.style !== undefined) fields.push(['Style', params.style.name]);
  // A1111's Lora extension: each LoRA's short file hash, by name (`Lora hashes: "pixel: 0123456789ab"`).
  if (extra.loraHashes?.length)
    fields.push(['Lora hashes', extra.loraHashes.map((l) => `${l.name}: ${l.hash}`).join(', ')]);
  const line = fields.map(([key, value]) => `${key}: ${quote(String(value))}`).join(', ');
  const styled = styledPrompts(params);
  // LoRAs in A1111's prompt syntax, after the prompt the model read: `… <lora:pixel:0.8>`.
  const prompt = params.loras?.length ? `${styled.prompt} ${loraTags(params.loras)}` : styled.prompt;
  const negative = styled.negativePrompt ? `\n${NEGATIVE_PREFIX} ${styled.negativePrompt}` : '';
  return `${prompt}${negative}\n${line}`.trim();
}

export interface ParsedParameters {
  prompt: string;
  negativePrompt: string;
  steps?: number;
  /** Set when the sampler is one Atelier has; `fields.Sampler` keeps what was written. */
  sampler?: SamplerName;
  guidance?: number;
  seed?: number;
  width?: number;
  height?: number;
  model?: string;
  /** A1111's `Model hash`. */
  modelHash?: string;
  strength?: number;
  /** The style's name, for an image made with one. */
  style?: string;
  /** Every "Key: value" of the parameters line, unquoted, including ones Atelier does not use. */
  fields: Record<string, string>;
}

/** A1111's `re_param`: `Key: value` or `Key: "json string"`, comma-separated. */
const PARAMETER = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

function parameterPairs(line: string): [string, string][] {
  return [...line.matchAll(PARAMETER)].map((match) => [match[1]!.trim(), unquote(match[2]!.trim())]);
}

function finiteNumber(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const number = Number(value);
  return Number.isFinite(number) ? number : undefined;
}

/** Reads text written by `formatParameters` (or by A1111 and tools that copy it). */
export function parseParameters(text: string): ParsedParameters {
  const lines = text.trim().replace(/\r\n?/g, '\n').split('\n');
  // As in A1111: the last line holds the parameters only if it has at least three of them.
  let pairs = parameterPairs(lines[lines.length - 1] ?? '');
  if (pairs.length >= 3) lines.pop();
  else pairs = [];

  let prompt = '';
  let negativePrompt = '';
  let inNegative = false;
  for (const rawLine of lines) {
    let line = rawLine.trim();
    if (line.startsWith(NEGATIVE_PREFIX)) {
      inNegative = true;
      line = line.slice(NEGATIVE_PREFIX.length).trim();
    }
    if (inNegative) negativePrompt += (negativePrompt === '' ? '' : '\n') + line;
    else prompt += (prompt === '' ? '' : '\n') + line;
  }

  const fields: Record<string, string> = {};
  for (const [key, value] of pairs) {
    Object.defineProperty(fields, key, { value, enumerable: true, writable: true, configurable: true });
  }
  const parsed: ParsedParameters = { prompt, negativePrompt, fields };
  const size = /^(\d+)x(\d+)$/.exec(fields.Size ?? '');
  const assign = <K extends keyof ParsedParameters>(key: K, value: ParsedParameters[K] | undefined) => {
    if (value !== undefined) parsed[key] = value;
  };
  assign('steps', finiteNumber(fields.Steps));
  assign('sampler', fields.Sampler === undefined ? undefined : parseSampler(fields.Sampler));
  assign('guidance', finiteNumber(fields['CFG scale']));
  assign('seed', finiteNumber(fields.Seed));
  assign('width', size ? Number(size[1]) : undefined);
  assign('height', size ? Number(size[2]) : undefined);
  assign('model', fields.Model);
  assign('modelHash', fields['Model hash']);
  assign('strength', finiteNumber(fields['Denoising strength']));
  assign('style', fields.Style);
  return parsed;
}
