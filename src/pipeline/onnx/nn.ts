/**
 * Layers shared by the model files, as one object so each op is chosen in one place (like
 * tinygrad's alias line): `net.linear` is THE function every linear layer goes through, so the
 * FP8 route (dequantize-then-matmul, or a fused fp8-weight matmul on CUDA) changes here alone.
 */
import { ATELIER_DOMAIN, type Dim, type GraphBuilder, MS_DOMAIN, ONNX_DTYPE, type Value } from './graph.js';
import type { Params } from './params.js';

export interface NetOptions {
  /**
   * Attention kernel: com.microsoft MultiHeadAttention (cuDNN's flash kernel on CUDA), plain
   * MatMul/Softmax, or `flash` = atelier:FlashAttention (FlashAttention-3 on Hopper, a float32
   * reference on the CPU; needs `customOps`, and is used for unbiased attention only, the rest
   * falling back to MultiHeadAttention).
   */
  attention: 'mha' | 'basic' | 'flash';
  /**
   * How fp8-stored linear weights are used: `dequantize` = DequantizeLinear → MatMul (fp8 stays one
   * byte in the file, the provider may fold it to the compute type); `block-fp8` = the CUDA
   * contrib op that keeps weights fp8 on the GPU.
   */
  fp8Linear: 'dequantize' | 'block-fp8' | 'w8a8';
  /**
   * Research only (benchmarks): quantize activations to fp8 with this static scale inside
   * MatMulBlockQuantizedFp8Weight (W8A8, block 128), which lets ONNX Runtime use fp8 tensor
   * cores where its build has DeepGEMM (ORT_FP8_MATMUL_DEEPGEMM=1). Without per-layer calibrated
   * scales this loses accuracy, so the product never sets it.
   */
  fp8ActivationScale?: number;
  /**
   * Kernels from our custom-op library (native/, domain `atelier`): one AdaLNModulate node per
   * modulated LayerNorm, one JointConcat node per token concatenation (concatTokens), one
   * JointQkvNorm node per joint attention whose q and k have an RMSNorm (jointQkvNorm). Only set on
   * the C-API path, which loads the library into the session; ONNX Runtime refuses such a graph
   * without it. @default false
   */
  customOps?: boolean;
  /**
   * How W8A8 layers (`fp8Linear: 'w8a8'` with `customOps`) get their e4m3 activations when they read
   * a modulated norm (`Net.modulated`): `fused` = one atelier:AdaLNModulateQuant node computes the norm
   * and writes it quantized per token, the layer is atelier:Fp8LinearQ (no pass of its own over x);
   * `separate` = AdaLNModulate writes the norm in float16 and Fp8Linear quantizes it. The two give
   * the same bits. @default 'fused'
   */
  fp8Producers?: 'fused' | 'separate';
  /**
   * How the MMDiT's attention gets q, k and v when its checkpoint has the qk RMSNorm (ln_q, ln_k)
   * and `customOps` is on: `fused` = one atelier:JointQkvNorm node per attention splits the qkv
   * projections, normalises q and k per head and concatenates the streams' tokens in one pass;
   * `separate` = Split, a SimplifiedLayerNormalization per q and k, JointConcat per q, k and v (as
   * before the op existed, to measure both). The two give the same bits. @default 'fused'
   */
  qkvNorm?: 'fused' | 'separate';
  /**
   * How a gated residual x + gate·y (`Net.gatedResidual`) whose first reader is a modulated norm is
   * built, with `customOps`: `fused` = one node writes the residual and the norm, atelier:AdaLNResidual
   * (the norm in the compute type) or, for a W8A8 layer with `fp8Producers: 'fused'`,
   * atelier:AdaLNResidualQuant (its e4m3 codes); `separate` = Mul, Add, then the norm's own node.
   * With `fused`, MMDiT-X's two gated residuals in a row (x + gate·attn + gate2·attn2) are one such
   * node with a second branch: no Mul and Add of their own for the first sum either.
   * The two give the same bits (on the GPU; ORT's CPU provider runs float16 Mul and Add in float32).
   * @default 'fused'
   */
  residualNorm?: 'fused' | 'separate';
  /**
   * Two modulations of one norm paired by `Net.pairNorms` (MMDiT-X's attn and attn2 read norm1(x)
   * with their own shift and scale), both read by W8A8 layers, with `fp8Producers: 'fused'`: `fused`
   * = one atelier:AdaLNModulateQuant / AdaLNResidualQuant node writes both (shift2, scale2 → x8_2,
   * act_scale_2: the row read and normalised once); `separate` = a node each. The two give the same
   * bits. @default 'fused'
   */
  pairedNorms?: 'fused' | 'separate';
  /**
   * How W8A8 layers read a tensor many of them share (`Net.sharedRows`: the MMDiT's SiLU(c), read by
   * every block's adaLN modulation), with `fp8Producers: 'fused'`: `fused` = its rows quantized once
   * (one atelier:JointSplitQuant with no context tokens) and each layer an atelier:Fp8LinearQ;
   * `separate` = each Fp8Linear quantizes it again. The two give the same bits. @default 'fused'
   */
  sharedRows?: 'fused' | 'separate';
  /**
   * How W8A8 layers read one stream's tokens of joint attention's output (`Net.splitTokens`), with
   * `fp8Producers: 'fused'`: `fused` = one atelier:JointSplitQuant node per attention writes both
   * streams' e4m3 codes and scales in one pass and the layers are atelier:Fp8LinearQ; `separate` = a
   * Slice per stream, each quantized by its Fp8Linear. The two give the same bits. @default 'fused'
   */
  tokenSplit?: 'fused' | 'separate';
  /**
   * Research (issue 10, not yet for users): every unbiased attention (`Net.attention`) as one
   * atelier:Fp8Attention node (needs `customOps`): q, k and v quantized per tensor to e4m3 on the
   * device and cuDNN's FP8 flash attention on Hopper (native/src/fp8_attention.h); float16 in and
   * out (a float32 graph casts around it). Off unless asked for (EngineOptions.fp8Attention or
   * ATELIER_FP8_ATTENTION=1) until the GPU check (capi-check `fp8-attention`) says it is good.
   * @default false
   */
  fp8Attention?: boolean;
  /**
   * Measurement (issue 10, not yet for users): W8A8 layers ask cuBLASLt for fast accumulation
   * (`fast_accumulation: 1` on every atelier:Fp8Linear / Fp8LinearQ node): Hopper's FP8 tensor
   * cores keep their partial sums without the periodic promotion to float32, which the GEMM
   * check measured 5–28 % faster per GEMM call at an error of 1–2.3e-3 against the float64 W8A8 math
   * (the quantization itself costs 2.6e-2). The CPU kernels compute the exact math either way.
   * @default false
   */
  fp8FastAccumulation?: boolean;
  /**
   * Issue 10's per-tensor MLP (the default on the C-API path: EngineOptions.fp8MlpHandoff). In an
   * MLP whose fc1 and fc2 are both W8A8 layers (`Net.mlp`) with one weight scale per tensor
   * (ComfyUI's scaled fp8, Atelier's load-time quantization) and which reads a fused modulated norm,
   * the MLP's activations are quantized per tensor with a delayed scale (the amax of the last 16
   * calls × 2, as Transformer Engine's delayed scaling; native/src/fp8_linear.h): the norm's kernel
   * writes fc1's input so (`act_scaling: "delayed_tensor"`), fc1 writes its GELU output as e4m3 codes
   * for fc2 (`output: "e4m3_delayed"`), and both layers run in cuBLASLt's scalar-scale mode
   * (`scaling: "tensor"`), the one mode in which fc1 writes e4m3 itself: neither fc1's float16
   * output nor a quantize pass over it exists on the GPU. Other MLPs (per-row weight scales, as LoRA
   * merges write them) keep per-token activations. @default false
   */
  fp8MlpHandoff?: boolean;
}

/**
 * x + gate·y, an adaLN block's gated residual (mmditx.py's `x + gate.unsqueeze(1) * attn`), not yet in
 * the graph (`Net.gatedResidual`): when the next thing to read it is a modulated norm, one fused node
 * writes both; otherwise Mul and Add (`Net.residual`). Built once.
 */
export class GatedResidual {
  /** The tensor, once built. */
  value?: Value;

  constructor(
    readonly x: Residual,
    readonly gate: Value,
    readonly y: Value,
    /**
     * A second gated branch added to x + gate·y (MMDiT-X's `+ gate_msa2 · attn2`), which only
     * `Net.gatedResidual` makes: the fused norm then makes both sums in one pass.
     */
    readonly second?: { gate: Value; y: Value },
  ) {}
}

/** A block's residual stream: a tensor, or a gated residual not yet built (GatedResidual). */
export type Residual = Value | GatedResidual;

/**
 * modulate(LayerNorm(x), shift, scale) of an adaLN block, not yet in the graph (`Net.modulated`):
 * the layer that reads it decides how it is built. A W8A8 linear layer takes it quantized from one
 * fused node; anything else gets it as a tensor (`Net.value`). Each form is built once per norm,
 * however many layers read it.
 */
export class ModulatedNorm {
  /** The tensor, once something asked for it. */
  value?: Value;
  /** e4m3 codes [B, T, C] and float32 scales [B, T], once a W8A8 layer asked for them. */
  quantized?: [Value, Value];
  /** The same quantized per tensor with a delayed scale (the per-tensor MLP), once asked for. */
  quantizedPerTensor?: [Value, Value];
  /** Another modulation of the same norm (`Net.pairNorms`): quantized per token with this one. */
  pair?: ModulatedNorm;

  constructor(
    readonly x: Residual,
    readonly shift: Value,
    readonly scale: Value,
    readonly dim: number,
    readonly eps: number,
  ) {}
}

/** Joint attention's output and the context's token count, split by `Net.splitTokens`. */
class JointSplit {
  /** Codes and scales of the context's, then the image's tokens, once a W8A8 layer asked. */
  quantized?: Value[];

  constructor(
    readonly joint: Value,
    readonly contextTokens: Value,
  ) {}
}

/**
 * One stream's tokens of joint attention's output (block_mixing's `attn[:, :Tc]`, `attn[:, Tc:]`), not
 * yet in the graph (`Net.splitTokens`): a W8A8 layer reads them quantized from one
 * atelier:JointSplitQuant node shared by both streams; anything else gets a Slice (`Net.value`).
 */
export class TokenRange {
  /** The tensor, once something asked for it. */
  value?: Value;

  constructor(
    readonly split: JointSplit,
    readonly part: 'context' | 'x',
  ) {}
}

/**
 * Activations a W8A8 producer already quantized: e4m3 codes and their per-row scales (fc1's output
 * handed to fc2, `Net.mlp`). Only W8A8 layers read them.
 */
export class Fp8Activations {
  constructor(
    readonly x8: Value,
    readonly scale: Value,
  ) {}
}

/**
 * A [rows, dim] tensor that many linear layers read (the MMDiT's SiLU(c): every adaLN modulation's
 * input), left for them to build (`Net.sharedRows`): W8A8 layers read its rows quantized once.
 */
export class SharedRows {
  /** e4m3 codes [rows, 1, dim] and float32 scales [rows, 1], once a W8A8 layer asked for them. */
  codes?: [Value, Value];

  constructor(readonly x: Value) {}
}

/**
 * What linear layers read: a tensor, a modulated norm they may fuse with (ModulatedNorm), a
 * stream's tokens of joint attention's output (TokenRange), e4m3 codes (Fp8Activations, W8A8
 * layers only), or a tensor many layers read (SharedRows).
 */
export type LinearInput = Value | ModulatedNorm | TokenRange | Fp8Activations | SharedRows;

export const DEFAULT_NET_OPTIONS: NetOptions = { attention: 'mha', fp8Linear: 'dequantize' };

export class Net {
  readonly #ints = new Map<string, Value>();

  constructor(
    readonly g: GraphBuilder,
    readonly p: Params,
    readonly options: NetOptions = DEFAULT_NET_OPTIONS,
  ) {}

  get compute(): 'float32' | 'float16' {
    return this.p.compute;
  }

  // ---- graph inputs and outputs --------------------------------------------------------------

  /**
   * A float graph input. Inputs and outputs are float32 whatever the compute type: a float16
   * graph casts on the device, so the host never converts tensors element by element in
   * JavaScript (that cost ~10 ms per denoising step at 1024²).
   */
  floatInput(name: string, dims: Dim[]): Value {
    const x = this.g.input(name, 'float32', dims);
    return this.compute === 'float32' ? x : this.cast(x, 'float16');
  }

  floatOutput(value: Value, name: string, dims: Dim[]): void {
    this.g.output(this.compute === 'float32' ? value : this.cast(value, 'float32'), name, 'float32', dims);
  }

  // ---- constants and shapes ------------------------------------------------------------------

  ints(values: number[]): Value {
    const key = values.join(',');
    let v = this.#ints.get(key);
    if (!v) {
      v = this.g.constant('i64', 'int64', [values.length], BigInt64Array.from(values.map(BigInt)));
      this.#ints.set(key, v);
    }
    return v;
  }

  scalarInt(value: number): Value {
    return this.g.constant('i64', 'int64', [], BigInt64Array.from([BigInt(value)]));
  }

  /** A float constant tensor in the compute type. */
  floats(dims: number[], values: Float32Array): Value {
    const c = this.g.constant('f32', 'float32', dims, values);
    return this.compute === 'float32' ? c : this.cast(c, 'float16');
  }

  scalar(x: number): Value {
    return this.p.scalar(x);
  }

  reshape(x: Value, shape: number[]): Value {
    return this.g.op('Reshape', [x, this.ints(shape)]);
  }

  transpose(x: Value, perm: number[]): Value {
    return this.g.op('Transpose', [x], { perm });
  }

  cast(x: Value, to: 'float32' | 'float16' | 'int64'): Value {
    return this.g.op('Cast', [x], { to: ONNX_DTYPE[to] });
  }

  concat(values: Value[], axis: number): Value {
    return this.g.op('Concat', values, { axis });
  }

  /**
   * Token sequences `a` [batch, Ta, C] then `b` [batch, Tb, C] as one [batch, Ta + Tb, C] (joint
   * attention's context and image tokens). With `customOps` one atelier:JointConcat node: ONNX
   * Runtime's CUDA Concat of inputs of unequal length uploads per-run metadata from pinned host
   * memory into fresh GPU buffers, which breaks CUDA-graph capture; JointConcat's kernel needs
   * nothing but its launch parameters. Otherwise Concat along axis 1.
   */
  concatTokens(a: Value, b: Value): Value {
    if (this.options.customOps) return this.g.op('JointConcat', [a, b], {}, ATELIER_DOMAIN);
    return this.concat([a, b], 1);
  }

  /**
   * Joint attention's q, k and v [batch, Tc + Tx, heads·headDim] from the two streams' qkv
   * projections `context` [batch, Tc, 3·heads·headDim] and `x` [batch, Tx, 3·heads·headDim], in one
   * atelier:JointQkvNorm node (needs `customOps`): split into q, k, v, the RMSNorm of each head of q
   * and k with its stream's weights (`norm`: the ln_q and ln_k weight keys), and the token
   * concatenation, context first. The same bits as `chunk`, `rmsNorm` per head and `concatTokens`
   * (it rounds as SimplifiedLayerNormalization does), in one kernel that reads the projections once
   * and writes q, k and v once, where those make nine kernels move the data three times. Without
   * `context` the tokens are x's alone (an empty context, Tc = 0: MMDiT-X's attn2).
   */
  jointQkvNorm(
    context: { qkv: Value; norm: [lnQ: string, lnK: string] } | undefined,
    x: { qkv: Value; norm: [lnQ: string, lnK: string] },
    heads: number,
    eps: number,
  ): [q: Value, k: Value, v: Value] {
    // Tc = 0: x's own projection sliced to no tokens ([batch, 0, 3C]) and its weights, never read.
    const ctx = context ?? { qkv: this.slice(x.qkv, 1, 0, 0), norm: x.norm };
    const weights = [...ctx.norm, ...x.norm].map((key) => this.p.get(key));
    const [q, k, v] = this.g.opMulti(
      'JointQkvNorm',
      [ctx.qkv, x.qkv, ...weights],
      3,
      { heads, epsilon: { float: eps } },
      ATELIER_DOMAIN,
    );
    return [q, k, v];
  }

  /** Slices `x` along `axis` from `start` (inclusive) to `end` (exclusive). */
  slice(x: Value, axis: number, start: number, end: number): Value {
    return this.g.op('Slice', [x, this.ints([start]), this.ints([end]), this.ints([axis])]);
  }

  /** Splits the last-but-given axis into `parts` equal chunks. */
  chunk(x: Value, parts: number, axis: number): Value[] {
    return this.g.opMulti('Split', [x], parts, { axis, num_outputs: parts });
  }

  unsqueeze(x: Value, axes: number[]): Value {
    return this.g.op('Unsqueeze', [x, this.ints(axes)]);
  }

  add(a: Value, b: Value): Value {
    return this.g.op('Add', [a, b]);
  }

  sub(a: Value, b: Value): Value {
    return this.g.op('Sub', [a, b]);
  }

  mul(a: Value, b: Value): Value {
    return this.g.op('Mul', [a, b]);
  }

  div(a: Value, b: Value): Value {
    return this.g.op('Div', [a, b]);
  }

  matmul(a: Value, b: Value): Value {
    return this.g.op('MatMul', [a, b]);
  }

  // ---- layers --------------------------------------------------------------------------------

  /**
   * y = x · Wᵀ + b for the checkpoint layer `prefix` (`prefix.weight` [out, in], optional
   * `prefix.bias`). `x` may be a modulated norm not yet built (Net.modulated): a W8A8 layer then
   * reads it quantized from the norm's own kernel.
   */
  linear(input: LinearInput, prefix: string): Value {
    const biasKey = `${prefix}.bias`;
    const bias = this.p.has(biasKey) ? this.p.get(biasKey) : undefined;
    if (input instanceof SharedRows && this.#isW8a8(prefix) && this.#quantizesSharedRows()) {
      // [rows, 1, N] from the codes [rows, 1, dim], back to [rows, N] (a Reshape moves no data).
      const y = this.#w8a8Linear(new Fp8Activations(...this.#sharedCodes(input)), prefix, bias);
      return this.g.op('Reshape', [y, this.ints([0, -1])]);
    }
    if (this.#isW8a8(prefix)) return this.#w8a8Linear(input, prefix, bias);
    const x = this.value(input);
    if (this.#isFp8(prefix) && this.options.fp8Linear === 'block-fp8')
      return this.#fp8Linear(x, prefix, bias);
    const y = this.#matmul(x, prefix);
    return bias ? this.add(y, bias) : y;
  }

  /**
   * gelu(x · Wᵀ + b): the bias add and the activation run as one kernel (com.microsoft FastGelu
   * for the tanh approximation, BiasGelu for the exact form) instead of two passes over the
   * MLP's widest tensor.
   */
  linearGelu(input: LinearInput, prefix: string, approximate: 'none' | 'tanh'): Value {
    const biasKey = `${prefix}.bias`;
    if (!this.p.has(biasKey)) return this.gelu(this.linear(input, prefix), approximate);
    // FP8 GEMMs apply the bias and the tanh GELU in their epilogue.
    if (this.#isW8a8(prefix) && approximate === 'tanh')
      return this.#w8a8Linear(input, prefix, this.p.get(biasKey), 'gelu_tanh');
    const x = this.value(input);
    const y =
      this.#isFp8(prefix) && this.options.fp8Linear === 'block-fp8'
        ? this.#fp8Linear(x, prefix)
        : this.#matmul(x, prefix);
    const bias = this.p.get(biasKey);
    return approximate === 'tanh'
      ? this.g.op('FastGelu', [y, bias], {}, MS_DOMAIN)
      : this.g.op('BiasGelu', [y, bias], {}, MS_DOMAIN);
  }

  /**
   * fc2(gelu(fc1(x))), the transformer MLP with the tanh GELU (`fc1`, `fc2`: checkpoint layer
   * prefixes): per tensor in FP8 where NetOptions.fp8MlpHandoff and the weights and input allow it,
   * otherwise `linearGelu` then `linear`.
   */
  mlp(input: LinearInput, fc1: string, fc2: string): Value {
    const bias1 = `${fc1}.bias`;
    const perTensor =
      this.options.fp8MlpHandoff === true &&
      input instanceof ModulatedNorm &&
      this.options.fp8Producers !== 'separate' &&
      this.#isW8a8(fc1) &&
      this.#isW8a8(fc2) &&
      this.p.has(bias1) &&
      this.#hasTensorScale(fc1) &&
      this.#hasTensorScale(fc2);
    if (!perTensor) return this.linear(this.linearGelu(input, fc1, 'tanh'), fc2);
    const [y8, yScale] = this.#w8a8Node(
      new Fp8Activations(...this.#quantizedNormPerTensor(input)),
      fc1,
      this.p.get(bias1),
      'gelu_tanh',
      'e4m3_delayed',
      'tensor',
    );
    const bias2 = `${fc2}.bias`;
    const [y] = this.#w8a8Node(
      new Fp8Activations(y8!, yScale!),
      fc2,
      this.p.has(bias2) ? this.p.get(bias2) : undefined,
      undefined,
      undefined,
      'tensor',
    );
    return this.p.compute === 'float16' ? y! : this.g.op('Cast', [y!], { to: ONNX_DTYPE.float32 });
  }

  /** A tensor many linear layers read (SharedRows): W8A8 layers quantize its rows once. */
  sharedRows(x: Value): SharedRows {
    return new SharedRows(x);
  }

  #quantizesSharedRows(): boolean {
    return this.options.fp8Producers !== 'separate' && this.options.sharedRows !== 'separate';
  }

  /**
   * The codes and scales of a SharedRows' rows, from one atelier:JointSplitQuant over [rows, 1, dim]
   * with no context tokens (its image-stream outputs; float16 in: a float32 graph casts), built once:
   * the same per-row quantization Fp8Linear runs on its input.
   */
  #sharedCodes(s: SharedRows): [Value, Value] {
    if (!s.codes) {
      const x = this.p.compute === 'float16' ? s.x : this.cast(s.x, 'float16');
      const rows = this.unsqueeze(x, [1]);
      const [, , x8, scale] = this.g.opMulti(
        'JointSplitQuant',
        [rows, this.ints([0])],
        4,
        {},
        ATELIER_DOMAIN,
      );
      s.codes = [x8!, scale!];
    }
    return s.codes;
  }

  /** Whether the layer's fp8 weight has one scale for the whole tensor (not one per row). */
  #hasTensorScale(prefix: string): boolean {
    const key = `${prefix}.scale_weight`;
    const stored = this.p.has(key) ? this.p.readFloat32(key) : new Float32Array([1]);
    return stored.every((v) => v === stored[0]);
  }

  /** W8A8 runs e4m3 weights only (the GEMM's one FP8 weight type) and needs our op library. */
  #isW8a8(prefix: string): boolean {
    return (
      this.options.fp8Linear === 'w8a8' &&
      this.options.customOps === true &&
      this.p.storage(`${prefix}.weight`) === 'F8_E4M3'
    );
  }

  /**
   * W8A8 with our atelier:Fp8Linear: the activations are quantized to e4m3 per token at run time
   * and the GEMM runs on FP8 tensor cores (cuBLASLt) with per-channel × per-token scales, the bias
   * and the tanh GELU in its epilogue. The op reads and writes float16; a float32 graph casts.
   * A modulated norm as input (with `fp8Producers: 'fused'`, the default) is quantized by the norm's
   * own kernel (atelier:AdaLNModulateQuant, which rounds to float16 first, as the Cast here would)
   * and the layer is atelier:Fp8LinearQ: the same bits, one pass over the activations instead of three.
   */
  #w8a8Linear(input: LinearInput, prefix: string, bias: Value | undefined, activation?: 'gelu_tanh'): Value {
    const [y] = this.#w8a8Node(input, prefix, bias, activation);
    return this.p.compute === 'float16' ? y! : this.g.op('Cast', [y!], { to: ONNX_DTYPE.float32 });
  }

  /**
   * The atelier:Fp8Linear / Fp8LinearQ node of `#w8a8Linear`: its float16 y, or with `output`
   * 'e4m3_delayed' its e4m3 codes and per-row (one per-tensor) scales, [y8, y_scale].
   */
  #w8a8Node(
    input: LinearInput,
    prefix: string,
    bias: Value | undefined,
    activation?: 'gelu_tanh',
    output?: 'e4m3_delayed',
    scaling?: 'tensor',
  ): Value[] {
    const weightKey = `${prefix}.weight`;
    const [n] = this.p.shape(weightKey);
    const scales = this.g.constant('fp8_scale', 'float32', [n!], this.#rowScales(prefix, n!));
    const half = this.p.compute === 'float16';
    const toHalf = (v: Value) => (half ? v : this.g.op('Cast', [v], { to: ONNX_DTYPE.float16 }));
    const producers = this.options.fp8Producers !== 'separate';
    const fusedNorm = input instanceof ModulatedNorm && producers;
    const fusedRange = input instanceof TokenRange && producers && this.options.tokenSplit !== 'separate';
    const handedOff = input instanceof Fp8Activations;
    const fused = fusedNorm || fusedRange || handedOff;
    const activations = handedOff
      ? [input.x8, input.scale]
      : fusedNorm
        ? this.#quantizedNorm(input)
        : fusedRange
          ? this.#quantizedRange(input)
          : [toHalf(this.value(input as Value))];
    const inputs = [...activations, this.p.raw(weightKey), scales, ...(bias ? [toHalf(bias)] : [])];
    const op = fused ? 'Fp8LinearQ' : 'Fp8Linear';
    const attributes = {
      ...(activation ? { activation } : {}),
      ...(this.options.fp8FastAccumulation ? { fast_accumulation: 1 } : {}),
      ...(output ? { output } : {}),
      ...(scaling ? { scaling } : {}),
    };
    // e4m3_delayed: outputs y8 and y_scale, the float16 y (the op's first output) left out.
    return output
      ? this.g.opMulti(op, inputs, 3, attributes, ATELIER_DOMAIN, [0])
      : this.g.opMulti(op, inputs, 1, attributes, ATELIER_DOMAIN);
  }

  /** Each output row's dequantization scale: `scale_weight` (one per tensor, or per row), else 1. */
  #rowScales(prefix: string, n: number): Float32Array {
    const key = `${prefix}.scale_weight`;
    const stored = this.p.has(key) ? this.p.readFloat32(key) : new Float32Array([1]);
    return stored.length === n ? stored : new Float32Array(n).fill(stored[0]!);
  }

  #isFp8(prefix: string): boolean {
    const storage = this.p.storage(`${prefix}.weight`);
    return storage === 'F8_E4M3' || storage === 'F8_E5M2';
  }

  /** x · Wᵀ without the bias. */
  #matmul(x: Value, prefix: string): Value {
    const weightKey = `${prefix}.weight`;
    const w = this.#isFp8(prefix) ? this.#dequantized(prefix) : this.p.get(weightKey);
    return this.g.op('FusedMatMul', [x, w], { transB: 1 }, MS_DOMAIN);
  }

  /**
   * An fp8 weight dequantized in the graph: with ComfyUI's one scale per tensor, or with one scale
   * per output row (`scale_weight` [out], as LoRA merges write them: lora/merge.ts) along axis 0.
   */
  #dequantized(prefix: string): Value {
    const weightKey = `${prefix}.weight`;
    const scaleKey = `${prefix}.scale_weight`;
    const [n] = this.p.shape(weightKey);
    const scale = this.p.has(scaleKey) ? this.p.shape(scaleKey) : [];
    if (n! > 1 && scale.length === 1 && scale[0] === n) {
      return this.g.op('DequantizeLinear', [this.p.raw(weightKey), this.p.get(scaleKey)], { axis: 0 });
    }
    return this.g.op('DequantizeLinear', [this.p.raw(weightKey), this.p.fp8Scale(weightKey)]);
  }

  /**
   * CUDA: the weight stays one byte on the GPU and is dequantized block by block inside the
   * matmul (com.microsoft MatMulBlockQuantizedFp8Weight), the bias added in the same kernel. One
   * block per row (block_size = K) carries ComfyUI's per-tensor scale.
   */
  #fp8Linear(x: Value, prefix: string, bias?: Value): Value {
    const weightKey = `${prefix}.weight`;
    const [n, k] = this.p.shape(weightKey);
    const rows = this.#rowScales(prefix, n!);
    const actScale = this.options.fp8ActivationScale;
    // DeepGEMM's fp8 path wants 128-wide blocks; otherwise one block per row is enough.
    const block = actScale !== undefined && k % 128 === 0 ? 128 : k;
    const blocks = Math.ceil(k / block);
    const scales = this.g.constant(
      'fp8_scale',
      'float32',
      [n, blocks],
      blocks === 1
        ? rows
        : Float32Array.from({ length: n! * blocks }, (_, i) => rows[Math.floor(i / blocks)]!),
    );
    const aScale =
      actScale !== undefined && block === 128
        ? this.g.constant('fp8_act_scale', 'float32', [], new Float32Array([actScale]))
        : undefined;
    return this.g.op(
      'MatMulBlockQuantizedFp8Weight',
      [x, this.p.raw(weightKey), scales, aScale, bias],
      { block_size: block },
      MS_DOMAIN,
    );
  }

  /** LayerNorm over the last axis; without weights when the checkpoint has none (elementwise_affine=False). */
  layerNorm(x: Value, prefix: string | undefined, dim: number, eps: number): Value {
    const hasWeight = prefix !== undefined && this.p.has(`${prefix}.weight`);
    const scale = hasWeight ? this.p.get(`${prefix}.weight`) : this.#filled(dim, 1);
    // Always pass a bias: ONNX Runtime 1.29's SkipLayerNormFusion crashes (segfault at session
    // creation) on Add → LayerNormalization without one.
    const bias =
      hasWeight && this.p.has(`${prefix}.bias`) ? this.p.get(`${prefix}.bias`) : this.#filled(dim, 0);
    return this.g.op('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: { float: eps } });
  }

  readonly #normCache = new Map<string, Value>();

  /**
   * modulate(LayerNorm(x), shift, scale) as `modulatedNorm` computes it, left for its reader to
   * build (ModulatedNorm): what the MMDiT hands its qkv, fc1 and final linear layers.
   */
  modulated(x: Residual, shift: Value, scale: Value, dim: number, eps: number): ModulatedNorm {
    return new ModulatedNorm(x, shift, scale, dim, eps);
  }

  /**
   * Marks two modulations of the same norm (same x, width and epsilon) to be quantized by one node
   * when W8A8 layers read both (NetOptions.pairedNorms): the first one asked for makes both.
   */
  pairNorms(a: ModulatedNorm, b: ModulatedNorm): void {
    if (a.x !== b.x || a.dim !== b.dim || a.eps !== b.eps)
      throw new Error('pairNorms: the two modulations must be of the same norm (x, width and epsilon)');
    a.pair = b;
    b.pair = a;
  }

  /**
   * x + gate·y (gate [batch, 1, dim]), left for its first reader to build (GatedResidual). When x is
   * itself a one-branch gated residual not yet built and the norms fuse residuals, the two are one
   * GatedResidual of two branches: its norm then reads x once and never writes x + gate_x·y_x (two
   * passes over [B, T, C] per MMDiT-X dual block). x's own object stays unbuilt: a reader of it would
   * build its own Mul and Add (the MMDiT has none).
   */
  gatedResidual(x: Residual, gate: Value, y: Value): GatedResidual {
    if (x instanceof GatedResidual && !x.value && !x.second && this.#fusesResidualNorms())
      return new GatedResidual(x.x, x.gate, x.y, { gate, y });
    return new GatedResidual(x, gate, y);
  }

  /** Whether a modulated norm whose x is a gated residual not yet built makes the residual too. */
  #fusesResidualNorms(): boolean {
    return this.options.customOps === true && this.options.residualNorm !== 'separate';
  }

  /**
   * The tensor of a residual: a gated one is built (once) as Mul then Add, and a second branch as
   * another Mul and Add, the nodes a chain of one-branch residuals has.
   */
  residual(r: Residual): Value {
    if (!(r instanceof GatedResidual)) return r;
    if (!r.value) {
      const first = this.add(this.residual(r.x), this.mul(r.gate, r.y));
      r.value = r.second ? this.add(first, this.mul(r.second.gate, r.second.y)) : first;
    }
    return r.value;
  }

  /** AdaLNResidual(Quant)'s inputs: x, branch, gate, shift, scale, and branch2, gate2 if there are two. */
  #residualNormInputs(r: GatedResidual, m: ModulatedNorm): Value[] {
    const second = r.second ? [r.second.y, r.second.gate] : [];
    return [this.residual(r.x), r.y, r.gate, m.shift, m.scale, ...second];
  }

  /**
   * joint [batch, Tc + Tx, C]'s context tokens (the first `contextTokens`, int64 [1]) and image
   * tokens, left for their readers to build (TokenRange).
   */
  splitTokens(joint: Value, contextTokens: Value): [context: TokenRange, x: TokenRange] {
    const split = new JointSplit(joint, contextTokens);
    return [new TokenRange(split, 'context'), new TokenRange(split, 'x')];
  }

  /**
   * The tensor of a linear layer's input: a modulated norm is built (once) by `modulatedNorm`, a
   * token range is a Slice.
   */
  value(input: LinearInput): Value {
    if (input instanceof Fp8Activations)
      throw new Error('e4m3 activations (Fp8Activations) are read only by W8A8 layers');
    if (input instanceof SharedRows) return input.x;
    if (input instanceof TokenRange) {
      const { joint, contextTokens } = input.split;
      input.value ??=
        input.part === 'context'
          ? this.g.op('Slice', [joint, this.ints([0]), contextTokens, this.ints([1])])
          : this.g.op('Slice', [joint, contextTokens, this.ints([Number.MAX_SAFE_INTEGER]), this.ints([1])]);
      return input.value;
    }
    if (!(input instanceof ModulatedNorm)) return input;
    if (!input.value) {
      const r = input.x;
      if (r instanceof GatedResidual && !r.value && this.#fusesResidualNorms()) {
        // One atelier:AdaLNResidual node: the residual and its modulated norm in one pass.
        const inputs = this.#residualNormInputs(r, input);
        const attrs = { epsilon: { float: input.eps } };
        const [sum, y] = this.g.opMulti('AdaLNResidual', inputs, 2, attrs, ATELIER_DOMAIN);
        r.value = sum;
        input.value = y;
      } else {
        input.value = this.modulatedNorm(this.residual(r), input.shift, input.scale, input.dim, input.eps);
      }
    }
    return input.value;
  }

  /**
   * x8 and act_scale of a stream's tokens of joint attention's output, from the one
   * atelier:JointSplitQuant node of that attention (built once, float16 in: a float32 graph casts).
   */
  #quantizedRange(r: TokenRange): [Value, Value] {
    const split = r.split;
    if (!split.quantized) {
      const joint = this.p.compute === 'float16' ? split.joint : this.cast(split.joint, 'float16');
      split.quantized = this.g.opMulti(
        'JointSplitQuant',
        [joint, split.contextTokens],
        4,
        {},
        ATELIER_DOMAIN,
      );
    }
    const [cx8, cScale, xx8, xScale] = split.quantized;
    return r.part === 'context' ? [cx8!, cScale!] : [xx8!, xScale!];
  }

  /**
   * x8 and act_scale of a modulated norm, from one atelier:AdaLNModulateQuant node (built once); when
   * the norm's x is a gated residual not yet built (and `residualNorm` is not 'separate'), from one
   * atelier:AdaLNResidualQuant node that writes the residual too: x + gate·y is then not a Mul and an
   * Add of its own but the same bits, written in the norm's pass.
   */
  #quantizedNorm(m: ModulatedNorm): [Value, Value] {
    if (!m.quantized) {
      // Its partner's codes are made too, before its reader asks: MMDiT-X's attn and attn2 layers
      // are both W8A8 or neither (the same checkpoint storage).
      const pair =
        m.pair && !m.pair.quantized && this.options.pairedNorms !== 'separate' ? m.pair : undefined;
      const [x8, actScale, x8b, actScaleB] = this.#normQuantNode(m, {}, pair);
      m.quantized = [x8!, actScale!];
      if (pair) pair.quantized = [x8b!, actScaleB!];
    }
    return m.quantized;
  }

  /** The norm quantized with one delayed scale per tensor (the per-tensor MLP's input), built once. */
  #quantizedNormPerTensor(m: ModulatedNorm): [Value, Value] {
    if (!m.quantizedPerTensor) {
      const [x8, actScale] = this.#normQuantNode(m, { act_scaling: 'delayed_tensor' });
      m.quantizedPerTensor = [x8!, actScale!];
    }
    return m.quantizedPerTensor;
  }

  /**
   * The atelier:AdaLNModulateQuant / AdaLNResidualQuant node of a norm: [x8, act_scale], then with
   * `pair` (per token only) the paired modulation's [x8_2, act_scale_2] from the same node.
   */
  #normQuantNode(
    m: ModulatedNorm,
    scaling: { act_scaling?: 'delayed_tensor' },
    pair?: ModulatedNorm,
  ): Value[] {
    const attrs = { epsilon: { float: m.eps }, ...scaling };
    const second = pair ? [pair.shift, pair.scale] : [];
    const outputs = pair ? 2 : 0;
    const r = m.x;
    if (r instanceof GatedResidual && !r.value && this.#fusesResidualNorms()) {
      // shift2 and scale2 are inputs 7 and 8: an absent second branch leaves 5 and 6 empty.
      const inputs: (Value | undefined)[] = this.#residualNormInputs(r, m);
      if (pair) inputs.push(...Array(7 - inputs.length).fill(undefined), ...second);
      const [sum, ...codes] = this.g.opMulti(
        'AdaLNResidualQuant',
        inputs,
        3 + outputs,
        attrs,
        ATELIER_DOMAIN,
      );
      r.value = sum;
      return codes;
    }
    const inputs = [this.residual(r), m.shift, m.scale, ...second];
    return this.g.opMulti('AdaLNModulateQuant', inputs, 2 + outputs, attrs, ATELIER_DOMAIN);
  }

  /**
   * modulate(LayerNorm(x), shift, scale) of adaLN blocks: LayerNorm over the last axis (width
   * `dim`) without affine weights, biased variance, then · (1 + scale) + shift, with shift and scale
   * [batch, 1, dim]. With `customOps` one atelier:AdaLNModulate node (statistics in float32, one
   * rounding); otherwise stock ops, the LayerNorm of one `x` shared by all its modulations.
   */
  modulatedNorm(x: Value, shift: Value, scale: Value, dim: number, eps: number): Value {
    if (this.options.customOps)
      return this.g.op('AdaLNModulate', [x, shift, scale], { epsilon: { float: eps } }, ATELIER_DOMAIN);
    const key = `${x.name}:${dim}:${eps}`;
    let normed = this.#normCache.get(key);
    if (!normed) {
      normed = this.layerNorm(x, undefined, dim, eps);
      this.#normCache.set(key, normed);
    }
    return this.add(this.mul(normed, this.add(scale, this.scalar(1))), shift);
  }

  readonly #filledCache = new Map<string, Value>();

  /** A [dim] vector of one value in the compute type, shared across the graph. */
  #filled(dim: number, value: number): Value {
    const key = `${dim}:${value}`;
    let v = this.#filledCache.get(key);
    if (!v) {
      v = this.floats([dim], new Float32Array(dim).fill(value));
      this.#filledCache.set(key, v);
    }
    return v;
  }

  /**
   * RMSNorm over the last axis: x · rsqrt(mean(x²) + eps) · weight (weight optional), as one
   * kernel (SimplifiedLayerNormalization, ONNX Runtime's fused RMSNorm; it accumulates in float32).
   */
  rmsNorm(x: Value, weightKey: string | undefined, eps: number): Value {
    const scale = weightKey ? this.p.get(weightKey) : undefined;
    if (!scale) {
      const ms = this.g.op('ReduceMean', [this.mul(x, x), this.ints([-1])], { keepdims: 1 });
      return this.mul(x, this.g.op('Reciprocal', [this.g.op('Sqrt', [this.add(ms, this.scalar(eps))])]));
    }
    return this.g.op('SimplifiedLayerNormalization', [x, scale], { axis: -1, epsilon: { float: eps } });
  }

  gelu(x: Value, approximate: 'none' | 'tanh'): Value {
    return this.g.op('Gelu', [x], { approximate });
  }

  /** CLIP's quick_gelu: x · σ(1.702 x). */
  quickGelu(x: Value): Value {
    return this.mul(x, this.g.op('Sigmoid', [this.mul(x, this.scalar(1.702))]));
  }

  silu(x: Value): Value {
    return this.mul(x, this.g.op('Sigmoid', [x]));
  }

  /**
   * Scaled dot-product attention of q, k, v shaped [batch, seq, heads·headDim]; returns the same
   * shape. `bias` is added to the scores ([1 or batch, heads or 1, seqQ, seqK]); `scale` defaults to
   * 1/√headDim.
   */
  attention(
    q: Value,
    k: Value,
    v: Value,
    heads: number,
    headDim: number,
    opts: { bias?: Value; scale?: number } = {},
  ): Value {
    const scale = opts.scale ?? 1 / Math.sqrt(headDim);
    const ours = opts.bias ? undefined : this.#ourAttentionOp();
    if (ours) {
      // Our attention ops are float16 only: a float32 graph (the CPU) casts around them.
      const f32 = this.p.compute === 'float32';
      const half = (t: Value) => (f32 ? this.cast(t, 'float16') : t);
      const out = this.g.op(
        ours,
        [half(q), half(k), half(v)],
        { heads, scale: { float: scale } },
        ATELIER_DOMAIN,
      );
      return f32 ? this.cast(out, 'float32') : out;
    }
    if (this.options.attention !== 'basic') {
      return this.g.op(
        'MultiHeadAttention',
        [q, k, v, undefined, undefined, opts.bias],
        { num_heads: heads, scale: { float: scale } },
        MS_DOMAIN,
      );
    }
    const split = (t: Value) => this.transpose(this.reshape(t, [0, -1, heads, headDim]), [0, 2, 1, 3]);
    const kt = this.transpose(this.reshape(k, [0, -1, heads, headDim]), [0, 2, 3, 1]);
    let scores = this.mul(this.matmul(split(q), kt), this.scalar(scale));
    if (opts.bias) scores = this.add(scores, opts.bias);
    const out = this.matmul(this.g.op('Softmax', [scores], { axis: -1 }), split(v));
    return this.reshape(this.transpose(out, [0, 2, 1, 3]), [0, -1, heads * headDim]);
  }

  /** Which of our attention ops an unbiased attention is, if any (both need the custom-op library). */
  #ourAttentionOp(): 'Fp8Attention' | 'FlashAttention' | undefined {
    if (!this.options.customOps) return undefined;
    if (this.options.fp8Attention) return 'Fp8Attention';
    return this.options.attention === 'flash' ? 'FlashAttention' : undefined;
  }

  conv2d(x: Value, prefix: string, opts: { stride?: number; padding?: number } = {}): Value {
    const stride = opts.stride ?? 1;
    const pad = opts.padding ?? 0;
    const bias = this.p.has(`${prefix}.bias`) ? this.p.get(`${prefix}.bias`) : undefined;
    return this.g.op('Conv', [x, this.p.get(`${prefix}.weight`), bias], {
      strides: [stride, stride],
      pads: [pad, pad, pad, pad],
    });
  }

  /** GroupNorm over [N, C, H, W] with affine weights at `prefix` (torch.nn.GroupNorm). */
  groupNorm(x: Value, prefix: string, groups: number, channels: number, eps: number): Value {
    const grouped = this.reshape(x, [0, groups, -1]);
    const mean = this.g.op('ReduceMean', [grouped, this.ints([-1])], { keepdims: 1 });
    const centered = this.sub(grouped, mean);
    const variance = this.g.op('ReduceMean', [this.mul(centered, centered), this.ints([-1])], {
      keepdims: 1,
    });
    const normalized = this.div(centered, this.g.op('Sqrt', [this.add(variance, this.scalar(eps))]));
    const back = this.g.op('Reshape', [normalized, this.g.op('Shape', [x])]);
    const w = this.reshape(this.p.get(`${prefix}.weight`), [channels, 1, 1]);
    const b = this.reshape(this.p.get(`${prefix}.bias`), [channels, 1, 1]);
    return this.add(this.mul(back, w), b);
  }
}
