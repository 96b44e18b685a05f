/** Errors cross the process boundary as plain data and come back as the same typed errors. */
import { AtelierError, asAtelierError, CancelledError, ModelError, PipelineError } from '../../errors.js';
import type { SerializedError } from './protocol.js';

export function serializeError(error: unknown): SerializedError {
  const e = asAtelierError(error);
  return {
    name: e.name,
    code: e.code,
    message: e.message,
    userMessage: e.userMessage,
    file: e instanceof ModelError ? e.file : undefined,
  };
}

export function deserializeError(data: SerializedError): AtelierError {
  switch (data.code) {
    case 'CANCELLED':
      return new CancelledError(data.message);
    case 'MODEL':
      return new ModelError(data.file ?? 'model', data.message);
    case 'PIPELINE':
    case 'UNKNOWN':
      return new PipelineError(data.message, data.userMessage);
    default:
      return new AtelierError(data.code as AtelierError['code'], data.message, data.userMessage);
  }
}
