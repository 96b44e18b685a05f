/**
 * @module The Discord surface (discord.js 14): `createDiscordSurface(options)` →
 * `{ adapter, start(bot), stop() }`, like every adapter folder.
 */
export { DiscordChatAdapter } from './adapter.js';
export { registerCommands, toApplicationCommands } from './commands.js';
export { DiscordNotConnectedError, DiscordRequestError } from './errors.js';
export { DEFAULT_DISCORD_API_URL, type DiscordSurfaceOptions } from './options.js';
export { INTERACTION_TOKEN_TTL_MS, type InteractionReference } from './references.js';
export { renderMessage } from './render.js';
export { createDiscordSurface, DISCORD_INTENTS, type DiscordBot, type DiscordSurface } from './surface.js';
