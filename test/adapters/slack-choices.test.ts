/**
 * Choice on Slack, end to end (Bolt over HTTP + the Slack surface + the real Bot + the tiny model,
 * against the simulator): styles typed as `--style`, Vary (Subtle)/(Strong), and remix (a Vary
 * click opens a modal with views.open; its view_submission queues the edited prompt).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/images/index.js';
import type { SlackMessage, SlackUser } from '../simulators/slack/index.js';
import { button, imageFileId, isResult, type SlackWorld, startSlackWorld } from './slack-world.js';

let world: SlackWorld | undefined;

afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('Slack: styles, subtle/strong variations and remix (real Bot, tiny model)', () => {
  it('--style in the result and the PNG; Vary (Subtle) keeps it; remix opens a modal whose submission is made', async () => {
    world = await startSlackWorld({
      env: () => ({
        ATELIER_LIMITS__USER__ENABLED: 'false',
        ATELIER_GENERATION__BLOCKED_TERMS: 'gore',
        ATELIER_STYLES__CINEMATIC__PROMPT: '{prompt}, cinematic still',
        ATELIER_STYLES__CINEMATIC__NEGATIVE: 'cartoon',
        ATELIER_STYLES__WATERCOLOR__PROMPT: 'watercolor painting of {prompt}',
      }),
    });
    const { s } = world;
    const { bob, carol } = s.users;
    const png = (m: SlackMessage) =>
      readPngText(s.files().find((f) => f.id === imageFileId(m))!.data!).parameters;
    const ephemeralFor = async (user: SlackUser, text: RegExp) =>
      (await s.waitForEphemeral((e) => e.user === user.id && text.test(e.text))).text;

    s.slash('/imagine', 'a fox --style watercolr', { user: bob });
    expect(await ephemeralFor(bob, /style/)).toBe(
      "⚠️ “watercolr” isn't a style here. Did you mean watercolor? Choose one of: cinematic, watercolor, none.",
    );

    s.slash('/imagine', 'a fox --style cinematic --steps 4 --seed 3', { user: bob });
    const result = await s.waitForMessage((m) => m.text.includes('a fox') && isResult(m));
    expect(result.text).toMatch(/seed 3 · 4 steps · .* · style cinematic/);
    expect(png(result)).toMatch(/^a fox, cinematic still\nNegative prompt: cartoon\n.*Style: cinematic$/s);
    expect(result.buttons.map((b) => b.text)).toEqual([
      '🎲 Vary (Subtle)',
      '🎲 Vary (Strong)',
      '🔄 Reroll',
      '⬆️ Upscale 2×',
      '⭐ Share',
      '✖️ Delete',
    ]);

    s.clickButton(result, button(result, 'Vary (Subtle)'), { user: bob });
    const subtle = await s.waitForMessage(
      (m) => m.text.includes(`subtle variation of image 1 by <@${bob.id}>`) && isResult(m),
    );
    expect(subtle.text).toMatch(/2 of 4 steps \(strength 0\.35\)/);
    expect(png(subtle)).toMatch(/Denoising strength: 0\.35, Variation: subtle, Style: cinematic$/);

    // Carol turns remix on (and a default style); her Vary (Strong) now opens a modal first.
    s.slash('/settings', '--remix --style watercolor', { user: carol });
    expect(await ephemeralFor(carol, /Saved/)).toMatch(
      /^Saved\. Your defaults: style watercolor\. .*Remix is on/,
    );
    const click = s.clickButton(result, button(result, 'Vary (Strong)'), { user: carol });
    expect((await click.waitForAck()).status).toBe(200);
    const view = await s.waitForView((v) => v.user === carol.id);
    expect(view).toMatchObject({ title: 'Remix · Vary (Strong)', submit: 'Make it', state: 'open' });
    expect(view.inputs).toEqual([
      expect.objectContaining({
        actionId: 'prompt',
        label: 'Prompt',
        multiline: true,
        optional: false,
        initialValue: 'a fox',
      }),
    ]);
    // Nothing was queued by the click itself.
    expect(s.messages(s.channels.general).some((m) => m.text.includes('strong variation'))).toBe(false);

    // A blocked word: the modal closes and the refusal comes privately.
    const refused = s.submitView(view, { prompt: 'a gore fox' });
    expect(await refused.waitForAck()).toMatchObject({ status: 200, timedOut: false });
    expect(await ephemeralFor(carol, /isn't allowed/)).toMatch(
      /contains a word or phrase that isn't allowed here/,
    );
    expect(() => s.submitView(view)).toThrow(/closed/);

    const again = s.clickButton(result, button(result, 'Vary (Strong)'), { user: carol });
    await again.waitForAck();
    const second = await s.waitForView((v) => v.user === carol.id && v.id !== view.id);
    expect((await s.submitView(second, { prompt: 'a fox in a hat' }).waitForAck()).status).toBe(200);
    const remixed = await s.waitForMessage(
      (m) =>
        m.text.includes(`a fox in a hat* — strong variation of image 1 by <@${carol.id}>`) && isResult(m),
    );
    expect(remixed.channel).toBe(s.channels.general.id);
    // The earlier job's style stays; the strength is the strong one.
    expect(png(remixed)).toMatch(
      /^a fox in a hat, cinematic still\n.*Denoising strength: 0\.75, Variation: strong, Style: cinematic$/s,
    );

    // Her own /imagine takes her default style.
    s.slash('/imagine', 'a heron --steps 1', { user: carol });
    const heron = await s.waitForMessage((m) => m.text.includes('a heron') && isResult(m));
    expect(png(heron)).toMatch(/^watercolor painting of a heron\n/);
    expect(s.unhandledCalls).toEqual([]);
  });
});
