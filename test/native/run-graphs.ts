/** What the native tests share: two ways to run a graph (through the C API with our ops, or stock) and seeded normal samples. */
import * as ort from 'onnxruntime-node';
import { afterEach, beforeAll } from 'vitest';
import type { BuiltModel } from '../../src/pipeline/onnx/graph.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import { rng } from '../fixtures/random.js';

/** Every output of `model` run through the C-API binding with the custom-op `library` registered. */
export async function runAllWithOps(
  library: string,
  model: BuiltModel,
  feeds: Record<string, HostTensor>,
  config?: Record<string, string>,
): Promise<Record<string, HostTensor>> {
  const session = await CapiSession.create(model, { provider: 'cpu', customOpsLibraries: [library], config });
  try {
    return await session.run(feeds);
  } finally {
    session.release();
  }
}

/** Output `y` of `model` run through the C-API binding with the custom-op `library` registered. */
export async function runWithOps(
  library: string,
  model: BuiltModel,
  feeds: Record<string, HostTensor>,
  config?: Record<string, string>,
): Promise<HostTensor> {
  return (await runAllWithOps(library, model, feeds, config)).y;
}

/**
 * Every output of `model` run through onnxruntime-node's JavaScript API (no custom ops); initializers
 * kept in external files (Params over a safetensors file) are read from the model's external folder.
 */
export async function runAllStock(model: BuiltModel, feeds: Record<string, HostTensor>) {
  const external = model.externalFolder
    ? { extra: { session: { model_external_initializers_file_folder_path: model.externalFolder } } }
    : {};
  const session = await ort.InferenceSession.create(model.bytes, {
    graphOptimizationLevel: 'all',
    ...external,
  } as ort.InferenceSession.SessionOptions);
  try {
    const tensors = Object.fromEntries(
      Object.entries(feeds).map(([k, f]) => [k, new ort.Tensor(f.type, f.data as Float32Array, f.dims)]),
    );
    return await session.run(tensors);
  } finally {
    await session.release();
  }
}

/** Output `y` of `model` run through onnxruntime-node's JavaScript API (no custom ops). */
export async function runStock(model: BuiltModel, feeds: Record<string, HostTensor>) {
  return (await runAllStock(model, feeds)).y;
}

/** Normal samples from a seed: the fixtures' generator (random.ts) through Box–Muller. */
export function normals(seed: number): (mean: number, sd: number) => number {
  const uniform = rng(seed);
  return (mean, sd) =>
    mean + sd * Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/**
 * A test file's CPU sessions with our op library, for ops that keep state across calls (delayed
 * scaling): the library built once, every session released after its test.
 */
export function cpuOpsSessions(): {
  library: () => string;
  session: (model: BuiltModel) => Promise<CapiSession>;
} {
  let library = '';
  const open: CapiSession[] = [];
  beforeAll(() => {
    library = buildCustomOpsLibrary('cpu');
  });
  afterEach(() => {
    for (const s of open.splice(0)) s.release();
  });
  return {
    library: () => library,
    session: async (model) => {
      const s = await CapiSession.create(model, { provider: 'cpu', customOpsLibraries: [library] });
      open.push(s);
      return s;
    },
  };
}
