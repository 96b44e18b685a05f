/**
 * The Slack app manifest for the bot's commands: paste it at https://api.slack.com/apps → "Create
 * New App" → "From a manifest" and the app has every slash command, the scopes, interactivity and
 * the reaction event it needs. `manifest.yaml` beside this file is its output for the standard
 * commands (a test keeps the two equal).
 * @see https://docs.slack.dev/reference/app-manifest
 */
import { stringify } from 'yaml';
import type { CommandDef, OptionDef } from '../../commands/types.js';
import { SLACK_EVENTS_PATH } from './options.js';

export interface SlackManifestOptions {
  /** Public base URL of the HTTP receiver, e.g. `https://atelier.example.com` (HTTP mode). */
  publicUrl?: string;
  /** Socket Mode: no Request URLs; Slack delivers over the app's WebSocket. @default false */
  socketMode?: boolean;
  /** @default 'Atelier' */
  appName?: string;
  /** @default 'atelier' */
  botName?: string;
}

/**
 * commands: slash commands · chat:write: job messages, progress edits, ephemeral answers ·
 * files:write: result images and progress previews (files v2) and deleting them ·
 * reactions:read: reaction_added on results · users:read: the display name of whoever reacted,
 * and whether someone administers the workspace (users.info `is_admin`/`is_owner`).
 */
export const SLACK_BOT_SCOPES = [
  'commands',
  'chat:write',
  'files:write',
  'reactions:read',
  'users:read',
] as const;
export const SLACK_BOT_EVENTS = ['reaction_added'] as const;

/** Placeholder in the committed manifest; the operator puts their public URL there. */
export const EXAMPLE_PUBLIC_URL = 'https://atelier.example.com';

/** Slack's limits on a manifest's slash command fields. */
const LIMITS = { description: 2000, usageHint: 1000 } as const;

export function slackManifest(
  commands: readonly CommandDef[],
  options: SlackManifestOptions = {},
): Record<string, unknown> {
  const socketMode = options.socketMode ?? false;
  const requestUrl = socketMode
    ? undefined
    : `${(options.publicUrl ?? EXAMPLE_PUBLIC_URL).replace(/\/+$/, '')}${SLACK_EVENTS_PATH}`;
  const withUrl = requestUrl ? { url: requestUrl } : {};
  return {
    _metadata: { major_version: 1, minor_version: 1 },
    display_information: {
      name: options.appName ?? 'Atelier',
      description: 'Stable Diffusion 3.5 images from a prompt, made on your own machine.',
      background_color: '#2c2d30',
    },
    features: {
      bot_user: { display_name: options.botName ?? 'atelier', always_online: true },
      slash_commands: commands.map((command) => ({
        command: `/${command.name}`,
        ...withUrl,
        description: command.description.slice(0, LIMITS.description),
        ...(usageHint(command) ? { usage_hint: usageHint(command).slice(0, LIMITS.usageHint) } : {}),
        // Channels and people arrive as ids (<#C123|name>, <@U123>), as the bot expects.
        should_escape: true,
      })),
    },
    oauth_config: { scopes: { bot: [...SLACK_BOT_SCOPES] } },
    settings: {
      event_subscriptions: {
        ...(requestUrl ? { request_url: requestUrl } : {}),
        bot_events: [...SLACK_BOT_EVENTS],
      },
      interactivity: { is_enabled: true, ...(requestUrl ? { request_url: requestUrl } : {}) },
      org_deploy_enabled: false,
      socket_mode_enabled: socketMode,
      token_rotation_enabled: false,
    },
  };
}

/** The manifest as YAML, with a header saying what to change. */
export function slackManifestYaml(
  commands: readonly CommandDef[],
  options: SlackManifestOptions = {},
): string {
  const header = [
    '# Slack app manifest for Atelier. Create the app at https://api.slack.com/apps → "From a manifest".',
    options.socketMode
      ? '# Socket Mode: create an app-level token (connections:write) and set SLACK_APP_TOKEN.'
      : `# HTTP mode: replace ${EXAMPLE_PUBLIC_URL} with your public URL (it serves ${SLACK_EVENTS_PATH}).`,
    '# Then install it to the workspace, set SLACK_BOT_TOKEN (and SLACK_SIGNING_SECRET for HTTP mode),',
    '# and invite the bot to the channels where people use it: /invite @atelier',
  ];
  return `${header.join('\n')}\n${stringify(slackManifest(commands, options), { lineWidth: 0 })}`;
}

/** `a fox in the snow [--negative text] [--aspect 1:1]…`, from the command's options. */
export function usageHint(command: CommandDef): string {
  if (command.subcommands) {
    return command.subcommands
      .map((sub) => [sub.name, ...optionHints(sub.options ?? [])].join(' '))
      .join(' | ');
  }
  return optionHints(command.options ?? []).join(' ');
}

function optionHints(options: readonly OptionDef[]): string[] {
  return options.map((option) => {
    const value = valueHint(option);
    if (option.required) return option.type === 'channel' ? value : `<${option.name}>`;
    return value ? `[--${option.name} ${value}]` : `[--${option.name}]`;
  });
}

function valueHint(option: OptionDef): string {
  if (option.type === 'boolean') return '';
  if (option.type === 'channel') return '#channel';
  if (option.choices?.length) return String(option.choices[0]!.value);
  return option.type === 'string' ? 'text' : 'n';
}
