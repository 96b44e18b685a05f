/**
 * The SD3.5 pipeline: `createPipeline` is what the pipeline child process imports (see
 * ../process); `sd35ProcessSpec` is how the bot names it.
 */
import { fileURLToPath } from 'node:url';
import type { PipelineModuleSpec } from '../process/protocol.js';
import type { Pipeline } from '../types.js';
import { Sd35Engine } from './engine.js';
import { type MultiEngineOptions, MultiModelEngine } from './multi-engine.js';
import type { EngineOptions } from './options.js';

export { Sd35Engine } from './engine.js';
export { type ModelSpec, type MultiEngineOptions, MultiModelEngine } from './multi-engine.js';
export type { EngineOptions, Precision } from './options.js';

/** One model (EngineOptions), or several resident at once (MultiEngineOptions: config `models.list`). */
export function createPipeline(options: EngineOptions | MultiEngineOptions): Pipeline {
  return 'models' in options ? new MultiModelEngine(options) : new Sd35Engine(options);
}

/** The child-process spec that runs this module's createPipeline with `options`. */
export function sd35ProcessSpec(options: EngineOptions | MultiEngineOptions): PipelineModuleSpec {
  const engine = 'models' in options ? options.engine : options;
  return {
    module: fileURLToPath(import.meta.url),
    options,
    ...(engine.onnxRuntimeDir
      ? { onnxRuntime: { dir: engine.onnxRuntimeDir, provider: engine.provider ?? 'cpu' } }
      : {}),
  };
}
