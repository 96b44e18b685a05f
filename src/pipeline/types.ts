/**
 * The contract between the scheduler and an image pipeline. Exactly one Pipeline per GPU; the
 * scheduler is its only caller. Implementations run their heavy work off the main thread.
 */

import type { SamplerName } from '../vocabulary.js';

export type { SamplerName };

/** 8-bit RGB pixels, row-major, 3 channels (HWC). */
export interface RawImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface GenerationRequest {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  /** Seed of the first image; image i uses seed + i, so every image can be reproduced alone. */
  seed: number;
  steps: number;
  /** Classifier-free guidance scale; ≤ 1 skips the unconditional pass (as for Turbo models). */
  guidance: number;
  sampler: SamplerName;
  /** Number of images, 1–4. */
  count: number;
  /** img2img: start from this image, keeping (1 − strength) of it. */
  init?: { image: RawImage; strength: number };
  /**
   * The configured name of the model to run (`PipelineInfo.models`); absent: the default model.
   * A model that is not loaded is loaded first (another may be unloaded for it), before the job's
   * first step: never during a job.
   */
  model?: string;
  /**
   * LoRAs to apply (at most 3): merged into a copy of the MMDiT's weights for this combination,
   * which stays loaded for the next jobs with it (lora/variants.ts); other jobs are untouched.
   */
  loras?: GenerationLora[];
}

/** A LoRA a job applies. */
export interface GenerationLora {
  /** Its configured name (`loras.allowed`), for messages and the PNG's `Lora hashes`. */
  name: string;
  /** Its file, relative to the pipeline's LoRA folder (`loras.dir`) or absolute. */
  file: string;
  /** Strength: the update is weight · alpha / rank · up · down. */
  weight: number;
}

/** A LoRA as the pipeline applied it. */
export interface AppliedLora {
  name: string;
  weight: number;
  /** First 12 hex digits of the sha256 of the file's data (A1111's `Lora hashes`). */
  hash: string;
}

export interface StepInfo {
  /** 1-based index of the step just finished. */
  step: number;
  total: number;
  /** A cheap latent→RGB preview of the first image (small; latent resolution). */
  preview?: RawImage;
}

export interface GenerateOptions {
  onStep?: (info: StepInfo) => void;
  /** Checked between denoising steps: an aborted signal stops the job with a CancelledError. */
  signal?: AbortSignal;
}

export interface GenerationOutput {
  images: RawImage[];
  /** The seed of each image. */
  seeds: number[];
  /** Set when the prompt was longer than the text encoders read; the user should be told. */
  promptTruncated?: boolean;
  /** Name of the model that made the images, for the PNG parameters. */
  model: string;
  /** First 10 hex digits of the sha256 of its checkpoint's safetensors header (A1111's `Model hash`). */
  modelHash?: string;
  /** The configured name of the model that ran (`PipelineInfo.models`). */
  modelName?: string;
  /** The models loaded after the job, least recently used first (a pipeline serving several). */
  resident?: string[];
  /**
   * The LoRA combinations the job's model holds loaded after the job, least recently used first
   * (residency.ts `loraCombinationKey`), for the queue's ETA; absent: not said.
   */
  loraCombinations?: string[];
  /** The LoRAs applied, in the order merged (by name); absent without LoRAs. */
  loras?: AppliedLora[];
  /** Where the time went (logs, benchmarks). */
  timings?: {
    encodeMs: number;
    denoiseMs: number;
    decodeMs: number;
    /** Host (CPU) time spent issuing one denoising step, median over the steps (C-API path only). */
    hostMsPerStep?: number;
    /** Denoising steps replayed from a captured CUDA graph (C-API path only). */
    cudaGraphSteps?: number;
    /** The prompt's conditioning came from the prompt-embedding cache (no text encoder ran). */
    promptCached?: boolean;
    /** The VAE decoded in overlapping tiles (memory short) instead of the whole image at once. */
    vaeTiled?: boolean;
    /** The images ran in these passes (more than fit the GPU memory at once); absent: one pass. */
    passes?: number[];
    /** The job's model was not loaded: this long went to loading it (and unloading others) first. */
    loadMs?: number;
    /** The job's LoRA combination was not loaded: this long went to merging and loading it. */
    loraMs?: number;
  };
}

/**
 * Which ONNX Runtime path runs the denoising loop: `capi` (ONNX Runtime's C API: latents kept on
 * the device, runs off the event loop, CUDA graphs and our custom-op library where available) or
 * `stock` (onnxruntime-node's JavaScript API, one session.run per network call).
 */
export interface RuntimePath {
  path: 'capi' | 'stock';
  /** Denoising steps replayed from a captured CUDA graph. */
  cudaGraph: boolean;
  /** Our custom-op library (fused kernels) is loaded into the denoiser's sessions. */
  customOps: boolean;
  /** Why a faster path is not in use (missing library, other ONNX Runtime version, CPU…). */
  reason?: string;
  /** On the C-API path: which of the step graph's optional kernels were built in (benchmark rows say so). */
  stepGraph?: StepGraphOptions;
  /** On the C-API path: the MMDiT's attention kernel and why (sd35/attention-choice.ts). */
  attention?: AttentionInfo;
  /** On the C-API path: how many denoising steps the loop keeps queued on the GPU (EngineOptions.stepQueue). */
  stepsQueued?: 1 | 2;
}

/** Which kernel runs the MMDiT's attention in the C-API step, and why (sd35/attention-choice.ts). */
export interface AttentionInfo {
  kernel: 'flash-attention' | 'multi-head-attention';
  /** Where FlashAttention-3 runs, or why MultiHeadAttention does. */
  reason: string;
  /** One line for the start log and `atelier doctor`. */
  summary: string;
}

/** The C-API step graph's measured options (issue 10), as built, not as asked. */
export interface StepGraphOptions {
  /** W8A8 GEMMs with cuBLASLt's fast accumulation (only true when the layers are W8A8). */
  fp8FastAccumulation: boolean;
  /** fc1 hands fc2 e4m3 codes with a delayed per-tensor scale (only true when the layers are W8A8). */
  fp8MlpHandoff: boolean;
  /** Attention as atelier:Fp8Attention. */
  fp8Attention: boolean;
  /** Attention as atelier:FlashAttention (FlashAttention-3). */
  flashAttention: boolean;
  /** The gated-residual and token-split fusions (false: the separate chains). */
  stepFusions: boolean;
  /** MMDiT-X's two modulations of norm1(x) quantized by one node (only true when the layers are W8A8). */
  pairedNorms: boolean;
  /** SiLU(c) quantized once for every adaLN layer (only true when the layers are W8A8). */
  sharedRows: boolean;
}

/**
 * How fp8 weights meet the MMDiT's linear layers (sd35/fp8-choice.ts): `w8a8` quantizes the
 * activations per token and multiplies e4m3 × e4m3 on FP8 tensor cores (our atelier:Fp8Linear);
 * `weight-only` multiplies in fp16 (fp32 on the CPU) with the weights dequantized on the fly.
 */
export interface Fp8Info {
  /** The precision asked for (models.precision, or `auto` resolved). */
  precision: 'fp8' | 'fp8-weights';
  route: 'w8a8' | 'weight-only';
  /** Where W8A8 runs, or why it does not. */
  reason: string;
  /** The one line the start log and `atelier doctor` print, e.g. "fp8: weight-only (CPU has no FP8 GEMM)". */
  summary: string;
}

export interface ComponentInfo {
  name: string;
  dtype: string;
  /** Bytes of weights this component holds. */
  bytes: number;
  file?: string;
}

export interface PipelineInfo {
  model: string;
  executionProvider: string;
  components: ComponentInfo[];
  /** The model's own settings; `resolution` is the side of its 1:1 size (1024 for SD3.5). */
  defaults: { steps: number; guidance: number; sampler: SamplerName; resolution: number };
  /** The denoising path in use (doctor and the start log say it). */
  runtime?: RuntimePath;
  /** At precision fp8 or fp8-weights: how the MMDiT's linear layers use the e4m3 weights, and why. */
  fp8?: Fp8Info;
  /** GPU memory: placement, the expected peak, the budget and what fits (issue 11). */
  memory?: MemoryInfo;
  /**
   * Every model this pipeline serves (config `models.list`, or the one configured model), the
   * default first; the fields above describe the default model. Absent: one model, `model`.
   */
  models?: ModelInfo[];
  /** How many of `models` stay loaded at once (the rest load when a job needs them). */
  maxResident?: number;
  /** LoRA combinations each model keeps loaded at once (`loras.cachedCombinations`; 0: no LoRAs). */
  loraCombinations?: number;
}

/** One of the models a pipeline serves. */
export interface ModelInfo {
  /** The configured name (`models.list` key), or the checkpoint's name for a single model. */
  name: string;
  /** The checkpoint's name (A1111's `Model`). */
  label: string;
  /** First 10 hex digits of the sha256 of the checkpoint's safetensors header (A1111's `Model hash`). */
  hash: string;
  family: string;
  /** Its family's defaults (the config may override steps, guidance and sampler). */
  defaults: PipelineInfo['defaults'];
  /** Parameters of its denoiser (the MMDiT): what one step costs, relative to the others. */
  parameters: number;
  /** Loaded when the info was taken. */
  resident: boolean;
  /** How long its last load took. */
  loadMs?: number;
  /** How long its last LoRA combination took to merge and load (none yet: absent). */
  loraMs?: number;
}

/** Which models a pipeline holds loaded, for the queue's ETA: a job of another one loads it first. */
export interface Residency {
  /** Loaded now, least recently used first. */
  resident: string[];
  /** Most models loaded at once. */
  capacity: number;
  /** Each model's measured load time, in ms (the last load of it). */
  loadMs: Record<string, number>;
  /** The model a job naming none runs. */
  defaultModel: string;
  /**
   * Per loaded model, its LoRA combinations loaded now (residency.ts `loraCombinationKey`), least
   * recently used first: a job with another combination merges and loads it first. Absent: not
   * said (every combination counts as not loaded).
   */
  loras?: Record<string, string[]>;
  /** Combinations each model keeps loaded at once (`loras.cachedCombinations`). @default 2 */
  loraCapacity?: number;
  /**
   * Each model's last measured merge+load time of a LoRA combination, in ms; with LoRAs configured
   * and none merged yet, the pipeline's first guess from the model's size (lora/merge-kernel.ts
   * estimatedMergeMs). A model absent here is estimated by the scheduler (another model's, else the
   * model's own load time).
   */
  loraMs?: Record<string, number>;
}

/** Where the models run and what the GPU memory allows (see sd35/gpu-memory.ts). */
export interface MemoryInfo {
  /** `gpu`: everything on the GPU; `cpu-encoders`: CLIP-L, CLIP-G and T5 on the CPU; `cpu`: no GPU. */
  placement: 'gpu' | 'cpu-encoders' | 'cpu';
  reason: string;
  /** The execution provider each component's session runs on. */
  providers: Record<'clipL' | 'clipG' | 't5' | 'mmdit' | 'vae', 'cpu' | 'cuda'>;
  /** Where the budget comes from: models.gpuMemoryLimit, the GPU's free memory at load, or neither. */
  budgetSource: 'limit' | 'free' | 'unknown';
  budgetBytes?: number;
  /** Expected peak for one image at the model's resolution. */
  peakBytes?: number;
  fits: boolean;
  /** Most images at the model's resolution denoised at once under the budget (more run in passes). */
  maxImages?: number;
  /** The VAE decode's budget the tiling policy uses. */
  vaeBudgetBytes?: number;
  /** gpu_mem_limit of each session's arena (models.gpuMemoryLimit on CUDA). */
  arenaLimits?: Partial<Record<'clipL' | 'clipG' | 't5' | 'mmdit' | 'vae', number>>;
  /** C-API image shapes kept loaded. */
  capiShapes: number;
  /**
   * With LoRAs configured: the combinations kept loaded (`loras.cachedCombinations`), what each
   * adds (a copy of the MMDiT's weights and an arena), how many fit beside the model under the
   * budget, and the expected peak with all of them.
   */
  loras?: { combinations: number; eachBytes: number; fit: number; peakBytes: number };
  /** One line for doctor and the start log. */
  summary: string;
}

export interface Pipeline {
  /** Loads every model once; throws a ModelError naming the file or setting at fault. */
  load(): Promise<void>;
  generate(request: GenerationRequest, options?: GenerateOptions): Promise<GenerationOutput>;
  info(): PipelineInfo;
  /** What is loaded now, when the pipeline serves several models; undefined for one. */
  residency?(): Residency | undefined;
  dispose(): Promise<void>;
}
