/**
 * A YAML "billion laughs" file in ATELIER_CONFIG: aliases of aliases that would expand to
 * millions of nodes. The yaml package stops at maxAliasCount; the operator gets one line naming
 * the file, from loadConfig and from the `atelier` command, never a ReferenceError's stack.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { workdir } from './helpers.js';

const BOMB = [
  'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
  ...['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].map(
    (name, i) => `${name}: &${name} [${Array(9).fill(`*${'abcdefgh'[i]}`).join(', ')}]`,
  ),
].join('\n');

const MESSAGE =
  'config: bomb.yaml is not allowed: its aliases (*name) expand to more than 100 copies, as an alias bomb does; write the values out instead';

describe('a YAML alias bomb in ATELIER_CONFIG', () => {
  it('is refused by loadConfig with one line naming the file', () => {
    const cwd = workdir({ 'bomb.yaml': `${BOMB}\n` });
    let error: unknown;
    try {
      loadConfig({ env: { ATELIER_CONFIG: 'bomb.yaml' }, cwd });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).key).toBe('ATELIER_CONFIG');
    expect((error as ConfigError).message).toBe(MESSAGE);
  });

  it('ends `atelier doctor` with that line and exit code 1', async () => {
    const cwd = workdir({ 'bomb.yaml': `${BOMB}\n` });
    const bin = fileURLToPath(new URL('../../bin/atelier.js', import.meta.url));
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [bin, 'doctor'], {
        cwd,
        env: {
          PATH: process.env.PATH,
          HOME: cwd,
          ATELIER_DATA_DIR: `${cwd}/data`,
          ATELIER_CONFIG: 'bomb.yaml',
        },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`atelier: ${MESSAGE}\n`);
    expect(r.stdout).toBe('');
  });

  it('still lets a file share a value through an alias or two', () => {
    const cwd = workdir({
      'atelier.yaml':
        'limits:\n  admins:\n    discord:\n      userIds: &ids ["1"]\n    slack:\n      userIds: *ids\n',
    });
    const config = loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml' }, cwd });
    expect(config.limits.admins.slack.userIds).toEqual(['1']);
  });
});
