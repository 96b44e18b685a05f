/**
 * The few CUDA runtime calls the C-API path needs to move data between host memory and tensors that
 * ONNX Runtime allocated on the GPU, to learn what the GPU can do, and to know when one denoising
 * step of several queued is done (a stream of our own for ONNX Runtime, events recorded on it).
 * libcudart is loaded only when first needed (a CUDA tensor copied, the capability asked), from the
 * library path the CUDA provider itself uses (LD_LIBRARY_PATH).
 */
import koffi from 'koffi';

const HOST_TO_DEVICE = 1;
const DEVICE_TO_HOST = 2;
/** cudaDeviceAttr values (cuda_runtime_api.h). */
const COMPUTE_CAPABILITY_MAJOR = 75;
const COMPUTE_CAPABILITY_MINOR = 76;
const STREAM_NON_BLOCKING = 1;
const EVENT_DISABLE_TIMING = 2;
const NAMES = ['libcudart.so.13', 'libcudart.so.12', 'libcudart.so'];

/** A GPU's compute capability: 9.0 is Hopper (sm_90), 8.9 Ada, 8.6 Ampere's consumer cards. */
export interface ComputeCapability {
  major: number;
  minor: number;
}

export interface CudaRuntime {
  copyToDevice(device: bigint, host: Uint8Array): void;
  copyToHost(host: Uint8Array, device: bigint): void;
  /** Two attribute reads (cudaDeviceGetAttribute): no context is created, nothing is allocated. */
  capability(deviceId: number): ComputeCapability;
  /** A non-blocking stream on `deviceId` (for the CUDA provider's user_compute_stream). */
  createStream(deviceId: number): bigint;
  /** cudaStreamDestroy: only once nothing will queue work on it (its sessions released). */
  destroyStream(stream: bigint): void;
  /** An event without timing (cudaEventDisableTiming) on `deviceId`. */
  createEvent(deviceId: number): bigint;
  destroyEvent(event: bigint): void;
  /** cudaEventRecord: the event completes when the stream's work queued so far has. */
  recordEvent(event: bigint, stream: bigint): void;
  /** cudaEventSynchronize on a koffi worker thread, off the event loop. */
  waitEvent(event: bigint): Promise<void>;
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
  const getAttribute = lib.func('int cudaDeviceGetAttribute(_Out_ int* value, int attr, int device)') as (
    value: number[],
    attr: number,
    device: number,
  ) => number;
  const errorString = lib.func('const char* cudaGetErrorString(int error)') as (e: number) => string;
  // Streams and events are opaque pointers: carried as 64-bit integers.
  const setDevice = lib.func('int cudaSetDevice(int device)') as (d: number) => number;
  const streamCreate = lib.func(
    'int cudaStreamCreateWithFlags(_Out_ uint64_t* stream, unsigned int flags)',
  ) as (out: bigint[], flags: number) => number;
  const eventCreate = lib.func('int cudaEventCreateWithFlags(_Out_ uint64_t* event, unsigned int flags)') as (
    out: bigint[],
    flags: number,
  ) => number;
  const streamDestroy = lib.func('int cudaStreamDestroy(uint64_t stream)') as (s: bigint) => number;
  const eventDestroy = lib.func('int cudaEventDestroy(uint64_t event)') as (e: bigint) => number;
  const eventRecord = lib.func('int cudaEventRecord(uint64_t event, uint64_t stream)') as (
    e: bigint,
    s: bigint,
  ) => number;
  const eventSynchronize = lib.func('int cudaEventSynchronize(uint64_t event)') as {
    async: (e: bigint, done: (error: unknown, code: number) => void) => void;
  };
  const check = (what: string, code: number) => {
    if (code !== 0) throw new Error(`CUDA ${what} failed: ${errorString(code)} (${code})`);
  };
  /** A stream or event made on `deviceId` by `create`, which writes its handle into `out`. */
  const createOn = (deviceId: number, what: string, create: (out: bigint[]) => number) => {
    check(`selecting device ${deviceId}`, setDevice(deviceId));
    const out = [0n];
    check(`creating ${what}`, create(out));
    return BigInt(out[0]!);
  };
  loaded = {
    library: lib,
    copyToDevice: (device, host) =>
      check('copy to the GPU', memcpy(device, host, host.byteLength, HOST_TO_DEVICE)),
    copyToHost: (host, device) =>
      check('copy from the GPU', memcpy(host, device, host.byteLength, DEVICE_TO_HOST)),
    capability: (deviceId) => {
      const major = [0];
      const minor = [0];
      check(
        `reading device ${deviceId}'s compute capability`,
        getAttribute(major, COMPUTE_CAPABILITY_MAJOR, deviceId),
      );
      check(
        `reading device ${deviceId}'s compute capability`,
        getAttribute(minor, COMPUTE_CAPABILITY_MINOR, deviceId),
      );
      return { major: major[0]!, minor: minor[0]! };
    },
    createStream: (deviceId) =>
      createOn(deviceId, 'a stream', (out) => streamCreate(out, STREAM_NON_BLOCKING)),
    destroyStream: (stream) => check('destroying a stream', streamDestroy(stream)),
    createEvent: (deviceId) =>
      createOn(deviceId, 'an event', (out) => eventCreate(out, EVENT_DISABLE_TIMING)),
    destroyEvent: (event) => check('destroying an event', eventDestroy(event)),
    recordEvent: (event, stream) => check('recording an event', eventRecord(event, stream)),
    waitEvent: (event) =>
      new Promise((resolve, reject) =>
        eventSynchronize.async(event, (error, code) => {
          if (error) reject(error);
          else if (code !== 0)
            reject(new Error(`CUDA waiting for an event failed: ${errorString(code)} (${code})`));
          else resolve();
        }),
      ),
  };
  return loaded;
}
