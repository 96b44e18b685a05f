/**
 * Where the demo evaluation finds its inputs, from `--demo-*=value` arguments (after
 * `npm run bench -- demo-model`), environment variables, and the repository's defaults.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Precision } from '../../src/pipeline/sd35/options.js';
import type { RawImage, SamplerName } from '../../src/pipeline/types.js';
import type { GenerationSettings, Variant } from './runner.js';
import {
  DEFAULT_VOCABULARY,
  parseHeldOut,
  readVocabulary,
  type SceneTruth,
  type WorldVocabulary,
} from './world.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Where the demo model is looked for when no folder is named, first found: `models/demo` in the
 * repository, then train.py's output (a ComfyUI layout: checkpoints/, text_encoders/, tokenizers/).
 */
export const DEFAULT_MODELS_DIRS = ['models/demo', 'tools/train-demo/runs/demo/model'];
/** Its fp16 twin, looked for beside it: `<dir>-fp16`, or train.py's `model-fp16`. */
export const FP16_SUFFIXES = ['-fp16', '_fp16'];
export const WORLD_DIR = 'tools/train-demo';
/** Held-out caption files looked for in WORLD_DIR, in order, before asking world.py for them. */
export const HELD_OUT_FILES = ['held-out.jsonl', 'held_out.jsonl', 'heldout.jsonl', 'held-out.json'];

export interface DemoEvalOptions {
  modelsDir: string;
  /** A separate folder holding the fp16 weights (train.py's `model-fp16/`), when there is one. */
  fp16Dir?: string;
  /** world.json, when there. */
  worldFile?: string;
  vocabulary: WorldVocabulary;
  /** Held-out captions file, when one was read (else they came from world.py). */
  captionsFile?: string;
  /** How many held-out captions to generate. @default 200 */
  n: number;
  /** Explicit variants (`--demo-variant=fp16:file.safetensors:fp16`); the folder's otherwise. */
  variants?: Variant[];
  settings: Partial<GenerationSettings>;
  threads?: number;
  /** Where the grids go; @default bench/results */
  outDir: string;
  dataDir?: string;
  /** Also score the world's own drawings (needs python3 with numpy). @default true */
  drawn: boolean;
}

/** `--demo-key=value` arguments (repeatable keys collect every value). */
export function parseArgs(argv: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const arg of argv) {
    const m = /^--demo-([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!m) continue;
    out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2] ?? 'true']);
  }
  return out;
}

const PRECISIONS: readonly Precision[] = ['fp8', 'fp8-weights', 'fp16', 'fp32'];

/**
 * `label:where[:precision]`, where is a checkpoint file name under the models folder's
 * checkpoints/ or a models folder of its own; the precision defaults to the label when it is one.
 * `w8a8` is fp8 weights run as W8A8 (Variant.w8a8); `w8a8-handoff` the same with the MLP hand-off
 * (Variant.fp8MlpHandoff).
 */
export function parseVariant(text: string): Variant {
  const [label, where, precision] = text.split(':');
  const given = precision ?? label;
  const handoff = given === 'w8a8-handoff';
  const w8a8 = given === 'w8a8' || handoff;
  const p = (w8a8 ? 'fp8' : given) as Precision;
  if (!label || !PRECISIONS.includes(p)) {
    throw new Error(
      `--demo-variant=${text}: expected label:checkpoint-or-folder[:precision], precision one of ${[...PRECISIONS, 'w8a8', 'w8a8-handoff'].join(', ')}`,
    );
  }
  const how = { label, precision: p, ...(w8a8 ? { w8a8 } : {}), ...(handoff ? { fp8MlpHandoff: true } : {}) };
  if (where && existsSync(where) && statSync(where).isDirectory()) {
    return { ...how, modelsDir: resolve(where) };
  }
  return { ...how, ...(where ? { checkpoint: where } : {}) };
}

function number(args: Map<string, string[]>, key: string): number | undefined {
  const v = args.get(key)?.at(-1);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--demo-${key}=${v}: expected a number`);
  return n;
}

/** The `--demo-<key>` options resolveOptions reads (anything else is refused, not ignored). */
export const OPTION_KEYS: readonly string[] = [
  'models',
  'fp16',
  'world',
  'captions',
  'size',
  'sampler',
  'steps',
  'guidance',
  'variant',
  'n',
  'threads',
  'out',
  'data',
  'drawn',
];

export function resolveOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): DemoEvalOptions {
  const args = parseArgs(argv);
  const unknown = [...args.keys()].filter((k) => !OPTION_KEYS.includes(k));
  if (unknown.length > 0) {
    throw new Error(
      `${unknown.map((k) => `--demo-${k}`).join(', ')}: not an option of the demo evaluation; it reads ${OPTION_KEYS.map((k) => `--demo-${k}`).join(', ')}`,
    );
  }
  const last = (key: string) => args.get(key)?.at(-1);
  const fromRoot = (p: string) => resolve(REPO_ROOT, p);
  const modelsDir = resolve(
    last('models') ??
      env['ATELIER_DEMO_MODELS'] ??
      DEFAULT_MODELS_DIRS.map(fromRoot).find((d) => existsSync(d)) ??
      fromRoot(DEFAULT_MODELS_DIRS[0]!),
  );
  const fp16Dir =
    last('fp16') ??
    env['ATELIER_DEMO_MODELS_FP16'] ??
    FP16_SUFFIXES.map((suffix) => modelsDir + suffix).find((d) => existsSync(d));
  const worldCandidate = last('world') ?? fromRoot(join(WORLD_DIR, 'world.json'));
  const worldFile = existsSync(worldCandidate) ? worldCandidate : undefined;
  const vocabulary = worldFile ? readVocabulary(worldFile) : DEFAULT_VOCABULARY;
  const captionsFile =
    last('captions') ?? HELD_OUT_FILES.map((f) => fromRoot(join(WORLD_DIR, f))).find((f) => existsSync(f));
  const size = number(args, 'size');
  const sampler = last('sampler') as SamplerName | undefined;
  const settings: Partial<GenerationSettings> = {
    ...(number(args, 'steps') !== undefined ? { steps: number(args, 'steps') } : {}),
    ...(number(args, 'guidance') !== undefined ? { guidance: number(args, 'guidance') } : {}),
    ...(sampler ? { sampler } : {}),
    ...(size !== undefined ? { width: size, height: size } : {}),
  };
  const variants = args.get('variant')?.map(parseVariant);
  return {
    modelsDir,
    ...(fp16Dir ? { fp16Dir: resolve(fp16Dir) } : {}),
    ...(worldFile ? { worldFile } : {}),
    vocabulary,
    ...(captionsFile ? { captionsFile: resolve(captionsFile) } : {}),
    n: number(args, 'n') ?? 200,
    ...(variants ? { variants } : {}),
    settings,
    ...(number(args, 'threads') !== undefined ? { threads: number(args, 'threads') } : {}),
    outDir: resolve(last('out') ?? fromRoot('bench/results')),
    ...(last('data') ? { dataDir: resolve(last('data')!) } : {}),
    drawn: last('drawn') !== 'false',
  };
}

function worldPy(): string {
  return resolve(REPO_ROOT, WORLD_DIR, 'world.py');
}

/** The first `n` held-out captions: from the captions file, else from `world.py --held-out n`. */
export function loadCaptions(options: DemoEvalOptions): { captions: SceneTruth[]; source: string } {
  if (options.captionsFile) {
    const all = parseHeldOut(readFileSync(options.captionsFile, 'utf8'), options.vocabulary);
    return { captions: all.slice(0, options.n), source: options.captionsFile };
  }
  if (!existsSync(worldPy())) {
    throw new Error(
      `no held-out captions: neither ${HELD_OUT_FILES.join(', ')} nor world.py in ${WORLD_DIR}`,
    );
  }
  const text = execFileSync('python3', [worldPy(), '--held-out', String(options.n)], {
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  return {
    captions: parseHeldOut(text, options.vocabulary),
    source: `python3 ${WORLD_DIR}/world.py --held-out ${options.n}`,
  };
}

/** Reads a binary PPM (P6, 8-bit), as world.py writes its drawings. */
export function readPpm(bytes: Uint8Array): RawImage {
  const header = Buffer.from(bytes.subarray(0, 64)).toString('latin1');
  const m = /^P6\s+(\d+)\s+(\d+)\s+255\s/.exec(header);
  if (!m) throw new Error('not an 8-bit binary PPM');
  const width = Number(m[1]);
  const height = Number(m[2]);
  return {
    width,
    height,
    data: new Uint8Array(bytes.subarray(m[0].length, m[0].length + width * height * 3)),
  };
}

/** The world's own drawings of the first `n` held-out captions (python3 + numpy), in order. */
export function drawHeldOut(n: number): { truths: string; images: RawImage[] } {
  const dir = mkdtempSync(join(tmpdir(), 'atelier-world-'));
  try {
    const truths = execFileSync('python3', [worldPy(), '--held-out', String(n), '--png-dir', dir], {
      encoding: 'utf8',
      maxBuffer: 64 * 2 ** 20,
    });
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.ppm'))
      .sort();
    return { truths, images: files.map((f) => readPpm(readFileSync(join(dir, f)))) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
