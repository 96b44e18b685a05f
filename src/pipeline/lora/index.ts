/**
 * LoRAs for the SD3.5 MMDiT: key formats (formats.ts), the merge into a copy of the weights
 * (merge.ts), the cache of merged combinations (variants.ts) and A1111's file hash (hash.ts).
 */

export { floatToBf16 } from '../weights/dtypes.js';
export { LoraError, SUPPORTED_LORA_FORMATS } from './errors.js';
export { type LoraFile, type LoraPair, type LoraTarget, loraModules, readLoraFile } from './formats.js';
export { addnetHash, shortLoraHash } from './hash.js';
export { type LoraUse, mergeLoras, readWeight } from './merge.js';
export { estimatedMergeMs, mergeKernelFor } from './merge-kernel.js';
export {
  cachedCombinationsOf,
  DEFAULT_CACHED_COMBINATIONS,
  type Denoiser,
  type LoraHost,
  type LoraVariant,
  LoraVariants,
  type LoraVariantsOptions,
} from './variants.js';
