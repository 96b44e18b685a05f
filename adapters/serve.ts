/**
 * The chat side of the `serve` role (src/app/serve.ts; bin/atelier.js hands it in): starts every
 * chat surface the configuration enables (Discord, Slack, the playground — any combination in one
 * process) on one Bot, prints one line per surface saying where it listens or whom it is connected
 * as, then resumes the job queue (so results of the last run find their surface), and shuts down
 * cleanly on SIGINT/SIGTERM. Expects an app whose model is loaded (`app.load()`).
 *
 * A surface that cannot start (a refused token, DNS, a refused connection, an HTTP error — checked
 * live first, the same checks `atelier doctor` runs) is one line on stderr naming the cause and
 * what to check, never a stack trace: the other surfaces serve while it retries with backoff; when
 * no surface could start, the start stops (exit code 1 through the CLI).
 */
import { Bot } from '../commands/bot.js';
import type { ChatAdapter } from '../commands/types.js';
import type { ServeContext } from '../src/app/roles.js';
import {
  checkDiscord,
  checkSlack,
  explainStartFailure,
  type SurfaceName,
  type SurfaceStartError,
} from '../src/app/surface-checks.js';
import { enabledPlatforms } from '../src/config/index.js';
import { AtelierError, ConfigError } from '../src/errors.js';
import { createDiscordSurface } from './discord/index.js';
import { createPlaygroundSurface } from './playground/index.js';
import { createSlackSurface } from './slack/index.js';

interface Surface {
  name: SurfaceName;
  adapter: ChatAdapter;
  /** The live check run before each start (the one `atelier doctor` runs). */
  check?(): Promise<unknown>;
  start(bot: Bot): Promise<string>;
  stop(): Promise<void>;
  /** What failures are explained against. */
  context?: { apiUrl?: string | null; tokenVariable?: string };
}

/** Waits between attempts to start a surface that failed; the last one repeats. */
export const START_RETRY_DELAYS_MS = [5_000, 15_000, 30_000, 60_000, 120_000, 300_000] as const;

export interface ServeOptions {
  /** Resolves when the bot should stop; @default the first SIGINT or SIGTERM */
  until?: Promise<void>;
  /** Where the start lines go; @default stdout */
  print?: (line: string) => void;
  /** Where a surface's failure lines go; @default stderr */
  warn?: (line: string) => void;
  /** Waits between attempts to start a failed surface, the last repeating; @default START_RETRY_DELAYS_MS */
  retryDelaysMs?: readonly number[];
}

export async function serve({ app, config }: ServeContext, options: ServeOptions = {}): Promise<void> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const warn = options.warn ?? ((line: string) => process.stderr.write(`${line}\n`));
  const retryDelays = options.retryDelaysMs?.length ? options.retryDelaysMs : START_RETRY_DELAYS_MS;
  const { logger } = app;
  const secrets = config.secrets;
  const platforms = enabledPlatforms(config);
  const surfaces: Surface[] = [];
  if (platforms.discord) {
    if (!secrets.discordToken)
      throw new ConfigError('DISCORD_TOKEN', 'discord.enabled is true but DISCORD_TOKEN is not set');
    const token = secrets.discordToken;
    const apiUrl = config.discord.apiUrl;
    surfaces.push({
      name: 'discord',
      ...createDiscordSurface({
        token,
        apiUrl: apiUrl ?? undefined,
        guildIds: config.discord.guildIds,
        maxUploadBytes: config.images.maxUploadBytes.discord,
        logger,
      }),
      check: () => checkDiscord({ token, apiUrl }),
      context: { apiUrl, tokenVariable: 'DISCORD_TOKEN' },
    });
  }
  if (platforms.slack) {
    if (!secrets.slackBotToken)
      throw new ConfigError('SLACK_BOT_TOKEN', 'slack.enabled is true but SLACK_BOT_TOKEN is not set');
    const botToken = secrets.slackBotToken;
    const appToken = platforms.slackMode === 'socket' ? secrets.slackAppToken : undefined;
    const apiUrl = config.slack.apiUrl;
    surfaces.push({
      name: 'slack',
      ...createSlackSurface({
        botToken,
        signingSecret: secrets.slackSigningSecret,
        appToken,
        port: config.slack.port,
        apiUrl: apiUrl ?? undefined,
        maxUploadBytes: config.images.maxUploadBytes.slack,
        progressEditIntervalMs: config.slack.progressEditIntervalMs,
        updatesPerMinute: config.slack.updatesPerMinute,
        logger,
      }),
      check: () => checkSlack({ botToken, appToken, apiUrl }),
      context: { apiUrl, tokenVariable: 'SLACK_BOT_TOKEN' },
    });
  }
  if (platforms.playground) {
    surfaces.push({
      name: 'playground',
      ...createPlaygroundSurface({
        logger,
        host: config.playground.host,
        port: config.playground.port,
        secret: config.secrets.playgroundSecret,
      }),
    });
  }

  const bot = new Bot(app);
  for (const surface of surfaces) bot.attach(surface.adapter);
  bot.start();
  const started: Surface[] = [];
  let stopping = false;
  const attempt = async (surface: Surface): Promise<{ line: string } | { failure: SurfaceStartError }> => {
    try {
      await surface.check?.();
      return { line: await surface.start(bot) };
    } catch (error) {
      return { failure: explainStartFailure(surface.name, error, surface.context) };
    }
  };
  // Sleeps the shutdown can cut short.
  const sleeping = new Set<() => void>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        sleeping.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      sleeping.add(wake);
    });
  const seconds = (ms: number) =>
    ms >= 60_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
  const stillOff = (surface: Surface, failure: SurfaceStartError, next: number) =>
    failure.retryable
      ? `${failure.message} — retrying in ${seconds(next)}; the other surfaces keep serving`
      : `${failure.message} — ${surface.name} stays off until this is fixed and Atelier restarted; the other surfaces keep serving`;
  /** Tries a failed surface again with backoff until it starts, cannot be helped, or the bot stops. */
  const retry = async (surface: Surface, first: SurfaceStartError): Promise<void> => {
    let said = first.message;
    for (let n = 0; !stopping; n++) {
      await sleep(retryDelays[Math.min(n, retryDelays.length - 1)]!);
      if (stopping) return;
      const result = await attempt(surface);
      if ('line' in result) {
        if (stopping) {
          await surface.stop().catch(() => {});
          return;
        }
        print(result.line);
        started.push(surface);
        return;
      }
      const { failure } = result;
      const next = retryDelays[Math.min(n + 1, retryDelays.length - 1)]!;
      logger.warn({ surface: surface.name, attempt: n + 2 }, failure.message);
      // A new cause is a new line; the same one again stays in the log.
      if (failure.message !== said && !stopping) warn(stillOff(surface, failure, next));
      said = failure.message;
      if (!failure.retryable) return;
    }
  };
  const retrying: Promise<void>[] = [];
  try {
    const failed: { surface: Surface; failure: SurfaceStartError }[] = [];
    for (const surface of surfaces) {
      const result = await attempt(surface);
      if ('line' in result) {
        print(result.line);
        started.push(surface);
      } else {
        failed.push({ surface, failure: result.failure });
      }
    }
    if (surfaces.length === 0)
      print('no surface is enabled: set DISCORD_TOKEN or SLACK_BOT_TOKEN, or playground.enabled');
    if (surfaces.length > 0 && started.length === 0) {
      // Nothing would serve: stop here, one line per surface.
      if (failed.length === 1) throw failed[0]!.failure;
      for (const { failure } of failed) warn(failure.message);
      throw new AtelierError(
        'CONFIG',
        `no chat surface could start (${failed.map((f) => f.surface.name).join(', ')}); fix what is named above and start again`,
      );
    }
    for (const { surface, failure } of failed) {
      warn(stillOff(surface, failure, retryDelays[0]!));
      if (failure.retryable) retrying.push(retry(surface, failure));
    }
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
    stopping = true;
    for (const wake of [...sleeping]) wake();
    await Promise.allSettled(retrying);
    for (const surface of started.reverse()) {
      await surface.stop().catch((err: unknown) => logger.warn({ err }, 'a surface did not stop cleanly'));
    }
    await bot.stop();
  }
}
