/**
 * @module The Slack surface (Bolt 5, HTTP or Socket Mode): `createSlackSurface(options)` →
 * `{ adapter, start(bot), stop() }`, like every adapter folder; plus the app manifest.
 */
export { renderMessage } from './blocks.js';
export { SlackChatAdapter, type SlackChatAdapterOptions } from './chat-adapter.js';
export { SlackNotInChannelError } from './errors.js';
export { type SlackManifestOptions, slackManifest, slackManifestYaml } from './manifest.js';
export { toMrkdwn } from './mrkdwn.js';
export { DEFAULT_SLACK_API_URL, SLACK_EVENTS_PATH, type SlackSurfaceOptions } from './options.js';
export { emojiForReaction } from './reactions.js';
export { createSlackSurface, type SlackBot, type SlackSurface } from './surface.js';
