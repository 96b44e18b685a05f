import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DEFAULTS_FILE, loadConfig } from '../../src/config/index.js';
import { workdir } from './helpers.js';

describe('config/default.yaml', () => {
  const text = readFileSync(DEFAULTS_FILE, 'utf8');

  it('documents every setting with a comment on its line', () => {
    const undocumented = text
      .split('\n')
      .filter((line) => /^\s*[A-Za-z]\w*:\s*\S/.test(line) && !line.includes(' # '));
    expect(undocumented).toEqual([]);
  });

  it('holds every setting the schema knows (the schema has no defaults of its own)', () => {
    // Loading validates the file; an unknown or missing key would throw.
    expect(() => loadConfig({ env: {}, cwd: workdir() })).not.toThrow();
    expect(Object.keys(parse(text))).toEqual([
      'dataDir',
      'log',
      'queue',
      'limits',
      'generation',
      'styles',
      'loras',
      'models',
      'images',
      'progress',
      'discord',
      'slack',
      'playground',
      'cluster',
    ]);
  });
});
