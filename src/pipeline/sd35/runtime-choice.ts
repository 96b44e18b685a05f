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
 * Which path denoises: `auto` takes the C API on CUDA when ONNX Runtime's C library loads and is
 * the expected version, the stock path otherwise (with the reason); the CPU stays on the stock path
 * unless `capi` is asked for (tests).
 */
export function chooseRuntime(
  options: Pick<EngineOptions, 'runtime' | 'customOpsLibrary'>,
  provider: string,
): RuntimeChoice {
  const asked = options.runtime ?? 'auto';
  if (asked === 'stock') return { path: 'stock', reason: 'models.runtime is stock' };
  if (asked === 'auto' && provider !== 'cuda')
    return { path: 'stock', reason: 'the C-API path is for CUDA (models.runtime: capi forces it)' };
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
