/**
 * Tensors of the C-API path: ONNX Runtime values in memory ONNX Runtime allocated (host memory for
 * the CPU provider, GPU memory for CUDA), with copies in and out. A tensor's memory never moves, so
 * it can be bound once and replayed in a CUDA graph.
 */
import koffi from 'koffi';
import { cudaRuntime } from './cuda-runtime.js';
import type { Handle, OrtRuntime } from './runtime.js';

/** Element types by ONNX Runtime's ONNXTensorElementDataType number. */
const ELEMENT_TYPES = {
  float32: { code: 1, bytes: 4 },
  uint8: { code: 2, bytes: 1 },
  int8: { code: 3, bytes: 1 },
  int32: { code: 6, bytes: 4 },
  int64: { code: 7, bytes: 8 },
  bool: { code: 9, bytes: 1 },
  float16: { code: 10, bytes: 2 },
  float64: { code: 11, bytes: 8 },
} as const;

export type ElementType = keyof typeof ELEMENT_TYPES;

export type TensorData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Uint8Array
  | Int8Array
  | Int32Array
  | BigInt64Array;

/** A tensor in host memory: what `CapiSession.run` takes and gives (float16 as Uint16Array bits). */
export interface HostTensor {
  type: ElementType;
  dims: number[];
  data: TensorData;
}

export function elementType(type: ElementType): { code: number; bytes: number } {
  const known = ELEMENT_TYPES[type];
  if (!known) throw new TypeError(`Unsupported tensor element type ${type}`);
  return known;
}

export function elementTypeOf(code: number): ElementType {
  for (const [name, t] of Object.entries(ELEMENT_TYPES)) if (t.code === code) return name as ElementType;
  throw new TypeError(`ONNX Runtime returned a tensor of element type ${code}, which Atelier does not read`);
}

/**
 * A typed array of element type `type` over `bytes`, which the caller owns (a fresh copy): no second
 * copy unless `bytes` is a view that does not start its own buffer.
 */
export function typedArray(type: ElementType, bytes: Uint8Array): TensorData {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  const b = whole ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (type) {
    case 'float32':
      return new Float32Array(b);
    case 'float64':
      return new Float64Array(b);
    case 'float16':
      return new Uint16Array(b);
    case 'int32':
      return new Int32Array(b);
    case 'int64':
      return new BigInt64Array(b);
    case 'int8':
      return new Int8Array(b);
    default:
      return new Uint8Array(b);
  }
}

export type Location = 'cpu' | 'cuda';

/** A tensor whose memory ONNX Runtime allocated: bind it, write it, read it, release it. */
export class DeviceTensor {
  readonly value: Handle;
  readonly byteLength: number;
  readonly #data: Handle;
  #released = false;

  constructor(
    private readonly rt: OrtRuntime,
    allocator: Handle,
    readonly type: ElementType,
    readonly dims: readonly number[],
    readonly location: Location,
    private readonly onRelease?: () => void,
  ) {
    const { code, bytes } = elementType(type);
    this.byteLength = dims.reduce((n, d) => n * d, 1) * bytes;
    this.value = rt.out(
      'CreateTensorAsOrtValue',
      allocator,
      BigInt64Array.from(dims, BigInt),
      dims.length,
      code,
    );
    this.#data = rt.out('GetTensorMutableData', this.value);
  }

  /** Copies `data` (exactly this tensor's size) into the tensor. */
  write(data: ArrayBufferView): void {
    this.#live();
    if (data.byteLength !== this.byteLength) {
      throw new RangeError(
        `Writing ${data.byteLength} bytes into a tensor of ${this.byteLength} (${this.type} [${this.dims}])`,
      );
    }
    const source = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (this.location === 'cuda') cudaRuntime().copyToDevice(this.#data, source);
    else this.#hostView().set(source);
  }

  /** A copy of the tensor's contents on the host; `bytes` limits it to a prefix (a preview). */
  read(bytes = this.byteLength): TensorData {
    this.#live();
    if (bytes > this.byteLength)
      throw new RangeError(`Reading ${bytes} bytes of a tensor of ${this.byteLength}`);
    const target = new Uint8Array(bytes);
    if (this.location === 'cuda') cudaRuntime().copyToHost(target, this.#data);
    else target.set(this.#hostView().subarray(0, bytes));
    return typedArray(this.type, target);
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.rt.api.ReleaseValue(this.value);
    this.onRelease?.();
  }

  #hostView(): Uint8Array {
    return new Uint8Array(koffi.view(this.#data, this.byteLength));
  }

  #live(): void {
    if (this.#released) throw new Error('This tensor was released');
  }
}

/** Reads an output value ONNX Runtime allocated in host memory into a HostTensor (a copy). */
export function readHostValue(rt: OrtRuntime, value: Handle): HostTensor {
  const info = rt.out('GetTensorTypeAndShape', value);
  try {
    const type = elementTypeOf(rt.out<number>('GetTensorElementType', info));
    const rank = rt.out<number>('GetDimensionsCount', info);
    const dims64 = new BigInt64Array(rank);
    rt.call('GetDimensions', info, dims64, rank);
    const dims = Array.from(dims64, Number);
    const bytes = dims.reduce((n, d) => n * d, 1) * elementType(type).bytes;
    const pointer = rt.out('GetTensorMutableData', value);
    const copy = bytes === 0 ? new Uint8Array(0) : new Uint8Array(koffi.view(pointer, bytes)).slice();
    return { type, dims, data: typedArray(type, copy) };
  } finally {
    rt.api.ReleaseTensorTypeAndShapeInfo(info);
  }
}
