/**
 * Messages between the bot process and the pipeline child process. The child runs ONNX Runtime,
 * whose session.run() blocks its thread for seconds; keeping it in another process leaves the
 * bot's event loop free for chat traffic, and a native crash (CUDA, out of memory) kills only the
 * child, which is started again.
 */
import type { GenerationOutput, GenerationRequest, PipelineInfo, StepInfo } from '../types.js';

/** A module the child imports: it exports `createPipeline(options)` returning an in-process Pipeline. */
export interface PipelineModuleSpec {
  /** File URL or absolute path of the module. */
  module: string;
  /** JSON-serialisable options passed to createPipeline. */
  options: unknown;
  /** ONNX Runtime's libraries to load before the module (`models.onnxRuntimeDir`), and for which provider. */
  onnxRuntime?: { dir: string; provider: string };
}

export type ParentMessage =
  | { type: 'load'; spec: PipelineModuleSpec }
  | { type: 'generate'; id: number; request: GenerationRequest }
  | { type: 'cancel'; id: number }
  /** Liveness probe: the child answers `pong` from its event loop (how long a step blocks it). */
  | { type: 'ping'; id: number }
  | { type: 'dispose' };

export interface SerializedError {
  name: string;
  code: string;
  message: string;
  userMessage: string;
  file?: string;
}

export type ChildMessage =
  | { type: 'loaded'; info: PipelineInfo }
  | { type: 'load-failed'; error: SerializedError }
  | { type: 'step'; id: number; info: StepInfo }
  | { type: 'result'; id: number; output: GenerationOutput }
  | { type: 'failed'; id: number; error: SerializedError }
  | { type: 'pong'; id: number }
  | { type: 'disposed' };
