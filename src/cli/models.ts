/** `atelier models pull <name>`: downloads a model set from the Hugging Face hub with a progress bar. */
import { join, resolve } from 'node:path';
import type { AtelierConfig } from '../config/index.js';
import { formatBytes, formatProgressLine, pullModelSet } from '../pipeline/hub/index.js';
import { ProgressLine } from './progress-bar.js';

export interface PullCommandOptions {
  t5?: 'fp8' | 'fp16' | 'none';
  tokenizersOnly?: boolean;
  dir?: string;
}

export async function pull(
  config: AtelierConfig,
  name: string,
  options: PullCommandOptions,
): Promise<string> {
  const modelsDir = resolve(options.dir ?? config.models.dir ?? join(config.dataDir, 'models'));
  const line = new ProgressLine();
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    const result = await pullModelSet(name, {
      dataDir: config.dataDir,
      modelsDir,
      token: config.secrets.hfToken,
      // HF_ENDPOINT is the hub clients' own variable for mirrors; the config key is ours.
      baseUrl: process.env.HF_ENDPOINT || config.models.hub.endpoint,
      t5: options.t5,
      tokenizersOnly: options.tokenizersOnly,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase === 'checking') line.update(`checking ${p.index + 1}/${p.count} ${p.file}`);
        else if (p.phase === 'downloading')
          line.update(
            formatProgressLine({ ...p, file: `${p.index + 1}/${p.count} ${p.file}` }),
            (100 * p.bytes) / (p.total || 1),
          );
      },
    });
    const total = result.files.reduce((n, f) => n + f.bytes, 0);
    line.done(`${result.files.length} files, ${formatBytes(total)} in ${modelsDir}`);
    return modelsDir;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
