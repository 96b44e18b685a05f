/**
 * Binds checkpoint tensors to graph initializers. Model files ask for weights by their checkpoint
 * key (relative to the component's prefix) and get a Value in the compute type; where the bytes
 * live (which file, which offset, concatenated or reshaped parts for diffusers folders) is the
 * WeightSource's business, and storage types (fp8, bf16, fp16) are handled here.
 */
import { ModelError } from '../../errors.js';
import { floatToHalf, type SafetensorsDType } from '../weights/dtypes.js';
import type { SafetensorsFile, TensorInfo } from '../weights/safetensors.js';
import { type DataType, type GraphBuilder, ONNX_DTYPE, type Value } from './graph.js';

/** Where one reference-named tensor comes from. */
export type ResolvedTensor =
  | { kind: 'tensor'; file: SafetensorsFile; info: TensorInfo }
  | { kind: 'concat'; axis: number; parts: ResolvedTensor[] }
  | { kind: 'reshape'; shape: number[]; of: ResolvedTensor };

export interface WeightSource {
  /** Human-readable origin for error messages (a file path or folder). */
  readonly description: string;
  /** Resolves a key relative to the component (e.g. `joint_blocks.0.x_block.attn.qkv.weight`). */
  resolve(key: string): ResolvedTensor | undefined;
  /** Keys starting with `prefix` (relative to the component), in reference naming. */
  keys(prefix?: string): string[];
}

/** A component stored in one safetensors file under a key prefix (single-file and ComfyUI layouts). */
export class FileWeightSource implements WeightSource {
  constructor(
    readonly file: SafetensorsFile,
    readonly prefix = '',
  ) {}

  get description(): string {
    return this.prefix ? `${this.file.path} (keys ${this.prefix}*)` : this.file.path;
  }

  resolve(key: string): ResolvedTensor | undefined {
    const info = this.file.tensors.get(this.prefix + key);
    return info ? { kind: 'tensor', file: this.file, info } : undefined;
  }

  keys(prefix = ''): string[] {
    return this.file.names(this.prefix + prefix).map((k) => k.slice(this.prefix.length));
  }
}

/** Tensors of `primary` (e.g. weights quantized at load) take the place of the same keys in `fallback`. */
export class OverlayWeightSource implements WeightSource {
  constructor(
    readonly primary: WeightSource,
    readonly fallback: WeightSource,
  ) {}

  get description(): string {
    return this.fallback.description;
  }

  resolve(key: string): ResolvedTensor | undefined {
    return this.primary.resolve(key) ?? this.fallback.resolve(key);
  }

  keys(prefix = ''): string[] {
    return [...new Set([...this.fallback.keys(prefix), ...this.primary.keys(prefix)])];
  }
}

export function resolvedShape(t: ResolvedTensor): number[] {
  switch (t.kind) {
    case 'tensor':
      return t.info.shape;
    case 'reshape':
      return t.shape;
    case 'concat': {
      const shape = [...resolvedShape(t.parts[0])];
      shape[t.axis] = t.parts.reduce((sum, p) => sum + resolvedShape(p)[t.axis], 0);
      return shape;
    }
  }
}

const STORAGE: Partial<Record<SafetensorsDType, DataType>> = {
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  F64: 'float64',
  F8_E4M3: 'float8e4m3fn',
  F8_E5M2: 'float8e5m2',
  I64: 'int64',
  I32: 'int32',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};

export class Params {
  readonly #cache = new Map<string, Value>();

  constructor(
    readonly g: GraphBuilder,
    readonly source: WeightSource,
    /** The type the graph computes in (float32 on the CPU, float16 on CUDA). */
    readonly compute: 'float32' | 'float16',
  ) {}

  has(key: string): boolean {
    return this.source.resolve(key) !== undefined;
  }

  shape(key: string): number[] {
    return resolvedShape(this.#resolve(key));
  }

  /** Storage dtype of a plain tensor (`F8_E4M3`, `F16` …). */
  storage(key: string): SafetensorsDType | undefined {
    const t = this.#resolve(key);
    return t.kind === 'tensor' ? t.info.dtype : undefined;
  }

  /** Reads a small tensor as float32 on the CPU (scales, tiny models in tests). */
  readFloat32(key: string): Float32Array {
    const t = this.#resolve(key);
    if (t.kind !== 'tensor')
      throw new ModelError(this.source.description, `${key}: cannot read a composed tensor on the CPU`);
    return t.file.readFloat32(t.info.name);
  }

  /** The tensor as stored (no cast): for fp8 weights that are dequantized by the caller. */
  raw(key: string): Value {
    const cacheKey = `raw:${key}`;
    let value = this.#cache.get(cacheKey);
    if (!value) {
      value = this.#emit(key, this.#resolve(key));
      this.#cache.set(cacheKey, value);
    }
    return value;
  }

  /** The tensor in the compute type (a Cast that ONNX Runtime folds at load when storage differs). */
  get(key: string): Value {
    let value = this.#cache.get(key);
    if (!value) {
      const t = this.#resolve(key);
      const stored = this.#storageType(key, t);
      value = this.raw(key);
      if (stored !== this.compute) {
        if (stored === 'float8e4m3fn' || stored === 'float8e5m2') {
          // An fp8 tensor outside a linear layer (e.g. a conv kernel): dequantized once at load.
          value = this.g.op('DequantizeLinear', [value, this.fp8Scale(key)]);
        } else {
          value = this.g.op('Cast', [value], { to: ONNX_DTYPE[this.compute] });
        }
      }
      this.#cache.set(key, value);
    }
    return value;
  }

  /**
   * The dequantization scale of an fp8 weight, as a scalar in the compute type: ComfyUI "scaled
   * fp8" stores `<layer>.scale_weight` (weight = w8 · scale); plain e4m3 checkpoints mean scale 1.
   */
  fp8Scale(weightKey: string): Value {
    const scaleKey = weightKey.replace(/\.weight$/, '.scale_weight');
    if (scaleKey === weightKey || !this.has(scaleKey)) return this.scalar(1);
    const scale = this.get(scaleKey);
    if (this.shape(scaleKey).length === 0) return scale;
    // A [1]-shaped scale (some writers store it so) becomes a scalar once per weight, shared by
    // every pass that reads it (the split-CFG step runs the MMDiT twice).
    const cacheKey = `fp8-scale:${scaleKey}`;
    let scalar = this.#cache.get(cacheKey);
    if (!scalar) {
      const empty = this.g.constant('shape', 'int64', [0], new BigInt64Array(0));
      scalar = this.g.op('Reshape', [scale, empty]);
      this.#cache.set(cacheKey, scalar);
    }
    return scalar;
  }

  /** A scalar constant in the compute type. */
  scalar(x: number): Value {
    const key = `scalar:${x}`;
    let value = this.#cache.get(key);
    if (!value) {
      value =
        this.compute === 'float32'
          ? this.g.constant('c', 'float32', [], new Float32Array([x]))
          : this.g.constant('c', 'float16', [], new Uint16Array([floatToHalf(x)]));
      this.#cache.set(key, value);
    }
    return value;
  }

  #resolve(key: string): ResolvedTensor {
    const t = this.source.resolve(key);
    if (!t) {
      throw new ModelError(
        this.source.description,
        `${this.source.description}: tensor "${key}" is missing — the file does not match the model it was loaded as`,
      );
    }
    return t;
  }

  #storageType(key: string, t: ResolvedTensor): DataType {
    if (t.kind === 'tensor') {
      const dtype = STORAGE[t.info.dtype];
      if (!dtype)
        throw new ModelError(
          t.file.path,
          `${t.file.path}: tensor "${t.info.name}" has unsupported dtype ${t.info.dtype}`,
        );
      return dtype;
    }
    return this.#storageType(key, t.kind === 'reshape' ? t.of : t.parts[0]);
  }

  #emit(key: string, t: ResolvedTensor): Value {
    switch (t.kind) {
      case 'tensor': {
        const name = this.g.hasName(t.info.name) ? `${t.info.name}#${key}` : t.info.name;
        return this.g.external(name, {
          dtype: this.#storageType(key, t),
          shape: t.info.shape,
          file: t.file.path,
          offset: t.info.offset,
          length: t.info.byteLength,
        });
      }
      case 'reshape': {
        const shape = this.g.constant(
          'shape',
          'int64',
          [t.shape.length],
          BigInt64Array.from(t.shape.map(BigInt)),
        );
        return this.g.op('Reshape', [this.#emit(key, t.of), shape]);
      }
      case 'concat':
        return this.g.op(
          'Concat',
          t.parts.map((p) => this.#emit(key, p)),
          { axis: t.axis },
        );
    }
  }
}
