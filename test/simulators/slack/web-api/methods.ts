import type { SlackDeliveries } from '../delivery.js';
import type { ResolvedSlackOptions } from '../options.js';
import type { SlackState } from '../state.js';
import type { SlackRateLimiter } from './rate-limits.js';

/** Slack's error answer: HTTP 200 with `{ ok: false, error }` (plus `needed`/`provided` or response_metadata at times). */
export class SlackApiError extends Error {
  constructor(
    readonly error: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(error);
  }
}

export interface MethodCall {
  args: Record<string, unknown>;
  token: 'bot' | 'app';
}

export interface MethodDefinition {
  /** Which token the method takes. Bot methods refuse the app token with `not_allowed_token_type`. @default 'bot' */
  token?: 'bot' | 'app';
  handle(call: MethodCall): Record<string, unknown> | Promise<Record<string, unknown>>;
}

export interface MethodDeps {
  state: SlackState;
  options: ResolvedSlackOptions;
  deliveries: SlackDeliveries;
  /** Slack's rate limits (chat.update per workspace, messages per channel). */
  rateLimits: SlackRateLimiter;
  /** The simulator's base URL (upload URLs, Socket Mode URLs). */
  baseUrl(): string;
  /** Issues a one-time Socket Mode ticket for apps.connections.open. */
  socketUrl(): string;
}

/** Reads a required string argument, answering Slack's errors for missing ones. */
export function requireString(
  args: Record<string, unknown>,
  name: string,
  error = 'invalid_arguments',
): string {
  const value = args[name];
  if (typeof value !== 'string' || value.length === 0) throw new SlackApiError(error, { arg: name });
  return value;
}

/** Block Kit and attachment arguments arrive JSON-encoded in form bodies; objects in JSON bodies. */
export function jsonArg<T>(args: Record<string, unknown>, name: string): T | undefined {
  const value = args[name];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') return value as T;
  try {
    return JSON.parse(value) as T;
  } catch {
    throw new SlackApiError(name === 'blocks' ? 'invalid_blocks_format' : 'invalid_arguments');
  }
}
