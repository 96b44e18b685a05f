/**
 * The CUDA fp8 route can only run on a GPU; here we check the graph it builds: every fp8 linear
 * weight goes to MatMulBlockQuantizedFp8Weight as its one-byte initializer (never dequantized to
 * a full copy), with its per-tensor scale on every row.
 */
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { buildMmdit, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import { GraphBuilder, ONNX_DTYPE } from '../../src/pipeline/onnx/graph.js';
import { Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { type GoldenSet, goldenSets } from '../golden/manifest.js';

const { ModelProto } = onnxProto.onnx;

function build(set: GoldenSet, name: string, fp8Linear: 'dequantize' | 'block-fp8') {
  const c = set.component(name);
  const file = set.open(c.weights!);
  const g = new GraphBuilder(name);
  const p = new Params(
    g,
    new FileWeightSource(file, String(c.key_prefix ?? 'model.diffusion_model.')),
    'float16',
  );
  buildMmdit(new Net(g, p, { attention: 'mha', fp8Linear }), mmditConfig(p));
  return { model: ModelProto.decode(g.build().bytes), file };
}

const cases = goldenSets().flatMap((set) =>
  ['mmdit_large_fp8', 'mmdit_large_scaled_fp8']
    .filter((name) => set.has(name))
    .map((name) => ({ set, name, setName: set.name })),
);

describe.each(cases)('$name of the $setName golden set on the CUDA fp8 route', ({ set, name }) => {
  it('feeds every fp8 linear weight to MatMulBlockQuantizedFp8Weight, one byte per value', () => {
    const { model, file } = build(set, name, 'block-fp8');
    const nodes = model.graph!.node!;
    const fp8Nodes = nodes.filter((n) => n.opType === 'MatMulBlockQuantizedFp8Weight');
    const fp8Linear = file
      .names()
      .filter((k) => file.get(k).dtype === 'F8_E4M3' && file.get(k).shape.length === 2);
    expect(fp8Nodes).toHaveLength(fp8Linear.length);
    const initializers = new Map(model.graph!.initializer!.map((t) => [t.name, t]));
    for (const node of fp8Nodes) {
      const weight = initializers.get(node.input![1])!;
      expect(weight.dataType).toBe(ONNX_DTYPE.float8e4m3fn);
      const [n, k] = weight.dims!.map(Number);
      const blockSize = node.attribute!.find((a) => a.name === 'block_size')!;
      expect(Number(blockSize.i)).toBe(k);
      expect(initializers.get(node.input![2])!.dims!.map(Number)).toEqual([n, 1]);
    }
    // Only the conv kernel of the patch embedding is still dequantized (once, at load).
    expect(nodes.filter((n) => n.opType === 'DequantizeLinear')).toHaveLength(
      file.names().filter((k) => file.get(k).dtype === 'F8_E4M3' && file.get(k).shape.length > 2).length,
    );
    file.close();
  });
});
