/**
 * The MMDiT as the samplers' `DiffusionModel`: one ONNX Runtime call per network evaluation.
 * Classifier-free guidance and batching are sampling/cfg.ts's (the reference's CFGDenoiser).
 */
import type * as ort from 'onnxruntime-node';
import { floatTensor, toFloat32 } from '../onnx/tensors.js';
import type { DiffusionModel } from '../sampling/cfg.js';
import type { ComponentSession } from './component-session.js';

export function mmditModel(session: ComponentSession): DiffusionModel {
  // The conditioning arrays are the same objects at every step: convert them once.
  const tensors = new WeakMap<Float32Array, ort.Tensor>();
  const cached = (data: Float32Array, dims: readonly number[]) => {
    let t = tensors.get(data);
    if (!t) {
      t = floatTensor(data, dims);
      tensors.set(data, t);
    }
    return t;
  };
  return async (input) => {
    const out = await session.run({
      x: floatTensor(input.x, input.xDims),
      timestep: floatTensor(input.timestep, [input.timestep.length]),
      context: cached(input.context, input.contextDims),
      y: cached(input.y, input.yDims),
    });
    return toFloat32(out.model_output);
  };
}
