/**
 * What the attention ops (atelier:Fp8Attention, atelier:FlashAttention: native/src/attention_op.h's
 * shared glue) answer to bad graphs and inputs, on the CPU kernels: messages that name the op and
 * what was wrong, and an empty output for empty inputs.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ATELIER_DOMAIN, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { buildCustomOpsLibrary } from '../../src/pipeline/ort/custom-ops.js';
import type { HostTensor } from '../../src/pipeline/ort/index.js';
import { runWithOps } from './run-graphs.js';

let library: string;
beforeAll(() => {
  library = buildCustomOpsLibrary('cpu');
});

type Attributes = Record<string, number | { float: number }>;

describe.each(['Fp8Attention', 'FlashAttention'])('atelier:%s errors', (op) => {
  /** y = op(q, k, v) with symbolic dims, and zero-filled float16 inputs of `dims`. */
  const graph = (dims: Record<'q' | 'k' | 'v', number[]>, attrs: Attributes = { heads: 2 }) => {
    const g = new GraphBuilder('errors');
    const [q, k, v] = (['q', 'k', 'v'] as const).map((name) =>
      g.input(name, 'float16', [`${name}b`, `${name}t`, `${name}c`]),
    );
    g.output(g.op(op, [q, k, v], attrs, ATELIER_DOMAIN), 'y', 'float16', ['b', 't', 'c']);
    const inputs = Object.fromEntries(
      Object.entries(dims).map(([name, d]) => [
        name,
        { type: 'float16', dims: d, data: new Uint16Array(d.reduce((a, x) => a * x, 1)) } as HostTensor,
      ]),
    );
    return { model: g.build(), inputs };
  };
  const same = { q: [1, 4, 8], k: [1, 4, 8], v: [1, 4, 8] };

  it('names the op when shapes disagree or heads does not divide the width', async () => {
    const mismatch = graph({ q: [1, 4, 8], k: [1, 5, 8], v: [1, 4, 8] });
    await expect(runWithOps(library, mismatch.model, mismatch.inputs)).rejects.toThrow(
      new RegExp(
        `${op}: q, k and v must have the same shape \\[B, T, heads · head_dim\\], got q \\[1, 4, 8\\] and k \\[1, 5, 8\\]`,
      ),
    );
    const width = graph({ q: [1, 4, 9], k: [1, 4, 9], v: [1, 4, 9] });
    await expect(runWithOps(library, width.model, width.inputs)).rejects.toThrow(
      new RegExp(`${op}: the last axis of q, k and v must be heads · head_dim with heads = 2, got 9`),
    );
  });

  it('names the attribute when heads is missing or the scale is not a positive number', async () => {
    const noHeads = graph(same, {});
    await expect(runWithOps(library, noHeads.model, noHeads.inputs)).rejects.toThrow(
      new RegExp(`${op}: the attribute heads \\(an int, C = heads · head_dim\\) is required`),
    );
    const badScale = graph(same, { heads: 2, scale: { float: -1 } });
    await expect(runWithOps(library, badScale.model, badScale.inputs)).rejects.toThrow(
      new RegExp(`${op}: scale must be a finite number > 0, got -1`),
    );
  });

  it('returns an empty output for empty inputs', async () => {
    const empty = graph({ q: [0, 4, 8], k: [0, 4, 8], v: [0, 4, 8] });
    const out = await runWithOps(library, empty.model, empty.inputs);
    expect(out.dims).toEqual([0, 4, 8]);
  });
});
