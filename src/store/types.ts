/**
 * Shapes the store keeps besides jobs and results: rate-limit buckets and per-user / per-team
 * settings. Settings are stored as JSON, so new optional fields need no migration.
 */
import type { JobParams } from '../jobs/types.js';

/** A token bucket rule: `images` per `perMs`, at most `burst` at once. */
export interface BucketRule {
  images: number;
  perMs: number;
  burst: number;
}

/** Tokens left in one bucket at `updatedAt` (ms since the epoch). */
export interface BucketState {
  tokens: number;
  updatedAt: number;
}

/** A user's defaults for new jobs; anything absent falls back to the bot's defaults. */
export type UserSettings = Partial<
  Pick<JobParams, 'aspect' | 'steps' | 'count' | 'negativePrompt' | 'guidance' | 'sampler'>
> & {
  /** Whether the user wants results sent privately where the platform allows it. */
  privateResults?: boolean;
  /** The name of the style new images get (config `styles`) unless /imagine names one. */
  style?: string;
  /** Remix: Reroll and the variation buttons open a form with the prompt first. */
  remix?: boolean;
  /** The name of the model new images use (config `models.list`) unless /imagine names one. */
  model?: string;
};

/** Limit overrides for one team; `false` turns that limit off for the team. */
export interface LimitOverrides {
  user?: BucketRule | false;
  team?: BucketRule | false;
  maxQueuedPerUser?: number;
}

/** Settings of one Discord guild or Slack workspace, set by its admins. */
export interface TeamSettings {
  /** Channel where admins' picks are reposted. */
  showcaseChannelId?: string;
  /** New jobs from this team are refused while true. */
  paused?: boolean;
  limits?: LimitOverrides;
  /** Extra blocked terms on top of the bot-wide list. */
  blockedTerms?: string[];
  /** The model its members' new images use unless they pick one (`/atelier model`). */
  model?: string;
}

/** A chat message that shows a job (its queue notice, progress or result). */
export interface MessageRef {
  platform: string;
  channelId: string;
  messageId: string;
}
