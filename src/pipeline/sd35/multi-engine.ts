/**
 * Several SD3.5 models resident in one pipeline process (config `models.list`): each model is an
 * `Sd35Engine` of its own, and their text encoders and VAE open once when they are the same files
 * (`SharedSessions`). Every model that fits stays loaded (`models.maxResident`, and on the GPU the
 * memory budget: models.gpuMemoryLimit or the free memory at start). When a job needs a model that
 * is not loaded, the least recently used ones are unloaded and it is loaded — before the job's
 * first step, so between jobs, never during one (the scheduler runs one job at a time on a
 * pipeline). The output says how long that took and what is loaded after, for the queue's ETA.
 *
 * One model configured the old way (`models.dir` / `models.checkpoint`) is a list of one, named
 * after its checkpoint.
 */
import { findByName } from '../../edit-distance.js';
import { ModelError, PipelineError } from '../../errors.js';
import { cachedCombinationsOf, estimatedMergeMs, mergeKernelFor } from '../lora/index.js';
import { discoverModelSet } from '../models-dir/discover.js';
import { checkpointHash } from '../models-dir/model-hash.js';
import type { ModelSet } from '../models-dir/types.js';
import { initialResidents, type ModelFootprint, planLoad, type ResidencyLimits } from '../residency.js';
import { samplingDefaultsOf } from '../sampling/defaults.js';
import type {
  GenerateOptions,
  GenerationOutput,
  GenerationRequest,
  ModelInfo,
  Pipeline,
  PipelineInfo,
  Residency,
} from '../types.js';
import { DTYPE_BYTES } from '../weights/dtypes.js';
import { fileComponents, memoryPlanOf, SharedSessions, sharedComponentKey } from './components.js';
import { Sd35Engine } from './engine.js';
import { OVERHEAD_BYTES, queryGpuMemory, TEXT_ARENA_BYTES } from './gpu-memory.js';
import type { EngineOptions } from './options.js';

/** One model to serve: where its files are. */
export interface ModelSpec {
  /** The configured name (`models.list` key); absent: the checkpoint's name (one model, the old way). */
  name?: string;
  modelsDir: string;
  checkpoint?: string;
  textEncoders?: EngineOptions['textEncoders'];
}

/** Options of the multi-model engine (serialisable: they cross into the pipeline process). */
export interface MultiEngineOptions {
  /** What every model shares: precision, provider, data dir, memory settings… */
  engine: Omit<EngineOptions, 'modelsDir' | 'checkpoint' | 'textEncoders'>;
  /** The models, the default first. */
  models: ModelSpec[];
  /** Most models loaded at once (config `models.maxResident`). @default every one that fits */
  maxResident?: number;
}

interface Entry {
  name: string;
  options: EngineOptions;
  set: ModelSet;
  hash: string;
  parameters: number;
  footprint?: ModelFootprint;
  engine?: Sd35Engine;
  /** Loading now (a job waits for it). */
  loading?: Promise<Sd35Engine>;
  lastUsed: number;
  loadMs?: number;
  /** How long its last LoRA combination took to merge and load. */
  loraMs?: number;
}

export class MultiModelEngine implements Pipeline {
  readonly #options: MultiEngineOptions;
  /** The LoRA merge kernel the engines will run (for the guess of a combination's wait). */
  #kernel: 'native' | 'js' | undefined;
  readonly #sessions = new SharedSessions();
  #entries: Entry[] = [];
  #limits: ResidencyLimits = {};
  #capacity = 1;
  #defaultInfo: PipelineInfo | undefined;
  #tick = 0;
  #loaded: Promise<void> | undefined;

  constructor(options: MultiEngineOptions) {
    if (options.models.length === 0) throw new TypeError('Expected at least one model');
    this.#options = options;
  }

  #mergeKernel(): 'native' | 'js' {
    this.#kernel ??= mergeKernelFor(this.#options.engine.customOpsLibrary ?? undefined);
    return this.#kernel;
  }

  load(): Promise<void> {
    this.#loaded ??= this.#load().catch(async (error) => {
      this.#loaded = undefined;
      await this.dispose();
      throw error;
    });
    return this.#loaded;
  }

  async #load(): Promise<void> {
    const { engine } = this.#options;
    const provider = engine.provider ?? 'cpu';
    // Every model plans its memory as if alone, against the free memory before any loads (a later
    // model must not see the earlier ones' weights as "not free" and move its encoders to the CPU).
    const freeBytes =
      provider === 'cuda' && engine.gpuMemoryLimit === undefined
        ? (engine.gpuFreeBytes ?? queryGpuMemory(engine.deviceId ?? 0)?.freeBytes)
        : undefined;
    const entries: Entry[] = [];
    let budgetBytes: number | undefined;
    for (const spec of this.#options.models) {
      const options: EngineOptions = {
        ...engine,
        modelsDir: spec.modelsDir,
        ...(spec.checkpoint ? { checkpoint: spec.checkpoint } : {}),
        ...(spec.textEncoders ? { textEncoders: spec.textEncoders } : {}),
        ...(freeBytes !== undefined ? { gpuFreeBytes: freeBytes } : {}),
      };
      let set: ModelSet;
      try {
        set = discoverModelSet({
          modelsDir: options.modelsDir,
          checkpoint: options.checkpoint,
          textEncoders: options.textEncoders,
          dataDir: options.dataDir,
        });
      } catch (error) {
        // Which of the configured models it is: models.list.<name>.
        if (!(error instanceof ModelError) || spec.name === undefined) throw error;
        throw new ModelError(error.file, `models.list.${spec.name}: ${error.message}`, { cause: error });
      }
      const components = fileComponents(set);
      const mmdit = components.find((c) => c.name === 'mmdit');
      const parameters = mmdit
        ? mmdit.bytes / (DTYPE_BYTES[mmdit.dtype as keyof typeof DTYPE_BYTES] ?? 2)
        : 0;
      const entry: Entry = {
        name: spec.name ?? set.name,
        options,
        set,
        hash: checkpointHash(set.components.mmdit.files),
        parameters,
        lastUsed: 0,
      };
      if (provider === 'cuda') {
        const { plan } = memoryPlanOf(options, set, components, freeBytes);
        if (plan.budget.bytes !== undefined) budgetBytes = plan.budget.bytes - OVERHEAD_BYTES;
        entry.footprint = footprintOf(set, plan.breakdown, cachedCombinationsOf(options.loras));
      }
      entries.push(entry);
    }
    this.#entries = entries;
    const max = this.#options.maxResident;
    this.#limits = {
      ...(max !== undefined ? { maxResident: max } : {}),
      ...(budgetBytes !== undefined && entries.every((e) => e.footprint) ? { budgetBytes } : {}),
    };
    const names = entries.map((e) => e.name);
    const first = initialResidents(names, this.#footprints(), this.#limits);
    this.#capacity = Math.max(1, first.length);
    for (const name of first) await this.#bringIn(this.#entry(name)!);
    // The default model is the most recently used at start: the last to be unloaded.
    for (const name of [...first].reverse()) this.#entry(name)!.lastUsed = ++this.#tick;
    this.#defaultInfo = entries[0]!.engine!.info();
  }

  /** Text encoder and VAE sessions open now, each once however many models hold it (tests, logs). */
  get sharedSessions(): number {
    return this.#sessions.size;
  }

  info(): PipelineInfo {
    if (!this.#defaultInfo) throw new PipelineError('the pipeline is not loaded yet');
    return {
      ...this.#defaultInfo,
      models: this.#entries.map((e) => this.#modelInfo(e)),
      maxResident: this.#capacity,
      loraCombinations: cachedCombinationsOf(this.#options.engine.loras),
    };
  }

  residency(): Residency | undefined {
    if (!this.#defaultInfo) return undefined;
    return {
      resident: this.#resident(),
      capacity: this.#capacity,
      loadMs: Object.fromEntries(
        this.#entries.filter((e) => e.loadMs !== undefined).map((e) => [e.name, e.loadMs!]),
      ),
      defaultModel: this.#entries[0]!.name,
      loras: Object.fromEntries(
        this.#entries.filter((e) => e.engine).map((e) => [e.name, e.engine!.loraCombinations()]),
      ),
      loraCapacity: cachedCombinationsOf(this.#options.engine.loras),
      // Measured, else (LoRAs configured, none merged yet) the first guess from the model's size.
      loraMs: Object.fromEntries(
        this.#entries.flatMap((e) => {
          const ms = this.#modelInfo(e).loraMs;
          return ms !== undefined ? [[e.name, ms]] : [];
        }),
      ),
    };
  }

  async generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationOutput> {
    await this.load();
    const entry = this.#resolve(request.model);
    let loadMs: number | undefined;
    let engine = entry.engine;
    if (!engine) {
      const started = performance.now();
      engine = await this.#bringIn(entry);
      loadMs = performance.now() - started;
    }
    entry.lastUsed = ++this.#tick;
    const output = await engine.generate(request, options);
    if (output.timings?.loraMs !== undefined) entry.loraMs = output.timings.loraMs;
    return {
      ...output,
      model: entry.set.name,
      modelHash: entry.hash,
      modelName: entry.name,
      resident: this.#resident(),
      loraCombinations: engine.loraCombinations(),
      ...(loadMs !== undefined && output.timings ? { timings: { ...output.timings, loadMs } } : {}),
    };
  }

  async dispose(): Promise<void> {
    for (const entry of this.#entries) {
      const engine = entry.engine;
      entry.engine = undefined;
      await engine?.dispose();
    }
  }

  /** The model a request names (case-insensitive), the default when it names none. */
  #resolve(name: string | undefined): Entry {
    if (name === undefined) return this.#entries[0]!;
    const found = this.#entry(name);
    if (found) return found;
    const names = this.#entries.map((e) => e.name).join(', ');
    throw new PipelineError(
      `model "${name}" is not configured (configured: ${names})`,
      `The model “${name}” is no longer configured here. Configured models: ${names}.`,
    );
  }

  #entry(name: string): Entry | undefined {
    return findByName(this.#entries, name, (e) => e.name);
  }

  /** Loaded models, least recently used first. */
  #resident(): string[] {
    return this.#entries
      .filter((e) => e.engine)
      .sort((a, b) => a.lastUsed - b.lastUsed)
      .map((e) => e.name);
  }

  #footprints(): Record<string, ModelFootprint | undefined> {
    return Object.fromEntries(this.#entries.map((e) => [e.name, e.footprint]));
  }

  /** Unloads what must go (least recently used first), then loads `entry`, timed. */
  async #bringIn(entry: Entry): Promise<Sd35Engine> {
    if (entry.engine) return entry.engine;
    if (entry.loading) return entry.loading;
    const started = performance.now();
    entry.loading = (async () => {
      const plan = planLoad(entry.name, this.#resident(), this.#footprints(), this.#limits);
      for (const name of plan.evict) {
        const gone = this.#entry(name)!;
        const engine = gone.engine;
        gone.engine = undefined;
        await engine?.dispose();
      }
      const engine = new Sd35Engine(entry.options, { sessions: this.#sessions });
      try {
        await engine.load();
      } catch (error) {
        await engine.dispose().catch(() => {});
        throw error;
      }
      entry.engine = engine;
      entry.loadMs = performance.now() - started;
      return engine;
    })();
    try {
      return await entry.loading;
    } finally {
      entry.loading = undefined;
    }
  }

  #modelInfo(entry: Entry): ModelInfo {
    const defaults = samplingDefaultsOf(entry.set);
    return {
      name: entry.name,
      label: entry.set.name,
      hash: entry.hash,
      family: entry.set.family,
      defaults: {
        steps: defaults.steps,
        guidance: defaults.guidance,
        sampler: defaults.sampler,
        resolution: defaults.resolution,
      },
      parameters: entry.parameters,
      resident: entry.engine !== undefined,
      ...(entry.loadMs !== undefined ? { loadMs: entry.loadMs } : {}),
      ...(entry.loraMs !== undefined
        ? { loraMs: entry.loraMs }
        : this.#options.engine.loras
          ? { loraMs: Math.round(estimatedMergeMs(entry.parameters, undefined, this.#mergeKernel())) }
          : {}),
    };
  }
}

/**
 * A model's GPU footprint from its memory plan: the MMDiT (weights, activations, extra C-API
 * shapes) is its own; each text encoder and the VAE (weights and arena) is shared with every model
 * that loads the same file under the same prefix. With LoRAs configured, each of the
 * `loraCombinations` combinations it may keep loaded (lora/variants.ts) is its own too: a full
 * denoiser session, i.e. another copy of all the MMDiT's weights and an arena of its own.
 */
export function footprintOf(
  set: Pick<ModelSet, 'components'>,
  breakdown: ReturnType<typeof memoryPlanOf>['plan']['breakdown'],
  loraCombinations = 0,
): ModelFootprint | undefined {
  if (!breakdown) return undefined;
  const shared: Record<string, number> = {};
  for (const name of ['clipL', 'clipG', 't5', 'vae'] as const) {
    const location = set.components[name];
    const weights = breakdown.weights[name];
    if (!location || weights === undefined) continue;
    const arena = name === 'vae' ? breakdown.vaeBytes : TEXT_ARENA_BYTES[name];
    shared[`${name}:${sharedComponentKey(name, location)}`] = weights + arena;
  }
  const mmdit = (breakdown.weights.mmdit ?? 0) + breakdown.mmditBytes;
  return {
    ownBytes: mmdit + breakdown.extraShapesBytes + Math.max(0, loraCombinations) * mmdit,
    shared,
  };
}
