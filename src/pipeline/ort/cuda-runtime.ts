/**
 * The few CUDA runtime calls the C-API path needs to move data between host memory and tensors that
 * ONNX Runtime allocated on the GPU. libcudart is loaded only when a CUDA tensor is first copied, from
 * the library path the CUDA provider itself uses (LD_LIBRARY_PATH).
 */
import koffi from 'koffi';

const HOST_TO_DEVICE = 1;
const DEVICE_TO_HOST = 2;
const NAMES = ['libcudart.so.13', 'libcudart.so.12', 'libcudart.so'];

export interface CudaRuntime {
  copyToDevice(device: bigint, host: Uint8Array): void;
  copyToHost(host: Uint8Array, device: bigint): void;
}

/** Holds the library too: koffi unloads a library whose handle is collected. */
let loaded: (CudaRuntime & { library: unknown }) | undefined;

export function cudaRuntime(): CudaRuntime {
  if (loaded) return loaded;
  let lib: ReturnType<typeof koffi.load> | undefined;
  const errors: string[] = [];
  for (const name of NAMES) {
    try {
      lib = koffi.load(name);
      break;
    } catch (error) {
      errors.push(`${name}: ${(error as Error).message}`);
    }
  }
  if (!lib) throw new Error(`The CUDA runtime library could not be loaded (${errors.join('; ')})`);
  const memcpy = lib.func('int cudaMemcpy(void* dst, void* src, size_t count, int kind)') as (
    ...a: unknown[]
  ) => number;
  const errorString = lib.func('const char* cudaGetErrorString(int error)') as (e: number) => string;
  const check = (what: string, code: number) => {
    if (code !== 0) throw new Error(`CUDA ${what} failed: ${errorString(code)} (${code})`);
  };
  loaded = {
    library: lib,
    copyToDevice: (device, host) =>
      check('copy to the GPU', memcpy(device, host, host.byteLength, HOST_TO_DEVICE)),
    copyToHost: (host, device) =>
      check('copy from the GPU', memcpy(host, device, host.byteLength, DEVICE_TO_HOST)),
  };
  return loaded;
}
