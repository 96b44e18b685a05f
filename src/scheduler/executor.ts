/**
 * Turns a job into images on disk, through the `Pipeline` interface only. txt2img and reroll
 * generate from the parameters; variation and upscale start from an earlier result (img2img):
 * an upscale first enlarges it 2× with Lanczos, then refines it at a low strength.
 *
 * Files: `<dataDir>/images/<jobId>/<index>-<seed>.png` (parameters embedded, A1111 format), plus
 * `grid.png` when there is more than one image. Each file is written to a temporary name and
 * renamed, so a crash never leaves a half-written PNG under the final name.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { CancelledError, NotFoundError, PipelineError } from '../errors.js';
import { encodePng, encodePreview, formatParameters, makeGrid } from '../images/index.js';
import { styledPrompts } from '../jobs/styles.js';
import { isImg2img, type JobImage, type JobParams, type JobRecord, type JobResult } from '../jobs/types.js';
import type {
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  RawImage,
  Residency,
  StepInfo,
} from '../pipeline/types.js';
import type { Store } from '../store/index.js';
import { UPSCALE_FACTOR } from '../vocabulary.js';
import type { RunTimings, TimedJobResult } from './eta.js';
import type { JobRunner, RunContext, RunProgress } from './runner.js';

export interface JobExecutorOptions {
  /** The one pipeline this executor drives. */
  pipeline: Pipeline;
  /** Where parent images are looked up and new images are recorded (`store.imageDir`). */
  store: Store;
  /**
   * img2img strength for variations whose parameters carry none.
   * @default 0.6
   */
  variationStrength?: number;
  /**
   * img2img strength for upscales whose parameters carry none: low, so the refine adds detail
   * without changing the picture.
   * @default 0.3
   */
  upscaleStrength?: number;
}

interface PreparedRequest {
  request: GenerationRequest;
  /** The parameters as actually used (size and count of an upscale differ from the parent's). */
  params: JobParams;
}

/** The error a job stops with when its signal fires: the signal's reason, or a cancel. */
export function asAbortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new CancelledError();
}

async function writeAtomically(path: string, data: Uint8Array): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, data);
  await rename(temporary, path);
}

/**
 * Forwards pipeline steps as progress, in order, encoding a preview only when the previous one
 * is done encoding (so a fast pipeline never waits on previews).
 */
class ProgressForwarder {
  #chain: Promise<void> = Promise.resolve();
  #encoding = false;

  constructor(readonly onProgress: (progress: RunProgress) => void) {}

  step(info: StepInfo): void {
    const encode = info.preview !== undefined && !this.#encoding;
    if (encode) this.#encoding = true;
    const previewing =
      encode && info.preview ? encodePreview(info.preview).catch(() => undefined) : undefined;
    this.#chain = this.#chain.then(async () => {
      const preview = previewing ? await previewing : undefined;
      if (encode) this.#encoding = false;
      this.onProgress(
        preview ? { step: info.step, total: info.total, preview } : { step: info.step, total: info.total },
      );
    });
  }

  /** Resolves after every step so far has been forwarded. */
  flush(): Promise<void> {
    return this.#chain;
  }
}

/** One image of a job, encoded (PNG with its parameters), not yet written anywhere. */
export interface RenderedImage {
  png: Uint8Array;
  width: number;
  height: number;
  seed: number;
}

/**
 * A job's output before it is stored: what `JobExecutor` writes to disk itself and what a cluster
 * worker sends back to the gateway, which writes it the same way (`writeRendered`).
 */
export interface RenderedJob {
  images: RenderedImage[];
  /** The grid of all images (PNG), when there is more than one. */
  grid?: Uint8Array;
  model: string;
  promptTruncated?: boolean;
  /** Where the pipeline's time went (text encoders, denoising), for the ETA's per-model rates. */
  timings?: RunTimings;
}

export interface JobRendererOptions {
  pipeline: Pipeline;
  /** @default 0.6 */
  variationStrength?: number;
  /** @default 0.3 */
  upscaleStrength?: number;
}

/**
 * Runs a job on a pipeline and encodes its images, knowing no store: the parent image of a
 * variation or upscale is handed in as encoded bytes. Shared by `JobExecutor` (embedded) and the
 * cluster worker.
 */
export class JobRenderer {
  readonly #pipeline: Pipeline;
  readonly #variationStrength: number;
  readonly #upscaleStrength: number;

  constructor(options: JobRendererOptions) {
    this.#pipeline = options.pipeline;
    this.#variationStrength = options.variationStrength ?? 0.6;
    this.#upscaleStrength = options.upscaleStrength ?? 0.3;
    for (const [name, value] of [
      ['variationStrength', this.#variationStrength],
      ['upscaleStrength', this.#upscaleStrength],
    ] as const) {
      if (!(value > 0 && value <= 1))
        throw new TypeError(`Expected \`${name}\` to be in (0, 1], got \`${value}\``);
    }
  }

  /**
   * The job's images, encoded. `parent` is the encoded image a variation or upscale starts from
   * (required for those kinds, ignored otherwise).
   */
  async render(job: JobRecord, parent: Uint8Array | undefined, context: RunContext): Promise<RenderedJob> {
    const { signal } = context;
    if (signal.aborted) throw asAbortError(signal);
    const { request, params } = await this.#prepare(job, parent);
    if (signal.aborted) throw asAbortError(signal);
    const progress = new ProgressForwarder(context.onProgress);
    let output: GenerationOutput;
    try {
      output = await this.#pipeline.generate(request, { signal, onStep: (info) => progress.step(info) });
    } finally {
      await progress.flush();
    }
    // A pipeline may finish its last step after the abort; the job is still cancelled.
    if (signal.aborted) throw asAbortError(signal);
    this.#check(output, request);
    return this.#encode(params, output, signal);
  }

  async #prepare(job: JobRecord, parentBytes: Uint8Array | undefined): Promise<PreparedRequest> {
    const { spec } = job;
    const params = { ...spec.params };
    // The model reads the prompt dressed in the job's style (the user's own stays in params).
    const base: GenerationRequest = {
      ...styledPrompts(params),
      width: params.width,
      height: params.height,
      seed: params.seed,
      steps: params.steps,
      guidance: params.guidance,
      sampler: params.sampler,
      count: params.count,
      // The model it was asked on (rerolls and variations keep their parent's); none: the default.
      ...(params.model ? { model: params.model.name } : {}),
      // Its LoRAs (kept by rerolls, variations and upscales): merged into the model for this job.
      ...(params.loras?.length
        ? { loras: params.loras.map(({ name, file, weight }) => ({ name, file, weight })) }
        : {}),
    };
    if (spec.kind === 'txt2img' || spec.kind === 'reroll') return { request: base, params };

    const parent = await this.#readParent(parentBytes);
    if (spec.kind === 'variation') {
      const image = await this.#decode(parent);
      const strength = params.strength ?? this.#variationStrength;
      const used: JobParams = { ...params, width: image.width, height: image.height, strength };
      return {
        request: { ...base, width: image.width, height: image.height, init: { image, strength } },
        params: used,
      };
    }
    const width = parent.width * UPSCALE_FACTOR;
    const height = parent.height * UPSCALE_FACTOR;
    const image = await this.#decode({
      ...parent,
      file: parent.file.resize(width, height, { kernel: 'lanczos3', fit: 'fill' }),
    });
    const strength = params.strength ?? this.#upscaleStrength;
    const used: JobParams = { ...params, width, height, count: 1, strength };
    return { request: { ...base, width, height, count: 1, init: { image, strength } }, params: used };
  }

  /** Opens a parent image; a missing or unreadable one means the user's button cannot work any more. */
  async #readParent(bytes: Uint8Array | undefined): Promise<{ file: Sharp; width: number; height: number }> {
    try {
      if (!bytes) throw new Error('no parent image');
      const file = sharp(bytes);
      const { width, height } = await file.metadata();
      if (!width || !height) throw new Error('no size');
      return { file, width, height };
    } catch {
      throw new NotFoundError('the original image file', "I can't read that image any more.");
    }
  }

  async #decode(parent: { file: Sharp }): Promise<RawImage> {
    const { data, info } = await parent.file
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    return {
      width: info.width,
      height: info.height,
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    };
  }

  #check(output: GenerationOutput, request: GenerationRequest): void {
    if (output.images.length !== request.count || output.seeds.length !== output.images.length) {
      throw new PipelineError(
        `pipeline returned ${output.images.length} images and ${output.seeds.length} seeds for count ${request.count}`,
      );
    }
  }

  async #encode(params: JobParams, output: GenerationOutput, signal: AbortSignal): Promise<RenderedJob> {
    const images: RenderedImage[] = [];
    const model = {
      model: output.model,
      ...(output.modelHash ? { modelHash: output.modelHash } : {}),
      ...(output.loras?.length ? { loraHashes: output.loras } : {}),
    };
    for (const [index, image] of output.images.entries()) {
      const seed = output.seeds[index]!;
      const png = await encodePng(image, formatParameters(params, { ...model, seed }));
      if (signal.aborted) throw asAbortError(signal);
      images.push({ png, width: image.width, height: image.height, seed });
    }
    const rendered: RenderedJob = { images, model: output.model };
    if (output.images.length > 1) {
      rendered.grid = await encodePng(
        makeGrid(output.images),
        formatParameters(params, { ...model, seed: output.seeds[0]! }),
      );
    }
    if (output.promptTruncated) rendered.promptTruncated = true;
    if (output.timings) rendered.timings = output.timings;
    return rendered;
  }
}

/**
 * Writes a rendered job under `dir` (`<dataDir>/images/<jobId>`): `<index>-<seed>.png` per image
 * and `grid.png`, each through a temporary name, and returns the job's result.
 */
export async function writeRendered(
  dir: string,
  rendered: RenderedJob,
  signal?: AbortSignal,
): Promise<TimedJobResult> {
  await mkdir(dir, { recursive: true });
  const images: JobImage[] = [];
  for (const [index, image] of rendered.images.entries()) {
    if (signal?.aborted) throw asAbortError(signal);
    const path = join(dir, `${index}-${image.seed}.png`);
    await writeAtomically(path, image.png);
    images.push({ path, width: image.width, height: image.height, seed: image.seed });
  }
  const result: TimedJobResult = { images, model: rendered.model };
  if (rendered.grid) {
    const gridPath = join(dir, 'grid.png');
    await writeAtomically(gridPath, rendered.grid);
    result.gridPath = gridPath;
  }
  if (rendered.promptTruncated) result.promptTruncated = true;
  if (rendered.timings) result.timings = rendered.timings;
  return result;
}

export class JobExecutor implements JobRunner {
  readonly #renderer: JobRenderer;
  readonly #store: Store;

  readonly #pipeline: Pipeline;

  constructor(options: JobExecutorOptions) {
    this.#renderer = new JobRenderer(options);
    this.#store = options.store;
    this.#pipeline = options.pipeline;
  }

  residency(): Residency | undefined {
    return this.#pipeline.residency?.();
  }

  async run(job: JobRecord, context: RunContext): Promise<JobResult> {
    const { signal } = context;
    if (signal.aborted) throw asAbortError(signal);
    const parent = isImg2img(job.spec.kind) ? await readParentImage(this.#store, job) : undefined;
    const rendered = await this.#renderer.render(job, parent, context);
    return writeRendered(this.#store.imageDir(job.id), rendered, signal);
  }
}

/**
 * The encoded image a variation or upscale starts from, as the store has it; a missing file means
 * the user's button cannot work any more.
 */
export async function readParentImage(store: Store, job: JobRecord): Promise<Uint8Array> {
  const parent = job.spec.parent;
  const index = parent?.imageIndex ?? 0;
  const image = parent && store.results.image(parent.jobId, index);
  if (!image) {
    throw new NotFoundError(
      `image ${index} of job ${parent?.jobId ?? '(none)'}`,
      "I can't find that image any more, so I can't make a variation or upscale of it.",
    );
  }
  try {
    return await readFile(image.path);
  } catch {
    throw new NotFoundError('the original image file', "I can't read that image any more.");
  }
}
