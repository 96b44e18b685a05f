/**
 * @module The local playground: a web page that feels like a chat channel, served on loopback.
 * Same shape as every adapter folder: `create<Platform>Surface(options) → { adapter, start, stop }`.
 */
export {
  createPlaygroundSurface,
  type PlaygroundBot,
  type PlaygroundOptions,
  type PlaygroundSurface,
} from './surface.js';
