/**
 * Typed access to the golden set (../shared/golden, see its README): where it is, what
 * manifest.json says, its tensors through the product's own safetensors reader, and the error
 * measure the manifest's tolerances are stated in. Tests take every shape, seed and tolerance
 * from here, never from constants, so other golden sets run through the same tests.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface GoldenTensorSpec {
  shape: number[];
  dtype: string;
}

/** Fields most components share; each component adds its own (read them with `component<T>()`). */
export interface GoldenComponent {
  class?: string;
  notes?: string;
  /** safetensors file of the weights, relative to the golden folder. */
  weights?: string;
  /** safetensors file of inputs and outputs, relative to the golden folder. */
  io?: string;
  key_prefix?: string;
  tensors?: Record<string, GoldenTensorSpec>;
  tolerance_rel_l2?: number;
  [key: string]: unknown;
}

export interface GoldenNoiseCase {
  key: string;
  seed: number;
  shape: number[];
}

export interface GoldenNoise extends GoldenComponent {
  io: string;
  cases: GoldenNoiseCase[];
  tolerance_abs: number;
}

export interface GoldenSamplerRun {
  steps: number;
  cfg: number;
  denoise: number;
  /** "zeros", or the io tensor holding the start latent. */
  start_latent: string;
}

export interface GoldenSampler extends GoldenComponent {
  io: string;
  shift: number;
  txt2img: GoldenSamplerRun;
  img2img: GoldenSamplerRun;
  tensors: Record<string, GoldenTensorSpec>;
}

export interface GoldenDpmpp2m extends GoldenComponent {
  io: string;
  inputs_from: string;
  steps: number;
  cfg: number;
  start_latent: string;
}

export interface GoldenE2ERun {
  name: string;
  prompt: string;
  negative: string;
  seed: number;
  steps: number;
  cfg: number;
  width: number;
  height: number;
  sampler: string;
  denoise?: number;
  init_image?: string;
}

export interface GoldenE2E extends GoldenComponent {
  models: string;
  tokenizers: string;
  io: string;
  runs: GoldenE2ERun[];
  tolerance: { latent_out_rel_l2: number; image_max_abs_diff: number };
}

export interface GoldenManifest {
  reference: string;
  dtype: string;
  device: string;
  seed: number;
  components: Record<string, GoldenComponent>;
  [key: string]: unknown;
}

/** The golden folder: $ATELIER_GOLDEN_DIR (relative to the repo root) or ../shared/golden. */
export function goldenDir(): string {
  const configured = process.env.ATELIER_GOLDEN_DIR;
  const dir = configured
    ? isAbsolute(configured)
      ? configured
      : resolve(REPO_ROOT, configured)
    : resolve(REPO_ROOT, '../shared/golden');
  if (!existsSync(join(dir, 'manifest.json'))) {
    throw new Error(
      `No golden set at ${dir} (manifest.json missing). Put ../shared/golden beside the repository or set ATELIER_GOLDEN_DIR.`,
    );
  }
  return dir;
}

/** A path inside the golden folder. */
export function goldenPath(...parts: string[]): string {
  return join(goldenDir(), ...parts);
}

let cached: { dir: string; manifest: GoldenManifest } | undefined;

export function loadManifest(): GoldenManifest {
  const dir = goldenDir();
  if (cached?.dir !== dir) {
    cached = {
      dir,
      manifest: JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as GoldenManifest,
    };
  }
  return cached.manifest;
}

/** A component of the manifest by name; throws if this golden set has none. */
export function component<T extends GoldenComponent = GoldenComponent>(name: string): T {
  const found = loadManifest().components[name];
  if (!found) throw new Error(`The golden manifest has no component "${name}"`);
  return found as T;
}

/**
 * The path a manifest field names. Some fields follow the path with a description
 * ("e2e/e2e.io.safetensors (keys '<run>.<tensor>')", "tokenizers/clip (CLIP ViT-L/14 …)"):
 * the path is the first word.
 */
export function manifestPath(field: string): string {
  return field.trim().split(/\s/)[0];
}

/** Opens a golden safetensors file (a manifest field or a path in the golden folder) with the product's reader. */
export function openGolden(field: string): SafetensorsFile {
  return SafetensorsFile.open(goldenPath(manifestPath(field)));
}

/** Reads a JSON file of the golden folder (a manifest field or a path). */
export function readGoldenJson<T>(field: string): T {
  return JSON.parse(readFileSync(goldenPath(manifestPath(field)), 'utf8')) as T;
}

/** The manifest's error measure: ‖out − ref‖₂ / ‖ref‖₂ over the whole tensor, in float64. */
export function relL2(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length)
    throw new RangeError(`Compared tensors differ in size: ${out.length} vs ${ref.length}`);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Number(out[i]) - Number(ref[i]);
    diff += d * d;
    norm += Number(ref[i]) * Number(ref[i]);
  }
  return norm === 0 ? (diff === 0 ? 0 : Number.POSITIVE_INFINITY) : Math.sqrt(diff) / Math.sqrt(norm);
}

/** The largest element-wise |out − ref|, in float64. */
export function maxAbsDiff(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length)
    throw new RangeError(`Compared tensors differ in size: ${out.length} vs ${ref.length}`);
  let max = 0;
  for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(Number(out[i]) - Number(ref[i])));
  return max;
}
