/**
 * LoRAs on the bundled tiny model: files made here (random low-rank updates, fixtures/loras.ts) in
 * every key format merge into exactly the weights the reference merge computed here says — float16
 * checkpoints bit for bit, fp8 ones requantized per row — and through the engine a LoRA changes the
 * image into exactly the image of a checkpoint the test merged itself. Files Atelier cannot apply
 * are refused with a message naming the file and what is supported.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LoraError,
  type LoraFile,
  loraModules,
  mergeLoras,
  readLoraFile,
  readWeight,
} from '../../src/pipeline/lora/index.js';
import { FileWeightSource, OverlayWeightSource, type WeightSource } from '../../src/pipeline/onnx/params.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { loraCombinationKey } from '../../src/pipeline/residency.js';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { EngineOptions } from '../../src/pipeline/sd35/options.js';
import { ensureTinyModel, TINY_CHECKPOINT } from '../../src/pipeline/tiny/index.js';
import type { GenerationRequest } from '../../src/pipeline/types.js';
import { e4m3ToFloat, floatToE4M3, floatToHalf } from '../../src/pipeline/weights/dtypes.js';
import { quantizeToScaledFp8 } from '../../src/pipeline/weights/quantize.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { type TensorToWrite, writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';
import {
  bf16Exact,
  type LoraFormat,
  MMDIT_PREFIX,
  mmditShapes,
  randomLora,
  referenceMerge,
  type TruthPair,
  writeLora,
} from '../fixtures/loras.js';

let dir: string;
let modelsDir: string;
let checkpoint: string;
let shapes: Map<string, number[]>;
const DEPTH = 2; // the tiny model's joint blocks
const opened: { close(): void }[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'atelier-lora-'));
  const tiny = await ensureTinyModel(dir);
  modelsDir = tiny.modelsDir;
  checkpoint = join(modelsDir, 'checkpoints', TINY_CHECKPOINT);
  shapes = mmditShapes(checkpoint);
});
afterAll(() => {
  for (const f of opened) f.close();
  rmSync(dir, { recursive: true, force: true });
});

function baseSource(): WeightSource {
  const file = SafetensorsFile.open(checkpoint);
  opened.push(file);
  return new FileWeightSource(file, MMDIT_PREFIX);
}

const model = () => ({ name: 'atelier-tiny-sd35', shapes });

function read(name: string, path: string): LoraFile {
  const lora = readLoraFile(name, path, model(), loraModules(shapes));
  opened.push(lora.file);
  return lora;
}

/** The tiny checkpoint's float16 values of a weight, as float32. */
function baseValues(key: string): Float32Array {
  const file = SafetensorsFile.open(checkpoint);
  try {
    return file.readFloat32(MMDIT_PREFIX + key);
  } finally {
    file.close();
  }
}

/** Byte-for-byte equality of two images or tensors (vitest's deep equality is slow on large arrays). */
function same(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/** Per row: scale = amax / 448, codes = e4m3(value / scale) — the requantization the merge must do. */
function requantizePerRow(values: Float32Array, rows: number): { codes: Uint8Array; scales: Float32Array } {
  const cols = values.length / rows;
  const scales = new Float32Array(rows);
  const codes = new Uint8Array(values.length);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let i = 0; i < cols; i++) amax = Math.max(amax, Math.abs(values[r * cols + i]!));
    scales[r] = Math.fround(amax / 448);
    for (let i = 0; i < cols; i++) codes[r * cols + i] = floatToE4M3(values[r * cols + i]! / scales[r]!);
  }
  return { codes, scales };
}

/** Every layer kind a LoRA may touch, in both streams, the last block's pre-only context and the embedders. */
const LAYERS = [
  'joint_blocks.0.x_block.attn.qkv.weight',
  'joint_blocks.0.context_block.attn.qkv.weight',
  'joint_blocks.0.x_block.attn.proj.weight',
  'joint_blocks.0.context_block.attn.proj.weight',
  'joint_blocks.0.x_block.mlp.fc1.weight',
  'joint_blocks.0.context_block.mlp.fc2.weight',
  'joint_blocks.1.x_block.adaLN_modulation.1.weight',
  'joint_blocks.1.context_block.adaLN_modulation.1.weight',
  'joint_blocks.1.context_block.attn.qkv.weight',
  'final_layer.adaLN_modulation.1.weight',
  'final_layer.linear.weight',
  'context_embedder.weight',
  't_embedder.mlp.0.weight',
];

/** The merged float16 bits of each key from the file `mergeLoras` wrote. */
function mergedBits(path: string, key: string): Uint16Array {
  const file = SafetensorsFile.open(path);
  try {
    expect(file.get(key).dtype).toBe('F16');
    const bytes = file.readBytes(key);
    return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  } finally {
    file.close();
  }
}

const halfBits = (values: Float32Array) => Uint16Array.from(values, floatToHalf);

describe('LoRA key formats merge exactly as the reference says', () => {
  const cases: [LoraFormat, 'F32' | 'F16' | 'BF16', number | false][] = [
    ['kohya', 'F16', 2],
    ['diffusers', 'F32', 3],
    ['peft', 'F16', false],
    ['comfyui', 'BF16', 1],
  ];
  for (const [format, dtype, alpha] of cases) {
    it(`${format} (${dtype} matrices, ${alpha === false ? 'no alpha' : `alpha ${alpha}`}), every layer kind`, async () => {
      let pairs = randomLora(shapes, LAYERS, 7, { rank: 4, alpha });
      if (dtype === 'BF16')
        pairs = pairs.map((p) => ({ ...p, up: bf16Exact(p.up), down: bf16Exact(p.down) }));
      const path = join(dir, `${format}.safetensors`);
      writeLora(path, pairs, format, DEPTH, dtype);
      const lora = read(format, path);
      expect(lora.pairs.length).toBeGreaterThanOrEqual(LAYERS.length);
      const out = join(dir, `${format}-merged.safetensors`);
      const merged = await mergeLoras(baseSource(), shapes, [{ lora, weight: 0.8 }], out);
      expect(merged.keys.sort()).toEqual([...LAYERS].sort());
      for (const pair of pairs) {
        const reference = referenceMerge(baseValues(pair.key), [{ pair, weight: 0.8 }]);
        expect(same(mergedBits(out, pair.key), halfBits(reference)), pair.key).toBe(true);
        // The update is real: the merged weight differs from the checkpoint's.
        expect(same(mergedBits(out, pair.key), halfBits(baseValues(pair.key)))).toBe(false);
      }
    });
  }

  it('the same update in every format merges to the same bits; two LoRAs on one weight add up', async () => {
    const pairs = randomLora(shapes, LAYERS, 11, { rank: 2, alpha: 2 });
    const results: Uint16Array[][] = [];
    for (const format of ['kohya', 'diffusers', 'comfyui'] as const) {
      const path = join(dir, `same-${format}.safetensors`);
      writeLora(path, pairs, format, DEPTH, 'F32');
      const out = join(dir, `same-${format}-merged.safetensors`);
      // The diffusers file merges on two worker threads, the others inline: the same bits.
      const threads = format === 'diffusers' ? { threads: 2, inlineBelow: 0 } : { threads: 0 };
      await mergeLoras(baseSource(), shapes, [{ lora: read(format, path), weight: 1 }], out, threads);
      results.push(LAYERS.map((key) => mergedBits(out, key)));
    }
    expect(results[1]!.every((bits, i) => same(bits, results[0]![i]!))).toBe(true);
    expect(results[2]!.every((bits, i) => same(bits, results[0]![i]!))).toBe(true);

    const other = randomLora(shapes, [LAYERS[0]!, LAYERS[4]!], 12, { rank: 3, alpha: 1.5 });
    const a = join(dir, 'a.safetensors');
    const b = join(dir, 'b.safetensors');
    writeLora(a, pairs, 'kohya', DEPTH);
    writeLora(b, other, 'diffusers', DEPTH, 'F32');
    const out = join(dir, 'ab-merged.safetensors');
    await mergeLoras(
      baseSource(),
      shapes,
      [
        { lora: read('a', a), weight: 0.5 },
        { lora: read('b', b), weight: -1.25 },
      ],
      out,
    );
    for (const [i, key] of [LAYERS[0]!, LAYERS[4]!].entries()) {
      const reference = referenceMerge(baseValues(key), [
        { pair: pairs.find((p) => p.key === key)!, weight: 0.5 },
        { pair: other[i]!, weight: -1.25 },
      ]);
      expect(same(mergedBits(out, key), halfBits(reference))).toBe(true);
    }
  });

  it('fp8 weights: dequantized with their scale, merged, requantized to e4m3 with a fresh scale per row', async () => {
    const source = SafetensorsFile.open(checkpoint);
    opened.push(source);
    const quantized = quantizeToScaledFp8(source, MMDIT_PREFIX, join(dir, 'quantized'));
    const qfile = SafetensorsFile.open(quantized.path);
    opened.push(qfile);
    const base = new OverlayWeightSource(
      new FileWeightSource(qfile, MMDIT_PREFIX),
      new FileWeightSource(source, MMDIT_PREFIX),
    );
    const key = 'joint_blocks.0.x_block.attn.qkv.weight';
    const pairs = randomLora(shapes, [key], 5, { rank: 4, alpha: 4 });
    const path = join(dir, 'fp8-lora.safetensors');
    writeLora(path, pairs, 'diffusers', DEPTH, 'F32');
    const out = join(dir, 'fp8-merged.safetensors');
    // On two worker threads: each writes its rows' codes and scales.
    const merged = await mergeLoras(base, shapes, [{ lora: read('fp8', path), weight: 1 }], out, {
      threads: 2,
      inlineBelow: 0,
    });
    const scaleKey = 'joint_blocks.0.x_block.attn.qkv.scale_weight';
    expect(merged.keys.sort()).toEqual([scaleKey, key]);

    // The reference: W = code · tensor scale (float32), merged, then per row amax/448 and e4m3 codes.
    const codes = qfile.readBytes(MMDIT_PREFIX + key);
    const scale = qfile.readFloat32(MMDIT_PREFIX + scaleKey)[0]!;
    const dequantized = Float32Array.from(codes, (c) => Math.fround(e4m3ToFloat(c) * scale));
    expect(same(readWeight(base, key, pairs[0]!.rows), dequantized)).toBe(true);
    const reference = referenceMerge(dequantized, [{ pair: pairs[0]!, weight: 1 }]);
    const { rows, cols } = pairs[0]!;
    const { codes: expectedCodes, scales: expectedScales } = requantizePerRow(reference, rows);
    const file = SafetensorsFile.open(out);
    try {
      expect(file.get(key)).toMatchObject({ dtype: 'F8_E4M3', shape: [rows, cols] });
      expect(file.get(scaleKey)).toMatchObject({ dtype: 'F32', shape: [rows] });
      expect(same(file.readFloat32(scaleKey), expectedScales)).toBe(true);
      expect(same(file.readBytes(key), expectedCodes)).toBe(true);
    } finally {
      file.close();
    }
  });
});

describe('a merge that fails leaves nothing behind', () => {
  it('a weight that cannot be read mid-merge: the merge fails and no .partial file stays on disk', async () => {
    const pairs = randomLora(shapes, LAYERS, 5, { rank: 2, alpha: 2 });
    const path = join(dir, 'fails-midway.safetensors');
    writeLora(path, pairs, 'kohya', DEPTH, 'F16');
    const lora = read('fails-midway', path);
    const base = baseSource();
    // The plan reads every weight once; the second weight written reads it again and fails.
    const seen = new Set<string>();
    let written = 0;
    const failing: WeightSource = {
      description: base.description,
      keys: (prefix) => base.keys(prefix),
      resolve(key) {
        if (seen.has(key) && ++written === 2) throw new Error(`disk error reading ${key}`);
        seen.add(key);
        return base.resolve(key);
      },
    };
    const outDir = join(dir, 'failed-merge');
    mkdirSync(outDir, { recursive: true });
    const out = join(outDir, 'merged.safetensors');
    await expect(mergeLoras(failing, shapes, [{ lora, weight: 1 }], out)).rejects.toThrow(/disk error/);
    expect(written).toBe(2);
    expect(readdirSync(outDir)).toEqual([]);
  });
});

describe('LoRA files Atelier cannot apply are refused, naming the file and what is supported', () => {
  const refusal = (name: string, tensors: TensorToWrite[] | Buffer) => {
    const path = join(dir, `${name}.safetensors`);
    if (Buffer.isBuffer(tensors)) writeFileSync(path, tensors);
    else writeSafetensors(path, tensors);
    try {
      read(name, path);
    } catch (error) {
      expect(error).toBeInstanceOf(LoraError);
      expect((error as LoraError).userMessage).toBe(
        `The LoRA “${name}” can't be used: its file is not one Atelier can apply to this model. An admin can see why in the log.`,
      );
      return (error as Error).message;
    }
    throw new Error(`${name} was not refused`);
  };
  const f16 = (name: string, shape: number[]): TensorToWrite => ({
    name,
    dtype: 'F16',
    shape,
    data: new Uint16Array(shape.reduce((a, d) => a * d, 1)),
  });

  it('not safetensors, other adapter types, unknown keys, half pairs, other models, text encoders only', () => {
    expect(refusal('garbage', Buffer.from('this is not a LoRA file at all'))).toMatch(
      /^LoRA garbage \(.*garbage\.safetensors\): .*not a valid safetensors file.*\. Atelier reads plain LoRA safetensors for the SD3\.5 MMDiT: lora_up\/lora_down/,
    );
    expect(
      refusal('loha', [
        f16('lora_unet_joint_blocks_0_x_block_attn_qkv.hada_w1_a', [384, 4]),
        f16('lora_unet_joint_blocks_0_x_block_attn_qkv.hada_w1_b', [4, 128]),
      ]),
    ).toMatch(/: it is a LoHa \(hada_\* keys\) file, not a plain LoRA\. Atelier reads plain LoRA/);
    expect(
      refusal('dora', [f16('transformer.transformer_blocks.0.attn.to_q.lora_magnitude_vector', [128])]),
    ).toMatch(/DoRA/);
    expect(refusal('unknown', [f16('some.weight', [4, 4]), f16('other.bias', [4])])).toMatch(
      /: "some\.weight", "other\.bias" are not LoRA keys Atelier knows\. It reads plain LoRA/,
    );
    expect(
      refusal('half', [f16('lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight', [384, 4])]),
    ).toMatch(/module "lora_unet_joint_blocks_0_x_block_attn_qkv" has an up matrix but no down matrix/);
    expect(
      refusal('sdxl', [
        f16('lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight', [640, 4]),
        f16('lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight', [4, 640]),
      ]),
    ).toMatch(
      /"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" matches no layer of atelier-tiny-sd35: a LoRA for another model/,
    );
    expect(
      refusal('wider', [
        f16('lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight', [7296, 4]),
        f16('lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight', [4, 2432]),
      ]),
    ).toMatch(
      /module "lora_unet_joint_blocks_0_x_block_attn_qkv" does not fit atelier-tiny-sd35: up \[7296, 4\] · down \[4, 2432\] cannot change joint_blocks\.0\.x_block\.attn\.qkv\.weight \[384, 128\]/,
    );
    expect(
      refusal('te-only', [
        f16('lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight', [64, 4]),
        f16('lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight', [4, 32]),
      ]),
    ).toMatch(/it changes only the text encoders \(1 layers\); Atelier applies LoRAs to the MMDiT/);
  });

  it('text-encoder parts beside MMDiT pairs are counted and left out', () => {
    const pairs = randomLora(shapes, [LAYERS[0]!], 3);
    const path = join(dir, 'with-te.safetensors');
    writeSafetensors(path, [
      ...(() => {
        writeLora(path, pairs, 'kohya', DEPTH);
        const file = SafetensorsFile.open(path);
        try {
          return file.names().map((name) => {
            const info = file.get(name);
            return { name, dtype: info.dtype, shape: info.shape, data: file.readBytes(name) };
          });
        } finally {
          file.close();
        }
      })(),
      f16('lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight', [96, 4]),
      f16('lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight', [4, 32]),
    ]);
    const lora = read('with-te', path);
    expect(lora).toMatchObject({ formats: ['kohya'], textEncoderPairs: 1 });
    expect(lora.pairs).toHaveLength(1);
  });
});

describe('LoRAs through the engine (tiny model, CPU)', () => {
  const request = (overrides: Partial<GenerationRequest> = {}): GenerationRequest => ({
    prompt: 'a lighthouse at dusk',
    negativePrompt: 'blurry',
    width: 64,
    height: 64,
    seed: 21,
    steps: 3,
    guidance: 4.5,
    sampler: 'euler',
    count: 1,
    ...overrides,
  });

  /**
   * A copy of the tiny model whose checkpoint holds the test's merged weights: float16 values by
   * key, or fp8 codes with their per-row scales.
   */
  function mergedModel(
    name: string,
    merged: Map<string, Float32Array | { codes: Uint8Array; scales: Float32Array }>,
  ): string {
    const copy = join(dir, name);
    cpSync(modelsDir, copy, { recursive: true });
    const path = join(copy, 'checkpoints', TINY_CHECKPOINT);
    const file = SafetensorsFile.open(checkpoint);
    const tensors: TensorToWrite[] = file.names().flatMap((tensor): TensorToWrite[] => {
      const info = file.get(tensor);
      const values = tensor.startsWith(MMDIT_PREFIX)
        ? merged.get(tensor.slice(MMDIT_PREFIX.length))
        : undefined;
      if (!values)
        return [{ name: tensor, dtype: info.dtype, shape: info.shape, data: file.readBytes(tensor) }];
      if (values instanceof Float32Array)
        return [
          { name: tensor, dtype: 'F16', shape: info.shape, data: Uint16Array.from(values, floatToHalf) },
        ];
      const scale = tensor.replace(/\.weight$/, '.scale_weight');
      return [
        { name: tensor, dtype: 'F8_E4M3', shape: info.shape, data: values.codes },
        { name: scale, dtype: 'F32', shape: [info.shape[0]!], data: values.scales },
      ];
    });
    const metadata = { ...file.metadata };
    file.close();
    rmSync(path);
    writeSafetensors(path, tensors, metadata);
    return copy;
  }

  const LORA = [{ name: 'pixel', file: 'pixel.safetensors', weight: 0.7 }];
  let loras: string;
  let pairs: TruthPair[];

  beforeAll(() => {
    loras = join(dir, 'loras');
    mkdirSync(loras, { recursive: true });
    pairs = randomLora(shapes, LAYERS, 99, { rank: 4, alpha: 4, amp: 0.5 });
    writeLora(join(loras, 'pixel.safetensors'), pairs, 'diffusers', DEPTH, 'F32');
  });

  async function imageOf(options: Partial<EngineOptions>, req: GenerationRequest): Promise<Uint8Array> {
    const engine = new Sd35Engine({ modelsDir, checkpoint: TINY_CHECKPOINT, dataDir: dir, ...options });
    await engine.load();
    try {
      return (await engine.generate(req)).images[0]!.data;
    } finally {
      await engine.dispose();
    }
  }

  it('a LoRA changes the image into exactly the image of a checkpoint merged by the test; the combination stays loaded', async () => {
    const data = join(dir, 'engine-data');
    const engine = new Sd35Engine({
      modelsDir,
      checkpoint: TINY_CHECKPOINT,
      dataDir: data,
      loras: { dir: loras, cachedCombinations: 1 },
    });
    await engine.load();
    try {
      const plain = await engine.generate(request());
      expect(plain.loras).toBeUndefined();
      const first = await engine.generate(request({ loras: LORA }));
      expect(first.loras).toEqual([
        { name: 'pixel', weight: 0.7, hash: expect.stringMatching(/^[0-9a-f]{12}$/) },
      ]);
      expect(first.timings?.loraMs).toBeGreaterThan(0);
      // The queue's ETA learns what is loaded under the name it gives the job's LoRAs.
      expect(engine.loraCombinations()).toEqual([loraCombinationKey(LORA)]);
      expect(same(first.images[0]!.data, plain.images[0]!.data)).toBe(false);
      // Jobs without the LoRA are untouched by it.
      expect(same((await engine.generate(request())).images[0]!.data, plain.images[0]!.data)).toBe(true);
      const again = await engine.generate(request({ loras: LORA }));
      expect(again.timings?.loraMs).toBeUndefined();
      expect(same(again.images[0]!.data, first.images[0]!.data)).toBe(true);

      const merged = new Map(
        pairs.map((pair) => [pair.key, referenceMerge(baseValues(pair.key), [{ pair, weight: 0.7 }])]),
      );
      const reference = await imageOf(
        { modelsDir: mergedModel('merged-by-test', merged), dataDir: join(dir, 'reference-data') },
        request(),
      );
      expect(same(reference, first.images[0]!.data)).toBe(true);

      // Another weight is another combination; with room for one, the first is unloaded and its
      // merged file deleted.
      const stronger = await engine.generate(request({ loras: [{ ...LORA[0]!, weight: 1 }] }));
      expect(stronger.timings?.loraMs).toBeGreaterThan(0);
      expect(engine.loraCombinations()).toEqual([loraCombinationKey([{ ...LORA[0]!, weight: 1 }])]);
      expect(same(stronger.images[0]!.data, first.images[0]!.data)).toBe(false);
      const mergedDir = join(data, 'loras', 'merged');
      const files = readdirSync(mergedDir, { recursive: true }).filter((f) =>
        String(f).endsWith('.safetensors'),
      );
      expect(files).toHaveLength(1);
      // A weight of 0 changes nothing: the model's own denoiser runs.
      const zero = await engine.generate(request({ loras: [{ ...LORA[0]!, weight: 0 }] }));
      expect(same(zero.images[0]!.data, plain.images[0]!.data)).toBe(true);
    } finally {
      await engine.dispose();
    }
  });

  it('on the C-API path as on the stock path: the image of the checkpoint merged by the test', async () => {
    const capi = { runtime: 'capi' as const, customOpsLibrary: buildCustomOpsLibrary('cpu'), maxSteps: 12 };
    const withLora = await imageOf(
      { ...capi, dataDir: join(dir, 'capi-data'), loras: { dir: loras } },
      request({ loras: LORA }),
    );
    const merged = new Map(
      pairs.map((pair) => [pair.key, referenceMerge(baseValues(pair.key), [{ pair, weight: 0.7 }])]),
    );
    const reference = await imageOf(
      { ...capi, modelsDir: mergedModel('merged-capi', merged), dataDir: join(dir, 'capi-reference') },
      request(),
    );
    expect(same(withLora, reference)).toBe(true);
    expect(same(withLora, await imageOf({ ...capi, dataDir: join(dir, 'capi-data') }, request()))).toBe(
      false,
    );
  });

  it('at fp8: the merged layers requantized per row run through the graph as a checkpoint holding them does', async () => {
    // The engine quantizes the float16 checkpoint at load; the test does the same to know the codes.
    const source = SafetensorsFile.open(checkpoint);
    const quantized = SafetensorsFile.open(
      quantizeToScaledFp8(source, MMDIT_PREFIX, join(dir, 'q-test')).path,
    );
    source.close();
    const merged = new Map<string, { codes: Uint8Array; scales: Float32Array }>();
    for (const pair of pairs) {
      const scale = quantized.readFloat32(MMDIT_PREFIX + pair.key.replace(/\.weight$/, '.scale_weight'))[0]!;
      const w = Float32Array.from(quantized.readBytes(MMDIT_PREFIX + pair.key), (c) =>
        Math.fround(e4m3ToFloat(c) * scale),
      );
      merged.set(pair.key, requantizePerRow(referenceMerge(w, [{ pair, weight: 0.7 }]), pair.rows));
    }
    quantized.close();
    const fp8 = { precision: 'fp8' as const };
    const withLora = await imageOf(
      { ...fp8, dataDir: join(dir, 'fp8-data'), loras: { dir: loras } },
      request({ loras: LORA }),
    );
    const reference = await imageOf(
      { ...fp8, modelsDir: mergedModel('merged-fp8', merged), dataDir: join(dir, 'fp8-reference') },
      request(),
    );
    expect(same(withLora, reference)).toBe(true);
    expect(same(withLora, await imageOf({ ...fp8, dataDir: join(dir, 'fp8-data') }, request()))).toBe(false);
  });

  it('a LoRA that fails to merge leaves the loaded combination loaded (room for one)', async () => {
    const bad = join(dir, 'one-good-one-bad');
    mkdirSync(bad, { recursive: true });
    cpSync(join(loras, 'pixel.safetensors'), join(bad, 'pixel.safetensors'));
    // A safetensors file, so it passes the first look, that is no LoRA: it fails in the merge step.
    writeSafetensors(join(bad, 'unknown.safetensors'), [
      { name: 'some.weight', dtype: 'F16', shape: [4, 4], data: new Uint16Array(16) },
    ]);
    const data = join(dir, 'keep-data');
    const engine = new Sd35Engine({
      modelsDir,
      checkpoint: TINY_CHECKPOINT,
      dataDir: data,
      loras: { dir: bad, cachedCombinations: 1 },
    });
    await engine.load();
    try {
      const first = await engine.generate(request({ loras: LORA }));
      expect(first.timings?.loraMs).toBeGreaterThan(0);
      await expect(
        engine.generate(request({ loras: [{ name: 'ink', file: 'unknown.safetensors', weight: 1 }] })),
      ).rejects.toBeInstanceOf(LoraError);
      // Still loaded: no merge, no load, the same image.
      expect(engine.loraCombinations()).toEqual([loraCombinationKey(LORA)]);
      const again = await engine.generate(request({ loras: LORA }));
      expect(again.timings?.loraMs).toBeUndefined();
      expect(same(again.images[0]!.data, first.images[0]!.data)).toBe(true);
      const left = readdirSync(join(data, 'loras', 'merged'), { recursive: true }).map(String);
      expect(left.filter((f) => f.endsWith('.safetensors'))).toHaveLength(1);
      expect(left.filter((f) => f.endsWith('.partial'))).toEqual([]);
    } finally {
      await engine.dispose();
    }
  });

  it('a file it cannot apply fails the job with a message for the user; a missing file too', async () => {
    const loras = join(dir, 'bad-loras');
    mkdirSync(loras, { recursive: true });
    writeFileSync(join(loras, 'broken.safetensors'), 'not a LoRA');
    const engine = new Sd35Engine({
      modelsDir,
      checkpoint: TINY_CHECKPOINT,
      dataDir: join(dir, 'bad-data'),
      loras: { dir: loras },
    });
    await engine.load();
    try {
      for (const file of ['broken.safetensors', 'missing.safetensors']) {
        const job = engine.generate(request({ loras: [{ name: 'ink', file, weight: 1 }] }));
        await expect(job).rejects.toBeInstanceOf(LoraError);
        await expect(job).rejects.toMatchObject({
          userMessage: expect.stringMatching(/^The LoRA “ink” can't be used/),
          message: expect.stringContaining(join(loras, file)),
        });
      }
    } finally {
      await engine.dispose();
    }
  });
});
