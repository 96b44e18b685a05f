import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { e4m3ToFloat, floatToHalf } from '../../src/pipeline/weights/dtypes.js';
import { quantizeTensor, quantizeToScaledFp8 } from '../../src/pipeline/weights/quantize.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';

describe('fp8 quantization at load', () => {
  it('maps the largest magnitude to 448 and keeps every value within half an fp8 step', () => {
    const values = [0.5, -1.25, 3, 0.001, -0.75, 2.9];
    const bits = new Uint16Array(values.map(floatToHalf));
    const { codes, scale } = quantizeTensor('F16', new Uint8Array(bits.buffer));
    expect(scale).toBeCloseTo(3 / 448, 8);
    const back = [...codes].map((c) => e4m3ToFloat(c) * scale);
    expect(back[2]).toBeCloseTo(3, 5);
    for (let i = 0; i < values.length; i++)
      expect(Math.abs(back[i] - values[i])).toBeLessThanOrEqual(Math.abs(values[i]) / 16 + 1e-3);
  });

  it('writes the quantizable weights as scaled fp8 once, leaving embeddings, norms and biases alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atelier-q-'));
    const src = join(dir, 'model.safetensors');
    const w = new Uint16Array(6).map((_, i) => floatToHalf(i - 2.5));
    writeSafetensors(src, [
      { name: 'm.fc.weight', dtype: 'F16', shape: [2, 3], data: w },
      { name: 'm.fc.bias', dtype: 'F16', shape: [2], data: new Uint16Array(2) },
      { name: 'm.token_embedding.weight', dtype: 'F16', shape: [2, 3], data: w },
      { name: 'other.weight', dtype: 'F16', shape: [2, 3], data: w },
    ]);
    const file = SafetensorsFile.open(src);
    const first = quantizeToScaledFp8(file, 'm.', join(dir, 'q'));
    expect(first).toMatchObject({ tensors: 1, cached: false });
    const q = SafetensorsFile.open(first.path);
    expect(q.names().sort()).toEqual(['m.fc.scale_weight', 'm.fc.weight', 'm.scaled_fp8']);
    expect(q.get('m.fc.weight').dtype).toBe('F8_E4M3');
    const scale = q.readFloat32('m.fc.scale_weight')[0];
    const restored = [...q.readFloat32('m.fc.weight')].map((v) => v * scale);
    // The largest magnitude is exact; the rest within half an e4m3 step (3 mantissa bits: 1/16).
    expect(restored[0]).toBeCloseTo(-2.5, 6);
    for (const [i, v] of [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5].entries()) {
      expect(Math.abs(restored[i] - v)).toBeLessThanOrEqual(Math.abs(v) / 16);
    }
    expect(quantizeToScaledFp8(file, 'm.', join(dir, 'q'))).toMatchObject({ path: first.path, cached: true });
  });
});
