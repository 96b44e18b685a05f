/**
 * Moving data between JavaScript and ONNX Runtime. The pipeline keeps its state (latents,
 * embeddings) in float32 on the host, and every graph takes and gives float32 whatever it computes
 * in (float16 graphs cast on the device: see Net.floatInput).
 */
import * as ort from 'onnxruntime-node';

export type ComputeType = 'float32' | 'float16';

/** A float32 graph input. */
export function floatTensor(data: Float32Array, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}

export function int64Tensor(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(values, (v) => BigInt(v))), dims);
}

/** A float32 graph output's values. */
export function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type !== 'float32') throw new TypeError(`expected a float32 output, got ${tensor.type}`);
  return tensor.data as Float32Array;
}
