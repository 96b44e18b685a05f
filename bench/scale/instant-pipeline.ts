/**
 * A Pipeline double for the scale benchmark: answers every job on the next turn of the event loop
 * with solid 64×64 images, so what is measured is the way a job travels (scheduler, BullMQ, Redis,
 * PNG encode, file write), not a model. Benchmark use only.
 */
import type {
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  PipelineInfo,
} from '../../src/pipeline/types.js';

export class InstantPipeline implements Pipeline {
  async load(): Promise<void> {}
  async dispose(): Promise<void> {}

  info(): PipelineInfo {
    return {
      model: 'instant',
      executionProvider: 'none',
      components: [],
      defaults: { steps: 4, guidance: 4.5, sampler: 'euler', resolution: 1024 },
    };
  }

  async generate(request: GenerationRequest): Promise<GenerationOutput> {
    // A real pipeline answers from another process: the event loop turns in between.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const images = Array.from({ length: request.count }, () => ({
      width: request.width,
      height: request.height,
      data: new Uint8Array(request.width * request.height * 3).fill(90),
    }));
    return { images, seeds: images.map((_, i) => request.seed + i), model: 'instant' };
  }
}
