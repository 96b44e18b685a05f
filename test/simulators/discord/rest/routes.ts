import type { UploadedPart } from '../../shared/multipart.js';
import type { GatewayServer } from '../gateway.js';
import type { InteractionHandle } from '../interactions.js';
import type { ResolvedDiscordOptions } from '../options.js';
import type { DiscordState } from '../state.js';

/**
 * Every REST route the simulator serves (under `/api/v10`), as `METHOD /path/:param`. These keys
 * name routes in `failNext` and in the request log. Anything else answers Discord's 404 and is
 * logged with `route: null`, so a test can spot a bot calling something unsimulated.
 */
export const DISCORD_ROUTES = [
  'GET /gateway',
  'GET /gateway/bot',
  'GET /users/@me',
  'GET /users/:userId',
  'POST /users/@me/channels',
  'GET /applications/@me',
  'GET /applications/:applicationId/commands',
  'PUT /applications/:applicationId/commands',
  'POST /applications/:applicationId/commands',
  'DELETE /applications/:applicationId/commands/:commandId',
  'GET /applications/:applicationId/guilds/:guildId/commands',
  'PUT /applications/:applicationId/guilds/:guildId/commands',
  'POST /applications/:applicationId/guilds/:guildId/commands',
  'DELETE /applications/:applicationId/guilds/:guildId/commands/:commandId',
  'POST /interactions/:interactionId/:token/callback',
  'POST /webhooks/:applicationId/:token',
  'GET /webhooks/:applicationId/:token/messages/:messageId',
  'PATCH /webhooks/:applicationId/:token/messages/:messageId',
  'DELETE /webhooks/:applicationId/:token/messages/:messageId',
  'GET /channels/:channelId',
  'GET /channels/:channelId/messages',
  'POST /channels/:channelId/messages',
  'GET /channels/:channelId/messages/:messageId',
  'PATCH /channels/:channelId/messages/:messageId',
  'DELETE /channels/:channelId/messages/:messageId',
  'GET /channels/:channelId/messages/:messageId/reactions/:emoji',
  'PUT /channels/:channelId/messages/:messageId/reactions/:emoji/@me',
  'DELETE /channels/:channelId/messages/:messageId/reactions/:emoji/@me',
  'DELETE /channels/:channelId/messages/:messageId/reactions/:emoji/:userId',
  'GET /guilds/:guildId',
  'GET /guilds/:guildId/channels',
  'GET /guilds/:guildId/members/:userId',
] as const;

export type DiscordRoute = (typeof DISCORD_ROUTES)[number];

/** What route handlers get to work with. */
export interface RestDeps {
  state: DiscordState;
  options: ResolvedDiscordOptions;
  gateway: GatewayServer;
  interactions: Map<string, InteractionHandle>;
}

export interface RequestContext {
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body, or the `payload_json` part of a multipart upload. */
  body: unknown;
  /** File parts of a multipart upload. */
  files: UploadedPart[];
}

export interface RouteResponse {
  status: number;
  body?: unknown;
}

export interface RouteDefinition {
  key: DiscordRoute;
  handle(ctx: RequestContext): RouteResponse | Promise<RouteResponse>;
  /** Needs `Authorization: Bot <token>`. Interaction callbacks and webhook-token routes do not. @default true */
  auth?: boolean;
  /** Counted in a rate-limit bucket. Interaction callbacks are exempt, as on Discord. @default true */
  rateLimited?: boolean;
}

export const ok = (body?: unknown): RouteResponse => ({ status: 200, body });
export const noContent = (): RouteResponse => ({ status: 204 });
