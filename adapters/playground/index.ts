/**
 * @module The local playground: a web page that feels like a chat channel, served on loopback.
 * Same shape as every adapter folder: `create<Platform>Surface(options) → { adapter, start, stop }`.
 */
export type { GalleryEntry, PlaygroundBot, ResultImage } from './bot-port.js';
export { createPlaygroundSurface, type PlaygroundOptions, type PlaygroundSurface } from './surface.js';
