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
 * does not load or is another version); `stock` and, for now, `auto` take onnxruntime-node's path:
 * the C-API path's CUDA-graph capture failed on the H200 at 1024² (ONNX Runtime's Concat of unequal
 * inputs; bench/NOTES.md, issue 9), so it stays opt-in until a GPU run shows it capturing and
 * matching the stock images at every size.
 */
export function chooseRuntime(
  options: Pick<EngineOptions, 'runtime' | 'customOpsLibrary'>,
  provider: string,
): RuntimeChoice {
  const asked = options.runtime ?? 'auto';
  if (asked === 'stock') return { path: 'stock', reason: 'models.runtime is stock' };
  if (asked === 'auto')
    return {
      path: 'stock',
      reason: `models.runtime is auto: the C-API path is opt-in (models.runtime: capi) until its CUDA graphs are verified at every size`,
    };
  try {
    loadOrtLibrary();
  } catch (error) {
    if (asked === 'capi')
      throw new ModelError('models.runtime', `models.runtime is capi, but ${(error as Error).message}`);
    return { path: 'stock', reason: (error as Error).message };
  }
  const kind = provider === 'cuda' ? 'cuda' : 'cpu';
  const customOpsLibrary =
    options.customOpsLibrary === null ? undefined : (options.customOpsLibrary ?? builtCustomOpsLibrary(kind));
  if (options.customOpsLibrary === undefined && !customOpsLibrary)
    return {
      path: 'capi',
      reason: `no ${kind} custom-op library is built (npm run build:native): stock kernels`,
    };
  return { path: 'capi', customOpsLibrary };
}
