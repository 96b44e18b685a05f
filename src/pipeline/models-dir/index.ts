/**
 * Model files as users have them: discovery of an SD3.5 set in a ComfyUI or diffusers folder,
 * weights by reference key whatever the layout, and tokenizer files.
 */
export { clipTokenizerConfig, clipTokenizerJson, parseMerges } from '../text/clip-tokenizer-json.js';
export {
  hasTokenizer,
  readTokenizerFiles,
  type TokenizerFiles,
  type TokenizerKind,
  tokenizerIdCount,
} from '../text/tokenizer-files.js';
export { type DiscoverOptions, discoverModelSet, pullNameFor } from './discover.js';
export { familyOf, type MmditShape, mmditShape } from './family.js';
export type * from './types.js';
export { validateModelSet } from './validate.js';
export { ComponentWeights } from './weight-source.js';
