/**
 * Which front ends start, from the `enabled: auto | true | false` switches and the secrets set.
 * `auto` means: Discord when DISCORD_TOKEN is set, Slack when SLACK_BOT_TOKEN is set, the
 * playground when neither chat platform is on (a fresh install shows something at once).
 */
import type { AtelierConfig } from './load.js';

export interface EnabledPlatforms {
  discord: boolean;
  slack: boolean;
  /** Slack transport: Socket Mode needs SLACK_APP_TOKEN; HTTP needs SLACK_SIGNING_SECRET and a port. */
  slackMode: 'http' | 'socket';
  playground: boolean;
}

export function enabledPlatforms(
  config: Pick<AtelierConfig, 'discord' | 'slack' | 'playground' | 'secrets'>,
): EnabledPlatforms {
  const { secrets } = config;
  const discord =
    config.discord.enabled === 'auto' ? secrets.discordToken !== undefined : config.discord.enabled;
  const slack = config.slack.enabled === 'auto' ? secrets.slackBotToken !== undefined : config.slack.enabled;
  const slackMode =
    config.slack.mode === 'auto'
      ? secrets.slackAppToken !== undefined
        ? 'socket'
        : 'http'
      : config.slack.mode;
  const playground = config.playground.enabled === 'auto' ? !discord && !slack : config.playground.enabled;
  return { discord, slack, slackMode, playground };
}
