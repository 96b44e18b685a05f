/**
 * Issue 9's GPU checks of the C-API path, first thing on the GPU machine (well under a minute):
 *   binding      the binding loads ONNX Runtime 1.29.0 and the CUDA provider through the V2 options
 *   adaln-fp16   atelier:AdaLNModulate (our custom-op library) vs the stock LayerNorm+Mul+Add graph
 *   adaln-fp32     and both vs a float64 reference, fresh random inputs at SD3.5 Large's shape
 *   adaln-graph  the op inside a captured CUDA graph, replayed with new inputs written in place
 *   mha          MultiHeadAttention as Net.attention builds it (batch 2, 4429 tokens, 38×64, fp16),
 *                with ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO=1: which kernel ONNX Runtime picked
 * and, only when named (--only fp8), issue 10's FP8 GEMM checks:
 *   fp8-gemm-fc1 atelier:Fp8Linear (W8A8, per-token activation scales, cuBLASLt) at SD3.5 Large's
 *   fp8-gemm-fc2   MLP and qkv shapes (8858 tokens): each variant (outer_vector, with fast
 *   fp8-gemm-qkv   accumulation, fp32_output) and the stock fp16 GEMM, timed as CUDA-graph replays,
 *                against float64 references of sampled rows; the first variant also replayed with
 *                its input rewritten in place (ATELIER_OPS_VERBOSE=1: each kernel's cuBLASLt plan)
 *   fp8-fused    (only when named) the fused producer: AdaLNModulateQuant → Fp8LinearQ against
 *                AdaLNModulate → Fp8Linear at Large's qkv and fc1 (x [2, 4096, 2432]), timed as
 *                CUDA-graph replays, outputs compared, the fused pair replayed with inputs rewritten
 *   fp8-attention (only when named) atelier:Fp8Attention (q, k, v per-tensor e4m3, cuDNN's FP8 flash
 *                attention) against the fp16 MultiHeadAttention at Large's joint attention with CFG
 *                (B 2, 333 + 4096 and 154 + 4096 tokens, 38×64), timed as CUDA-graph replays, against
 *                float64 of the FP8 math and of unquantized attention on sampled head rows, the op
 *                replayed with inputs rewritten (ATELIER_OPS_VERBOSE=1: the cuDNN plan)
 *   qkv-norm     (only when named) atelier:JointQkvNorm against the chain it replaces (Split,
 *                SimplifiedLayerNormalization of q and k per stream, JointConcat of q, k, v) at
 *                Large's joint attention with CFG (B 2, Tc 333 and 154, Tx 4096, 38×64, fp16), timed
 *                as CUDA-graph replays, outputs compared bit for bit and with float64 on sampled
 *                rows, the op replayed with inputs rewritten
 *   residual-norm (only when named) atelier:AdaLNResidualQuant against the chain it replaces (Mul,
 *                Add, AdaLNModulateQuant) at Large's image and context streams with CFG ([2, 4096,
 *                2432] and [2, 333, 2432], fp16), timed as CUDA-graph replays of 4 copies, residual,
 *                codes, scales and a small Fp8LinearQ reader compared bit for bit, the residual against
 *                its exact float16 rounding and the codes against float64 on sampled rows, the op
 *                replayed with inputs rewritten; and the fp16 path's AdaLNResidual against Mul, Add,
 *                AdaLNModulate (timed, bit for bit)
 *   paired-norms (only when named) MMDiT-X's attn and attn2 norms from one node: AdaLNResidualQuant
 *                (one branch: Medium's dual blocks 1–12; two branches) and AdaLNModulateQuant (block 0)
 *                with shift2, scale2 → x8_2, act_scale_2 against the op without the pair followed by
 *                AdaLNModulateQuant(row, shift2, scale2), at Medium's image stream with CFG ([2, 4096,
 *                1536], fp16) and a row too wide for registers ([2, 8, 33792]; the two-branch and wide
 *                forms are the CUDA kernel's second-launch fallback), timed as CUDA-graph replays of 4
 *                copies (the saving × 13 per Medium step), residual, both codes and both scales and the
 *                readers' outputs compared bit for bit over two input sets (one rewritten in place)
 *   token-split  (only when named) atelier:JointSplitQuant → Fp8LinearQ per stream against Slice →
 *                Fp8Linear at Large's joint attention output with CFG ([2, 333 | 154 + 4096, 2432],
 *                fp16, layers of N 16), timed as CUDA-graph replays of 4 copies, outputs bit for bit
 *                and against float64 of the W8A8 math on sampled rows, replayed with inputs rewritten
 * Each check runs in a child process (a native crash costs one check, not the report) whose output
 * is echoed and kept; prints a PASS/FAIL table and writes JSON.
 *
 *   node capi-check.js --out FILE [--ops LIB] [--provider cuda|cpu] [--small] [--runs 20]
 *   (--provider cpu --small: a dry run of the same code on this machine, with the CPU op library)
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type CheckName,
  type CheckResult,
  FLASH_ATTENTION_CHECK,
  FP8_ATTENTION_CHECK,
  FP8_FUSED_CHECK,
  FP8_GEMM_SHAPES,
  type Fp8GemmCheck,
  isFp8GemmCheck,
  isMhaCheck,
  LORA_BRANCH_CHECK,
  MHA_SHAPES,
  type MhaCheck,
  MLP_HANDOFF_CHECK,
  PAIRED_NORMS_CHECK,
  QKV_NORM_CHECK,
  RESIDUAL_NORM_CHECK,
  TOKEN_SPLIT_CHECK,
} from './capi-checks.js';

const USAGE = `usage: node capi-check.js --out FILE [--ops LIB] [--provider cuda|cpu] [--small] [--runs N]
  --out FILE        the results as JSON
  --ops LIB         custom-op library (default: libatelier_ops_cuda.so beside this file, else the
                    build of native/ for the provider)
  --provider P      cuda (default) or cpu (a dry run here; use with --small)
  --small           small shapes
  --runs N          timed runs per measurement (default 20)
  --only LIST       some of: binding,adaln-fp16,adaln-fp32,adaln-graph and the mha checks
                    (mha: Large 1024² with CFG; ${Object.keys(MHA_SHAPES).slice(1).join(', ')});
                    all of these run by default. The FP8 GEMM checks run only when named ("fp8" names
                    all three: ${Object.keys(FP8_GEMM_SHAPES).join(', ')}): atelier:Fp8Linear's
                    variants vs the stock fp16 GEMM at SD3.5 Large's shapes, 8858 tokens, ~30 s each;
                    ${FP8_FUSED_CHECK} (only by name): AdaLNModulateQuant → Fp8LinearQ vs AdaLNModulate →
                    Fp8Linear at Large's qkv and fc1, x [2, 4096, 2432];
                    ${QKV_NORM_CHECK} (only by name): JointQkvNorm vs Split + SimplifiedLayerNormalization +
                    JointConcat at Large's joint attention, B 2, Tc 333 and 154, Tx 4096, 38 heads × 64;
                    ${RESIDUAL_NORM_CHECK} (only by name): AdaLNResidualQuant vs Mul + Add + AdaLNModulateQuant
                    at Large's image and context streams, [2, 4096 | 333, 2432], and its two-branch form
                    vs Mul + Add + Mul + Add + AdaLNModulateQuant at Medium's image stream, [2, 4096, 1536]
                    (float32 on the CPU, whose float16 Mul and Add run in float32);
                    ${PAIRED_NORMS_CHECK} (only by name): AdaLNResidualQuant / AdaLNModulateQuant with the second
                    modulation (shift2, scale2 → x8_2, act_scale_2) vs the op without it + AdaLNModulateQuant,
                    at Medium's image stream [2, 4096, 1536] (one branch, block 0's plain norm, two branches)
                    and a row too wide for registers [2, 8, 33792]; bit for bit;
                    ${TOKEN_SPLIT_CHECK} (only by name): JointSplitQuant → Fp8LinearQ vs Slice → Fp8Linear
                    at Large's joint attention output, [2, 333 | 154 + 4096, 2432];
                    ${LORA_BRANCH_CHECK} (only by name): Fp8Linear vs Fp8Linear + a LoRA branch (x·downᵀ·upᵀ,
                    fp16, ranks 16 and 64) at Large's qkv, proj, fc1, fc2, x [8192, K] (issue 15);
                    ${FP8_ATTENTION_CHECK} (only by name): Fp8Attention (cuDNN FP8 flash) vs the fp16
                    MultiHeadAttention at the same shapes;
                    ${FLASH_ATTENTION_CHECK} (only by name): FlashAttention (FlashAttention-3) vs the fp16
                    MultiHeadAttention at Medium's joint and attn2 and Large's joint shapes, B 2;
                    ${MLP_HANDOFF_CHECK} (only by name): fc1 → fc2 with fc1 writing e4m3 codes and a
                    delayed per-tensor scale (Fp8Linear output "e4m3_delayed" → Fp8LinearQ) vs today's
                    float16 h → Fp8Linear, Large's MLP x [8192, 2432] → 9728 → 2432 (issue 10)`;

const CHECKS: CheckName[] = [
  'binding',
  'adaln-fp16',
  'adaln-fp32',
  'adaln-graph',
  ...(Object.keys(MHA_SHAPES) as MhaCheck[]),
];
/** Heavier (inputs of up to 86 M values): only when asked for, so the default run keeps its time. */
const FP8_CHECKS = Object.keys(FP8_GEMM_SHAPES) as Fp8GemmCheck[];
const MARK = '@@capi-check ';
const TIMEOUT_MS: Record<CheckName, number> = {
  binding: 30_000,
  'adaln-fp16': 40_000,
  'adaln-fp32': 40_000,
  'adaln-graph': 40_000,
  ...(Object.fromEntries(Object.keys(MHA_SHAPES).map((name) => [name, 60_000])) as Record<MhaCheck, number>),
  // Inputs of up to 86 M values, three sessions, float64 references of 8 rows for two inputs.
  ...(Object.fromEntries(Object.keys(FP8_GEMM_SHAPES).map((name) => [name, 120_000])) as Record<
    Fp8GemmCheck,
    number
  >),
  // Five sessions, a float64 norm of two 20 M-value inputs, four float64 references of 8 rows.
  [FP8_FUSED_CHECK]: 180_000,
  // Per shape: two 65 M-value input sets drawn, two sessions of 4 copies (≈ 1 GB of inputs and
  // outputs each), three 21 M-value outputs compared.
  [QKV_NORM_CHECK]: 180_000,
  // Per shape: two 40 M-value input sets drawn, two sessions of 4 copies (≈ 500 MB each), four
  // 20 M-value outputs compared, float64 norms of 10 rows for six runs; Medium's two-branch shape
  // (three 12.6 M-value inputs per set) on top.
  [RESIDUAL_NORM_CHECK]: 240_000,
  // Per case: two input sets of one to three 12.6 M-value tensors drawn, two sessions of 4 copies
  // (≈ 400 MB each), six or seven outputs compared for each set; four cases.
  [PAIRED_NORMS_CHECK]: 240_000,
  // Per shape: two 21 M-value inputs, two sessions of 4 copies, float64 references of 10 rows.
  [TOKEN_SPLIT_CHECK]: 180_000,
  // Per layer: one 20–80 M-value input, three sessions of 4 copies, float64 branches of 4 rows.
  [LORA_BRANCH_CHECK]: 240_000,
  // Per shape: two 65 M-value input sets, two sessions of 4 copies (≈ 700 MB each), cuDNN's plan
  // built at the first run, float64 references of 12 head rows over 4429 keys for two sets.
  [FP8_ATTENTION_CHECK]: 240_000,
  // As fp8-attention, three shapes.
  [FLASH_ATTENTION_CHECK]: 300_000,
  // One 20 M-value input, two sessions of 4 copies (≈ 1.3 GB of outputs and h), float64 MLPs of 6
  // rows in four forms (≈ 0.6 G multiply-adds).
  [MLP_HANDOFF_CHECK]: 240_000,
};

const { values } = parseArgs({
  options: {
    help: { type: 'boolean', default: false },
    out: { type: 'string' },
    ops: { type: 'string' },
    provider: { type: 'string', default: 'cuda' },
    small: { type: 'boolean', default: false },
    runs: { type: 'string', default: '20' },
    only: { type: 'string' },
    'device-id': { type: 'string', default: '0' },
    check: { type: 'string' },
  },
});
const here = dirname(fileURLToPath(import.meta.url));
const provider = values.provider === 'cpu' ? 'cpu' : 'cuda';

async function opsLibrary(): Promise<string | undefined> {
  if (values.ops) return resolve(values.ops);
  const bundled = join(here, provider === 'cuda' ? 'libatelier_ops_cuda.so' : 'libatelier_ops_cpu.so');
  if (existsSync(bundled)) return bundled;
  const { builtCustomOpsLibrary } = await import('../../src/pipeline/ort/custom-ops.js');
  return builtCustomOpsLibrary(provider);
}

/** Child mode: one check, its result on the last line. */
async function child(name: CheckName): Promise<void> {
  const { runCheck } = await import('./capi-checks.js');
  const result = await runCheck(name, {
    provider,
    deviceId: Number(values['device-id']),
    ops: await opsLibrary(),
    small: values.small!,
    runs: Number(values.runs),
  });
  process.stdout.write(`\n${MARK}${JSON.stringify(result)}\n`);
}

interface Report extends CheckResult {
  name: CheckName;
  seconds: number;
  /** What each Fp8Linear kernel chose (cuBLASLt version, scaling, fused epilogue), from ATELIER_OPS_VERBOSE. */
  fp8_plans?: string[];
  /** What each Fp8Attention kernel built (cuDNN version, padding mask or not, workspace), from ATELIER_OPS_VERBOSE. */
  fp8_attention_plans?: string[];
  /** Kernels ONNX Runtime's attention debug print named (mha). */
  sdpa_kernels?: string[];
  debug_lines?: string[];
}

function runChild(name: CheckName): Promise<Report> {
  const args = [process.argv[1], '--check', name, '--provider', provider, '--runs', values.runs!];
  if (values.small) args.push('--small');
  if (values.ops) args.push('--ops', resolve(values.ops));
  args.push('--device-id', values['device-id']!);
  // The debug print comes from the CUDA provider's std::cout, at the kernel's first run.
  const env = isMhaCheck(name)
    ? { ...process.env, ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO: '1' }
    : isFp8GemmCheck(name) || name === FP8_FUSED_CHECK || name === FP8_ATTENTION_CHECK
      ? { ...process.env, ATELIER_OPS_VERBOSE: '1' }
      : process.env;
  const started = performance.now();
  return new Promise((done) => {
    // execArgv: under tsx the child needs its loader too; a bundle has none.
    const proc = spawn(process.execPath, [...process.execArgv, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    const keep = (sink: NodeJS.WriteStream) => (chunk: Buffer) => {
      sink.write(chunk);
      text += chunk.toString('utf8');
    };
    proc.stdout.on('data', keep(process.stdout));
    proc.stderr.on('data', keep(process.stderr));
    const timer = setTimeout(() => proc.kill('SIGKILL'), TIMEOUT_MS[name]);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      const line = text.split('\n').find((l) => l.startsWith(MARK));
      const result: CheckResult = line
        ? JSON.parse(line.slice(MARK.length))
        : {
            status: 'FAIL',
            detail: `the check process ended without a result (${signal ? `signal ${signal}` : `exit ${code}`})`,
          };
      const plans = text.split('\n').filter((l) => l.startsWith('atelier:Fp8Linear:'));
      done({
        name,
        seconds,
        ...result,
        ...(isMhaCheck(name) ? attentionKernels(text, result) : {}),
        ...(isFp8GemmCheck(name) || name === FP8_FUSED_CHECK ? { fp8_plans: plans } : {}),
        ...(name === FP8_ATTENTION_CHECK
          ? { fp8_attention_plans: text.split('\n').filter((l) => l.startsWith('atelier:Fp8Attention:')) }
          : {}),
      });
    });
  });
}

/** The kernels ORT's debug print names; on CUDA the check wants cuDNN's flash attention. */
function attentionKernels(text: string, result: CheckResult): Partial<Report> {
  const plain = text.replace(/\x1B\[[0-9;]*m/g, '');
  const debug = plain.split('\n').filter((l) => /SdpaKernel=|AttentionKernelOptions|Operator=/.test(l));
  const kernels = [...new Set([...plain.matchAll(/SdpaKernel=(\w+)/g)].map((m) => m[1]))];
  const extra: Partial<Report> = { sdpa_kernels: kernels, debug_lines: debug.slice(0, 10) };
  if (provider === 'cuda' && result.status === 'PASS') {
    const flash = kernels.length === 1 && kernels[0] === 'CUDNN_FLASH_ATTENTION';
    extra.status = flash ? 'PASS' : 'FAIL';
    extra.detail = `SdpaKernel=${kernels.join(',') || '(no debug print seen)'}; ${result.detail}`;
  }
  return extra;
}

async function main(): Promise<void> {
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.check) return child(values.check as CheckName);
  const only = values.only
    ? values.only.split(',').flatMap((c): CheckName[] => (c === 'fp8' ? FP8_CHECKS : [c as CheckName]))
    : CHECKS;
  const unknown = only.filter(
    (c) =>
      !CHECKS.includes(c) &&
      !FP8_CHECKS.includes(c as Fp8GemmCheck) &&
      c !== FP8_FUSED_CHECK &&
      c !== QKV_NORM_CHECK &&
      c !== RESIDUAL_NORM_CHECK &&
      c !== PAIRED_NORMS_CHECK &&
      c !== TOKEN_SPLIT_CHECK &&
      c !== LORA_BRANCH_CHECK &&
      c !== FP8_ATTENTION_CHECK &&
      c !== FLASH_ATTENTION_CHECK &&
      c !== MLP_HANDOFF_CHECK,
  );
  if (unknown.length) throw new Error(`unknown checks: ${unknown.join(', ')} (${USAGE})`);
  const started = Date.now();
  const reports: Report[] = [];
  for (const name of only) {
    console.log(`\n=== ${name}`);
    reports.push(await runChild(name));
  }
  console.log('\ncheck              result  seconds  detail');
  for (const r of reports)
    console.log(
      `${r.name.padEnd(18)} ${r.status.padEnd(7)} ${r.seconds.toFixed(1).padStart(7)}  ${r.detail}`,
    );
  const count = (status: CheckResult['status']) => reports.filter((r) => r.status === status).length;
  const failed = count('FAIL');
  console.log(`${count('PASS')} passed, ${failed} failed, ${count('SKIP')} skipped`);
  const json = {
    date: new Date().toISOString(),
    provider,
    small: values.small,
    ops_library: (await opsLibrary()) ?? null,
    seconds: (Date.now() - started) / 1000,
    checks: reports,
  };
  if (values.out) writeFileSync(values.out, JSON.stringify(json, null, 1));
  process.exitCode = failed ? 1 : 0;
}

await main();
