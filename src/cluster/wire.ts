/**
 * What travels between the gateway and the workers. Jobs go as BullMQ job data (JSON: the job
 * record and, for a variation or upscale, its parent image in base64). Results do not go through
 * BullMQ's return value (that is copied into its event stream): the worker writes them as a hash
 * of raw PNG bytes under `<prefix>:result:<jobId>` and BullMQ carries only a small summary.
 * Progress is a pub/sub frame: a JSON header, then the preview's bytes.
 */
import { PipelineError } from '../errors.js';
import type { JobRecord } from '../jobs/types.js';
import { deserializeError, serializeError } from '../pipeline/process/errors.js';
import type { RenderedJob } from '../scheduler/executor.js';
import type { RunProgress } from '../scheduler/runner.js';

export interface ClusterJobData {
  job: JobRecord;
  /** The parent image (PNG, base64) of a variation or upscale. */
  parent?: string;
}

/** BullMQ's return value: small, and who did it. */
export interface ClusterJobSummary {
  worker: string;
  images: number;
  bytes: number;
}

interface ResultMeta {
  model: string;
  promptTruncated?: boolean;
  worker: string;
  images: { width: number; height: number; seed: number }[];
  grid: boolean;
}

/** The result hash's fields: `meta` (JSON), `image:<i>` and `grid` (PNG bytes). */
export function resultFields(rendered: RenderedJob, worker: string): Map<string, string | Buffer> {
  const meta: ResultMeta = {
    model: rendered.model,
    worker,
    images: rendered.images.map(({ width, height, seed }) => ({ width, height, seed })),
    grid: rendered.grid !== undefined,
    ...(rendered.promptTruncated ? { promptTruncated: true } : {}),
  };
  const fields = new Map<string, string | Buffer>([['meta', JSON.stringify(meta)]]);
  for (const [i, image] of rendered.images.entries()) fields.set(`image:${i}`, Buffer.from(image.png));
  if (rendered.grid) fields.set('grid', Buffer.from(rendered.grid));
  return fields;
}

/** Bytes a rendered job takes in Redis. */
export function renderedBytes(rendered: RenderedJob): number {
  return (
    rendered.images.reduce((sum, image) => sum + image.png.byteLength, 0) + (rendered.grid?.byteLength ?? 0)
  );
}

/** The rendered job back from the result hash; throws a PipelineError when it is incomplete. */
export function renderedFromFields(
  jobId: string,
  fields: Record<string, Buffer>,
): { rendered: RenderedJob; worker: string } {
  const metaBytes = fields.meta;
  if (!metaBytes) throw new PipelineError(`the result of job ${jobId} is missing from Redis`);
  const meta = JSON.parse(metaBytes.toString('utf8')) as ResultMeta;
  const images = meta.images.map((image, i) => {
    const png = fields[`image:${i}`];
    if (!png) throw new PipelineError(`image ${i} of job ${jobId} is missing from Redis`);
    return { ...image, png: new Uint8Array(png) };
  });
  const rendered: RenderedJob = { images, model: meta.model };
  if (meta.grid) {
    if (!fields.grid) throw new PipelineError(`the grid of job ${jobId} is missing from Redis`);
    rendered.grid = new Uint8Array(fields.grid);
  }
  if (meta.promptTruncated) rendered.promptTruncated = true;
  return { rendered, worker: meta.worker };
}

export interface ProgressFrame extends RunProgress {
  jobId: string;
  worker: string;
}

export function encodeProgress(frame: ProgressFrame): Buffer {
  const { preview, ...header } = frame;
  const head = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(head.length);
  return Buffer.concat([length, head, ...(preview ? [Buffer.from(preview)] : [])]);
}

export function decodeProgress(message: Buffer): ProgressFrame | undefined {
  try {
    const length = message.readUInt32BE(0);
    const header = JSON.parse(message.subarray(4, 4 + length).toString('utf8')) as Omit<
      ProgressFrame,
      'preview'
    >;
    const rest = message.subarray(4 + length);
    return rest.length > 0 ? { ...header, preview: new Uint8Array(rest) } : header;
  } catch {
    return undefined;
  }
}

/** A worker's failure as BullMQ's `failedReason`: the error's kind and both messages, as JSON. */
export function failureReason(error: unknown): string {
  return JSON.stringify({ atelier: serializeError(error) });
}

/** The error a failed job reports to its user; BullMQ's own reasons (stalled too often) become PipelineErrors. */
export function failureFromReason(reason: string | undefined): Error {
  try {
    const parsed = JSON.parse(reason ?? '') as { atelier?: Parameters<typeof deserializeError>[0] };
    if (parsed.atelier) return deserializeError(parsed.atelier);
  } catch {
    // Not ours: BullMQ's.
  }
  return new PipelineError(`worker: ${reason ?? 'failed'}`);
}
