/**
 * The C-API binding runs the product's graphs exactly as onnxruntime-node does: every golden tiny
 * component (MMDiT Large and Medium, T5, the VAE decoder) built once, run through both bindings on
 * the golden inputs, outputs compared. Both load the same libonnxruntime with the same options, so
 * the results should agree to the last bit; the bound is the 1e-6.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { buildMmdit, mmditConfig } from '../../src/pipeline/models/mmdit.js';
import { buildT5, t5Config } from '../../src/pipeline/models/t5.js';
import { buildVaeDecoder, vaeConfig } from '../../src/pipeline/models/vae.js';
import { type BuiltModel, GraphBuilder } from '../../src/pipeline/onnx/graph.js';
import { Net } from '../../src/pipeline/onnx/nn.js';
import { FileWeightSource, Params } from '../../src/pipeline/onnx/params.js';
import { openSession } from '../../src/pipeline/onnx/session.js';
import type { ComputeType } from '../../src/pipeline/onnx/tensors.js';
import { CapiSession, type HostTensor } from '../../src/pipeline/ort/index.js';
import type { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import {
  type GoldenComponent,
  component as goldenComponent,
  maxAbsDiff,
  openGolden,
} from '../golden/manifest.js';

const component = (name: string) =>
  goldenComponent<GoldenComponent & { weights: string; io: string; key_prefix?: string }>(name);

const opened: SafetensorsFile[] = [];
afterAll(() => {
  for (const f of opened) f.close();
});
function open(field: string): SafetensorsFile {
  const f = openGolden(field);
  opened.push(f);
  return f;
}

interface Case {
  model: BuiltModel;
  feeds: Record<string, HostTensor>;
}

function graph(
  name: string,
  weights: SafetensorsFile,
  compute: ComputeType,
  build: (net: Net) => void,
  prefix = '',
) {
  const g = new GraphBuilder(name);
  build(new Net(g, new Params(g, new FileWeightSource(weights, prefix), compute)));
  return g.build();
}

const floats = (io: SafetensorsFile, key: string): HostTensor => ({
  type: 'float32',
  dims: io.get(key).shape,
  data: io.readFloat32(key),
});

const cases: Record<string, (compute: ComputeType) => Case> = {
  mmdit_large: (compute) => mmditCase('mmdit_large', compute),
  mmdit_medium: (compute) => mmditCase('mmdit_medium', compute),
  t5: (compute) => {
    const weights = open(component('t5').weights);
    const model = graph('t5', weights, compute, (net) => buildT5(net, t5Config(net.p)));
    const ids = BigInt64Array.from({ length: 2 * 12 }, (_, i) => BigInt((i * 37) % 300));
    return { model, feeds: { input_ids: { type: 'int64', dims: [2, 12], data: ids } } };
  },
  vae_decoder: (compute) => {
    const vae = component('vae');
    const weights = open(vae.weights);
    const model = graph('vae_decoder', weights, compute, (net) => buildVaeDecoder(net, vaeConfig(net.p)));
    return { model, feeds: { latent: floats(open(vae.io), 'latent') } };
  },
};

function mmditCase(name: string, compute: ComputeType): Case {
  const c = component(name);
  const weights = open(c.weights);
  const io = open(c.io);
  const model = graph(name, weights, compute, (net) => buildMmdit(net, mmditConfig(net.p)), c.key_prefix);
  return {
    model,
    feeds: Object.fromEntries(['x', 'timestep', 'context', 'y'].map((k) => [k, floats(io, k)])),
  };
}

const toOrt = (feeds: Record<string, HostTensor>) =>
  Object.fromEntries(
    Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.type as 'float32', t.data, t.dims)]),
  );

describe.each(['float32', 'float16'] as const)(
  'golden components through the C API (%s compute)',
  (compute) => {
    it.each(Object.keys(cases))('%s gives the same outputs as onnxruntime-node', async (name) => {
      const { model, feeds } = cases[name](compute);
      const stock = await openSession(name, model, { provider: 'cpu' });
      const capi = await CapiSession.create(model, { provider: 'cpu' });
      try {
        expect(capi.inputNames.sort()).toEqual([...stock.inputNames].sort());
        expect(capi.outputNames).toEqual([...stock.outputNames]);
        const expected = await stock.run(toOrt(feeds));
        const actual = await capi.run(feeds);
        for (const output of stock.outputNames) {
          expect(actual[output].dims).toEqual([...expected[output].dims]);
          const ref = expected[output].data as Float32Array;
          expect(actual[output].data.length).toBe(ref.length);
          expect(maxAbsDiff(actual[output].data as Float32Array, ref)).toBeLessThanOrEqual(1e-6);
        }
      } finally {
        capi.release();
        await stock.release();
      }
    });
  },
);
