/**
 * The MMDiT built with custom ops (NetOptions.customOps: every modulate(norm(x)) one
 * atelier:AdaLNModulate node, every joint-attention token concatenation one atelier:JointConcat)
 * on the golden tiny models, run through the C-API binding with our CPU library, against the same
 * model built with stock ops and run by onnxruntime-node, and against the official reference
 * within the manifest's tolerance.
 */
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMmdit, type MmditConfig, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import { ATELIER_DOMAIN, type BuiltModel, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import type { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type GoldenComponent, type GoldenSet, goldenSets, relL2 } from '../golden/manifest.js';

interface MmditComponent extends GoldenComponent {
  weights: string;
  io: string;
  tolerance_rel_l2: number;
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

function build(set: GoldenSet, name: string, customOps: boolean): BuiltModel & { cfg: MmditConfig } {
  const c = set.component<MmditComponent>(name);
  const g = new GraphBuilder(name);
  const p = new Params(g, new FileWeightSource(open(set, c.weights), c.key_prefix ?? ''), 'float32');
  const cfg = mmditConfig(p);
  buildMmdit(new Net(g, p, { ...DEFAULT_NET_OPTIONS, customOps }), cfg);
  return { ...g.build(), cfg };
}

function decode(model: BuiltModel) {
  return onnxProto.onnx.ModelProto.decode(model.bytes);
}

const nodes = (model: BuiltModel, opType: string) =>
  decode(model).graph!.node!.filter((n) => n.opType === opType);
const count = (model: BuiltModel, opType: string) => nodes(model, opType).length;

const cases = goldenSets().flatMap((set) =>
  ['mmdit_large', 'mmdit_medium']
    .filter((name) => set.has(name))
    .map((name) => ({ set, name, setName: set.name })),
);

describe.each(cases)('$name of the $setName golden set with custom ops', ({ set, name }) => {
  const c = set.component<MmditComponent>(name);

  it('has one AdaLNModulate node per modulated norm and imports the atelier domain only then', () => {
    const fused = build(set, name, true);
    const stock = build(set, name, false);
    // Per block: context norm1 and norm2 (norm1 only in the last, pre_only, block), x norm1 and
    // norm2, plus norm1 again for attn2 in dual-attention blocks; then norm_final. Stock ops share
    // the dual blocks' norm1 between its two modulations.
    const { depth, xBlockSelfAttnLayers } = fused.cfg;
    expect(count(fused, 'AdaLNModulate')).toBe(4 * depth + xBlockSelfAttnLayers.length);
    expect(count(stock, 'LayerNormalization')).toBe(4 * depth);
    expect(count(fused, 'LayerNormalization')).toBe(0);
    expect(count(stock, 'AdaLNModulate')).toBe(0);
    const imports = (model: BuiltModel) => decode(model).opsetImport!.map((o) => `${o.domain}:${o.version}`);
    expect(imports(fused)).toContain(`${ATELIER_DOMAIN}:1`);
    expect(imports(stock).some((i) => i.startsWith(`${ATELIER_DOMAIN}:`))).toBe(false);
  });

  it('concatenates the joint q, k and v with JointConcat, leaving no Concat in the blocks', () => {
    const fused = build(set, name, true);
    const stock = build(set, name, false);
    // q, k and v of every block (the dual-attention blocks' second attention is the image's own:
    // no concatenation). ONNX Runtime's CUDA Concat of the unequal context and image lengths is
    // what broke CUDA-graph capture.
    const { depth } = fused.cfg;
    expect(count(fused, 'JointConcat')).toBe(3 * depth);
    expect(count(stock, 'JointConcat')).toBe(0);
    expect(count(stock, 'Concat') - count(fused, 'Concat')).toBe(3 * depth);
    // What remains: the positional-embedding crop and unpatchify's int64 shape arithmetic, and the
    // timestep embedding's cos and sin halves (of equal size, which ONNX Runtime concatenates
    // without host-side metadata).
    const left = nodes(fused, 'Concat').map((n) => n.name!.replace(/_\d+$/, ''));
    expect(left.sort()).toEqual([
      'diffusion_model/pos_embed/Concat',
      'diffusion_model/pos_embed/Concat',
      'diffusion_model/t_embedder/Concat',
      'diffusion_model/unpatchify/Concat',
      'diffusion_model/unpatchify/Concat',
    ]);
  });

  it('predicts the same velocity as the stock graph, through the C API with our CPU library', async () => {
    const io = open(set, c.io);
    const feeds: Record<string, HostTensor> = Object.fromEntries(
      ['x', 'timestep', 'context', 'y'].map((k) => [
        k,
        { type: 'float32', dims: io.get(k).shape, data: io.readFloat32(k) } satisfies HostTensor,
      ]),
    );

    const session = await CapiSession.create(build(set, name, true), {
      provider: 'cpu',
      customOpsLibraries: [library],
    });
    let fused: Float32Array;
    try {
      fused = (await session.run(feeds)).model_output.data as Float32Array;
    } finally {
      session.release();
    }

    const stockSession = await openSession(name, build(set, name, false), { provider: 'cpu' });
    let stock: Float32Array;
    try {
      const tensors = Object.fromEntries(
        Object.entries(feeds).map(([k, f]) => [k, new ort.Tensor('float32', f.data as Float32Array, f.dims)]),
      );
      stock = (await stockSession.run(tensors)).model_output.data as Float32Array;
    } finally {
      await stockSession.release();
    }

    expect(relL2(fused, stock)).toBeLessThanOrEqual(1e-5);
    expect(relL2(fused, io.readFloat32('model_output'))).toBeLessThanOrEqual(c.tolerance_rel_l2);
  });
});
