/** Options of the in-process SD3.5 engine (serialisable: they cross into the pipeline process). */
import type { ExecutionProvider } from '../onnx/session.js';
import type { MemoryCalibration } from './gpu-memory.js';

/**
 * `fp8` and `fp8-weights` both keep e4m3 weights; they differ in how the MMDiT's linear layers use
 * them (fp8-choice.ts): `fp8` runs W8A8 where it can, `fp8-weights` always weight-only.
 */
export type Precision = 'fp8' | 'fp8-weights' | 'fp16' | 'fp32';

export interface EngineOptions {
  /** Models folder (ComfyUI layout or a diffusers folder). */
  modelsDir: string;
  /** Checkpoint file name or path inside `modelsDir/checkpoints`; the first SD3.5 checkpoint when absent. */
  checkpoint?: string;
  /** Text encoder file names under text_encoders/ chosen by the operator (found by name otherwise). */
  textEncoders?: { clipL?: string | null; clipG?: string | null; t5?: string | null };
  /** Data dir: graph cache, quantized weights, tokenizers. */
  dataDir: string;
  /** Where built graphs are cached; @default <dataDir>/graphs */
  graphCacheDir?: string;
  /**
   * Weight storage: `fp8` keeps e4m3 weights one byte (quantizing fp16/bf16 checkpoints once at
   * load) and runs the MMDiT's linear layers as W8A8 (our atelier:Fp8Linear on FP8 tensor cores)
   * where the GPU, the C-API path and our op library allow it, weight-only elsewhere (the reason in
   * PipelineInfo.fp8); `fp8-weights` keeps the same weights and always runs weight-only; `fp16`
   * dequantizes fp8 checkpoints; `fp32` computes in float32 everywhere.
   * @default 'fp8' on CUDA, 'fp32' on the CPU
   */
  precision?: Precision;
  /** @default 'cpu' */
  provider?: ExecutionProvider;
  /** @default 0 */
  deviceId?: number;
  /** CPU threads for ONNX Runtime; @default its own choice */
  threads?: number;
  /** Tokenizer folders, when not found beside the models or in the data dir. */
  tokenizers?: { clip?: string; t5?: string };
  /**
   * Hyperparameters that checkpoints do not store (attention heads of tiny test models); real
   * SD3.5 files need none.
   */
  overrides?: {
    clip_l?: { heads?: number };
    clip_g?: { heads?: number };
    t5?: { heads?: number };
  };
  /**
   * The type graphs compute in; tests use float16 on the CPU to cover the CUDA graphs' path.
   * @default 'float16' on CUDA (unless precision is fp32), else 'float32'
   */
  compute?: 'float32' | 'float16';
  /**
   * How fp8 linear weights are used (see Net), chosen by hand (benchmarks, tests) instead of by
   * `precision`: `block-fp8` keeps them one byte on the GPU (com.microsoft
   * MatMulBlockQuantizedFp8Weight, CUDA only), `dequantize` dequantizes them in the graph, `w8a8`
   * runs our atelier:Fp8Linear in the C-API step (also on the CPU's reference kernels).
   * @default what `precision` chooses (fp8-choice.ts); weight-only: 'block-fp8' on CUDA, else 'dequantize'
   */
  fp8Linear?: 'dequantize' | 'block-fp8' | 'w8a8';
  /**
   * Research (issue 10), not a config choice: the C-API step graph's attention as atelier:Fp8Attention
   * (q, k, v in e4m3, cuDNN's FP8 flash attention; NetOptions.fp8Attention), when our op library is
   * loaded. Also turned on by `ATELIER_FP8_ATTENTION=1` in the pipeline's environment (benchmarks).
   * @default false
   */
  fp8Attention?: boolean;
  /**
   * Issue 10 (not a config choice): the C-API step graph's attention as atelier:FlashAttention
   * (FlashAttention-3 on Hopper; attention-choice.ts says when it is chosen). Undefined: where the GPU
   * and our library allow; `false` (or `ATELIER_FLASH_ATTENTION=0` in the pipeline's environment)
   * keeps ONNX Runtime's MultiHeadAttention, for measurements; `true` (or `=1`) asks for the op
   * wherever the library is loaded (on the CPU, its float32 reference: tests).
   */
  flashAttention?: boolean;
  /**
   * Issue 10 (not a config choice): how many denoising steps the C-API loop keeps queued on the GPU.
   * 2 (the default on CUDA): the step sessions run on a CUDA stream of our own (the provider's
   * user_compute_stream) with an event per binding, so step i + 1 is queued while step i runs and the
   * GPU does not wait for the host between steps. 1 (or `ATELIER_STEP_QUEUE=1` in the pipeline's
   * environment; always on the CPU): step i + 1 is issued when step i is done, before its report.
   */
  stepQueue?: 1 | 2;
  /**
   * Issue 10 (not a config choice): the C-API step's W8A8 GEMMs with cuBLASLt's fast accumulation
   * (NetOptions.fp8FastAccumulation): SD3.5 Large 1024² 2.739 → 2.581 s on the H200, 1–2.3e-3 more
   * error per layer against the 2.6e-2 that quantizing the activations costs. `false` (or
   * `ATELIER_FP8_FAST_ACCUM=0` in the pipeline's environment) keeps cuBLASLt's exact float32
   * promotion, for measurements. @default true
   */
  fp8FastAccumulation?: boolean;
  /**
   * Issue 10 (not a config choice): the C-API step's W8A8 MLPs per tensor (NetOptions.fp8MlpHandoff:
   * the norm quantizes fc1's input with a delayed per-tensor scale, fc1 writes e4m3 codes for fc2
   * itself, both in cuBLASLt's scalar-scale mode) where the weights have one scale per tensor. SD3.5
   * Large 1024² 2.505 → 2.412 s on the H200 with the GEMM autotuning (the op library's
   * ATELIER_GEMM_AUTOTUNE, on by default); the demo model's caption scores within a point of fp16.
   * `false` (or `ATELIER_FP8_MLP_HANDOFF=0` in the pipeline's environment) keeps per-token
   * activations, for measurements. @default true
   */
  fp8MlpHandoff?: boolean;
  /**
   * Issue 10, step 8 (not a config choice): the C-API step graph with the gated residual fused into
   * the next norm (atelier:AdaLNResidual / AdaLNResidualQuant) and joint attention's output split
   * and quantized in one pass (atelier:JointSplitQuant). Exact on the CPU, bit-identical to the
   * separate chains on the H200 (capi-check `residual-norm`, `token-split`), Large W8A8 2.834 →
   * 2.652 s. `false` (or `ATELIER_STEP_FUSIONS=0`) builds the separate chains, for measurements.
   * @default true
   */
  stepFusions?: boolean;
  /**
   * The VAE's compute type. float32 is safe for SD3's VAE at any size; float16 halves its
   * activations (less peak GPU memory) at the risk of overflow on real weights.
   * @default 'float32'
   */
  vaeCompute?: 'float32' | 'float16';
  /**
   * Tiled VAE decode (see vae-tile-policy.ts): `auto` tiles when `vaeMemoryBudget` is set and the
   * untiled decode's estimate exceeds it, `always` tiles every image larger than one tile, `never`
   * decodes whole. @default 'auto' (without a budget: never tiled)
   */
  vaeTiling?: 'auto' | 'always' | 'never';
  /**
   * Bytes the VAE decode's activations may take; @default derived from `gpuMemoryLimit` (or the
   * free GPU memory) by gpu-memory.ts, none on the CPU: unlimited.
   */
  vaeMemoryBudget?: number;
  /**
   * GPU memory the process may use, in bytes (models.gpuMemoryLimit): split between the sessions'
   * arenas (`gpu_mem_limit`, `kSameAsRequested`; every CUDA session then opens through the C API),
   * and jobs that would not fit are refused. @default none (unlimited)
   */
  gpuMemoryLimit?: number;
  /**
   * Where the text encoders run: `gpu` (resident, fastest), `cpu-encoders` (CLIP-L, CLIP-G, T5 on
   * the CPU provider in float32), `auto` (the GPU when the estimate fits the limit or the free
   * memory, else the CPU). @default 'auto'
   */
  placement?: 'auto' | 'gpu' | 'cpu-encoders';
  /**
   * Most images denoised together (tests, benchmarks); a job of more runs in passes. The GPU memory
   * plan may allow fewer. @default what the memory plan allows (no limit on the CPU)
   */
  maxImagesPerPass?: number;
  /** The GPU's free bytes, instead of asking nvidia-smi at load (tests). */
  gpuFreeBytes?: number;
  /**
   * Benchmarks: GPU figures measured in the same run (overhead, MMDiT activations per image, text
   * arenas) that replace gpu-memory.ts's constants in the plan: placement, arena caps, what fits.
   * @default the constants
   */
  memoryCalibration?: MemoryCalibration;
  /**
   * `capi` opens the text encoders' and the VAE's sessions (and the stock path's MMDiT) through
   * ONNX Runtime's C API on any provider (tests, benchmarks); `auto` only where the CUDA options
   * need it (a memory limit). @default 'auto'
   */
  sessionApi?: 'auto' | 'capi';
  /** Tile side and least overlap in latent pixels; @default { size: 64, overlap: 16 } */
  vaeTile?: { size?: number; overlap?: number };
  /**
   * Tile sessions: `dynamic` runs the tiles through the whole-image decoder (every tile of an image
   * has one shape, so it sees one shape per image size); `static` opens a second session built for
   * the tile's exact shape, which costs a second copy of the VAE's weights and a second arena beside
   * the whole-image decoder's (measure it on the GPU before making it CUDA's default). @default 'dynamic'
   */
  vaeTileSession?: 'static' | 'dynamic';
  /**
   * Bytes of prompt embeddings (CLIP-L, CLIP-G, T5 → the conditioning of a prompt and its negative)
   * kept for rerolls and variations, least recently used evicted first; 0 turns the cache off.
   * @default 64 MiB (about a dozen SD3.5 prompt pairs of 154 tokens)
   */
  promptCacheBytes?: number;
  /** Research only (benchmarks): static fp8 activation scale, see NetOptions.fp8ActivationScale. */
  fp8ActivationScale?: number;
  /** Benchmarks: write an ONNX Runtime profile of the MMDiT here (ended when the engine is disposed). */
  profileDir?: string;
  /**
   * The denoising path: `capi` drives ONNX Runtime's C API (device-resident loop, CUDA graphs,
   * custom ops), `stock` onnxruntime-node's session.run, `auto` the C API where it loads and the
   * stock path otherwise (with the reason in PipelineInfo.runtime). @default 'auto'
   */
  runtime?: 'auto' | 'capi' | 'stock';
  /** Most denoising steps a job may ask for (the C-API step graph's table); @default 100 */
  maxSteps?: number;
  /**
   * Image shapes (size × count × prompt length) the C-API path keeps loaded at once; each holds
   * its own session and weights. @default 1
   */
  capiShapes?: number;
  /**
   * A folder holding ONNX Runtime 1.29.0's `libonnxruntime.so.1` and, for CUDA, its provider
   * libraries, run instead of onnxruntime-node's copy (loaded by the pipeline process before
   * onnxruntime-node). @default onnxruntime-node's own
   */
  onnxRuntimeDir?: string;
  /** Custom-op library to load into the denoiser's sessions (C-API path); @default the built one, if any */
  customOpsLibrary?: string | null;
  /** Flow-matching shift; @default 3.0 (every released SD3.5 model) */
  shift?: number;
  /**
   * LoRAs (config `loras.*`): the folder their files are in, and how many combinations stay merged
   * and loaded beside the model's own weights (each a copy of the layers its LoRAs change).
   * @default { dir: <dataDir>/loras, cachedCombinations: 2 }
   */
  loras?: { dir: string; cachedCombinations?: number };
}
