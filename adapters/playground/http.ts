/**
 * The playground's HTTP side: the page, the pictures of messages, and the gallery (results read
 * back through the Bot, so they outlive the in-memory feed and restarts).
 *
 * Routes (GET and HEAD only):
 *   /                          the page
 *   /<file>                    its static files
 *   /images/<messageId>/<hash> a message's image or preview (immutable: the hash is of the bytes)
 *   /api/gallery?channel=&limit=  the channel's recent results, newest first, as JSON
 *   /results/<jobId>/<grid|0-3|thumb>  a result image; `thumb` is a small WebP of the grid or image
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import sharp from 'sharp';
import type { BotPort, ResultImage } from '../../commands/port.js';
import type { Logger } from '../../src/log.js';
import type { Access } from './access.js';
import { PLATFORM } from './adapter.js';
import type { ChannelHub } from './hub.js';
import { CHANNEL_ID } from './protocol.js';
import type { StaticFile } from './static-files.js';

/** The gallery's calls (commands/port.ts). */
type GalleryBot = Pick<BotPort, 'recentResults' | 'resultImage' | 'app'>;

export interface HttpContext {
  hub: ChannelHub;
  bot: () => GalleryBot | undefined;
  staticFiles: Map<string, StaticFile>;
  logger: Logger;
  /** Host names the server answers to (DNS-rebinding guard); undefined = any. */
  allowedHosts?: ReadonlySet<string>;
  /** The shared secret every request must carry; undefined = none (loopback). */
  access?: Access;
}

/** Longest edge of a gallery thumbnail: a grid cell at 2× pixel density. */
const THUMB_EDGE = 384;
const THUMB_CACHE_ENTRIES = 128;
const GALLERY_DEFAULT = 24;
const GALLERY_MAX = 100;
const JOB_ID = /^[0-9a-z]{1,40}$/;

/**
 * The page talks only to its own origin; images may be blob: for downloads. `ws:` is listed
 * because some browsers do not count the page's own WebSocket origin as 'self'.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self' ws: wss:",
  "style-src 'self'",
  "script-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
  "form-action 'none'",
].join('; ');

export function createRequestHandler(context: HttpContext) {
  const thumbnails = new Map<string, ResultImage>();

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    if (!isAllowedHost(req, context.allowedHosts)) {
      text(res, 421, 'unknown host\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return text(res, 405, 'method not allowed\n');
    }
    if (context.access?.gate(req, res)) return;
    const url = new URL(req.url ?? '/', 'http://playground');
    const path = url.pathname;
    try {
      if (path === '/' || path === '/index.html')
        return serveStatic(req, res, context.staticFiles.get('/index.html'));
      if (path.startsWith('/images/')) return serveMessageImage(res, context.hub, path);
      if (path === '/api/gallery') return await serveGallery(res, context, url);
      if (path.startsWith('/results/')) return await serveResult(res, context, path, thumbnails);
      return serveStatic(req, res, context.staticFiles.get(path));
    } catch (error) {
      if (error instanceof URIError && !res.headersSent) {
        context.logger.debug({ path }, 'playground: malformed request path');
        return text(res, 400, 'bad request: malformed percent-encoding in the path\n');
      }
      context.logger.error({ err: error, path }, 'playground: request failed');
      if (!res.headersSent) text(res, 500, 'something went wrong\n');
      else res.destroy();
    }
  };
}

/** Loopback by name or address, with any port; blocks pages on other sites reached via DNS rebinding. */
export function isAllowedHost(req: IncomingMessage, allowed: ReadonlySet<string> | undefined): boolean {
  if (!allowed) return true;
  const host = req.headers.host;
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return allowed.has(name.toLowerCase());
}

function serveStatic(req: IncomingMessage, res: ServerResponse, file: StaticFile | undefined): void {
  if (!file) {
    text(res, 404, 'not found\n');
    return;
  }
  res.setHeader('Content-Type', file.contentType);
  res.setHeader('ETag', file.etag);
  // Revalidate each load: the files are small and change when the server is updated.
  res.setHeader('Cache-Control', 'no-cache');
  if (file.contentType.startsWith('text/html')) {
    res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
    res.setHeader('X-Frame-Options', 'DENY');
  }
  if (req.headers['if-none-match'] === file.etag) {
    res.statusCode = 304;
    res.end();
    return;
  }
  res.setHeader('Content-Length', file.body.byteLength);
  res.end(req.method === 'HEAD' ? undefined : file.body);
}

function serveMessageImage(res: ServerResponse, hub: ChannelHub, path: string): void {
  const [, , rawMessageId, hash, extra] = path.split('/');
  const messageId = rawMessageId === undefined ? undefined : decodedSegment(rawMessageId);
  // A malformed escape (`%E0%A4%A`) is the client's mistake: a plain 400, nothing logged.
  if (messageId === null) {
    text(res, 400, 'bad request: malformed percent-encoding in the path\n');
    return;
  }
  const image = extra === undefined && messageId && hash ? hub.images.get(messageId, hash) : undefined;
  if (!image) {
    text(res, 404, 'this image is no longer kept; find it in the gallery\n');
    return;
  }
  sendImage(res, image, 'public, max-age=31536000, immutable');
}

/** A path segment decoded, or null when its percent-encoding is malformed. */
function decodedSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

async function serveGallery(res: ServerResponse, context: HttpContext, url: URL): Promise<void> {
  const bot = context.bot();
  if (!bot) {
    text(res, 503, 'starting\n');
    return;
  }
  const channelId = url.searchParams.get('channel') ?? 'general';
  if (!CHANNEL_ID.test(channelId)) {
    text(res, 400, 'channel: expected a channel id such as general\n');
    return;
  }
  const limitParam = Number(url.searchParams.get('limit') ?? GALLERY_DEFAULT);
  const limit = Number.isInteger(limitParam)
    ? Math.min(Math.max(limitParam, 1), GALLERY_MAX)
    : GALLERY_DEFAULT;
  const results = bot.recentResults({ platform: PLATFORM, channelId }, limit);
  const items = results.map((r) => ({
    ...r,
    thumbUrl: `/results/${encodeURIComponent(r.jobId)}/thumb`,
    gridUrl: `/results/${encodeURIComponent(r.jobId)}/grid`,
  }));
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(JSON.stringify({ channelId, items }));
}

async function serveResult(
  res: ServerResponse,
  context: HttpContext,
  path: string,
  thumbnails: Map<string, ResultImage>,
): Promise<void> {
  const bot = context.bot();
  if (!bot) {
    text(res, 503, 'starting\n');
    return;
  }
  const [, , jobId, which, extra] = path.split('/');
  if (extra !== undefined || !jobId || !JOB_ID.test(jobId) || !/^(grid|thumb|[0-3])$/.test(which ?? ''))
    return text(res, 404, 'not found\n');
  // Only the playground's own results: a Discord or Slack image is not served to whoever has its id.
  if (!isPlaygroundJob(bot, jobId)) return text(res, 404, 'no such result\n');
  if (which === 'thumb') {
    const thumb = thumbnails.get(jobId) ?? (await makeThumbnail(bot, jobId));
    if (!thumb) {
      text(res, 404, 'no such result\n');
      return;
    }
    remember(thumbnails, jobId, thumb);
    return sendImage(res, thumb, 'private, max-age=3600');
  }
  const image = await bot.resultImage(jobId, which === 'grid' ? 'grid' : Number(which));
  // A single-image job has no grid: its grid is its image.
  const shown = image ?? (which === 'grid' ? await bot.resultImage(jobId, 0) : undefined);
  if (!shown) {
    text(res, 404, 'no such result\n');
    return;
  }
  sendImage(res, shown, 'private, max-age=3600');
}

/**
 * Whether `jobId` was asked for in the playground. The real Bot exposes its core's store; a
 * stand-in without one (unit tests) only ever knows playground results.
 */
function isPlaygroundJob(bot: GalleryBot, jobId: string): boolean {
  const store = (bot as { app?: { store?: PlaygroundJobs } }).app?.store;
  if (!store) return true;
  const job = store.jobs.get(jobId);
  return job !== undefined && job.spec.reply.platform === PLATFORM;
}

interface PlaygroundJobs {
  jobs: { get(id: string): { spec: { reply: { platform: string } } } | undefined };
}

async function makeThumbnail(bot: GalleryBot, jobId: string): Promise<ResultImage | undefined> {
  const source = (await bot.resultImage(jobId, 'grid')) ?? (await bot.resultImage(jobId, 0));
  if (!source) return undefined;
  const { data, info } = await sharp(source.data)
    .resize(THUMB_EDGE, THUMB_EDGE, { fit: 'inside', withoutEnlargement: true })
    .webp({ quality: 82 })
    .toBuffer({ resolveWithObject: true });
  return { data, mime: 'image/webp', width: info.width, height: info.height };
}

/** Keeps the most recent thumbnails (a Map iterates oldest first). */
function remember(cache: Map<string, ResultImage>, key: string, image: ResultImage): void {
  cache.delete(key);
  cache.set(key, image);
  for (const old of cache.keys()) {
    if (cache.size <= THUMB_CACHE_ENTRIES) break;
    cache.delete(old);
  }
}

function sendImage(
  res: ServerResponse,
  image: { data: Uint8Array; mime: string },
  cacheControl: string,
): void {
  res.setHeader('Content-Type', image.mime);
  res.setHeader('Content-Length', image.data.byteLength);
  res.setHeader('Cache-Control', cacheControl);
  res.end(res.req.method === 'HEAD' ? undefined : image.data);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.end(body);
}
