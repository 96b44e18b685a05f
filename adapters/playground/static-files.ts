/**
 * The page's files (HTML, CSS, vanilla JS modules, icons), read once at start and served from
 * memory. Only files that exist in the folder at start can be served, so no request path can
 * reach outside it.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

export interface StaticFile {
  body: Buffer;
  contentType: string;
  etag: string;
}

/** URL path (`/app.js`, `/icons/bot.svg`) → file. */
export function loadStaticFiles(dir: string = DEFAULT_STATIC_DIR): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const contentType = CONTENT_TYPES[extname(entry.name)];
    if (!entry.isFile() || !contentType) continue;
    const path = join(entry.parentPath, entry.name);
    const body = readFileSync(path);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    files.set(`/${relative(dir, path).split(sep).join('/')}`, { body, contentType, etag });
  }
  return files;
}
