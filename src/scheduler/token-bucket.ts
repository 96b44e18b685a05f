/**
 * Token bucket arithmetic, pure: a bucket holds at most `burst` tokens and refills continuously
 * at `images / perMs`. A new bucket starts full. One image costs one token.
 */
import type { BucketRule, BucketState } from '../store/types.js';

/** The bucket's state at `now`, refilled for the time since it was last written. */
export function refill(rule: BucketRule, state: BucketState | undefined, now: number): BucketState {
  if (!state) return { tokens: rule.burst, updatedAt: now };
  const elapsed = Math.max(0, now - state.updatedAt);
  const tokens = Math.min(rule.burst, state.tokens + (elapsed * rule.images) / rule.perMs);
  return { tokens, updatedAt: Math.max(now, state.updatedAt) };
}

/** Milliseconds until the bucket holds `cost` tokens (0 if it already does). */
export function msUntil(rule: BucketRule, state: BucketState, cost: number): number {
  const missing = Math.min(cost, rule.burst) - state.tokens;
  // A hair of tolerance so 3.9999999 tokens (floating point refill) counts as 4.
  if (missing <= 1e-9) return 0;
  return Math.ceil((missing * rule.perMs) / rule.images);
}

export function take(state: BucketState, cost: number): BucketState {
  return { tokens: Math.max(0, state.tokens - cost), updatedAt: state.updatedAt };
}

export function give(rule: BucketRule, state: BucketState, tokens: number): BucketState {
  return { tokens: Math.min(rule.burst, state.tokens + tokens), updatedAt: state.updatedAt };
}
