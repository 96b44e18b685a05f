/** The native tests' two ways to run a one-output graph: through the C API with our ops, or stock. */
import * as ort from 'onnxruntime-node';
import type { BuiltModel } from '../../src/pipeline/onnx/graph.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';

/** Output `y` of `model` run through the C-API binding with the custom-op `library` registered. */
export async function runWithOps(
  library: string,
  model: BuiltModel,
  feeds: Record<string, HostTensor>,
  config?: Record<string, string>,
): Promise<HostTensor> {
  const session = await CapiSession.create(model, { provider: 'cpu', customOpsLibraries: [library], config });
  try {
    return (await session.run(feeds)).y;
  } finally {
    session.release();
  }
}

/** Output `y` of `model` run through onnxruntime-node's JavaScript API (no custom ops). */
export async function runStock(model: BuiltModel, feeds: Record<string, HostTensor>) {
  const session = await ort.InferenceSession.create(model.bytes, { graphOptimizationLevel: 'all' });
  try {
    const tensors = Object.fromEntries(
      Object.entries(feeds).map(([k, f]) => [k, new ort.Tensor(f.type, f.data as Float32Array, f.dims)]),
    );
    return (await session.run(tensors)).y;
  } finally {
    await session.release();
  }
}
