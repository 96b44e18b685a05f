/**
 * Generation parameters in JPEG and WebP files, for when a PNG is too big for a platform and is
 * sent lossy instead. A1111 stores them as the Exif `UserComment` (tag 0x9286) with the UNICODE
 * character code (Exif 2.32 §4.6.5, Table 9: an 8-byte code, then UCS-2 in the file's byte order);
 * libvips can only write ASCII there and would drop "é" or "猫", so the Exif block is built here.
 */
import { InvalidImageError } from './errors.js';

const EXIF_IFD_POINTER = 0x8769;
const USER_COMMENT = 0x9286;
const TYPE_LONG = 4;
const TYPE_UNDEFINED = 7;
const UNICODE_CODE = Buffer.from('UNICODE\0', 'latin1');
const ASCII_CODE = Buffer.from('ASCII\0\0\0', 'latin1');
const EXIF_HEADER = Buffer.from('Exif\0\0', 'latin1');
/** A JPEG segment holds at most 65,533 bytes after its length field. */
const MAX_APP1_PAYLOAD = 65533;

/** Big-endian ("MM") TIFF: IFD0 → Exif IFD → UserComment, UTF-16BE after the UNICODE code. */
export function userCommentExif(text: string): Buffer {
  const comment = Buffer.concat([UNICODE_CODE, Buffer.from(text, 'utf16le').swap16()]);
  const ifd0 = 8;
  const exifIfd = ifd0 + 2 + 12 + 4;
  const valueOffset = exifIfd + 2 + 12 + 4;
  const tiff = Buffer.alloc(valueOffset + comment.length);
  tiff.write('MM', 0, 'latin1');
  tiff.writeUInt16BE(42, 2);
  tiff.writeUInt32BE(ifd0, 4);
  tiff.writeUInt16BE(1, ifd0);
  tiff.writeUInt16BE(EXIF_IFD_POINTER, ifd0 + 2);
  tiff.writeUInt16BE(TYPE_LONG, ifd0 + 4);
  tiff.writeUInt32BE(1, ifd0 + 6);
  tiff.writeUInt32BE(exifIfd, ifd0 + 10);
  tiff.writeUInt16BE(1, exifIfd);
  tiff.writeUInt16BE(USER_COMMENT, exifIfd + 2);
  tiff.writeUInt16BE(TYPE_UNDEFINED, exifIfd + 4);
  tiff.writeUInt32BE(comment.length, exifIfd + 6);
  tiff.writeUInt32BE(valueOffset, exifIfd + 10);
  comment.copy(tiff, valueOffset);
  return tiff;
}

/** Reads UserComment from a TIFF/Exif block; undefined when there is none. */
export function readUserComment(tiff: Buffer): string | undefined {
  if (tiff.length < 8) return undefined;
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'MM' && order !== 'II') return undefined;
  const big = order === 'MM';
  const u16 = (at: number) => (big ? tiff.readUInt16BE(at) : tiff.readUInt16LE(at));
  const u32 = (at: number) => (big ? tiff.readUInt32BE(at) : tiff.readUInt32LE(at));
  const findTag = (ifd: number, tag: number): { count: number; value: number } | undefined => {
    if (ifd + 2 > tiff.length) return undefined;
    const entries = u16(ifd);
    for (let i = 0; i < entries; i++) {
      const entry = ifd + 2 + i * 12;
      if (entry + 12 > tiff.length) return undefined;
      if (u16(entry) === tag) return { count: u32(entry + 4), value: entry + 8 };
    }
    return undefined;
  };
  const pointer = findTag(u32(4), EXIF_IFD_POINTER);
  if (!pointer) return undefined;
  const comment = findTag(u32(pointer.value), USER_COMMENT);
  if (!comment || comment.count < 8) return undefined;
  const start = comment.count <= 4 ? comment.value : u32(comment.value);
  if (start + comment.count > tiff.length)
    throw new InvalidImageError('Exif UserComment runs past the end of the block');
  const bytes = Buffer.from(tiff.subarray(start + 8, start + comment.count));
  const even = bytes.subarray(0, bytes.length & ~1);
  const code = tiff.subarray(start, start + 8);
  if (code.equals(UNICODE_CODE)) return (big ? even.swap16() : even).toString('utf16le').replace(/\0+$/, '');
  if (code.equals(ASCII_CODE)) return bytes.toString('latin1').replace(/\0+$/, '');
  return bytes.toString('utf8').replace(/\0+$/, '');
}

/** Inserts an Exif APP1 segment after SOI (and after a JFIF APP0 if present, as JFIF requires). */
export function jpegWithExif(jpeg: Buffer, tiff: Buffer): Buffer {
  if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new InvalidImageError('not a JPEG file');
  const payload = Buffer.concat([EXIF_HEADER, tiff]);
  if (payload.length > MAX_APP1_PAYLOAD) return jpeg;
  const segment = Buffer.alloc(4 + payload.length);
  segment.writeUInt16BE(0xffe1, 0);
  segment.writeUInt16BE(payload.length + 2, 2);
  payload.copy(segment, 4);
  let at = 2;
  if (jpeg[2] === 0xff && jpeg[3] === 0xe0) at = 4 + jpeg.readUInt16BE(4);
  return Buffer.concat([jpeg.subarray(0, at), segment, jpeg.subarray(at)]);
}

function jpegExif(jpeg: Buffer): Buffer | undefined {
  let at = 2;
  while (at + 4 <= jpeg.length && jpeg[at] === 0xff) {
    const marker = jpeg[at + 1]!;
    if (marker === 0xda || marker === 0xd9) return undefined;
    const length = jpeg.readUInt16BE(at + 2);
    const body = jpeg.subarray(at + 4, at + 2 + length);
    if (marker === 0xe1 && body.subarray(0, 6).equals(EXIF_HEADER)) return body.subarray(6);
    at += 2 + length;
  }
  return undefined;
}

interface RiffChunk {
  fourcc: string;
  data: Buffer;
}

function riffChunks(webp: Buffer): RiffChunk[] {
  if (webp.toString('latin1', 0, 4) !== 'RIFF' || webp.toString('latin1', 8, 12) !== 'WEBP') {
    throw new InvalidImageError('not a WebP file');
  }
  const chunks: RiffChunk[] = [];
  let at = 12;
  while (at + 8 <= webp.length) {
    const size = webp.readUInt32LE(at + 4);
    if (at + 8 + size > webp.length) throw new InvalidImageError('truncated WebP chunk');
    chunks.push({ fourcc: webp.toString('latin1', at, at + 4), data: webp.subarray(at + 8, at + 8 + size) });
    at += 8 + size + (size & 1);
  }
  return chunks;
}

/**
 * Replaces the EXIF chunk of a WebP that already has one (sharp writes the VP8X container and
 * sets its Exif flag when asked for any Exif; this swaps in our block).
 */
export function webpWithExif(webp: Buffer, tiff: Buffer): Buffer {
  const chunks = riffChunks(webp);
  if (!chunks.some((chunk) => chunk.fourcc === 'EXIF')) return webp;
  const parts: Buffer[] = [];
  for (const chunk of chunks) {
    const data = chunk.fourcc === 'EXIF' ? tiff : chunk.data;
    const header = Buffer.alloc(8);
    header.write(chunk.fourcc, 0, 'latin1');
    header.writeUInt32LE(data.length, 4);
    parts.push(header, data, data.length & 1 ? Buffer.alloc(1) : Buffer.alloc(0));
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(12);
  head.write('RIFF', 0, 'latin1');
  head.writeUInt32LE(body.length + 4, 4);
  head.write('WEBP', 8, 'latin1');
  return Buffer.concat([head, body]);
}

/** The Exif UserComment of a JPEG or WebP file, if it has one. */
export function readExifUserComment(image: Buffer): string | undefined {
  let tiff: Buffer | undefined;
  if (image[0] === 0xff && image[1] === 0xd8) tiff = jpegExif(image);
  else {
    tiff = riffChunks(image).find((chunk) => chunk.fourcc === 'EXIF')?.data;
    // Some writers keep the JPEG "Exif\0\0" prefix inside the WebP chunk.
    if (tiff?.subarray(0, 6).equals(EXIF_HEADER)) tiff = tiff.subarray(6);
  }
  return tiff ? readUserComment(tiff) : undefined;
}
