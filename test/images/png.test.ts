import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng, InvalidImageError, readImageParameters, readPngText } from '../../src/images/index.js';
import { readPngChunks } from '../../src/images/png-chunks.js';
import { noiseImage, patternImage } from './fixtures.js';

describe('encodePng()', () => {
  it('stores parameters in a tEXt chunk named "parameters", right after IHDR', async () => {
    const text =
      'a cat in a hat\nSteps: 28, Sampler: Euler, CFG scale: 4.5, Seed: 1, Size: 64x32, Model: tiny';
    const png = await encodePng(patternImage(64, 32), text);
    const chunks = readPngChunks(png);
    expect(chunks.map((chunk) => chunk.type).slice(0, 2)).toEqual(['IHDR', 'tEXt']);
    expect(chunks[1]!.data.toString('latin1')).toBe(`parameters\0${text}`);
    expect(readPngText(png)).toEqual({ parameters: text });
  });

  it('round-trips Latin-1 text in tEXt and other text in UTF-8 iTXt', async () => {
    const latin = 'café crème, 50% — no: wait';
    const unicode =
      '一只戴帽子的猫 🐈\nNegative prompt: ぼやけ\nSteps: 4, Sampler: Euler, CFG scale: 1, Seed: 9, Size: 8x8, Model: tiny';
    const latinPng = await encodePng(patternImage(8, 8), latin.replace('—', '-'));
    const unicodePng = await encodePng(patternImage(8, 8), unicode);
    expect(readPngChunks(latinPng)[1]!.type).toBe('tEXt');
    expect(readPngText(latinPng).parameters).toBe(latin.replace('—', '-'));
    expect(readPngChunks(unicodePng)[1]!.type).toBe('iTXt');
    expect(readPngText(unicodePng).parameters).toBe(unicode);
    expect(readImageParameters(unicodePng)).toBe(unicode);
  });

  it('keeps the pixels exactly, and other decoders read the file', async () => {
    const image = noiseImage(48, 40, 7);
    const png = await encodePng(image, 'x');
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(info).toMatchObject({ width: 48, height: 40, channels: 3 });
    expect(Buffer.compare(data, Buffer.from(image.data))).toBe(0);
    const metadata = await sharp(png).metadata();
    expect(metadata.comments).toEqual([{ keyword: 'parameters', text: 'x' }]);
  });

  it('refuses a RawImage whose data does not match its size', async () => {
    await expect(encodePng({ width: 4, height: 4, data: new Uint8Array(10) }, 'x')).rejects.toThrow(
      'image data is 10 bytes; 4×4 RGB needs 48',
    );
  });
});

describe('readPngText()', () => {
  it('checks every CRC', async () => {
    const png = await encodePng(patternImage(8, 8), 'hello');
    const damaged = Buffer.from(png);
    damaged[8 + 12 + 13 + 8 + 2]! ^= 0xff; // a byte inside the tEXt data
    expect(() => readPngText(damaged)).toThrow(InvalidImageError);
    expect(() => readPngText(damaged)).toThrow(/CRC mismatch in PNG chunk tEXt/);
  });

  it('refuses files that are not PNG or are cut short', async () => {
    const png = await encodePng(patternImage(8, 8), 'hello');
    expect(() => readPngText(Buffer.from('GIF89a........'))).toThrow(/signature/);
    expect(() => readPngText(png.subarray(0, png.length - 20))).toThrow(/truncated/);
  });

  it('reads compressed text written by other tools (zTXt, compressed iTXt)', async () => {
    const png = await sharp(Buffer.alloc(4 * 4 * 3), { raw: { width: 4, height: 4, channels: 3 } })
      .png()
      .toBuffer();
    const { deflateSync } = await import('node:zlib');
    const { encodeChunk, insertAfterHeader } = await import('../../src/images/png-chunks.js');
    const long = 'x'.repeat(300);
    const withText = insertAfterHeader(png, [
      encodeChunk(
        'zTXt',
        Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), deflateSync(Buffer.from(long, 'latin1'))]),
      ),
      encodeChunk(
        'iTXt',
        Buffer.concat([
          Buffer.from('Title\0\x01\0en\0Titel\0', 'latin1'),
          deflateSync(Buffer.from('猫'.repeat(50))),
        ]),
      ),
    ]);
    expect(readPngText(withText)).toEqual({ Comment: long, Title: '猫'.repeat(50) });
  });
});
