/**
 * MMDiT / MMDiT-X against the official reference, on every golden set found (the project's own,
 * test/golden-data, and ../shared/golden or $ATELIER_GOLDEN_DIR when present). Everything — which
 * files, key prefixes, shapes, hyperparameters, tolerances — comes from each set's manifest.json.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelError, ValidationError } from '../../src/errors.js';
import {
  buildMmdit,
  checkLatentSize,
  type MmditConfig,
  mmditConfig,
} from '../../src/pipeline/models/mmdit.js';
import { GraphBuilder, ONNX_DTYPE } from '../../src/pipeline/onnx/graph.js';
import { Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';
import { type GoldenComponent, type GoldenSet, goldenSets, manifestPath, relL2 } from '../golden/manifest.js';

interface MmditComponent extends GoldenComponent {
  weights: string;
  io: string;
  tolerance_rel_l2: number;
  /** fp8 variants: "<io file> (x, timestep, context, y)", the model whose inputs they reuse. */
  inputs_from?: string;
  fp8_vs_fp32_rel_l2?: number;
  depth?: number;
  hidden_size?: number;
  num_heads?: number;
  patch_size?: number;
  pos_embed_max_size?: number;
  adm_in_channels?: number;
  context_dim?: number;
  qk_norm?: 'rms' | null;
  x_block_self_attn_layers?: number[];
}

const component = (set: GoldenSet, name: string) => set.component<MmditComponent>(name);

/** The fp8 variants take their inputs (and key names) from the model whose io file they name. */
function inputsOf(set: GoldenSet, name: string): { io: string; keyPrefix: string } {
  const c = component(set, name);
  if (!c.inputs_from) return { io: c.io, keyPrefix: c.key_prefix ?? '' };
  const source = set.componentWithIo(c.inputs_from);
  if (!source) throw new Error(`${name}: no component of the manifest has io ${manifestPath(c.inputs_from)}`);
  return { io: manifestPath(c.inputs_from), keyPrefix: source.key_prefix ?? '' };
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

function build(set: GoldenSet, name: string, options: { denoised?: boolean } = {}) {
  const weights = open(set, component(set, name).weights);
  const g = new GraphBuilder(name);
  const p = new Params(g, new FileWeightSource(weights, inputsOf(set, name).keyPrefix), 'float32');
  const cfg = mmditConfig(p);
  buildMmdit(new Net(g, p), cfg, options);
  return { cfg, model: g.build(), weights };
}

function tensor(io: SafetensorsFile, key: string, rows?: number): ort.Tensor {
  const { shape } = io.get(key);
  const data = io.readFloat32(key);
  if (rows === undefined) return new ort.Tensor('float32', data, shape);
  const per = data.length / shape[0];
  return new ort.Tensor('float32', data.slice(0, rows * per), [rows, ...shape.slice(1)]);
}

async function run(
  set: GoldenSet,
  name: string,
  inputs: Record<string, ort.Tensor>,
  options: { denoised?: boolean } = {},
): Promise<ort.InferenceSession.OnnxValueMapType> {
  const { model } = build(set, name, options);
  const session = await openSession(name, model, { provider: 'cpu' });
  try {
    return await session.run(inputs);
  } finally {
    await session.release();
  }
}

function modelInputs(io: SafetensorsFile, time: 'timestep' | 'sigma', rows?: number) {
  return {
    x: tensor(io, 'x', rows),
    [time]: tensor(io, time, rows),
    context: tensor(io, 'context', rows),
    y: tensor(io, 'y', rows),
  };
}

/** Each model of the list in each golden set that has it. */
const cases = (models: string[]) =>
  goldenSets().flatMap((set) =>
    models.filter((name) => set.has(name)).map((name) => ({ set, name, setName: set.name })),
  );

const floatModels = ['mmdit_large', 'mmdit_medium'];

describe.each(cases(floatModels))(
  '$name of the $setName golden set (float weights) against the reference',
  ({ set, name }) => {
    const c = component(set, name);

    it('derives every hyperparameter from the state dict as BaseModel does', () => {
      const { cfg } = build(set, name);
      expect(cfg).toMatchObject<Partial<MmditConfig>>({
        depth: c.depth,
        hidden: c.hidden_size,
        heads: c.num_heads,
        patchSize: c.patch_size,
        posEmbedMaxSize: c.pos_embed_max_size,
        admInChannels: c.adm_in_channels,
        contextDim: c.context_dim,
        qkNorm: c.qk_norm ?? undefined,
        xBlockSelfAttnLayers: c.x_block_self_attn_layers,
      });
    });

    it('predicts the velocity (model_output) from x, timestep, context and y', async () => {
      const io = open(set, c.io);
      const out = await run(set, name, modelInputs(io, 'timestep'));
      expect(out.model_output.dims).toEqual(io.get('model_output').shape);
      expect(
        relL2(out.model_output.data as Float32Array, io.readFloat32('model_output')),
      ).toBeLessThanOrEqual(c.tolerance_rel_l2);
    });

    it('with the denoised option, takes sigma and also outputs x − v·σ', async () => {
      const io = open(set, c.io);
      const out = await run(set, name, modelInputs(io, 'sigma'), { denoised: true });
      expect(relL2(out.denoised.data as Float32Array, io.readFloat32('denoised'))).toBeLessThanOrEqual(
        c.tolerance_rel_l2,
      );
      expect(
        relL2(out.model_output.data as Float32Array, io.readFloat32('model_output')),
      ).toBeLessThanOrEqual(c.tolerance_rel_l2);
    });

    it('gives an image the same velocity alone as inside a batch (dynamic batch)', async () => {
      const io = open(set, c.io);
      const out = await run(set, name, modelInputs(io, 'timestep', 1));
      const ref = io.readFloat32('model_output');
      const first = ref.slice(0, ref.length / io.get('model_output').shape[0]);
      expect(out.model_output.dims).toEqual([1, ...io.get('model_output').shape.slice(1)]);
      expect(relL2(out.model_output.data as Float32Array, first)).toBeLessThanOrEqual(c.tolerance_rel_l2);
    });
  },
);

const fp8Models = ['mmdit_large_fp8', 'mmdit_large_scaled_fp8'];

describe.each(cases(fp8Models))(
  '$name of the $setName golden set (fp8 weights) against the reference',
  ({ set, name }) => {
    const c = component(set, name);

    it('predicts the velocity with the weights dequantized inside the graph', async () => {
      const { io: inputsFile } = inputsOf(set, name);
      const out = await run(set, name, modelInputs(open(set, inputsFile), 'timestep'));
      const ref = open(set, c.io).readFloat32('model_output');
      expect(relL2(out.model_output.data as Float32Array, ref)).toBeLessThanOrEqual(c.tolerance_rel_l2);
      // fp8 storage moves the output away from the float model by the amount the reference measured,
      // which proves the fp8 bytes (with their scales) are what the graph computes with.
      const floatRef = open(set, inputsFile).readFloat32('model_output');
      expect(c.fp8_vs_fp32_rel_l2).toBeGreaterThan(0);
      expect(
        Math.abs(relL2(out.model_output.data as Float32Array, floatRef) - c.fp8_vs_fp32_rel_l2!),
      ).toBeLessThanOrEqual(2 * c.tolerance_rel_l2);
    });

    it('keeps every fp8 weight one byte: initializers point at the fp8 bytes in the file', () => {
      const { model, weights } = build(set, name);
      const graph = onnxProto.onnx.ModelProto.decode(model.bytes).graph!;
      const fp8InGraph = graph
        .initializer!.filter((t) => t.dataType === ONNX_DTYPE.float8e4m3fn)
        .map((t) => t.name)
        .sort();
      const fp8InFile = [...weights.tensors.values()]
        .filter((t) => t.dtype === 'F8_E4M3' && t.byteLength > 0)
        .map((t) => t.name)
        .sort();
      expect(fp8InFile.length).toBeGreaterThan(0);
      expect(fp8InGraph).toEqual(fp8InFile);
      // No fp8 weight is converted with a Cast (that would hold a full-precision copy in the model).
      const casts = graph.node!.filter((n) => n.opType === 'Cast' && fp8InGraph.includes(n.input![0]));
      expect(casts).toEqual([]);
    });
  },
);

describe('MMDiT shapes and errors', () => {
  const large = () => build(goldenSets('mmdit_large')[0], 'mmdit_large').cfg;

  it('accepts latents that fit the position-embedding grid and refuses others with the limit', () => {
    const cfg = large();
    const max = cfg.posEmbedMaxSize * cfg.patchSize;
    expect(() => checkLatentSize(cfg, max, max - cfg.patchSize)).not.toThrow();
    expect(() => checkLatentSize(cfg, max + cfg.patchSize, max)).toThrow(ValidationError);
    expect(() => checkLatentSize(cfg, max, cfg.patchSize + 1)).toThrow(/multiple of/);
  });

  it('names the file when a checkpoint is not an MMDiT', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atelier-mmdit-'));
    const path = join(dir, 'not-mmdit.safetensors');
    writeSafetensors(path, [
      {
        name: 'x_embedder.proj.weight',
        dtype: 'F32',
        shape: [96, 16, 2, 2],
        data: new Float32Array(96 * 64),
      },
      { name: 'pos_embed', dtype: 'F32', shape: [1, 4, 96], data: new Float32Array(4 * 96) },
    ]);
    const file = SafetensorsFile.open(path);
    opened.push(file);
    const p = new Params(new GraphBuilder('bad'), new FileWeightSource(file), 'float32');
    expect(() => mmditConfig(p)).toThrow(ModelError);
    expect(() => mmditConfig(p)).toThrow(/not-mmdit\.safetensors.*multiple of 64/);
  });

  it('names the missing tensor when a checkpoint lacks one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atelier-mmdit-'));
    const path = join(dir, 'partial.safetensors');
    writeSafetensors(path, [
      {
        name: 'x_embedder.proj.weight',
        dtype: 'F32',
        shape: [64, 16, 2, 2],
        data: new Float32Array(64 * 64),
      },
    ]);
    const file = SafetensorsFile.open(path);
    opened.push(file);
    const p = new Params(new GraphBuilder('bad'), new FileWeightSource(file), 'float32');
    expect(() => mmditConfig(p)).toThrow(/partial\.safetensors.*"pos_embed" is missing/);
  });
});
