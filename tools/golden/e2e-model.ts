/**
 * Part of tools/golden/make_golden.py: writes the end-to-end model of the project's own golden
 * set, the bundled tiny SD3.5 (src/pipeline/tiny) at a reduced size, into the folder given:
 *   npx tsx tools/golden/e2e-model.ts DIR
 * The reference then computes every output from these weights and tokenizers.
 */

import { TINY_MODEL_CONFIG, type TinyModelConfig } from '../../src/pipeline/tiny/config.js';
import { writeTinyModel } from '../../src/pipeline/tiny/generate.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: tsx tools/golden/e2e-model.ts DIR');

/**
 * The tiny model's structure, smaller: one joint block, a 12×12 patch grid, a lighter VAE. Its
 * MMDiT, VAE and CLIP encoders are also the golden set's mmdit_large, vae, clip_l and clip_g
 * weights, so the VAE keeps a change of width (64 channels at the top level, 32 below: the
 * ResNet blocks' nin_shortcut in both directions) at the least size GroupNorm's 32 groups allow.
 */
const GOLDEN_E2E_CONFIG: TinyModelConfig = {
  ...TINY_MODEL_CONFIG,
  seed: 35_000_077,
  mmdit: { ...TINY_MODEL_CONFIG.mmdit, depth: 1, posEmbedMaxSize: 12 },
  vae: { ch: 32, chMult: [2, 1, 1, 1], numResBlocks: 1 },
};

writeTinyModel(dir, GOLDEN_E2E_CONFIG);
console.log(JSON.stringify(GOLDEN_E2E_CONFIG));
