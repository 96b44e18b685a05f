/**
 * Which kernel runs the MMDiT's attention in the C-API step graph, decided once at load and shown in
 * one line with its reason (runtime info, `atelier doctor`): atelier:FlashAttention —
 * FlashAttention-3's forward kernel, 1.17–1.34× faster than cuDNN's on SD3.5's shapes (issue 10,
 * bench/NOTES.md) — where all it needs is there, otherwise ONNX Runtime's MultiHeadAttention (cuDNN's
 * flash kernel on CUDA). FA3 needs, in the order the line names what is missing: our op library, built
 * with FA3's sources (bash native/fa3-deps.sh, then npm run build:native), the C-API path, a Hopper GPU
 * (FA3's kernel is sm_90a code) and head size 64 (the one instantiation built; every SD3.5 model's).
 * `flashAttention: true` (tests, benchmarks) asks for the op wherever the library is loaded (on the
 * CPU it runs its float32 reference); `false` keeps MultiHeadAttention.
 */
import type { ComputeCapability } from '../ort/cuda-runtime.js';
import type { CustomOpsFeature } from '../ort/custom-ops.js';
import type { AttentionInfo } from '../types.js';

export interface AttentionSituation {
  provider: 'cpu' | 'cuda';
  runtime: 'capi' | 'stock';
  /** The op library's features when it is there (customOpsFeatures), else undefined. */
  library?: ReadonlySet<CustomOpsFeature>;
  capability?: ComputeCapability | undefined;
  headDim: number;
  /** EngineOptions.flashAttention (or ATELIER_FLASH_ATTENTION=0|1): undefined = choose. */
  asked?: boolean;
}

/** The head size FA3 is built for (native/src/flash_attention.h's kFlashAttentionHeadDim). */
export const FA3_HEAD_DIM = 64;

export function chooseAttention(s: AttentionSituation): AttentionInfo {
  if (s.asked === false) return stock('flashAttention: false asked for');
  if (!s.library) return stock('op library not built: npm run build:native');
  if (s.runtime === 'stock') return stock('stock runtime: our ops run on the C-API path (models.runtime)');
  if (s.asked === true) {
    const where = s.provider === 'cpu' ? 'its CPU reference' : 'FlashAttention-3';
    return flash(`asked for: ${where}`, `atelier:FlashAttention (${where}, as asked)`);
  }
  if (s.provider === 'cpu') return stock('CPU: FlashAttention-3 is a GPU kernel');
  if (!s.library.has('fa3'))
    return stock(
      'op library built without FlashAttention-3: bash native/fa3-deps.sh, then npm run build:native',
    );
  if (!s.capability) return stock('GPU compute capability unknown');
  if (s.capability.major !== 9)
    return stock(
      `FlashAttention-3 runs on Hopper (sm_90), this GPU is sm_${s.capability.major}${s.capability.minor}`,
    );
  if (s.headDim !== FA3_HEAD_DIM)
    return stock(`FlashAttention-3 is built for head size ${FA3_HEAD_DIM}, this model's is ${s.headDim}`);
  return flash('on Hopper', 'FlashAttention-3 on Hopper (atelier:FlashAttention)');
}

function flash(reason: string, summary: string): AttentionInfo {
  return { kernel: 'flash-attention', reason, summary };
}

function stock(reason: string): AttentionInfo {
  return { kernel: 'multi-head-attention', reason, summary: `MultiHeadAttention (${reason})` };
}

/** EngineOptions.flashAttention, else ATELIER_FLASH_ATTENTION=0|1 in the environment, else undefined. */
export function flashAttentionAsked(option: boolean | undefined, env = process.env): boolean | undefined {
  if (option !== undefined) return option;
  const v = env.ATELIER_FLASH_ATTENTION;
  return v === '0' ? false : v === '1' ? true : undefined;
}
