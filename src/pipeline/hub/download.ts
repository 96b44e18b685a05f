/**
 * One file from the hub to disk: into `<dest>.partial`, resumed with a `Range` request after a
 * dropped connection or a restart, checked against the hub's size and hash (sha256 for LFS files,
 * the git blob sha1 for small ones), then renamed into place, so a file under its final name is
 * always complete.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { HubError } from './errors.js';
import { fetchFollowing, type HubClientOptions, type RemoteFile } from './http.js';
import { SpeedMeter } from './progress.js';

export interface FileProgress {
  bytes: number;
  total: number;
  bytesPerSecond: number;
}

export interface DownloadOptions extends HubClientOptions {
  onProgress?: (progress: FileProgress) => void;
  /**
   * Attempts after a failure that made no progress (each attempt that receives bytes starts the
   * count again).
   * @default 5
   */
  retries?: number;
  /**
   * Wait before retry n is n · retryDelayMs.
   * @default 1000
   */
  retryDelayMs?: number;
  /** Asks the hub again for the file's URL (CDN links are signed and expire). */
  refresh?: () => Promise<RemoteFile>;
}

/** Progress callbacks at most this often (a 16 GB file arrives in a few hundred thousand chunks). */
const PROGRESS_INTERVAL_MS = 100;

export type DownloadOutcome = 'downloaded' | 'present';

export async function downloadFile(
  remote: RemoteFile,
  dest: string,
  options: DownloadOptions,
): Promise<DownloadOutcome> {
  if (existsSync(dest) && statSync(dest).size === remote.size) return 'present';
  await mkdir(dirname(dest), { recursive: true });
  const partial = `${dest}.partial`;
  let resumed = existsSync(partial) && statSync(partial).size > 0;
  for (;;) {
    const hash = await transfer(remote, partial, options);
    const digest = hash.digest('hex');
    const expected = remote.sha256 ?? remote.gitSha1;
    if (expected === undefined || digest === expected) break;
    await rm(partial, { force: true });
    // A partial file from an older version of the file resumes into garbage: start over once.
    if (resumed) {
      resumed = false;
      continue;
    }
    throw new HubError(
      remote.ref.repo,
      remote.ref.path,
      undefined,
      `${remote.ref.repo}/${remote.ref.path}: the download is corrupt (${remote.sha256 ? 'sha256' : 'git sha1'} ${digest}, expected ${expected}); try again`,
    );
  }
  await rename(partial, dest);
  return 'downloaded';
}

/** A hash of the content: sha256, or git's blob sha1 ("blob <size>\0" + content) for git-stored files. */
function newHash(remote: RemoteFile): Hash {
  if (remote.sha256 || !remote.gitSha1) return createHash('sha256');
  return createHash('sha1').update(`blob ${remote.size}\0`);
}

async function hashExisting(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

/** Fills `partial` up to the file's size, resuming and retrying; returns the hash of its content. */
async function transfer(initial: RemoteFile, partial: string, options: DownloadOptions): Promise<Hash> {
  let remote = initial;
  const { ref } = remote;
  let hash = newHash(remote);
  let offset = existsSync(partial) ? (await stat(partial)).size : 0;
  if (offset > remote.size) {
    await rm(partial);
    offset = 0;
  }
  if (offset > 0) await hashExisting(partial, hash);
  const meter = new SpeedMeter();
  let lastReport = Number.NEGATIVE_INFINITY;
  const report = (force = false) => {
    const now = performance.now();
    if (!options.onProgress || (!force && now - lastReport < PROGRESS_INTERVAL_MS)) return;
    lastReport = now;
    options.onProgress({ bytes: offset, total: remote.size, bytesPerSecond: meter.update(offset) });
  };
  report(true);

  let failures = 0;
  while (offset < remote.size) {
    const before = offset;
    try {
      const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
      if (offset > 0) headers.Range = `bytes=${offset}-`;
      const { response } = await fetchFollowing(remote.url, { method: 'GET', headers }, options);
      if (response.status === 200 && offset > 0) {
        // The server ignored the Range header: the body is the whole file again.
        await rm(partial, { force: true });
        offset = 0;
        hash = newHash(remote);
      } else if (response.status === 206) {
        checkContentRange(response.headers.get('content-range'), offset, remote);
      } else if (response.status !== 200) {
        await response.body?.cancel();
        // A signed CDN link expires (403) and must be asked for again; the hub's own refusals are final.
        if (options.refresh && response.status >= 400 && response.status < 500 && failures === 0) {
          remote = { ...(await options.refresh()), ref };
          failures++;
          continue;
        }
        throw new HubError(
          ref.repo,
          ref.path,
          response.status,
          `${ref.repo}/${ref.path}: the download server answered ${response.status}`,
        );
      }
      const file = await open(partial, offset === 0 ? 'w' : 'a');
      try {
        // Node's web streams are async iterable; the DOM typings don't say so.
        const body = (response.body ?? []) as unknown as AsyncIterable<Uint8Array>;
        for await (const bytes of body) {
          const room = remote.size - offset;
          const take = bytes.byteLength > room ? bytes.subarray(0, room) : bytes;
          await file.write(take);
          hash.update(take);
          offset += take.byteLength;
          report();
          if (offset >= remote.size) break;
        }
        await file.sync();
      } finally {
        await file.close();
      }
      if (offset < remote.size) throw new Error(`connection closed after ${offset} of ${remote.size} bytes`);
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason ?? error;
      if (error instanceof HubError && !error.transient) throw error;
      failures = offset > before ? 1 : failures + 1;
      if (failures > (options.retries ?? 5)) {
        throw new HubError(
          ref.repo,
          ref.path,
          undefined,
          `${ref.repo}/${ref.path}: download failed after ${failures} attempts (${(error as Error).message}); run the command again to resume`,
          {
            cause: error,
          },
        );
      }
      await delay(failures * (options.retryDelayMs ?? 1000), options.signal);
    }
  }
  report(true);
  return hash;
}

function checkContentRange(header: string | null, offset: number, remote: RemoteFile): void {
  const m = header ? /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header) : null;
  if (!m || Number(m[1]) !== offset || (m[3] !== '*' && Number(m[3]) !== remote.size)) {
    throw new HubError(
      remote.ref.repo,
      remote.ref.path,
      206,
      `${remote.ref.repo}/${remote.ref.path}: the server resumed at the wrong place (Content-Range ${header}, wanted bytes ${offset}- of ${remote.size})`,
    );
  }
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
