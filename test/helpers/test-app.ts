/**
 * A real Atelier core for end-to-end tests: config from the defaults plus `env`, a temporary data
 * dir, the random-weight tiny model in a pipeline process (quick: these tests are about the bot,
 * not the pictures; `env` naming ATELIER_MODELS__DIR chooses another, `options.pipeline` a test
 * double), SQLite, the scheduler. Close it in afterEach.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AtelierApp, createApp } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log.js';
import type { Pipeline } from '../../src/pipeline/types.js';
import { tinyModelEnv } from './tiny-model-env.js';

export interface TestApp extends AtelierApp {
  dataDir: string;
  /** Closes the app and removes the data dir (unless `keep`). */
  dispose(options?: { keep?: boolean }): Promise<void>;
}

export async function startTestApp(
  env: Record<string, string> = {},
  dataDir?: string,
  options: { pipeline?: Pipeline } = {},
): Promise<TestApp> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'atelier-app-'));
  const models = env['ATELIER_MODELS__DIR'] === undefined ? await tinyModelEnv() : {};
  const config = loadConfig({
    env: { ATELIER_DATA_DIR: dir, ATELIER_LOG__LEVEL: 'silent', ...models, ...env },
    cwd: dir,
  });
  const app = await createApp(config, {
    logger: createLogger({ level: 'silent' }),
    ...(options.pipeline ? { pipeline: options.pipeline } : {}),
  });
  await app.start();
  let closed = false;
  return Object.assign(app, {
    dataDir: dir,
    async dispose(options: { keep?: boolean } = {}) {
      if (!closed) await app.close();
      closed = true;
      if (!options.keep) rmSync(dir, { recursive: true, force: true });
    },
  });
}
