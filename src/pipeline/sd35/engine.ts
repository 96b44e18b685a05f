/**
 * SD3.5 text-to-image and image-to-image on ONNX Runtime, in the calling process: tokenize →
 * encode text → denoise (MMDiT, flow matching, CFG) → VAE decode. Follows the reference's
 * SD3Inferencer.gen_image / do_sampling (sd3_infer.py at fbf8f48). Runs inside the pipeline
 * child process (see ../process); the bot never calls it on its own event loop.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CancelledError, PipelineError, ValidationError } from '../../errors.js';
import {
  cachedCombinationsOf,
  DEFAULT_CACHED_COMBINATIONS,
  type Denoiser,
  type LoraVariant,
  LoraVariants,
} from '../lora/index.js';
import { checkLatentSize } from '../models/mmdit.js';
import { latentPreview } from '../preview.js';
import { cfgDenoiser } from '../sampling/cfg.js';
import { SD3_LATENT_CHANNELS as LATENT_CHANNELS, processIn, processOut } from '../sampling/latent-format.js';
import { randn } from '../sampling/noise.js';
import { sampleDpmpp2m, sampleEuler } from '../sampling/samplers.js';
import {
  DEFAULT_SHIFT,
  sigmas as getSigmas,
  noiseScaling,
  truncateForDenoise,
} from '../sampling/schedule.js';
import type {
  GenerateOptions,
  GenerationLora,
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  PipelineInfo,
  RawImage,
} from '../types.js';
import { arenaReports } from './arena-report.js';
import { type LoadedComponents, type LoadRuntime, loadComponents } from './components.js';
import { type Conditioning, encodePrompts } from './conditioning.js';
import { mmditModel } from './denoiser.js';
import {
  type ArenaReport,
  imagePasses,
  isOutOfMemory,
  jobMemoryProblem,
  loraCapacity,
} from './gpu-memory.js';
import type { EngineOptions } from './options.js';
import { DEFAULT_PROMPT_CACHE_BYTES, PromptCache, type PromptCacheStats } from './prompt-cache.js';
import { decodeLatents, encodeImage } from './vae-codec.js';
import { planVaeDecode, type VaeDecodePlan } from './vae-tile-policy.js';

/** SD3's VAE downsamples by 8; the MMDiT patches by 2, so sides are multiples of 16. */
const SIZE_MULTIPLE = 16;

export interface PreparedGeneration {
  request: GenerationRequest;
  cond: Conditioning;
  uncond: Conditioning;
  /** Sigmas to run, ending in 0 (truncated for image-to-image). */
  schedule: Float32Array;
  /** Seeded noise of every image, [count, 16, h/8, w/8]. */
  noise: Float32Array;
  /** The starting latents. */
  x0: Float32Array;
  latentShape: [number, number, number];
  seeds: number[];
  promptTruncated: boolean;
  /** The conditioning came from the prompt-embedding cache: the text encoders did not run. */
  promptCached: boolean;
}

/**
 * An allocation failure during a job (an arena reached its gpu_mem_limit, or the GPU is full): that
 * job fails with a message saying so; the sessions stay usable for the next one.
 */
export function runOutOfMemory(error: unknown, req: Pick<GenerationRequest, 'count' | 'width' | 'height'>) {
  if (!isOutOfMemory(error)) return undefined;
  const message = String((error as Error)?.message ?? error);
  const what = `${req.count} image${req.count === 1 ? '' : 's'} at ${req.width}×${req.height}`;
  return new PipelineError(
    `out of memory making ${what}: ${message.split('\n')[0]}`,
    `The GPU ran out of memory making ${what}. Try fewer images or a smaller size.`,
    { cause: error },
  );
}

/** The prompt-embedding cache's key: the text encoders' identity and both prompts' token ids. */
function promptKey(textKey: string, prompts: unknown): string {
  return createHash('sha256').update(textKey).update('\n').update(JSON.stringify(prompts)).digest('base64');
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CancelledError();
}

/** What one pass of a job made (engine.#pass). */
interface PassResult {
  images: RawImage[];
  seeds: number[];
  promptTruncated: boolean;
  promptCached: boolean;
  vaeTiled: boolean;
  encodeMs: number;
  denoiseMs: number;
  decodeMs: number;
  hostMsPerStep?: number;
  cudaGraphSteps?: number;
}

export class Sd35Engine implements Pipeline {
  #c: LoadedComponents | undefined;
  readonly #promptCache: PromptCache | undefined;
  #textEncoderRuns = 0;
  /** Merged LoRA combinations, loaded on first use. */
  #loras: LoraVariants | undefined;

  constructor(
    readonly options: EngineOptions,
    /** Sessions shared with other resident models (sd35/multi-engine.ts); not serialisable. */
    readonly runtime: LoadRuntime = {},
  ) {
    const budget = options.promptCacheBytes ?? DEFAULT_PROMPT_CACHE_BYTES;
    this.#promptCache = budget > 0 ? new PromptCache(budget) : undefined;
  }

  /** How many times the text encoders ran (once per prompt pair not found in the cache). */
  get textEncoderRuns(): number {
    return this.#textEncoderRuns;
  }

  /**
   * The arena counters of every session opened through the C API, now (benchmarks, issue 11: the
   * high-water marks after a job calibrate gpu-memory.ts).
   */
  arenaStats(): Promise<ArenaReport[]> {
    return arenaReports(this.#loaded());
  }

  /** The prompt-embedding cache's counters; undefined when it is off (promptCacheBytes: 0). */
  promptCacheStats(): PromptCacheStats | undefined {
    return this.#promptCache?.stats();
  }

  /** How a latent of [C, h, w] is decoded under the engine's tiling options and memory budget. */
  vaeDecodePlan([, h, w]: [number, number, number]): VaeDecodePlan {
    const c = this.#loaded();
    return planVaeDecode(c.vaeConfig, [h, w], {
      mode: this.options.vaeTiling,
      // Set explicitly, or the VAE's share of models.gpuMemoryLimit / the free GPU memory.
      budgetBytes: this.options.vaeMemoryBudget ?? c.memory.plan.vaeBudgetBytes,
      tile: this.options.vaeTile?.size,
      overlap: this.options.vaeTile?.overlap,
      bytesPerElement: c.vaeBytesPerElement,
    });
  }

  /**
   * The LoRA combinations loaded now (residency.ts `loraCombinationKey`), least recently used
   * first: a job with another one merges and loads it before its first step.
   */
  loraCombinations(): string[] {
    return this.#loras?.loadedKeys ?? [];
  }

  async load(): Promise<void> {
    this.#c ??= await loadComponents(this.options, this.runtime);
  }

  info(): PipelineInfo {
    return this.#loaded().info;
  }

  async dispose(): Promise<void> {
    await this.#loras?.release();
    this.#loras = undefined;
    await this.#c?.release();
    this.#c = undefined;
  }

  async generate(req: GenerationRequest, opts: GenerateOptions = {}): Promise<GenerationOutput> {
    try {
      return await this.#generate(req, opts);
    } catch (error) {
      throw runOutOfMemory(error, req) ?? error;
    }
  }

  async #generate(req: GenerationRequest, opts: GenerateOptions): Promise<GenerationOutput> {
    const c = this.#loaded();
    // The job's LoRAs: their combination's denoiser (merged and loaded on first use), before any model runs.
    const lora = req.loras?.length ? await this.#loraVariant(c, req.loras) : undefined;
    throwIfAborted(opts.signal);
    // More images than the GPU memory holds at once run in passes (image i keeps seed + i, so
    // each image is the one a single pass would make); a job not even one image of fits is
    // refused by prepare().
    const passes = imagePasses(c.memory.plan, c.memory.input, req, this.options.maxImagesPerPass);
    const runs = passes.length > 1 ? passes : [req.count];
    const images: RawImage[] = [];
    const seeds: number[] = [];
    const ms = { encode: 0, denoise: 0, decode: 0 };
    let first: PassResult | undefined;
    let offset = 0;
    for (const [k, count] of runs.entries()) {
      const pass = await this.#pass(
        runs.length > 1 ? { ...req, seed: req.seed + offset, count } : req,
        opts.onStep
          ? {
              ...opts,
              onStep: (info) =>
                opts.onStep?.({ ...info, step: k * info.total + info.step, total: runs.length * info.total }),
            }
          : opts,
        lora,
      );
      first ??= pass;
      images.push(...pass.images);
      seeds.push(...pass.seeds);
      ms.encode += pass.encodeMs;
      ms.denoise += pass.denoiseMs;
      ms.decode += pass.decodeMs;
      offset += count;
    }
    const { promptTruncated, promptCached, vaeTiled, hostMsPerStep, cudaGraphSteps } = first!;
    return {
      images,
      seeds,
      model: c.info.model,
      ...(lora ? { loras: lora.applied } : {}),
      promptTruncated: promptTruncated || undefined,
      timings: {
        encodeMs: ms.encode,
        denoiseMs: ms.denoise,
        decodeMs: ms.decode,
        promptCached,
        vaeTiled,
        ...(runs.length > 1 ? { passes: runs } : {}),
        ...(lora && !lora.cached ? { loraMs: lora.ms } : {}),
        ...(hostMsPerStep !== undefined ? { hostMsPerStep, cudaGraphSteps } : {}),
      },
    };
  }

  /** One pass: conditioning, denoising, decoding of `req.count` images together. */
  async #pass(
    req: GenerationRequest,
    opts: GenerateOptions,
    lora: LoraVariant | undefined,
  ): Promise<PassResult> {
    const c = this.#loaded();
    const t0 = performance.now();
    const prepared = await this.prepare(req, opts.signal);
    const t1 = performance.now();
    const { latent, hostMsPerStep, cudaGraphSteps } = await this.#sample(prepared, opts, lora?.denoiser);
    const t2 = performance.now();
    const plan = this.vaeDecodePlan(prepared.latentShape);
    const images: RawImage[] = await decodeLatents(c, latent, req.count, prepared.latentShape, plan);
    const t3 = performance.now();
    return {
      images,
      seeds: prepared.seeds,
      promptTruncated: prepared.promptTruncated,
      promptCached: prepared.promptCached,
      vaeTiled: plan.tiled,
      encodeMs: t1 - t0,
      denoiseMs: t2 - t1,
      decodeMs: t3 - t2,
      ...(hostMsPerStep !== undefined ? { hostMsPerStep, cudaGraphSteps } : {}),
    };
  }

  /** Everything before the first denoising step: conditioning, schedule, starting latent. */
  async prepare(req: GenerationRequest, signal?: AbortSignal): Promise<PreparedGeneration> {
    const c = this.#loaded();
    if (req.width % SIZE_MULTIPLE || req.height % SIZE_MULTIPLE) {
      throw new ValidationError(
        'size',
        `Width and height must be multiples of ${SIZE_MULTIPLE} (got ${req.width}×${req.height}).`,
      );
    }
    const latentShape: [number, number, number] = [LATENT_CHANNELS, req.height / 8, req.width / 8];
    checkLatentSize(c.mmditConfig, latentShape[1], latentShape[2]);
    // A job the GPU memory cannot hold is refused before any model runs, saying what would fit.
    const tooBig = jobMemoryProblem(c.memory.plan, c.memory.input, req);
    if (tooBig) throw new ValidationError('count', tooBig);
    throwIfAborted(signal);
    const tokens = [c.tokenizer.tokenize(req.prompt), c.tokenizer.tokenize(req.negativePrompt)];
    const prompts = tokens.map((t) => ({ l: t.l[0], g: t.g[0], t5: t.t5 ?? [] }));
    const encode = () => {
      this.#textEncoderRuns++;
      return encodePrompts(c.text, prompts);
    };
    const { conds, hit } = this.#promptCache
      ? await this.#promptCache.get(promptKey(c.textKey, prompts), encode)
      : { conds: await encode(), hit: false };
    const [cond, uncond] = conds;
    throwIfAborted(signal);

    const per = latentShape[0] * latentShape[1] * latentShape[2];
    let schedule = getSigmas(req.steps, this.options.shift ?? DEFAULT_SHIFT);
    let start: Float32Array | undefined;
    if (req.init) {
      schedule = truncateForDenoise(schedule, req.init.strength);
      const encoded = processIn(await encodeImage(c, req.init.image, req.width, req.height));
      start = new Float32Array(req.count * per);
      for (let i = 0; i < req.count; i++) start.set(encoded, i * per);
    }
    const seeds = Array.from({ length: req.count }, (_, i) => req.seed + i);
    const noise = new Float32Array(req.count * per);
    seeds.forEach((seed, i) => {
      noise.set(randn([1, ...latentShape], seed), i * per);
    });
    return {
      request: req,
      cond,
      uncond,
      schedule,
      noise,
      x0: noiseScaling(schedule[0], noise, start),
      latentShape,
      seeds,
      promptTruncated: tokens[0].truncated,
      promptCached: hit,
    };
  }

  /** The denoising loop; returns the final latents, process_out'ed (ready for the VAE decoder). */
  async sample(p: PreparedGeneration, opts: GenerateOptions = {}): Promise<Float32Array> {
    return (await this.#sample(p, opts)).latent;
  }

  async #sample(
    p: PreparedGeneration,
    opts: GenerateOptions,
    denoiser: Pick<Denoiser, 'capi' | 'mmdit'> = this.#loaded(),
  ): Promise<{ latent: Float32Array; hostMsPerStep?: number; cudaGraphSteps?: number }> {
    const c = denoiser;
    const { request: req, latentShape } = p;
    const per = latentShape[0] * latentShape[1] * latentShape[2];
    const preview = (denoised: Float32Array) =>
      latentPreview(denoised.subarray(0, per), LATENT_CHANNELS, latentShape[1], latentShape[2]);
    if (c.capi) {
      const total = p.schedule.length - 1;
      const result = await c.capi.sample(
        {
          x0: p.x0,
          images: req.count,
          latentShape,
          schedule: p.schedule,
          sampler: req.sampler,
          cond: p.cond,
          uncond: p.uncond,
          guidance: req.guidance,
        },
        {
          signal: opts.signal,
          // Without a listener no preview is read back from the device at all.
          onStep:
            opts.onStep &&
            ((i, _total, denoised) => opts.onStep?.({ step: i + 1, total, preview: preview(denoised) })),
        },
      );
      throwIfAborted(opts.signal);
      return {
        latent: processOut(result.latent),
        hostMsPerStep: result.hostMsPerStep,
        cudaGraphSteps: result.replayedSteps,
      };
    }
    if (!c.mmdit) throw new Error('the SD3.5 engine has no MMDiT session');
    const denoise = cfgDenoiser({
      model: mmditModel(c.mmdit),
      latentDims: [req.count, ...latentShape],
      cond: p.cond,
      uncond: p.uncond,
      scale: req.guidance,
    });
    const total = p.schedule.length - 1;
    const sample = req.sampler === 'dpmpp_2m' ? sampleDpmpp2m : sampleEuler;
    const result = await sample(denoise, p.x0, p.schedule, {
      signal: opts.signal,
      onStep: async (i, _total, _x, denoised) => {
        opts.onStep?.({ step: i + 1, total, preview: preview(denoised) });
        // Let the process handle its messages (a cancel) between steps: session.run blocks the thread.
        await new Promise((resolve) => setImmediate(resolve));
        throwIfAborted(opts.signal);
      },
    });
    throwIfAborted(opts.signal);
    return { latent: processOut(result) };
  }

  #loaded(): LoadedComponents {
    if (!this.#c) throw new Error('the SD3.5 engine is not loaded');
    return this.#c;
  }

  /** The denoiser of a job's LoRA combination (lora/variants.ts); undefined when no weight is non-zero. */
  async #loraVariant(
    c: LoadedComponents,
    loras: readonly GenerationLora[],
  ): Promise<LoraVariant | undefined> {
    // As many combinations as fit beside the model; none: refused before any merge (not an OOM).
    const configured = cachedCombinationsOf(this.options.loras) || DEFAULT_CACHED_COMBINATIONS;
    const { capacity, refusal } = loraCapacity(c.memory.plan, configured);
    if (refusal) throw new PipelineError(`no GPU memory for a LoRA combination: ${refusal}`, refusal);
    this.#loras ??= new LoraVariants(
      { model: c.info.model, weights: c.mmditWeights, openDenoiser: c.openDenoiser },
      {
        dir: this.options.loras?.dir ?? join(this.options.dataDir, 'loras'),
        workDir: join(this.options.dataDir, 'loras', 'merged'),
        capacity,
        // The denoiser's op library carries the native merge kernel too (exported by the CUDA build).
        ...(this.options.customOpsLibrary ? { mergeLibrary: this.options.customOpsLibrary } : {}),
      },
    );
    return this.#loras.variant(loras);
  }
}
