import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadConfig, maskedSecrets, maskSecret } from '../../src/config/index.js';
import { ConfigError } from '../../src/errors.js';
import { workdir } from './helpers.js';

const BOT_TOKEN = 'xoxb-1111111111-2222222222222-abcdefghijklmnopqrstuvwx';
const APP_TOKEN = 'xapp-1-A0000000000-3333333333333-0123456789abcdef';

describe('secrets', () => {
  it('come from the environment', () => {
    const config = loadConfig({
      env: {
        DISCORD_TOKEN: 'discord-token-value-0123456789',
        SLACK_BOT_TOKEN: BOT_TOKEN,
        HF_TOKEN: 'hf_abcdefghijklmnopqrstuvwxyz',
      },
      cwd: workdir(),
    });
    expect(config.secrets.discordToken).toBe('discord-token-value-0123456789');
    expect(config.secrets.slackBotToken).toBe(BOT_TOKEN);
    expect(config.secrets.hfToken).toBe('hf_abcdefghijklmnopqrstuvwxyz');
    expect(config.secrets.slackAppToken).toBeUndefined();
  });

  it('come from .env, and the environment wins over it', () => {
    const cwd = workdir({
      '.env': `SLACK_APP_TOKEN=${APP_TOKEN}\nSLACK_SIGNING_SECRET="from-dotenv-secret"\n`,
    });
    const config = loadConfig({ env: { SLACK_SIGNING_SECRET: 'from-env-secret' }, cwd });
    expect(config.secrets.slackAppToken).toBe(APP_TOKEN);
    expect(config.secrets.slackSigningSecret).toBe('from-env-secret');
  });

  it('are refused in the override file, naming the variable to use instead', () => {
    const cwd = workdir({ 'atelier.yaml': 'discord:\n  guildIds: []\n  token: abc.def.ghi\n' });
    expect(() => loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml' }, cwd })).toThrow(
      new ConfigError(
        'discord.token',
        'config: discord.token looks like a secret and is not allowed in configuration: set DISCORD_TOKEN in the environment or in .env (from override file atelier.yaml:3)',
      ),
    );
  });

  it('are refused in any YAML key that looks like one, without echoing the value', () => {
    const cwd = workdir({ 'atelier.yaml': 'slack:\n  signingSecret: s3cr3t-value\n' });
    let message = '';
    try {
      loadConfig({ env: { ATELIER_CONFIG: 'atelier.yaml' }, cwd });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('set SLACK_SIGNING_SECRET in the environment or in .env');
    expect(message).not.toContain('s3cr3t-value');
  });

  it('are refused through the settings variables too', () => {
    expect(() => loadConfig({ env: { ATELIER_SLACK__BOT_TOKEN: BOT_TOKEN }, cwd: workdir() })).toThrow(
      /^config: slack\.botToken looks like a secret .*set SLACK_BOT_TOKEN .*\(from env ATELIER_SLACK__BOT_TOKEN\)$/,
    );
  });

  it('catch a Slack app token pasted as the bot token, showing it masked', () => {
    let message = '';
    try {
      loadConfig({ env: { SLACK_BOT_TOKEN: APP_TOKEN }, cwd: workdir() });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe(
      `config: SLACK_BOT_TOKEN = xapp…(${APP_TOKEN.length} chars) is not allowed: expected a bot token starting with xoxb- (from env SLACK_BOT_TOKEN)`,
    );
  });

  it('are masked when the config is serialized or inspected', () => {
    const config = loadConfig({
      env: { DISCORD_TOKEN: 'discord-token-value-0123456789', SLACK_BOT_TOKEN: BOT_TOKEN },
      cwd: workdir(),
    });
    const json = JSON.stringify(config);
    expect(json).not.toContain('discord-token-value-0123456789');
    expect(json).not.toContain(BOT_TOKEN);
    expect(json).toContain('"discordToken":"disc…(30 chars)"');
    expect(inspect(config, { depth: 5 })).not.toContain(BOT_TOKEN);
  });
});

describe('maskSecret()', () => {
  it('shows the kind of token and its length, never enough to use it', () => {
    expect(maskSecret(BOT_TOKEN)).toBe(`xoxb…(${BOT_TOKEN.length} chars)`);
    expect(maskSecret('short')).toBe('****(5 chars)');
    expect(maskSecret(undefined)).toBe('(not set)');
    expect(maskSecret('')).toBe('(not set)');
  });

  it('reads REDIS_URL as a secret, masked when the config is shown', () => {
    const url = 'redis://:hunter2-long-password@10.0.0.5:6379/0';
    const config = loadConfig({ env: { REDIS_URL: url }, cwd: '/nonexistent' });
    expect(config.secrets.redisUrl).toBe(url);
    expect(JSON.stringify(config)).not.toContain('hunter2');
  });

  it('lists every secret by its variable name for `atelier doctor`', () => {
    expect(maskedSecrets({ slackBotToken: BOT_TOKEN })).toEqual({
      DISCORD_TOKEN: '(not set)',
      SLACK_BOT_TOKEN: `xoxb…(${BOT_TOKEN.length} chars)`,
      SLACK_SIGNING_SECRET: '(not set)',
      SLACK_APP_TOKEN: '(not set)',
      HF_TOKEN: '(not set)',
      PLAYGROUND_SECRET: '(not set)',
      REDIS_URL: '(not set)',
    });
  });
});
