import { describe, expect, it } from 'vitest';
import { enabledPlatforms, isAdmin, loadConfig } from '../../src/config/index.js';
import { workdir } from './helpers.js';

describe('enabledPlatforms()', () => {
  it('starts only the playground on a fresh install', () => {
    const config = loadConfig({ env: {}, cwd: workdir() });
    expect(enabledPlatforms(config)).toEqual({
      discord: false,
      slack: false,
      slackMode: 'http',
      playground: true,
    });
  });

  it('starts the chat platforms whose tokens are set, and Slack in Socket Mode with an app token', () => {
    const config = loadConfig({
      env: {
        DISCORD_TOKEN: 'discord-token-value-0123456789',
        SLACK_BOT_TOKEN: 'xoxb-1-2-abc',
        SLACK_APP_TOKEN: 'xapp-1-2-abc',
      },
      cwd: workdir(),
    });
    expect(enabledPlatforms(config)).toEqual({
      discord: true,
      slack: true,
      slackMode: 'socket',
      playground: false,
    });
  });

  it('follows explicit switches', () => {
    const config = loadConfig({
      env: {
        DISCORD_TOKEN: 'discord-token-value-0123456789',
        ATELIER_DISCORD__ENABLED: 'false',
        ATELIER_PLAYGROUND__ENABLED: 'true',
      },
      cwd: workdir(),
    });
    expect(enabledPlatforms(config)).toMatchObject({ discord: false, playground: true });
  });
});

describe('isAdmin()', () => {
  const config = loadConfig({
    env: {
      ATELIER_LIMITS__ADMINS__DISCORD__USER_IDS: '111',
      ATELIER_LIMITS__ADMINS__DISCORD__ROLE_IDS: '900,901',
      ATELIER_LIMITS__ADMINS__SLACK__USER_IDS: 'U42',
    },
    cwd: workdir(),
  });
  const admins = config.limits.admins;

  it('knows admins by user id per platform', () => {
    expect(isAdmin(admins, { platform: 'discord', userId: '111' })).toBe(true);
    expect(isAdmin(admins, { platform: 'slack', userId: 'U42' })).toBe(true);
    expect(isAdmin(admins, { platform: 'slack', userId: '111' })).toBe(false);
  });

  it('knows Discord admins by role', () => {
    expect(isAdmin(admins, { platform: 'discord', userId: '5', roleIds: ['1', '901'] })).toBe(true);
    expect(isAdmin(admins, { platform: 'discord', userId: '5', roleIds: ['1'] })).toBe(false);
  });

  it('knows no admins on platforms it has no list for', () => {
    expect(isAdmin(admins, { platform: 'toString', userId: '111' })).toBe(false);
  });
});
