/**
 * Who may enqueue how much: admin exemption, per-user and per-team token buckets (persisted in
 * SQLite, so a restart keeps them), team overrides from team settings, and the refusal messages
 * that say which limit was hit and when trying again can work.
 */
import { RateLimitedError } from '../errors.js';
import type { Requester } from '../jobs/types.js';
import type { Store } from '../store/index.js';
import type { BucketRule } from '../store/types.js';
import { WAITING_FOR_WORKER } from '../vocabulary.js';
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

/** "one every 1 min": how fast a bucket gives images back. */
function refillRate(rule: BucketRule): string {
  return `one every ${formatDuration(rule.perMs / rule.images)}`;
}

/**
 * A refusal that says which rule bit: the burst (the most at once, refilled steadily) when it is
 * smaller than the window's allowance, else the allowance per window. It never suggests typing
 * options (a button cannot); typed commands add that themselves (see ImageLimitError).
 */
function bucketMessage(
  whose: string,
  rule: BucketRule,
  cost: number,
  tokens: number,
  waitMs: number,
): string {
  const you = whose === 'You';
  const burst = Math.floor(rule.burst);
  const allowance = `${plural(rule.images, 'image')} per ${formatWindow(rule.perMs)}`;
  if (cost > rule.burst) {
    return `${whose} can make at most ${plural(burst, 'image')} at a time (${allowance}). Ask for fewer images.`;
  }
  const nowAvailable = Math.floor(tokens + 1e-9);
  const burstBit = rule.burst < rule.images;
  let state: string;
  if (burstBit) {
    const atOnce = you ? 'you can make at once' : 'its members can make at once';
    const back = `they come back ${refillRate(rule)} (${allowance})`;
    state =
      nowAvailable >= 1
        ? `${you ? 'You have' : `${whose} has`} ${nowAvailable} of the ${plural(burst, 'image')} ${atOnce} left; ${back}.`
        : `${you ? "You've" : `${whose} has`} used the ${plural(burst, 'image')} ${atOnce}; ${back}.`;
  } else {
    state =
      nowAvailable >= 1
        ? `${you ? 'You have' : `${whose} has`} ${plural(nowAvailable, 'image')} left of ${you ? 'your' : 'its'} limit of ${allowance}.`
        : `${you ? "You've" : `${whose} has`} reached ${you ? 'your' : 'its'} limit of ${allowance}.`;
  }
  const subject = you ? 'You' : 'It';
  const next =
    cost === 1
      ? `${subject} can make the next image in ${formatDuration(waitMs)}.`
      : `${subject} can make ${plural(cost, 'image')} in ${formatDuration(waitMs)}.`;
  return `${state} ${next}`;
}

/** An image-bucket refusal, with what could be made right now (typed commands can suggest it). */
export class ImageLimitError extends RateLimitedError {
  constructor(
    limit: 'user' | 'team',
    retryAfterMs: number,
    userMessage: string,
    /** Images the bucket would allow right now (0: none). */
    readonly availableNow: number,
    /** Images that were asked for. */
    readonly cost: number,
  ) {
    super(limit, retryAfterMs, userMessage);
  }
}

/** What a user can still make: `unlimited` for admins and when no bucket applies. */
export type Allowance =
  | { unlimited: true }
  | {
      unlimited: false;
      /** Images that could be asked for right now. */
      availableNow: number;
      /** The most at once. */
      burst: number;
      /** Until one more image is available (0 when the bucket is full). */
      nextInMs: number;
      /** Until the bucket is full again. */
      fullInMs: number;
    };

const positive = (value: unknown) => typeof value === 'number' && Number.isFinite(value) && value > 0;

/** A stored override if it is `false` or a whole rule; anything else (a damaged row) is ignored. */
function ruleOr(override: unknown, fallback: BucketRule | false): BucketRule | false {
  if (override === false) return false;
  if (typeof override !== 'object' || override === null) return fallback;
  const { images, perMs, burst } = override as Record<string, unknown>;
  return positive(images) && positive(perMs) && positive(burst) ? (override as BucketRule) : fallback;
}

/** The parts of the scheduler's options that limits read. */
export type LimitOptions = Pick<
  ResolvedSchedulerOptions,
  'userBucket' | 'teamBucket' | 'maxQueuedPerUser' | 'admins'
>;

export class Limits {
  readonly #store: Store;
  readonly #options: LimitOptions;
  readonly #adminUsers: Set<string>;
  readonly #adminRoles: Set<string>;

  constructor(store: Store, options: LimitOptions) {
    this.#store = store;
    this.#options = options;
    this.#adminUsers = new Set(options.admins.userIds);
    this.#adminRoles = new Set(options.admins.roleIds);
  }

  /**
   * Listed by id (`platform:id` or a bare id), or everyone on a platform listed as `platform:*`
   * (the playground's default: it is one local operator's own tool).
   */
  isAdmin(requester: Requester): boolean {
    if (this.#adminUsers.has(`${requester.platform}:*`)) return true;
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
    // What every bucket would allow now: the most a smaller request could ask for.
    const availableNow = Math.min(
      ...buckets.map(({ rule }, index) => Math.min(Math.floor(states[index]!.tokens + 1e-9), rule.burst)),
    );
    let refusal: RateLimitedError | undefined;
    buckets.forEach(({ limit, rule }, index) => {
      const state = states[index]!;
      const waitMs = cost > rule.burst ? msUntil(rule, state, rule.burst) : msUntil(rule, state, cost);
      if (waitMs === 0 && cost <= rule.burst) return;
      if (refusal && refusal.retryAfterMs >= waitMs) return;
      const whose = limit === 'user' ? 'You' : teamNoun(requester.platform);
      const message = bucketMessage(whose, rule, cost, state.tokens, waitMs);
      refusal = new ImageLimitError(limit, waitMs, message, availableNow, cost);
    });
    if (refusal) throw refusal;
    buckets.forEach(({ key }, index) => {
      this.#store.buckets.put(key, take(states[index]!, cost));
    });
  }

  /** How many images `requester` can make now, and when the next one comes (no tokens taken). */
  allowance(requester: Requester, now: number): Allowance {
    if (this.isAdmin(requester)) return { unlimited: true };
    const buckets = this.#buckets(requester, this.effective(requester));
    if (buckets.length === 0) return { unlimited: true };
    let availableNow = Number.POSITIVE_INFINITY;
    let burst = Number.POSITIVE_INFINITY;
    let nextInMs = 0;
    let fullInMs = 0;
    for (const { key, rule } of buckets) {
      const state = refill(rule, this.#store.buckets.get(key), now);
      const have = Math.floor(state.tokens + 1e-9);
      availableNow = Math.min(availableNow, have);
      burst = Math.min(burst, Math.floor(rule.burst));
      nextInMs = Math.max(nextInMs, have >= rule.burst ? 0 : msUntil(rule, state, have + 1));
      fullInMs = Math.max(fullInMs, msUntil(rule, state, rule.burst));
    }
    return { unlimited: false, availableNow, burst, nextInMs, fullInMs };
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

/**
 * The per-user cap's refusal. With `waitingForWorker` (no GPU worker is online and none of the
 * user's jobs is running) no time can be promised: it says what they wait for instead.
 */
export function userQueueFullError(
  max: number,
  retryAfterMs: number,
  options: { waitingForWorker?: boolean } = {},
): RateLimitedError {
  const when = options.waitingForWorker
    ? `They are ${WAITING_FOR_WORKER}; try again when one has finished, or cancel one.`
    : `Try again when one has finished (in about ${formatDuration(retryAfterMs)}), or cancel one.`;
  return new RateLimitedError(
    'user-queue',
    retryAfterMs,
    `You already have ${plural(max, 'job')} waiting or running, the most allowed. ${when}`,
  );
}

/**
 * The global cap's refusal. With `waitingForWorker` (no GPU worker is online, so no place frees
 * up until one is) it says so instead of a time.
 */
export function queueFullError(
  max: number,
  retryAfterMs: number,
  options: { waitingForWorker?: boolean } = {},
): RateLimitedError {
  const when = options.waitingForWorker
    ? `They are ${WAITING_FOR_WORKER}; please try again once one comes online.`
    : `Please try again in about ${formatDuration(retryAfterMs)}.`;
  return new RateLimitedError(
    'queue',
    retryAfterMs,
    `The queue is full (${plural(max, 'job')} waiting). ${when}`,
  );
}
