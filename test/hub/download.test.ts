import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { downloadFile } from '../../src/pipeline/hub/download.js';
import { HubError } from '../../src/pipeline/hub/errors.js';
import { type HubClientOptions, headFile } from '../../src/pipeline/hub/http.js';
import { FakeHub } from './fake-hub.js';

const REPO = 'owner/model';

/** Deterministic bytes that differ at every position, so a misplaced resume shows in the hash. */
function payload(size: number, salt = 0): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + (i >> 8) * 7 + salt) & 0xff;
  return b;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let hub: FakeHub;
let dir: string;
let client: HubClientOptions;

beforeEach(async () => {
  hub = await FakeHub.start();
  hub.addRepo(REPO);
  dir = mkdtempSync(join(tmpdir(), 'atelier-download-'));
  client = { baseUrl: hub.url, token: null };
});

afterEach(async () => {
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
});

async function fetchTo(path: string, dest: string, extra: Partial<Parameters<typeof downloadFile>[2]> = {}) {
  const remote = await headFile({ repo: REPO, path, revision: 'main' }, client);
  return downloadFile(remote, dest, {
    ...client,
    retryDelayMs: 0,
    refresh: () => headFile(remote.ref, client),
    ...extra,
  });
}

describe('downloadFile', () => {
  it('follows the redirect of an LFS file to the CDN and checks its sha256', async () => {
    const content = payload(300_000);
    hub.addFile(REPO, 'model.safetensors', content);
    const remote = await headFile({ repo: REPO, path: 'model.safetensors', revision: 'main' }, client);
    expect(remote).toMatchObject({ size: content.length, sha256: sha256(content) });
    expect(remote.url.startsWith(hub.cdnUrl)).toBe(true);

    const dest = join(dir, 'checkpoints/model.safetensors');
    expect(await downloadFile(remote, dest, client)).toBe('downloaded');
    expect(readFileSync(dest).equals(content)).toBe(true);
    expect(existsSync(`${dest}.partial`)).toBe(false);
  });

  it('downloads a small git-stored file from the hub itself and checks its git blob sha1', async () => {
    const content = Buffer.from('{"bos_token": "<|startoftext|>"}\n');
    hub.addFile(REPO, 'tokenizer/tokenizer_config.json', content);
    const dest = join(dir, 'tokenizer_config.json');
    await fetchTo('tokenizer/tokenizer_config.json', dest);
    expect(readFileSync(dest).equals(content)).toBe(true);
    expect(hub.cdnRequests()).toHaveLength(0);
  });

  it('resumes with a Range request after the connection drops mid-file', async () => {
    const content = payload(1_000_000);
    hub.addFile(REPO, 'big.safetensors', content);
    hub.faults.drop = { path: 'big.safetensors', afterBytes: 400_000, times: 2 };
    const seen: number[] = [];
    const dest = join(dir, 'big.safetensors');
    await fetchTo('big.safetensors', dest, { onProgress: (p) => seen.push(p.bytes) });

    expect(readFileSync(dest).equals(content)).toBe(true);
    const gets = hub.cdnRequests('big.safetensors');
    expect(gets).toHaveLength(3);
    expect(gets[0].range).toBeUndefined();
    // Each retry asks for the rest from where the file on disk ends: at most what the dropped
    // connection sent (the client may not have read the last bytes before the socket closed).
    const starts = gets.slice(1).map((r) => Number(/^bytes=(\d+)-$/.exec(r.range ?? '')?.[1]));
    expect(starts[0]).toBeGreaterThan(0);
    expect(starts[0]).toBeLessThanOrEqual(400_000);
    expect(starts[1]).toBeGreaterThan(starts[0]);
    expect(starts[1]).toBeLessThanOrEqual(starts[0] + 400_000);
    expect(seen.at(-1)).toBe(content.length);
    expect(seen.every((b, i) => i === 0 || b >= seen[i - 1])).toBe(true);
  });

  it('continues a .partial file left by an earlier run', async () => {
    const content = payload(500_000);
    hub.addFile(REPO, 'model.safetensors', content);
    const dest = join(dir, 'model.safetensors');
    writeFileSync(`${dest}.partial`, content.subarray(0, 123_456));
    await fetchTo('model.safetensors', dest);
    expect(readFileSync(dest).equals(content)).toBe(true);
    const [get] = hub.cdnRequests('model.safetensors');
    expect(get.range).toBe('bytes=123456-');
    expect(get.sent).toBe(content.length - 123_456);
  });

  it('starts over when a leftover .partial belongs to another version of the file', async () => {
    const content = payload(200_000);
    hub.addFile(REPO, 'model.safetensors', content);
    const dest = join(dir, 'model.safetensors');
    writeFileSync(`${dest}.partial`, payload(50_000, 99));
    await fetchTo('model.safetensors', dest);
    expect(readFileSync(dest).equals(content)).toBe(true);
    expect(hub.cdnRequests('model.safetensors').map((r) => r.range)).toEqual(['bytes=50000-', undefined]);
  });

  it('starts over when the server ignores the Range header', async () => {
    const content = payload(200_000);
    hub.addFile(REPO, 'model.safetensors', content);
    hub.faults.ignoreRange = true;
    const dest = join(dir, 'model.safetensors');
    writeFileSync(`${dest}.partial`, content.subarray(0, 80_000));
    await fetchTo('model.safetensors', dest);
    expect(readFileSync(dest).equals(content)).toBe(true);
  });

  it('refuses corrupt bytes and leaves nothing under the final name', async () => {
    hub.addFile(REPO, 'model.safetensors', payload(100_000));
    hub.faults.corrupt = 'model.safetensors';
    const dest = join(dir, 'model.safetensors');
    const error = await fetchTo('model.safetensors', dest).catch((e) => e);
    expect(error).toBeInstanceOf(HubError);
    expect(error.message).toMatch(/corrupt \(sha256 [0-9a-f]{64}, expected [0-9a-f]{64}\)/);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.partial`)).toBe(false);
  });

  it('refuses a corrupt git-stored file (git blob sha1)', async () => {
    hub.addFile(REPO, 'merges.txt', Buffer.from('#version: 0.2\na b\n'));
    hub.faults.corrupt = 'merges.txt';
    // The fake hub corrupts only CDN downloads; corrupt the hub's answer by announcing another hash.
    const remote = await headFile({ repo: REPO, path: 'merges.txt', revision: 'main' }, client);
    const error = await downloadFile(
      { ...remote, gitSha1: 'f'.repeat(40) },
      join(dir, 'merges.txt'),
      client,
    ).catch((e) => e);
    expect(error.message).toMatch(/git sha1/);
  });

  it('asks the hub for a fresh link when the CDN link has expired', async () => {
    const content = payload(100_000);
    hub.addFile(REPO, 'model.safetensors', content);
    const remote = await headFile({ repo: REPO, path: 'model.safetensors', revision: 'main' }, client);
    hub.expireLinks();
    const dest = join(dir, 'model.safetensors');
    await downloadFile(remote, dest, { ...client, refresh: () => headFile(remote.ref, client) });
    expect(readFileSync(dest).equals(content)).toBe(true);
    expect(hub.cdnRequests().map((r) => r.sent)).toEqual([0, content.length]);
  });

  it('keeps a file that is already there', async () => {
    const content = payload(10_000);
    hub.addFile(REPO, 'model.safetensors', content);
    const dest = join(dir, 'model.safetensors');
    writeFileSync(dest, content);
    const before = statSync(dest).mtimeMs;
    expect(await fetchTo('model.safetensors', dest)).toBe('present');
    expect(hub.cdnRequests()).toHaveLength(0);
    expect(statSync(dest).mtimeMs).toBe(before);
  });

  it('gives up after the retries, keeping the partial file for the next run', async () => {
    const content = payload(300_000);
    hub.addFile(REPO, 'model.safetensors', content);
    hub.faults.drop = { path: 'model.safetensors', afterBytes: 0, times: 100 };
    const dest = join(dir, 'model.safetensors');
    const error = await fetchTo('model.safetensors', dest, { retries: 2 }).catch((e) => e);
    expect(error).toBeInstanceOf(HubError);
    expect(error.message).toMatch(/download failed after 3 attempts .*run the command again to resume/);
    expect(hub.cdnRequests('model.safetensors')).toHaveLength(3);
  });

  it('stops mid-file when the signal is aborted', async () => {
    hub.addFile(REPO, 'model.safetensors', payload(1_000_000));
    hub.faults.stall = { path: 'model.safetensors', afterBytes: 100_000 };
    const controller = new AbortController();
    client.signal = controller.signal;
    const dest = join(dir, 'model.safetensors');
    const download = fetchTo('model.safetensors', dest).catch((e) => e);
    await once(hub.events, 'stalled');
    controller.abort(new Error('stopped by the user'));
    expect((await download).message).toBe('stopped by the user');
    expect(existsSync(dest)).toBe(false);
  });
});

describe('headFile', () => {
  it('says what is missing: the file, the repository or the revision', async () => {
    const head = (repo: string, path: string, revision = 'main') =>
      headFile({ repo, path, revision }, client).catch((e) => e);
    expect((await head(REPO, 'nope.safetensors')).message).toBe(
      'Not found (404): nope.safetensors is not in owner/model at main. The hub said: "nope.safetensors does not exist on "main""',
    );
    expect((await head('owner/other', 'x')).message).toMatch(/the repository owner\/other does not exist/);
    expect((await head(REPO, 'x', 'v9')).message).toMatch(/the revision v9 does not exist in owner\/model/);
  });

  it('reports an unreachable hub with its address', async () => {
    const error = await headFile(
      { repo: REPO, path: 'x', revision: 'main' },
      { baseUrl: 'http://127.0.0.1:1', token: null },
    ).catch((e) => e);
    expect(error).toBeInstanceOf(HubError);
    expect(error.message).toMatch(/^Cannot reach http:\/\/127\.0\.0\.1:1 for owner\/model\/x/);
    expect(error.transient).toBe(true);
  });
});
