/**
 * GPU memory preflight (issue 11): how much GPU memory a configuration is expected to peak at, where
 * the text encoders run (`models.placement`), how `models.gpuMemoryLimit` is split between the
 * sessions' arenas, the VAE's tiling budget, and whether a job fits. Pure arithmetic on the model
 * files' weight sizes (as `atelier doctor` reads them) and a few calibrated constants; the engine,
 * `doctor` and the start log all use it, so they say the same.
 *
 * The estimate (bytes):
 *
 *   peak(job) = overhead                                  CUDA context, cuBLAS/cuDNN workspaces
 *             + Σ weights resident on the GPU            the files' sizes at the in-memory type
 *             + text activations   (encoders on the GPU)
 *             + MMDiT activations  A1(model) × images × tokens / tokens(1024²)
 *             + VAE decode         vaeDecodeBytes(untiled, or the tile under the VAE's share)
 *             + (capiShapes − 1) × (MMDiT weights + its reference activations)
 *
 * It is a sum, not a maximum over the phases, because each session's ONNX Runtime arena keeps its
 * high-water mark: after one job the encoders', the MMDiT's and the VAE's peaks are all held.
 *
 * Calibration (the only GPU figures so far; H100/H200, arena kNextPowerOfTwo, 1024², batch 1, text
 * encoders, MMDiT and fp32 VAE resident; bench/NOTES.md issue 6 and README "GPU memory"). The bench
 * reports nvidia-smi's MiB / 1024, i.e. GiB; the constants here are bytes. Large fp8 right after
 * loading 16.5 GiB (17.7e9) against 14.8e9 bytes of weights → overhead 2.9e9; the fp32 VAE decode
 * +6.42 GiB (6.9e9, what vaeDecodeBytes gives at 1024²); what is left of the peaks, less 0.3e9 for
 * the text encoders, is the MMDiT's: Large fp8 29.8 GiB (32.0e9) → 7.2e9, Medium fp8 24.3 GiB
 * (26.1e9) → 6.9e9; the fp16 peaks leave less (Large 37.2 GiB → 6.9e9, Medium 26.3 GiB → 6.5e9).
 * One figure per family (its fp8 one) is used, so the estimate errs high at fp16 (tested).
 * Scaling with images and pixels is linear (CFG doubles the batch inside the step; flash attention
 * is linear in tokens); that, the text figure and kSameAsRequested's effect are unmeasured.
 *
 * A MemoryCalibration (EngineOptions.memoryCalibration; bench/gpu/atelier-bench.ts makes one from
 * the arenas' own counters, `calibrationFromArenas`) replaces the overhead, the MMDiT's activations
 * per image and the text encoders' arenas with figures measured on the GPU. Those figures are what
 * capped arenas hold; the constants above are what power-of-two arenas hold. So a process under
 * models.gpuMemoryLimit without a calibration of its own plans with CAPPED_CALIBRATION (memoryPlanOf).
 */
import { execFileSync } from 'node:child_process';
import type { ModelFamily } from '../models-dir/types.js';
import type { ArenaStats } from '../ort/session.js';
import { DTYPE_BYTES } from '../weights/dtypes.js';
import {
  DEFAULT_VAE_OVERLAP,
  DEFAULT_VAE_TILE,
  planVaeDecode,
  tightTileSizes,
  type VaeDecoderShape,
  vaeDecodeBytes,
} from './vae-tile-policy.js';

export type PlacementSetting = 'auto' | 'gpu' | 'cpu-encoders';
/** Where the models run: `cpu` when the execution provider is the CPU (everything there). */
export type Placement = 'gpu' | 'cpu-encoders' | 'cpu';

/** CUDA context, cuBLAS/cuDNN workspaces and our kernels' scratch, outside every arena. */
export const OVERHEAD_BYTES = 2.9e9;
/** Arena caps of the text encoders on the GPU (prompt + negative, ≤ 256 T5 tokens): 0.3 GB in all. */
export const TEXT_ARENA_BYTES = { clipL: 0.05e9, clipG: 0.05e9, t5: 0.2e9 } as const;
/** MMDiT activations (arena) for one 1024² image with CFG, per family (see the file comment). */
export const MMDIT_ACTIVATION_BYTES: Partial<Record<ModelFamily, number>> = {
  'sd3.5-large': 7.2e9,
  'sd3.5-large-turbo': 7.2e9,
  'sd3.5-medium': 6.9e9,
};
/** Other models (tiny, custom): Large's figure scaled by the MMDiT's parameters (8.06 G in Large). */
const LARGE_MMDIT_PARAMETERS = 8.06e9;
/** Image tokens of a 1024² image (latent 128², patch 2). */
const REFERENCE_TOKENS = 4096;
/**
 * The tiling policy's estimate may be low (CPU tiles measured 1.4–1.8× it): the VAE's tiles are
 * chosen against its arena cap divided by this.
 */
export const VAE_ESTIMATE_MARGIN = 1.25;

/** A component's weights as the files hold them (ComponentInfo from describeModels/loadComponents). */
export interface ComponentWeightsInfo {
  name: string;
  bytes: number;
  dtype: string;
}

/**
 * Figures measured on a GPU that replace the constants above, for one model family (bytes). Each
 * one left out keeps its constant.
 */
export interface MemoryCalibration {
  /** Replaces OVERHEAD_BYTES: what the process holds on the GPU outside every arena. */
  overheadBytes?: number;
  /** Replaces MMDIT_ACTIVATION_BYTES[family]: the MMDiT step's activations for one 1024² image with CFG. */
  mmditActivationBytes?: number;
  /** Replaces TEXT_ARENA_BYTES entries: each GPU text encoder's activations (prompt + negative). */
  textArenaBytes?: Partial<Record<'clipL' | 'clipG' | 't5', number>>;
  /** Where the figures come from (device, date, the run that measured them). */
  source?: string;
}

/**
 * What `memoryPlanOf` plans a capped process with when no calibration is given: under
 * models.gpuMemoryLimit every arena is capped and grows by exactly what is asked, so what an arena
 * holds is what it uses, far below the power-of-two footprints MMDIT_ACTIVATION_BYTES comes from.
 * The arenas' own counters on the H200 (fp8, 1024², CFG; bench/results/gpu-2026-12-02-memory-
 * calibration.json, the same figures again in -memory-recheck.json): MMDiT 0.79e9 (Large) and
 * 0.63e9 (Medium) per image, × 1.1; outside the arenas 2.89e9 and 2.77e9. Text arenas keep
 * TEXT_ARENA_BYTES (measured 0.005–0.18e9, below them).
 */
export const CAPPED_CALIBRATION: Partial<Record<ModelFamily, MemoryCalibration>> = {
  'sd3.5-large': {
    mmditActivationBytes: 0.87e9,
    overheadBytes: 2.9e9,
    source: 'shipped: H200 2026-12-02, capped arenas',
  },
  'sd3.5-large-turbo': {
    mmditActivationBytes: 0.87e9,
    overheadBytes: 2.9e9,
    source: 'shipped: H200 2026-12-02, capped arenas (Large)',
  },
  'sd3.5-medium': {
    mmditActivationBytes: 0.69e9,
    overheadBytes: 2.8e9,
    source: 'shipped: H200 2026-12-02, capped arenas',
  },
};

export interface MemoryInput {
  family: ModelFamily;
  /** Weights per component as the files hold them (names: mmdit, clipL, clipG, t5, vae). */
  components: ComponentWeightsInfo[];
  precision: 'fp8' | 'fp16' | 'fp32';
  /** The type the GPU graphs compute in. */
  compute: 'float16' | 'float32';
  vaeCompute: 'float16' | 'float32';
  vae: VaeDecoderShape;
  vaeTiling: 'auto' | 'always' | 'never';
  /** C-API image shapes kept loaded at once, each with its own copy of the MMDiT's weights. */
  capiShapes: number;
  /** The model's 1:1 side (1024 for SD3.5): the reference job the plan is made for. */
  resolution: number;
  /** Measured figures instead of the constants (benchmarks: atelier-bench --calibration). */
  calibration?: MemoryCalibration;
  /**
   * LoRA combinations kept loaded (`loras.cachedCombinations` when LoRAs are configured; 0 or
   * absent: none): each a whole denoiser session, i.e. a copy of the MMDiT's weights and an arena.
   */
  loraCombinations?: number;
}

/** Components SD3.5's fp8 route keeps at one byte a weight (quantized at load when they are not). */
const FP8_COMPONENTS = new Set(['mmdit', 't5']);
const ENCODERS = ['clipL', 'clipG', 't5'] as const;

/**
 * Bytes a component's weights take on the GPU: fp8 files stay one byte (the CUDA route keeps them
 * e4m3); at precision fp8 the MMDiT and T5 are quantized to one byte; everything else is cast to
 * the compute type (the VAE to its own).
 */
export function gpuWeightBytes(
  c: ComponentWeightsInfo,
  input: Pick<MemoryInput, 'precision' | 'compute' | 'vaeCompute'>,
): number {
  const fileBytes = DTYPE_BYTES[c.dtype as keyof typeof DTYPE_BYTES] ?? 2;
  const elements = c.bytes / fileBytes;
  if (fileBytes === 1) return c.bytes;
  if (input.precision === 'fp8' && FP8_COMPONENTS.has(c.name)) return elements;
  const compute = c.name === 'vae' ? input.vaeCompute : input.compute;
  return elements * (compute === 'float16' ? 2 : 4);
}

/** MMDiT activation bytes of a job: A1(model) × images × image tokens / 4096. */
export function mmditActivationBytes(
  input: Pick<MemoryInput, 'family' | 'components' | 'calibration'>,
  width: number,
  height: number,
  images: number,
): number {
  let perImage = input.calibration?.mmditActivationBytes ?? MMDIT_ACTIVATION_BYTES[input.family];
  if (perImage === undefined) {
    const mmdit = input.components.find((c) => c.name === 'mmdit');
    const parameters = mmdit ? mmdit.bytes / (DTYPE_BYTES[mmdit.dtype as keyof typeof DTYPE_BYTES] ?? 2) : 0;
    perImage =
      (MMDIT_ACTIVATION_BYTES['sd3.5-large'] ?? 0) * Math.min(1, parameters / LARGE_MMDIT_PARAMETERS);
  }
  return (perImage * images * imageTokens(width, height)) / REFERENCE_TOKENS;
}

/** Image tokens of the MMDiT at width × height (latent /8, patch 2). */
function imageTokens(width: number, height: number): number {
  return Math.ceil(width / 16) * Math.ceil(height / 16);
}

/** A GPU text encoder's arena cap: the calibrated figure, else TEXT_ARENA_BYTES. */
function textArenaBytes(input: Pick<MemoryInput, 'calibration'>, name: 'clipL' | 'clipG' | 't5'): number {
  return input.calibration?.textArenaBytes?.[name] ?? TEXT_ARENA_BYTES[name];
}

export interface PlacementBreakdown {
  placement: 'gpu' | 'cpu-encoders';
  /** Weights on the GPU, per component (one copy of each). */
  weights: Record<string, number>;
  weightsBytes: number;
  overheadBytes: number;
  /** C-API shapes beyond the first: a copy of the MMDiT's weights and an arena each. */
  extraShapesBytes: number;
  textBytes: number;
  /** The MMDiT's activations for the reference job (resolution², one image). */
  mmditBytes: number;
  /** The VAE decode's share: its untiled estimate, or the arena cap tiles are chosen under. */
  vaeBytes: number;
  vaeTiled: boolean;
  /** The tiling policy's budget for one decode, when not derived from vaeBytes (a capped arena). */
  vaeDecodeBudgetBytes?: number;
  /** Everything but the MMDiT's activations: what a job's own activations add to. */
  fixedBytes: number;
  /** fixedBytes + mmditBytes: the expected peak of the reference job. */
  peakBytes: number;
}

/**
 * What a placement costs on the GPU, the VAE sized for `budget` (the whole untiled decode when none);
 * `capped`: the arenas will be capped (models.gpuMemoryLimit), which decides how the VAE may decode.
 */
export function placementBreakdown(
  input: MemoryInput,
  placement: 'gpu' | 'cpu-encoders',
  budget?: number,
  capped = false,
): PlacementBreakdown {
  const weights: Record<string, number> = {};
  for (const c of input.components) {
    if (placement === 'cpu-encoders' && (ENCODERS as readonly string[]).includes(c.name)) continue;
    weights[c.name] = gpuWeightBytes(c, input);
  }
  const weightsBytes = Object.values(weights).reduce((a, b) => a + b, 0);
  const textBytes =
    placement === 'gpu'
      ? ENCODERS.filter((name) => input.components.some((c) => c.name === name)).reduce(
          (sum, name) => sum + textArenaBytes(input, name),
          0,
        )
      : 0;
  const side = input.resolution;
  const mmditBytes = mmditActivationBytes(input, side, side, 1);
  // Every further C-API shape holds its own copy of the MMDiT's weights and its own arena.
  const extraShapesBytes = (Math.max(1, input.capiShapes) - 1) * ((weights.mmdit ?? 0) + mmditBytes);
  const overheadBytes = input.calibration?.overheadBytes ?? OVERHEAD_BYTES;
  const rest = overheadBytes + weightsBytes + extraShapesBytes + textBytes + mmditBytes;
  const vae = vaeShare(input, budget, rest, capped);
  const fixedBytes = overheadBytes + weightsBytes + extraShapesBytes + textBytes + vae.bytes;
  return {
    placement,
    weights,
    weightsBytes,
    overheadBytes,
    extraShapesBytes,
    textBytes,
    mmditBytes,
    vaeBytes: vae.bytes,
    vaeTiled: vae.tiled,
    ...(vae.decodeBudget !== undefined ? { vaeDecodeBudgetBytes: vae.decodeBudget } : {}),
    fixedBytes,
    peakBytes: fixedBytes + mmditBytes,
  };
}

/**
 * The VAE's arena share: the untiled decode at the reference size when tiling is off or it fits
 * beside the rest; otherwise the estimate (× VAE_ESTIMATE_MARGIN) of the largest tile that fits in
 * what is left — the tiling policy's own choice under that budget — so the MMDiT keeps the rest;
 * never below the smallest tile's (32 latent pixels).
 *
 * Under a cap (`capped`) the decode is always tiled, in the 2×2 layout's tile (72 latent pixels at
 * 1024²) and never smaller: ONNX Runtime 1.29's convolutions take cuDNN's workspace from the
 * frontend's heuristic plan, whatever `cudnn_conv_use_max_workspace` says, and a capped arena that
 * grows by exactly what is asked cannot reuse freed blocks for a larger request. Measured on the H200
 * (bench/NOTES.md, issue 11): the untiled 1024² decode asked for a 2.15 GB block beyond a 6.9 GB cap
 * (its unlimited in-use peak is 5.4 GiB), a smaller tile for 137 MB beyond its cap, while the 72-pixel
 * tile ran three times in 2.13 GiB of a 2.53 GiB cap. The share is then fixed: when it does not
 * fit, the placement does not (auto tries the CPU encoders, else the model is refused at start).
 */
function vaeShare(
  input: MemoryInput,
  budget: number | undefined,
  rest: number,
  capped: boolean,
): { bytes: number; tiled: boolean; decodeBudget?: number } {
  const bpe = input.vaeCompute === 'float16' ? 2 : 4;
  const latent = Math.ceil(input.resolution / 8);
  // The untiled figure is calibrated on the GPU (6.4 GB at 1024²); tiles' estimates get a margin.
  const untiled = vaeDecodeBytes(input.vae, [latent, latent], bpe);
  const tiled = (budgetBytes: number | undefined, mode: 'auto' | 'always') => {
    const plan = planVaeDecode(input.vae, [latent, latent], { mode, budgetBytes, bytesPerElement: bpe });
    return plan.tiled
      ? { bytes: Math.min(untiled, plan.tileEstimateBytes * VAE_ESTIMATE_MARGIN), tiled: true }
      : { bytes: untiled, tiled: false };
  };
  if (input.vaeTiling === 'never') return { bytes: untiled, tiled: false };
  if (capped) {
    const tile = Math.min(latent, tightTileSizes([latent, latent], DEFAULT_VAE_OVERLAP)[0] ?? latent);
    const tileBytes = vaeDecodeBytes(input.vae, [tile, tile], bpe) * VAE_ESTIMATE_MARGIN;
    // Decodes take tiles of at most 64 latent pixels in that arena: in 100 mixed jobs at 24 GiB every
    // decode in tiles of 54–64 (or whole at 512²) ran, every one in 72-pixel tiles failed (H200;
    // the tile sizes are what the policy picks at those job sizes).
    const decode = Math.min(latent, DEFAULT_VAE_TILE);
    return {
      bytes: tileBytes,
      tiled: tile < latent,
      decodeBudget: vaeDecodeBytes(input.vae, [decode, decode], bpe),
    };
  }
  if (input.vaeTiling === 'always') return tiled(undefined, 'always');
  if (budget === undefined || rest + untiled <= budget) return { bytes: untiled, tiled: false };
  return tiled(Math.max(0, budget - rest) / VAE_ESTIMATE_MARGIN, 'auto');
}

export interface MemoryBudget {
  /** Bytes the process may use on the GPU; undefined: unknown (no limit set, no nvidia-smi). */
  bytes?: number;
  /** Where the figure comes from: `models.gpuMemoryLimit`, or the GPU's free memory at start. */
  source: 'limit' | 'free' | 'unknown';
}

export interface GpuMemoryPlan {
  placement: Placement;
  /** Why this placement (auto's reasoning, or the setting). */
  reason: string;
  budget: MemoryBudget;
  breakdown?: PlacementBreakdown;
  /** Expected peak of one image at the model's resolution; undefined on the CPU. */
  peakBytes?: number;
  /** Whether that fits the budget (true when the budget is unknown). */
  fits: boolean;
  /** Most images at resolution² denoised at once (a job of more runs in passes; undefined: no budget known). */
  maxImages?: number;
  /** The VAE decode's activation budget for the tiling policy (EngineOptions.vaeMemoryBudget). */
  vaeBudgetBytes?: number;
  /**
   * `gpu_mem_limit` of each session's arena, with models.gpuMemoryLimit set on CUDA: the encoders'
   * and the VAE's shares, the MMDiT gets the rest (see planGpuMemory).
   */
  arenaLimits?: { clipL?: number; clipG?: number; t5?: number; vae: number; mmdit: number };
  /** C-API shapes kept loaded (1 under a limit: each shape is a full copy of the MMDiT's weights). */
  capiShapes: number;
  /** With LoRAs configured: what their cached combinations add and how many of them fit. */
  loras?: LoraMemory;
}

/**
 * The LoRA combinations a model keeps loaded (lora/variants.ts), on top of the model's own plan:
 * each is a whole denoiser session — a copy of the MMDiT's weights and an arena of its own, counted
 * at the reference job as the multi-model residency counts them (multi-engine.ts footprintOf).
 */
export interface LoraMemory {
  /** Combinations configured to stay loaded (`loras.cachedCombinations`). */
  combinations: number;
  /** Bytes each takes: the MMDiT's weights on the GPU plus its activations at the reference job. */
  eachBytes: number;
  /** How many of them fit beside the model under the budget (all of them when none is known). */
  fit: number;
  /** The model's expected peak with every configured combination loaded. */
  peakBytes: number;
}

export interface PlanOptions {
  provider: 'cpu' | 'cuda';
  placement: PlacementSetting;
  /** models.gpuMemoryLimit in bytes. */
  limitBytes?: number;
  /** The GPU's free memory before loading (nvidia-smi), used by `auto` when no limit is set. */
  freeBytes?: number;
}

/**
 * Placement, the split of the limit, the VAE's budget and the reference job's peak.
 *
 * Placement: `gpu` and `cpu-encoders` are taken as set. `auto` keeps every model on the GPU when
 * that fits the budget (the limit, else the free memory; resident encoders are the fastest) and
 * otherwise moves CLIP-L, CLIP-G and T5 to the CPU (T5-XXL alone is 4.9 GB at fp8); with no budget
 * known it stays on the GPU.
 *
 * The split (only with models.gpuMemoryLimit, on CUDA): weights are allocated outside the arenas
 * (`session.use_device_allocator_for_initializers`), so gpu_mem_limit caps activations only; the
 * arena pool is limit − overhead − resident weights. Each GPU text encoder gets its fixed cap
 * (TEXT_ARENA_BYTES), the VAE its share (the untiled decode if it fits beside the MMDiT's
 * reference job, else the largest tile that fits what is left, × VAE_ESTIMATE_MARGIN), and the
 * MMDiT step the rest (its headroom decides how many images a job may have). Giving
 * every session the whole limit would not bound the process: each session has its own arena and
 * kSameAsRequested only stops them from rounding up, not from adding up.
 */
export function planGpuMemory(input: MemoryInput, options: PlanOptions): GpuMemoryPlan {
  if (options.provider === 'cpu') {
    return {
      placement: 'cpu',
      reason: 'models.executionProvider is cpu',
      budget: { source: 'unknown' },
      fits: true,
      capiShapes: input.capiShapes,
    };
  }
  const budget: MemoryBudget =
    options.limitBytes !== undefined
      ? { bytes: options.limitBytes, source: 'limit' }
      : options.freeBytes !== undefined
        ? { bytes: options.freeBytes, source: 'free' }
        : { source: 'unknown' };
  const limited = budget.source === 'limit';
  // One C-API shape under a limit, or when the configured shapes would not fit the free memory.
  const oneShape =
    input.capiShapes > 1 &&
    (limited ||
      (budget.bytes !== undefined &&
        // auto: resident encoders with one shape beat more shapes with the encoders on the CPU.
        placementBreakdown(
          input,
          options.placement === 'cpu-encoders' ? 'cpu-encoders' : 'gpu',
          budget.bytes,
          limited,
        ).peakBytes > budget.bytes));
  const shaped: MemoryInput = oneShape ? { ...input, capiShapes: 1 } : input;
  const gpu = placementBreakdown(shaped, 'gpu', budget.bytes, limited);
  const cpu = placementBreakdown(shaped, 'cpu-encoders', budget.bytes, limited);
  const said = budget.source === 'limit' ? 'models.gpuMemoryLimit' : 'the free GPU memory';
  let chosen: PlacementBreakdown;
  let reason: string;
  if (options.placement === 'gpu') [chosen, reason] = [gpu, 'models.placement is gpu'];
  else if (options.placement === 'cpu-encoders') [chosen, reason] = [cpu, 'models.placement is cpu-encoders'];
  else if (budget.bytes === undefined)
    [chosen, reason] = [gpu, 'models.placement is auto; no limit set and the free GPU memory is unknown'];
  else if (gpu.peakBytes <= budget.bytes)
    [chosen, reason] = [
      gpu,
      `everything fits on the GPU (~${gb(gpu.peakBytes)} of ${gb(budget.bytes)}, ${said})`,
    ];
  else
    [chosen, reason] = [
      cpu,
      `with the text encoders on the GPU ~${gb(gpu.peakBytes)} would not fit ${gb(budget.bytes)} (${said}); on the CPU ~${gb(cpu.peakBytes)}`,
    ];
  const plan: GpuMemoryPlan = {
    placement: chosen.placement,
    reason,
    budget,
    breakdown: chosen,
    peakBytes: chosen.peakBytes,
    fits: budget.bytes === undefined || chosen.peakBytes <= budget.bytes,
    capiShapes: shaped.capiShapes,
  };
  const combinations = Math.max(0, Math.floor(input.loraCombinations ?? 0));
  if (combinations > 0) {
    const eachBytes = (chosen.weights.mmdit ?? 0) + chosen.mmditBytes;
    const room = budget.bytes === undefined ? undefined : budget.bytes - chosen.peakBytes;
    const fit =
      room === undefined
        ? combinations
        : eachBytes > 0
          ? Math.min(combinations, Math.max(0, Math.floor(room / eachBytes)))
          : combinations;
    plan.loras = { combinations, eachBytes, fit, peakBytes: chosen.peakBytes + combinations * eachBytes };
  }
  if (budget.bytes !== undefined) {
    plan.maxImages = maxImages(plan, input, input.resolution, input.resolution);
    // The tiling policy's budget: the VAE's share (untiled: its calibrated estimate, so `auto`
    // decodes whole; tiled: the share less the margin, so tiles stay under the arena cap).
    plan.vaeBudgetBytes = Math.ceil(
      chosen.vaeDecodeBudgetBytes ??
        (chosen.vaeTiled ? chosen.vaeBytes / VAE_ESTIMATE_MARGIN : chosen.vaeBytes),
    );
  }
  if (limited && budget.bytes !== undefined) {
    const text = chosen.placement === 'gpu' ? presentEncoders(input) : [];
    const pool = budget.bytes - chosen.overheadBytes - chosen.weightsBytes;
    const vae = Math.floor(chosen.vaeBytes);
    plan.arenaLimits = {
      ...Object.fromEntries(text.map((name) => [name, textArenaBytes(input, name)])),
      vae,
      mmdit: Math.max(0, Math.floor(pool - chosen.textBytes - vae)),
    };
  }
  return plan;
}

function presentEncoders(input: MemoryInput): ('clipL' | 'clipG' | 't5')[] {
  return ENCODERS.filter((name) => input.components.some((c) => c.name === name));
}

/** Most images of width × height one job may have under the plan's budget (0: not even one). */
export function maxImages(plan: GpuMemoryPlan, input: MemoryInput, width: number, height: number): number {
  if (plan.budget.bytes === undefined || !plan.breakdown) return Number.POSITIVE_INFINITY;
  const one = mmditActivationBytes(input, width, height, 1);
  const room = plan.budget.bytes - plan.breakdown.fixedBytes;
  return one > 0 ? Math.max(0, Math.floor(room / one)) : Number.POSITIVE_INFINITY;
}

/**
 * How a job's images run under the plan: all in one pass when they fit, else in passes as equal as
 * possible that each fit (4 images of which 3 fit: 2 + 2, so every pass has the same shape and
 * reuses one step session); empty when not even one image fits (jobMemoryProblem says why).
 */
export function imagePasses(
  plan: GpuMemoryPlan,
  input: MemoryInput,
  job: { width: number; height: number; count: number },
  cap = Number.POSITIVE_INFINITY,
): number[] {
  const most = Math.min(job.count, cap, maxImages(plan, input, job.width, job.height));
  if (most < 1) return [];
  const passes = Math.ceil(job.count / most);
  const base = Math.floor(job.count / passes);
  return Array.from({ length: passes }, (_, i) => base + (i < job.count % passes ? 1 : 0));
}

/**
 * Why a job would not fit, in words for the user who asked for it, naming what would; undefined
 * when it fits (or nothing is known). Only the MMDiT's activations grow with the job, and a job of
 * several images runs in passes when they do not fit together (imagePasses), so a job is refused
 * only when not even one image of its size fits; the VAE decodes one image at a time (tiled when
 * its share is short).
 */
export function jobMemoryProblem(
  plan: GpuMemoryPlan,
  input: MemoryInput,
  job: { width: number; height: number; count: number },
): string | undefined {
  if (plan.budget.bytes === undefined || !plan.breakdown) return undefined;
  if (maxImages(plan, input, job.width, job.height) >= 1) return undefined;
  const need = plan.breakdown.fixedBytes + mmditActivationBytes(input, job.width, job.height, 1);
  const size = `${job.width}×${job.height}`;
  const side = largestSideThatFits(plan, input);
  return (
    `One image at ${size} would need about ${gb(need)} of GPU memory, more than the ${gb(plan.budget.bytes)} ` +
    `this server has for it: ask for a smaller size${side ? ` (up to ${side}×${side} fits)` : ''}.`
  );
}

/** The largest square side (a multiple of 64) whose single image fits, for the refusal at start. */
export function largestSideThatFits(plan: GpuMemoryPlan, input: MemoryInput): number | undefined {
  for (let side = input.resolution; side >= 256; side -= 64) {
    if (maxImages(plan, input, side, side) >= 1) return side;
  }
  return undefined;
}

export interface GpuMemoryReading {
  totalBytes: number;
  freeBytes: number;
  name: string;
}

/**
 * Total and free memory of a GPU from nvidia-smi; undefined where nvidia-smi is missing or fails
 * (no NVIDIA driver: the CPU machines). `run` is for tests.
 */
export function queryGpuMemory(
  deviceId = 0,
  run: (file: string, args: string[]) => string = (file, args) =>
    execFileSync(file, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }),
): GpuMemoryReading | undefined {
  let out: string;
  try {
    out = run('nvidia-smi', [
      '--query-gpu=name,memory.total,memory.free',
      '--format=csv,noheader,nounits',
      '-i',
      String(deviceId),
    ]);
  } catch {
    return undefined;
  }
  const match = /^(.*?),\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*$/m.exec(out.trim());
  if (!match) return undefined;
  // nvidia-smi reports MiB.
  return {
    name: match[1].trim(),
    totalBytes: Number(match[2]) * 2 ** 20,
    freeBytes: Number(match[3]) * 2 ** 20,
  };
}

/** The plan in one line, for `doctor` and the start log. */
export function describePlan(plan: GpuMemoryPlan): string {
  if (plan.placement === 'cpu') return 'placement cpu (no GPU in use)';
  const budget =
    plan.budget.source === 'limit'
      ? `limit ${gb(plan.budget.bytes ?? 0)} (models.gpuMemoryLimit)`
      : plan.budget.source === 'free'
        ? `${gb(plan.budget.bytes ?? 0)} free on the GPU`
        : 'free GPU memory unknown (no limit set, no nvidia-smi)';
  const verdict =
    plan.budget.bytes === undefined
      ? 'fit unknown'
      : plan.fits
        ? `fits${plan.maxImages !== undefined && Number.isFinite(plan.maxImages) ? ` (up to ${plan.maxImages} image${plan.maxImages === 1 ? '' : 's'} at once)` : ''}`
        : 'DOES NOT FIT';
  const tiled = plan.breakdown?.vaeTiled ? ', VAE tiled' : '';
  const { loras } = plan;
  const withLoras = loras
    ? ` + ${combinationsOf(loras.combinations)} × ${gb(loras.eachBytes)} (~${gb(loras.peakBytes)} with them)`
    : '';
  return `expected peak ~${gb(plan.peakBytes ?? 0)} at batch 1${withLoras} (placement ${plan.placement}${tiled}); ${budget}: ${verdict}${loraVerdict(plan)}`;
}

function combinationsOf(n: number): string {
  return `${n} LoRA combination${n === 1 ? '' : 's'}`;
}

/**
 * What the plan says of the LoRA combinations when the model fits but not all of them do: how many
 * fit, and the setting to lower (nothing when they all fit, the budget is unknown, or the model
 * itself does not fit).
 */
function loraVerdict(plan: GpuMemoryPlan): string {
  const { loras } = plan;
  if (!loras || !plan.fits || plan.budget.bytes === undefined || loras.fit >= loras.combinations) return '';
  if (loras.fit > 0)
    return `; only ${loras.fit} of the ${combinationsOf(loras.combinations)} fit${loras.fit === 1 ? 's' : ''} — set loras.cachedCombinations: ${loras.fit}`;
  return (
    `; no LoRA combination fits beside the model (${gb(loras.eachBytes)} each): a job with LoRAs would run out of memory — ` +
    `keep loras.cachedCombinations at 1 and make room (${plan.placement === 'gpu' ? 'models.placement: cpu-encoders, ' : ''}a higher limit, a smaller model) or leave loras.allowed empty`
  );
}

/**
 * How many LoRA combinations an engine may keep loaded under the plan: the configured number, or
 * fewer when only fewer fit beside the model (each is a whole denoiser session, and under a memory
 * limit its arena is not capped by the rest); none, with the words for the user, when not even one
 * fits — a LoRA job is refused then instead of running the GPU out of memory.
 */
export function loraCapacity(
  plan: Pick<GpuMemoryPlan, 'loras' | 'budget' | 'peakBytes'>,
  configured: number,
): { capacity: number; refusal?: string } {
  const loras = plan.loras;
  if (!loras || plan.budget.bytes === undefined) return { capacity: configured };
  if (loras.fit >= 1) return { capacity: Math.min(configured, loras.fit) };
  const left = Math.max(0, plan.budget.bytes - (plan.peakBytes ?? 0));
  return {
    capacity: 0,
    refusal:
      `A LoRA runs on its own copy of the model's weights on the GPU (about ${gb(loras.eachBytes)}), ` +
      `more than this server has left beside the model (${gb(left)}). Try without LoRAs.`,
  };
}

/** True when LoRAs are configured and not all their cached combinations fit the budget beside the model. */
export function lorasShort(plan: Pick<GpuMemoryPlan, 'loras' | 'fits' | 'budget'>): boolean {
  return (
    plan.loras !== undefined &&
    plan.fits &&
    plan.budget.bytes !== undefined &&
    plan.loras.fit < plan.loras.combinations
  );
}

/** One session's arena after a job (Sd35Engine.arenaStats): which component, where, its counters. */
export interface ArenaReport {
  component: 'clipL' | 'clipG' | 't5' | 'vae' | 'mmdit';
  /** The session's name (`clip_l`, `vae_decoder`, `mmdit_step`, …). */
  session: string;
  provider: 'cpu' | 'cuda';
  stats: ArenaStats;
  /** C-API step sessions: the shape they were built for (latent height and width). */
  shape?: { images: number; height: number; width: number };
}

/** What a session's activations reached: its high-water mark less what stays in use between jobs. */
export function arenaActivationBytes(stats: ArenaStats): number {
  return Math.max(0, stats.maxInUse - stats.inUse);
}

/** Activations measured on the GPU are multiplied by this before they become caps and estimates. */
export const CALIBRATION_MARGIN = 1.1;

/**
 * A calibration from one finished job on CUDA: the arenas' counters after it (`arenas`) and the
 * process's peak on the GPU (nvidia-smi, for the overhead outside the arenas). With
 * `session.use_device_allocator_for_initializers` the weights are reserved through each arena, so
 * after the job `inUse` is the weights and the buffers kept bound, and `maxInUse − inUse` is what
 * the job's activations added:
 *
 * - the MMDiT's, per 1024² image with CFG: from the step session of the job's shape (C API), or
 *   the stock MMDiT session, divided by the images and scaled by 4096 / the job's image tokens;
 * - each text encoder's on CUDA (those on the CPU say nothing about GPU memory);
 * - the overhead: the process's peak less every CUDA arena's footprint (`totalAllocated`).
 *
 * Activations get `margin` (kSameAsRequested arenas fragment a little); the overhead is taken as
 * measured. Nothing is returned for what the job did not show (no CUDA arena, no peak).
 */
export function calibrationFromArenas(
  arenas: ArenaReport[],
  job: { width: number; height: number; count: number },
  options: { processPeakBytes?: number; margin?: number; source?: string } = {},
): MemoryCalibration {
  const margin = options.margin ?? CALIBRATION_MARGIN;
  const cuda = arenas.filter((a) => a.provider === 'cuda');
  const out: MemoryCalibration = {};
  const latent = { height: job.height / 8, width: job.width / 8 };
  const mmdits = cuda.filter((a) => a.component === 'mmdit');
  const mmdit =
    mmdits.find(
      (a) =>
        a.shape?.images === job.count && a.shape.height === latent.height && a.shape.width === latent.width,
    ) ?? mmdits.find((a) => !a.shape);
  if (mmdit && job.count > 0) {
    const perImage = arenaActivationBytes(mmdit.stats) / job.count;
    out.mmditActivationBytes = Math.round(
      (perImage * REFERENCE_TOKENS * margin) / imageTokens(job.width, job.height),
    );
  }
  const text: NonNullable<MemoryCalibration['textArenaBytes']> = {};
  for (const a of cuda) {
    if (a.component === 'clipL' || a.component === 'clipG' || a.component === 't5')
      text[a.component] = Math.round(arenaActivationBytes(a.stats) * margin);
  }
  if (Object.keys(text).length) out.textArenaBytes = text;
  if (options.processPeakBytes !== undefined && cuda.length) {
    const arenasBytes = cuda.reduce((sum, a) => sum + a.stats.totalAllocated, 0);
    out.overheadBytes = Math.max(0, Math.round(options.processPeakBytes - arenasBytes));
  }
  if (options.source) out.source = options.source;
  return out;
}

/** Two calibrations of one family, `later`'s figures winning (text encoders merged by name). */
export function mergeCalibrations(earlier: MemoryCalibration, later: MemoryCalibration): MemoryCalibration {
  const text = { ...earlier.textArenaBytes, ...later.textArenaBytes };
  return {
    ...earlier,
    ...later,
    ...(Object.keys(text).length ? { textArenaBytes: text } : {}),
  };
}

export function gb(bytes: number): string {
  return `${(bytes / 1e9).toFixed(1)} GB`;
}

/** Whether ONNX Runtime's error is an allocation failure (CUDA or host). */
export function isOutOfMemory(error: unknown): boolean {
  // "Available memory of … is smaller than requested bytes of …": a capped arena (gpu_mem_limit).
  return /out of memory|failed to allocate|bad_alloc|CUDA_ERROR_OUT_OF_MEMORY|cudaErrorMemoryAllocation|is smaller than requested bytes/i.test(
    String((error as Error)?.message ?? error),
  );
}
