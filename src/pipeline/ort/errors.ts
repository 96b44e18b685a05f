/** Errors of the C-API binding: ONNX Runtime's own status codes and messages, typed. */

/** ONNX Runtime's OrtErrorCode values, by name (onnxruntime_c_api.h, append-only). */
const ERROR_CODES = [
  'OK',
  'FAIL',
  'INVALID_ARGUMENT',
  'NO_SUCHFILE',
  'NO_MODEL',
  'ENGINE_ERROR',
  'RUNTIME_EXCEPTION',
  'INVALID_PROTOBUF',
  'MODEL_LOADED',
  'NOT_IMPLEMENTED',
  'INVALID_GRAPH',
  'EP_FAIL',
  'MODEL_LOAD_CANCELED',
  'MODEL_REQUIRES_COMPILATION',
  'NOT_FOUND',
] as const;

/** A call into ONNX Runtime failed; `message` is ONNX Runtime's own, prefixed with the call. */
export class OrtError extends Error {
  override readonly name = 'OrtError';
  /** ONNX Runtime's error code name, e.g. `INVALID_ARGUMENT`. */
  readonly code: string;

  constructor(
    readonly call: string,
    codeNumber: number,
    readonly ortMessage: string,
  ) {
    super(`${call}: ${ortMessage}`);
    this.code = ERROR_CODES[codeNumber] ?? `CODE_${codeNumber}`;
  }
}

/** The ONNX Runtime library is missing, or is not the version this binding's slot table is for. */
export class OrtLibraryError extends Error {
  override readonly name = 'OrtLibraryError';
}
