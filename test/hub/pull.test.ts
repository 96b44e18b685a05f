import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ModelError } from '../../src/errors.js';
import { HubError } from '../../src/pipeline/hub/errors.js';
import { type PullProgress, pullModelSet } from '../../src/pipeline/hub/pull.js';
import { discoverModelSet } from '../../src/pipeline/models-dir/discover.js';
import { readTokenizerFiles } from '../../src/pipeline/text/tokenizer-files.js';
import { writeTinyModel } from '../../src/pipeline/tiny/generate.js';
import { FakeHub } from './fake-hub.js';
import { serveTinyAsRepo } from './fixtures.js';

const LARGE = 'stabilityai/stable-diffusion-3.5-large';
const TOKEN = 'hf_test_token';

let tinyDir: string;
let hub: FakeHub;
let work: string;

beforeAll(() => {
  tinyDir = mkdtempSync(join(tmpdir(), 'atelier-tiny-'));
  writeTinyModel(tinyDir);
});

afterAll(() => rmSync(tinyDir, { recursive: true, force: true }));

beforeEach(async () => {
  hub = await FakeHub.start();
  serveTinyAsRepo(hub, LARGE, 'sd3.5_large.safetensors', tinyDir);
  hub.tokens.set(TOKEN, new Set([LARGE]));
  work = mkdtempSync(join(tmpdir(), 'atelier-pull-'));
});

afterEach(async () => {
  await hub.close();
  rmSync(work, { recursive: true, force: true });
  vi.unstubAllEnvs();
});

const dirs = () => ({ modelsDir: join(work, 'models'), dataDir: join(work, 'data') });

describe('pullModelSet', () => {
  it('downloads a named set into the ComfyUI layout that discovery then finds complete', async () => {
    const progress: PullProgress[] = [];
    const result = await pullModelSet('sd3.5-large', {
      ...dirs(),
      baseUrl: hub.url,
      token: TOKEN,
      onProgress: (p) => progress.push(p),
    });

    const { modelsDir, dataDir } = dirs();
    expect(
      readFileSync(join(modelsDir, 'checkpoints/sd3.5_large.safetensors')).equals(
        readFileSync(join(tinyDir, 'checkpoints/atelier-tiny-sd35.safetensors')),
      ),
    ).toBe(true);
    expect(existsSync(join(modelsDir, 'text_encoders/t5xxl_fp8_e4m3fn.safetensors'))).toBe(true);
    expect(existsSync(join(modelsDir, 'text_encoders/t5xxl_fp16.safetensors'))).toBe(false);
    expect(result.paths).toEqual({
      modelsDir,
      checkpoint: 'sd3.5_large.safetensors',
      tokenizers: { clip: join(dataDir, 'tokenizers/clip'), t5: join(dataDir, 'tokenizers/t5') },
    });
    expect(result.files.every((f) => f.outcome === 'downloaded')).toBe(true);

    const set = discoverModelSet({ modelsDir, dataDir });
    expect(set.name).toBe('sd3.5_large');
    expect(set.components.t5?.file).toBe(join(modelsDir, 'text_encoders/t5xxl_fp8_e4m3fn.safetensors'));
    expect(set.tokenizers).toEqual(result.paths.tokenizers);

    // The CLIP tokenizer rebuilt from vocab.json + merges.txt tokenizes as the original.
    const load = (dir: string, kind: 'clip' | 't5') => {
      const f = readTokenizerFiles(dir, kind);
      return new Tokenizer(f.tokenizerJson as never, f.tokenizerConfig as never);
    };
    const original = load(join(tinyDir, 'tokenizers/clip'), 'clip');
    const pulled = load(set.tokenizers.clip, 'clip');
    for (const prompt of ['a lighthouse at dusk, oil painting', 'Zürich 2024!!']) {
      expect(pulled.encode(prompt).ids).toEqual(original.encode(prompt).ids);
    }

    // Progress: every file checked, then bytes that only grow, ending at the set's total.
    const total = result.files.reduce((sum, f) => sum + f.bytes, 0);
    expect(progress.filter((p) => p.phase === 'checking').map((p) => p.file)).toEqual(
      result.set.files.map((f) => f.path),
    );
    const overall = progress.filter((p) => p.phase === 'downloading').map((p) => p.overallBytes);
    expect(overall.every((b, i) => i === 0 || b >= overall[i - 1])).toBe(true);
    expect(progress.at(-1)).toMatchObject({ phase: 'done', overallBytes: total, overallTotal: total });
    expect(progress.every((p) => Number.isFinite(p.bytesPerSecond) && p.bytesPerSecond >= 0)).toBe(true);
  });

  it('sends the token to the hub and never to the CDN', async () => {
    await pullModelSet('sd3.5-large', { ...dirs(), baseUrl: hub.url, token: TOKEN });
    const hubRequests = hub.log.filter((r) => r.server === 'hub');
    expect(hubRequests.length).toBeGreaterThan(0);
    expect(hubRequests.every((r) => r.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(hub.cdnRequests().length).toBeGreaterThan(0);
    expect(hub.cdnRequests().every((r) => r.authorization === undefined)).toBe(true);
  });

  it('explains a gated repository without a token before downloading anything', async () => {
    const error = await pullModelSet('sd3.5-large', { ...dirs(), baseUrl: hub.url, token: null }).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(HubError);
    expect(error.status).toBe(401);
    expect(error.message).toContain(
      `${LARGE} is gated: downloading it needs a Hugging Face token (401). Accept the licence at ${hub.url}/${LARGE}`,
    );
    expect(error.message).toContain('set HF_TOKEN');
    expect(hub.cdnRequests()).toHaveLength(0);
    expect(existsSync(join(dirs().modelsDir, 'checkpoints'))).toBe(false);
  });

  it('explains a token whose account has not accepted the licence', async () => {
    hub.tokens.set('hf_other', new Set());
    const error = await pullModelSet('sd3.5-large', { ...dirs(), baseUrl: hub.url, token: 'hf_other' }).catch(
      (e) => e,
    );
    expect(error.status).toBe(403);
    expect(error.message).toMatch(
      /is gated and the account of HF_TOKEN has not been granted access \(403\)\. Accept the licence at/,
    );
  });

  it('reads HF_TOKEN and HF_ENDPOINT from the environment', async () => {
    vi.stubEnv('HF_TOKEN', TOKEN);
    vi.stubEnv('HF_ENDPOINT', hub.url);
    const result = await pullModelSet('sd3.5-large', { ...dirs(), tokenizersOnly: true });
    expect(result.files.map((f) => f.target.replace(`${dirs().dataDir}/`, ''))).toEqual([
      'tokenizers/clip/vocab.json',
      'tokenizers/clip/merges.txt',
      'tokenizers/clip/tokenizer_config.json',
      'tokenizers/t5/tokenizer.json',
      'tokenizers/t5/tokenizer_config.json',
    ]);
    expect(existsSync(join(dirs().dataDir, 'tokenizers/clip/tokenizer.json'))).toBe(true);
    expect(existsSync(join(dirs().modelsDir, 'checkpoints'))).toBe(false);
  });

  it('fetches the fp16 T5 when asked, and skips what a second run finds in place', async () => {
    await pullModelSet('sd3.5-large', { ...dirs(), baseUrl: hub.url, token: TOKEN, t5: 'fp16' });
    expect(existsSync(join(dirs().modelsDir, 'text_encoders/t5xxl_fp16.safetensors'))).toBe(true);
    const cdnBefore = hub.cdnRequests().length;
    const again = await pullModelSet('sd3.5-large', {
      ...dirs(),
      baseUrl: hub.url,
      token: TOKEN,
      t5: 'fp16',
    });
    expect(again.files.every((f) => f.outcome === 'present')).toBe(true);
    expect(hub.cdnRequests()).toHaveLength(cdnBefore);
  });

  it('refuses to start when the disk cannot hold the download', async () => {
    hub.addFile(LARGE, 'sd3.5_large.safetensors', Buffer.from('tiny'), { claimedSize: 2 ** 52 });
    const error = await pullModelSet('sd3.5-large', { ...dirs(), baseUrl: hub.url, token: TOKEN }).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(ModelError);
    expect(error.message).toMatch(
      /^Not enough disk space in .+: the download needs [\d.]+ TB, .+ is free\.$/,
    );
    expect(hub.cdnRequests()).toHaveLength(0);
  });

  it('names the sets it knows when given another name', async () => {
    await expect(pullModelSet('sd4', { ...dirs(), baseUrl: hub.url })).rejects.toThrow(
      'Unknown model set "sd4": choose sd3.5-large, sd3.5-large-turbo or sd3.5-medium.',
    );
  });
});
