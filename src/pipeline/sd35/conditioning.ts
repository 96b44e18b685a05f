/**
 * Prompt → conditioning, as the reference's SD3Inferencer.get_cond (sd3_infer.py at fbf8f48):
 * CLIP-L and CLIP-G penultimate hidden states side by side, zero-padded to the T5 width, then the
 * T5 tokens after them; pooled = [CLIP-L pooled, CLIP-G pooled]. Only the first 77-token CLIP chunk
 * is used, as in the reference (`encode_token_weights` takes chunk 0).
 */
import { int64Tensor, toFloat32 } from '../onnx/tensors.js';
import type { Conditioning } from '../sampling/cfg.js';
import type { ComponentSession } from './component-session.js';

export type { Conditioning };

export interface TextEncoders {
  clipL: ComponentSession;
  clipG: ComponentSession;
  /** Absent: SD3 runs without T5, which then contributes 77 zero tokens. */
  t5?: ComponentSession;
  /** Width of the MMDiT context (the T5 width, 4096 in real models). */
  contextDim: number;
}

export interface PromptTokens {
  /** First CLIP-L and CLIP-G chunks (77 ids each). */
  l: number[];
  g: number[];
  /** T5 ids, at least 77. */
  t5: number[];
}

/** Minimum T5 length: the reference pads T5 prompts to 77 tokens. */
const T5_MIN_TOKENS = 77;

/**
 * Encodes several prompts (e.g. [positive, negative]): CLIP in one batch per encoder; T5 in one
 * batch when the prompts have the same T5 length, else one by one — T5 has no attention mask, so
 * padding a prompt further than the reference does would change its encoding.
 */
export async function encodePrompts(enc: TextEncoders, prompts: PromptTokens[]): Promise<Conditioning[]> {
  const batch = prompts.length;
  const clipLen = prompts[0].l.length;
  const clipL = await enc.clipL.run({
    input_ids: int64Tensor(
      prompts.flatMap((p) => p.l),
      [batch, clipLen],
    ),
  });
  const clipG = await enc.clipG.run({
    input_ids: int64Tensor(
      prompts.flatMap((p) => p.g),
      [batch, clipLen],
    ),
  });
  const lHidden = toFloat32(clipL.hidden);
  const gHidden = toFloat32(clipG.hidden);
  const lPooled = toFloat32(clipL.pooled);
  const gPooled = toFloat32(clipG.pooled);
  const lDim = lPooled.length / batch;
  const gDim = gPooled.length / batch;
  const t5 = await encodeT5(enc, prompts);
  const D = enc.contextDim;

  return prompts.map((_, b) => {
    const t5Tokens = t5 ? t5[b].length / D : T5_MIN_TOKENS;
    const tokens = clipLen + t5Tokens;
    const context = new Float32Array(tokens * D);
    for (let t = 0; t < clipLen; t++) {
      context.set(lHidden.subarray((b * clipLen + t) * lDim, (b * clipLen + t + 1) * lDim), t * D);
      context.set(gHidden.subarray((b * clipLen + t) * gDim, (b * clipLen + t + 1) * gDim), t * D + lDim);
    }
    // Without T5 its 77 tokens stay zero, as the reference's zero T5 output when it is left out.
    if (t5) context.set(t5[b], clipLen * D);
    const y = new Float32Array(lDim + gDim);
    y.set(lPooled.subarray(b * lDim, (b + 1) * lDim));
    y.set(gPooled.subarray(b * gDim, (b + 1) * gDim), lDim);
    return { context, tokens, y };
  });
}

/** T5 hidden states per prompt ([tokens × width] each), or undefined without a T5 encoder. */
async function encodeT5(enc: TextEncoders, prompts: PromptTokens[]): Promise<Float32Array[] | undefined> {
  if (!enc.t5) return undefined;
  const t5 = enc.t5;
  const run = async (group: PromptTokens[]) => {
    const len = group[0].t5.length;
    const out = await t5.run({
      input_ids: int64Tensor(
        group.flatMap((p) => p.t5),
        [group.length, len],
      ),
    });
    const hidden = toFloat32(out.hidden);
    const per = hidden.length / group.length;
    return group.map((_, i) => hidden.slice(i * per, (i + 1) * per));
  };
  if (prompts.every((p) => p.t5.length === prompts[0].t5.length)) return run(prompts);
  const out: Float32Array[] = [];
  for (const p of prompts) out.push(...(await run([p])));
  return out;
}
