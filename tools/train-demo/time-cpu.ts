/**
 * CPU time of one 256² image through the product's engine (ONNX Runtime CPU), for choosing the
 * demo model's widths and default steps:
 *   npx tsx tools/train-demo/time-cpu.ts MODEL_DIR [steps=4,8] [threads=2] [count=1]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sd35Engine } from '../../src/pipeline/sd35/engine.js';

const [modelsDir, stepsArg = '4,8', threadsArg = '2', countArg = '1'] = process.argv.slice(2);
const dataDir = mkdtempSync(join(tmpdir(), 'atelier-time-'));
const engine = new Sd35Engine({
  modelsDir,
  checkpoint: 'atelier-demo-sd35.safetensors',
  dataDir,
  threads: Number(threadsArg),
});
try {
  let t = performance.now();
  await engine.load();
  console.log(`load ${(performance.now() - t).toFixed(0)} ms`);
  for (const steps of stepsArg.split(',').map(Number)) {
    for (let rep = 0; rep < 3; rep++) {
      t = performance.now();
      const cpu0 = process.cpuUsage();
      const out = await engine.generate({
        prompt: 'two small yellow stars on a dark blue background',
        negativePrompt: '',
        width: 256,
        height: 256,
        seed: rep,
        steps,
        guidance: 4.5,
        sampler: 'euler',
        count: Number(countArg),
      });
      const ms = performance.now() - t;
      const used = process.cpuUsage(cpu0);
      // CPU time of this process (all threads): on a busy machine, cpu / threads estimates the wall time alone.
      const cpuMs = (used.user + used.system) / 1000;
      const { encodeMs, denoiseMs, decodeMs } = out.timings;
      console.log(
        `steps ${steps} count ${countArg}: ${ms.toFixed(0)} ms wall, ${cpuMs.toFixed(0)} ms CPU (encode ${encodeMs.toFixed(0)}, denoise ${denoiseMs.toFixed(0)}, decode ${decodeMs.toFixed(0)})`,
      );
    }
  }
} finally {
  await engine.dispose();
  rmSync(dataDir, { recursive: true, force: true });
}
