/**
 * Choice on Discord, end to end (discord.js + the Discord surface + the real Bot + the tiny model,
 * against the simulator): Vary (Subtle) / Vary (Strong), styles (slash choices, autocomplete past
 * 25, did-you-mean, /settings default, PNG parameters) and remix (a Reroll opens a modal; the
 * submitted prompt is what is made).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { toApplicationCommands } from '../../adapters/discord/commands.js';
import { createDiscordSurface, type DiscordSurface } from '../../adapters/discord/index.js';
import { Bot } from '../../commands/bot.js';
import { defineCommands } from '../../commands/definitions.js';
import { validationOptionsFromConfig } from '../../src/app/options.js';
import { readPngText } from '../../src/images/index.js';
import { createLogger } from '../../src/log.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import {
  type DiscordSimulator,
  type InteractionHandle,
  type SimMessage,
  startDiscordSimulator,
} from '../simulators/discord/index.js';

const JOB_WAIT = { timeoutMs: 45_000 };

/** Two styles an operator would write, plus 25 more: 28 choices with `none`, past Discord's 25. */
const STYLE_ENV: Record<string, string> = {
  ATELIER_STYLES__CINEMATIC__PROMPT: '{prompt}, cinematic still, film grain',
  ATELIER_STYLES__CINEMATIC__NEGATIVE: 'cartoon',
  ATELIER_STYLES__WATERCOLOR__PROMPT: 'watercolor painting of {prompt}',
  ...Object.fromEntries(
    Array.from({ length: 25 }, (_, i) => [`ATELIER_STYLES__PRESET${i + 1}__PROMPT`, `{prompt} ${i}`]),
  ),
};

let d: DiscordSimulator | undefined;
let app: TestApp | undefined;
let bot: Bot | undefined;
let surface: DiscordSurface | undefined;

afterEach(async () => {
  await surface?.stop();
  await bot?.stop();
  await app?.dispose();
  await d?.stop();
  d = app = bot = surface = undefined;
});

async function start(env: Record<string, string>) {
  d = await startDiscordSimulator({ waitTimeoutMs: JOB_WAIT.timeoutMs });
  app = await startTestApp({ ATELIER_LIMITS__USER__ENABLED: 'false', ...env });
  bot = new Bot(app);
  surface = createDiscordSurface({
    token: d.token,
    apiUrl: d.apiUrl,
    maxUploadBytes: app.config.images.maxUploadBytes.discord,
    logger: createLogger({ level: 'silent' }),
  });
  await surface.start(bot);
  bot.start();
  await d.waitForCommands();
  return d;
}

const labels = (m: SimMessage) => m.buttons.map((b) => b.label);
const isResult = (m: SimMessage) => m.attachments.length === 1 && labels(m).includes('Delete');
const parameters = (m: SimMessage) => readPngText(m.attachments[0]!.data).parameters ?? '';

function button(m: SimMessage, label: string): string {
  const found = m.buttons.find((b) => b.label === label);
  if (!found?.customId) throw new Error(`no button ${label} on "${m.content}" (${labels(m).join(', ')})`);
  return found.customId;
}

function resultIn(sim: DiscordSimulator, text: RegExp): Promise<SimMessage> {
  return sim.waitForMessage((m) => text.test(m.content) && isResult(m), JOB_WAIT);
}

async function privateAnswer(interaction: InteractionHandle): Promise<SimMessage> {
  await interaction.waitForResponse();
  const original = interaction.original();
  if (original?.ephemeral && !original.deleted && original.content) return original;
  return interaction.waitForFollowUp((m) => m.ephemeral);
}

describe('Discord: styles, subtle/strong variations and remix (real Bot, tiny model)', () => {
  it('style from the choices, in the result and the PNG; Vary (Subtle)/(Strong) keep it and say which', async () => {
    const sim = await start(STYLE_ENV);
    const commands = sim.commands();
    const imagine = commands.find((c) => c.name === 'imagine')!;
    // 28 styles with `none`: past Discord's 25 choices, so the option autocompletes.
    expect(imagine.options!.find((o) => o.name === 'style')).toMatchObject({ type: 3, autocomplete: true });
    expect(commands.find((c) => c.name === 'settings')!.options!.map((o) => o.name)).toEqual(
      expect.arrayContaining(['style', 'remix']),
    );
    const typing = sim.autocomplete('imagine', { prompt: 'x', style: 'cine' }, { focused: 'style' });
    expect((await typing.waitForResponse()).data).toEqual({
      choices: [{ name: 'cinematic', value: 'cinematic' }],
    });
    const all = sim.autocomplete('imagine', { prompt: 'x' }, { focused: 'style' });
    expect(((await all.waitForResponse()).data as { choices: unknown[] }).choices).toHaveLength(25);

    const made = sim.slash(
      'imagine',
      { prompt: 'a lighthouse', style: 'cinematic', steps: 4, seed: 3 },
      { user: sim.users.carol },
    );
    const result = await made.waitForOriginal(isResult, JOB_WAIT);
    expect(result.content).toMatch(
      /^\*\*a lighthouse\*\* — <@\d+>\nseed 3 · 4 steps · .* · style cinematic · [\d.]+ s$/,
    );
    expect(parameters(result)).toMatch(
      /^a lighthouse, cinematic still, film grain\nNegative prompt: cartoon\nSteps: 4, .*Seed: 3, .*Style: cinematic$/,
    );
    expect(labels(result)).toEqual([
      'Vary (Subtle)',
      'Vary (Strong)',
      'Reroll',
      'Upscale 2×',
      'Share',
      'Delete',
    ]);

    await sim.click(result, button(result, 'Vary (Subtle)'), { user: sim.users.bob }).waitForResponse();
    const subtle = await resultIn(sim, /subtle variation of image 1 by/);
    expect(subtle.content).toMatch(/2 of 4 steps \(strength 0\.35\) · .*style cinematic/);
    expect(parameters(subtle)).toMatch(/Denoising strength: 0\.35, Variation: subtle, Style: cinematic$/);

    await sim.click(result, button(result, 'Vary (Strong)'), { user: sim.users.bob }).waitForResponse();
    const strong = await resultIn(sim, /strong variation of image 1 by/);
    expect(strong.content).toMatch(/3 of 4 steps \(strength 0\.75\)/);
    expect(parameters(strong)).toMatch(
      /^a lighthouse, cinematic still.*Variation: strong, Style: cinematic$/s,
    );

    // A mistyped style (as a client that skips autocomplete would send it): private, with a guess.
    const typo = await privateAnswer(sim.slash('imagine', { prompt: 'x', style: 'cinematc' }));
    expect(typo.content).toMatch(
      /^⚠️ “cinematc” isn't a style here\. Did you mean cinematic\? Choose one of: cinematic, preset10, .* … \(28 in all\)\.$/,
    );
  });

  it('/settings style: and remix:true — a Reroll opens a modal with the prompt; the edited prompt is made, in the job’s style', async () => {
    const sim = await start({
      ATELIER_STYLES__CINEMATIC__PROMPT: '{prompt}, cinematic still',
      ATELIER_STYLES__WATERCOLOR__PROMPT: 'watercolor painting of {prompt}',
    });
    const style = sim
      .commands()
      .find((c) => c.name === 'imagine')!
      .options!.find((o) => o.name === 'style');
    expect(style).toMatchObject({
      choices: [
        { name: 'cinematic', value: 'cinematic' },
        { name: 'watercolor', value: 'watercolor' },
        { name: 'none', value: 'none' },
      ],
    });
    const carol = sim.users.carol;
    const saved = await privateAnswer(
      sim.slash('settings', { style: 'watercolor', remix: true }, { user: carol }),
    );
    expect(saved.content).toMatch(/^Saved\. Your defaults: style watercolor\.[^\n]* Remix is on/);

    const made = sim.slash('imagine', { prompt: 'a harbour', steps: 2 }, { user: carol });
    const result = await made.waitForOriginal(isResult, JOB_WAIT);
    expect(result.content).toMatch(/style watercolor/);
    expect(parameters(result)).toMatch(/^watercolor painting of a harbour\n.*Style: watercolor$/s);

    // Bob has no remix: his Reroll queues at once.
    await sim.click(result, button(result, 'Reroll'), { user: sim.users.bob }).waitForResponse();
    await resultIn(sim, /a harbour\*\* — reroll by <@\d+>/);

    const click = sim.click(result, button(result, 'Reroll'), { user: carol });
    const modal = await click.waitForModal();
    expect(modal).toMatchObject({ title: 'Remix · Reroll' });
    expect(modal.inputs).toEqual([
      expect.objectContaining({ customId: 'prompt', value: 'a harbour', style: 2 }),
    ]);
    const blocked = sim.submitModal(click, { prompt: '   \n ' });
    expect((await privateAnswer(blocked)).content).toMatch(/the prompt is empty/);

    const again = sim.click(result, button(result, 'Reroll'), { user: carol });
    await again.waitForModal();
    const submit = sim.submitModal(again, { prompt: 'a harbour at night' });
    const remixed = await submit.waitForOriginal(isResult, JOB_WAIT);
    expect(remixed.content).toMatch(
      new RegExp(`^🔄 \\*\\*a harbour at night\\*\\* — reroll by <@${carol.id}>`),
    );
    expect(parameters(remixed)).toMatch(/^watercolor painting of a harbour at night\n.*Style: watercolor$/s);

    // style:none overrides the saved default for one image.
    const plain = sim.slash(
      'imagine',
      { prompt: 'a plain harbour', steps: 1, style: 'none' },
      { user: carol },
    );
    const plainResult = await plain.waitForOriginal(isResult, JOB_WAIT);
    expect(plainResult.content).not.toMatch(/style/);
    expect(parameters(plainResult)).not.toMatch(/Style:/);
  });
});

describe('Discord registration of styles', () => {
  it('up to 25 choices (with none) are fixed choices; past that the option autocompletes over the same list', async () => {
    const { loadConfig } = await import('../../src/config/index.js');
    const few = loadConfig({ env: { ATELIER_STYLES__NOIR__PROMPT: '{prompt}, noir' }, cwd: '/' });
    const many = loadConfig({ env: STYLE_ENV, cwd: '/' });
    const styleOf = (config: typeof few) =>
      toApplicationCommands(defineCommands(validationOptionsFromConfig(config)))
        .find((c) => c.name === 'imagine')!
        .options!.find((o) => o.name === 'style');
    expect(styleOf(few)).toMatchObject({
      choices: [
        { name: 'noir', value: 'noir' },
        { name: 'none', value: 'none' },
      ],
    });
    expect(styleOf(many)).toMatchObject({ autocomplete: true });
    expect(styleOf(many)).not.toHaveProperty('choices');
    const none = loadConfig({ env: {}, cwd: '/' });
    expect(styleOf(none)).toBeUndefined();
  });
});
