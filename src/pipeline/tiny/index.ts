/** The bundled tiny model: a small SD3.5-shaped set with its own tokenizers, generated on first use. */
export { TINY_CHECKPOINT, TINY_MODEL_CONFIG, TINY_MODEL_VERSION, type TinyModelConfig } from './config.js';
export { ensureTinyModel, TINY_MODEL_FILES, TINY_MODEL_NAME, writeTinyModel } from './generate.js';
