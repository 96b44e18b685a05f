/**
 * Which kernel runs the MMDiT's attention in the C-API step (atelier:FlashAttention with
 * FlashAttention-3, or ONNX Runtime's MultiHeadAttention) and the one line that says why, over every
 * combination of what decides it: provider, runtime path, the op library and what it was built with,
 * the GPU's capability, the model's head size, and what was asked. A pure function: no GPU needed.
 */
import { describe, expect, it } from 'vitest';
import type { ComputeCapability } from '../../src/pipeline/ort/cuda-runtime.js';
import type { CustomOpsFeature } from '../../src/pipeline/ort/custom-ops.js';
import {
  type AttentionSituation,
  chooseAttention,
  FA3_HEAD_DIM,
  flashAttentionAsked,
} from '../../src/pipeline/sd35/attention-choice.js';

const LIBRARIES: (ReadonlySet<CustomOpsFeature> | undefined)[] = [
  undefined,
  new Set(),
  new Set<CustomOpsFeature>(['cuda', 'cudnn']),
  new Set<CustomOpsFeature>(['cuda', 'cudnn', 'fa3']),
];
const CAPABILITIES: (ComputeCapability | undefined)[] = [
  { major: 8, minor: 9 },
  { major: 9, minor: 0 },
  { major: 10, minor: 0 },
  undefined,
];

const situations: AttentionSituation[] = (['cpu', 'cuda'] as const).flatMap((provider) =>
  (['capi', 'stock'] as const).flatMap((runtime) =>
    LIBRARIES.flatMap((library) =>
      CAPABILITIES.flatMap((capability) =>
        [FA3_HEAD_DIM, 128].flatMap((headDim) =>
          [undefined, true, false].map((asked) => ({
            provider,
            runtime,
            library,
            capability,
            headDim,
            asked,
          })),
        ),
      ),
    ),
  ),
);

describe('chooseAttention', () => {
  it('chooses FlashAttention-3 exactly on the C-API path, CUDA, a library built with it, Hopper, head size 64', () => {
    for (const s of situations) {
      const fa3 =
        s.asked !== false &&
        s.runtime === 'capi' &&
        s.library !== undefined &&
        (s.asked === true ||
          (s.provider === 'cuda' && s.library.has('fa3') && s.capability?.major === 9 && s.headDim === 64));
      expect(chooseAttention(s).kernel, JSON.stringify({ ...s, library: s.library && [...s.library] })).toBe(
        fa3 ? 'flash-attention' : 'multi-head-attention',
      );
    }
  });

  it('says why not, naming what to do where something can be done', () => {
    const base: AttentionSituation = {
      provider: 'cuda',
      runtime: 'capi',
      library: new Set<CustomOpsFeature>(['cuda', 'fa3']),
      capability: { major: 9, minor: 0 },
      headDim: 64,
    };
    expect(chooseAttention(base).summary).toBe('FlashAttention-3 on Hopper (atelier:FlashAttention)');
    expect(chooseAttention({ ...base, library: undefined }).reason).toBe(
      'op library not built: npm run build:native',
    );
    expect(chooseAttention({ ...base, library: new Set<CustomOpsFeature>(['cuda']) }).reason).toMatch(
      /built without FlashAttention-3: bash native\/fa3-deps.sh, then npm run build:native/,
    );
    expect(chooseAttention({ ...base, runtime: 'stock' }).reason).toMatch(/^stock runtime/);
    expect(chooseAttention({ ...base, capability: { major: 12, minor: 0 } }).reason).toBe(
      'FlashAttention-3 runs on Hopper (sm_90), this GPU is sm_120',
    );
    expect(chooseAttention({ ...base, capability: undefined }).reason).toBe('GPU compute capability unknown');
    expect(chooseAttention({ ...base, headDim: 128 }).reason).toBe(
      "FlashAttention-3 is built for head size 64, this model's is 128",
    );
    expect(chooseAttention({ ...base, asked: false }).summary).toBe(
      'MultiHeadAttention (flashAttention: false asked for)',
    );
    expect(chooseAttention({ ...base, provider: 'cpu', library: new Set() }).reason).toBe(
      'CPU: FlashAttention-3 is a GPU kernel',
    );
    expect(chooseAttention({ ...base, provider: 'cpu', library: new Set(), asked: true }).summary).toBe(
      'atelier:FlashAttention (its CPU reference, as asked)',
    );
  });
});

describe('flashAttentionAsked', () => {
  it('takes the engine option first, then ATELIER_FLASH_ATTENTION=0|1, else leaves the choice', () => {
    expect(flashAttentionAsked(false, { ATELIER_FLASH_ATTENTION: '1' })).toBe(false);
    expect(flashAttentionAsked(true, {})).toBe(true);
    expect(flashAttentionAsked(undefined, { ATELIER_FLASH_ATTENTION: '0' })).toBe(false);
    expect(flashAttentionAsked(undefined, { ATELIER_FLASH_ATTENTION: '1' })).toBe(true);
    expect(flashAttentionAsked(undefined, { ATELIER_FLASH_ATTENTION: 'yes' })).toBeUndefined();
    expect(flashAttentionAsked(undefined, {})).toBeUndefined();
  });
});
