import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { workdir } from './helpers.js';

describe('loadConfig() defaults', () => {
  it('loads config/default.yaml with the documented defaults', () => {
    const cwd = workdir();
    const config = loadConfig({ env: {}, cwd });
    expect(config.dataDir).toBe(join(cwd, 'data'));
    expect(config.queue).toMatchObject({ concurrency: 1, maxQueuedPerUser: 3 });
    expect(config.limits.user).toEqual({ enabled: true, images: 10, perSeconds: 600, burst: 4 });
    expect(config.generation.promptMaxLength).toBe(2000);
    expect(config.generation.count).toEqual({ default: 1, min: 1, max: 4 });
    expect(config.generation.aspect.allowed).toEqual([
      '1:1',
      '16:9',
      '9:16',
      '4:3',
      '3:4',
      '3:2',
      '2:3',
      '21:9',
    ]);
    expect(config.images.maxUploadBytes.discord).toBe(10 * 1024 * 1024);
    expect(config.progress.minEditIntervalMs).toBe(1500);
    expect(config.slack.port).toBe(3000);
    expect(config.playground).toEqual({
      enabled: 'auto',
      host: '127.0.0.1',
      port: 7860,
      showcaseChannelId: 'showcase',
      keepMessages: 200,
      maxFramesPerMinute: 120,
      maxChatLength: 4000,
    });
    expect(config.models.dir).toBeNull();
    expect(config.files.override).toBeUndefined();
  });

  it('returns a frozen config, so no module can change settings under another', () => {
    const config = loadConfig({ env: {}, cwd: workdir() });
    expect(Object.isFrozen(config.queue)).toBe(true);
    expect(() => {
      (config.queue as { concurrency: number }).concurrency = 5;
    }).toThrow(TypeError);
  });
});

describe('loadConfig() overrides', () => {
  it('applies the YAML file named in ATELIER_CONFIG, relative to cwd, key by key', () => {
    const cwd = workdir({ 'atelier.yaml': 'queue:\n  concurrency: 2\nlimits:\n  user:\n    images: 20\n' });
    const config = loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml' }, cwd });
    expect(config.queue.concurrency).toBe(2);
    expect(config.queue.maxQueuedPerUser).toBe(3);
    expect(config.limits.user).toEqual({ enabled: true, images: 20, perSeconds: 600, burst: 4 });
    expect(config.files.override).toBe(join(cwd, 'atelier.yaml'));
  });

  it('applies ATELIER_<SECTION>__<KEY> variables over the override file', () => {
    const cwd = workdir({ 'atelier.yaml': 'queue:\n  concurrency: 2\n  maxQueuedPerUser: 7\n' });
    const config = loadConfig({
      env: {
        ATELIER_CONFIG: 'atelier.yaml',
        ATELIER_QUEUE__CONCURRENCY: '3',
        ATELIER_LIMITS__USER__ENABLED: 'false',
      },
      cwd,
    });
    expect(config.queue.concurrency).toBe(3);
    expect(config.queue.maxQueuedPerUser).toBe(7);
    expect(config.limits.user.enabled).toBe(false);
  });

  it('reads lists from comma-separated variables and numbers with decimals', () => {
    const config = loadConfig({
      env: {
        ATELIER_GENERATION__BLOCKED_TERMS: 'gore, violence ,  ',
        ATELIER_GENERATION__ASPECT__ALLOWED: '1:1,16:9',
        ATELIER_GENERATION__VARIATION__STRENGTH: '0.45',
        ATELIER_DISCORD__GUILD_IDS: '123456789012345678901',
      },
      cwd: workdir(),
    });
    expect(config.generation.blockedTerms).toEqual(['gore', 'violence']);
    expect(config.generation.aspect.allowed).toEqual(['1:1', '16:9']);
    expect(config.generation.variation.strength).toBe(0.45);
    expect(config.discord.guildIds).toEqual(['123456789012345678901']);
  });

  it('applies the operator names ATELIER_DATA_DIR, PLAYGROUND_PORT, SLACK_PORT, DISCORD_API_URL, SLACK_API_URL last', () => {
    const cwd = workdir();
    const config = loadConfig({
      env: {
        ATELIER_DATA_DIR: 'state',
        PLAYGROUND_PORT: '8080',
        ATELIER_PLAYGROUND__PORT: '9000',
        SLACK_PORT: '3100',
        DISCORD_API_URL: 'http://127.0.0.1:5000/api',
        SLACK_API_URL: 'http://127.0.0.1:5001/api/',
      },
      cwd,
    });
    expect(config.dataDir).toBe(join(cwd, 'state'));
    expect(config.playground.port).toBe(8080);
    expect(config.slack.port).toBe(3100);
    expect(config.discord.apiUrl).toBe('http://127.0.0.1:5000/api');
    expect(config.slack.apiUrl).toBe('http://127.0.0.1:5001/api/');
  });

  it('reads a .env file in cwd, with real environment variables winning', () => {
    const cwd = workdir({ '.env': 'ATELIER_QUEUE__CONCURRENCY=2\nPLAYGROUND_PORT=7000\n# comment\n' });
    const config = loadConfig({ env: { PLAYGROUND_PORT: '7001' }, cwd });
    expect(config.queue.concurrency).toBe(2);
    expect(config.playground.port).toBe(7001);
    expect(config.files.dotenv).toBe(join(cwd, '.env'));
  });

  it('ignores empty variables, as if they were unset', () => {
    const config = loadConfig({
      env: { ATELIER_QUEUE__CONCURRENCY: '', PLAYGROUND_PORT: '  ' },
      cwd: workdir(),
    });
    expect(config.queue.concurrency).toBe(1);
    expect(config.playground.port).toBe(7860);
  });

  it('keeps every digit of unquoted Discord ids in YAML', () => {
    const cwd = workdir({
      'atelier.yaml':
        'limits:\n  admins:\n    discord:\n      userIds: [123456789012345678901, "42"]\n      roleIds: [987654321098765432]\n',
    });
    const config = loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml' }, cwd });
    expect(config.limits.admins.discord.userIds).toEqual(['123456789012345678901', '42']);
    expect(config.limits.admins.discord.roleIds).toEqual(['987654321098765432']);
  });

  it('accepts upload caps with units', () => {
    const cwd = workdir({
      'atelier.yaml': 'images:\n  maxUploadBytes:\n    discord: 50 MiB\n    slack: 25MB\n',
    });
    const config = loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml' }, cwd });
    expect(config.images.maxUploadBytes).toEqual({ discord: 50 * 1024 * 1024, slack: 25_000_000 });
  });

  it('resolves folder settings against cwd and ~ against HOME', () => {
    const cwd = workdir({
      'atelier.yaml': 'models:\n  dir: ~/ComfyUI/models\n  graphCacheDir: cache/graphs\n',
    });
    const config = loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml', HOME: '/home/op' }, cwd });
    expect(config.models.dir).toBe('/home/op/ComfyUI/models');
    expect(config.models.graphCacheDir).toBe(join(cwd, 'cache/graphs'));
  });

  it('does not touch process.env', () => {
    const before = { ...process.env };
    loadConfig({ env: {}, cwd: workdir({ '.env': 'ATELIER_UNRELATED_MARKER=1\n' }) });
    expect(process.env).toEqual(before);
  });
});
