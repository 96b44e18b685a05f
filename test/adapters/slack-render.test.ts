/**
 * What Slack users see: the bot's markdown as mrkdwn, messages as Block Kit within Slack's
 * limits, reaction names as the bot's emoji, the surface's options, and the app manifest.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderMessage } from '../../adapters/slack/blocks.js';
import { slackManifest, slackManifestYaml } from '../../adapters/slack/manifest.js';
import { toMrkdwn } from '../../adapters/slack/mrkdwn.js';
import { resolveSlackSurfaceOptions } from '../../adapters/slack/options.js';
import { emojiForReaction } from '../../adapters/slack/reactions.js';
import { defineCommands } from '../../commands/definitions.js';
import type { ChatButton } from '../../commands/types.js';
import { validationOptionsFromConfig } from '../../src/app/options.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log.js';

describe('toMrkdwn', () => {
  it('turns **bold** into *bold* and *italic* into _italic_, keeping code and mentions', () => {
    expect(toMrkdwn('**a fox** — <@U123ABC>\n*seed 4* · `--ar 16:9`')).toBe(
      '*a fox* — <@U123ABC>\n_seed 4_ · `--ar 16:9`',
    );
    expect(toMrkdwn('shared in <#C42|showcase>')).toBe('shared in <#C42|showcase>');
  });

  it('leaves markers inside code alone and words with underscores or stars unformatted', () => {
    expect(toMrkdwn('`**not bold**` snake_case 2*3*4')).toBe('`**not bold**` snake_case 2*3*4');
  });

  it('escapes &, < and > so typed text never pings, links or breaks formatting', () => {
    expect(toMrkdwn('<!channel> & <https://evil.example|click> a > b')).toBe(
      '&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; a &gt; b',
    );
    expect(toMrkdwn('`<b>`')).toBe('`&lt;b&gt;`');
  });
});

describe('renderMessage', () => {
  const buttons = (n: number, prefix = 'b'): ChatButton[] =>
    Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, label: `L${i}` }));

  it('renders text as mrkdwn sections and each row of buttons as actions blocks of at most 5', () => {
    const { text, blocks } = renderMessage({
      text: '**done**',
      buttons: [buttons(4, 'u'), buttons(7, 'x')],
    });
    expect(text).toBe('*done*');
    expect(blocks.map((b) => b.type)).toEqual(['section', 'actions', 'actions', 'actions']);
    const sizes = blocks
      .filter((b) => b.type === 'actions')
      .map((b) => (b as { elements: unknown[] }).elements.length);
    expect(sizes).toEqual([4, 5, 2]);
  });

  it('makes buttons with action_id and value set to the custom id, the emoji in the label, Slack styles', () => {
    const { blocks } = renderMessage({
      text: 'x',
      buttons: [
        [
          { id: 'at1:r:J1', label: 'Reroll', emoji: '🔄' },
          { id: 'at1:d:J1', label: 'Delete', emoji: '✖️', style: 'danger' },
          { id: 'ok', label: 'Go', style: 'success' },
          { id: 'no', label: 'Skip', style: 'secondary' },
          { id: 'long', label: 'y'.repeat(100) },
        ],
      ],
    });
    const elements = (blocks[1] as unknown as { elements: Record<string, unknown>[] }).elements;
    expect(elements[0]).toEqual({
      type: 'button',
      action_id: 'at1:r:J1',
      value: 'at1:r:J1',
      text: { type: 'plain_text', text: '🔄 Reroll', emoji: true },
    });
    expect(elements.map((e) => e.style)).toEqual([undefined, 'danger', 'primary', undefined, undefined]);
    expect((elements[4]!.text as { text: string }).text).toHaveLength(75);
  });

  it('shows an uploaded image inline, or links to it', () => {
    const inline = renderMessage({ text: 'a' }, { kind: 'file', fileId: 'F1', alt: 'a fox' });
    expect(inline.blocks[1]).toEqual({ type: 'image', slack_file: { id: 'F1' }, alt_text: 'a fox' });
    const link = renderMessage(
      { text: 'a' },
      { kind: 'link', permalink: 'https://x/F1', filename: 'f.webp' },
    );
    expect(JSON.stringify(link.blocks[1])).toContain('<https://x/F1|f.webp>');
  });

  it('splits long text into sections of at most 3,000 characters and stays within 50 blocks', () => {
    const line = `${'w'.repeat(99)}\n`;
    const { blocks, text } = renderMessage({ text: line.repeat(2000), buttons: [buttons(5)] });
    expect(blocks).toHaveLength(50);
    expect(blocks.at(-1)!.type).toBe('actions');
    for (const block of blocks.filter((b) => b.type === 'section')) {
      expect((block as { text: { text: string } }).text.text.length).toBeLessThanOrEqual(3000);
    }
    expect(text.length).toBeLessThanOrEqual(4000);
  });
});

describe('emojiForReaction', () => {
  it('maps the reactions the bot acts on and ignores the rest', () => {
    expect(emojiForReaction('arrows_counterclockwise')).toBe('🔄');
    expect(emojiForReaction('star')).toBe('⭐');
    expect(emojiForReaction('x')).toBe('✖');
    expect(emojiForReaction('heavy_multiplication_x')).toBe('✖');
    expect(emojiForReaction('star::skin-tone-3')).toBe('⭐');
    expect(emojiForReaction('thumbsup')).toBeUndefined();
    expect(emojiForReaction('constructor')).toBeUndefined();
  });
});

describe('resolveSlackSurfaceOptions', () => {
  const logger = createLogger({ level: 'silent' });

  it('picks Socket Mode when an app token is set, HTTP mode otherwise, with documented defaults', () => {
    expect(resolveSlackSurfaceOptions({ botToken: 'xoxb-1', appToken: 'xapp-1', logger })).toMatchObject({
      mode: 'socket',
      apiUrl: 'https://slack.com/api/',
    });
    expect(
      resolveSlackSurfaceOptions({
        botToken: 'xoxb-1',
        signingSecret: 's',
        apiUrl: 'http://127.0.0.1:9/api',
        logger,
      }),
    ).toMatchObject({ mode: 'http', port: 3000, apiUrl: 'http://127.0.0.1:9/api/', ackDeadlineMs: 250 });
  });

  it('refuses what cannot work, naming the variable', () => {
    expect(() => resolveSlackSurfaceOptions({ botToken: 'xoxb-1', logger })).toThrow(/SLACK_SIGNING_SECRET/);
    expect(() => resolveSlackSurfaceOptions({ botToken: 'xapp-1', signingSecret: 's', logger })).toThrow(
      /SLACK_BOT_TOKEN/,
    );
    expect(() => resolveSlackSurfaceOptions({ botToken: 'xoxb-1', appToken: 'xoxb-2', logger })).toThrow(
      /SLACK_APP_TOKEN/,
    );
    expect(() =>
      resolveSlackSurfaceOptions({ botToken: 'xoxb-1', signingSecret: 's', port: 70000, logger }),
    ).toThrow(/port/);
    expect(() =>
      resolveSlackSurfaceOptions({ botToken: 'xoxb-1', signingSecret: 's', ackDeadlineMs: 3000, logger }),
    ).toThrow(/3000 ms/);
  });
});

describe('the app manifest', () => {
  const commands = defineCommands(validationOptionsFromConfig(loadConfig({ env: {}, cwd: '/' })));

  it('is committed as generated from the bot’s commands (regenerate manifest.yaml with slackManifestYaml)', () => {
    const committed = readFileSync(new URL('../../adapters/slack/manifest.yaml', import.meta.url), 'utf8');
    expect(committed).toBe(slackManifestYaml(commands));
  });

  it('lists every command on one Request URL, with the scopes, interactivity and the reaction event', () => {
    const manifest = slackManifest(commands, { publicUrl: 'https://bot.example.org/' }) as {
      features: { slash_commands: { command: string; url: string; should_escape: boolean }[] };
      oauth_config: { scopes: { bot: string[] } };
      settings: Record<string, unknown>;
    };
    expect(manifest.features.slash_commands.map((c) => c.command)).toEqual(commands.map((c) => `/${c.name}`));
    expect(new Set(manifest.features.slash_commands.map((c) => c.url))).toEqual(
      new Set(['https://bot.example.org/slack/events']),
    );
    expect(manifest.oauth_config.scopes.bot).toEqual(
      expect.arrayContaining(['commands', 'chat:write', 'files:write', 'reactions:read']),
    );
    expect(manifest.settings).toMatchObject({
      event_subscriptions: {
        request_url: 'https://bot.example.org/slack/events',
        bot_events: ['reaction_added'],
      },
      interactivity: { is_enabled: true, request_url: 'https://bot.example.org/slack/events' },
      socket_mode_enabled: false,
    });
  });

  it('has no Request URLs in Socket Mode', () => {
    const yaml = slackManifestYaml(commands, { socketMode: true });
    expect(yaml).not.toContain('url:');
    expect(yaml).toContain('socket_mode_enabled: true');
  });
});
