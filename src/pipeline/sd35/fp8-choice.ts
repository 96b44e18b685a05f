/**
 * What `precision: fp8` runs, decided once at load and shown in one line with its reason (the start
 * log, `atelier doctor`, PipelineInfo.fp8). W8A8 — every fp8 linear layer of the MMDiT as our
 * atelier:Fp8Linear: activations quantized to e4m3 per token, multiplied with the e4m3 weights and
 * their per-channel scales on FP8 tensor cores (cuBLASLt) — where all it needs is there; otherwise
 * the weight-only route (the weights dequantized into fp16 GEMMs: com.microsoft
 * MatMulBlockQuantizedFp8Weight on CUDA, DequantizeLinear → MatMul on the CPU). `fp8-weights` always
 * runs weight-only: for comparison, and for GPUs without FP8 tensor cores. Both keep the same one-byte
 * weights; the text encoders run weight-only either way.
 *
 * W8A8 needs, in the order the line names what is missing: a GPU (the CPU provider has no FP8 GEMM),
 * our op library (npm run build:native), the C-API path (only its step graph loads the library), and
 * FP8 tensor cores (compute capability 8.9 or later: Ada, Hopper, Blackwell) on which our library
 * runs: it is built for Hopper (sm_90a, PTX compute_90: native/library.mjs), so Ada (sm_89) runs
 * weight-only until the library is built for it.
 */
import { type ComputeCapability, cudaRuntime } from '../ort/cuda-runtime.js';
import type { Fp8Info } from '../types.js';
import type { EngineOptions } from './options.js';
import { customOpsLibraryOf } from './runtime-choice.js';

/** The first compute capability with FP8 tensor cores (Ada, sm_89; Hopper is 9.0). */
export const FP8_TENSOR_CORES: ComputeCapability = { major: 8, minor: 9 };
/**
 * The first one our op library runs on: it is built for sm_90a plus compute_90 PTX
 * (native/library.mjs), which later GPUs JIT-compile and Ada cannot run.
 */
export const OP_LIBRARY_FLOOR: ComputeCapability = { major: 9, minor: 0 };

export interface Fp8Situation {
  precision: 'fp8' | 'fp8-weights';
  provider: 'cpu' | 'cuda';
  /** The path that denoises (chooseRuntime): only the C-API step graph loads our op library. */
  runtime: 'capi' | 'stock';
  /** Our op library is there for this provider (built by npm run build:native, or named). */
  library: boolean;
  /** The GPU's compute capability; undefined when it could not be read. */
  capability?: ComputeCapability;
  /**
   * EngineOptions.fp8Linear, a route chosen by hand (benchmarks, tests): a weight-only kernel, or
   * `w8a8`, which the CPU then runs too (our reference kernels).
   */
  fp8Linear?: EngineOptions['fp8Linear'];
}

/** The route for one situation: a pure function of it (fp8-choice.test.ts walks every combination). */
export function chooseFp8(s: Fp8Situation): Fp8Info {
  if (s.fp8Linear === 'block-fp8' || s.fp8Linear === 'dequantize')
    return weightOnly(s.precision, `fp8Linear: ${s.fp8Linear} asked for`);
  if (s.precision === 'fp8-weights') {
    const fp8 = chooseFp8({ ...s, precision: 'fp8' });
    return weightOnly(
      'fp8-weights',
      fp8.route === 'w8a8' ? `as asked; fp8 would run W8A8 ${fp8.reason}` : 'as asked',
    );
  }
  const missing = whatW8a8Lacks(s);
  if (missing) return weightOnly(s.precision, missing);
  const where =
    s.provider === 'cpu'
      ? "on the CPU's reference kernels, fp8Linear: w8a8"
      : `on ${architecture(s.capability!)} tensor cores`;
  return {
    precision: s.precision,
    route: 'w8a8',
    reason: where,
    summary: `${s.precision}: W8A8 ${where} (atelier:Fp8Linear)`,
  };
}

function whatW8a8Lacks(s: Fp8Situation): string | undefined {
  if (s.provider === 'cpu' && s.fp8Linear !== 'w8a8') return 'CPU has no FP8 GEMM';
  if (!s.library) return 'op library not built: npm run build:native';
  if (s.runtime === 'stock') return 'stock runtime: W8A8 runs on the C-API path (models.runtime)';
  if (s.provider === 'cpu') return undefined;
  if (!s.capability) return 'GPU compute capability unknown';
  if (!atLeast(s.capability, FP8_TENSOR_CORES)) return `GPU ${smName(s.capability)} has no FP8 tensor cores`;
  if (!atLeast(s.capability, OP_LIBRARY_FLOOR))
    return `op library built for sm_90 and later, this GPU is ${smName(s.capability)}`;
  return undefined;
}

function weightOnly(precision: Fp8Info['precision'], reason: string): Fp8Info {
  return { precision, route: 'weight-only', reason, summary: `${precision}: weight-only (${reason})` };
}

function atLeast(c: ComputeCapability, floor: ComputeCapability): boolean {
  return c.major > floor.major || (c.major === floor.major && c.minor >= floor.minor);
}

const smName = (c: ComputeCapability) => `sm_${c.major}${c.minor}`;

/** The architecture's name for the line ("Hopper"), or its sm_ number when it has none here. */
export function architecture(c: ComputeCapability): string {
  if (c.major === 8 && c.minor === 9) return 'Ada';
  if (c.major === 9) return 'Hopper';
  if (c.major === 10 || c.major === 11 || c.major === 12) return 'Blackwell';
  return smName(c);
}

/**
 * The route these engine options take on `runtime` (chooseRuntime's path); undefined at fp16 and
 * fp32. The GPU is asked its capability only when nothing else has ruled W8A8 out.
 */
export function fp8ChoiceOf(
  options: Pick<EngineOptions, 'precision' | 'provider' | 'deviceId' | 'customOpsLibrary' | 'fp8Linear'>,
  runtime: 'capi' | 'stock',
  capabilityOf: (deviceId: number) => ComputeCapability | undefined = queryCapability,
): Fp8Info | undefined {
  const provider = options.provider ?? 'cpu';
  const precision = options.precision ?? (provider === 'cuda' ? 'fp8' : 'fp32');
  if (precision !== 'fp8' && precision !== 'fp8-weights') return undefined;
  const situation: Fp8Situation = {
    precision,
    provider,
    runtime,
    library: customOpsLibraryOf(options, provider) !== undefined,
    ...(options.fp8Linear ? { fp8Linear: options.fp8Linear } : {}),
  };
  const gpuDecides =
    provider === 'cuda' &&
    situation.library &&
    runtime === 'capi' &&
    (options.fp8Linear === undefined || options.fp8Linear === 'w8a8');
  const capability = gpuDecides ? capabilityOf(options.deviceId ?? 0) : undefined;
  return chooseFp8({ ...situation, ...(capability ? { capability } : {}) });
}

/** The GPU's compute capability through the CUDA runtime; undefined when it cannot be read. */
export function queryCapability(deviceId: number): ComputeCapability | undefined {
  try {
    return cudaRuntime().capability(deviceId);
  } catch {
    return undefined;
  }
}
