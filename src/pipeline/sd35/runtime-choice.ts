/**
 * Which path runs the denoising loop, decided once at load (and shown by `atelier doctor`): the
 * C API where it can run, onnxruntime-node's stock path otherwise, always with the reason.
 */
import { ModelError } from '../../errors.js';
import { builtCustomOpsLibrary } from '../ort/custom-ops.js';
import { loadOrtLibrary } from '../ort/index.js';
import type { EngineOptions } from './options.js';

export interface RuntimeChoice {
  path: 'capi' | 'stock';
  /** Why the faster path (or our kernels) is not in use. */
  reason?: string;
  /** The custom-op library the C-API sessions load. */
  customOpsLibrary?: string;
}

/**
 * Which path denoises. `capi` takes the C API (refused with the reason when ONNX Runtime's C library
 * does not load or is another version); `stock` takes onnxruntime-node's path. `auto` takes the C
 * API on CUDA when our custom-op library is built (its JointConcat is what lets the step capture as
 * a CUDA graph; on the H200 the captured step was 14–37 % faster than the stock path at every size
 * and precision, with the same images: bench/NOTES.md, issue 9), and the stock path on the CPU,
 * where there is no graph to capture and the stock path is the one measured.
 */
export function chooseRuntime(
  options: Pick<EngineOptions, 'runtime' | 'customOpsLibrary'>,
  provider: string,
): RuntimeChoice {
  const asked = options.runtime ?? 'auto';
  if (asked === 'stock') return { path: 'stock', reason: 'models.runtime is stock' };
  const kind = provider === 'cuda' ? 'cuda' : 'cpu';
  if (asked === 'auto' && kind === 'cpu')
    return {
      path: 'stock',
      reason:
        'models.runtime is auto on the CPU: the C-API path pays off with CUDA graphs (models.runtime: capi runs it anyway)',
    };
  try {
    loadOrtLibrary();
  } catch (error) {
    if (asked === 'capi')
      throw new ModelError('models.runtime', `models.runtime is capi, but ${(error as Error).message}`);
    return { path: 'stock', reason: (error as Error).message };
  }
  const customOpsLibrary = customOpsLibraryOf(options, kind);
  if (asked === 'auto' && !customOpsLibrary)
    return {
      path: 'stock',
      reason: `models.runtime is auto, but no ${kind} custom-op library is built (npm run build:native, needs nvcc): without it the C-API step cannot capture CUDA graphs`,
    };
  if (options.customOpsLibrary === undefined && !customOpsLibrary)
    return {
      path: 'capi',
      reason: `no ${kind} custom-op library is built (npm run build:native): stock kernels`,
    };
  return { path: 'capi', customOpsLibrary };
}

/** The op library the C-API sessions load: the one named, none when told (null), else the built one. */
export function customOpsLibraryOf(
  options: Pick<EngineOptions, 'customOpsLibrary'>,
  kind: 'cpu' | 'cuda',
): string | undefined {
  return options.customOpsLibrary === null
    ? undefined
    : (options.customOpsLibrary ?? builtCustomOpsLibrary(kind));
}
