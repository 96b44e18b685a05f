/**
 * The bot's composition root: starts every chat surface the configuration enables (Discord,
 * Slack, the playground — any combination in one process) on one Bot, prints one line per surface
 * saying where it listens or whom it is connected as, then resumes the job queue (so results of
 * the last run find their surface), and shuts down cleanly on SIGINT/SIGTERM. Expects an app whose
 * model is loaded (`app.load()`).
 */
import { Bot } from '../commands/bot.js';
import type { ChatAdapter } from '../commands/types.js';
import type { ServeContext } from '../src/cli/main.js';
import { enabledPlatforms } from '../src/config/index.js';
import { ConfigError } from '../src/errors.js';
import { createDiscordSurface } from './discord/index.js';
import { createPlaygroundSurface } from './playground/index.js';
import { createSlackSurface } from './slack/index.js';

interface Surface {
  adapter: ChatAdapter;
  start(bot: Bot): Promise<string>;
  stop(): Promise<void>;
}

export interface ServeOptions {
  /** Resolves when the bot should stop; @default the first SIGINT or SIGTERM */
  until?: Promise<void>;
  /** Where the start lines go; @default stdout */
  print?: (line: string) => void;
}

export async function serve({ app, config }: ServeContext, options: ServeOptions = {}): Promise<void> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const { logger } = app;
  const secrets = config.secrets;
  const platforms = enabledPlatforms(config);
  const surfaces: Surface[] = [];
  if (platforms.discord) {
    if (!secrets.discordToken)
      throw new ConfigError('DISCORD_TOKEN', 'discord.enabled is true but DISCORD_TOKEN is not set');
    surfaces.push(
      createDiscordSurface({
        token: secrets.discordToken,
        apiUrl: config.discord.apiUrl ?? undefined,
        guildIds: config.discord.guildIds,
        maxUploadBytes: config.images.maxUploadBytes.discord,
        logger,
      }),
    );
  }
  if (platforms.slack) {
    if (!secrets.slackBotToken)
      throw new ConfigError('SLACK_BOT_TOKEN', 'slack.enabled is true but SLACK_BOT_TOKEN is not set');
    surfaces.push(
      createSlackSurface({
        botToken: secrets.slackBotToken,
        signingSecret: secrets.slackSigningSecret,
        appToken: platforms.slackMode === 'socket' ? secrets.slackAppToken : undefined,
        port: config.slack.port,
        apiUrl: config.slack.apiUrl ?? undefined,
        maxUploadBytes: config.images.maxUploadBytes.slack,
        logger,
      }),
    );
  }
  if (platforms.playground) {
    surfaces.push(
      createPlaygroundSurface({ logger, host: config.playground.host, port: config.playground.port }),
    );
  }

  const bot = new Bot(app);
  for (const surface of surfaces) bot.attach(surface.adapter);
  bot.start();
  const started: Surface[] = [];
  try {
    for (const surface of surfaces) {
      print(await surface.start(bot));
      started.push(surface);
    }
    if (surfaces.length === 0)
      print('no surface is enabled: set DISCORD_TOKEN or SLACK_BOT_TOKEN, or playground.enabled');
    // Only now, with every surface listening: results of jobs left by the last run go out here.
    const recovery = await app.resume();
    if (recovery.requeued.length + recovery.redelivered.length + recovery.failed.length > 0) {
      logger.info(recovery, 'resumed jobs from the last run');
    }
    await (options.until ??
      new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      }));
  } finally {
    for (const surface of started.reverse()) {
      await surface.stop().catch((err: unknown) => logger.warn({ err }, 'a surface did not stop cleanly'));
    }
    await bot.stop();
  }
}
