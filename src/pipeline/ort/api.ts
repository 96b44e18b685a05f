/**
 * The slots of ONNX Runtime's `OrtApi` table that Atelier calls, each named once with its index and C
 * prototype. The table is append-only across releases (ONNX Runtime asserts that older slots never
 * move), so these indices hold for API 29 — ONNX Runtime 1.29, the version library.ts insists on.
 * Every handle (OrtEnv*, OrtSession*, …) is an opaque `void*`, which koffi hands over as a bigint.
 */
import koffi from 'koffi';

/** Status-returning functions answer `OrtStatus*`: null on success. */
export const SLOTS = {
  CreateEnv: [3, 'void* f(int level, const char* logid, _Out_ void** out)'],
  CreateSessionFromArray: [
    8,
    'void* f(void* env, const void* data, size_t length, void* options, _Out_ void** out)',
  ],
  CreateSessionOptions: [10, 'void* f(_Out_ void** out)'],
  EnableProfiling: [14, 'void* f(void* options, const char* prefix)'],
  SetSessionLogSeverityLevel: [22, 'void* f(void* options, int level)'],
  SetSessionGraphOptimizationLevel: [23, 'void* f(void* options, int level)'],
  SetIntraOpNumThreads: [24, 'void* f(void* options, int threads)'],
  SessionGetInputCount: [30, 'void* f(void* session, _Out_ size_t* out)'],
  SessionGetOutputCount: [31, 'void* f(void* session, _Out_ size_t* out)'],
  SessionGetInputName: [36, 'void* f(void* session, size_t index, void* allocator, _Out_ void** out)'],
  SessionGetOutputName: [37, 'void* f(void* session, size_t index, void* allocator, _Out_ void** out)'],
  CreateRunOptions: [39, 'void* f(_Out_ void** out)'],
  CreateTensorAsOrtValue: [
    48,
    'void* f(void* allocator, const int64_t* shape, size_t rank, int type, _Out_ void** out)',
  ],
  CreateTensorWithDataAsOrtValue: [
    49,
    'void* f(void* info, void* data, size_t bytes, const int64_t* shape, size_t rank, int type, _Out_ void** out)',
  ],
  GetTensorMutableData: [51, 'void* f(void* value, _Out_ void** out)'],
  GetTensorElementType: [60, 'void* f(void* info, _Out_ int* out)'],
  GetDimensionsCount: [61, 'void* f(void* info, _Out_ size_t* out)'],
  GetDimensions: [62, 'void* f(void* info, _Out_ int64_t* dims, size_t rank)'],
  GetTensorTypeAndShape: [65, 'void* f(void* value, _Out_ void** out)'],
  CreateMemoryInfo: [
    68,
    'void* f(const char* name, int allocator, int device, int memType, _Out_ void** out)',
  ],
  CreateCpuMemoryInfo: [69, 'void* f(int allocator, int memType, _Out_ void** out)'],
  MemoryInfoGetName: [71, 'void* f(void* info, _Out_ const char** out)'],
  AllocatorFree: [76, 'void* f(void* allocator, void* p)'],
  GetAllocatorWithDefaultOptions: [78, 'void* f(_Out_ void** out)'],
  ReleaseEnv: [92, 'void f(void* env)'],
  ReleaseStatus: [93, 'void f(void* status)'],
  ReleaseMemoryInfo: [94, 'void f(void* info)'],
  ReleaseSession: [95, 'void f(void* session)'],
  ReleaseValue: [96, 'void f(void* value)'],
  ReleaseRunOptions: [97, 'void f(void* options)'],
  ReleaseTensorTypeAndShapeInfo: [99, 'void f(void* info)'],
  ReleaseSessionOptions: [100, 'void f(void* options)'],
  AddSessionConfigEntry: [130, 'void* f(void* options, const char* key, const char* value)'],
  CreateAllocator: [131, 'void* f(void* session, void* info, _Out_ void** out)'],
  ReleaseAllocator: [132, 'void f(void* allocator)'],
  RunWithBinding: [133, 'void* f(void* session, void* runOptions, void* binding)'],
  CreateIoBinding: [134, 'void* f(void* session, _Out_ void** out)'],
  ReleaseIoBinding: [135, 'void f(void* binding)'],
  BindInput: [136, 'void* f(void* binding, const char* name, void* value)'],
  BindOutput: [137, 'void* f(void* binding, const char* name, void* value)'],
  BindOutputToDevice: [138, 'void* f(void* binding, const char* name, void* memoryInfo)'],
  GetBoundOutputValues: [
    140,
    'void* f(void* binding, void* allocator, _Out_ void** values, _Out_ size_t* count)',
  ],
  ClearBoundInputs: [141, 'void f(void* binding)'],
  ClearBoundOutputs: [142, 'void f(void* binding)'],
  AddRunConfigEntry: [165, 'void* f(void* options, const char* key, const char* value)'],
  GetTensorMemoryInfo: [194, 'void* f(void* value, _Out_ void** out)'],
  SynchronizeBoundInputs: [202, 'void* f(void* binding)'],
  SynchronizeBoundOutputs: [203, 'void* f(void* binding)'],
  SessionOptionsAppendExecutionProvider_CUDA_V2: [204, 'void* f(void* options, void* cudaOptions)'],
  CreateCUDAProviderOptions: [205, 'void* f(_Out_ void** out)'],
  UpdateCUDAProviderOptions: [
    206,
    'void* f(void* cudaOptions, const char** keys, const char** values, size_t count)',
  ],
  GetCUDAProviderOptionsAsString: [207, 'void* f(void* cudaOptions, void* allocator, _Out_ void** out)'],
  ReleaseCUDAProviderOptions: [208, 'void f(void* cudaOptions)'],
  RegisterCustomOpsLibrary_V2: [228, 'void* f(void* options, const char* path)'],
  // OrtKeyValuePairs (API 22) and an allocator's statistics (API 23): the arenas' high-water marks.
  GetKeyValuePairs: [298, 'void f(void* kvps, _Out_ void** keys, _Out_ void** values, _Out_ size_t* count)'],
  ReleaseKeyValuePairs: [300, 'void f(void* kvps)'],
  AllocatorGetStats: [319, 'void* f(void* allocator, _Out_ void** out)'],
  GetErrorCode: [1, 'int f(void* status)'],
  GetErrorMessage: [2, 'const char* f(void* status)'],
} as const;

export type SlotName = keyof typeof SLOTS;

/** A decoded C function: synchronous call, plus `.async(...args, callback)` on a worker thread. */
export type NativeFunction = ((...args: unknown[]) => unknown) & {
  async: (...args: unknown[]) => void;
};

export type OrtApiTable = Record<SlotName, NativeFunction>;

/** koffi's type names are process-wide: each prototype is declared once. */
type Prototype = ReturnType<typeof koffi.proto>;
const prototypes = new Map<string, Prototype>();
export function prototype(name: string, declaration: string): Prototype {
  let type = prototypes.get(name);
  if (!type) {
    type = koffi.proto(declaration.replace(' f(', ` ${name}(`));
    prototypes.set(name, type);
  }
  return type;
}

/** Reads each slot's function pointer out of the table at `api` and gives it its prototype. */
export function decodeApiTable(api: unknown): OrtApiTable {
  const table = {} as OrtApiTable;
  for (const [name, [index, declaration]] of Object.entries(SLOTS) as [
    SlotName,
    (typeof SLOTS)[SlotName],
  ][]) {
    const type = prototype(`Ort${name}`, declaration);
    const pointer = koffi.decode(api, index * koffi.sizeof('void*'), 'void*');
    if (!pointer) throw new Error(`ONNX Runtime's API table has no function in slot ${index} (${name})`);
    table[name] = koffi.decode(pointer, type) as NativeFunction;
  }
  return table;
}
