/**
 * LoRAs as chat users pick them: `/imagine … lora:pixel` or `lora:pixel:0.8` (Discord: the options
 * `lora`, `lora2`, `lora3`, autocompleted; typed: `--lora pixel:0.8, ink`, or `--lora` given again),
 * at most three at once. Only the LoRAs the operator allows (config `loras.allowed`) can be used,
 * each at its configured weight unless the user gives one. A job records its LoRAs (`JobParams.loras`:
 * name, file, weight), so rerolls, variations and upscales keep them, even after a restart; one the
 * operator has since removed is refused with the allowed ones. The PNG's parameters follow
 * A1111's convention (`<lora:name:weight>` in the prompt, `Lora hashes:`; images/parameters.ts).
 */
import { closestName, findByName } from '../edit-distance.js';
import { ValidationError } from '../errors.js';
import type { JobLora } from './types.js';

/** LoRAs one job may apply (issue 15: "up to 3 at once"). */
export const MAX_LORAS = 3;

/** LoRA names: a letter or digit, then letters, digits, `.`, `-` or `_`; at most 32 (a Discord choice). */
export const LORA_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** The weights a user or the operator may give (A1111 users go beyond 1; negative weights invert "slider" LoRAs). */
export const LORA_WEIGHTS = { min: -2, max: 2 } as const;

/** One LoRA the operator allows, as chat validation sees it. */
export interface LoraChoice {
  name: string;
  /** Its file in the LoRA folder (config `loras.allowed.<name>.file`, default `<name>.safetensors`). */
  file: string;
  /** The weight it runs at unless the user gives one. */
  weight: number;
}

/** LoRA names a refusal lists at most (the autocomplete offers them all). */
const SHOWN_LORAS = 25;

/** The allowed LoRA called `name` (case-insensitive). */
export function findLora(choices: readonly LoraChoice[], name: string): LoraChoice | undefined {
  return findByName(choices, name, (c) => c.name);
}

/**
 * The entries of typed LoRA text: `pixel:0.8, ink`, `pixel:0.8 ink:1`, and A1111's own
 * `<lora:pixel:0.8>` (pasted from a PNG's parameters). Weights stay text until they are checked.
 */
export function splitLoraText(text: string): { name: string; weight?: string }[] {
  return text
    .replace(/<lora:([^>]*)>/gi, ' $1 ')
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((entry) => {
      const at = entry.lastIndexOf(':');
      return at > 0 ? { name: entry.slice(0, at), weight: entry.slice(at + 1) } : { name: entry };
    });
}

function shown(text: string): string {
  const cut = [...text].length > 40 ? `${[...text].slice(0, 40).join('')}…` : text;
  return `“${cut}”`;
}

/** "Choose one of: …" over the allowed names, cut short past SHOWN_LORAS. */
function allowedList(choices: readonly LoraChoice[]): string {
  const names = choices.map((c) => c.name);
  return names.length <= SHOWN_LORAS
    ? names.join(', ')
    : `${names.slice(0, SHOWN_LORAS).join(', ')} … (${names.length} in all)`;
}

function unknown(name: string, choices: readonly LoraChoice[], why = "isn't a LoRA here"): ValidationError {
  if (choices.length === 0) {
    return new ValidationError('lora', `There are no LoRAs on this bot, so ${shown(name)} can't be used.`);
  }
  const guess = closestName(
    name,
    choices.map((c) => c.name),
  );
  return new ValidationError(
    'lora',
    `${shown(name)} ${why}.${guess ? ` Did you mean ${guess}?` : ''} Choose one of: ${allowedList(choices)} (e.g. lora:${guess ?? choices[0]!.name}:0.8).`,
  );
}

function readWeight(name: string, text: string): number {
  const weight = /^[+-]?(\d+\.?\d*|\.\d+)$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isFinite(weight) || weight < LORA_WEIGHTS.min || weight > LORA_WEIGHTS.max) {
    throw new ValidationError(
      'lora',
      `A LoRA's weight must be a number from ${LORA_WEIGHTS.min} to ${LORA_WEIGHTS.max}, not ${shown(text)} (e.g. lora:${name}:0.8).`,
    );
  }
  return weight;
}

/**
 * The LoRAs a command asks for: `text` holds them all (the Discord options joined by commas, or
 * what was typed). Each must be allowed, named once, with a weight in range; at most MAX_LORAS.
 */
export function readLoras(text: string, choices: readonly LoraChoice[]): JobLora[] {
  const entries = splitLoraText(text);
  if (entries.length > MAX_LORAS) {
    throw new ValidationError(
      'lora',
      `Up to ${MAX_LORAS} LoRAs at once, not ${entries.length} (${entries.map((e) => e.name).join(', ')}).`,
    );
  }
  const loras: JobLora[] = [];
  for (const entry of entries) {
    const found = findLora(choices, entry.name);
    if (!found) throw unknown(entry.name, choices);
    if (loras.some((l) => l.name === found.name)) {
      throw new ValidationError(
        'lora',
        `${found.name} is named twice; give each LoRA once, with one weight.`,
      );
    }
    const weight = entry.weight === undefined ? found.weight : readWeight(found.name, entry.weight);
    loras.push({ name: found.name, file: found.file, weight });
  }
  return loras;
}

/**
 * A recorded job's LoRAs as they run now (a reroll, variation or upscale): each must still be
 * allowed, and runs from the file the config names today at the weight the job recorded.
 */
export function currentLoras(loras: readonly JobLora[], choices: readonly LoraChoice[]): JobLora[] {
  return loras.map((lora) => {
    const found = findLora(choices, lora.name);
    if (!found) throw unknown(lora.name, choices, 'was used for that image but is no longer a LoRA here');
    return { name: found.name, file: found.file, weight: lora.weight };
  });
}

/** A weight as people write it: 0.8, 1, -0.5. */
export const formatLoraWeight = (weight: number): string => String(Number(weight.toFixed(4)));

/** A1111's prompt syntax for the job's LoRAs: `<lora:pixel:0.8> <lora:ink:1>`. */
export function loraTags(loras: readonly Pick<JobLora, 'name' | 'weight'>[]): string {
  return loras.map((l) => `<lora:${l.name}:${formatLoraWeight(l.weight)}>`).join(' ');
}

/** The job's LoRAs in a result line: `lora pixel 0.8, ink 1`. */
export function loraSummary(loras: readonly Pick<JobLora, 'name' | 'weight'>[]): string {
  return `lora ${loras.map((l) => `${l.name} ${formatLoraWeight(l.weight)}`).join(', ')}`;
}

/** The /imagine options that name LoRAs (Discord cannot repeat an option: one per LoRA). */
export const LORA_OPTIONS = ['lora', 'lora2', 'lora3'] as const;

/** The LoRA options of a command joined into one text for `readLoras` (empty ones left out). */
export function loraText(args: Readonly<Record<string, unknown>>): string | undefined {
  const given = LORA_OPTIONS.map((name) => args[name])
    .filter((v): v is string | number => (typeof v === 'string' && v.trim() !== '') || typeof v === 'number')
    .map(String);
  return given.length > 0 ? given.join(', ') : undefined;
}
