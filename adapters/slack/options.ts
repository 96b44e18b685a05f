/**
 * What `createSlackSurface` needs. HTTP mode takes the bot token and the signing secret; Socket
 * Mode takes the bot token and an app-level token (and needs no public URL).
 */
import type { Logger } from '../../src/log.js';
import { SLACK_PROGRESS_DEFAULTS } from './chat-adapter.js';
import { DEFAULT_USER_CACHE_MS } from './people.js';

/** Slack's Web API when `SLACK_API_URL` is not set. */
export const DEFAULT_SLACK_API_URL = 'https://slack.com/api/';
/** Where Slack sends slash commands, interactivity and events in HTTP mode (one Request URL). */
export const SLACK_EVENTS_PATH = '/slack/events';

export interface SlackSurfaceOptions {
  /** Bot token, `xoxb-…` (`SLACK_BOT_TOKEN`). */
  botToken: string;
  /** Verifies that HTTP requests come from Slack (`SLACK_SIGNING_SECRET`). Required in HTTP mode. */
  signingSecret?: string;
  /** App-level token, `xapp-…` (`SLACK_APP_TOKEN`): when set, the surface uses Socket Mode. */
  appToken?: string;
  /**
   * HTTP mode: the port to listen on for `/slack/events` (`SLACK_PORT`, config `slack.port`);
   * 0 picks a free port (the start line names it).
   * @default 3000
   */
  port?: number;
  /**
   * The Web API base, passed to Bolt as `clientOptions.slackApiUrl` (`SLACK_API_URL`, config
   * `slack.apiUrl`). Ends with a slash.
   * @default 'https://slack.com/api/'
   */
  apiUrl?: string;
  /**
   * The operator's cap on uploads (config `images.maxUploadBytes.slack`); results above it are
   * re-encoded or scaled down by the bot.
   * @default 1 GB (Slack's own limit)
   */
  maxUploadBytes?: number;
  /**
   * How long a slash command's acknowledgement waits for the bot's private answer (a refusal, a
   * usage message) so it can travel in the ack itself. Slack allows 3 s in all.
   * @default 250
   */
  ackDeadlineMs?: number;
  /** Waits before retrying to show a just-uploaded image inline (see SlackChatAdapter). @default [1000, 3000] */
  imageRetryDelaysMs?: readonly number[];
  /**
   * At most one progress edit (step k/n with its preview) per job message in this time; the
   * newest state goes out, the result at once (config `slack.progressEditIntervalMs`).
   * @default 2000
   */
  progressEditIntervalMs?: number;
  /** Least time between two progress edits in one channel (Slack: ~1 message/s per channel). @default 1000 */
  channelEditIntervalMs?: number;
  /**
   * chat.update calls per minute that progress may use in the workspace (config
   * `slack.updatesPerMinute`); Slack's Tier 3 allows about 50, the rest is kept for results.
   * @default 40
   */
  updatesPerMinute?: number;
  /**
   * How long a users.info answer (name, workspace admin/owner) is remembered. A person made or
   * unmade admin is seen as such after at most this long. @default 60_000
   */
  userCacheMs?: number;
  logger: Logger;
}

export interface ResolvedSlackSurfaceOptions
  extends Required<Omit<SlackSurfaceOptions, 'signingSecret' | 'appToken'>> {
  mode: 'http' | 'socket';
  signingSecret: string | undefined;
  appToken: string | undefined;
}

export function resolveSlackSurfaceOptions(options: SlackSurfaceOptions): ResolvedSlackSurfaceOptions {
  const text = (value: string | undefined) => (value?.trim() ? value.trim() : undefined);
  const botToken = text(options.botToken);
  if (!botToken?.startsWith('xoxb-')) {
    throw new TypeError('Expected `botToken` to be a bot token starting with "xoxb-" (SLACK_BOT_TOKEN)');
  }
  const appToken = text(options.appToken);
  if (appToken !== undefined && !appToken.startsWith('xapp-')) {
    throw new TypeError(
      'Expected `appToken` to be an app-level token starting with "xapp-" (SLACK_APP_TOKEN)',
    );
  }
  const signingSecret = text(options.signingSecret);
  if (appToken === undefined && signingSecret === undefined) {
    throw new TypeError(
      'Expected `signingSecret` (SLACK_SIGNING_SECRET) for HTTP mode, or `appToken` (SLACK_APP_TOKEN) for Socket Mode',
    );
  }
  const resolved: ResolvedSlackSurfaceOptions = {
    botToken,
    appToken,
    signingSecret,
    mode: appToken ? 'socket' : 'http',
    port: options.port ?? 3000,
    apiUrl: text(options.apiUrl) ?? DEFAULT_SLACK_API_URL,
    maxUploadBytes: options.maxUploadBytes ?? 1_000_000_000,
    ackDeadlineMs: options.ackDeadlineMs ?? 250,
    imageRetryDelaysMs: options.imageRetryDelaysMs ?? [1000, 3000],
    progressEditIntervalMs: options.progressEditIntervalMs ?? SLACK_PROGRESS_DEFAULTS.progressIntervalMs,
    channelEditIntervalMs: options.channelEditIntervalMs ?? SLACK_PROGRESS_DEFAULTS.channelIntervalMs,
    updatesPerMinute: options.updatesPerMinute ?? SLACK_PROGRESS_DEFAULTS.updatesPerMinute,
    userCacheMs: options.userCacheMs ?? DEFAULT_USER_CACHE_MS,
    logger: options.logger,
  };
  for (const key of ['progressEditIntervalMs', 'channelEditIntervalMs', 'userCacheMs'] as const) {
    if (!Number.isFinite(resolved[key]) || resolved[key] < 0) {
      throw new TypeError(`Expected \`${key}\` to be a number ≥ 0, got \`${resolved[key]}\``);
    }
  }
  if (!Number.isInteger(resolved.updatesPerMinute) || resolved.updatesPerMinute < 1) {
    throw new TypeError(
      `Expected \`updatesPerMinute\` to be an integer ≥ 1, got \`${resolved.updatesPerMinute}\``,
    );
  }
  if (!Number.isInteger(resolved.port) || resolved.port < 0 || resolved.port > 65_535) {
    throw new TypeError(`Expected \`port\` to be an integer from 0 to 65535, got \`${resolved.port}\``);
  }
  if (!Number.isFinite(resolved.maxUploadBytes) || resolved.maxUploadBytes <= 0) {
    throw new TypeError(`Expected \`maxUploadBytes\` to be a number > 0, got \`${resolved.maxUploadBytes}\``);
  }
  if (
    !Number.isFinite(resolved.ackDeadlineMs) ||
    resolved.ackDeadlineMs < 0 ||
    resolved.ackDeadlineMs >= 2500
  ) {
    throw new TypeError(
      `Expected \`ackDeadlineMs\` to be from 0 to 2499 (Slack drops acks after 3000 ms), got \`${resolved.ackDeadlineMs}\``,
    );
  }
  if (!resolved.apiUrl.endsWith('/')) resolved.apiUrl += '/';
  return resolved;
}
