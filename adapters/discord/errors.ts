/**
 * Discord REST failures as AtelierErrors. discord.js has already waited out 429s and retried 5xx
 * by the time one arrives here, so what is left is an answer to act on: the message is gone,
 * access is missing, the interaction token expired. Interaction tokens travel in URL paths, so
 * the URL is redacted before it reaches a message (and the raw error is not kept as `cause`).
 */
import { DiscordAPIError, HTTPError, RESTJSONErrorCodes } from 'discord.js';
import { AtelierError, type ErrorCode } from '../../src/errors.js';

/** Codes saying the interaction token (or the interaction) can no longer be used. */
const EXPIRED_TOKEN_CODES: ReadonlySet<number> = new Set([
  RESTJSONErrorCodes.InvalidWebhookToken,
  RESTJSONErrorCodes.UnknownWebhook,
  RESTJSONErrorCodes.UnknownInteraction,
]);

const GONE_CODES: ReadonlySet<number> = new Set([
  RESTJSONErrorCodes.UnknownMessage,
  RESTJSONErrorCodes.UnknownChannel,
]);

const FORBIDDEN_CODES: ReadonlySet<number> = new Set([
  RESTJSONErrorCodes.MissingAccess,
  RESTJSONErrorCodes.MissingPermissions,
  RESTJSONErrorCodes.CannotSendMessagesToThisUser,
  RESTJSONErrorCodes.CannotSendMessagesToThisUserDueToHavingNoMutualGuilds,
]);

/** A Discord REST request failed; `discordCode` is Discord's JSON error code when it sent one. */
export class DiscordRequestError extends AtelierError {
  constructor(
    readonly what: string,
    readonly status: number,
    readonly discordCode: number | undefined,
    readonly method: string,
    /** The request path with interaction tokens replaced by `:token`. */
    readonly path: string,
    detail: string,
  ) {
    super(
      codeFor(discordCode),
      `discord: ${what} failed: ${method} ${path} → ${status}${discordCode !== undefined ? ` (code ${discordCode})` : ''}: ${detail}`,
      'Discord refused that message. Please try again.',
    );
  }

  /** The interaction token expired or is unknown: the channel routes may still work. */
  get tokenExpired(): boolean {
    return this.discordCode !== undefined && EXPIRED_TOKEN_CODES.has(this.discordCode);
  }

  /** The message or channel no longer exists. */
  get gone(): boolean {
    return this.discordCode !== undefined && GONE_CODES.has(this.discordCode);
  }
}

/** The surface is stopped (or never started): there is no client to send with. */
export class DiscordNotConnectedError extends AtelierError {
  constructor(what: string) {
    super('UNKNOWN', `discord: cannot ${what}: the Discord surface is not running`);
  }
}

function codeFor(discordCode: number | undefined): ErrorCode {
  if (discordCode === undefined) return 'UNKNOWN';
  if (GONE_CODES.has(discordCode)) return 'NOT_FOUND';
  if (FORBIDDEN_CODES.has(discordCode)) return 'FORBIDDEN';
  return 'UNKNOWN';
}

/** `/webhooks/123/<token>/…` and `/interactions/123/<token>/…` with the token hidden. */
export function redactPath(url: string): string {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    path = url;
  }
  return path.replace(/\/(webhooks|interactions)\/(\d+)\/[^/?]+/g, '/$1/$2/:token');
}

/** Wraps whatever a REST call threw, once; AtelierErrors pass through. */
export function asDiscordError(error: unknown, what: string): AtelierError {
  if (error instanceof AtelierError) return error;
  if (error instanceof DiscordAPIError) {
    const code = typeof error.code === 'number' ? error.code : undefined;
    return new DiscordRequestError(
      what,
      error.status,
      code,
      error.method,
      redactPath(error.url),
      error.message,
    );
  }
  if (error instanceof HTTPError) {
    return new DiscordRequestError(
      what,
      error.status,
      undefined,
      error.method,
      redactPath(error.url),
      error.message,
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new AtelierError('UNKNOWN', `discord: ${what} failed: ${redactPath(message)}`);
}
