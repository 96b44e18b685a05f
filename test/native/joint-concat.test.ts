/**
 * atelier:JointConcat's CPU kernel (native/, built here with g++) loaded through the C-API binding,
 * against the stock Concat (axis 1) that Net.concatTokens emits without custom ops, run by
 * onnxruntime-node: bit-for-bit equal, since both are copies. The inputs are random bits drawn
 * afresh each run (NaN payloads, infinities, subnormals and −0 included; the seed is in every
 * failure message). Then shape inference and the errors that name the inputs.
 */
import { randomInt } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BuiltModel, type Dim, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net } from '../../src/pipeline/onnx/nn.js';
import { Params, type WeightSource } from '../../src/pipeline/onnx/params.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import { words } from '../fixtures/random.js';
import { runStock, runWithOps } from './run-graphs.js';

type Dtype = 'float32' | 'float16' | 'int64';
type Shape = [batch: number, aTokens: number, bTokens: number, channels: number];

const NO_WEIGHTS: WeightSource = { description: 'no weights', resolve: () => undefined, keys: () => [] };
const BYTES: Record<Dtype, number> = { float32: 4, float16: 2, int64: 8 };

function net(g: GraphBuilder, customOps: boolean): Net {
  return new Net(g, new Params(g, NO_WEIGHTS, 'float32'), { ...DEFAULT_NET_OPTIONS, customOps });
}

/** y = concatTokens(a, b) as one graph; `customOps` picks atelier:JointConcat or the stock Concat. */
function concatGraph(dtype: Dtype, [b, ta, tb, c]: Shape, customOps: boolean): BuiltModel {
  const g = new GraphBuilder('concat_tokens');
  const a = g.input('a', dtype, [b, ta, c]);
  const x = g.input('b', dtype, [b, tb, c]);
  g.output(net(g, customOps).concatTokens(a, x), 'y', dtype, [b, ta + tb, c]);
  return g.build();
}

/** A tensor of random bits: every value its element type can hold is as likely. */
function randomTensor(dtype: Dtype, dims: number[], next: () => number): HostTensor {
  const count = dims.reduce((n, d) => n * d, 1);
  const bits = new Uint32Array(Math.ceil((count * BYTES[dtype]) / 4));
  for (let i = 0; i < bits.length; i++) bits[i] = next();
  const data =
    dtype === 'float32'
      ? new Float32Array(bits.buffer, 0, count)
      : dtype === 'float16'
        ? new Uint16Array(bits.buffer, 0, count)
        : new BigInt64Array(bits.buffer, 0, count);
  return { type: dtype, dims, data };
}

const bytesOf = (t: { data: unknown }): Uint8Array => {
  const view = t.data as ArrayBufferView;
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
};

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

// Ta ≠ Tb and Ta = Tb; widths that are no multiple of 8 (so the rows are no whole number of 16-byte
// vectors) or even odd; one batch entry and three; Ta = 1 (a single token). The last shape is over
// 1 MiB in every type, so the CPU kernel splits the copy over ONNX Runtime's threads, at byte
// offsets that fall inside rows.
const SHAPES: Shape[] = [
  [2, 5, 9, 64],
  [1, 154, 256, 24],
  [3, 4, 4, 7],
  [2, 1, 33, 13],
  [2, 77, 2048, 130],
];

describe.each<Dtype>(['float32', 'float16', 'int64'])('atelier:JointConcat, %s, CPU kernel', (dtype) => {
  it.each(SHAPES)('equals the stock Concat bit for bit for B %i, Ta %i, Tb %i, C %i', async (...shape) => {
    const seed = randomInt(2 ** 31);
    const next = words(seed);
    const [b, ta, tb, c] = shape;
    const feeds = { a: randomTensor(dtype, [b, ta, c], next), b: randomTensor(dtype, [b, tb, c], next) };
    const custom = await runWithOps(library, concatGraph(dtype, shape, true), feeds);
    const stock = await runStock(concatGraph(dtype, shape, false), feeds);
    expect(custom.type).toBe(dtype);
    expect(custom.dims).toEqual([b, ta + tb, c]);
    expect(bytesOf(stock).byteLength, `seed ${seed}`).toBe(b * (ta + tb) * c * BYTES[dtype]);
    expect(Buffer.compare(bytesOf(custom), bytesOf(stock)), `seed ${seed}`).toBe(0);
  });
});

describe('atelier:JointConcat shape inference', () => {
  // Strict inference turns a conflict between the inferred and the declared shape into an error.
  const STRICT = { 'session.strict_shape_type_inference': '1' };

  /** y = Relu(JointConcat(a, b)) with the given declared shapes. */
  const session = (aDims: Dim[], bDims: Dim[], yDims: Dim[]) => {
    const g = new GraphBuilder('shapes');
    const a = g.input('a', 'float32', aDims);
    const b = g.input('b', 'float32', bDims);
    g.output(g.op('Relu', [net(g, true).concatTokens(a, b)]), 'y', 'float32', yDims);
    return CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library], config: STRICT });
  };

  it('tells ONNX Runtime that y is [B, Ta + Tb, C] when every dimension is known', async () => {
    (await session([2, 3, 8], [2, 5, 8], [2, 8, 8])).release();
    await expect(session([2, 3, 8], [2, 5, 8], [2, 9, 8])).rejects.toThrow(/Inferred=8 Declared=9/);
    await expect(session([2, 3, 8], [2, 5, 8], [2, 8, 7])).rejects.toThrow(/Inferred=8 Declared=7/);
  });

  it('infers y when token counts are named (their sum named), B and C from either input', async () => {
    (await session(['batch', 'ctx', 8], ['batch', 'img', 8], ['batch', 'ctx+img', 8])).release();
    await expect(session(['batch', 'ctx', 8], ['batch', 'img', 8], ['batch', 'ctx+img', 9])).rejects.toThrow(
      /Inferred=8 Declared=9/,
    );
    // C known only from b, B only from a.
    await expect(session([2, 154, 'c'], ['batch', 'img', 16], [2, 't', 15])).rejects.toThrow(
      /Inferred=16 Declared=15/,
    );
    await expect(session([2, 154, 'c'], ['batch', 'img', 16], [3, 't', 16])).rejects.toThrow(
      /Inferred=2 Declared=3/,
    );
  });

  it('leaves y to run time when known B or C differ (the kernel then names both shapes)', async () => {
    // ONNX Runtime ignores an error from a custom op's shape inference, so the first run reports it.
    const mismatched = await session([2, 3, 8], [1, 4, 8], [2, 7, 8]);
    try {
      const feeds = {
        a: { type: 'float32', dims: [2, 3, 8], data: new Float32Array(48) },
        b: { type: 'float32', dims: [1, 4, 8], data: new Float32Array(32) },
      } satisfies Record<string, HostTensor>;
      await expect(mismatched.run(feeds)).rejects.toThrow(
        /JointConcat: a \[B, Ta, C\] and b \[B, Tb, C\] must agree in B and C, got a \[2, 3, 8\] and b \[1, 4, 8\]/,
      );
    } finally {
      mismatched.release();
    }
  });
});

describe('atelier:JointConcat errors', () => {
  /** A graph whose inputs' shapes are only named, so only the kernel can check them. */
  function unchecked(bRank: 2 | 3): BuiltModel {
    const g = new GraphBuilder('unchecked');
    const a = g.input('a', 'float32', ['ab', 'at', 'ac']);
    const b = g.input('b', 'float32', bRank === 3 ? ['bb', 'bt', 'bc'] : ['bt', 'bc']);
    g.output(net(g, true).concatTokens(a, b), 'y', 'float32', ['yb', 'yt', 'yc']);
    return g.build();
  }
  const zeros = (dims: number[]): HostTensor => ({
    type: 'float32',
    dims,
    data: new Float32Array(dims.reduce((n, d) => n * d, 1)),
  });

  it('is refused by ONNX Runtime when the library is not loaded', async () => {
    await expect(
      CapiSession.create(concatGraph('float32', [1, 2, 3, 8], true), { provider: 'cpu' }),
    ).rejects.toThrow(/atelier:JointConcat.*is not a registered function\/op/);
  });

  it('names both shapes when B or C differ at run time', async () => {
    await expect(
      runWithOps(library, unchecked(3), { a: zeros([1, 3, 8]), b: zeros([1, 4, 9]) }),
    ).rejects.toThrow(
      /JointConcat: a \[B, Ta, C\] and b \[B, Tb, C\] must agree in B and C, got a \[1, 3, 8\] and b \[1, 4, 9\]/,
    );
    await expect(
      runWithOps(library, unchecked(3), { a: zeros([2, 3, 8]), b: zeros([1, 3, 8]) }),
    ).rejects.toThrow(/got a \[2, 3, 8\] and b \[1, 3, 8\]/);
  });

  it('names the input whose rank is wrong', async () => {
    await expect(
      runWithOps(library, unchecked(2), { a: zeros([1, 3, 8]), b: zeros([4, 8]) }),
    ).rejects.toThrow(/JointConcat: input b must have rank 3, got rank 2/);
  });

  it('refuses a and b of different element types', async () => {
    const g = new GraphBuilder('mixed');
    const a = g.input('a', 'float32', [1, 2, 8]);
    const b = g.input('b', 'float16', [1, 2, 8]);
    g.output(net(g, true).concatTokens(a, b), 'y', 'float32', [1, 4, 8]);
    await expect(
      CapiSession.create(g.build(), { provider: 'cpu', customOpsLibraries: [library] }),
    ).rejects.toThrow(/JointConcat/);
  });
});
