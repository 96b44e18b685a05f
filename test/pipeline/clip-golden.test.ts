/**
 * The CLIP-L and CLIP-G text encoder graphs against the reference's SDClipModel / SDXLClipG
 * (penultimate hidden state, pooled output; CLIP-G's projected), on every golden set that has
 * them. Configuration and tolerance from each set's manifest.json.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { buildClip, type ClipKind, clipConfig } from '../../src/pipeline/models/clip.js';
import { GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import type { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type GoldenComponent, goldenSets, relL2 } from '../golden/manifest.js';

interface ClipComponent extends GoldenComponent {
  config: {
    hidden_act: string;
    hidden_size: number;
    intermediate_size: number;
    num_attention_heads: number;
    num_hidden_layers: number;
  };
  weights: string;
  io: string;
  tolerance_rel_l2: number;
}

const opened: SafetensorsFile[] = [];
afterAll(() => {
  for (const f of opened) f.close();
});

const cases = goldenSets().flatMap((set) =>
  (['clip_l', 'clip_g'] as ClipKind[])
    .filter((kind) => set.has(kind))
    .map((kind) => ({ set, kind, setName: set.name })),
);

describe.each(cases)('$kind of the $setName golden set against the reference', ({ set, kind }) => {
  const c = set.component<ClipComponent>(kind);
  const weights = set.open(c.weights);
  const io = set.open(c.io);
  opened.push(weights, io);

  function build() {
    const g = new GraphBuilder(kind);
    const p = new Params(g, new FileWeightSource(weights), 'float32');
    // Heads are not in the weights: the manifest gives them, as the tiny model's metadata does.
    const cfg = clipConfig(p, kind, { heads: c.config.num_attention_heads });
    buildClip(new Net(g, p), cfg);
    return { cfg, model: g.build() };
  }

  it('derives layers, width and activation from the state dict', () => {
    const { cfg } = build();
    expect(cfg).toMatchObject({
      layers: c.config.num_hidden_layers,
      hidden: c.config.hidden_size,
      activation: c.config.hidden_act,
      projectPooled: kind === 'clip_g',
    });
  });

  it('reproduces the penultimate hidden state and the pooled output', async () => {
    const session = await openSession(kind, build().model, { provider: 'cpu' });
    try {
      const ids = io.readBytes('input_ids');
      const input = new BigInt64Array(ids.buffer, ids.byteOffset, ids.byteLength / 8);
      const out = await session.run({
        input_ids: new ort.Tensor('int64', input, io.get('input_ids').shape),
      });
      expect(out.hidden.dims).toEqual(io.get('hidden').shape);
      expect(relL2(out.hidden.data as Float32Array, io.readFloat32('hidden'))).toBeLessThanOrEqual(
        c.tolerance_rel_l2,
      );
      expect(relL2(out.pooled.data as Float32Array, io.readFloat32('pooled'))).toBeLessThanOrEqual(
        c.tolerance_rel_l2,
      );
    } finally {
      await session.release();
    }
  });
});
