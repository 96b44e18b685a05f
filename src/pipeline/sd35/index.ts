/**
 * The SD3.5 pipeline: `createPipeline` is what the pipeline child process imports (see
 * ../process); `sd35ProcessSpec` is how the bot names it.
 */
import { fileURLToPath } from 'node:url';
import type { PipelineModuleSpec } from '../process/protocol.js';
import type { Pipeline } from '../types.js';
import { Sd35Engine } from './engine.js';
import type { EngineOptions } from './options.js';

export { Sd35Engine } from './engine.js';
export type { EngineOptions, Precision } from './options.js';

export function createPipeline(options: EngineOptions): Pipeline {
  return new Sd35Engine(options);
}

/** The child-process spec that runs this module's createPipeline with `options`. */
export function sd35ProcessSpec(options: EngineOptions): PipelineModuleSpec {
  return {
    module: fileURLToPath(import.meta.url),
    options,
    ...(options.onnxRuntimeDir
      ? { onnxRuntime: { dir: options.onnxRuntimeDir, provider: options.provider ?? 'cpu' } }
      : {}),
  };
}
