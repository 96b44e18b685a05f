/**
 * Slack's rate limits for the methods a chat bot leans on, as documented
 * (https://docs.slack.dev/apis/web-api/rate-limits), enforced strictly so a test proves a bot
 * stays within them:
 *
 * - `chat.update` is Tier 3, "50+ per minute" per method, app and workspace: here at most
 *   `chatUpdatePerMinute` calls in any 60 s window.
 * - Posting messages is "1 per second per channel, short bursts >1 allowed": a token bucket per
 *   channel that holds `channelMessageBurst` and refills at `channelMessagesPerSecond`. It counts
 *   `chat.postMessage` and the message `files.completeUploadExternal` posts when it shares files
 *   into a channel or thread.
 *
 * Over a limit the call is answered HTTP 429 with `Retry-After` (whole seconds: when the call
 * would be allowed) and `{ ok: false, error: 'ratelimited' }`. Only calls Slack accepted count.
 */

export interface SlackRateLimitOptions {
  /** chat.update calls allowed in any 60 s window of the workspace (Tier 3). 0: no limit. @default 50 */
  chatUpdatePerMinute?: number;
  /** Messages posted into one channel per second, on average. 0: no limit. @default 1 */
  channelMessagesPerSecond?: number;
  /** Messages a channel takes in one burst. @default 5 */
  channelMessageBurst?: number;
}

export type ResolvedSlackRateLimits = Required<SlackRateLimitOptions>;

export const DEFAULT_SLACK_RATE_LIMITS: ResolvedSlackRateLimits = {
  chatUpdatePerMinute: 50,
  channelMessagesPerSecond: 1,
  channelMessageBurst: 5,
};

const WINDOW_MS = 60_000;

interface Bucket {
  tokens: number;
  at: number;
}

export class SlackRateLimiter {
  /** Times of the accepted chat.update calls in the last minute, oldest first. */
  readonly #updates: number[] = [];
  readonly #channels = new Map<string, Bucket>();

  constructor(private readonly limits: ResolvedSlackRateLimits) {}

  /** Seconds to wait (for `Retry-After`) when `method` with `args` is over a limit now; else undefined. */
  check(method: string, args: Record<string, unknown>, now = Date.now()): number | undefined {
    if (method === 'chat.update' && this.limits.chatUpdatePerMinute > 0) {
      this.#prune(now);
      if (this.#updates.length >= this.limits.chatUpdatePerMinute) {
        const freeAt = this.#updates[this.#updates.length - this.limits.chatUpdatePerMinute]! + WINDOW_MS;
        return Math.max(1, Math.ceil((freeAt - now) / 1000));
      }
    }
    const channel = postedChannel(method, args);
    if (channel && this.limits.channelMessagesPerSecond > 0) {
      const bucket = this.#refill(channel, now);
      if (bucket.tokens < 1) {
        return Math.max(1, Math.ceil((1 - bucket.tokens) / this.limits.channelMessagesPerSecond));
      }
    }
    return undefined;
  }

  /** Counts a call Slack accepted. */
  count(method: string, args: Record<string, unknown>, now = Date.now()): void {
    if (method === 'chat.update') this.#updates.push(now);
    const channel = postedChannel(method, args);
    if (channel && this.limits.channelMessagesPerSecond > 0) this.#refill(channel, now).tokens -= 1;
  }

  #prune(now: number): void {
    while (this.#updates.length > 0 && this.#updates[0]! <= now - WINDOW_MS) this.#updates.shift();
  }

  #refill(channel: string, now: number): Bucket {
    const { channelMessageBurst: burst, channelMessagesPerSecond: rate } = this.limits;
    let bucket = this.#channels.get(channel);
    if (!bucket) {
      bucket = { tokens: burst, at: now };
      this.#channels.set(channel, bucket);
    }
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    return bucket;
  }
}

/** The channel a call posts a message into, if it does. */
function postedChannel(method: string, args: Record<string, unknown>): string | undefined {
  const channel =
    method === 'chat.postMessage'
      ? args.channel
      : method === 'files.completeUploadExternal'
        ? args.channel_id
        : undefined;
  return typeof channel === 'string' && channel ? channel : undefined;
}
