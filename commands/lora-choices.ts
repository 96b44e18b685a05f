/**
 * Autocomplete of the /imagine LoRA options (Discord, and any surface that asks): the allowed LoRAs
 * whose names contain what is typed, each with its default weight shown; once a weight is being
 * typed after a known name (`pixel:0.`), that entry as typed, so the user can send it.
 */
import { findLora, formatLoraWeight, LORA_OPTIONS, type LoraChoice } from '../src/jobs/loras.js';
import type { Choice } from './types.js';

/** Discord shows at most 25 suggestions. */
const MAX_SUGGESTIONS = 25;

export const isLoraOption = (option: string): boolean => (LORA_OPTIONS as readonly string[]).includes(option);

export function loraChoices(choices: readonly LoraChoice[], partial: string): Choice[] {
  const text = partial.trim();
  const colon = text.lastIndexOf(':');
  if (colon > 0) {
    const found = findLora(choices, text.slice(0, colon));
    if (found) {
      const entry = `${found.name}:${text.slice(colon + 1)}`;
      return [{ name: entry, value: entry }];
    }
  }
  const word = (colon > 0 ? text.slice(0, colon) : text).toLowerCase();
  return choices
    .filter((c) => c.name.toLowerCase().includes(word))
    .slice(0, MAX_SUGGESTIONS)
    .map((c) => ({ name: `${c.name} (weight ${formatLoraWeight(c.weight)})`, value: c.name }));
}
