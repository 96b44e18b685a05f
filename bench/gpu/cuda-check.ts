/**
 * First thing run on the GPU machine: does the pipeline give the same images on CUDA as on the
 * CPU? The bundled tiny model, CPU float32 against CUDA float16 and CUDA fp8 (weights quantized at
 * load, MatMulBlockQuantizedFp8Weight), same seed; prints the pixel differences as JSON.
 *   node cuda-check.js --data DIR --out FILE
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';
import type { EngineOptions } from '../../src/pipeline/sd35/options.js';
import { ensureTinyModel } from '../../src/pipeline/tiny/index.js';

const { values } = parseArgs({
  options: { data: { type: 'string', default: '/tmp/atelier-check' }, out: { type: 'string' } },
});
const dataDir = values.data!;
const tiny = await ensureTinyModel(dataDir);
const base = { modelsDir: tiny.modelsDir, checkpoint: tiny.checkpoint, dataDir };
const request = {
  prompt: 'a lighthouse at dusk',
  negativePrompt: '',
  width: 256,
  height: 256,
  seed: 1234,
  steps: 4,
  guidance: 4.5,
  sampler: 'euler' as const,
  count: 2,
};
const runs: Record<string, EngineOptions> = {
  cpu_fp32: { ...base, provider: 'cpu' },
  cuda_fp16: { ...base, provider: 'cuda', precision: 'fp16' },
  cuda_fp8_block: { ...base, provider: 'cuda', precision: 'fp8', fp8Linear: 'block-fp8' },
  cuda_fp8_dequantize: { ...base, provider: 'cuda', precision: 'fp8', fp8Linear: 'dequantize' },
};
const images: Record<string, Uint8Array> = {};
const report: Record<string, unknown> = {};
for (const [name, options] of Object.entries(runs)) {
  const engine = new Sd35Engine(options);
  try {
    await engine.load();
    const out = await engine.generate(request);
    images[name] = out.images[1].data;
    report[name] = {
      ok: true,
      timings: out.timings,
      info: engine.info().components.map((c) => `${c.name}:${c.dtype}:${c.bytes}`),
    };
  } catch (error) {
    report[name] = { ok: false, error: String((error as Error).message).split('\n')[0] };
  } finally {
    await engine.dispose();
  }
}
for (const name of Object.keys(images)) {
  if (name === 'cpu_fp32') continue;
  const a = images.cpu_fp32;
  const b = images[name];
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    sum += d;
  }
  (report[name] as Record<string, unknown>).vs_cpu = { max_abs: max, mean_abs: sum / a.length };
}
console.log(JSON.stringify(report, null, 1));
if (values.out) writeFileSync(values.out, JSON.stringify(report, null, 1));
