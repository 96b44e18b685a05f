import { describe, expect, it } from 'vitest';
import { chooseRuntime } from '../../src/pipeline/sd35/runtime-choice.js';

// The choice itself needs no GPU: it loads ONNX Runtime's C library (the same file on every
// provider) and looks for our op library; the CUDA provider is only touched by the sessions.
describe('chooseRuntime', () => {
  it('takes the C API with CUDA graphs on CUDA when our op library is there', () => {
    expect(
      chooseRuntime({ runtime: 'auto', customOpsLibrary: '/opt/ops/libatelier_ops_cuda.so' }, 'cuda'),
    ).toEqual({
      path: 'capi',
      customOpsLibrary: '/opt/ops/libatelier_ops_cuda.so',
    });
  });

  it('keeps the stock path on CUDA without our op library, and says how to get it', () => {
    const choice = chooseRuntime({ runtime: 'auto', customOpsLibrary: null }, 'cuda');
    expect(choice.path).toBe('stock');
    expect(choice.reason).toMatch(/no cuda custom-op library is built \(npm run build:native, needs nvcc\)/);
  });

  it('keeps the stock path on the CPU unless the C API is asked for', () => {
    expect(chooseRuntime({ runtime: 'auto', customOpsLibrary: null }, 'cpu')).toMatchObject({
      path: 'stock',
      reason: expect.stringContaining('auto on the CPU'),
    });
    expect(chooseRuntime({ runtime: 'capi', customOpsLibrary: null }, 'cpu').path).toBe('capi');
  });

  it('runs the C API without our kernels when told to leave them out', () => {
    expect(chooseRuntime({ runtime: 'capi', customOpsLibrary: null }, 'cuda')).toEqual({ path: 'capi' });
    expect(chooseRuntime({ runtime: 'stock' }, 'cuda')).toEqual({
      path: 'stock',
      reason: 'models.runtime is stock',
    });
  });
});
