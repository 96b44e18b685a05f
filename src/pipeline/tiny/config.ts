/**
 * The bundled tiny model: an SD3.5-shaped set small enough to generate in well under a second and
 * to run on a CPU in tests and `npm start`. Its weights are random, so its images are noise; what
 * it proves is that every part of the pipeline runs on the real structure and key names.
 *
 * Widths follow the real models' rules where the graphs derive them from shapes, as the
 * reference's BaseModel does: the MMDiT is 64 wide per block with one head per block, the joint
 * context is as wide as T5 and as wide as CLIP-L + CLIP-G side by side, and the pooled vector is
 * CLIP-L's width plus CLIP-G's projection.
 */

export interface TinyModelConfig {
  /** Seed of every tensor (each tensor draws from its own stream, seeded by this and its name). */
  seed: number;
  mmdit: {
    /** Joint blocks. Hidden width = 64 · depth and heads = depth, as the reference derives them. */
    depth: number;
    patchSize: number;
    /** Latent channels of the SD3 VAE. */
    latentChannels: number;
    /** Side of the learned position grid, in patches: the largest image side is this · patchSize · 8 pixels. */
    posEmbedMaxSize: number;
    /** MLP width = mlpRatio · hidden. */
    mlpRatio: number;
    /** Width of the sinusoidal timestep features fed to t_embedder (256 in SD3). */
    frequencyEmbeddingSize: number;
  };
  vae: {
    /** Base channels; must be a multiple of 32 (the VAE's GroupNorm has 32 groups). */
    ch: number;
    /** Channel multiplier per resolution level; 4 levels give the 8× downscale of the real VAE. */
    chMult: number[];
    /** ResNet blocks per level in the encoder (the decoder has one more, as in the reference). */
    numResBlocks: number;
  };
  clipL: ClipTextConfig;
  clipG: ClipTextConfig & { projectionDim: number };
  t5: {
    dModel: number;
    dFf: number;
    numHeads: number;
    /** Width of each head: q/k/v project to numHeads · dKv. */
    dKv: number;
    numLayers: number;
    relativeAttentionNumBuckets: number;
  };
  tokenizers: {
    /** BPE merges learned for the CLIP tokenizer (its vocabulary: 512 byte tokens + merges + 2 special). */
    clipMerges: number;
    /** Whole-word pieces of the T5 tokenizer (beside single characters and the 3 special tokens). */
    t5Words: number;
  };
}

export interface ClipTextConfig {
  hiddenSize: number;
  intermediateSize: number;
  /** Not stored in the weights: the graph reads it from the file's metadata (`atelier.config`). */
  numAttentionHeads: number;
  numHiddenLayers: number;
  hiddenAct: 'quick_gelu' | 'gelu';
  /** CLIP's context length. */
  maxPositionEmbeddings: number;
}

export const TINY_MODEL_CONFIG: TinyModelConfig = {
  seed: 35_000_001,
  mmdit: {
    depth: 2, // hidden 128, 2 heads of 64 (the real head width, so qk RMSNorm weights are [64])
    patchSize: 2,
    latentChannels: 16,
    posEmbedMaxSize: 96, // up to 1536 px a side: every SD3.5 aspect ratio preset fits
    mlpRatio: 4,
    frequencyEmbeddingSize: 256,
  },
  vae: {
    ch: 32,
    chMult: [1, 2, 2, 2], // 32 → 64 → 64 → 64 channels (real: 128 · [1, 2, 4, 4])
    numResBlocks: 1,
  },
  clipL: {
    hiddenSize: 32,
    intermediateSize: 64,
    numAttentionHeads: 2,
    numHiddenLayers: 3, // penultimate layer = layer 1
    hiddenAct: 'quick_gelu',
    maxPositionEmbeddings: 77,
  },
  clipG: {
    hiddenSize: 32,
    intermediateSize: 96,
    numAttentionHeads: 4,
    numHiddenLayers: 4,
    hiddenAct: 'gelu',
    maxPositionEmbeddings: 77,
    projectionDim: 32,
  },
  t5: {
    dModel: 64, // = CLIP-L + CLIP-G widths: the joint context needs no zero padding
    dFf: 96,
    numHeads: 4,
    dKv: 16,
    numLayers: 2,
    relativeAttentionNumBuckets: 32,
  },
  tokenizers: { clipMerges: 320, t5Words: 200 },
};

/** Bump when the generator's output changes: an older tiny model on disk is then regenerated. */
export const TINY_MODEL_VERSION = 1;

export const TINY_CHECKPOINT = 'atelier-tiny-sd35.safetensors';
