import { createHash } from 'node:crypto';

/**
 * Per-bucket rate limits with Discord's headers. A bucket is a route plus its major parameter
 * (channel, guild or webhook id+token), the same key @discordjs/rest queues by, so what the
 * headers say is what the client plans around.
 */
export class RateLimitBuckets {
  readonly #buckets = new Map<string, { count: number; resetAt: number }>();

  constructor(private readonly config: { limit: number; windowMs: number }) {}

  /** Counts one request; returns the headers to send and whether it is over the limit. */
  take(
    route: string,
    major: string,
    now = Date.now(),
  ): { headers: Record<string, string>; limited: boolean; retryAfter: number } {
    const key = `${route}|${major}`;
    let bucket = this.#buckets.get(key);
    if (!bucket || bucket.resetAt <= now) {
      bucket = { count: 0, resetAt: now + this.config.windowMs };
      this.#buckets.set(key, bucket);
    }
    bucket.count += 1;
    const limited = bucket.count > this.config.limit;
    const resetAfter = (bucket.resetAt - now) / 1000;
    return {
      limited,
      retryAfter: resetAfter,
      headers: rateLimitHeaders(route, {
        limit: this.config.limit,
        remaining: Math.max(0, this.config.limit - bucket.count),
        resetAt: bucket.resetAt,
        resetAfter,
      }),
    };
  }
}

export function rateLimitHeaders(
  route: string,
  state: { limit: number; remaining: number; resetAt: number; resetAfter: number },
): Record<string, string> {
  return {
    'x-ratelimit-limit': String(state.limit),
    'x-ratelimit-remaining': String(state.remaining),
    'x-ratelimit-reset': (state.resetAt / 1000).toFixed(3),
    'x-ratelimit-reset-after': state.resetAfter.toFixed(3),
    'x-ratelimit-bucket': bucketHash(route),
  };
}

/** Headers and body of a 429, as Discord sends them (`retry_after` in seconds, fractional). */
export function tooManyRequests(
  route: string,
  retryAfter: number,
  options: { global: boolean; limit: number },
) {
  const now = Date.now();
  const headers: Record<string, string> = {
    ...rateLimitHeaders(route, {
      limit: options.limit,
      remaining: 0,
      resetAt: now + retryAfter * 1000,
      resetAfter: retryAfter,
    }),
    'retry-after': String(Number(retryAfter.toFixed(3))),
    'x-ratelimit-scope': options.global ? 'global' : 'user',
  };
  if (options.global) headers['x-ratelimit-global'] = 'true';
  return {
    headers,
    body: {
      message: 'You are being rate limited.',
      retry_after: Number(retryAfter.toFixed(3)),
      global: options.global,
    },
  };
}

function bucketHash(route: string): string {
  return createHash('sha1').update(route).digest('hex').slice(0, 32);
}
