/**
 * LoRAs typed on Slack, end to end (Bolt over HTTP + the Slack surface + the real Bot + the tiny
 * model, against the simulator): `--lora name:weight`, given again for a second one, in the result
 * and the PNG (A1111's `<lora:name:weight>` and `Lora hashes`); an unknown name gets a private
 * did-you-mean naming the allowed ones, and a fourth LoRA is refused.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readPngText } from '../../src/images/index.js';
import { shortLoraHash } from '../../src/pipeline/lora/index.js';
import { TINY_CHECKPOINT, TINY_MODEL_CONFIG, writeTinyModel } from '../../src/pipeline/tiny/index.js';
import { mmditShapes, randomLora, writeLora } from '../fixtures/loras.js';
import type { SlackMessage, SlackUser } from '../simulators/slack/index.js';
import { imageFileId, isResult, type SlackWorld, startSlackWorld } from './slack-world.js';

let root: string;
let dir: string;
let world: SlackWorld | undefined;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-slack-loras-'));
  writeTinyModel(join(root, 'tiny'), TINY_MODEL_CONFIG);
  const shapes = mmditShapes(join(root, 'tiny', 'checkpoints', TINY_CHECKPOINT));
  dir = join(root, 'loras');
  mkdirSync(dir);
  const layers = ['joint_blocks.0.context_block.attn.qkv.weight', 'final_layer.adaLN_modulation.1.weight'];
  writeLora(join(dir, 'pixel.safetensors'), randomLora(shapes, layers, 3), 'comfyui', 2);
  writeLora(join(dir, 'ink.safetensors'), randomLora(shapes, layers, 4, { alpha: false }), 'peft', 2);
});
afterEach(async () => {
  await world?.close();
  world = undefined;
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('Slack: LoRAs typed as --lora (real Bot, tiny model)', () => {
  it('--lora name:weight (given again for a second) in the result and the PNG; an unknown name and a fourth are refused privately', async () => {
    world = await startSlackWorld({
      env: () => ({
        ATELIER_LIMITS__USER__ENABLED: 'false',
        ATELIER_LORAS__DIR: dir,
        ATELIER_LORAS__ALLOWED__PIXEL__WEIGHT: '0.8',
        ATELIER_LORAS__ALLOWED__INK: '{}',
      }),
    });
    const { s } = world;
    const { bob } = s.users;
    const png = (m: SlackMessage) =>
      readPngText(s.files().find((f) => f.id === imageFileId(m))!.data!).parameters ?? '';
    const ephemeralFor = async (user: SlackUser, text: RegExp) =>
      (await s.waitForEphemeral((e) => e.user === user.id && text.test(e.text))).text;

    s.slash('/imagine', 'a fox --lora pixle', { user: bob });
    expect(await ephemeralFor(bob, /LoRA/)).toBe(
      "⚠️ “pixle” isn't a LoRA here. Did you mean pixel? Choose one of: ink, pixel (e.g. lora:pixel:0.8).",
    );
    s.slash('/imagine', 'a fox --lora pixel, ink, pixel:1, ink:1', { user: bob });
    expect(await ephemeralFor(bob, /Up to 3/)).toBe(
      '⚠️ Up to 3 LoRAs at once, not 4 (pixel, ink, pixel, ink).',
    );

    s.slash('/imagine', 'a fox --lora pixel:0.5 --lora ink --steps 2 --seed 5', { user: bob });
    const result = await s.waitForMessage((m) => m.text.includes('a fox') && isResult(m));
    expect(result.text).toMatch(/seed 5 · 2 steps · .* · lora pixel 0\.5, ink 1/);
    const [ink, pixel] = await Promise.all([
      shortLoraHash(join(dir, 'ink.safetensors')),
      shortLoraHash(join(dir, 'pixel.safetensors')),
    ]);
    expect(png(result)).toMatch(
      new RegExp(
        `^a fox <lora:pixel:0\\.5> <lora:ink:1>\\nSteps: 2, .*Seed: 5, .*Lora hashes: "ink: ${ink}, pixel: ${pixel}"$`,
      ),
    );
  });
});
