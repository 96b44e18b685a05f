/**
 * The pipeline module atelier-bench's child process loads (bundle.mjs: `memory-pipeline.js`): the
 * SD3.5 engine as the product runs it, plus what issue 11's rows read from inside the child — the
 * arena counters of every session opened through ONNX Runtime's C API after load (`info().arenas`)
 * and after each job (`output.arenas`). Nothing else differs from `sd35.js`.
 */
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { ArenaReport } from '../../src/pipeline/sd35/gpu-memory.js';
import type { EngineOptions } from '../../src/pipeline/sd35/options.js';
import type {
  GenerateOptions,
  GenerationOutput,
  GenerationRequest,
  Pipeline,
  PipelineInfo,
} from '../../src/pipeline/types.js';

export type MeasuredInfo = PipelineInfo & { arenas?: ArenaReport[] };
export type MeasuredOutput = GenerationOutput & { arenas?: ArenaReport[] };

export function createPipeline(options: EngineOptions): Pipeline {
  const engine = new Sd35Engine(options);
  let atLoad: ArenaReport[] | undefined;
  return {
    async load() {
      await engine.load();
      atLoad = await engine.arenaStats();
    },
    info: (): MeasuredInfo => ({ ...engine.info(), arenas: atLoad }),
    async generate(request: GenerationRequest, opts?: GenerateOptions): Promise<MeasuredOutput> {
      const output = await engine.generate(request, opts);
      return { ...output, arenas: await engine.arenaStats() };
    },
    dispose: () => engine.dispose(),
  };
}
