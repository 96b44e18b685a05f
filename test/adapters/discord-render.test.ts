/**
 * The Discord surface's pure translations: ChatMessage → message body within Discord's limits,
 * CommandDef → application commands, interaction-token lifetimes, error redaction and upload caps.
 */
import { ButtonStyle, ComponentType, GuildPremiumTier, MessageFlags } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { toApplicationCommands } from '../../adapters/discord/commands.js';
import { asDiscordError, redactPath } from '../../adapters/discord/errors.js';
import { INTERACTION_TOKEN_TTL_MS, tokenUsable } from '../../adapters/discord/references.js';
import { actionRows, allowedMentions, fitContent, renderMessage } from '../../adapters/discord/render.js';
import { UploadLimits } from '../../adapters/discord/upload-limits.js';
import type { ChatButton } from '../../commands/types.js';

const MiB = 1024 * 1024;

describe('renderMessage', () => {
  it('sends the image (or else the preview) as the one attachment, replacing earlier ones on edit', () => {
    const image = { data: new Uint8Array([1, 2]), filename: 'a.png', mime: 'image/png' };
    const preview = { data: new Uint8Array([3]), filename: 'p.webp', mime: 'image/webp' };
    const both = renderMessage({ text: 'x', image, preview });
    expect(both.files).toEqual([{ name: 'a.png', data: Buffer.from([1, 2]), contentType: 'image/png' }]);
    expect(both.body.attachments).toEqual([{ id: 0, filename: 'a.png' }]);
    expect(renderMessage({ text: 'x', preview }).body.attachments).toEqual([{ id: 0, filename: 'p.webp' }]);
    expect(renderMessage({ text: 'x' }).body.attachments).toEqual([]);
    expect(renderMessage({ text: 'x' }).body.components).toEqual([]);
  });

  it('marks private answers ephemeral and keeps an empty message valid', () => {
    expect(renderMessage({ text: 'x' }, { ephemeral: true }).body.flags).toBe(MessageFlags.Ephemeral);
    expect(renderMessage({ text: 'x' }).body.flags).toBeUndefined();
    expect(renderMessage({ text: '' }).body.content).toBe('\u200b');
  });

  it('cuts text to 2000 characters without splitting an emoji', () => {
    const text = `${'a'.repeat(1998)}🦊🦊🦊`;
    const dropped: string[] = [];
    const cut = fitContent(text, dropped);
    expect(Array.from(cut)).toHaveLength(2000);
    expect(cut.endsWith('🦊…')).toBe(true);
    expect(dropped).toHaveLength(1);
    expect(fitContent('short')).toBe('short');
  });

  it('allows pings only for the people the text names', () => {
    expect(allowedMentions('<@123456> and <@!654321> @everyone @here <@&999999> <@123456>')).toEqual({
      parse: [],
      users: ['123456', '654321'],
    });
  });

  it('wraps rows at 5 buttons, keeps at most 5 rows, drops ids Discord would refuse', () => {
    const row = (n: number, prefix: string): ChatButton[] =>
      Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, label: `${prefix}${i}` }));
    const dropped: string[] = [];
    const rows = actionRows(
      [
        row(12, 'a'),
        [
          { id: 'x'.repeat(101), label: 'too long' },
          { id: 'ok', label: 'OK' },
        ],
        row(10, 'b'),
      ],
      dropped,
    );
    expect(rows.map((r) => r.components.length)).toEqual([5, 5, 2, 1, 5]);
    expect(rows[3]!.components[0]!.custom_id).toBe('ok');
    expect(dropped).toEqual(['button "too long": custom id of 101 characters', '5 button(s) beyond 5 rows']);
  });

  it('renders styles, emoji and labels (labels cut to 80)', () => {
    const [row] = actionRows([
      [
        { id: 'r', label: 'Reroll', emoji: '🔄', style: 'primary' },
        { id: 'd', label: 'D'.repeat(90), style: 'danger' },
        { id: 'e', label: '', emoji: '⭐' },
      ],
    ]);
    expect(row!.type).toBe(ComponentType.ActionRow);
    expect(row!.components).toEqual([
      {
        type: ComponentType.Button,
        custom_id: 'r',
        style: ButtonStyle.Primary,
        label: 'Reroll',
        emoji: { name: '🔄' },
      },
      { type: ComponentType.Button, custom_id: 'd', style: ButtonStyle.Danger, label: 'D'.repeat(80) },
      { type: ComponentType.Button, custom_id: 'e', style: ButtonStyle.Secondary, emoji: { name: '⭐' } },
    ]);
  });
});

describe('toApplicationCommands', () => {
  it('turns more than 25 numeric choices into autocomplete and cuts long descriptions', () => {
    const [command] = toApplicationCommands([
      {
        name: 'pick',
        description: 'd'.repeat(150),
        options: [
          {
            name: 'n',
            description: 'a number',
            type: 'integer',
            choices: Array.from({ length: 30 }, (_, i) => ({ name: `${i}`, value: i })),
          },
          { name: 'few', description: 'few', type: 'number', choices: [{ name: 'half', value: 0.5 }] },
          { name: 'flag', description: 'on or off', type: 'boolean' },
        ],
      },
    ]);
    expect(Array.from(command!.description)).toHaveLength(100);
    expect(command!.options).toEqual([
      { name: 'n', description: 'a number', required: false, type: 4, autocomplete: true },
      { name: 'few', description: 'few', required: false, type: 10, choices: [{ name: 'half', value: 0.5 }] },
      { name: 'flag', description: 'on or off', required: false, type: 5 },
    ]);
  });

  it('refuses a name Discord would refuse, naming it', () => {
    expect(() => toApplicationCommands([{ name: 'Imagine', description: 'x' }])).toThrow(/`Imagine`/);
    expect(() =>
      toApplicationCommands([
        { name: 'ok', description: 'x', options: [{ name: 'has space', description: 'y', type: 'string' }] },
      ]),
    ).toThrow(/`has space`/);
  });
});

describe('interaction tokens and errors', () => {
  it('uses a token until a minute before its 15 minutes are over', () => {
    const reference = { applicationId: '1', token: 't', userId: 'u', createdAt: 1_000_000 };
    expect(tokenUsable(reference, 1_000_000 + INTERACTION_TOKEN_TTL_MS - 60_001)).toBe(true);
    expect(tokenUsable(reference, 1_000_000 + INTERACTION_TOKEN_TTL_MS - 60_000)).toBe(false);
    expect(tokenUsable(undefined)).toBe(false);
  });

  it('keeps interaction tokens out of error messages', () => {
    const url = 'https://discord.com/api/v10/webhooks/123/aW50ZXJhY3Rpb246c2VjcmV0/messages/@original';
    expect(redactPath(url)).toBe('/api/v10/webhooks/123/:token/messages/@original');
    expect(redactPath('/interactions/9/tok.en/callback?with_response=true')).toBe(
      '/interactions/9/:token/callback?with_response=true',
    );
    const wrapped = asDiscordError(new Error(`socket hang up at ${url}`), 'edit a message');
    expect(wrapped.message).not.toContain('aW50ZXJhY3Rpb246c2VjcmV0');
  });
});

describe('UploadLimits', () => {
  it('follows what interactions said, else the boost tier, always under the operator cap', () => {
    const tiers = new Map([['boosted', GuildPremiumTier.Tier3]]);
    const limits = new UploadLimits(50 * MiB, (guildId) => tiers.get(guildId));
    expect(limits.limitFor('boosted')).toBe(50 * MiB);
    expect(limits.limitFor('unknown')).toBe(10 * MiB);
    expect(limits.limitFor(undefined)).toBe(10 * MiB);
    limits.observe('boosted', 25 * MiB);
    expect(limits.limitFor('boosted')).toBe(25 * MiB);
    limits.observe(null, 8 * MiB);
    expect(limits.limitFor(undefined)).toBe(8 * MiB);
  });
});
