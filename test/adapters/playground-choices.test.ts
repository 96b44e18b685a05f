/**
 * Choice in the playground, end to end: headless Chromium drives the real page against the real
 * server, the real Bot and the real core (tiny model): styles typed as `--style` (suggested from
 * the config), Vary (Subtle)/(Strong), and remix (Reroll opens a dialog with the prompt; the
 * edited prompt is what is made). Screenshots land in test-artifacts/.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPlaygroundSurface, type PlaygroundSurface } from '../../adapters/playground/index.js';
import { Bot } from '../../commands/bot.js';
import { readPngText } from '../../src/images/index.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';

const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let app: TestApp;
let bot: Bot;
let surface: PlaygroundSurface;
let browser: Browser;
const pageErrors: string[] = [];

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  app = await startTestApp({
    ATELIER_STYLES__CINEMATIC__PROMPT: '{prompt}, cinematic still',
    ATELIER_STYLES__CINEMATIC__NEGATIVE: 'cartoon',
    ATELIER_STYLES__WATERCOLOR__PROMPT: 'watercolor painting of {prompt}',
  });
  bot = new Bot(app, { minEditIntervalMs: 0 });
  bot.start();
  surface = createPlaygroundSurface({ logger: app.logger, port: 0 });
  await surface.start(bot);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await surface?.stop();
  await bot?.stop();
  await app?.dispose();
});

async function openAs(name: string): Promise<Page> {
  const context = await browser.newContext({ reducedMotion: 'reduce' });
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 860 });
  page.on('pageerror', (error) => pageErrors.push(`${name}: ${error.message}`));
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

/** The newest message whose text contains `text`, once its result image (if `loaded`) has loaded. */
async function waitForMessage(
  page: Page,
  text: string,
  options: { loaded?: boolean } = {},
): Promise<Locator> {
  const handle = await page.waitForFunction(
    ({ text, loaded }) => {
      const li = Array.from(document.querySelectorAll<HTMLElement>('li.message'))
        .filter((item) => item.querySelector('.text')?.textContent?.includes(text))
        .at(-1);
      if (!li) return undefined;
      const img = li.querySelector<HTMLImageElement>('img.result-image');
      return !loaded || (img?.complete && img.naturalWidth > 0) ? li.dataset.id : undefined;
    },
    { text, loaded: options.loaded ?? false },
    { timeout: 60_000 },
  );
  return page.locator(`li.message[data-id="${(await handle.jsonValue()) as string}"]`);
}

/** The `parameters` text of a message's result image, as the page downloads it. */
async function parametersOf(message: Locator): Promise<string> {
  const base64 = await message.locator('img.result-image').evaluate(async (img: HTMLImageElement) => {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let binary = '';
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return btoa(binary);
  });
  return readPngText(Buffer.from(base64, 'base64')).parameters ?? '';
}

const buttonLabels = (message: Locator) => message.locator('.chat-button').allTextContents();

describe('playground in Chromium: styles, subtle/strong variations and remix', () => {
  it('suggests the configured styles, shows the style, varies subtly or strongly, and remixes through a dialog', async () => {
    const alice = await openAs('Alice');

    // --style suggests the configured styles (and none) as one types.
    await alice.click('#message-input');
    await alice.keyboard.type('/imagine a kite --style ');
    await alice.waitForSelector('#suggestions:not([hidden]) [role="option"]');
    expect(await alice.locator('#suggestions [role="option"] .suggestion-label').allTextContents()).toEqual([
      'cinematic',
      'watercolor',
      'none',
    ]);
    await alice.fill('#message-input', '');

    await say(alice, '/imagine a kite --style cinematc');
    const typo = await waitForMessage(alice, 'isn\u2019t a style here'.replace('\u2019', "'"));
    expect(await typo.locator('.text').textContent()).toContain('Did you mean cinematic?');

    await say(alice, '/imagine a kite --style cinematic --steps 4');
    const result = await waitForMessage(alice, 'style cinematic', { loaded: true });
    expect(await parametersOf(result)).toMatch(
      /^a kite, cinematic still\nNegative prompt: cartoon\n.*Style: cinematic$/s,
    );
    expect(await buttonLabels(result)).toEqual([
      '🎲 Vary (Subtle)',
      '🎲 Vary (Strong)',
      '🔄 Reroll',
      '⬆️ Upscale 2×',
      '⭐ Share',
      '✖️ Delete',
    ]);

    await result.locator('.chat-button', { hasText: 'Vary (Strong)' }).click();
    const strong = await waitForMessage(alice, 'strong variation of image 1', { loaded: true });
    expect(await strong.locator('.text').textContent()).toMatch(/3 of 4 steps \(strength 0\.75\)/);
    expect(await parametersOf(strong)).toMatch(
      /Denoising strength: 0\.75, Variation: strong, Style: cinematic$/,
    );
    expect(await strong.locator('.interaction').textContent()).toContain('Alice clicked 🎲 Vary (Strong)');

    // Remix on: Reroll opens a dialog with the prompt instead of queueing at once.
    await say(alice, '/settings --remix');
    await waitForMessage(alice, 'Remix is on');
    await result.locator('.chat-button', { hasText: 'Reroll' }).click();
    const dialog = alice.locator('#form-dialog');
    await dialog.waitFor({ state: 'visible' });
    expect(await alice.locator('#form-dialog-title').textContent()).toBe('Remix · Reroll');
    const prompt = dialog.getByLabel('Prompt');
    expect(await prompt.inputValue()).toBe('a kite');
    await shot(alice, 'remix-dialog');
    // Cancel sends nothing; the next click opens it again.
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    await result.locator('.chat-button', { hasText: 'Reroll' }).click();
    await dialog.waitFor({ state: 'visible' });
    await prompt.fill('a kite over the sea');
    await prompt.press('Enter');
    await dialog.waitFor({ state: 'hidden' });
    const remixed = await waitForMessage(alice, 'a kite over the sea', { loaded: true });
    expect(await remixed.locator('.text').textContent()).toMatch(/reroll by @Alice/);
    expect(await remixed.locator('.interaction').textContent()).toContain('Alice submitted Remix · Reroll');
    expect(await parametersOf(remixed)).toMatch(
      /^a kite over the sea, cinematic still\n.*Style: cinematic$/s,
    );
    // Nothing was queued for the cancelled dialog: one reroll only.
    expect(await alice.locator('li.message .text', { hasText: 'reroll by @Alice' }).count()).toBe(1);
    expect(pageErrors).toEqual([]);
  });
});

const shot = (page: Page, name: string) =>
  page.screenshot({ path: join(ARTIFACTS, `playground-${name}.png`) });
