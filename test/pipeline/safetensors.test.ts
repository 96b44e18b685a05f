import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelError } from '../../src/errors.js';
import { e4m3ToFloat, floatToE4M3, floatToHalf, halfToFloat } from '../../src/pipeline/weights/dtypes.js';
import { SafetensorsFile } from '../../src/pipeline/weights/safetensors.js';
import { writeSafetensors } from '../../src/pipeline/weights/safetensors-writer.js';

const dir = mkdtempSync(join(tmpdir(), 'atelier-st-'));

function sample(path: string) {
  writeSafetensors(
    path,
    [
      { name: 'a.weight', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      {
        name: 'b.bias',
        dtype: 'F16',
        shape: [2],
        data: new Uint16Array([floatToHalf(0.5), floatToHalf(-2)]),
      },
      {
        name: 'c.q',
        dtype: 'F8_E4M3',
        shape: [3],
        data: new Uint8Array([floatToE4M3(1.5), floatToE4M3(-448), 0]),
      },
    ],
    { format: 'pt' },
  );
}

function rawHeader(json: object, dataBytes: number): Buffer {
  const text = Buffer.from(JSON.stringify(json));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, Buffer.alloc(dataBytes)]);
}

describe('SafetensorsFile', () => {
  it('locates tensors and reads them as float32 whatever their stored type', () => {
    const path = join(dir, 'ok.safetensors');
    sample(path);
    const f = SafetensorsFile.open(path);
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.get('a.weight')).toMatchObject({ dtype: 'F32', shape: [2, 3], byteLength: 24 });
    expect((8 + f.get('a.weight').offset) % 8).toBe(0);
    expect([...f.readFloat32('a.weight')]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...f.readFloat32('b.bias')]).toEqual([0.5, -2]);
    expect([...f.readFloat32('c.q')]).toEqual([1.5, -448, 0]);
    expect(f.names('a.')).toEqual(['a.weight']);
    f.close();
  });

  it('names the file and the tensor when a tensor is missing', () => {
    const path = join(dir, 'missing.safetensors');
    sample(path);
    const f = SafetensorsFile.open(path);
    expect(() => f.get('model.diffusion_model.x_embedder.proj.weight')).toThrowError(
      /missing\.safetensors: tensor "model\.diffusion_model\.x_embedder\.proj\.weight" is missing/,
    );
  });

  it('refuses a truncated file with one clear error naming the file', () => {
    const path = join(dir, 'truncated.safetensors');
    sample(path);
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 1));
    expect(() => SafetensorsFile.open(path)).toThrowError(ModelError);
    expect(() => SafetensorsFile.open(path)).toThrowError(
      /truncated\.safetensors: tensor "c\.q" ends at byte .* past the end/,
    );
    writeFileSync(path, bytes.subarray(0, 20));
    expect(() => SafetensorsFile.open(path)).toThrowError(/header length \d+ does not fit a 20-byte file/);
  });

  it('refuses files that are not safetensors, bad dtypes, bad sizes and overlaps', () => {
    const path = join(dir, 'bad.safetensors');
    writeFileSync(path, Buffer.from('definitely not a model file'));
    expect(() => SafetensorsFile.open(path)).toThrowError(/not a valid safetensors file/);
    writeFileSync(path, rawHeader({ x: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, 1));
    expect(() => SafetensorsFile.open(path)).toThrowError(/tensor "x" has unsupported dtype "Q4"/);
    writeFileSync(path, rawHeader({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 8));
    expect(() => SafetensorsFile.open(path)).toThrowError(
      /has 4 bytes of data but shape \[2\] of F32 needs 8/,
    );
    writeFileSync(
      path,
      rawHeader(
        {
          x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          y: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
        },
        8,
      ),
    );
    expect(() => SafetensorsFile.open(path)).toThrowError(/"x" and "y" overlap/);
    expect(() => SafetensorsFile.open(join(dir, 'nope.safetensors'))).toThrowError(/does not exist/);
  });
});

describe('float conversions', () => {
  it('round-trips every finite e4m3 code and rounds to the nearest code', () => {
    for (let code = 0; code < 256; code++) {
      if ((code & 0x7f) === 0x7f) continue;
      const v = e4m3ToFloat(code);
      expect(floatToE4M3(v)).toBe(code);
    }
    expect(e4m3ToFloat(floatToE4M3(1000))).toBe(448);
    expect(e4m3ToFloat(floatToE4M3(1.06))).toBe(1.0);
    expect(e4m3ToFloat(floatToE4M3(1.07))).toBe(1.125);
  });

  it('round-trips halves', () => {
    for (const v of [0, 1, -2.5, 65504, 2 ** -24, 0.1]) expect(halfToFloat(floatToHalf(v))).toBeCloseTo(v, 3);
    expect(floatToHalf(1e6)).toBe(0x7c00);
  });
});
