/**
 * A pipeline double serving several models on a manual clock, for the scheduler's ETA tests: it
 * keeps `capacity` models loaded with the pipeline's own rule (src/pipeline/residency.ts: least
 * recently used out) and, given a `loraCapacity`, that many LoRA combinations per model
 * (lora/variants.ts: least recently used out; a model unloaded loses its own). A job of another
 * model loads it, and a job with a combination not loaded merges it, before its first step —
 * advancing the clock by the model's costs and saying so in `timings`, as the real engine does.
 */
import { loraCombinationKey, planLoad } from '../../src/pipeline/residency.js';
import type {
  GenerateOptions,
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  PipelineInfo,
  Residency,
} from '../../src/pipeline/types.js';
import { solidImage } from './helpers.js';

/** Simulated costs of one model at the test size; `mergeMs`: a LoRA combination's merge + load. */
export interface ModelCosts {
  msPerStep: number;
  loadMs: number;
  encodeMs: number;
  decodeMs: number;
  mergeMs?: number;
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

export class ModelsPipeline implements Pipeline {
  /** Least recently used first. */
  resident: string[];
  /** Per loaded model, its LoRA combinations, least recently used first. */
  readonly combinations = new Map<string, string[]>();
  readonly log: string[] = [];
  readonly requests: GenerationRequest[] = [];
  /** While set, a job waits for it before doing anything (the clock stands still meanwhile). */
  hold: Promise<void> | undefined;
  #running = false;
  readonly #loadMs: Record<string, number> = {};
  readonly #loraMs: Record<string, number> = {};

  constructor(
    readonly clock: { now: number },
    readonly models: Readonly<Record<string, ModelCosts>>,
    readonly capacity: number,
    initial: string[],
    /** LoRA combinations kept per model; absent: the double says nothing of LoRAs. */
    readonly loraCapacity?: number,
  ) {
    this.resident = [...initial];
    for (const name of initial) {
      this.#loadMs[name] = models[name]!.loadMs;
      this.combinations.set(name, []);
    }
  }

  async load(): Promise<void> {}
  async dispose(): Promise<void> {}

  info(): PipelineInfo {
    return {
      model: 'large',
      executionProvider: 'cpu',
      components: [],
      defaults: { steps: 28, guidance: 4.5, sampler: 'euler', resolution: 1024 },
    };
  }

  residency(): Residency {
    return {
      resident: [...this.resident],
      capacity: this.capacity,
      loadMs: { ...this.#loadMs },
      defaultModel: 'large',
      ...(this.loraCapacity !== undefined
        ? {
            loras: Object.fromEntries([...this.combinations].map(([model, keys]) => [model, [...keys]])),
            loraCapacity: this.loraCapacity,
            loraMs: { ...this.#loraMs },
          }
        : {}),
    };
  }

  async generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationOutput> {
    if (this.#running) throw new Error('two jobs at once on one pipeline');
    this.#running = true;
    try {
      if (this.hold) await this.hold;
      this.requests.push(request);
      const clock = this.clock;
      const model = request.model ?? 'large';
      const cost = this.models[model]!;
      let loadMs: number | undefined;
      if (!this.resident.includes(model)) {
        // Between jobs: nothing of another job runs while models are swapped.
        const plan = planLoad(model, this.resident, {}, { maxResident: this.capacity });
        for (const gone of plan.evict) {
          this.resident.splice(this.resident.indexOf(gone), 1);
          this.combinations.delete(gone);
          this.log.push(`unload ${gone}`);
        }
        clock.now += cost.loadMs;
        loadMs = cost.loadMs;
        this.#loadMs[model] = cost.loadMs;
        this.combinations.set(model, []);
        this.log.push(`load ${model}`);
      }
      this.resident = [...this.resident.filter((m) => m !== model), model];
      let loraMs: number | undefined;
      const key = this.loraCapacity !== undefined ? loraCombinationKey(request.loras) : undefined;
      if (key !== undefined) {
        const loaded = this.combinations.get(model)!;
        const at = loaded.indexOf(key);
        if (at >= 0) loaded.splice(at, 1);
        else {
          while (loaded.length >= this.loraCapacity!) this.log.push(`drop ${loaded.shift()}`);
          clock.now += cost.mergeMs ?? 0;
          loraMs = cost.mergeMs ?? 0;
          this.#loraMs[model] = loraMs;
          this.log.push(`merge ${key}`);
        }
        loaded.push(key);
      }
      this.log.push(`run ${model}`);
      clock.now += cost.encodeMs;
      for (let step = 1; step <= request.steps; step++) {
        clock.now += cost.msPerStep * request.count;
        options.onStep?.({ step, total: request.steps });
        await nextTick();
      }
      clock.now += cost.decodeMs * request.count;
      const seeds = Array.from({ length: request.count }, (_, i) => request.seed + i);
      return {
        images: seeds.map((seed) => solidImage(request.width, request.height, seed)),
        seeds,
        model: `${model}.safetensors`,
        modelName: model,
        resident: [...this.resident],
        ...(this.loraCapacity !== undefined ? { loraCombinations: [...this.combinations.get(model)!] } : {}),
        timings: {
          encodeMs: cost.encodeMs,
          denoiseMs: cost.msPerStep * request.count * request.steps,
          decodeMs: cost.decodeMs * request.count,
          ...(loadMs !== undefined ? { loadMs } : {}),
          ...(loraMs !== undefined ? { loraMs } : {}),
        },
      };
    } finally {
      this.#running = false;
    }
  }
}

/** What a job of `model` takes once its model (and LoRAs) are loaded. */
export function runMsOf(
  models: Readonly<Record<string, ModelCosts>>,
  model: string,
  steps: number,
  count = 1,
) {
  const c = models[model]!;
  return c.encodeMs + c.msPerStep * steps * count + c.decodeMs * count;
}
