/**
 * One Slack end-to-end world for a test: the Slack simulator, the real core (tiny model, SQLite,
 * scheduler) on a temp data dir, the real Bot, and the Slack surface on real Bolt in HTTP mode
 * (Request URL pointed at it) or Socket Mode. `restart()` replaces core, bot and surface on the
 * same data dir, as a process restart would.
 */

import {
  createSlackSurface,
  type SlackSurface,
  type SlackSurfaceOptions,
} from '../../adapters/slack/index.js';
import { Bot } from '../../commands/bot.js';
import { createLogger } from '../../src/log.js';
import type { Pipeline } from '../../src/pipeline/types.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import {
  type SlackMessage,
  type SlackSimulator,
  type SlackSimulatorOptions,
  startSlackSimulator,
} from '../simulators/slack/index.js';

/** The Slack file of a message's image block. */
export const imageFileId = (m: SlackMessage) =>
  (m.blocks.find((b) => b.type === 'image') as { slack_file?: { id: string } } | undefined)?.slack_file?.id;
/** A job's result: its image with buttons. */
export const isResult = (m: SlackMessage) => imageFileId(m) !== undefined && m.buttons.length > 0;
/** The action id of the button whose label ends with `label`. */
export const button = (m: SlackMessage, label: string) => {
  const found = m.buttons.find((b) => b.text?.endsWith(label));
  if (!found) throw new Error(`no button "${label}" on ${m.buttons.map((b) => b.text).join(', ')}`);
  return found.actionId;
};

export interface SlackWorld {
  s: SlackSimulator;
  app: TestApp;
  bot: Bot;
  surface: SlackSurface;
  /** The surface's start line. */
  line: string;
  restart(): Promise<void>;
  close(): Promise<void>;
}

export interface WorldOptions {
  socket?: boolean;
  /** Extra environment for the core's config (limits, …); may use the simulator's ids. */
  env?: (s: SlackSimulator) => Record<string, string>;
  /**
   * The surface's progress pacing. Tests run jobs of a few hundred milliseconds, so by default
   * a message may be edited every 100 ms and a channel is not paced; `updatesPerMinute` and the
   * simulator's rate limits stay Slack's.
   */
  surface?: Pick<
    SlackSurfaceOptions,
    'progressEditIntervalMs' | 'channelEditIntervalMs' | 'updatesPerMinute' | 'userCacheMs'
  >;
  /** The simulator's options (rate limits, …). */
  simulator?: SlackSimulatorOptions;
  /**
   * A pipeline double instead of the tiny model (e.g. test/helpers/stepped-pipeline.ts); the same
   * one serves the core again after `restart()`.
   */
  pipeline?: Pipeline;
}

export async function startSlackWorld(options: WorldOptions = {}): Promise<SlackWorld> {
  // Generous waits: on a busy 2-core CI runner a 2×2 grid behind other jobs can take a while.
  const s = await startSlackSimulator({ waitTimeoutMs: 30_000, ...options.simulator });
  const env = {
    ATELIER_PROGRESS__MIN_EDIT_INTERVAL_MS: '200',
    // Previews (files in the job's thread) only where a test asks for them.
    ATELIER_PROGRESS__PREVIEW_EVERY_STEPS: '0',
    ATELIER_SLACK__SHOWCASE_CHANNEL_ID: s.channels.showcase.id,
    ...options.env?.(s),
  };
  const world = { s } as SlackWorld;
  const boot = async (dataDir?: string) => {
    world.app = await startTestApp(env, dataDir, options.pipeline ? { pipeline: options.pipeline } : {});
    world.bot = new Bot(world.app);
    world.surface = createSlackSurface({
      botToken: s.botToken,
      ...(options.socket ? { appToken: s.appToken } : { signingSecret: s.signingSecret }),
      port: 0,
      apiUrl: s.apiUrl,
      progressEditIntervalMs: 100,
      channelEditIntervalMs: 0,
      ...options.surface,
      logger: createLogger({ level: 'silent' }),
    });
    world.line = await world.surface.start(world.bot);
    world.bot.start();
    if (options.socket) await s.waitForSocket();
    else s.setRequestUrl(`http://127.0.0.1:${/:(\d+)\//.exec(world.line)![1]}/slack/events`);
  };
  const shutdown = async (keep: boolean) => {
    await world.surface.stop();
    await world.bot.stop();
    await world.app.dispose({ keep });
  };
  world.restart = async () => {
    await shutdown(true);
    await boot(world.app.dataDir);
  };
  world.close = async () => {
    await shutdown(false);
    await s.stop();
  };
  await boot();
  return world;
}
