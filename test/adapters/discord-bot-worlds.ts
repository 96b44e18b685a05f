/**
 * Bots behind the Discord surface against the simulator, for end-to-end tests that start (and
 * restart) a real Bot on a real core: each world is stopped after its test, or earlier by the test.
 */
import { createDiscordSurface, type DiscordSurface } from '../../adapters/discord/index.js';
import { Bot } from '../../commands/bot.js';
import { readPngText } from '../../src/images/index.js';
import { createLogger } from '../../src/log.js';
import { startTestApp, type TestApp } from '../helpers/test-app.js';
import type { DiscordSimulator, InteractionHandle, SimMessage } from '../simulators/discord/index.js';

export interface BotWorld {
  app: TestApp;
  bot: Bot;
  surface: DiscordSurface;
}

export class DiscordBotWorlds {
  readonly #worlds: BotWorld[] = [];

  /** A test core from `env` (per-user limits off), its Bot and surface, started. */
  async start(sim: DiscordSimulator, env: Record<string, string>, dataDir?: string): Promise<BotWorld> {
    return this.attach(sim, await startTestApp({ ATELIER_LIMITS__USER__ENABLED: 'false', ...env }, dataDir));
  }

  /** A Bot and surface on a core the test made itself, started. */
  async attach(sim: DiscordSimulator, app: TestApp): Promise<BotWorld> {
    const bot = new Bot(app);
    const surface = createDiscordSurface({
      token: sim.token,
      apiUrl: sim.apiUrl,
      maxUploadBytes: app.config.images.maxUploadBytes.discord,
      logger: createLogger({ level: 'silent' }),
    });
    await surface.start(bot);
    bot.start();
    const world = { app, bot, surface };
    this.#worlds.push(world);
    return world;
  }

  /** Stops one world; `keep` keeps its data dir for a restart on it. */
  async stop(world: BotWorld, options: { keep?: boolean } = {}): Promise<void> {
    const at = this.#worlds.indexOf(world);
    if (at >= 0) this.#worlds.splice(at, 1);
    await world.surface.stop();
    await world.bot.stop();
    await world.app.dispose(options);
  }

  async stopAll(): Promise<void> {
    for (const world of [...this.#worlds]) await this.stop(world);
  }
}

export const labels = (m: SimMessage) => m.buttons.map((b) => b.label);
export const isResult = (m: SimMessage) => m.attachments.length === 1 && labels(m).includes('Delete');
export const parameters = (m: SimMessage) => readPngText(m.attachments[0]!.data).parameters ?? '';

export function button(m: SimMessage, label: string): string {
  const found = m.buttons.find((b) => b.label === label);
  if (!found?.customId) throw new Error(`no button ${label} on "${m.content}" (${labels(m).join(', ')})`);
  return found.customId;
}

/** The ephemeral answer to an interaction: its original response or a follow-up. */
export async function privateAnswer(interaction: InteractionHandle): Promise<SimMessage> {
  await interaction.waitForResponse();
  const original = interaction.original();
  if (original?.ephemeral && !original.deleted && original.content) return original;
  return interaction.waitForFollowUp((m) => m.ephemeral);
}
