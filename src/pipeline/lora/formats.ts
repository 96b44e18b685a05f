/**
 * SD3.5 LoRA files as people have them in ComfyUI's `models/loras/`, read into pairs (target
 * weight of our MMDiT, up, down, alpha). Only headers are read here; the merge reads the data.
 *
 * A key is a module name and a suffix. Module names, each mapped onto the reference checkpoint's
 * keys (what our graphs ask for) the way ComfyUI's `comfy/lora.py` model_lora_keys_unet does:
 *  - kohya / sd-scripts: `lora_unet_<reference key with "_">`, e.g. `lora_unet_joint_blocks_0_x_block_attn_qkv`;
 *  - ComfyUI's own keys ("generic lora format"): `diffusion_model.<reference key>`;
 *  - diffusers: `transformer.<diffusers module>`, e.g. `transformer.transformer_blocks.0.attn.to_q`
 *    (also `base_model.model.` from PEFT, no prefix from diffusers' save_lora_adapter, OneTrainer's
 *    `lora_transformer_<module with "_">` and SimpleTuner's `lycoris_<module with "_">`). Diffusers
 *    splits q, k and v per stream where the checkpoint fuses them: `to_q`/`to_k`/`to_v` write row
 *    blocks 0, 1, 2 of `x_block.attn.qkv`, `add_q_proj`/… those of `context_block.attn.qkv`, and
 *    `attn2.to_q`/… those of MMDiT-X's `x_block.attn2.qkv` (comfy/utils.py mmdit_to_diffusers).
 *    `norm_out.linear` and the last block's `norm1_context.linear` hold [scale, shift] where the
 *    reference has [shift, scale], so their rows swap halves (diffusers' swap_scale_shift).
 * Suffixes, as ComfyUI's LoRAAdapter.load reads them: `lora_up`/`lora_down`, `lora_B`/`lora_A`
 * (PEFT), `lora_B.default`/`lora_A.default`, `lora.up`/`lora.down`, `_lora.up`/`_lora.down`,
 * `lora_linear_layer.up`/`.down` (each `.weight`), and `<module>.alpha`.
 *
 * Scale of a pair: alpha / rank, rank = rows of the down matrix (comfy/lora.py calculate_weight:
 * `alpha = v[2] / mat2.shape[0]`), 1 without an alpha (ComfyUI; diffusers' get_peft_kwargs sets
 * lora_alpha = r). Diffusers files carry no `.alpha` keys; the adapter config diffusers writes into
 * the file's metadata (`lora_adapter_metadata`: `lora_alpha`, `alpha_pattern`, possibly prefixed
 * `transformer.`) gives it instead. Text-encoder parts (`lora_te1_…`, `text_encoder.…`) are counted
 * and left out: Atelier applies LoRAs to the MMDiT. Other adapter types (LoHa, LoKr, DoRA, …) are
 * refused with a message saying what is supported.
 */
import { MMDIT_BASIC, MMDIT_BLOCK } from '../models-dir/diffusers-keys.js';
import { isFloatDType } from '../weights/dtypes.js';
import { SafetensorsFile, type TensorInfo } from '../weights/safetensors.js';
import { LoraError, SUPPORTED_LORA_FORMATS } from './errors.js';

/** The part of a checkpoint weight one LoRA pair changes. */
export interface LoraTarget {
  /** Reference key of the weight, relative to the MMDiT (`joint_blocks.0.x_block.attn.qkv.weight`). */
  key: string;
  /** The rows of that weight the pair writes (diffusers' to_q/to_k/to_v in the fused qkv); all when absent. */
  rows?: { start: number; count: number };
  /** The pair's rows are [scale, shift] where the reference has [shift, scale]. */
  swapHalves?: boolean;
}

/** How a file names its modules. */
export type LoraKeyFormat = 'kohya' | 'ComfyUI' | 'diffusers' | 'PEFT' | 'OneTrainer' | 'SimpleTuner';

interface KnownModule {
  target: LoraTarget;
  format: LoraKeyFormat;
}

/** One low-rank update: W[rows] += weight · scale · up · down. */
export interface LoraPair {
  /** The module as the file names it. */
  module: string;
  target: LoraTarget;
  /** [out, rank] (or [out, rank, 1, 1] for a convolution). */
  up: TensorInfo;
  /** [rank, in] (or [rank, c, kh, kw]). */
  down: TensorInfo;
  rank: number;
  alpha?: number;
  /** alpha / rank, or 1 without an alpha. */
  scale: number;
}

export interface LoraFile {
  path: string;
  file: SafetensorsFile;
  /** The key formats the file uses (usually one). */
  formats: LoraKeyFormat[];
  pairs: LoraPair[];
  /** Pairs for the text encoders, not applied. */
  textEncoderPairs: number;
}

/** The model a LoRA is read for: its weights' shapes by reference key, and a name for messages. */
export interface LoraModel {
  name: string;
  shapes: ReadonlyMap<string, readonly number[]>;
}

const SUFFIXES: readonly [string, 'up' | 'down' | 'alpha'][] = [
  ['.lora_up.weight', 'up'],
  ['.lora_down.weight', 'down'],
  ['.lora_B.weight', 'up'],
  ['.lora_A.weight', 'down'],
  ['.lora_B.default.weight', 'up'],
  ['.lora_A.default.weight', 'down'],
  ['.lora.up.weight', 'up'],
  ['.lora.down.weight', 'down'],
  ['_lora.up.weight', 'up'],
  ['_lora.down.weight', 'down'],
  ['.lora_linear_layer.up.weight', 'up'],
  ['.lora_linear_layer.down.weight', 'down'],
  ['.alpha', 'alpha'],
];

/** Keys of adapter types other than plain LoRA (comfy/weight_adapter/*), named in the refusal. */
const OTHER_ADAPTERS: readonly [RegExp, string][] = [
  [/\.hada_(w[12]_[ab]|t[12])$/, 'LoHa (hada_* keys)'],
  [/\.lokr_(w[12](_[ab])?|t2)$/, 'LoKr (lokr_* keys)'],
  [/\.(dora_scale|lora_magnitude_vector(\.weight)?)$/, 'DoRA (dora_scale keys)'],
  [/\.lora_mid\.weight$/, 'LoCon with a Tucker core (lora_mid keys)'],
  [/\.(a1|a2|b1|b2)\.weight$/, 'GLoRA (a1/a2/b1/b2 keys)'],
  [/\.(oft_blocks|oft_diag|oft_R)(\.weight)?$/, 'OFT (oft_* keys)'],
  [/\.(boft_R|boft_s)$/, 'BOFT (boft_* keys)'],
  [/\.(diff|diff_b|w_norm|b_norm|set_weight)$/, 'full weight differences (diff keys)'],
  [/\.lora_[AB]\.bias$|\.lora_(up|down)\.bias$/, 'LoRA with biases (lora_B.bias keys)'],
];

/** Text-encoder modules: kohya `lora_te…`, diffusers `text_encoder…`. */
const TEXT_ENCODER = /^(lora_te\d?_|lora_prior_te_|text_encoders?(_\d)?\.|te\d?\.)/;

/** diffusers module → (checkpoint weight, rows) for q, k and v of each stream. */
const FUSED_QKV: readonly [string, string[]][] = [
  ['x_block.attn.qkv', ['attn.to_q', 'attn.to_k', 'attn.to_v']],
  ['context_block.attn.qkv', ['attn.add_q_proj', 'attn.add_k_proj', 'attn.add_v_proj']],
  ['x_block.attn2.qkv', ['attn2.to_q', 'attn2.to_k', 'attn2.to_v']],
];

/**
 * Every module name a LoRA file may use for this model, in every key format, mapped onto the
 * weight it changes. Only weights of two or more dimensions (linear and convolution kernels) are
 * LoRA targets.
 */
export function loraModules(shapes: ReadonlyMap<string, readonly number[]>): Map<string, KnownModule> {
  const modules = new Map<string, KnownModule>();
  const weights = [...shapes].filter(([key, shape]) => key.endsWith('.weight') && shape.length >= 2);
  const has = (key: string) => {
    const shape = shapes.get(key);
    return shape !== undefined && shape.length >= 2;
  };
  for (const [key] of weights) {
    const stem = key.slice(0, -'.weight'.length);
    modules.set(`lora_unet_${stem.replace(/\./g, '_')}`, { target: { key }, format: 'kohya' });
    modules.set(`diffusion_model.${stem}`, { target: { key }, format: 'ComfyUI' });
  }

  const diffusers = new Map<string, LoraTarget>();
  let depth = 0;
  for (const [key] of weights) {
    const m = /^joint_blocks\.(\d+)\./.exec(key);
    if (m) depth = Math.max(depth, Number(m[1]) + 1);
  }
  for (let i = 0; i < depth; i++) {
    const from = `transformer_blocks.${i}`;
    const to = `joint_blocks.${i}`;
    for (const [fused, parts] of FUSED_QKV) {
      const key = `${to}.${fused}.weight`;
      if (!has(key)) continue;
      const count = shapes.get(key)![0]! / 3;
      parts.forEach((part, j) => {
        diffusers.set(`${from}.${part}`, { key, rows: { start: j * count, count } });
      });
    }
    for (const [refSuffix, diffusersSuffix] of MMDIT_BLOCK) {
      const key = `${to}.${refSuffix}.weight`;
      if (!has(key)) continue;
      // The last block's context adaLN is diffusers' AdaLayerNormContinuous: [scale, shift].
      const swap = i === depth - 1 && refSuffix === 'context_block.adaLN_modulation.1';
      diffusers.set(`${from}.${diffusersSuffix}`, swap ? { key, swapHalves: true } : { key });
    }
  }
  for (const { ref, diffusers: name, swap } of MMDIT_BASIC) {
    const key = `${ref}.weight`;
    if (has(key)) diffusers.set(name, swap ? { key, swapHalves: true } : { key });
  }
  for (const [name, target] of diffusers) {
    const underscored = name.replace(/\./g, '_');
    modules.set(`transformer.${name}`, { target, format: 'diffusers' });
    modules.set(`base_model.model.${name}`, { target, format: 'PEFT' });
    modules.set(name, { target, format: 'diffusers' });
    modules.set(`lora_transformer_${underscored}`, { target, format: 'OneTrainer' });
    modules.set(`lycoris_${underscored}`, { target, format: 'SimpleTuner' });
  }
  return modules;
}

interface Parts {
  up?: TensorInfo;
  down?: TensorInfo;
  alpha?: TensorInfo;
}

const numel = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);
const shown = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** How many keys a refusal quotes. */
const QUOTED = 3;

function quote(keys: readonly string[]): string {
  const head = keys
    .slice(0, QUOTED)
    .map((k) => `"${k}"`)
    .join(', ');
  return keys.length > QUOTED ? `${head} and ${keys.length - QUOTED} more` : head;
}

/**
 * Reads a LoRA file's header and checks every pair against the model; throws a LoraError naming the
 * file and what is wrong (and what is supported) otherwise. `modules` is `loraModules(model.shapes)`.
 */
export function readLoraFile(
  lora: string,
  path: string,
  model: LoraModel,
  modules: ReadonlyMap<string, KnownModule>,
): LoraFile {
  const refuse = (why: string, cause?: unknown): never => {
    throw new LoraError(lora, path, `LoRA ${lora} (${path}): ${why}`, { cause });
  };
  let file: SafetensorsFile;
  try {
    file = SafetensorsFile.open(path);
  } catch (error) {
    return refuse(`${(error as Error).message}. Atelier reads ${SUPPORTED_LORA_FORMATS}`, error);
  }
  try {
    return readPairs(file, model, modules, refuse);
  } catch (error) {
    file.close();
    throw error;
  }
}

function readPairs(
  file: SafetensorsFile,
  model: LoraModel,
  modules: ReadonlyMap<string, KnownModule>,
  refuse: (why: string) => never,
): LoraFile {
  const byModule = new Map<string, Parts>();
  const unknown: string[] = [];
  const others = new Set<string>();
  for (const [key, info] of file.tensors) {
    const other = OTHER_ADAPTERS.find(([pattern]) => pattern.test(key));
    if (other) {
      others.add(other[1]);
      continue;
    }
    const suffix = SUFFIXES.find(([end]) => key.endsWith(end));
    if (!suffix) {
      unknown.push(key);
      continue;
    }
    const module = key.slice(0, -suffix[0].length);
    const parts = byModule.get(module) ?? {};
    parts[suffix[1]] = info;
    byModule.set(module, parts);
  }
  if (others.size > 0) {
    refuse(
      `it is a ${[...others].join(' and ')} file, not a plain LoRA. Atelier reads ${SUPPORTED_LORA_FORMATS}`,
    );
  }
  if (unknown.length > 0) {
    refuse(
      `${quote(unknown)} ${unknown.length === 1 ? 'is not a LoRA key' : 'are not LoRA keys'} Atelier knows. It reads ${SUPPORTED_LORA_FORMATS}`,
    );
  }

  const adapterAlpha = metadataAlpha(file.metadata);
  const pairs: LoraPair[] = [];
  const formats = new Set<LoraKeyFormat>();
  const unmatched: string[] = [];
  let textEncoderPairs = 0;
  for (const [module, parts] of byModule) {
    if (TEXT_ENCODER.test(module)) {
      if (parts.up) textEncoderPairs++;
      continue;
    }
    if (!parts.up || !parts.down) {
      const has = parts.up ? 'an up matrix' : parts.down ? 'a down matrix' : 'an alpha';
      const lacks = !parts.up && !parts.down ? 'no matrices' : parts.up ? 'no down matrix' : 'no up matrix';
      refuse(`module "${module}" has ${has} but ${lacks} (a damaged or incomplete LoRA file)`);
    }
    const known = modules.get(module);
    if (!known) {
      unmatched.push(module);
      continue;
    }
    formats.add(known.format);
    const { up, down } = parts as Required<Pick<Parts, 'up' | 'down'>>;
    pairs.push(checkedPair(module, known.target, up, down, parts.alpha, file, model, adapterAlpha, refuse));
  }
  if (unmatched.length > 0) {
    refuse(
      `${quote(unmatched)} ${unmatched.length === 1 ? 'matches' : 'match'} no layer of ${model.name}: a LoRA for another model (SDXL, Flux, another SD3.5 size)? Atelier reads ${SUPPORTED_LORA_FORMATS}`,
    );
  }
  if (pairs.length === 0) {
    refuse(
      textEncoderPairs > 0
        ? `it changes only the text encoders (${textEncoderPairs} layers); Atelier applies LoRAs to the MMDiT`
        : `it holds no LoRA weights. Atelier reads ${SUPPORTED_LORA_FORMATS}`,
    );
  }
  return { path: file.path, file, formats: [...formats], pairs, textEncoderPairs };
}

function checkedPair(
  module: string,
  target: LoraTarget,
  up: TensorInfo,
  down: TensorInfo,
  alphaInfo: TensorInfo | undefined,
  file: SafetensorsFile,
  model: LoraModel,
  adapterAlpha: (module: string) => number | undefined,
  refuse: (why: string) => never,
): LoraPair {
  for (const t of [up, down]) {
    if (!isFloatDType(t.dtype) || t.dtype.startsWith('F8_')) {
      refuse(`"${t.name}" is ${t.dtype}; LoRA matrices must be F32, F16 or BF16`);
    }
  }
  const weight = model.shapes.get(target.key)!;
  const rank = down.shape[0] ?? 0;
  const rows = target.rows?.count ?? weight[0]!;
  const inputs = numel(weight.slice(1));
  const upOk = up.shape.length >= 2 && up.shape[1] === rank && numel(up.shape.slice(2)) === 1;
  const downOk = down.shape.length >= 2 && rank > 0 && numel(down.shape.slice(1)) === inputs;
  if (!upOk || !downOk || up.shape[0] !== rows) {
    refuse(
      `module "${module}" does not fit ${model.name}: up ${shown(up.shape)} · down ${shown(down.shape)} ` +
        `cannot change ${target.rows ? `${rows} rows of ` : ''}${target.key} ${shown(weight)} (a LoRA for another SD3.5 size?)`,
    );
  }
  if (target.swapHalves && rows % 2 !== 0) refuse(`module "${module}" has an odd number of rows (${rows})`);
  let alpha: number | undefined;
  if (alphaInfo) {
    const values = isFloatDType(alphaInfo.dtype) ? file.readFloat32(alphaInfo.name) : undefined;
    if (values?.length !== 1 || !Number.isFinite(values[0])) {
      refuse(`"${alphaInfo.name}" is not one number (shape ${shown(alphaInfo.shape)}, ${alphaInfo.dtype})`);
    }
    alpha = values![0];
  } else {
    alpha = adapterAlpha(module);
  }
  return {
    module,
    target,
    up,
    down,
    rank,
    ...(alpha !== undefined ? { alpha } : {}),
    scale: alpha === undefined ? 1 : alpha / rank,
  };
}

/**
 * alpha from the adapter config diffusers writes into a LoRA's metadata (`lora_adapter_metadata`,
 * a PEFT LoraConfig as JSON; pipelines prefix its keys with the component, `transformer.lora_alpha`).
 * `alpha_pattern` entries win for the modules they match, as in PEFT (`(.*\.)?<pattern>$`).
 */
function metadataAlpha(metadata: Readonly<Record<string, string>>): (module: string) => number | undefined {
  const text = metadata.lora_adapter_metadata;
  if (!text) return () => undefined;
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return () => undefined;
  }
  const field = (name: string): unknown => config[`transformer.${name}`] ?? config[name];
  const alpha = typeof field('lora_alpha') === 'number' ? (field('lora_alpha') as number) : undefined;
  const patterns = Object.entries((field('alpha_pattern') ?? {}) as Record<string, unknown>).flatMap(
    ([pattern, value]) => {
      if (typeof value !== 'number') return [];
      try {
        return [[new RegExp(`^(.*\\.)?(${pattern})$`), value] as const];
      } catch {
        return [];
      }
    },
  );
  return (module) => {
    const name = module.replace(/^(transformer\.|base_model\.model\.)/, '');
    return patterns.find(([pattern]) => pattern.test(name))?.[1] ?? alpha;
  };
}
