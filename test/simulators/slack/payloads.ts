/**
 * What Slack sends the bot, field for field as documented for slash commands, block_actions
 * interactivity and Events API callbacks (HTTP bodies; Socket Mode wraps the same objects).
 */
import { randomBytes } from 'node:crypto';
import { slackId } from './ids.js';
import { messageJson } from './serialize.js';
import type { SlackState } from './state.js';
import type { SlackButton, SlackChannel, SlackEphemeral, SlackMessage, SlackUser } from './types.js';

/** The deprecated verification token Slack still sends in payloads. */
export const VERIFICATION_TOKEN = 'simulated-verification-token';

export function slashCommandFields(
  state: SlackState,
  teamDomain: string,
  fields: {
    command: string;
    text: string;
    user: SlackUser;
    channel: SlackChannel;
    responseUrl: string;
    triggerId: string;
  },
): Record<string, string> {
  return {
    token: VERIFICATION_TOKEN,
    team_id: state.teamId,
    team_domain: teamDomain,
    channel_id: fields.channel.id,
    channel_name: fields.channel.isIm ? 'directmessage' : (fields.channel.name ?? ''),
    user_id: fields.user.id,
    user_name: fields.user.name,
    command: fields.command,
    text: fields.text,
    api_app_id: state.appId,
    is_enterprise_install: 'false',
    response_url: fields.responseUrl,
    trigger_id: fields.triggerId,
  };
}

export function blockActionsPayload(
  state: SlackState,
  teamDomain: string,
  fields: {
    user: SlackUser;
    channel: SlackChannel;
    container: { message: SlackMessage } | { ephemeral: SlackEphemeral };
    button: SlackButton;
    responseUrl: string;
    triggerId: string;
  },
): Record<string, unknown> {
  const isEphemeral = 'ephemeral' in fields.container;
  const ts = 'message' in fields.container ? fields.container.message.ts : fields.container.ephemeral.ts;
  return {
    type: 'block_actions',
    user: { id: fields.user.id, username: fields.user.name, name: fields.user.name, team_id: state.teamId },
    api_app_id: state.appId,
    token: VERIFICATION_TOKEN,
    container: { type: 'message', message_ts: ts, channel_id: fields.channel.id, is_ephemeral: isEphemeral },
    trigger_id: fields.triggerId,
    team: { id: state.teamId, domain: teamDomain },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: fields.channel.id, name: fields.channel.name ?? 'directmessage' },
    // Slack includes the message only when it is not ephemeral.
    ...('message' in fields.container ? { message: messageJson(state, fields.container.message) } : {}),
    state: { values: {} },
    response_url: fields.responseUrl,
    actions: [
      {
        action_id: fields.button.actionId,
        block_id: fields.button.blockId ?? randomBytes(3).toString('hex'),
        text: { type: 'plain_text', text: fields.button.text ?? '', emoji: true },
        ...(fields.button.value !== undefined ? { value: fields.button.value } : {}),
        ...(fields.button.style ? { style: fields.button.style } : {}),
        type: 'button',
        action_ts: (Date.now() / 1000).toFixed(6),
      },
    ],
  };
}

/** An Events API `event_callback` envelope around `event`. */
export function eventCallback(state: SlackState, event: Record<string, unknown>): Record<string, unknown> {
  const now = Date.now();
  return {
    token: VERIFICATION_TOKEN,
    team_id: state.teamId,
    context_team_id: state.teamId,
    context_enterprise_id: null,
    api_app_id: state.appId,
    event: { ...event, event_ts: (now / 1000).toFixed(6) },
    type: 'event_callback',
    event_id: `Ev${slackId('E').slice(1)}`,
    event_time: Math.floor(now / 1000),
    authorizations: [
      {
        enterprise_id: null,
        team_id: state.teamId,
        user_id: state.bot.id,
        is_bot: true,
        is_enterprise_install: false,
      },
    ],
    is_ext_shared_channel: false,
    event_context: `4-${randomBytes(24).toString('base64url')}`,
  };
}

export function reactionAddedEvent(message: SlackMessage, name: string, user: SlackUser, removed = false) {
  return {
    type: removed ? 'reaction_removed' : 'reaction_added',
    user: user.id,
    reaction: name,
    item_user: message.user,
    item: { type: 'message', channel: message.channel, ts: message.ts },
  };
}

export function urlVerification(challenge: string): Record<string, unknown> {
  return { token: VERIFICATION_TOKEN, challenge, type: 'url_verification' };
}
