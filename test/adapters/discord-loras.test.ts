/**
 * LoRAs on Discord end to end (discord.js + the Discord surface + the real Bot + the real core with
 * the tiny model in its pipeline process, against the simulator): the three LoRA options with
 * autocomplete of the allowed names, the LoRAs in the result line and in the PNG (A1111's
 * `<lora:name:weight>` and `Lora hashes`), a private did-you-mean for an unknown name, a reroll that
 * keeps them, and after a restart without one of them a private refusal naming the allowed ones.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CHECKPOINT, TINY_MODEL_CONFIG, writeTinyModel } from '../../src/pipeline/tiny/index.js';
import { mmditShapes, randomLora, writeLora } from '../fixtures/loras.js';
import { type DiscordSimulator, startDiscordSimulator } from '../simulators/discord/index.js';
import { button, DiscordBotWorlds, isResult, parameters, privateAnswer } from './discord-bot-worlds.js';

const JOB_WAIT = { timeoutMs: 45_000 };

let root: string;
let LORAS: Record<string, string>;
/** A1111's short hash of each file: sha256 of the data after the safetensors header, 12 hex digits. */
const hashes: Record<string, string> = {};

function addnetHash(path: string): string {
  const bytes = readFileSync(path);
  const start = 8 + Number(bytes.readBigUInt64LE(0));
  return createHash('sha256').update(bytes.subarray(start)).digest('hex').slice(0, 12);
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-discord-loras-'));
  // The shapes of the tiny model the test app generates for itself (the same generator, the same config).
  writeTinyModel(join(root, 'tiny'), TINY_MODEL_CONFIG);
  const shapes = mmditShapes(join(root, 'tiny', 'checkpoints', TINY_CHECKPOINT));
  const dir = join(root, 'loras');
  mkdirSync(dir);
  const layers = ['joint_blocks.0.x_block.attn.qkv.weight', 'joint_blocks.1.x_block.mlp.fc2.weight'];
  writeLora(join(dir, 'pixel_art.safetensors'), randomLora(shapes, layers, 1), 'kohya', 2);
  writeLora(join(dir, 'ink.safetensors'), randomLora(shapes, layers, 2), 'diffusers', 2, 'F32');
  hashes.pixel = addnetHash(join(dir, 'pixel_art.safetensors'));
  hashes.ink = addnetHash(join(dir, 'ink.safetensors'));
  LORAS = {
    ATELIER_LORAS__DIR: dir,
    ATELIER_LORAS__ALLOWED__PIXEL__FILE: 'pixel_art.safetensors',
    ATELIER_LORAS__ALLOWED__PIXEL__WEIGHT: '0.8',
    ATELIER_LORAS__ALLOWED__INK: '{}',
  };
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

let d: DiscordSimulator | undefined;
const worlds = new DiscordBotWorlds();

afterEach(async () => {
  await worlds.stopAll();
  await d?.stop();
  d = undefined;
});

describe('Discord: LoRAs (real Bot, tiny model)', () => {
  it('lora options with autocomplete; the LoRAs in the result and the PNG; a reroll keeps them; a removed one is refused after a restart', async () => {
    d = await startDiscordSimulator({ waitTimeoutMs: JOB_WAIT.timeoutMs });
    const sim = d;
    const before = await worlds.start(sim, LORAS);
    const commands = await sim.waitForCommands();
    const imagine = commands.find((c) => c.name === 'imagine')!;
    for (const name of ['lora', 'lora2', 'lora3']) {
      const option = imagine.options!.find((o) => o.name === name);
      expect(option).toMatchObject({ type: 3, autocomplete: true });
      expect(option).not.toHaveProperty('choices');
    }

    const typing = sim.autocomplete('imagine', { prompt: 'x', lora: 'pi' }, { focused: 'lora' });
    expect((await typing.waitForResponse()).data).toEqual({
      choices: [{ name: 'pixel (weight 0.8)', value: 'pixel' }],
    });
    const all = sim.autocomplete('imagine', { prompt: 'x', lora: 'pixel', lora2: '' }, { focused: 'lora2' });
    expect((await all.waitForResponse()).data).toEqual({
      choices: [
        { name: 'ink (weight 1)', value: 'ink' },
        { name: 'pixel (weight 0.8)', value: 'pixel' },
      ],
    });
    const weighing = sim.autocomplete('imagine', { prompt: 'x', lora2: 'ink:0.' }, { focused: 'lora2' });
    expect((await weighing.waitForResponse()).data).toEqual({
      choices: [{ name: 'ink:0.', value: 'ink:0.' }],
    });

    const typo = await privateAnswer(sim.slash('imagine', { prompt: 'x', lora: 'pixle' }));
    expect(typo.content).toBe(
      "⚠️ “pixle” isn't a LoRA here. Did you mean pixel? Choose one of: ink, pixel (e.g. lora:pixel:0.8).",
    );

    const { carol, bob } = sim.users;
    const made = sim.slash(
      'imagine',
      { prompt: 'a lighthouse', lora: 'pixel', lora2: 'ink:0.5', seed: 3, steps: 2 },
      { user: carol },
    );
    const result = await made.waitForOriginal(isResult, JOB_WAIT);
    expect(result.content).toMatch(
      /^\*\*a lighthouse\*\* — <@\d+>\nseed 3 · 2 steps · .* · lora pixel 0\.8, ink 0\.5 · [\d.]+ s$/,
    );
    expect(parameters(result)).toMatch(
      new RegExp(
        `^a lighthouse <lora:pixel:0\\.8> <lora:ink:0\\.5>\\nSteps: 2, .*Seed: 3, .*Lora hashes: "ink: ${hashes.ink}, pixel: ${hashes.pixel}"$`,
      ),
    );

    // The pipeline process tells the queue's ETA the combination is loaded now, and what its merge
    // and load took (the ETA counts a merge only for a combination not listed: test/scheduler/loras-eta.test.ts).
    const combination = 'ink=ink.safetensors@0.5|pixel=pixel_art.safetensors@0.8';
    const merged = before.app.pipeline.residency?.();
    const model = merged!.defaultModel;
    expect(merged!.loras?.[model]).toEqual([combination]);
    expect(merged!.loraMs?.[model]).toBeGreaterThan(0);

    await sim.click(result, button(result, 'Reroll'), { user: bob }).waitForResponse();
    const reroll = await sim.waitForMessage(
      (m) => /a lighthouse\*\* — reroll by/.test(m.content) && isResult(m),
      JOB_WAIT,
    );
    expect(reroll.content).toMatch(/lora pixel 0\.8, ink 0\.5/);
    expect(before.app.pipeline.residency?.()?.loras?.[model]).toEqual([combination]);
    expect(parameters(reroll)).toMatch(
      /^a lighthouse <lora:pixel:0\.8> <lora:ink:0\.5>\n.*Lora hashes: "ink: /s,
    );

    // The operator takes pixel off the list and restarts.
    const dataDir = before.app.dataDir;
    await worlds.stop(before, { keep: true });
    const {
      ATELIER_LORAS__ALLOWED__PIXEL__FILE: _f,
      ATELIER_LORAS__ALLOWED__PIXEL__WEIGHT: _w,
      ...inkOnly
    } = LORAS;
    await worlds.start(sim, inkOnly, dataDir);
    const refusal = await privateAnswer(sim.click(result, button(result, 'Reroll'), { user: bob }));
    expect(refusal.content).toBe(
      '⚠️ “pixel” was used for that image but is no longer a LoRA here. Choose one of: ink (e.g. lora:ink:0.8).',
    );
    const vary = await privateAnswer(sim.click(result, button(result, 'Vary (Subtle)'), { user: carol }));
    expect(vary.content).toMatch(/^⚠️ “pixel” was used for that image but is no longer a LoRA here/);
  });
});
