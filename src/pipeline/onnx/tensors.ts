/**
 * Moving data between JavaScript and ONNX Runtime. The pipeline keeps its state (latents,
 * embeddings) in float32 on the host, and every graph takes and gives float32 whatever it computes
 * in (float16 graphs cast on the device: see Net.floatInput).
 */
import * as ort from 'onnxruntime-node';
import { halfToFloat } from '../weights/dtypes.js';

export type ComputeType = 'float32' | 'float16';

/** A float32 graph input. */
export function floatTensor(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function int64Tensor(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(values, (v) => BigInt(v))), dims);
}

/** A float output as float32 values, whatever the graph computed in. */
export function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  if (tensor.type === 'float16') {
    const src = tensor.data as Uint16Array | Float32Array;
    // onnxruntime-common may hand out fp16 as raw bits (Uint16Array) or, with Float16Array, as numbers.
    if (src instanceof Float32Array) return src;
    const out = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]);
    return out;
  }
  throw new TypeError(`expected a float tensor, got ${tensor.type}`);
}
