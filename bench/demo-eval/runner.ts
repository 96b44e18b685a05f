/**
 * Generates each held-out caption through the product's own pipeline (the in-process SD3.5 engine,
 * as bench/pipeline.ts and the pipeline child use it: same discovery, loader, graphs and sampler)
 * and scores the picture. One run per weight variant (fp16, fp8, W8A8).
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { Precision } from '../../src/pipeline/sd35/options.js';
import type { RawImage, SamplerName } from '../../src/pipeline/types.js';
import { analyseScene, expectationOf, judgeScene, type SceneAnalysis, type Verdicts } from './analyse.js';
import type { SceneTruth, WorldVocabulary } from './world.js';

/** One set of weights to evaluate. */
export interface Variant {
  /** `fp16`, `fp8`… (the report's name for it). */
  label: string;
  /** Its own models folder (the fp16 export beside the bundled fp8 one); the run's when absent. */
  modelsDir?: string;
  /** Checkpoint file under `<modelsDir>/checkpoints`; the only one there when absent. */
  checkpoint?: string;
  /** Said in the report (e.g. that fp16 is the fp8 checkpoint dequantized). */
  note?: string;
  /**
   * The engine's precision: `fp8` keeps (or quantizes to) e4m3 weights and runs W8A8 where the GPU
   * allows it, `fp8-weights` the same weights always weight-only, `fp16` dequantizes fp8.
   */
  precision: Precision;
  /**
   * W8A8 with per-token activations everywhere (issue 10): the C-API step with our
   * atelier:Fp8Linear, here on the op library's CPU kernels, which compute the GPU kernels'
   * quantized math exactly (activations on the e4m3 grid per token, fp32 sums). Needs precision `fp8`.
   */
  w8a8?: boolean;
  /**
   * With `w8a8`: the per-tensor MLP (EngineOptions.fp8MlpHandoff, what the H200 runs since the
   * tenth session: the MLP's activations on the e4m3 grid with delayed per-tensor scales), on the
   * CPU kernels' exact math of it.
   */
  fp8MlpHandoff?: boolean;
}

export interface GenerationSettings {
  steps: number;
  guidance: number;
  sampler: SamplerName;
  width: number;
  height: number;
}

export interface SceneResult {
  caption: string;
  seed: number;
  type: SceneTruth['type'];
  verdicts: Verdicts;
  /** What was found, in a line (for the report's list of misses). */
  found: string;
  ms: number;
}

export interface VariantRun {
  variant: Variant;
  model: string;
  settings: GenerationSettings;
  scenes: SceneResult[];
  /** The first `keepImages` pictures, for the grid. */
  images: RawImage[];
  msPerImage: number;
}

export interface RunOptions {
  modelsDir: string;
  captions: SceneTruth[];
  vocabulary: WorldVocabulary;
  variants: Variant[];
  /** Graph cache and quantized weights; a temporary folder (removed after) when absent. */
  dataDir?: string;
  /** Override the model's own sampling defaults. */
  settings?: Partial<GenerationSettings>;
  /** CPU threads for ONNX Runtime; its own choice when absent. */
  threads?: number;
  /** Pictures kept for the grid. @default 16 */
  keepImages?: number;
  onProgress?: (variant: Variant, done: number, total: number) => void;
}

/** Why the demo model cannot be evaluated (a sentence), or undefined when its folder looks usable. */
export function missingModel(modelsDir: string): string | undefined {
  const checkpoints = join(modelsDir, 'checkpoints');
  if (!existsSync(modelsDir)) return `the demo model is not there yet: no folder ${modelsDir}`;
  if (!existsSync(checkpoints) || !readdirSync(checkpoints).some((f) => f.endsWith('.safetensors'))) {
    return `the demo model is not there yet: no checkpoints/*.safetensors in ${modelsDir}`;
  }
  return undefined;
}

const safetensors = (dir: string) =>
  readdirSync(join(dir, 'checkpoints'))
    .filter((f) => f.endsWith('.safetensors'))
    .sort();

/**
 * The fp16, fp8 and W8A8 runs a models folder offers. With a separate fp16 folder (train.py writes
 * `model/`, scaled fp8, and `model-fp16/`): fp16 from that, fp8 from the bundled one. Otherwise a
 * checkpoint whose name says fp8 runs as fp8, one that says fp16/bf16/fp32 as fp16, and a single
 * checkpoint runs both ways (fp8 weights dequantized for fp16, or fp16 quantized at load for fp8).
 */
export function defaultVariants(modelsDir: string, fp16Dir?: string): Variant[] {
  const variants = precisionVariants(modelsDir, fp16Dir);
  // W8A8 (what the H200 runs for `precision: fp8`) from the same fp8 weights, on the CPU kernels.
  const fp8 = variants.find((v) => v.label === 'fp8');
  return fp8 ? [...variants, { ...fp8, label: 'w8a8', w8a8: true }] : variants;
}

/** The fp16 and fp8 runs alone (defaultVariants without W8A8). */
function precisionVariants(modelsDir: string, fp16Dir?: string): Variant[] {
  const files = safetensors(modelsDir);
  const fp8 = files.find((f) => /fp8|e4m3/i.test(f));
  const full = files.find((f) => /fp16|f16|bf16|fp32/i.test(f) && f !== fp8);
  const only = files.length === 1 ? files[0] : undefined;
  if (fp16Dir && !missingModel(fp16Dir)) {
    const fp16Files = safetensors(fp16Dir);
    return [
      {
        label: 'fp16',
        modelsDir: fp16Dir,
        precision: 'fp16',
        ...(fp16Files.length === 1 ? { checkpoint: fp16Files[0] } : {}),
      },
      { label: 'fp8', precision: 'fp8', ...((fp8 ?? only) ? { checkpoint: fp8 ?? only } : {}) },
    ];
  }
  if (fp8 || full) {
    const dequantized = 'no fp16 weights found: the fp8 checkpoint, dequantized';
    const quantized = 'no fp8 weights found: the fp16 checkpoint, quantized at load';
    return [
      ...(full ? [{ label: 'fp16', checkpoint: full, precision: 'fp16' as const }] : []),
      ...(fp8 ? [{ label: 'fp8', checkpoint: fp8, precision: 'fp8' as const }] : []),
      // Only one of the two on disk: the other precision from the same file.
      ...(!full && fp8
        ? [{ label: 'fp16', checkpoint: fp8, precision: 'fp16' as const, note: dequantized }]
        : []),
      ...(full && !fp8
        ? [{ label: 'fp8', checkpoint: full, precision: 'fp8' as const, note: quantized }]
        : []),
    ].sort((a, b) => a.label.localeCompare(b.label));
  }
  const both = 'one checkpoint, run at both precisions';
  return [
    { label: 'fp16', precision: 'fp16', note: both, ...(only ? { checkpoint: only } : {}) },
    { label: 'fp8', precision: 'fp8', note: both, ...(only ? { checkpoint: only } : {}) },
  ];
}

function describe(analysis: SceneAnalysis): string {
  const objects = analysis.objects.map((o) => `${o.colour} ${o.shape} @${o.x.toFixed(2)},${o.y.toFixed(2)}`);
  const bg =
    analysis.background.length > 1 && analysis.top !== analysis.bottom
      ? `${analysis.top}/${analysis.bottom}`
      : analysis.background.map((b) => b.colour).join('+');
  return `${objects.length} object(s): ${objects.join('; ') || '-'} on ${bg || '?'}`;
}

/** Generates and scores every caption with one variant's weights. */
export async function runVariant(variant: Variant, options: RunOptions): Promise<VariantRun> {
  const ownDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'atelier-demo-eval-'));
  const engine = new Sd35Engine({
    modelsDir: variant.modelsDir ?? options.modelsDir,
    ...(variant.checkpoint ? { checkpoint: variant.checkpoint } : {}),
    dataDir,
    precision: variant.precision,
    provider: 'cpu',
    ...(variant.w8a8
      ? {
          runtime: 'capi' as const,
          fp8Linear: 'w8a8' as const,
          // Explicit both ways: the engine's default is the per-tensor MLP.
          fp8MlpHandoff: variant.fp8MlpHandoff === true,
          customOpsLibrary: buildCustomOpsLibrary('cpu'),
        }
      : { runtime: 'stock' as const }),
    ...(options.threads ? { threads: options.threads } : {}),
  });
  try {
    await engine.load();
    const info = engine.info();
    const settings: GenerationSettings = {
      steps: info.defaults.steps,
      guidance: info.defaults.guidance,
      sampler: info.defaults.sampler,
      width: info.defaults.resolution,
      height: info.defaults.resolution,
      ...options.settings,
    };
    const keep = options.keepImages ?? 16;
    const scenes: SceneResult[] = [];
    const images: RawImage[] = [];
    let total = 0;
    for (const truth of options.captions) {
      const t0 = performance.now();
      const output = await engine.generate({
        prompt: truth.caption,
        negativePrompt: '',
        seed: truth.seed,
        count: 1,
        ...settings,
      });
      const ms = performance.now() - t0;
      total += ms;
      const image = output.images[0]!;
      if (images.length < keep) images.push(image);
      const analysis = analyseScene(image, { vocabulary: options.vocabulary });
      scenes.push({
        caption: truth.caption,
        seed: truth.seed,
        type: truth.type,
        verdicts: judgeScene(analysis, expectationOf(truth)),
        found: describe(analysis),
        ms,
      });
      options.onProgress?.(variant, scenes.length, options.captions.length);
    }
    return {
      variant,
      model: info.model,
      settings,
      scenes,
      images,
      msPerImage: total / Math.max(1, scenes.length),
    };
  } finally {
    await engine.dispose();
    if (ownDataDir) rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Scores pictures that already exist (the world's own drawings, or saved generations). */
export function scoreImages(
  pairs: { truth: SceneTruth; image: RawImage }[],
  vocabulary: WorldVocabulary,
): SceneResult[] {
  return pairs.map(({ truth, image }) => {
    const t0 = performance.now();
    const analysis = analyseScene(image, { vocabulary });
    return {
      caption: truth.caption,
      seed: truth.seed,
      type: truth.type,
      verdicts: judgeScene(analysis, expectationOf(truth)),
      found: describe(analysis),
      ms: performance.now() - t0,
    };
  });
}
