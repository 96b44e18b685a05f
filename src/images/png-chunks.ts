/**
 * PNG chunk reading and writing (PNG spec, 3rd edition §5), just enough for text metadata:
 * every chunk's CRC is checked, `tEXt`, `zTXt` and `iTXt` are decoded, and text chunks are
 * inserted right after IHDR so streaming readers see the parameters before the pixels.
 */
import { inflateSync } from 'node:zlib';
import { crc32 } from './crc32.js';
import { InvalidImageError } from './errors.js';

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface PngChunk {
  type: string;
  data: Buffer;
  /** Byte offset of the chunk (its length field) in the file. */
  offset: number;
}

export function isPng(bytes: Uint8Array): boolean {
  return (
    bytes.length >= PNG_SIGNATURE.length &&
    PNG_SIGNATURE.equals(Buffer.from(bytes.buffer, bytes.byteOffset, PNG_SIGNATURE.length))
  );
}

/** Every chunk up to and including IEND; throws InvalidImageError on any damage. */
export function readPngChunks(png: Uint8Array): PngChunk[] {
  const bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (!isPng(bytes)) throw new InvalidImageError('not a PNG file: the signature is missing');
  const chunks: PngChunk[] = [];
  let offset = PNG_SIGNATURE.length;
  while (offset < bytes.length) {
    if (offset + 12 > bytes.length) throw new InvalidImageError(`truncated PNG chunk at byte ${offset}`);
    const length = bytes.readUInt32BE(offset);
    const end = offset + 12 + length;
    if (length > 0x7fffffff || end > bytes.length)
      throw new InvalidImageError(`truncated PNG chunk at byte ${offset}`);
    const typeBytes = bytes.subarray(offset + 4, offset + 8);
    const type = typeBytes.toString('latin1');
    if (!/^[A-Za-z]{4}$/.test(type)) throw new InvalidImageError(`bad PNG chunk type at byte ${offset}`);
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    if (crc32(typeBytes, data) !== bytes.readUInt32BE(offset + 8 + length)) {
      throw new InvalidImageError(`CRC mismatch in PNG chunk ${type} at byte ${offset}`);
    }
    chunks.push({ type, data, offset });
    offset = end;
    if (type === 'IEND') return chunks;
  }
  throw new InvalidImageError('truncated PNG: no IEND chunk');
}

export function encodeChunk(type: string, data: Uint8Array): Buffer {
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write(type, 4, 'latin1');
  chunk.set(data, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8), data), 8 + data.length);
  return chunk;
}

const isLatin1 = (text: string) => /^[\u0001-\u00ff]*$/.test(text);

/** PNG keywords: 1–79 Latin-1 characters, no leading, trailing or double spaces (§11.3.4.2). */
function checkKeyword(keyword: string): void {
  if (
    !/^[\u0021-\u007e\u00a1-\u00ff]([\u0020-\u007e\u00a1-\u00ff]{0,77}[\u0021-\u007e\u00a1-\u00ff])?$/.test(
      keyword,
    ) ||
    keyword.includes('  ')
  ) {
    throw new RangeError(`not a valid PNG text keyword: ${JSON.stringify(keyword)}`);
  }
}

/**
 * A text chunk the way Pillow (and so A1111) writes one: `tEXt` when the text is Latin-1,
 * otherwise an uncompressed `iTXt` in UTF-8 so any prompt round-trips.
 */
export function textChunk(keyword: string, text: string): Buffer {
  checkKeyword(keyword);
  const key = Buffer.from(keyword, 'latin1');
  if (isLatin1(text))
    return encodeChunk('tEXt', Buffer.concat([key, Buffer.from([0]), Buffer.from(text, 'latin1')]));
  // keyword \0, compression flag 0, method 0, empty language tag \0, empty translated keyword \0
  const header = Buffer.from([0, 0, 0, 0, 0]);
  return encodeChunk('iTXt', Buffer.concat([key, header, Buffer.from(text, 'utf8')]));
}

export function insertAfterHeader(png: Uint8Array, extra: readonly Buffer[]): Buffer {
  const chunks = readPngChunks(png);
  const header = chunks[0];
  if (header?.type !== 'IHDR') throw new InvalidImageError('the first PNG chunk is not IHDR');
  const split = header.offset + 12 + header.data.length;
  const bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  return Buffer.concat([bytes.subarray(0, split), ...extra, bytes.subarray(split)]);
}

function decodeTextChunk(chunk: PngChunk): [string, string] | undefined {
  const separator = chunk.data.indexOf(0);
  if (separator < 1) throw new InvalidImageError(`${chunk.type} chunk without a keyword`);
  const keyword = chunk.data.subarray(0, separator).toString('latin1');
  const rest = chunk.data.subarray(separator + 1);
  try {
    if (chunk.type === 'tEXt') return [keyword, rest.toString('latin1')];
    if (chunk.type === 'zTXt') return [keyword, inflateSync(rest.subarray(1)).toString('latin1')];
    // iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    const compressed = rest[0] === 1;
    const languageEnd = rest.indexOf(0, 2);
    const translatedEnd = languageEnd < 0 ? -1 : rest.indexOf(0, languageEnd + 1);
    if (translatedEnd < 0) throw new InvalidImageError('iTXt chunk is truncated');
    const body = rest.subarray(translatedEnd + 1);
    return [keyword, (compressed ? inflateSync(body) : body).toString('utf8')];
  } catch (error) {
    if (error instanceof InvalidImageError) throw error;
    throw new InvalidImageError(`${chunk.type} chunk "${keyword}" cannot be decompressed`);
  }
}

/** Keyword → text of every tEXt, zTXt and iTXt chunk (the first one wins for a repeated keyword). */
export function readPngText(png: Uint8Array): Record<string, string> {
  const texts: Record<string, string> = {};
  for (const chunk of readPngChunks(png)) {
    if (chunk.type !== 'tEXt' && chunk.type !== 'zTXt' && chunk.type !== 'iTXt') continue;
    const entry = decodeTextChunk(chunk);
    if (entry && !Object.hasOwn(texts, entry[0])) {
      // defineProperty: a keyword such as "__proto__" stays a plain entry.
      Object.defineProperty(texts, entry[0], {
        value: entry[1],
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  return texts;
}
