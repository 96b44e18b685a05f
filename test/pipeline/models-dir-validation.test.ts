/**
 * Damaged model files as the tester met them: a truncated checkpoint found by auto-discovery, a
 * `"__metadata__": null` header, a tensor of the wrong shape (which `doctor` must refuse as `serve`
 * does), and the tokenizers suggested for a Medium checkpoint.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.js';
import { discoverModelSet, validateModelSet } from '../../src/pipeline/models-dir/index.js';
import { writeTinyModel } from '../../src/pipeline/tiny/generate.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';

let tiny: string;
let root: string;
let models: string;
let data: string;

beforeAll(() => {
  tiny = mkdtempSync(join(tmpdir(), 'atelier-tiny-'));
  writeTinyModel(tiny);
});
afterAll(() => rmSync(tiny, { recursive: true, force: true }));
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-validate-'));
  models = join(root, 'models');
  data = join(root, 'data');
  mkdirSync(models);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function stub(path: string, shapes: Record<string, number[]>): void {
  mkdirSync(dirname(path), { recursive: true });
  writeSafetensors(
    path,
    Object.entries(shapes).map(([name, shape]) => ({
      name,
      dtype: 'F16' as const,
      shape,
      data: new Uint16Array(shape.reduce((a, d) => a * d, 1)),
    })),
  );
}

function errorOf(fn: () => unknown): ModelError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ModelError);
    return error as ModelError;
  }
  throw new Error('no error');
}

describe('damaged model files', () => {
  it('names a truncated checkpoint found by auto-discovery and what is wrong with it', () => {
    const ckpt = join(models, 'checkpoints/x.safetensors');
    stub(ckpt, {
      'model.diffusion_model.x_embedder.proj.weight': [128, 16, 2, 2],
      'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight': [384, 128],
      'model.diffusion_model.pos_embed': [1, 64, 128],
    });
    truncateSync(ckpt, 20_000);
    const error = errorOf(() => discoverModelSet({ modelsDir: models, dataDir: data }));
    expect(error.message).not.toMatch(/no SD3\.5 model was found/i);
    expect(error.message).toMatch(
      /checkpoints\/x\.safetensors is truncated: its header says [\d.]+ kB of tensors, the file has 20\.0 kB/,
    );
  });

  it('accepts "__metadata__": null, which the format allows', () => {
    const path = join(root, 'null-meta.safetensors');
    const header = JSON.stringify({
      __metadata__: null,
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
    });
    const padded = header + ' '.repeat((8 - ((8 + header.length) % 8)) % 8);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(padded.length));
    writeFileSync(path, Buffer.concat([length, Buffer.from(padded), Buffer.alloc(8)]));
    const file = SafetensorsFile.open(path);
    expect(file.metadata).toEqual({});
    expect(file.get('a').shape).toEqual([2]);
    file.close();
  });

  it('refuses a tensor of the wrong shape as serve would, naming the file and the tensor', () => {
    cpSync(tiny, models, { recursive: true });
    const ckpt = join(models, 'checkpoints/atelier-tiny-sd35.safetensors');
    const key = 'model.diffusion_model.joint_blocks.1.x_block.attn.proj.weight';
    const file = SafetensorsFile.open(ckpt);
    const tensors = file.names().map((name) => {
      const info = file.get(name);
      const shape = name === key ? [info.shape[0] / 2, info.shape[1] * 2] : info.shape;
      return { name, dtype: info.dtype, shape, data: file.readBytes(name) };
    });
    const metadata = { ...file.metadata };
    file.close();
    writeSafetensors(ckpt, tensors, metadata);
    const set = discoverModelSet({ modelsDir: models, dataDir: data });
    const error = errorOf(() => validateModelSet(set));
    expect(error.message).toContain(ckpt);
    expect(error.message).toContain(`tensor "${key}" has shape [64, 256]`);
    expect(error.message).toContain('needs [128, 128]');
  });

  it('passes the bundled tiny model', () => {
    const set = discoverModelSet({ modelsDir: tiny, dataDir: data });
    expect(() => validateModelSet(set)).not.toThrow();
  });

  it('names the Medium tokenizers for a Medium checkpoint that the shapes do not place', () => {
    stub(join(models, 'checkpoints/sd3_medium.safetensors'), {
      'model.diffusion_model.x_embedder.proj.weight': [64 * 24, 16, 2, 2],
      'model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight': [3, 2],
      'first_stage_model.decoder.conv_in.weight': [4, 16, 3, 3],
      'text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight': [77, 768],
      'text_encoders.clip_g.transformer.text_model.embeddings.position_embedding.weight': [77, 1280],
    });
    const error = errorOf(() => discoverModelSet({ modelsDir: models, dataDir: data }));
    expect(error.message).toContain('atelier models pull sd3.5-medium --tokenizers-only');
    expect(error.message).not.toContain('sd3.5-large');
  });
});
