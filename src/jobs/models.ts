/**
 * Several models resident (config `models.list`): what chat validation knows of each configured
 * model, and how a job's recorded model (`JobParams.model`) is found again among the configured
 * ones. Identity is the checkpoint's header hash (A1111's `Model hash`), so a model the operator
 * renamed is still found; a model whose checkpoint is gone is refused with the configured names.
 */
import { findByName } from '../edit-distance.js';
import { NotFoundError } from '../errors.js';
import type { SamplerName } from '../vocabulary.js';
import type { JobModel } from './types.js';

/** Model names: a letter or digit, then letters, digits, `.`, `-` or `_`; at most 32 (a Discord choice). */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$/;

/** The word that means "no model of my own" in /settings and /atelier model (reserved as a name). */
export const DEFAULT_MODEL = 'default';

/** `mode: draft` / `--fast`: the fastest loaded model, with its own defaults. */
export const DRAFT_MODE = 'draft';

/** One configured model as chat validation sees it. */
export interface ModelChoice {
  name: string;
  /** The checkpoint's name (A1111's `Model`). */
  label: string;
  hash?: string;
  /** Its own defaults (config `models.list.<name>.*`, else `generation.*`, else its family's), in range. */
  defaults: { steps: number; guidance: number; sampler: SamplerName };
  /** Side of its 1:1 size in pixels; @default 1024 */
  resolution?: number;
}

/** The configured model called `name` (case-insensitive). */
export function findModel(models: readonly ModelChoice[], name: string): ModelChoice | undefined {
  return findByName(models, name, (m) => m.name);
}

/** What a job records of its model. */
export function jobModelOf(model: ModelChoice): JobModel {
  return { name: model.name, ...(model.hash ? { hash: model.hash } : {}), label: model.label };
}

/**
 * The configured model a job recorded: the one with its checkpoint's hash (the same name first, so
 * a checkpoint configured twice keeps its name), else — for a job that recorded no hash — the one
 * of its name. Undefined when no configured model has it.
 */
export function configuredModelOf(
  models: readonly ModelChoice[],
  recorded: JobModel,
): ModelChoice | undefined {
  if (recorded.hash) {
    const same = models.filter((m) => m.hash === recorded.hash);
    return findModel(same, recorded.name) ?? same[0];
  }
  return findModel(models, recorded.name);
}

/** How a recorded model is named to a user: `turbo (sd3.5_large_turbo)`. */
export function describeJobModel(model: JobModel): string {
  return model.label && model.label !== model.name ? `“${model.name}” (${model.label})` : `“${model.name}”`;
}

/**
 * The refusal for a reroll, variation or upscale of an image whose model is no longer configured:
 * it would not be the same image's model any more.
 */
export function modelGoneError(recorded: JobModel, models: readonly ModelChoice[]): NotFoundError {
  const names = models.map((m) => m.name).join(', ');
  return new NotFoundError(
    `model ${recorded.name}${recorded.hash ? ` (${recorded.hash})` : ''}`,
    `That image was made with the model ${describeJobModel(recorded)}, which is no longer configured here, ` +
      `so I can't make more of it with the same model. Configured models: ${names || 'none'}.`,
  );
}
