/**
 * What `createSlackSurface` needs. HTTP mode takes the bot token and the signing secret; Socket
 * Mode takes the bot token and an app-level token (and needs no public URL).
 */
import type { Logger } from '../../src/log.js';

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
    logger: options.logger,
  };
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
