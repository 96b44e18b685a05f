/** What `createDiscordSurface` needs; everything but the token has a default. */
import type { Logger } from '../../src/log.js';

/** Discord's REST base when `DISCORD_API_URL` is not set (discord.js appends `/v10`). */
export const DEFAULT_DISCORD_API_URL = 'https://discord.com/api';

export interface DiscordSurfaceOptions {
  /** The bot token (`DISCORD_TOKEN`). */
  token: string;
  /**
   * REST base passed to discord.js as `rest: { api }` (`DISCORD_API_URL`, config `discord.apiUrl`);
   * the gateway URL then comes from `GET /gateway/bot` on it.
   * @default 'https://discord.com/api'
   */
  apiUrl?: string;
  /**
   * Servers to register the slash commands in (instant updates, config `discord.guildIds`).
   * Empty registers them globally (Discord may take up to an hour to show changes).
   * @default []
   */
  guildIds?: readonly string[];
  /**
   * The operator's cap on uploads (config `images.maxUploadBytes.discord`); the server's own
   * limit (boost tier) applies when it is lower.
   * @default 10 MiB
   */
  maxUploadBytes?: number;
  /**
   * How long the bot may take to answer an interaction before the surface defers it. Discord
   * drops interactions not acknowledged within 3 s; deferring at 1.5 s leaves room for a slow
   * network round trip.
   * @default 1500
   */
  deferAfterMs?: number;
  logger: Logger;
}

export interface ResolvedDiscordSurfaceOptions extends Required<DiscordSurfaceOptions> {}

export function resolveSurfaceOptions(options: DiscordSurfaceOptions): ResolvedDiscordSurfaceOptions {
  if (typeof options.token !== 'string' || options.token.trim() === '') {
    throw new TypeError('Expected `token` to be a non-empty string (DISCORD_TOKEN)');
  }
  const resolved: ResolvedDiscordSurfaceOptions = {
    ...options,
    apiUrl: options.apiUrl ?? DEFAULT_DISCORD_API_URL,
    guildIds: options.guildIds ?? [],
    maxUploadBytes: options.maxUploadBytes ?? 10 * 1024 * 1024,
    deferAfterMs: options.deferAfterMs ?? 1500,
  };
  for (const key of ['maxUploadBytes', 'deferAfterMs'] as const) {
    const value = resolved[key];
    if (!Number.isFinite(value) || value <= 0) {
      throw new TypeError(
        `Expected \`${key}\` to be a finite number > 0, got \`${value}\` (${typeof value})`,
      );
    }
  }
  if (resolved.deferAfterMs >= 3000) {
    throw new TypeError(
      `Expected \`deferAfterMs\` to be below Discord's 3000 ms interaction window, got \`${resolved.deferAfterMs}\``,
    );
  }
  resolved.apiUrl = resolved.apiUrl.replace(/\/+$/, '');
  return resolved;
}
