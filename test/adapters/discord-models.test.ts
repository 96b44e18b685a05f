/**
 * Several models resident, on Discord end to end (discord.js + the Discord surface + the real Bot
 * + the real core with two tiny models of different seeds, against the simulator): the model
 * choice and draft mode, per-user (/settings) and per-server (/atelier model) defaults, the model
 * in the result and in the PNG (`Model hash`), a reroll on the same model, and after a restart
 * without that model a clear private refusal naming the configured ones.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log.js';
import { checkpointHash } from '../../src/pipeline/models-dir/model-hash.js';
import { planLoad } from '../../src/pipeline/residency.js';
import { TINY_CHECKPOINT, TINY_MODEL_CONFIG, writeTinyModel } from '../../src/pipeline/tiny/index.js';
import type {
  GenerateOptions,
  GenerationOutput,
  GenerationRequest,
  ModelInfo,
  Pipeline,
  PipelineInfo,
  Residency,
} from '../../src/pipeline/types.js';
import { solidImage } from '../scheduler/helpers.js';
import {
  type DiscordSimulator,
  type InteractionHandle,
  type SimMessage,
  startDiscordSimulator,
} from '../simulators/discord/index.js';
import { button, DiscordBotWorlds, isResult, parameters, privateAnswer } from './discord-bot-worlds.js';

const JOB_WAIT = { timeoutMs: 45_000 };

let root: string;
let hashes: { alpha: string; beta: string };
/** alpha (the default) and beta (seed 2, 2 steps without CFG: the fastest). */
let MODELS: Record<string, string>;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'atelier-discord-models-'));
  writeTinyModel(join(root, 'alpha'), TINY_MODEL_CONFIG, { name: 'tiny-alpha' });
  writeTinyModel(join(root, 'beta'), { ...TINY_MODEL_CONFIG, seed: 2 }, { name: 'tiny-beta' });
  hashes = {
    alpha: checkpointHash([join(root, 'alpha', 'checkpoints', TINY_CHECKPOINT)]),
    beta: checkpointHash([join(root, 'beta', 'checkpoints', TINY_CHECKPOINT)]),
  };
  MODELS = {
    ATELIER_MODELS__LIST__ALPHA__DIR: join(root, 'alpha'),
    ATELIER_MODELS__LIST__BETA__DIR: join(root, 'beta'),
    ATELIER_MODELS__LIST__BETA__STEPS: '2',
    ATELIER_MODELS__LIST__BETA__GUIDANCE: '1',
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

describe('Discord: several models resident (real Bot, two tiny models)', () => {
  it('model: and mode: draft, per-user and per-server defaults, the model in the result and the PNG', async () => {
    d = await startDiscordSimulator({ waitTimeoutMs: JOB_WAIT.timeoutMs });
    const sim = d;
    await worlds.start(sim, MODELS);
    const commands = await sim.waitForCommands();
    const imagine = commands.find((c) => c.name === 'imagine')!;
    expect(imagine.options!.find((o) => o.name === 'model')).toMatchObject({
      type: 3,
      choices: [
        { name: 'alpha', value: 'alpha' },
        { name: 'beta', value: 'beta' },
      ],
    });
    expect(imagine.options!.find((o) => o.name === 'mode')).toMatchObject({
      choices: [{ name: 'draft', value: 'draft' }],
    });
    expect(
      commands.find((c) => c.name === 'settings')!.options!.find((o) => o.name === 'model'),
    ).toMatchObject({
      choices: [
        { name: 'alpha', value: 'alpha' },
        { name: 'beta', value: 'beta' },
        { name: 'default', value: 'default' },
      ],
    });
    expect(commands.find((c) => c.name === 'atelier')!.options!.map((o) => o.name)).toContain('model');
    const { alice, bob, carol } = sim.users;

    // Named: beta, with its own defaults (2 steps, no CFG); its hash in the PNG.
    const named = sim.slash('imagine', { prompt: 'a heron', model: 'beta', seed: 5 }, { user: carol });
    const beta = await named.waitForOriginal(isResult, JOB_WAIT);
    expect(beta.content).toMatch(
      /^\*\*a heron\*\* — <@\d+>\nseed 5 · 2 steps · CFG 1 · Euler · 256×256 · model beta · /,
    );
    expect(parameters(beta)).toMatch(
      new RegExp(
        `^a heron\\nSteps: 2, Sampler: Euler, CFG scale: 1, Seed: 5, Size: 256x256, Model hash: ${hashes.beta}, Model: atelier-tiny-sd35$`,
      ),
    );
    // The default model otherwise: alpha, at its own 4 steps and CFG 4.5; other weights, other pixels.
    const plain = sim.slash(
      'imagine',
      { prompt: 'a heron', seed: 5, steps: 2, guidance: 1 },
      { user: carol },
    );
    const alpha = await plain.waitForOriginal(isResult, JOB_WAIT);
    expect(alpha.content).toMatch(/· model alpha · /);
    expect(parameters(alpha)).toMatch(new RegExp(`Model hash: ${hashes.alpha}, Model: atelier-tiny-sd35$`));
    expect(Buffer.compare(alpha.attachments[0]!.data, beta.attachments[0]!.data)).not.toBe(0);

    // mode: draft takes the fastest loaded model with its own defaults.
    const draft = sim.slash('imagine', { prompt: 'a quick sketch', mode: 'draft' }, { user: bob });
    expect((await draft.waitForOriginal(isResult, JOB_WAIT)).content).toMatch(
      /2 steps · CFG 1 · .*model beta/,
    );

    // A mistyped model (as a client that skips the choices would send it): private, with a guess.
    const typo = await privateAnswer(
      sim.slash('imagine', { prompt: 'x', model: 'bta' }, { unchecked: true }),
    );
    expect(typo.content).toBe("⚠️ “bta” isn't a model here. Did you mean beta? Choose one of: alpha, beta.");

    // The server's default (its own admins may set it; others may not), below each user's own.
    const refused = await privateAnswer(sim.slash('atelier model', { model: 'beta' }, { user: bob }));
    expect(refused.content).toMatch(/^⚠️ Only Atelier admins or the admins of this server/);
    const set = await privateAnswer(sim.slash('atelier model', { model: 'beta' }, { user: alice }));
    expect(set.content).toBe(
      'New images here now use the model beta unless people pick one (their own /settings model: still wins).',
    );
    const mine = await privateAnswer(sim.slash('settings', { model: 'alpha' }, { user: carol }));
    expect(mine.content).toMatch(/^Saved\. Your defaults: model alpha\./);
    const bobs = sim.slash('imagine', { prompt: 'server default' }, { user: bob });
    expect((await bobs.waitForOriginal(isResult, JOB_WAIT)).content).toMatch(/model beta/);
    const carols = sim.slash('imagine', { prompt: 'my default', steps: 1 }, { user: carol });
    expect((await carols.waitForOriginal(isResult, JOB_WAIT)).content).toMatch(/1 steps? · .*model alpha/);
    const shown = await privateAnswer(sim.slash('atelier model', {}, { user: alice }));
    expect(shown.content).toBe(
      'New images here use the model beta unless people pick one (the bot-wide default is alpha).',
    );
    const cleared = await privateAnswer(sim.slash('atelier model', { model: 'default' }, { user: alice }));
    expect(cleared.content).toBe('New images here use the bot-wide default model, alpha, again.');
    const back = sim.slash('imagine', { prompt: 'bot default', steps: 1 }, { user: bob });
    expect((await back.waitForOriginal(isResult, JOB_WAIT)).content).toMatch(/model alpha/);
  });

  it('a reroll keeps its model; after a restart without it, rerolls and variations are refused privately', async () => {
    d = await startDiscordSimulator({ waitTimeoutMs: JOB_WAIT.timeoutMs });
    const sim = d;
    const before = await worlds.start(sim, MODELS);
    await sim.waitForCommands();
    const { carol, bob } = sim.users;
    const made = sim.slash('imagine', { prompt: 'a lantern', model: 'beta', seed: 9 }, { user: carol });
    const result = await made.waitForOriginal(isResult, JOB_WAIT);
    const keep = sim.slash('imagine', { prompt: 'an alpha lantern', steps: 1 }, { user: carol });
    const alphaResult = await keep.waitForOriginal(isResult, JOB_WAIT);

    await sim.click(result, button(result, 'Reroll'), { user: bob }).waitForResponse();
    const reroll = await sim.waitForMessage(
      (m) => /a lantern\*\* — reroll by/.test(m.content) && isResult(m),
      JOB_WAIT,
    );
    expect(reroll.content).toMatch(/2 steps · CFG 1 · .*model beta/);
    expect(parameters(reroll)).toMatch(new RegExp(`Model hash: ${hashes.beta}, Model: atelier-tiny-sd35$`));

    // The operator takes beta out of the configuration and restarts.
    const dataDir = before.app.dataDir;
    await worlds.stop(before, { keep: true });
    const {
      ATELIER_MODELS__LIST__BETA__DIR: _b,
      ATELIER_MODELS__LIST__BETA__STEPS: _s,
      ATELIER_MODELS__LIST__BETA__GUIDANCE: _g,
      ...alphaOnly
    } = MODELS;
    await worlds.start(sim, { ...alphaOnly, ATELIER_MODELS__LIST__GAMMA__DIR: join(root, 'alpha') }, dataDir);

    const refusal = await privateAnswer(sim.click(result, button(result, 'Reroll'), { user: bob }));
    expect(refusal.content).toBe(
      "⚠️ That image was made with the model “beta” (atelier-tiny-sd35), which is no longer configured here, so I can't make more of it with the same model. Configured models: alpha, gamma.",
    );
    const vary = await privateAnswer(sim.click(result, button(result, 'Vary (Subtle)'), { user: carol }));
    expect(vary.content).toMatch(/^⚠️ That image was made with the model “beta”/);
    const upscale = await privateAnswer(sim.click(result, button(result, 'Upscale 2×'), { user: carol }));
    expect(upscale.content).toMatch(/no longer configured here/);
    // Nothing was queued for them.
    const lanterns = sim
      .messages(sim.channels.general)
      .filter((m) => !m.ephemeral && /\*\*a lantern\*\*/.test(m.content));
    expect(lanterns).toHaveLength(2);

    // A result of a model still configured rerolls as before, on that model.
    await sim.click(alphaResult, button(alphaResult, 'Reroll'), { user: bob }).waitForResponse();
    const again = await sim.waitForMessage(
      (m) => /an alpha lantern\*\* — reroll by/.test(m.content) && isResult(m),
      JOB_WAIT,
    );
    expect(again.content).toMatch(/model alpha/);
    expect(parameters(again)).toMatch(new RegExp(`Model hash: ${hashes.alpha}, Model: atelier-tiny-sd35$`));
  });
});

/**
 * A pipeline double serving two models with one place: loading takes no time here, but the load
 * times it reports (as measured at start) are minutes, so the queue's ETAs show whether they count
 * them. Jobs wait for `release()`; what it loads and runs is logged.
 */
class OnePlacePipeline implements Pipeline {
  readonly log: string[] = [];
  resident = ['alpha'];
  readonly loadMs = { alpha: 90_000, beta: 120_000 };
  #release!: () => void;
  readonly #gate = new Promise<void>((resolve) => {
    this.#release = resolve;
  });

  release(): void {
    this.#release();
  }

  async load(): Promise<void> {}
  async dispose(): Promise<void> {}

  info(): PipelineInfo {
    const model = (name: 'alpha' | 'beta'): ModelInfo => ({
      name,
      label: `${name}-checkpoint`,
      hash: name.repeat(2).padEnd(10, '0'),
      family: 'tiny',
      defaults: { steps: 2, guidance: 1, sampler: 'euler', resolution: 256 },
      parameters: 1e6,
      resident: this.resident.includes(name),
      loadMs: this.loadMs[name],
    });
    return {
      model: 'alpha-checkpoint',
      executionProvider: 'cpu',
      components: [],
      defaults: { steps: 2, guidance: 1, sampler: 'euler', resolution: 256 },
      models: [model('alpha'), model('beta')],
      maxResident: 1,
    };
  }

  residency(): Residency {
    return { resident: [...this.resident], capacity: 1, loadMs: { ...this.loadMs }, defaultModel: 'alpha' };
  }

  async generate(request: GenerationRequest, options: GenerateOptions = {}): Promise<GenerationOutput> {
    await this.#gate;
    const model = request.model ?? 'alpha';
    if (!this.resident.includes(model)) {
      for (const gone of planLoad(model, this.resident, {}, { maxResident: 1 }).evict) {
        this.resident = this.resident.filter((m) => m !== gone);
        this.log.push(`unload ${gone}`);
      }
      this.resident.push(model);
      this.log.push(`load ${model}`);
    }
    this.log.push(`run ${model}`);
    for (let step = 1; step <= request.steps; step++) options.onStep?.({ step, total: request.steps });
    return {
      images: [solidImage(request.width, request.height, request.seed)],
      seeds: [request.seed],
      model: `${model}-checkpoint`,
      modelName: model,
      modelHash: model.repeat(2).padEnd(10, '0'),
      resident: [...this.resident],
    };
  }
}

describe('Discord: the queue’s ETA counts loading a model that is not loaded', () => {
  it('with one place for two models: the waiting jobs’ ETAs include each load; the swaps happen between jobs', async () => {
    d = await startDiscordSimulator({ waitTimeoutMs: JOB_WAIT.timeoutMs });
    const sim = d;
    const dataDir = mkdtempSync(join(tmpdir(), 'atelier-discord-eta-'));
    const pipeline = new OnePlacePipeline();
    const config = loadConfig({
      env: {
        ATELIER_DATA_DIR: dataDir,
        ATELIER_LIMITS__USER__ENABLED: 'false',
        ATELIER_MODELS__LIST__ALPHA__CHECKPOINT: 'alpha.safetensors',
        ATELIER_MODELS__LIST__BETA__CHECKPOINT: 'beta.safetensors',
        ATELIER_QUEUE__INITIAL_MS_PER_STEP: '1000',
        ATELIER_QUEUE__POSITION_UPDATE_INTERVAL_MS: '0',
      },
      cwd: dataDir,
    });
    const app = await createApp(config, { pipeline, logger: createLogger({ level: 'silent' }) });
    await app.start();
    await worlds.attach(
      sim,
      Object.assign(app, {
        dataDir,
        dispose: async () => {
          await app.close();
          rmSync(dataDir, { recursive: true, force: true });
        },
      }),
    );
    await sim.waitForCommands();
    const { alice, bob, carol } = sim.users;
    /** Seconds of the ETA a queue notice shows ("about 3 min 32 s"). */
    const etaSeconds = (m: SimMessage) => {
      const match = /about (?:(\d+) min)? ?(?:(\d+) s)?/.exec(m.content)!;
      return Number(match[1] ?? 0) * 60 + Number(match[2] ?? 0);
    };
    const queued = (h: InteractionHandle) =>
      h.waitForOriginal((m) => m.content.includes('⏳ Queued'), JOB_WAIT);

    // alpha is loaded: its job starts (and waits for the gate); no load in its estimate.
    const first = sim.slash('imagine', { prompt: 'first alpha' }, { user: alice });
    await first.waitForOriginal((m) => m.content.includes('Starting'), JOB_WAIT);
    expect(etaSeconds(first.original()!)).toBeLessThan(60);
    // beta is not: 2 min of loading before its own run.
    const second = sim.slash('imagine', { prompt: 'then beta', model: 'beta' }, { user: bob });
    const secondEta = etaSeconds(await queued(second));
    expect(secondEta).toBeGreaterThanOrEqual(120);
    expect(secondEta).toBeLessThan(180);
    // alpha again, after beta took its place: beta's load and alpha's (1.5 min) again.
    const third = sim.slash('imagine', { prompt: 'alpha again' }, { user: carol });
    const thirdEta = etaSeconds(await queued(third));
    expect(thirdEta).toBeGreaterThanOrEqual(210);
    expect(thirdEta).toBeLessThan(300);

    pipeline.release();
    for (const h of [first, second, third]) await h.waitForOriginal(isResult, JOB_WAIT);
    expect(pipeline.log).toEqual([
      'run alpha',
      'unload alpha',
      'load beta',
      'run beta',
      'unload beta',
      'load alpha',
      'run alpha',
    ]);
    expect(third.original()!.content).toMatch(/model alpha/);
    expect(second.original()!.content).toMatch(/model beta/);
  });
});
