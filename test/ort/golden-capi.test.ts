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
  type GoldenSet,
  goldenSets,
  keyPrefix,
  maxAbsDiff,
} from '../golden/manifest.js';

const component = (set: GoldenSet, name: string) =>
  set.component<GoldenComponent & { weights: string; io: string; key_prefix?: string }>(name);

const opened: SafetensorsFile[] = [];
afterAll(() => {
  for (const f of opened) f.close();
});
function open(set: GoldenSet, field: string): SafetensorsFile {
  const f = set.open(field);
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

/** The cases a golden set has components for, by name (MMDiTs, T5, VAE decoder). */
const cases: Record<string, { needs: string; make: (set: GoldenSet, compute: ComputeType) => Case }> = {
  mmdit_large: { needs: 'mmdit_large', make: (set, compute) => mmditCase(set, 'mmdit_large', compute) },
  mmdit_medium: { needs: 'mmdit_medium', make: (set, compute) => mmditCase(set, 'mmdit_medium', compute) },
  t5: {
    needs: 't5',
    make: (set, compute) => {
      const t5 = component(set, 't5') as GoldenComponent & {
        weights: string;
        config: { vocab_size: number };
      };
      const weights = open(set, t5.weights);
      const model = graph('t5', weights, compute, (net) => buildT5(net, t5Config(net.p)));
      const ids = BigInt64Array.from({ length: 2 * 12 }, (_, i) => BigInt((i * 37) % t5.config.vocab_size));
      return { model, feeds: { input_ids: { type: 'int64', dims: [2, 12], data: ids } } };
    },
  },
  vae_decoder: {
    needs: 'vae',
    make: (set, compute) => {
      const vae = component(set, 'vae');
      const weights = open(set, vae.weights);
      const model = graph('vae_decoder', weights, compute, (net) =>
        buildVaeDecoder(net, vaeConfig(net.p, keyPrefix(vae))),
      );
      return { model, feeds: { latent: floats(open(set, vae.io), 'latent') } };
    },
  },
};

function mmditCase(set: GoldenSet, name: string, compute: ComputeType): Case {
  const c = component(set, name);
  const weights = open(set, c.weights);
  const io = open(set, c.io);
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

const runs = goldenSets().flatMap((set) =>
  (['float32', 'float16'] as const).map((compute) => ({
    set,
    setName: set.name,
    compute,
    names: Object.keys(cases).filter((name) => set.has(cases[name].needs)),
  })),
);

describe.each(runs)(
  'components of the $setName golden set through the C API ($compute compute)',
  ({ set, compute, names }) => {
    it.each(names)('%s gives the same outputs as onnxruntime-node', async (name) => {
      const { model, feeds } = cases[name].make(set, compute);
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
