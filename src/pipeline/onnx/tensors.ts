/**
 * Moving data between JavaScript and ONNX Runtime. The pipeline keeps its state (latents,
 * embeddings) in float32 on the host; graphs that compute in float16 (CUDA) get and give fp16.
 */
import * as ort from 'onnxruntime-node';
import { floatToHalf, halfToFloat } from '../weights/dtypes.js';

export type ComputeType = 'float32' | 'float16';

/** A float tensor in the graph's compute type. */
export function floatTensor(data: Float32Array, dims: readonly number[], type: ComputeType): ort.Tensor {
  if (type === 'float32') return new ort.Tensor('float32', data, dims);
  const half = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) half[i] = floatToHalf(data[i]);
  return new ort.Tensor('float16', half, dims);
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
