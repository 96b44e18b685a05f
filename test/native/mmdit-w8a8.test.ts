/**
 * The MMDiT with W8A8 linear layers (NetOptions.fp8Linear 'w8a8': every fp8 linear layer one
 * atelier:Fp8Linear node, activations quantized to e4m3 per token at run time) on the golden fp8
 * models, run on the CPU through the C-API binding with our CPU library. What FP8 activations cost
 * is judged against the reference's output for the same fp8 weights (weight-only, exact): it may
 * move the output no more than fp8 storage of the weights moved it from the float model
 * (`fp8_vs_fp32_rel_l2` in the manifest): activations get the same e4m3 grid, per token.
 * With the fused producers (NetOptions.fp8Producers 'fused', the default) the layers that read a
 * modulated norm (qkv, fc1, the final linear) take it quantized from atelier:AdaLNModulateQuant as
 * atelier:Fp8LinearQ; the velocity must be the same bits as with the unfused AdaLNModulate → Fp8Linear.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMmdit, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import { GraphBuilder, ONNX_DTYPE } from '../../src/pipeline/onnx/graph.js';
import { DEFAULT_NET_OPTIONS, Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';
import { type GoldenComponent, type GoldenSet, goldenSets, manifestPath, relL2 } from '../golden/manifest.js';

interface Fp8Component extends GoldenComponent {
  weights: string;
  io: string;
  inputs_from: string;
  fp8_vs_fp32_rel_l2: number;
}

const opened: SafetensorsFile[] = [];
afterAll(() => {
  for (const f of opened) f.close();
});
function open(set: GoldenSet, file: string): SafetensorsFile {
  const f = set.open(file);
  opened.push(f);
  return f;
}

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

const cases = goldenSets().flatMap((set) =>
  ['mmdit_large_fp8', 'mmdit_large_scaled_fp8']
    .filter((name) => set.has(name))
    .map((name) => ({ set, name, setName: set.name })),
);

describe.each(cases)('$name of the $setName golden set with W8A8 linear layers', ({ set, name }) => {
  const c = set.component<Fp8Component>(name);
  const weights = () => open(set, c.weights);
  const build = (
    file: SafetensorsFile,
    customOps: boolean,
    fp8Producers: 'fused' | 'separate' = 'fused',
    fp8FastAccumulation = false,
    fp8MlpHandoff = false,
    sharedRows: 'fused' | 'separate' = 'fused',
  ) => {
    const g = new GraphBuilder(name);
    const p = new Params(g, new FileWeightSource(file, c.key_prefix ?? 'model.diffusion_model.'), 'float32');
    buildMmdit(
      new Net(g, p, {
        ...DEFAULT_NET_OPTIONS,
        fp8Linear: 'w8a8',
        customOps,
        fp8Producers,
        fp8FastAccumulation,
        fp8MlpHandoff,
        sharedRows,
      }),
      mmditConfig(p),
    );
    return g.build();
  };
  const feedsOf = (inputs: SafetensorsFile): Record<string, HostTensor> =>
    Object.fromEntries(
      ['x', 'timestep', 'context', 'y'].map((k) => [
        k,
        { type: 'float32', dims: inputs.get(k).shape, data: inputs.readFloat32(k) } satisfies HostTensor,
      ]),
    );
  const velocity = async (model: ReturnType<typeof build>, feeds: Record<string, HostTensor>) => {
    const session = await CapiSession.create(model, { provider: 'cpu', customOpsLibraries: [library] });
    try {
      return (await session.run(feeds)).model_output.data as Float32Array;
    } finally {
      session.release();
    }
  };

  it('runs every fp8 linear layer as one Fp8Linear node on its one-byte weight, and only with our library', () => {
    const file = weights();
    const graph = onnxProto.onnx.ModelProto.decode(build(file, true).bytes).graph!;
    const linear = file
      .names()
      .filter((k) => file.get(k).dtype === 'F8_E4M3' && file.get(k).shape.length === 2);
    const fp8 = graph.node!.filter((n) => n.opType === 'Fp8Linear' || n.opType === 'Fp8LinearQ');
    expect(fp8).toHaveLength(linear.length);
    const initializers = new Map(graph.initializer!.map((t) => [t.name, t]));
    for (const node of fp8) {
      const weight = node.input![node.opType === 'Fp8LinearQ' ? 2 : 1];
      expect(initializers.get(weight)!.dataType).toBe(ONNX_DTYPE.float8e4m3fn);
    }
    // Without our library the same options fall back to dequantized weights.
    const stock = onnxProto.onnx.ModelProto.decode(build(file, false).bytes).graph!;
    expect(stock.node!.filter((n) => n.opType === 'Fp8Linear')).toHaveLength(0);
  });

  it('fuses the quantization into the producers of W8A8 layers (norms, the attention split), one per layer, or none when asked', () => {
    const file = weights();
    // SiLU(c)'s rows quantized once for every adaLN layer (one producer, many readers) are
    // mmdit-residual-norm.test.ts's; here each producer has one reader.
    const nodes = (producers: 'fused' | 'separate') =>
      onnxProto.onnx.ModelProto.decode(build(file, true, producers, false, false, 'separate').bytes).graph!
        .node!;
    const fused = nodes('fused');
    const count = (list: typeof fused, op: string) => list.filter((n) => n.opType === op).length;
    // AdaLNModulateQuant writes x8, act_scale; AdaLNResidualQuant (a gated residual fused into its
    // norm, mmdit-residual-norm.test.ts) the residual, then x8, act_scale; JointSplitQuant the
    // context's x8, act_scale, then the image's.
    const norms = new Map(
      fused.flatMap((n) => {
        if (n.opType === 'AdaLNModulateQuant') return [[n.output![0], n.output![1]] as const];
        if (n.opType === 'AdaLNResidualQuant') return [[n.output![1], n.output![2]] as const];
        return [];
      }),
    );
    const splits = new Map(
      fused
        .filter((n) => n.opType === 'JointSplitQuant')
        .flatMap((n) => [[n.output![0], n.output![1]] as const, [n.output![2], n.output![3]] as const]),
    );
    const producers = new Map([...norms, ...splits]);
    const readers = fused.filter((n) => n.opType === 'Fp8LinearQ');
    // Each fused producer feeds exactly one Fp8LinearQ, with its own codes and scales; but the last
    // block's context tokens of the attention (pre_only: no proj reads them).
    expect(readers.length).toBe(producers.size - 1);
    expect(readers.length).toBeGreaterThan(0);
    for (const r of readers) expect(producers.get(r.input![0])).toBe(r.input![1]);
    expect(new Set(readers.map((r) => r.input![0])).size).toBe(readers.length);
    // Norms either fused or not, never both: the separate graph has as many norms in the compute
    // type (AdaLNModulate, or AdaLNResidual where a gated residual comes with it).
    const separate = nodes('separate');
    const plainNorms = (list: typeof fused) => count(list, 'AdaLNModulate') + count(list, 'AdaLNResidual');
    expect(plainNorms(fused) + norms.size).toBe(plainNorms(separate));
    expect(
      count(separate, 'AdaLNModulateQuant') +
        count(separate, 'AdaLNResidualQuant') +
        count(separate, 'JointSplitQuant') +
        count(separate, 'Fp8LinearQ'),
    ).toBe(0);
    // Per block: x and context qkv, proj and fc1 (the last block's context stream is pre_only: qkv
    // only), attn2's qkv in dual blocks (its proj reads attn2's own output), and the final layer
    // when its weights are fp8.
    const fp8 = (key: string) => file.names().includes(key) && file.get(key).dtype === 'F8_E4M3';
    const prefix = c.key_prefix ?? 'model.diffusion_model.';
    const expected = file
      .names()
      .filter((k) => k.startsWith(prefix) && fp8(k))
      .filter((k) => /(attn2?\.qkv|attn\.proj|mlp\.fc1|final_layer\.linear)\.weight$/.test(k)).length;
    expect(readers.length).toBe(expected);
  });

  it('gives the same velocity, bit for bit, with fused and separate producers', async () => {
    const feeds = feedsOf(open(set, manifestPath(c.inputs_from)));
    const file = weights();
    const fused = await velocity(build(file, true, 'fused'), feeds);
    const separate = await velocity(build(file, true, 'separate'), feeds);
    const mismatch = fused.findIndex((v, i) => !Object.is(v, separate[i]));
    expect(mismatch, `element ${mismatch}: ${fused[mismatch]} vs ${separate[mismatch]}`).toBe(-1);
  });

  it('asks every W8A8 GEMM for fast accumulation only with fp8FastAccumulation, and computes the same math on the CPU', async () => {
    const file = weights();
    const fastFlags = (fast: boolean) =>
      onnxProto.onnx.ModelProto.decode(build(file, true, 'fused', fast).bytes)
        .graph!.node!.filter((n) => n.opType === 'Fp8Linear' || n.opType === 'Fp8LinearQ')
        .map((n) => n.attribute!.find((a) => a.name === 'fast_accumulation')?.i ?? 0)
        .map(Number);
    const [fast, exact] = [fastFlags(true), fastFlags(false)];
    expect(fast.length).toBeGreaterThan(0);
    expect(fast.every((f) => f === 1)).toBe(true);
    expect(exact.every((f) => f === 0)).toBe(true);
    // Fast accumulation is how Hopper's tensor cores sum, not different math: the CPU kernel's
    // exact reference gives the same bits.
    const feeds = feedsOf(open(set, manifestPath(c.inputs_from)));
    const a = await velocity(build(file, true, 'fused', true), feeds);
    const b = await velocity(build(file, true, 'fused', false), feeds);
    expect(a.findIndex((v, i) => !Object.is(v, b[i]))).toBe(-1);
  });

  it('hands fc1 → fc2 over as e4m3 codes with a delayed per-tensor scale only with fp8MlpHandoff, in every MLP', () => {
    const file = weights();
    const graphOf = (handoff: boolean) =>
      onnxProto.onnx.ModelProto.decode(build(file, true, 'fused', false, handoff).bytes).graph!.node!;
    type Node = { attribute?: { name?: string | null; s?: Uint8Array | null }[] | null };
    const text = (n: Node, name: string) => {
      const a = n.attribute?.find((x) => x.name === name);
      return a?.s ? new TextDecoder().decode(a.s) : undefined;
    };
    const output = (n: Node) => text(n, 'output');
    const mlps = file
      .names()
      .filter((k) => /mlp\.fc1\.weight$/.test(k) && file.get(k).dtype === 'F8_E4M3').length;
    expect(mlps).toBeGreaterThan(0);
    const off = graphOf(false);
    expect(off.filter((n) => output(n) !== undefined)).toHaveLength(0);
    const on = graphOf(true);
    const fc1 = on.filter((n) => output(n) === 'e4m3_delayed');
    expect(fc1).toHaveLength(mlps);
    for (const node of fc1) {
      // fc1: the GELU layer reading its norm's codes (Fp8LinearQ), writing y8 and y_scale (its
      // float16 y left out) ...
      expect(node.opType).toBe('Fp8LinearQ');
      const activation = node.attribute!.find((a) => a.name === 'activation')?.s;
      expect(activation ? new TextDecoder().decode(activation) : undefined).toBe('gelu_tanh');
      expect(node.output![0]).toBe('');
      const written = node.output!.slice(1);
      expect(written.every((o) => o !== '')).toBe(true);
      // ... read by exactly one node, fc2 as Fp8LinearQ on (y8, y_scale), in float16 out as before.
      const readers = on.filter((n) => n.input!.some((i) => written.includes(i)));
      expect(readers).toHaveLength(1);
      expect(readers[0]!.opType).toBe('Fp8LinearQ');
      expect(readers[0]!.input!.slice(0, 2)).toEqual(written);
      expect(output(readers[0]!)).toBeUndefined();
      // The golden weights carry one scale per tensor (plain e4m3: 1; scaled fp8: scale_weight), so
      // the whole MLP runs per tensor: both layers in cuBLASLt's scalar-scale mode, fc1 reading its
      // norm quantized with one delayed scale per tensor.
      expect(text(node, 'scaling')).toBe('tensor');
      expect(text(readers[0]!, 'scaling')).toBe('tensor');
      const norm = on.filter((n) => n.output!.includes(node.input![0]!));
      expect(norm).toHaveLength(1);
      expect(norm[0]!.opType).toMatch(/^AdaLN(Residual|Modulate)Quant$/);
      expect(text(norm[0]!, 'act_scaling')).toBe('delayed_tensor');
      // ... and that norm feeds nothing else (no per-token copy of it is built).
      expect(on.filter((n) => n.input!.includes(node.input![0]!))).toHaveLength(1);
    }
    // Without the hand-off nothing is per tensor.
    expect(
      off.filter((n) => text(n, 'scaling') !== undefined || text(n, 'act_scaling') !== undefined),
    ).toHaveLength(0);
    // Nothing else changes: the same number of W8A8 nodes (fc2's Fp8Linear became Fp8LinearQ).
    const w8a8 = (list: typeof on) =>
      list.filter((n) => n.opType === 'Fp8Linear' || n.opType === 'Fp8LinearQ');
    expect(w8a8(on)).toHaveLength(w8a8(off).length);
    // And this float32 graph loses the Cast pair that took fc1's float16 y to float32 and back for fc2.
    expect(on.length).toBe(off.length - 2 * mlps);
  });

  it('keeps per-token activations in MLPs whose weights carry a scale per row (as LoRA merges write them)', () => {
    const file = weights();
    // The same weights with every fc1's scale_weight one per output row (plain e4m3 files gain one).
    const dir = mkdtempSync(join(tmpdir(), 'atelier-per-row-'));
    const path = join(dir, 'per-row.safetensors');
    const fc1Scale = /mlp\.fc1\.scale_weight$/;
    const fc1 = file.names().filter((k) => /mlp\.fc1\.weight$/.test(k) && file.get(k).dtype === 'F8_E4M3');
    expect(fc1.length).toBeGreaterThan(0);
    const kept = file.names().filter((name) => !fc1Scale.test(name));
    const tensors = [
      ...kept.map((name) => ({
        name,
        dtype: file.get(name).dtype,
        shape: file.get(name).shape,
        data: file.readBytes(name),
      })),
      ...fc1.map((weight) => {
        const name = weight.replace(/weight$/, 'scale_weight');
        const rows = file.get(weight).shape[0]!;
        const scale = file.has(name) ? file.readFloat32(name)[0]! : 1;
        const data = Float32Array.from({ length: rows }, (_, i) => scale * (1 + i / rows));
        return { name, dtype: 'F32' as const, shape: [rows], data };
      }),
    ];
    writeSafetensors(path, tensors);
    const perRow = SafetensorsFile.open(path);
    opened.push(perRow);
    const nodes = onnxProto.onnx.ModelProto.decode(build(perRow, true, 'fused', false, true).bytes).graph!
      .node!;
    const named = (n: (typeof nodes)[number], attribute: string) =>
      n.attribute?.some((a) => a.name === attribute) === true;
    expect(
      nodes.filter((n) => named(n, 'scaling') || named(n, 'act_scaling') || named(n, 'output')),
    ).toHaveLength(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps the velocity close to W8A8 without the hand-off (its first call: per-tensor current scaling of the MLP's inputs)", async () => {
    const feeds = feedsOf(open(set, manifestPath(c.inputs_from)));
    const file = weights();
    const handoff = await velocity(build(file, true, 'fused', false, true), feeds);
    const w8a8 = await velocity(build(file, true, 'fused', false, false), feeds);
    const reference = open(set, c.io).readFloat32('model_output');
    const moved = relL2(handoff, w8a8);
    const error = relL2(handoff, reference);
    console.log(
      `${set.name} ${name}: MLP hand-off vs W8A8 rel L2 ${moved.toExponential(2)}; vs weight-only fp8 ${error.toExponential(2)} (W8A8: ${relL2(w8a8, reference).toExponential(2)}, fp8 vs fp32: ${c.fp8_vs_fp32_rel_l2.toExponential(2)})`,
    );
    const own = relL2(w8a8, reference);
    // The hand-off changes one thing: the MLP's activations (fc1's input from its norm, fc2's from
    // fc1; the golden weights have one scale per tensor, so both) are rounded to e4m3 with one scale
    // per tensor instead of one per token (on this single call, each tensor's own amax). That is a second
    // quantization noise of the same kind and size as W8A8's own, so it may move the velocity by no
    // more than W8A8 moved it from the weight-only model, and the hand-off's error against that
    // model may grow by a quarter at most (independent noises of equal size add in quadrature:
    // √2 × at worst for the MLP's share; measured: moved 0.4–0.7 × W8A8's error, total 0.98–1.004 ×).
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(own);
    expect(error).toBeLessThanOrEqual(1.25 * own);
    expect(error).toBeLessThanOrEqual(c.fp8_vs_fp32_rel_l2);
  });

  it('keeps it close on later calls too, with the delayed scale (2 × the amax history)', async () => {
    const feeds = feedsOf(open(set, manifestPath(c.inputs_from)));
    const file = weights();
    const reference = open(set, c.io).readFloat32('model_output');
    const own = relL2(await velocity(build(file, true, 'fused', false, false), feeds), reference);
    // One session, three calls: the first scales by its own amax, the next two by 2 × the history's.
    const session = await CapiSession.create(build(file, true, 'fused', false, true), {
      provider: 'cpu',
      customOpsLibraries: [library],
    });
    try {
      const first = (await session.run(feeds)).model_output.data as Float32Array;
      for (let call = 2; call <= 3; call++) {
        const later = (await session.run(feeds)).model_output.data as Float32Array;
        const error = relL2(later, reference);
        console.log(
          `${set.name} ${name}: MLP hand-off call ${call} (delayed scale) vs weight-only fp8 ${error.toExponential(2)} (W8A8: ${own.toExponential(2)})`,
        );
        // The same input with the scale doubled (a power of two) gives the same codes' values but
        // where they fall into e4m3's subnormals: close to the first call's, bound as it is.
        expect(relL2(later, first)).toBeLessThan(own);
        expect(error).toBeLessThanOrEqual(1.25 * own);
      }
    } finally {
      session.release();
    }
  });

  it('moves the velocity no more than fp8 weights moved it from the float model', async () => {
    const reference = open(set, c.io).readFloat32('model_output');
    const out = await velocity(build(weights(), true), feedsOf(open(set, manifestPath(c.inputs_from))));
    const error = relL2(out, reference);
    console.log(
      `${set.name} ${name}: W8A8 vs weight-only fp8 rel L2 ${error.toExponential(2)} (fp8 vs fp32: ${c.fp8_vs_fp32_rel_l2.toExponential(2)})`,
    );
    expect(error).toBeGreaterThan(0);
    expect(error).toBeLessThanOrEqual(c.fp8_vs_fp32_rel_l2);
  });
});
