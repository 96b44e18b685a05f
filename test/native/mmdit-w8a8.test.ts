/**
 * The MMDiT with W8A8 linear layers (NetOptions.fp8Linear 'w8a8': every fp8 linear layer one
 * atelier:Fp8Linear node, activations quantized to e4m3 per token at run time) on the golden fp8
 * models, run on the CPU through the C-API binding with our CPU library. What FP8 activations cost
 * is judged against the reference's output for the same fp8 weights (weight-only, exact): it may
 * move the output no more than fp8 storage of the weights moved it from the float model
 * (`fp8_vs_fp32_rel_l2` in the manifest): activations get the same e4m3 grid, per token.
 */
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMmdit, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import { GraphBuilder, ONNX_DTYPE } from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import type { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type GoldenComponent, type GoldenSet, goldenSets, manifestPath, relL2 } from '../golden/manifest.js';

interface Fp8Component extends GoldenComponent {
  weights: string;
  io: string;
  inputs_from: string;
  fp8_vs_fp32_rel_l2: number;
}

const opened: SafetensorsFile[] = [];
afterAll(() => {
  for (const f of opened) f.close();
});
function open(set: GoldenSet, file: string): SafetensorsFile {
  const f = set.open(file);
  opened.push(f);
  return f;
}

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

const cases = goldenSets().flatMap((set) =>
  ['mmdit_large_fp8', 'mmdit_large_scaled_fp8']
    .filter((name) => set.has(name))
    .map((name) => ({ set, name, setName: set.name })),
);

describe.each(cases)('$name of the $setName golden set with W8A8 linear layers', ({ set, name }) => {
  const c = set.component<Fp8Component>(name);
  const weights = () => open(set, c.weights);
  const build = (file: SafetensorsFile, customOps: boolean) => {
    const g = new GraphBuilder(name);
    const p = new Params(g, new FileWeightSource(file, c.key_prefix ?? 'model.diffusion_model.'), 'float32');
    buildMmdit(new Net(g, p, { ...DEFAULT_NET_OPTIONS, fp8Linear: 'w8a8', customOps }), mmditConfig(p));
    return g.build();
  };

  it('runs every fp8 linear layer as one Fp8Linear node on its one-byte weight, and only with our library', () => {
    const file = weights();
    const graph = onnxProto.onnx.ModelProto.decode(build(file, true).bytes).graph!;
    const linear = file
      .names()
      .filter((k) => file.get(k).dtype === 'F8_E4M3' && file.get(k).shape.length === 2);
    const fp8 = graph.node!.filter((n) => n.opType === 'Fp8Linear');
    expect(fp8).toHaveLength(linear.length);
    const initializers = new Map(graph.initializer!.map((t) => [t.name, t]));
    for (const node of fp8) expect(initializers.get(node.input![1])!.dataType).toBe(ONNX_DTYPE.float8e4m3fn);
    // Without our library the same options fall back to dequantized weights.
    const stock = onnxProto.onnx.ModelProto.decode(build(file, false).bytes).graph!;
    expect(stock.node!.filter((n) => n.opType === 'Fp8Linear')).toHaveLength(0);
  });

  it('moves the velocity no more than fp8 weights moved it from the float model', async () => {
    const inputs = open(set, manifestPath(c.inputs_from));
    const reference = open(set, c.io).readFloat32('model_output');
    const feeds: Record<string, HostTensor> = Object.fromEntries(
      ['x', 'timestep', 'context', 'y'].map((k) => [
        k,
        { type: 'float32', dims: inputs.get(k).shape, data: inputs.readFloat32(k) } satisfies HostTensor,
      ]),
    );
    const session = await CapiSession.create(build(weights(), true), {
      provider: 'cpu',
      customOpsLibraries: [library],
    });
    try {
      const out = (await session.run(feeds)).model_output.data as Float32Array;
      const error = relL2(out, reference);
      console.log(
        `${set.name} ${name}: W8A8 vs weight-only fp8 rel L2 ${error.toExponential(2)} (fp8 vs fp32: ${c.fp8_vs_fp32_rel_l2.toExponential(2)})`,
      );
      expect(error).toBeGreaterThan(0);
      expect(error).toBeLessThanOrEqual(c.fp8_vs_fp32_rel_l2);
    } finally {
      session.release();
    }
  });
});
