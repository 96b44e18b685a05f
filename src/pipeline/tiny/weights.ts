/**
 * The tiny model's state dicts, under the real files' key names and structure: the MMDiT of
 * Stability-AI/sd3.5 mmditx.py (qk RMSNorm, the last context block "pre_only"), the VAE of
 * sd3_impls.py (SDVAE: Encoder/Decoder with ResnetBlocks, one mid attention), CLIP as in
 * clip_l/clip_g.safetensors (`text_model.*`, `text_projection.weight`) and T5 as in
 * t5xxl_*.safetensors (`encoder.*`, relative position bias in block 0 only).
 */
import type { TensorToWrite } from '../weights/safetensors-writer.js';
import type { ClipTextConfig, TinyModelConfig } from './config.js';
import { TensorList } from './init.js';

export function mmditTensors(cfg: TinyModelConfig, prefix = 'model.diffusion_model.'): TensorToWrite[] {
  const {
    depth,
    patchSize: p,
    latentChannels,
    posEmbedMaxSize,
    mlpRatio,
    frequencyEmbeddingSize,
  } = cfg.mmdit;
  const hidden = 64 * depth;
  const headDim = 64;
  const contextDim = cfg.t5.dModel;
  const pooledDim = cfg.clipL.hiddenSize + cfg.clipG.projectionDim;
  const t = new TensorList(cfg.seed, prefix);

  t.uniform('x_embedder.proj.weight', [hidden, latentChannels, p, p], 1 / Math.sqrt(latentChannels * p * p));
  t.uniform('x_embedder.proj.bias', [hidden], 0.02);
  t.uniform('pos_embed', [1, posEmbedMaxSize * posEmbedMaxSize, hidden], 0.05);
  t.linear('t_embedder.mlp.0', hidden, frequencyEmbeddingSize);
  t.linear('t_embedder.mlp.2', hidden, hidden);
  t.linear('y_embedder.mlp.0', hidden, pooledDim);
  t.linear('y_embedder.mlp.2', hidden, hidden);
  t.linear('context_embedder', hidden, contextDim);
  for (let i = 0; i < depth; i++) {
    for (const stream of ['context_block', 'x_block'] as const) {
      // The last block's context only feeds the joint attention: no output projection, no MLP,
      // and adaLN makes just shift and scale (mmditx.py DismantledBlock, pre_only).
      const preOnly = stream === 'context_block' && i === depth - 1;
      const b = `joint_blocks.${i}.${stream}`;
      t.linear(`${b}.adaLN_modulation.1`, (preOnly ? 2 : 6) * hidden, hidden, { gain: 0.5 });
      t.linear(`${b}.attn.qkv`, 3 * hidden, hidden);
      t.norm(`${b}.attn.ln_q`, headDim, { bias: false });
      t.norm(`${b}.attn.ln_k`, headDim, { bias: false });
      if (!preOnly) {
        t.linear(`${b}.attn.proj`, hidden, hidden);
        t.linear(`${b}.mlp.fc1`, mlpRatio * hidden, hidden);
        t.linear(`${b}.mlp.fc2`, hidden, mlpRatio * hidden);
      }
    }
  }
  t.linear('final_layer.adaLN_modulation.1', 2 * hidden, hidden, { gain: 0.5 });
  t.linear('final_layer.linear', p * p * latentChannels, hidden);
  return t.tensors;
}

export function vaeTensors(cfg: TinyModelConfig, prefix = 'first_stage_model.'): TensorToWrite[] {
  const { ch, chMult, numResBlocks } = cfg.vae;
  const z = cfg.mmdit.latentChannels;
  const levels = chMult.length;
  const t = new TensorList(cfg.seed, prefix);
  const resnet = (name: string, inCh: number, outCh: number) => {
    t.norm(`${name}.norm1`, inCh);
    t.conv(`${name}.conv1`, outCh, inCh, 3);
    t.norm(`${name}.norm2`, outCh);
    t.conv(`${name}.conv2`, outCh, outCh, 3);
    if (inCh !== outCh) t.conv(`${name}.nin_shortcut`, outCh, inCh, 1);
  };
  const mid = (side: string, width: number) => {
    resnet(`${side}.mid.block_1`, width, width);
    t.norm(`${side}.mid.attn_1.norm`, width);
    for (const proj of ['q', 'k', 'v', 'proj_out']) t.conv(`${side}.mid.attn_1.${proj}`, width, width, 1);
    resnet(`${side}.mid.block_2`, width, width);
  };

  t.conv('encoder.conv_in', ch, 3, 3);
  let width = ch;
  for (let i = 0; i < levels; i++) {
    const out = ch * chMult[i];
    for (let j = 0; j < numResBlocks; j++) {
      resnet(`encoder.down.${i}.block.${j}`, width, out);
      width = out;
    }
    if (i !== levels - 1) t.conv(`encoder.down.${i}.downsample.conv`, width, width, 3);
  }
  mid('encoder', width);
  t.norm('encoder.norm_out', width);
  t.conv('encoder.conv_out', 2 * z, width, 3); // mean and log-variance

  width = ch * chMult[levels - 1];
  t.conv('decoder.conv_in', width, z, 3);
  mid('decoder', width);
  for (let i = levels - 1; i >= 0; i--) {
    const out = ch * chMult[i];
    for (let j = 0; j < numResBlocks + 1; j++) {
      resnet(`decoder.up.${i}.block.${j}`, width, out);
      width = out;
    }
    if (i !== 0) t.conv(`decoder.up.${i}.upsample.conv`, width, width, 3);
  }
  t.norm('decoder.norm_out', width);
  t.conv('decoder.conv_out', 3, width, 3);
  return t.tensors;
}

export function clipTensors(
  seed: number,
  cfg: ClipTextConfig & { projectionDim?: number },
  vocabSize: number,
  prefix = '',
): TensorToWrite[] {
  const d = cfg.hiddenSize;
  const t = new TensorList(seed, prefix);
  t.uniform('text_model.embeddings.token_embedding.weight', [vocabSize, d], 0.1);
  t.uniform('text_model.embeddings.position_embedding.weight', [cfg.maxPositionEmbeddings, d], 0.1);
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const l = `text_model.encoder.layers.${i}`;
    t.norm(`${l}.layer_norm1`, d);
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) t.linear(`${l}.self_attn.${proj}`, d, d);
    t.norm(`${l}.layer_norm2`, d);
    t.linear(`${l}.mlp.fc1`, cfg.intermediateSize, d);
    t.linear(`${l}.mlp.fc2`, d, cfg.intermediateSize);
  }
  t.norm('text_model.final_layer_norm', d);
  // clip_l.safetensors carries a projection too (unused by SD3 for CLIP-L); clip_g's projects the pooled output.
  t.linear('text_projection', cfg.projectionDim ?? d, d, { bias: false });
  return t.tensors;
}

export function t5Tensors(
  seed: number,
  cfg: TinyModelConfig,
  vocabSize: number,
  prefix = '',
): TensorToWrite[] {
  const { dModel: d, dFf, numHeads, dKv, numLayers, relativeAttentionNumBuckets } = cfg.t5;
  const inner = numHeads * dKv;
  const t = new TensorList(seed, prefix);
  t.uniform('encoder.embed_tokens.weight', [vocabSize, d], 1);
  for (let i = 0; i < numLayers; i++) {
    const b = `encoder.block.${i}.layer`;
    // T5 does not scale attention logits by 1/√d; its initialisation puts that into q instead.
    t.linear(`${b}.0.SelfAttention.q`, inner, d, { bias: false, gain: 1 / Math.sqrt(dKv) });
    t.linear(`${b}.0.SelfAttention.k`, inner, d, { bias: false });
    t.linear(`${b}.0.SelfAttention.v`, inner, d, { bias: false });
    t.linear(`${b}.0.SelfAttention.o`, d, inner, { bias: false });
    if (i === 0)
      t.uniform(
        `${b}.0.SelfAttention.relative_attention_bias.weight`,
        [relativeAttentionNumBuckets, numHeads],
        0.5,
      );
    t.norm(`${b}.0.layer_norm`, d, { bias: false });
    t.linear(`${b}.1.DenseReluDense.wi_0`, dFf, d, { bias: false });
    t.linear(`${b}.1.DenseReluDense.wi_1`, dFf, d, { bias: false });
    t.linear(`${b}.1.DenseReluDense.wo`, d, dFf, { bias: false });
    t.norm(`${b}.1.layer_norm`, d, { bias: false });
  }
  t.norm('encoder.final_layer_norm', d, { bias: false });
  return t.tensors;
}
