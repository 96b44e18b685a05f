/**
 * How large an upload may be where a message goes. Discord tells each interaction the exact
 * cap of its server or DM (`attachment_size_limit`); before one arrives from a server, its
 * boost tier decides (10 MiB without boosts or at level 1, 50 MiB at level 2, 100 MiB at
 * level 3). The operator's cap (config `images.maxUploadBytes.discord`) always applies too.
 * @see https://support.discord.com/hc/en-us/articles/360028038352-Server-Boosting-FAQ
 */
import { GuildPremiumTier } from 'discord.js';

const MiB = 1024 * 1024;

/** Discord's per-message upload cap for bots without boosts (10 MiB since 2024). */
export const DEFAULT_UPLOAD_LIMIT_BYTES = 10 * MiB;

const BY_PREMIUM_TIER: Record<GuildPremiumTier, number> = {
  [GuildPremiumTier.None]: DEFAULT_UPLOAD_LIMIT_BYTES,
  [GuildPremiumTier.Tier1]: DEFAULT_UPLOAD_LIMIT_BYTES,
  [GuildPremiumTier.Tier2]: 50 * MiB,
  [GuildPremiumTier.Tier3]: 100 * MiB,
};

/** The key DMs (no server) are remembered under. */
const DM_KEY = '@dm';

export class UploadLimits {
  readonly #observed = new Map<string, number>();

  constructor(
    /** The operator's cap. */
    private readonly cap: number,
    /** A server's boost tier, when the client knows the server. */
    private readonly premiumTier: (guildId: string) => GuildPremiumTier | undefined,
  ) {}

  /** Remembers what an interaction said about its server (or DMs). */
  observe(guildId: string | null, attachmentSizeLimit: number | undefined): void {
    if (typeof attachmentSizeLimit === 'number' && attachmentSizeLimit > 0) {
      this.#observed.set(guildId ?? DM_KEY, attachmentSizeLimit);
    }
  }

  /** Largest upload in bytes for a message in `guildId` (undefined: a DM). */
  limitFor(guildId: string | undefined): number {
    const observed = this.#observed.get(guildId ?? DM_KEY);
    const tier = guildId ? this.premiumTier(guildId) : undefined;
    const platform = observed ?? (tier !== undefined ? BY_PREMIUM_TIER[tier] : DEFAULT_UPLOAD_LIMIT_BYTES);
    return Math.min(platform, this.cap);
  }
}
