/**
 * Key maps from the reference's names (what the model graphs ask for) to a diffusers folder's
 * names, with the recipe that rebuilds the reference tensor. Follows ComfyUI's conversions
 * (comfy/utils.py `mmdit_to_diffusers`, comfy/diffusers_convert.py `convert_vae_state_dict`):
 *  - MMDiT: the reference's fused `qkv` is diffusers' to_q/to_k/to_v concatenated on axis 0; the
 *    final layer's and the last context block's adaLN (AdaLayerNormContinuous in diffusers) store
 *    [scale, shift] where the reference has [shift, scale], so the halves swap.
 *  - VAE: diffusers numbers decoder levels the other way round, names resnets/samplers
 *    differently, and keeps the mid attention's q/k/v/proj as linear [c, c] where the reference
 *    has 1×1 convolutions [c, c, 1, 1].
 * Text encoders use the same names in both layouts.
 */

/** How one reference tensor is made from diffusers tensors. */
export type KeyRecipe =
  | { kind: 'tensor'; key: string }
  | { kind: 'concat'; keys: string[] }
  | { kind: 'swap-halves'; key: string }
  | { kind: 'reshape'; key: string; shape: (stored: number[]) => number[] };

/** Reference block suffix → diffusers block suffix (ComfyUI's MMDIT_MAP_BLOCK, with qk-norm and attn2). */
export const MMDIT_BLOCK: readonly [string, string][] = [
  ['context_block.adaLN_modulation.1', 'norm1_context.linear'],
  ['context_block.attn.proj', 'attn.to_add_out'],
  ['context_block.mlp.fc1', 'ff_context.net.0.proj'],
  ['context_block.mlp.fc2', 'ff_context.net.2'],
  ['context_block.attn.ln_q', 'attn.norm_added_q'],
  ['context_block.attn.ln_k', 'attn.norm_added_k'],
  ['x_block.adaLN_modulation.1', 'norm1.linear'],
  ['x_block.attn.proj', 'attn.to_out.0'],
  ['x_block.attn.ln_q', 'attn.norm_q'],
  ['x_block.attn.ln_k', 'attn.norm_k'],
  ['x_block.attn2.proj', 'attn2.to_out.0'],
  ['x_block.attn2.ln_q', 'attn2.norm_q'],
  ['x_block.attn2.ln_k', 'attn2.norm_k'],
  ['x_block.mlp.fc1', 'ff.net.0.proj'],
  ['x_block.mlp.fc2', 'ff.net.2'],
];

/** Reference → diffusers outside the blocks (ComfyUI's MMDIT_MAP_BASIC); `swap` marks [scale, shift]. */
export const MMDIT_BASIC: readonly { ref: string; diffusers: string; swap?: boolean }[] = [
  { ref: 'context_embedder', diffusers: 'context_embedder' },
  { ref: 't_embedder.mlp.0', diffusers: 'time_text_embed.timestep_embedder.linear_1' },
  { ref: 't_embedder.mlp.2', diffusers: 'time_text_embed.timestep_embedder.linear_2' },
  { ref: 'x_embedder.proj', diffusers: 'pos_embed.proj' },
  { ref: 'y_embedder.mlp.0', diffusers: 'time_text_embed.text_embedder.linear_1' },
  { ref: 'y_embedder.mlp.2', diffusers: 'time_text_embed.text_embedder.linear_2' },
  { ref: 'final_layer.adaLN_modulation.1', diffusers: 'norm_out.linear', swap: true },
  { ref: 'final_layer.linear', diffusers: 'proj_out' },
];

/** Number of `${stem}.N.` blocks among the keys (largest N + 1). */
function blockCount(keys: readonly string[], stem: string): number {
  const pattern = new RegExp(`^${stem.replace(/\./g, '\\.')}\\.(\\d+)\\.`);
  let count = 0;
  for (const key of keys) {
    const m = pattern.exec(key);
    if (m) count = Math.max(count, Number(m[1]) + 1);
  }
  return count;
}

/** Reference MMDiT key (relative to the component) → recipe over a diffusers transformer's keys. */
export function mmditKeyMap(diffusersKeys: Iterable<string>): Map<string, KeyRecipe> {
  const keys = [...diffusersKeys];
  const have = new Set(keys);
  const map = new Map<string, KeyRecipe>();
  const put = (ref: string, diffusers: string, swap = false) => {
    if (have.has(diffusers))
      map.set(ref, swap ? { kind: 'swap-halves', key: diffusers } : { kind: 'tensor', key: diffusers });
  };
  const depth = blockCount(keys, 'transformer_blocks');
  for (let i = 0; i < depth; i++) {
    const from = `transformer_blocks.${i}`;
    const to = `joint_blocks.${i}`;
    for (const end of ['weight', 'bias']) {
      const fused: [string, string[]][] = [
        [`${to}.x_block.attn.qkv.${end}`, ['to_q', 'to_k', 'to_v'].map((p) => `${from}.attn.${p}.${end}`)],
        [
          `${to}.context_block.attn.qkv.${end}`,
          ['add_q_proj', 'add_k_proj', 'add_v_proj'].map((p) => `${from}.attn.${p}.${end}`),
        ],
        [`${to}.x_block.attn2.qkv.${end}`, ['to_q', 'to_k', 'to_v'].map((p) => `${from}.attn2.${p}.${end}`)],
      ];
      for (const [ref, parts] of fused)
        if (parts.every((p) => have.has(p))) map.set(ref, { kind: 'concat', keys: parts });
      // The last block's context stream only feeds attention ("pre_only"): diffusers gives it an
      // AdaLayerNormContinuous, whose two chunks are in the other order.
      const last = i === depth - 1;
      for (const [refSuffix, diffusersSuffix] of MMDIT_BLOCK) {
        const swap = last && refSuffix === 'context_block.adaLN_modulation.1';
        put(`${to}.${refSuffix}.${end}`, `${from}.${diffusersSuffix}.${end}`, swap);
      }
    }
  }
  for (const { ref, diffusers, swap } of MMDIT_BASIC) {
    for (const end of ['weight', 'bias']) put(`${ref}.${end}`, `${diffusers}.${end}`, swap);
  }
  put('pos_embed', 'pos_embed.pos_embed');
  return map;
}

/** Diffusers VAE key → reference key, for a VAE with `levels` resolution levels. */
export function vaeReferenceKey(key: string, levels: number): string {
  let ref = key
    .replace(/^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\./, 'encoder.down.$1.block.$2.')
    .replace(/^encoder\.down_blocks\.(\d+)\.downsamplers\.0\./, 'encoder.down.$1.downsample.')
    .replace(
      /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\./,
      (_, i, j) => `decoder.up.${levels - 1 - Number(i)}.block.${j}.`,
    )
    .replace(
      /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\./,
      (_, i) => `decoder.up.${levels - 1 - Number(i)}.upsample.`,
    )
    .replace(
      /^(encoder|decoder)\.mid_block\.resnets\.(\d+)\./,
      (_, side, j) => `${side}.mid.block_${Number(j) + 1}.`,
    )
    .replace(/\.conv_shortcut\./, '.nin_shortcut.')
    .replace(/^(encoder|decoder)\.conv_norm_out\./, '$1.norm_out.');
  const attn = /^(encoder|decoder)\.mid_block\.attentions\.0\.(.*)$/.exec(ref);
  if (attn) {
    const inner = attn[2]
      .replace(/^group_norm\./, 'norm.')
      .replace(/^(to_q|query)\./, 'q.')
      .replace(/^(to_k|key)\./, 'k.')
      .replace(/^(to_v|value)\./, 'v.')
      .replace(/^(to_out\.0|proj_attn)\./, 'proj_out.');
    ref = `${attn[1]}.mid.attn_1.${inner}`;
  }
  return ref;
}

/** Reference VAE key → recipe over a diffusers VAE's keys; `rank` gives a stored tensor's rank. */
export function vaeKeyMap(
  diffusersKeys: Iterable<string>,
  rank: (key: string) => number,
): Map<string, KeyRecipe> {
  const keys = [...diffusersKeys];
  const levels = Math.max(blockCount(keys, 'decoder.up_blocks'), blockCount(keys, 'encoder.down_blocks'));
  const map = new Map<string, KeyRecipe>();
  for (const key of keys) {
    const ref = vaeReferenceKey(key, levels);
    // The reference's attention projections are 1×1 convolutions; diffusers stores them as linears.
    if (/\.mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(ref) && rank(key) === 2) {
      map.set(ref, { kind: 'reshape', key, shape: (s) => [...s, 1, 1] });
    } else {
      map.set(ref, { kind: 'tensor', key });
    }
  }
  return map;
}
