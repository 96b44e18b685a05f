/**
 * The playground end to end: headless Chromium drives the real page against the real server, the
 * real Bot and the real core (the bundled tiny model, 256×256 images, on a temp data dir).
 * Screenshots land in test-artifacts/ for a person to look at.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPlaygroundSurface, type PlaygroundSurface } from '../../adapters/playground/index.js';
import { Bot } from '../../commands/bot.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** The bundled tiny model draws 256×256; four make a 2×2 grid. */
const TINY_SIDE = 256;

let app: TestApp;
let bot: Bot;
let surface: PlaygroundSurface;
let browser: Browser;
const contexts: BrowserContext[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  app = await startTestApp();
  // Every progress step becomes an edit with a preview, so the page shows progress however fast
  // the CPU is (throttling is the Bot's own business, tested with it).
  bot = new Bot(app, { minEditIntervalMs: 0, previewEverySteps: 1 });
  bot.start();
  surface = createPlaygroundSurface({ logger: app.logger, port: 0 });
  await surface.start(bot);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await surface?.stop();
  await bot?.stop();
  await app?.dispose();
});

/** A tab whose person has typed `name` into the name field; it records every message text it renders. */
async function openAs(
  name: string,
  options: { context?: BrowserContext; width?: number; height?: number } = {},
) {
  let context = options.context;
  if (!context) {
    context = await browser.newContext({ reducedMotion: 'reduce' });
    contexts.push(context);
  }
  const page = await context.newPage();
  await page.setViewportSize({ width: options.width ?? 1280, height: options.height ?? 860 });
  page.on('pageerror', (error) => pageErrors.push(`${name}: ${error.message}`));
  // The page renders each frame as it comes; this keeps every state a message went through.
  await page.addInitScript(() => {
    const seen: string[] = [];
    Object.assign(window, { __seen: seen });
    new MutationObserver(() => {
      for (const item of Array.from(document.querySelectorAll('li.message'))) {
        const text = item.querySelector('.text')?.textContent ?? '';
        const state = `${text}${item.querySelector('img.preview-image') ? ' [preview]' : ''}`;
        if (!seen.includes(state)) seen.push(state);
      }
    }).observe(document, { subtree: true, childList: true, characterData: true });
  });
  await page.goto(surface.url!);
  await page.fill('#name-input', name);
  await page.press('#name-input', 'Enter');
  // The sign-in's round trip waits behind the suite's other work on 2 cores: the messages' 60 s, not 30.
  await page.waitForFunction((id) => document.body.dataset.user === id, name.toLowerCase(), {
    timeout: 60_000,
  });
  return page;
}

async function say(page: Page, text: string) {
  await page.click('#message-input');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

/**
 * The message (li) whose text contains `text` (the newest such) and, with `loaded`, whose result
 * image has loaded; the locator stays on that message even when later ones match the text too.
 */
async function waitForMessage(page: Page, text: string, options: { loaded?: boolean } = {}) {
  const handle = await page.waitForFunction(
    ({ text, loaded }) => {
      const matching = Array.from(document.querySelectorAll<HTMLElement>('li.message')).filter((li) =>
        li.querySelector('.text')?.textContent?.includes(text),
      );
      const li = matching.at(-1);
      if (!li) return undefined;
      const img = li.querySelector<HTMLImageElement>('img.result-image');
      return !loaded || (img?.complete && img.naturalWidth > 0) ? li.dataset.id : undefined;
    },
    { text, loaded: options.loaded ?? false },
    { timeout: 60_000 },
  );
  const id = (await handle.jsonValue()) as string;
  return page.locator(`li.message[data-id="${id}"]`);
}

const seen = (page: Page) => page.evaluate(() => (window as unknown as { __seen: string[] }).__seen);
const shot = (page: Page, name: string) =>
  page.screenshot({ path: join(ARTIFACTS, `playground-${name}.png`) });

describe('playground in Chromium', () => {
  it('/imagine … --count 4 shows the queue notice, progress with previews and the 2×2 grid; 🔄 rerolls for whoever reacted', async () => {
    const alice = await openAs('Alice');
    const bob = await openAs('Bob');

    await say(alice, '/imagine a lighthouse at dusk --count 4');
    await alice.waitForSelector('img.preview-image', { timeout: 60_000 });
    await shot(alice, '0-progress');
    const result = await waitForMessage(alice, 'seeds', { loaded: true });
    await shot(alice, '1-result');

    const states = await seen(alice);
    expect(states.some((s) => s.includes('a lighthouse at dusk') && /Queued|next in line/.test(s))).toBe(
      true,
    );
    expect(states.some((s) => /step \d+\/4 \[preview\]$/.test(s))).toBe(true);
    // The grid arrives full size (the page only scales it for display) and is described by its prompt.
    const grid = await result.locator('img.result-image').evaluate((img: HTMLImageElement) => ({
      width: img.naturalWidth,
      height: img.naturalHeight,
      alt: img.alt,
    }));
    expect(grid).toEqual({ width: 2 * TINY_SIDE, height: 2 * TINY_SIDE, alt: 'a lighthouse at dusk' });
    expect(await result.locator('.interaction').textContent()).toContain('Alice used /imagine');
    expect(await result.locator('.chat-button').allTextContents()).toEqual([
      'U1',
      'U2',
      'U3',
      'U4',
      'V1',
      'V2',
      'V3',
      'V4',
      '🔄 Reroll',
      '⭐ Share',
      '✖️ Delete',
    ]);

    // Bob watched it live; his 🔄 on Alice's result rerolls it in the channel, crediting him.
    const bobsView = await waitForMessage(bob, 'seeds', { loaded: true });
    await bobsView.locator('.reaction[data-emoji="🔄"]').click();
    const reroll = await waitForMessage(bob, 'reroll by @Bob', { loaded: true });
    expect(
      await reroll.locator('img.result-image').evaluate((img: HTMLImageElement) => img.naturalWidth),
    ).toBe(2 * TINY_SIDE);
    await waitForMessage(alice, 'reroll by @Bob', { loaded: true });
    expect(await bobsView.locator('.reaction[data-emoji="🔄"]').getAttribute('aria-pressed')).toBe('true');
    const alicesChip = alice.locator(
      `li.message[data-id="${await result.getAttribute('data-id')}"] .reaction[data-emoji="🔄"]`,
    );
    expect(await alicesChip.getAttribute('aria-pressed')).toBe('false');
    expect(await alicesChip.locator('.count').textContent()).toBe('1');
    await shot(bob, '2-reroll');

    // A button: U2 posts that image alone, full size.
    await result.getByRole('button', { name: 'U2', exact: true }).click();
    const single = await waitForMessage(alice, 'image 2 of 4', { loaded: true });
    expect(
      await single.locator('img.result-image').evaluate((img: HTMLImageElement) => img.naturalWidth),
    ).toBe(TINY_SIDE);
    expect(await single.locator('.interaction').textContent()).toContain('Alice clicked U2');

    // The gallery lists both results; a thumbnail opens the grid full size.
    await alice.click('#gallery-toggle');
    await alice.waitForFunction(
      () =>
        Array.from(document.querySelectorAll<HTMLImageElement>('.gallery-item img')).filter(
          (img) => img.complete && img.naturalWidth > 0,
        ).length >= 2,
    );
    expect(await alice.locator('.gallery-prompt').allTextContents()).toEqual([
      'a lighthouse at dusk',
      'a lighthouse at dusk',
    ]);
    await shot(alice, '3-gallery');
    await alice.locator('.gallery-open').first().click();
    await alice.waitForFunction(() => {
      const img = document.querySelector<HTMLImageElement>('#lightbox-image');
      return (
        document.querySelector<HTMLDialogElement>('#lightbox')?.open && img?.complete && img.naturalWidth > 0
      );
    });
    expect(await alice.locator('#lightbox-image').evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(
      2 * TINY_SIDE,
    );
    await shot(alice, '4-lightbox');
    await alice.keyboard.press('Escape');
    expect(pageErrors).toEqual([]);
  }, 180_000);

  it('shows a refusal only in the tabs of the person who typed the command; ↑ recalls what they sent', async () => {
    const carol = await openAs('Carol');
    const carolsOtherTab = await openAs('Carol', { context: carol.context() });
    const dave = await openAs('Dave', { width: 420, height: 860 });

    await say(carol, '/imagine a fox --steps 999');
    const refusal = await waitForMessage(carol, 'Steps must be');
    expect(await refusal.getAttribute('class')).toContain('private');
    expect(await refusal.locator('.private-note').textContent()).toContain('Only you can see this');
    await waitForMessage(carolsOtherTab, 'Steps must be');

    // Frames reach a tab in order: once Dave sees Carol's next line, he would have seen the refusal.
    await say(carol, 'thanks!');
    await waitForMessage(dave, 'thanks!');
    expect(await dave.locator('li.message.private').count()).toBe(0);
    expect(await dave.locator('li.message', { hasText: 'Steps must be' }).count()).toBe(0);
    await shot(carol, '5-private');

    // Another channel: Carol talks in #showcase; Dave, still in #general, sees it marked unread.
    await carol.getByRole('button', { name: 'showcase channel', exact: true }).click();
    expect(await carol.locator('#channel-name').textContent()).toBe('showcase');
    await say(carol, 'over here');
    await waitForMessage(carol, 'over here');
    await dave.waitForSelector('.channel-link.unread');
    expect(await dave.locator('.channel-link.unread').getAttribute('aria-label')).toBe(
      'showcase channel, new messages',
    );
    expect(await dave.locator('li.message', { hasText: 'over here' }).count()).toBe(0);
    await shot(dave, '6-other-user-narrow');
    await carol.getByRole('button', { name: 'general channel', exact: true }).click();

    await carol.click('#message-input');
    const recalled: string[] = [];
    for (const key of ['ArrowUp', 'ArrowUp', 'ArrowUp', 'ArrowDown', 'ArrowDown', 'ArrowDown']) {
      await carol.keyboard.press(key);
      recalled.push(await carol.inputValue('#message-input'));
    }
    expect(recalled).toEqual([
      'over here',
      'thanks!',
      '/imagine a fox --steps 999',
      'thanks!',
      'over here',
      '',
    ]);

    // A 10,000-character prompt reaches the bot, which refuses it privately with what to do.
    await carol.fill('#message-input', `/imagine ${'a'.repeat(10_000)}`);
    await carol.press('#message-input', 'Enter');
    const tooLong = await waitForMessage(carol, 'Your prompt is 10,000 characters long');
    expect(await tooLong.getAttribute('class')).toContain('private');
    expect(await carol.inputValue('#message-input')).toBe('');

    // Typing a command shows suggestions; Tab completes it.
    await carol.keyboard.type('/ima');
    await carol.waitForSelector('#suggestions:not([hidden]) [role="option"]');
    expect(await carol.locator('#suggestions [role="option"]').first().textContent()).toContain('/imagine');
    await shot(carol, '7-suggestions');
    await carol.keyboard.press('Tab');
    expect(await carol.inputValue('#message-input')).toBe('/imagine ');
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it('scrolls only its panes, never the page: no second scrollbar at any size, gallery open or not', async () => {
    const page = await openAs('Erin');
    // A feed long enough to scroll, so the panes have something to overflow with.
    for (let i = 0; i < 30; i++) await say(page, `line ${i} ${'of text that wraps '.repeat(i % 5)}`);
    await waitForMessage(page, 'line 29');
    const overflowing = () =>
      page.evaluate(() => {
        const root = document.scrollingElement as HTMLElement;
        const found: string[] = [];
        if (root.scrollHeight > root.clientHeight)
          found.push(`page ${root.scrollHeight}>${root.clientHeight}`);
        if (root.scrollWidth > root.clientWidth)
          found.push(`page width ${root.scrollWidth}>${root.clientWidth}`);
        return found;
      });
    const sizes: [number, number][] = [
      [1280, 860],
      [1366, 768],
      [1024, 700],
      [760, 600],
      [390, 844],
      [1280, 861],
    ];
    for (const [width, height] of sizes) {
      await page.setViewportSize({ width, height });
      expect(await overflowing(), `${width}×${height}`).toEqual([]);
    }
    await page.setViewportSize({ width: 1280, height: 860 });
    await page
      .getByRole('button', { name: /gallery/i })
      .first()
      .click();
    for (const [width, height] of sizes) {
      await page.setViewportSize({ width, height });
      expect(await overflowing(), `${width}×${height}, gallery open`).toEqual([]);
    }
    expect(pageErrors).toEqual([]);
  }, 60_000);
});
