/**
 * safetensors reader: validates the header and locates every tensor in the file without reading
 * the data. The format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes
 * of JSON `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {…} }`, then the
 * data, offsets relative to its start. Large tensors are handed to ONNX Runtime as (file, offset,
 * length) external data; only small ones are read here.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { basename } from 'node:path';
import { ModelError } from '../../errors.js';
import { DTYPE_BYTES, isFloatDType, isSafetensorsDType, type SafetensorsDType, toFloat32 } from './dtypes.js';

/** The format's own limit on the header (safetensors refuses larger headers: MAX_HEADER_SIZE). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  byteLength: number;
}

export class SafetensorsFile {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  /** sha256 of the header bytes and file size: identifies the weights for graph caches. */
  readonly headerHash: string;
  readonly fileSize: number;
  #fd: number | undefined;

  private constructor(
    path: string,
    fd: number,
    fileSize: number,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
    hash: string,
  ) {
    this.path = path;
    this.#fd = fd;
    this.fileSize = fileSize;
    this.tensors = tensors;
    this.metadata = metadata;
    this.headerHash = hash;
  }

  /** Opens and validates a file; any problem is one ModelError naming the file (and tensor). */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'the file does not exist' : `it cannot be read (${code})`;
      throw new ModelError(path, `${path}: ${why}`, { cause: error });
    }
    try {
      const fileSize = fstatSync(fd).size;
      const { header, headerBytes } = readHeader(fd, path, fileSize);
      const dataStart = 8 + headerBytes.byteLength;
      const { tensors, metadata } = parseHeader(header, path, dataStart, fileSize);
      const hash = createHash('sha256').update(headerBytes).update(String(fileSize)).digest('hex');
      return new SafetensorsFile(path, fd, fileSize, tensors, metadata, hash);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The tensor's location; a missing tensor is a ModelError naming the file and the tensor. */
  get(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) {
      throw new ModelError(
        this.path,
        `${this.path}: tensor "${name}" is missing — this file does not look like the expected model (${this.tensors.size} tensors found)`,
      );
    }
    return info;
  }

  /** Reads a tensor's raw bytes (for small tensors: biases, scales, embeddings of tiny models). */
  readBytes(name: string): Uint8Array {
    const info = this.get(name);
    return readFully(
      this.#openFd(),
      new Uint8Array(info.byteLength),
      info.offset,
      () => new ModelError(this.path, `${this.path}: tensor "${name}" is cut short (file truncated?)`),
    );
  }

  /** Reads a floating-point tensor as float32 values. */
  readFloat32(name: string): Float32Array {
    const info = this.get(name);
    if (!isFloatDType(info.dtype)) {
      throw new ModelError(
        this.path,
        `${this.path}: tensor "${name}" is ${info.dtype}, expected a floating-point type`,
      );
    }
    return toFloat32(info.dtype, this.readBytes(name));
  }

  /** Tensor names that start with `prefix`. */
  names(prefix = ''): string[] {
    return [...this.tensors.keys()].filter((n) => n.startsWith(prefix));
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #openFd(): number {
    if (this.#fd === undefined) this.#fd = openSync(this.path, 'r');
    return this.#fd;
  }
}

/**
 * Reads `into.byteLength` bytes of `fd` from `position` into `into` (a read may return fewer bytes
 * than asked: it reads on until all are there); a file that ends first throws `short()`.
 */
export function readFully<T extends Uint8Array>(
  fd: number,
  into: T,
  position: number,
  short: () => Error,
): T {
  let done = 0;
  while (done < into.byteLength) {
    const n = readSync(fd, into, done, into.byteLength - done, position + done);
    if (n === 0) throw short();
    done += n;
  }
  return into;
}

/**
 * The header's JSON bytes of the safetensors file at `path`, unparsed (its length checked against
 * the file): what identifies a checkpoint (models-dir/model-hash.ts) and where the data starts
 * (8 + its length: lora/hash.ts).
 */
export function safetensorsHeaderBytes(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    return readHeaderBytes(fd, path, fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

function readHeaderBytes(fd: number, path: string, fileSize: number): Buffer {
  if (fileSize < 8) throw new ModelError(path, `${path}: not a safetensors file (only ${fileSize} bytes)`);
  const cutShort = () => new ModelError(path, `${path}: the safetensors header is cut short`);
  const headerLength = Number(readFully(fd, Buffer.alloc(8), 0, cutShort).readBigUInt64LE(0));
  if (headerLength < 2 || headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
    throw new ModelError(
      path,
      `${path}: not a valid safetensors file (header length ${headerLength} does not fit a ${fileSize}-byte file; truncated or not safetensors?)`,
    );
  }
  return readFully(fd, Buffer.alloc(headerLength), 8, cutShort);
}

function readHeader(
  fd: number,
  path: string,
  fileSize: number,
): { header: unknown; headerBytes: Uint8Array } {
  const headerBytes = readHeaderBytes(fd, path, fileSize);
  try {
    return { header: JSON.parse(headerBytes.toString('utf8')), headerBytes };
  } catch {
    throw new ModelError(
      path,
      `${path}: the safetensors header of ${basename(path)} is not valid JSON (corrupt file?)`,
    );
  }
}

function parseHeader(
  header: unknown,
  path: string,
  dataStart: number,
  fileSize: number,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ModelError(path, `${path}: the safetensors header is not a JSON object`);
  }
  const dataBytes = fileSize - dataStart;
  const promised = dataStart + promisedDataEnd(header as Record<string, unknown>);
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      // `null` is valid (writers emit it for "no metadata"); anything but an object of strings is not.
      if (raw === null || raw === undefined) continue;
      if (typeof raw !== 'object' || Array.isArray(raw)) {
        throw new ModelError(
          path,
          `${path}: the safetensors header's __metadata__ is ${JSON.stringify(raw)}, not an object of strings (corrupt file?)`,
        );
      }
      metadata = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const bad = (why: string) => new ModelError(path, `${path}: tensor "${name}" ${why}`);
    const entry = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof entry.dtype !== 'string' || !isSafetensorsDType(entry.dtype)) {
      throw bad(`has unsupported dtype ${JSON.stringify(entry.dtype)}`);
    }
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`has an invalid shape ${JSON.stringify(shape)}`);
    }
    const offsets = entry.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)
    ) {
      throw bad(`has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const expected = shape.reduce((a: number, d: number) => a * d, 1) * DTYPE_BYTES[entry.dtype];
    if (end < begin || end - begin !== expected) {
      throw bad(`has ${end - begin} bytes of data but shape [${shape}] of ${entry.dtype} needs ${expected}`);
    }
    if (end > dataBytes) {
      throw new ModelError(
        path,
        `${path} is truncated: its header says ${sizeText(promised)} of tensors, the file has ${sizeText(fileSize)} ` +
          `(an interrupted download or copy: get the file again) — ${basename(path)}: tensor "${name}" ends at byte ${dataStart + end}, past the end`,
      );
    }
    tensors.set(name, {
      name,
      dtype: entry.dtype,
      shape: shape as number[],
      offset: dataStart + begin,
      byteLength: expected,
    });
  }
  const sorted = [...tensors.values()].filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].offset < sorted[i - 1].offset + sorted[i - 1].byteLength) {
      throw new ModelError(
        path,
        `${path}: tensors "${sorted[i - 1].name}" and "${sorted[i].name}" overlap (corrupt file)`,
      );
    }
  }
  return { tensors, metadata };
}

/** Where the data of the last tensor the header describes ends, relative to the data section. */
function promisedDataEnd(header: Record<string, unknown>): number {
  let end = 0;
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__' || typeof raw !== 'object' || raw === null) continue;
    const offsets = (raw as { data_offsets?: unknown }).data_offsets;
    if (Array.isArray(offsets) && Number.isSafeInteger(offsets[1])) end = Math.max(end, offsets[1] as number);
  }
  return end;
}

function sizeText(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} bytes`;
}
