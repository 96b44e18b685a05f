/**
 * A small ONNX graph builder. The only module that knows protobuf: model files (clip.ts, mmdit.ts …)
 * describe their math with `g.op(...)` and name weights by their checkpoint keys; this module turns
 * that into a ModelProto. Weights stay in their safetensors files: initializers point at them with
 * ONNX external data (location, offset, length), so multi-GB checkpoints are never copied.
 */
import { realpathSync } from 'node:fs';
import { dirname, relative, sep } from 'node:path';
import onnxProto, { type onnx } from 'onnx-proto';

// onnx-proto is CommonJS: its namespace arrives as the default export under ESM.
const { ModelProto, TensorProto, AttributeProto } = onnxProto.onnx;

export type DataType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'float8e4m3fn'
  | 'float8e5m2'
  | 'int64'
  | 'int32'
  | 'int8'
  | 'uint8'
  | 'bool';

/** TensorProto.DataType numbers (onnx.proto; FLOAT8 types are IR 9, newer than onnx-proto's enum). */
export const ONNX_DTYPE: Record<DataType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
  float8e4m3fn: 17,
  float8e5m2: 19,
};

/** IR version 10 (ONNX 1.16) and opset 21: float8 DequantizeLinear, ONNX Runtime 1.29 reads both. */
export const IR_VERSION = 10;
export const OPSET = 21;
export const MS_DOMAIN = 'com.microsoft';
/** Our own ops (native/: AdaLNModulate, JointConcat), run by the custom-op library the C-API path loads. */
export const ATELIER_DOMAIN = 'atelier';

/** The opset version imported for each non-ONNX domain a graph uses. */
const DOMAIN_VERSIONS: Readonly<Record<string, number>> = { [MS_DOMAIN]: 1, [ATELIER_DOMAIN]: 1 };

export type Dim = number | string;
export type AttrValue =
  | number
  | string
  | number[]
  | string[]
  | { float: number }
  | { floats: number[] }
  | onnx.ITensorProto;

/** A named tensor in the graph under construction. */
export class Value {
  constructor(readonly name: string) {}
}

export interface ExternalTensor {
  dtype: DataType;
  shape: number[];
  /** Path of the file holding the bytes. */
  file: string;
  offset: number;
  length: number;
}

/** A serialized model and the folder its external data paths are relative to. */
export interface BuiltModel {
  bytes: Uint8Array;
  /**
   * ONNX Runtime only reads external data inside one folder (symbolic links resolved), so the
   * locations are made relative to the deepest folder holding every weights file; the session
   * is told this folder (`session.model_external_initializers_file_folder_path`).
   */
  externalFolder?: string;
}

export class GraphBuilder {
  readonly #nodes: onnx.INodeProto[] = [];
  readonly #inputs: onnx.IValueInfoProto[] = [];
  readonly #outputs: onnx.IValueInfoProto[] = [];
  readonly #initializers: onnx.ITensorProto[] = [];
  readonly #names = new Set<string>();
  readonly #scopes: string[] = [];
  #counter = 0;
  readonly #domains = new Set<string>();

  constructor(readonly name: string) {}

  input(name: string, dtype: DataType, dims: Dim[]): Value {
    this.#claim(name);
    this.#inputs.push(valueInfo(name, dtype, dims));
    return new Value(name);
  }

  /** Marks `value` as a graph output named `name` (an Identity is inserted if the name differs). */
  output(value: Value, name: string, dtype: DataType, dims: Dim[]): void {
    let source = value;
    if (value.name !== name) {
      this.#claim(name);
      this.#nodes.push({ opType: 'Identity', input: [value.name], output: [name], name: `${name}/identity` });
      source = new Value(name);
    }
    this.#outputs.push(valueInfo(source.name, dtype, dims));
  }

  /** Runs `body` with node names prefixed by `scope/`, so profiles read like the model. */
  scope<T>(scope: string, body: () => T): T {
    this.#scopes.push(scope);
    try {
      return body();
    } finally {
      this.#scopes.pop();
    }
  }

  /** Adds one node with a single output. `undefined` inputs are ONNX's omitted optional inputs. */
  op(
    opType: string,
    inputs: (Value | undefined)[],
    attrs: Record<string, AttrValue> = {},
    domain = '',
  ): Value {
    return this.opMulti(opType, inputs, 1, attrs, domain)[0];
  }

  /**
   * A node of `outputCount` outputs; those whose index is in `omit` are left out (an empty name, as
   * ONNX writes an optional output nobody reads) and are not in the returned list.
   */
  opMulti(
    opType: string,
    inputs: (Value | undefined)[],
    outputCount: number,
    attrs: Record<string, AttrValue> = {},
    domain = '',
    omit: readonly number[] = [],
  ): Value[] {
    const base = `${this.#scopes.join('/')}${this.#scopes.length ? '/' : ''}${opType}_${this.#counter++}`;
    const all = Array.from({ length: outputCount }, (_, i) =>
      omit.includes(i) ? undefined : this.#fresh(outputCount === 1 ? base : `${base}:${i}`),
    );
    const outputs = all.filter((v): v is Value => v !== undefined);
    if (domain) {
      if (!Object.hasOwn(DOMAIN_VERSIONS, domain))
        throw new Error(`graph ${this.name}: no opset version known for domain ${domain}`);
      this.#domains.add(domain);
    }
    this.#nodes.push({
      opType,
      domain: domain || undefined,
      name: base,
      input: inputs.map((v) => v?.name ?? ''),
      output: all.map((v) => v?.name ?? ''),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  /** A small constant stored inside the model. */
  constant(name: string, dtype: DataType, dims: number[], data: ArrayBufferView): Value {
    const value = this.#fresh(name);
    this.#initializers.push({
      name: value.name,
      dataType: ONNX_DTYPE[dtype],
      dims,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return value;
  }

  /** An initializer whose bytes stay in another file (ONNX external data). */
  external(name: string, tensor: ExternalTensor): Value {
    this.#claim(name);
    this.#initializers.push({
      name,
      dataType: ONNX_DTYPE[tensor.dtype],
      dims: tensor.shape,
      dataLocation: TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: tensor.file },
        { key: 'offset', value: String(tensor.offset) },
        { key: 'length', value: String(tensor.length) },
      ],
    });
    return new Value(name);
  }

  hasName(name: string): boolean {
    return this.#names.has(name);
  }

  get nodeCount(): number {
    return this.#nodes.length;
  }

  build(): BuiltModel {
    const external = this.#initializers.filter((t) => t.externalData);
    const real = new Map<string, string>();
    for (const t of external) {
      const file = t.externalData![0].value!;
      if (!real.has(file)) real.set(file, realpathSync(file));
    }
    const externalFolder = real.size ? commonFolder([...real.values()]) : undefined;
    const saved = external.map((t) => t.externalData![0].value!);
    for (const t of external)
      t.externalData![0].value = relative(externalFolder!, real.get(t.externalData![0].value!)!);
    try {
      return { bytes: this.#encode(), externalFolder };
    } finally {
      external.forEach((t, i) => {
        t.externalData![0].value = saved[i];
      });
    }
  }

  #encode(): Uint8Array {
    const opsetImport: onnx.IOperatorSetIdProto[] = [{ domain: '', version: OPSET }];
    for (const [domain, version] of Object.entries(DOMAIN_VERSIONS))
      if (this.#domains.has(domain)) opsetImport.push({ domain, version });
    const model = ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'atelier',
      opsetImport,
      graph: {
        name: this.name,
        node: this.#nodes,
        input: this.#inputs,
        output: this.#outputs,
        initializer: this.#initializers,
      },
    });
    return ModelProto.encode(model).finish();
  }

  #claim(name: string): void {
    if (this.#names.has(name)) throw new Error(`graph ${this.name}: the name "${name}" is used twice`);
    this.#names.add(name);
  }

  #fresh(hint: string): Value {
    let name = hint;
    for (let i = 1; this.#names.has(name); i++) name = `${hint}_${i}`;
    this.#names.add(name);
    return new Value(name);
  }
}

function valueInfo(name: string, dtype: DataType, dims: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE[dtype],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttrValue): onnx.IAttributeProto {
  const T = AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value))
      throw new TypeError(`attribute ${name}: use { float: ${value} } for floats`);
    return { name, type: T.INT, i: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'number')) return { name, type: T.INTS, ints: value as number[] };
    return { name, type: T.STRINGS, strings: (value as string[]).map((s) => new TextEncoder().encode(s)) };
  }
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  if ('floats' in value) return { name, type: T.FLOATS, floats: value.floats };
  return { name, type: T.TENSOR, t: value };
}

function commonFolder(paths: string[]): string {
  let parts = dirname(paths[0]).split(sep);
  for (const p of paths.slice(1)) {
    const other = dirname(p).split(sep);
    let i = 0;
    while (i < parts.length && i < other.length && parts[i] === other[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join(sep) || sep;
}
