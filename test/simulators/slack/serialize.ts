import type { SlackState } from './state.js';
import type { SlackChannel, SlackFile, SlackMessage, SlackUser } from './types.js';

export function messageJson(state: SlackState, message: SlackMessage): Record<string, unknown> {
  return {
    type: 'message',
    ...(message.files.length > 0
      ? { files: message.files.map((f) => fileJson(state, f)), upload: true }
      : {}),
    text: message.text,
    user: message.user,
    ...(message.botId ? { bot_id: message.botId, app_id: state.appId } : {}),
    blocks: message.blocks,
    ts: message.ts,
    team: state.teamId,
    ...(message.threadTs ? { thread_ts: message.threadTs } : {}),
    ...(message.editedAt ? { edited: { user: message.user, ts: message.history.at(-1)!.at / 1000 } } : {}),
    ...(message.reactions.length > 0
      ? { reactions: message.reactions.map((r) => ({ name: r.name, users: r.users, count: r.users.length })) }
      : {}),
  };
}

export function fileJson(state: SlackState, file: SlackFile, baseUrl = ''): Record<string, unknown> {
  const extension = /\.([a-z0-9]+)$/i.exec(file.filename)?.[1]?.toLowerCase() ?? 'binary';
  const mimetype =
    extension === 'png'
      ? 'image/png'
      : extension === 'jpg' || extension === 'jpeg'
        ? 'image/jpeg'
        : 'application/octet-stream';
  return {
    id: file.id,
    created: Math.floor(Date.now() / 1000),
    name: file.filename,
    title: file.title,
    mimetype,
    filetype: extension,
    user: state.bot.id,
    size: file.data?.length ?? file.declaredLength,
    url_private: `${baseUrl}/files/${file.id}/${encodeURIComponent(file.filename)}`,
    permalink: `https://simulated.slack.com/files/${state.bot.id}/${file.id}/${encodeURIComponent(file.filename)}`,
    ...(file.altText ? { alt_txt: file.altText } : {}),
    shares: {},
  };
}

export function channelJson(channel: SlackChannel): Record<string, unknown> {
  return {
    id: channel.id,
    ...(channel.name ? { name: channel.name, name_normalized: channel.name } : {}),
    is_channel: !channel.isIm && !channel.isPrivate,
    is_group: false,
    is_im: channel.isIm,
    is_mpim: false,
    is_private: channel.isPrivate,
    is_archived: false,
    is_general: channel.name === 'general',
    is_member: true,
    created: 1_700_000_000,
    ...(channel.isIm
      ? { user: channel.members.find((m) => !m.startsWith('B')) }
      : { num_members: channel.members.length }),
  };
}

export function userJson(state: SlackState, user: SlackUser): Record<string, unknown> {
  return {
    id: user.id,
    team_id: state.teamId,
    name: user.name,
    deleted: false,
    real_name: user.realName,
    tz: 'Europe/Berlin',
    tz_offset: 3600,
    is_admin: user.isAdmin,
    is_owner: user.isOwner,
    is_primary_owner: user.isPrimaryOwner,
    is_restricted: false,
    is_ultra_restricted: false,
    is_bot: user.isBot,
    is_app_user: false,
    profile: {
      real_name: user.realName,
      display_name: user.name,
      real_name_normalized: user.realName,
      display_name_normalized: user.name,
      image_72: `https://simulated.slack.com/avatars/${user.id}_72.png`,
      team: state.teamId,
      ...(user.isBot ? { bot_id: state.botId } : {}),
    },
  };
}
