/**
 * The Bot end to end on the real core (tiny model, SQLite, scheduler) with a recording adapter:
 * what a chat user would see for each command, button and reaction.
 */
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Bot } from '../../commands/bot.js';
import { decodeButton, decodeForm, encodeButton, encodeForm } from '../../commands/custom-id.js';
import type { ChatForm, ChatMessage } from '../../commands/types.js';
import { ForbiddenError } from '../../src/errors.js';
import { readPngText } from '../../src/images/index.js';
import { FakeAdapter, type FakeMessage } from '../helpers/fake-adapter.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

let app: TestApp;
let bot: Bot;
let chat: FakeAdapter;

beforeEach(async () => {
  app = await startTestApp({
    ATELIER_LIMITS__ADMINS__PLAYGROUND__USER_IDS: 'admin',
    ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '200',
  });
  bot = new Bot(app);
  chat = new FakeAdapter();
  bot.attach(chat);
  bot.start();
});
afterEach(async () => {
  await bot.stop();
  await app.dispose();
});

const isResult = (m: FakeMessage) => m.current.image !== undefined && (m.current.buttons?.length ?? 0) > 0;
const buttons = (m: ChatMessage) => (m.buttons ?? []).flat();
const button = (m: ChatMessage, label: string) => {
  const found = buttons(m).find((b) => b.label === label);
  if (!found) throw new Error(`no button ${label} in ${buttons(m).map((b) => b.label)}`);
  return found.id;
};

describe('/imagine', () => {
  it('answers with the queue notice, edits in progress, then shows the image with its parameters and buttons', async () => {
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'a lighthouse at dusk', seed: 42 });
    const [first] = chat.messages;
    expect(first.history[0].message.text).toMatch(/a lighthouse at dusk\*\* — <@alice>\n⏳ Queued/);
    const done = await chat.waitFor(isResult);
    expect(done).toBe(first);
    expect(done.current.text).toMatch(/seed 42 · 4 steps · CFG 4.5 · Euler · 256×256/);
    const png = Buffer.from(done.current.image!.data);
    expect(await sharp(png).metadata()).toMatchObject({ width: 256, height: 256, format: 'png' });
    expect(readPngText(png).parameters).toMatch(/^a lighthouse at dusk\n.*Seed: 42/s);
    expect(buttons(done.current).map((b) => b.label)).toEqual([
      'Vary (Subtle)',
      'Vary (Strong)',
      'Reroll',
      'Upscale 2×',
      'Share',
      'Delete',
    ]);
    // Progress edits are throttled: never two within the configured interval.
    const times = done.history.slice(0, -1).map((h) => h.at);
    for (let i = 1; i < times.length; i++) expect(times[i] - times[i - 1]).toBeGreaterThanOrEqual(190);
  });

  it('makes a 2×2 grid for four images, with U1–U4 and V1–V4', async () => {
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'four foxes', count: 4, seed: 7 });
    const done = await chat.waitFor(isResult);
    expect(done.current.image).toMatchObject({ width: 512, height: 512 });
    expect(done.current.text).toMatch(/seeds 7–10/);
    expect(buttons(done.current).map((b) => b.label)).toEqual([
      'U1',
      'U2',
      'U3',
      'U4',
      'V1',
      'V2',
      'V3',
      'V4',
      'Reroll',
      'Share',
      'Delete',
    ]);
  });

  it('refuses bad input privately, saying what is allowed', async () => {
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: '   ' });
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'x'.repeat(10_000) });
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'fox', count: 9 });
    expect(chat.messages).toHaveLength(0);
    const texts = chat.privateMessages.map((p) => p.message.text);
    expect(texts[0]).toMatch(/prompt/i);
    expect(texts[1]).toMatch(/10,000 characters.*2,000/);
    expect(texts[2]).toMatch(/Count.*1.*4/);
  });

  it('cancels the job and gives the images back when its message cannot be posted', async () => {
    const inv = chat.invocation('alice');
    inv.reply = async () => {
      throw new ForbiddenError('Invite me to this channel first: /invite @atelier');
    };
    await bot.command(inv, 'imagine', { prompt: 'nowhere to show it', count: 4 });
    expect(await chat.waitForPrivate('alice')).toMatch(/Invite me to this channel first/);
    const [job] = app.store.jobs.list({ owner: { platform: 'playground', userId: 'alice' } });
    expect(job.state).toBe('cancelled');
    // The 4 images were refunded: a full-burst job is accepted right away.
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'shown', count: 4 });
    expect(chat.messages).toHaveLength(1);
  });

  it('names the limit and the wait when a user is over their images, while others are served', async () => {
    await bot.command(chat.invocation('bob'), 'imagine', { prompt: 'one', count: 4 });
    await bot.command(chat.invocation('bob'), 'imagine', { prompt: 'two', count: 4 });
    expect(await chat.waitForPrivate('bob')).toMatch(/images per 10 minutes.*in \d+ (s|min)/);
    await bot.command(chat.invocation('carol'), 'imagine', { prompt: 'carol’s turn' });
    const carol = await chat.waitFor((m) => isResult(m) && m.current.text.includes('carol’s turn'));
    expect(carol.current.image).toBeDefined();
  });
});

describe('buttons and reactions', () => {
  async function gridResult() {
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'a red boat', count: 4, seed: 100 });
    return chat.waitFor(isResult);
  }

  it('U2 shows that image alone, full size, with its own seed', async () => {
    const grid = await gridResult();
    await bot.action(chat.invocation('bob'), button(grid.current, 'U2'));
    const single = await chat.waitFor((m) => m.current.text.includes('image 2 of 4'));
    expect(single.current.text).toMatch(/seed 101/);
    expect(single.current.image).toMatchObject({ width: 256, height: 256 });
    expect(buttons(single.current).map((b) => b.label)).toEqual([
      'Vary (Subtle)',
      'Vary (Strong)',
      'Upscale 2×',
      'Share',
      'Delete',
    ]);
  });

  it('V1, Reroll and Upscale start new jobs for whoever clicked, answered in the channel', async () => {
    const grid = await gridResult();
    await bot.action(chat.invocation('bob'), button(grid.current, 'V1'));
    const variation = await chat.waitFor(
      (m) => isResult(m) && m.current.text.includes('variation of image 1 by <@bob>'),
    );
    expect(variation.current.image).toMatchObject({ width: 512, height: 512 });
    await bot.action(chat.invocation('carol'), button(grid.current, 'Reroll'));
    const rerolled = await chat.waitFor((m) => isResult(m) && m.current.text.includes('reroll by <@carol>'));
    expect(rerolled.current.text).not.toMatch(/seeds 100–103/);
    await bot.action(chat.invocation('alice'), button(grid.current, 'U3'));
    const single = await chat.waitFor((m) => m.current.text.includes('image 3 of 4'));
    // Alice spent her burst of 4 on the grid: the upscale is Dave's.
    await bot.action(chat.invocation('dave'), button(single.current, 'Upscale 2×'));
    const upscaled = await chat.waitFor((m) => isResult(m) && m.current.text.includes('upscaled 2×'));
    expect(upscaled.current.image).toMatchObject({ width: 512, height: 512 });
    expect(buttons(upscaled.current).map((b) => b.label)).not.toContain('Upscale 2×');
    // The refine runs the last 2 of the 4 steps (strength 0.3): the result says what progress counted.
    expect(upscaled.current.text).toMatch(/ · 2 of 4 steps \(strength 0\.3\) · /);
  });

  it('never acts on a job of another platform or team, whatever button it is sent', async () => {
    const grid = await gridResult();
    const before = app.store.jobs.list({ limit: 100 }).length;
    const elsewhere = chat.invocation('mallory');
    elsewhere.where = { ...elsewhere.where, platform: 'discord' };
    await bot.action(elsewhere, button(grid.current, 'V1'));
    expect(await chat.waitForPrivate('mallory', (t) => t.includes('belong'))).toMatch(
      /doesn't belong to an image I know/,
    );
    const otherTeam = chat.invocation('mallory');
    otherTeam.where = { ...otherTeam.where, teamId: 'another-team' };
    await bot.action(otherTeam, button(grid.current, 'Reroll'));
    expect(app.store.jobs.list({ limit: 100 })).toHaveLength(before);
    // From where the job was made, the same button acts.
    await bot.action(chat.invocation('mallory'), button(grid.current, 'Reroll'));
    await chat.waitFor((m) => isResult(m) && m.current.text.includes('reroll by <@mallory>'));
  });

  it('shares to the showcase channel, crediting author and sharer; admins move it; 🔄 there rerolls', async () => {
    const grid = await gridResult();
    // The playground's default showcase channel comes from the config.
    await bot.action(chat.invocation('bob'), button(grid.current, 'Share'));
    const shared = await chat.waitFor((m) => m.posted.channelId === 'showcase');
    expect(shared.current.text).toMatch(/by <@alice> · shared by <@bob>/);
    expect(shared.current.image).toMatchObject({ width: 512, height: 512 });
    // The showcase's gallery lists what was shared there, though nobody made it there.
    const [made] = bot.recentResults({ platform: 'playground', channelId: grid.posted.channelId });
    expect(bot.recentResults({ platform: 'playground', channelId: 'showcase' })).toEqual([
      expect.objectContaining({ jobId: made.jobId, author: expect.objectContaining({ userId: 'alice' }) }),
    ]);
    await bot.command(chat.invocation('bob'), 'atelier showcase', { channel: 'best-of' });
    expect(await chat.waitForPrivate('bob', (t) => t.includes('admins'))).toMatch(/Only Atelier admins/);
    await bot.command(chat.invocation('admin'), 'atelier showcase', { channel: 'best-of' });
    await bot.action(chat.invocation('carol'), button(grid.current, 'Share'));
    const moved = await chat.waitFor((m) => m.posted.channelId === 'best-of');
    expect(moved.current.text).toMatch(/shared by <@carol>/);
    await bot.reaction({
      requester: chat.invocation('dave').requester,
      message: shared.posted,
      emoji: '🔄',
      where: { platform: 'playground', channelId: 'showcase', teamId: 'team1' },
    });
    // waitFor fails the test if the reroll never shows up in the showcase.
    await chat.waitFor(
      (m) => m.posted.channelId === 'showcase' && isResult(m) && m.current.text.includes('reroll by <@dave>'),
    );
  });

  it('lets a server’s own admins set its showcase channel, but not pause the bot’s queue', async () => {
    const owner = chat.invocation('olga');
    owner.requester.isTeamAdmin = true;
    await bot.command(owner, 'atelier showcase', { channel: 'team-picks' });
    expect(await chat.waitForPrivate('olga')).toMatch(/Shared images now go to <#team-picks>/);
    expect(app.store.teamSettings.get('playground', 'team1').showcaseChannelId).toBe('team-picks');
    await bot.command(owner, 'atelier pause', {});
    expect(await chat.waitForPrivate('olga', (t) => t.includes('admins'))).toMatch(
      /Only Atelier admins can use/,
    );
    expect(app.scheduler.isPaused).toBe(false);
  });

  it('deletes for the owner only; later clicks on it say it was deleted', async () => {
    const grid = await gridResult();
    await bot.action(chat.invocation('bob'), button(grid.current, 'Delete'));
    expect(await chat.waitForPrivate('bob')).toMatch(/Only the person who made this image, or an admin/);
    expect(grid.deleted).toBe(false);
    await bot.action(chat.invocation('alice'), button(grid.current, 'Delete'));
    expect(grid.deleted).toBe(true);
    await bot.action(chat.invocation('carol'), button(grid.current, 'V2'));
    expect(await chat.waitForPrivate('carol')).toMatch(/That image was deleted/);
  });

  it('answers forged or unknown button ids politely', async () => {
    await bot.action(chat.invocation('eve'), 'not-ours');
    await bot.action(chat.invocation('eve'), encodeButton({ action: 'reroll', jobId: '0000000000000' }));
    const texts = chat.privateMessages.map((p) => p.message.text);
    expect(texts).toEqual([
      "That button doesn't belong to an image I know.",
      "⚠️ That button doesn't belong to an image I know.",
    ]);
  });

  it('ignores reactions on messages that are not results', async () => {
    await bot.reaction({
      requester: chat.invocation('bob').requester,
      message: { platform: 'playground', channelId: 'general', messageId: 'someone-else' },
      emoji: '🔄',
      where: { platform: 'playground', channelId: 'general' },
    });
    expect(chat.messages).toHaveLength(0);
    expect(chat.privateMessages).toHaveLength(0);
  });
});

describe('queue, cancel and settings', () => {
  it('lists and cancels a waiting job; the job message says so', async () => {
    await bot.command(chat.invocation('admin'), 'atelier pause', {});
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'waiting fox' });
    await bot.command(chat.invocation('alice'), 'queue', {});
    expect(await chat.waitForPrivate('alice', (t) => t.includes('Your jobs'))).toMatch(/⏳ #1 .*waiting fox/);
    const notice = chat.messages[0];
    await bot.action(chat.invocation('alice'), button(notice.current, 'Cancel'));
    const cancelled = await chat.waitFor((m) => m.current.text.includes('Cancelled'));
    expect(cancelled).toBe(notice);
  });

  it('saves defaults that later /imagine uses, and clears them', async () => {
    await bot.command(chat.invocation('alice'), 'settings', { aspect: '16:9', count: 2 });
    expect(await chat.waitForPrivate('alice')).toMatch(/Saved. Your defaults: aspect 16:9, 2 image\(s\)/);
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'wide' });
    const done = await chat.waitFor(isResult);
    // 16:9 is 1344×768 at SD3.5's size; the tiny model works at a quarter of it per side.
    expect(done.current.text).toMatch(/336×192/);
    expect(buttons(done.current).map((b) => b.label)).toContain('U2');
    await bot.command(chat.invocation('alice'), 'settings', { reset: true });
    expect(await chat.waitForPrivate('alice', (t) => t.includes('cleared'))).toMatch(
      /Your defaults are cleared/,
    );
    expect(app.store.userSettings.get('playground', 'alice')).toEqual({});
  });
});

describe('remix and styles (the Bot alone)', () => {
  it('remix opens a form only where the surface has forms; a form id that is not ours is refused politely', async () => {
    await bot.command(chat.invocation('alice'), 'settings', { remix: true });
    expect(await chat.waitForPrivate('alice')).toMatch(
      /^Saved\. You have no image defaults of your own\. Remix is on/,
    );
    await bot.command(chat.invocation('alice'), 'imagine', { prompt: 'a red boat', steps: 1 });
    const result = await chat.waitFor(isResult);
    // This invocation has no openForm (a surface without forms): the Reroll queues at once.
    await bot.action(chat.invocation('alice'), button(result.current, 'Reroll'));
    await chat.waitFor((m) => isResult(m) && m.current.text.includes('reroll by <@alice>'));
    // With forms, the click opens one and queues nothing.
    const forms: ChatForm[] = [];
    const inv = chat.invocation('alice');
    inv.openForm = async (form) => void forms.push(form);
    const before = app.store.jobs.list({ limit: 100 }).length;
    await bot.action(inv, button(result.current, 'Vary (Subtle)'));
    expect(forms).toEqual([
      {
        id: encodeForm({
          action: 'varySubtle',
          jobId: decodeButton(button(result.current, 'Reroll'))!.jobId,
          index: 0,
        }),
        title: 'Remix · Vary (Subtle)',
        submitLabel: 'Make it',
        fields: [
          {
            id: 'prompt',
            label: 'Prompt',
            value: 'a red boat',
            multiline: true,
            required: true,
            maxLength: 2000,
          },
        ],
      },
    ]);
    expect(app.store.jobs.list({ limit: 100 })).toHaveLength(before);
    await bot.submitForm(chat.invocation('alice'), 'at1f:q:0000', { prompt: 'x' });
    await bot.submitForm(chat.invocation('alice'), forms[0]!.id, { prompt: 'x'.repeat(2001) });
    expect(chat.privateMessages.slice(-2).map((p) => p.message.text)).toEqual([
      "That form doesn't belong to an image I know.",
      expect.stringMatching(/^⚠️ Your prompt is 2,001 characters long; the limit is 2,000/),
    ]);
    await bot.command(chat.invocation('alice'), 'settings', { remix: false });
    expect(await chat.waitForPrivate('alice', (t) => t.includes('off'))).toMatch(/Remix is off/);
  });

  it('/settings style: without styles configured says there are none', async () => {
    await bot.command(chat.invocation('alice'), 'settings', { style: 'noir' });
    expect(await chat.waitForPrivate('alice')).toBe(
      "⚠️ There are no styles on this bot, so “noir” can't be used.",
    );
  });
});

describe('text commands', () => {
  it('parses flags, aliases and multi-word values', () => {
    expect(bot.parseText('/imagine a fox in the snow --ar 16:9 --seed 3 --no blurry, people --n 2')).toEqual({
      command: 'imagine',
      args: {
        prompt: 'a fox in the snow',
        aspect: '16:9',
        seed: '3',
        negative: 'blurry, people',
        count: '2',
      },
    });
    expect(bot.parseText('/atelier showcase <#C123|showcase>')).toEqual({
      command: 'atelier showcase',
      args: { channel: 'C123' },
    });
    expect(() => bot.parseText('/imagine fox --colour red')).toThrow(
      /Unknown option --colour. Usage: \/imagine <prompt>/,
    );
    expect(() => bot.parseText('/dance')).toThrow(/Unknown command \/dance. Try \/imagine/);
  });

  it('keeps custom ids short, round-trippable and strict', () => {
    const id = encodeButton({ action: 'variation', jobId: '01JABCDEFGHJK', index: 3 });
    expect(id.length).toBeLessThanOrEqual(100);
    expect(decodeButton(id)).toEqual({ action: 'variation', jobId: '01JABCDEFGHJK', index: 3 });
    expect(decodeButton(`${id}x`)).toBeUndefined();
    expect(decodeButton('at1:q:01JABCDEFGHJK')).toBeUndefined();
    const subtle = encodeButton({ action: 'varySubtle', jobId: '01JABCDEFGHJK', index: 0 });
    expect(decodeButton(subtle)).toEqual({ action: 'varySubtle', jobId: '01JABCDEFGHJK', index: 0 });
    // A remix form stands for its button, under a prefix no button has.
    const form = encodeForm({ action: 'varyStrong', jobId: '01JABCDEFGHJK', index: 2 });
    expect(form).toBe('at1f:h:01JABCDEFGHJK:2');
    expect(decodeForm(form)).toEqual({ action: 'varyStrong', jobId: '01JABCDEFGHJK', index: 2 });
    expect(decodeButton(form)).toBeUndefined();
    expect(decodeForm(subtle)).toBeUndefined();
  });
});
