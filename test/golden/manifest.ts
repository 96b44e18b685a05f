/**
 * Typed access to the golden sets: the project's own (test/golden-data, made by
 * tools/golden/make_golden.py from the official reference) and, when present, $ATELIER_GOLDEN_DIR
 * or ../shared/golden. What each manifest.json says, its tensors through the product's own
 * safetensors reader, and the error measure the manifests' tolerances are stated in. Tests run on
 * every set found and take every shape, seed and tolerance from its manifest, never from constants.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
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

/** The project's own golden set, made by tools/golden/make_golden.py and committed. */
export const OWN_GOLDEN_DIR = resolve(REPO_ROOT, 'test/golden-data');

/** One golden set: a folder with manifest.json and the files it names. */
export class GoldenSet {
  readonly manifest: GoldenManifest;

  constructor(
    /** How tests name it: "own" for the project's set, else the folder relative to the repository. */
    readonly name: string,
    readonly dir: string,
  ) {
    this.manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as GoldenManifest;
  }

  /** Whether the manifest describes every one of these components. */
  has(...names: string[]): boolean {
    return names.every((n) => n in this.manifest.components);
  }

  /** A component of the manifest by name; throws if this set has none. */
  component<T extends GoldenComponent = GoldenComponent>(name: string): T {
    const found = this.manifest.components[name];
    if (!found) throw new Error(`The golden set ${this.name} has no component "${name}"`);
    return found as T;
  }

  /** A path inside the set's folder. */
  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  /** Opens a safetensors file of the set (a manifest field or a path) with the product's reader. */
  open(field: string): SafetensorsFile {
    return SafetensorsFile.open(this.path(manifestPath(field)));
  }

  /** Reads a JSON file of the set (a manifest field or a path). */
  readJson<T>(field: string): T {
    return JSON.parse(readFileSync(this.path(manifestPath(field)), 'utf8')) as T;
  }

  /** The component whose io file this field names ("<io file> (x, timestep, …)"), if any. */
  componentWithIo(field: string): GoldenComponent | undefined {
    const io = manifestPath(field);
    return Object.values(this.manifest.components).find((c) => c.io === io);
  }

  toString(): string {
    return this.name;
  }
}

/**
 * The other golden set, when there is one: $ATELIER_GOLDEN_DIR (relative to the repository root;
 * an error when it names no set), else ../shared/golden when it exists.
 */
export function externalGoldenDir(): string | undefined {
  const configured = process.env.ATELIER_GOLDEN_DIR;
  if (configured) {
    const dir = isAbsolute(configured) ? configured : resolve(REPO_ROOT, configured);
    if (!existsSync(join(dir, 'manifest.json')))
      throw new Error(`ATELIER_GOLDEN_DIR=${configured}: no golden set there (manifest.json missing).`);
    return dir;
  }
  const shared = resolve(REPO_ROOT, '../shared/golden');
  return existsSync(join(shared, 'manifest.json')) ? shared : undefined;
}

const loaded = new Map<string, GoldenSet>();

function load(name: string, dir: string): GoldenSet {
  let set = loaded.get(dir);
  if (!set) {
    set = new GoldenSet(name, dir);
    loaded.set(dir, set);
  }
  return set;
}

/**
 * Every golden set found, the project's own first, then $ATELIER_GOLDEN_DIR or ../shared/golden
 * when present; only those with all the components named. Tests run on each (`describe.each`), so
 * a component a set lacks makes no test for that set.
 */
export function goldenSets(...needs: string[]): GoldenSet[] {
  const sets = [load('own', OWN_GOLDEN_DIR)];
  const external = externalGoldenDir();
  if (external && resolve(external) !== OWN_GOLDEN_DIR)
    sets.push(load(relative(REPO_ROOT, external), external));
  return sets.filter((s) => s.has(...needs));
}

/**
 * The path a manifest field names. Some fields follow the path with a description
 * ("e2e/e2e.io.safetensors (keys '<run>.<tensor>')", "tokenizers/clip (CLIP ViT-L/14 …)"):
 * the path is the first word.
 */
export function manifestPath(field: string): string {
  return field.trim().split(/\s/)[0];
}

/**
 * The prefix of a component's keys in its weights file: `key_prefix` when it is one word
 * ("model.diffusion_model.", "first_stage_model.", "" — the project's set keeps the VAE, the
 * Large MMDiT and the CLIP encoders in its end-to-end model's files); a description in its place
 * (a VAE with a file of its own: "first_stage_model. in single-file checkpoints; none in this
 * file") means none.
 */
export function keyPrefix(component: Pick<GoldenComponent, 'key_prefix'>): string {
  const value = (component.key_prefix ?? '').trim();
  return /\s/.test(value) ? '' : value;
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
