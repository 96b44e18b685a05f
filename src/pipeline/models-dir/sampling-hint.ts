/**
 * Sampling settings a checkpoint suggests for itself: the `atelier.sampling` entry of its
 * safetensors metadata, JSON such as `{"steps": 16, "guidance": 4.5, "sampler": "euler",
 * "resolution": 256}`. A model trained for few steps or a small size (the bundled demo model, a
 * distilled fine-tune) says so in its file, so the operator's config needs no entry for it.
 * Every field is optional; the family's defaults fill the rest. A bad entry is ignored with a note.
 */
import { SAMPLER_NAMES, type SamplerName } from '../../vocabulary.js';

export const SAMPLING_HINT_KEY = 'atelier.sampling';

export interface SamplingHint {
  steps?: number;
  guidance?: number;
  sampler?: SamplerName;
  /** Side of the model's 1:1 size in pixels. */
  resolution?: number;
}

/** The hint in `metadata`, or a note saying what is wrong with it (then no hint). */
export function readSamplingHint(
  metadata: Readonly<Record<string, unknown>>,
  file: string,
): { hint?: SamplingHint; note?: string } {
  const text = metadata[SAMPLING_HINT_KEY];
  if (text === undefined) return {};
  const bad = (what: string) => ({
    note: `${file}: its ${SAMPLING_HINT_KEY} metadata is ignored: ${what} (expected JSON like {"steps": 16, "guidance": 4.5, "sampler": "euler", "resolution": 256})`,
  });
  let raw: unknown;
  try {
    raw = JSON.parse(String(text));
  } catch {
    return bad('not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('not an object');
  const r = raw as Record<string, unknown>;
  const hint: SamplingHint = {};
  if (r['steps'] !== undefined) {
    const s = r['steps'];
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 1 || s > 200)
      return bad('steps must be a whole number from 1 to 200');
    hint.steps = s;
  }
  if (r['guidance'] !== undefined) {
    const g = r['guidance'];
    if (typeof g !== 'number' || !Number.isFinite(g) || g < 0 || g > 30)
      return bad('guidance must be a number from 0 to 30');
    hint.guidance = g;
  }
  if (r['sampler'] !== undefined) {
    const s = r['sampler'];
    if (typeof s !== 'string' || !(SAMPLER_NAMES as readonly string[]).includes(s)) {
      return bad(`sampler must be one of ${SAMPLER_NAMES.join(', ')}`);
    }
    hint.sampler = s as SamplerName;
  }
  if (r['resolution'] !== undefined) {
    const px = r['resolution'];
    if (typeof px !== 'number' || !Number.isInteger(px) || px < 64 || px > 4096 || px % 16 !== 0) {
      return bad('resolution must be a multiple of 16 from 64 to 4096');
    }
    hint.resolution = px;
  }
  return { hint };
}
