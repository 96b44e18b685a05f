/**
 * Opens ONNX Runtime sessions for built graphs. Graphs are loaded from memory; their weights are
 * read by ONNX Runtime from the safetensors files (external data inside `externalFolder`).
 */
import * as ort from 'onnxruntime-node';
import { ModelError } from '../../errors.js';
import type { BuiltModel } from './graph.js';

export type ExecutionProvider = 'cpu' | 'cuda';

export interface SessionOptions {
  provider: ExecutionProvider;
  deviceId?: number;
  /** Threads for the CPU provider's parallel kernels (default: ONNX Runtime's choice). */
  intraOpThreads?: number;
  /** Extra `session.*` config entries passed through to ONNX Runtime. */
  config?: Record<string, string>;
  /** Writes an ONNX Runtime profile (JSON trace of every node) starting with this path. */
  profilePrefix?: string;
}

export async function openSession(
  name: string,
  model: BuiltModel,
  options: SessionOptions,
): Promise<ort.InferenceSession> {
  const session: Record<string, string> = { ...options.config };
  if (model.externalFolder) session.model_external_initializers_file_folder_path = model.externalFolder;
  const providers: ort.InferenceSession.ExecutionProviderConfig[] =
    options.provider === 'cuda' ? [{ name: 'cuda', deviceId: options.deviceId ?? 0 }] : ['cpu'];
  try {
    return await ort.InferenceSession.create(model.bytes, {
      executionProviders: providers,
      graphOptimizationLevel: 'all',
      ...(options.intraOpThreads ? { intraOpNumThreads: options.intraOpThreads } : {}),
      ...(options.profilePrefix ? { enableProfiling: true, profileFilePrefix: options.profilePrefix } : {}),
      logSeverityLevel: 3,
      // Node's binding forwards `extra` as session config entries ("session.<key>").
      extra: { session },
    } as ort.InferenceSession.SessionOptions);
  } catch (error) {
    const message = String((error as Error).message ?? error);
    const hint =
      options.provider === 'cuda' && /cuda|provider/i.test(message)
        ? ' — the CUDA execution provider could not be loaded; check models.executionProvider and the CUDA libraries (see README, GPU)'
        : '';
    throw new ModelError(
      name,
      `${name}: ONNX Runtime could not load the graph: ${message.split('\n')[0]}${hint}`,
      { cause: error },
    );
  }
}
