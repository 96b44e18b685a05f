/**
 * What `serve` checks of the weights before it builds anything, run without building sessions:
 * the hyperparameters derived from the shapes (the same mmditConfig / vaeConfig / clipConfig /
 * t5Config the engine calls), then every tensor's shape against them. `atelier doctor` runs it so
 * a checkpoint with a wrong tensor shape is refused there too, naming the file and the tensor.
 */
import { ModelError } from '../../errors.js';
import { clipConfig } from '../models/clip.js';
import { mmditConfig } from '../models/mmdit.js';
import { t5Config } from '../models/t5.js';
import { vaeConfig } from '../models/vae.js';
import { GraphBuilder } from '../onnx/graph.js';
import { Params, type ResolvedTensor, resolvedShape } from '../onnx/params.js';
import { LABEL } from './comfyui.js';
import type { ComponentName, ModelSet } from './types.js';
import { ComponentWeights } from './weight-source.js';

/** Throws the first problem as a ModelError naming the file and tensor; returns quietly otherwise. */
export function validateModelSet(set: ModelSet): void {
  for (const [name, location] of Object.entries(set.components) as [
    ComponentName,
    ModelSet['components']['mmdit'] | undefined,
  ][]) {
    if (!location) continue;
    const weights = ComponentWeights.open(location, name);
    try {
      const p = new Params(new GraphBuilder('probe'), weights, 'float32');
      const expect = expectations(name, p);
      for (const key of weights.keys()) {
        const t = weights.resolve(key);
        if (!t) continue;
        const shape = resolvedShape(t);
        const wanted = expect(key, shape);
        if (wanted && !sameShape(shape, wanted)) {
          const where = fileOf(t) ?? location.file;
          throw new ModelError(
            where,
            `${where}: tensor "${storedName(t, location.prefix + key)}" has shape [${shape.join(', ')}], but the ${LABEL[name]} ` +
              `(as its other tensors describe it) needs [${wanted.map((d) => (d < 0 ? '*' : d)).join(', ')}] — a damaged or mismatched file`,
          );
        }
      }
    } finally {
      weights.close();
    }
  }
}

/** -1 in an expected shape matches any size. */
type Expect = (key: string, shape: number[]) => number[] | undefined;

function expectations(name: ComponentName, p: Params): Expect {
  const biasOf: Expect = (key) => {
    if (!key.endsWith('.bias')) return undefined;
    const weight = key.replace(/\.bias$/, '.weight');
    if (!p.has(weight)) return undefined;
    const w = p.shape(weight);
    return w.length >= 2 ? [w[0]] : undefined;
  };
  switch (name) {
    case 'mmdit': {
      const cfg = mmditConfig(p);
      const h = cfg.hidden;
      const headDim = h / cfg.heads;
      return (key, shape) => {
        const m = /^joint_blocks\.(\d+)\.(x_block|context_block)\.(.+)$/.exec(key);
        if (m) {
          if (Number(m[1]) >= cfg.depth) return undefined;
          const rest = m[3];
          if (/^attn2?\.qkv\.weight$/.test(rest)) return [3 * h, h];
          if (/^attn2?\.proj\.weight$/.test(rest)) return [h, h];
          if (/^attn2?\.ln_[qk]\.weight$/.test(rest)) return [headDim];
          if (rest === 'mlp.fc1.weight' || rest === 'adaLN_modulation.1.weight') return [-1, h];
          if (rest === 'mlp.fc2.weight') return [h, -1];
        }
        if (key === 'context_embedder.weight') return [h, cfg.contextDim];
        if (key === 'final_layer.linear.weight') return [-1, h];
        if (key === 'final_layer.adaLN_modulation.1.weight') return [2 * h, h];
        return biasOf(key, shape);
      };
    }
    case 'vae':
      vaeConfig(p);
      return biasOf;
    case 'clipL':
    case 'clipG': {
      const cfg = clipConfig(p, name === 'clipL' ? 'clip_l' : 'clip_g');
      const h = cfg.hidden;
      return (key, shape) => {
        const m = /^text_model\.encoder\.layers\.\d+\.(.+)$/.exec(key);
        if (m) {
          if (/^self_attn\.[qkv]_proj\.weight$|^self_attn\.out_proj\.weight$/.test(m[1])) return [h, h];
          if (/^layer_norm[12]\.(weight|bias)$/.test(m[1])) return [h];
          if (m[1] === 'mlp.fc1.weight') return [-1, h];
          if (m[1] === 'mlp.fc2.weight') return [h, -1];
        }
        if (key === 'text_model.embeddings.token_embedding.weight') return [-1, h];
        return biasOf(key, shape);
      };
    }
    case 't5': {
      const cfg = t5Config(p);
      return (key, shape) => {
        const m = /^encoder\.block\.\d+\.layer\.(\d)\.(.+)$/.exec(key);
        if (m) {
          if (/^SelfAttention\.[qkv]\.weight$/.test(m[2])) return [cfg.innerDim, cfg.dModel];
          if (m[2] === 'SelfAttention.o.weight') return [cfg.dModel, cfg.innerDim];
          if (/^DenseReluDense\.wi(_[01])?\.weight$/.test(m[2])) return [cfg.dFF, cfg.dModel];
          if (m[2] === 'DenseReluDense.wo.weight') return [cfg.dModel, cfg.dFF];
          if (m[2] === 'layer_norm.weight') return [cfg.dModel];
        }
        return biasOf(key, shape);
      };
    }
  }
}

function sameShape(shape: number[], wanted: number[]): boolean {
  return shape.length === wanted.length && wanted.every((d, i) => d < 0 || d === shape[i]);
}

function fileOf(t: ResolvedTensor): string | undefined {
  if (t.kind === 'tensor') return t.file.path;
  return fileOf(t.kind === 'reshape' ? t.of : t.parts[0]);
}

function storedName(t: ResolvedTensor, fallback: string): string {
  return t.kind === 'tensor' ? t.info.name : fallback;
}
