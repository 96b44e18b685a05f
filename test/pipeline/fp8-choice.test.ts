/**
 * What `precision: fp8` runs (W8A8 or weight-only) and the one line that says why, over every
 * combination of what decides it: precision, provider, runtime path, op library, GPU capability.
 * A pure function: no GPU needed.
 */
import { describe, expect, it, vi } from 'vitest';
import type { ComputeCapability } from '../../src/pipeline/ort/cuda-runtime.js';
import { chooseFp8, type Fp8Situation, fp8ChoiceOf } from '../../src/pipeline/sd35/fp8-choice.js';

const PRECISIONS = ['fp8', 'fp8-weights'] as const;
const PROVIDERS = ['cpu', 'cuda'] as const;
const RUNTIMES = ['capi', 'stock'] as const;
const LIBRARY = [true, false] as const;
/** Ampere (A100, RTX 30xx), Ada (L4, RTX 40xx), Hopper (H100, H200), Blackwell (B200, RTX 50xx), unknown. */
const CAPABILITIES: (ComputeCapability | undefined)[] = [
  { major: 8, minor: 0 },
  { major: 8, minor: 6 },
  { major: 8, minor: 9 },
  { major: 9, minor: 0 },
  { major: 10, minor: 0 },
  { major: 12, minor: 0 },
  undefined,
];

const situations: Fp8Situation[] = PRECISIONS.flatMap((precision) =>
  PROVIDERS.flatMap((provider) =>
    RUNTIMES.flatMap((runtime) =>
      LIBRARY.flatMap((library) =>
        CAPABILITIES.map((capability) => ({
          precision,
          provider,
          runtime,
          library,
          ...(capability ? { capability } : {}),
        })),
      ),
    ),
  ),
);

/** The rule as the README states it, written out independently of the implementation. */
function expected(s: Fp8Situation): { route: 'w8a8' | 'weight-only'; because: string } {
  const fp8Would = (): string | undefined => {
    if (s.provider === 'cpu') return undefined;
    if (!s.library || s.runtime !== 'capi' || !s.capability) return undefined;
    const { major, minor } = s.capability;
    // Our library is built for sm_90a plus compute_90 PTX (native/library.mjs): Ada cannot run it.
    if (major * 10 + minor < 90) return undefined;
    return { 90: 'Hopper', 100: 'Blackwell', 120: 'Blackwell' }[major * 10 + minor];
  };
  const arch = fp8Would();
  if (s.precision === 'fp8-weights')
    return {
      route: 'weight-only',
      because: arch ? `as asked; fp8 would run W8A8 on ${arch} tensor cores` : 'as asked',
    };
  if (arch) return { route: 'w8a8', because: `on ${arch} tensor cores` };
  if (s.provider === 'cpu') return { route: 'weight-only', because: 'CPU has no FP8 GEMM' };
  if (!s.library) return { route: 'weight-only', because: 'op library not built: npm run build:native' };
  if (s.runtime === 'stock')
    return { route: 'weight-only', because: 'stock runtime: W8A8 runs on the C-API path (models.runtime)' };
  if (!s.capability) return { route: 'weight-only', because: 'GPU compute capability unknown' };
  if (s.capability.major === 8 && s.capability.minor === 9)
    return { route: 'weight-only', because: 'op library built for sm_90 and later, this GPU is sm_89' };
  return {
    route: 'weight-only',
    because: `GPU sm_${s.capability.major}${s.capability.minor} has no FP8 tensor cores`,
  };
}

const name = (s: Fp8Situation) =>
  `${s.precision} ${s.provider} ${s.runtime} library:${s.library} ${s.capability ? `sm_${s.capability.major}${s.capability.minor}` : 'capability unknown'}`;

describe('chooseFp8', () => {
  it(`covers ${situations.length} situations: every precision × provider × runtime × library × capability`, () => {
    expect(situations).toHaveLength(2 * 2 * 2 * 2 * 7);
  });

  it.each(situations.map((s) => ({ s, label: name(s) })))('$label', ({ s }) => {
    const choice = chooseFp8(s);
    const { route, because } = expected(s);
    expect(choice).toEqual({
      precision: s.precision,
      route,
      reason: because,
      summary:
        route === 'w8a8'
          ? `${s.precision}: W8A8 ${because} (atelier:Fp8Linear)`
          : `${s.precision}: weight-only (${because})`,
    });
  });

  it('says each case in the one line the start log and doctor print', () => {
    const hopper = { major: 9, minor: 0 };
    const gpu = { provider: 'cuda', runtime: 'capi', library: true } as const;
    expect(chooseFp8({ precision: 'fp8', ...gpu, capability: hopper }).summary).toBe(
      'fp8: W8A8 on Hopper tensor cores (atelier:Fp8Linear)',
    );
    expect(chooseFp8({ precision: 'fp8', ...gpu, capability: { major: 8, minor: 6 } }).summary).toBe(
      'fp8: weight-only (GPU sm_86 has no FP8 tensor cores)',
    );
    expect(chooseFp8({ precision: 'fp8', ...gpu, library: false, capability: hopper }).summary).toBe(
      'fp8: weight-only (op library not built: npm run build:native)',
    );
    expect(chooseFp8({ precision: 'fp8', provider: 'cpu', runtime: 'capi', library: true }).summary).toBe(
      'fp8: weight-only (CPU has no FP8 GEMM)',
    );
    expect(chooseFp8({ precision: 'fp8-weights', ...gpu, capability: hopper }).summary).toBe(
      'fp8-weights: weight-only (as asked; fp8 would run W8A8 on Hopper tensor cores)',
    );
  });

  it('takes a route chosen by hand (fp8Linear): weight-only kernels anywhere, W8A8 on the CPU too', () => {
    const hopper = { major: 9, minor: 0 };
    const gpu = { provider: 'cuda', runtime: 'capi', library: true, capability: hopper } as const;
    for (const fp8Linear of ['block-fp8', 'dequantize'] as const)
      for (const precision of PRECISIONS)
        expect(chooseFp8({ precision, ...gpu, fp8Linear })).toMatchObject({
          route: 'weight-only',
          reason: `fp8Linear: ${fp8Linear} asked for`,
        });
    expect(chooseFp8({ precision: 'fp8', ...gpu, fp8Linear: 'w8a8' }).route).toBe('w8a8');
    // The CPU has our reference kernels (tests, the quality bench): W8A8 runs there only when asked.
    const cpu = { precision: 'fp8', provider: 'cpu', runtime: 'capi', library: true } as const;
    expect(chooseFp8({ ...cpu, fp8Linear: 'w8a8' }).summary).toBe(
      "fp8: W8A8 on the CPU's reference kernels, fp8Linear: w8a8 (atelier:Fp8Linear)",
    );
    expect(chooseFp8({ ...cpu, fp8Linear: 'w8a8', library: false }).reason).toBe(
      'op library not built: npm run build:native',
    );
    expect(chooseFp8({ ...cpu, fp8Linear: 'w8a8', runtime: 'stock' }).route).toBe('weight-only');
    // Asked for by hand on a GPU without FP8 tensor cores, it still falls back.
    expect(
      chooseFp8({ ...gpu, precision: 'fp8', fp8Linear: 'w8a8', capability: { major: 8, minor: 6 } }).route,
    ).toBe('weight-only');
  });
});

describe('fp8ChoiceOf (engine options → route)', () => {
  const library = '/opt/ops/libatelier_ops_cuda.so';

  it('has nothing to say at fp16 and fp32, nor at auto on the CPU (fp32)', () => {
    const capability = vi.fn();
    expect(fp8ChoiceOf({ precision: 'fp16', provider: 'cuda' }, 'capi', capability)).toBeUndefined();
    expect(fp8ChoiceOf({ precision: 'fp32' }, 'stock', capability)).toBeUndefined();
    expect(fp8ChoiceOf({}, 'stock', capability)).toBeUndefined();
    expect(capability).not.toHaveBeenCalled();
  });

  it('resolves auto on CUDA to fp8 and asks the GPU its capability, on the configured device', () => {
    const capability = vi.fn(() => ({ major: 9, minor: 0 }));
    expect(
      fp8ChoiceOf({ provider: 'cuda', deviceId: 3, customOpsLibrary: library }, 'capi', capability),
    ).toMatchObject({ precision: 'fp8', route: 'w8a8' });
    expect(capability).toHaveBeenCalledWith(3);
  });

  it('asks the GPU only when nothing else rules W8A8 out', () => {
    const capability = vi.fn(() => ({ major: 9, minor: 0 }));
    expect(
      fp8ChoiceOf({ precision: 'fp8', provider: 'cpu', customOpsLibrary: library }, 'capi', capability),
    ).toMatchObject({ route: 'weight-only', reason: 'CPU has no FP8 GEMM' });
    expect(
      fp8ChoiceOf({ precision: 'fp8', provider: 'cuda', customOpsLibrary: null }, 'capi', capability),
    ).toMatchObject({ route: 'weight-only', reason: 'op library not built: npm run build:native' });
    expect(
      fp8ChoiceOf({ precision: 'fp8', provider: 'cuda', customOpsLibrary: library }, 'stock', capability)
        ?.route,
    ).toBe('weight-only');
    expect(
      fp8ChoiceOf(
        { precision: 'fp8', provider: 'cuda', customOpsLibrary: library, fp8Linear: 'block-fp8' },
        'capi',
        capability,
      )?.route,
    ).toBe('weight-only');
    expect(capability).not.toHaveBeenCalled();
  });

  it('falls back to weight-only when the capability cannot be read', () => {
    expect(
      fp8ChoiceOf({ precision: 'fp8', provider: 'cuda', customOpsLibrary: library }, 'capi', () => undefined),
    ).toMatchObject({ route: 'weight-only', reason: 'GPU compute capability unknown' });
  });
});
