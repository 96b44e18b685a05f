/**
 * ONNX Runtime's C API from Node (koffi over onnxruntime-node's own libonnxruntime): sessions with
 * the CUDA provider's full options, custom-op libraries, device tensors and IO bindings run off the
 * event loop. Only ONNX Runtime 1.29.0 is accepted (library.ts). The stock path (onnxruntime-node's
 * JavaScript API) stays in ../onnx/session.ts.
 */
export { Binding, type BindingRunOptions } from './binding.js';
export { OrtError, OrtLibraryError } from './errors.js';
export {
  loadOrtLibrary,
  ORT_API_VERSION,
  ORT_VERSION,
  onnxRuntimeDirFiles,
  useOnnxRuntimeDir,
} from './library.js';
export { ortRuntime } from './runtime.js';
export { type ArenaStats, arenaStatsFrom, CapiSession, type CapiSessionOptions } from './session.js';
export { DeviceTensor, type ElementType, type HostTensor, type TensorData } from './tensor.js';
