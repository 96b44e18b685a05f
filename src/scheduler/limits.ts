/**
 * Who may enqueue how much: admin exemption, per-user and per-team token buckets (persisted in
 * SQLite, so a restart keeps them), team overrides from team settings, and the refusal messages
 * that say which limit was hit and when trying again can work.
 */
import { RateLimitedError } from '../errors.js';
import type { Requester } from '../jobs/types.js';
import type { Store } from '../store/index.js';
import type { BucketRule } from '../store/types.js';
import { formatDuration, formatWindow, plural } from './duration.js';
import type { ResolvedSchedulerOptions } from './options.js';
import { give, msUntil, refill, take } from './token-bucket.js';

export interface EffectiveLimits {
  user: BucketRule | false;
  team: BucketRule | false;
  maxQueuedPerUser: number;
  /** An admin paused new jobs for this team. */
  teamPaused: boolean;
}

export function userKey(requester: Pick<Requester, 'platform' | 'userId'>): string {
  return `${requester.platform}:${requester.userId}`;
}

/** What a team is called where the user reads the message. */
function teamNoun(platform: string): string {
  if (platform === 'discord') return 'This server';
  if (platform === 'slack') return 'This workspace';
  return 'This team';
}

function bucketMessage(
  whose: string,
  rule: BucketRule,
  cost: number,
  tokens: number,
  waitMs: number,
): string {
  const allowance = `${plural(rule.images, 'image')} per ${formatWindow(rule.perMs)}`;
  if (cost > rule.burst) {
    return `${whose} can make at most ${plural(Math.floor(rule.burst), 'image')} at a time (${allowance}). Ask for fewer images.`;
  }
  // The bucket refills steadily, so "used all 10" would be wrong after a burst of 4: say the rule.
  const limit = `${allowance}, at most ${plural(Math.floor(rule.burst), 'image')} at once`;
  const used =
    whose === 'You'
      ? `You've reached your limit of ${limit}.`
      : `${whose} has reached its limit of ${limit}.`;
  const nowAvailable = Math.floor(tokens + 1e-9);
  const alternative = nowAvailable >= 1 ? ` Or ask for ${plural(nowAvailable, 'image')} now.` : '';
  return `${used} You can make ${cost} more ${cost === 1 ? 'image' : 'images'} in ${formatDuration(waitMs)}.${alternative}`;
}

const positive = (value: unknown) => typeof value === 'number' && Number.isFinite(value) && value > 0;

/** A stored override if it is `false` or a whole rule; anything else (a damaged row) is ignored. */
function ruleOr(override: unknown, fallback: BucketRule | false): BucketRule | false {
  if (override === false) return false;
  if (typeof override !== 'object' || override === null) return fallback;
  const { images, perMs, burst } = override as Record<string, unknown>;
  return positive(images) && positive(perMs) && positive(burst) ? (override as BucketRule) : fallback;
}

export class Limits {
  readonly #store: Store;
  readonly #options: ResolvedSchedulerOptions;
  readonly #adminUsers: Set<string>;
  readonly #adminRoles: Set<string>;

  constructor(store: Store, options: ResolvedSchedulerOptions) {
    this.#store = store;
    this.#options = options;
    this.#adminUsers = new Set(options.admins.userIds);
    this.#adminRoles = new Set(options.admins.roleIds);
  }

  isAdmin(requester: Requester): boolean {
    if (this.#adminUsers.has(requester.userId) || this.#adminUsers.has(userKey(requester))) return true;
    return (requester.roleIds ?? []).some(
      (role) => this.#adminRoles.has(role) || this.#adminRoles.has(`${requester.platform}:${role}`),
    );
  }

  /** The bot-wide limits with this requester's team overrides applied. */
  effective(requester: Requester): EffectiveLimits {
    const base: EffectiveLimits = {
      user: this.#options.userBucket,
      team: this.#options.teamBucket,
      maxQueuedPerUser: this.#options.maxQueuedPerUser,
      teamPaused: false,
    };
    if (requester.teamId === undefined) return { ...base, team: false };
    const settings = this.#store.teamSettings.get(requester.platform, requester.teamId);
    const overrides: Record<string, unknown> =
      typeof settings.limits === 'object' && settings.limits !== null ? { ...settings.limits } : {};
    const max = overrides.maxQueuedPerUser;
    return {
      user: ruleOr(overrides.user, base.user),
      team: ruleOr(overrides.team, base.team),
      maxQueuedPerUser:
        typeof max === 'number' && Number.isFinite(max) && max >= 0 ? max : base.maxQueuedPerUser,
      teamPaused: settings.paused === true,
    };
  }

  /**
   * Takes `cost` tokens from the user's and team's buckets, or throws RateLimitedError naming
   * the limit that refuses longest. Call inside the transaction that stores the job.
   */
  take(requester: Requester, limits: EffectiveLimits, cost: number, now: number): void {
    const buckets = this.#buckets(requester, limits);
    const states = buckets.map(({ key, rule }) => refill(rule, this.#store.buckets.get(key), now));
    let refusal: RateLimitedError | undefined;
    buckets.forEach(({ limit, rule }, index) => {
      const state = states[index]!;
      const waitMs = cost > rule.burst ? msUntil(rule, state, rule.burst) : msUntil(rule, state, cost);
      if (waitMs === 0 && cost <= rule.burst) return;
      if (refusal && refusal.retryAfterMs >= waitMs) return;
      const whose = limit === 'user' ? 'You' : teamNoun(requester.platform);
      refusal = new RateLimitedError(limit, waitMs, bucketMessage(whose, rule, cost, state.tokens, waitMs));
    });
    if (refusal) throw refusal;
    buckets.forEach(({ key }, index) => {
      this.#store.buckets.put(key, take(states[index]!, cost));
    });
  }

  /** Gives back tokens for images the user never got (cancelled while waiting, or failed). */
  refund(requester: Requester, cost: number, now: number): void {
    for (const { key, rule } of this.#buckets(requester, this.effective(requester))) {
      this.#store.buckets.put(key, give(rule, refill(rule, this.#store.buckets.get(key), now), cost));
    }
  }

  #buckets(requester: Requester, limits: EffectiveLimits) {
    const out: { limit: 'user' | 'team'; key: string; rule: BucketRule }[] = [];
    if (limits.user) out.push({ limit: 'user', key: `user:${userKey(requester)}`, rule: limits.user });
    if (limits.team && requester.teamId !== undefined) {
      out.push({ limit: 'team', key: `team:${requester.platform}:${requester.teamId}`, rule: limits.team });
    }
    return out;
  }
}

export function userQueueFullError(max: number, retryAfterMs: number): RateLimitedError {
  return new RateLimitedError(
    'user-queue',
    retryAfterMs,
    `You already have ${plural(max, 'job')} waiting or running, the most allowed. ` +
      `Try again when one has finished (in about ${formatDuration(retryAfterMs)}), or cancel one.`,
  );
}

export function queueFullError(max: number, retryAfterMs: number): RateLimitedError {
  return new RateLimitedError(
    'queue',
    retryAfterMs,
    `The queue is full (${plural(max, 'job')} waiting). Please try again in about ${formatDuration(retryAfterMs)}.`,
  );
}
