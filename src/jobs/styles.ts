/**
 * Styles: named prompt presets from the config (`styles: {cinematic: {prompt: "{prompt}, cinematic
 * still", negative: "cartoon"}}`). A job keeps the user's own prompt and its style separately
 * (`JobParams.prompt`, `JobParams.style`); the prompt the model reads is put together here, in one
 * place, for the pipeline and for the PNG's parameters.
 */
import { findByName } from '../edit-distance.js';
import type { JobParams } from './types.js';

/** Where the user's prompt goes in a style's prompt template. */
export const STYLE_PLACEHOLDER = '{prompt}';

/** The style name that means "no style" (it overrides a saved default style). */
export const NO_STYLE = 'none';

/** Style names: a letter or digit, then letters, digits, `-` or `_`; at most 32 (a Discord option value). */
export const STYLE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

/** One configured style. */
export interface StyleTemplate {
  /** Contains `{prompt}` at least once. */
  prompt: string;
  /** Added to the user's negative prompt (may be empty). */
  negative: string;
}

/** The prompt and negative prompt the model reads: the user's, dressed in the job's style if it has one. */
export function styledPrompts(params: Pick<JobParams, 'prompt' | 'negativePrompt' | 'style'>): {
  prompt: string;
  negativePrompt: string;
} {
  const { style } = params;
  if (!style) return { prompt: params.prompt, negativePrompt: params.negativePrompt };
  // split/join rather than replace: a `$&` in the user's prompt must stay as typed.
  const prompt = style.prompt.split(STYLE_PLACEHOLDER).join(params.prompt);
  const negativePrompt = [params.negativePrompt.trim(), style.negative.trim()].filter(Boolean).join(', ');
  return { prompt, negativePrompt };
}

/** The configured style called `name` (case-insensitive), with its configured name. */
export function findStyle(
  styles: Readonly<Record<string, StyleTemplate>>,
  name: string,
): { name: string; template: StyleTemplate } | undefined {
  const found = findByName(Object.entries(styles), name, ([key]) => key);
  return found && { name: found[0], template: found[1] };
}
