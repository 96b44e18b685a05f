/**
 * ChatMessage → a Discord message body plus its files, within Discord's message limits. The
 * markdown subset of commands/types.ts (`**bold**`, `*italic*`, `` `code` ``, `<@id>`) is
 * Discord's own, so text passes through; only lengths, mentions and components need care.
 * @see https://discord.com/developers/docs/resources/message#create-message
 */
import {
  type APIActionRowComponent,
  type APIAllowedMentions,
  type APIButtonComponentWithCustomId,
  ButtonStyle,
  ComponentType,
  MessageFlags,
  type RawFile,
} from 'discord.js';
import type { ChatButton, ButtonStyle as ChatButtonStyle, ChatMessage } from '../../commands/types.js';

/** Discord's message limits (documented on Create Message and Component Reference). */
export const DISCORD_LIMITS = {
  contentLength: 2000,
  buttonsPerRow: 5,
  rows: 5,
  buttonLabelLength: 80,
  customIdLength: 100,
  mentionedUsers: 100,
} as const;

/** The JSON part of a message create/edit (or an interaction callback's `data`). */
export interface DiscordMessageBody {
  content: string;
  components: APIActionRowComponent<APIButtonComponentWithCustomId>[];
  attachments: { id: number; filename: string }[];
  allowed_mentions: APIAllowedMentions;
  flags?: number;
}

export interface RenderedMessage {
  body: DiscordMessageBody;
  files: RawFile[];
  /** What had to be left out to fit Discord's limits (for a log line). */
  dropped: string[];
}

const STYLES: Record<ChatButtonStyle, APIButtonComponentWithCustomId['style']> = {
  primary: ButtonStyle.Primary,
  secondary: ButtonStyle.Secondary,
  success: ButtonStyle.Success,
  danger: ButtonStyle.Danger,
};

/**
 * Renders `message`. On an edit the attachment list replaces the old one, so a result image
 * replaces the progress preview and an edit without an image removes it — the message then
 * shows exactly what `message` says. `ephemeral` only applies to new messages.
 */
export function renderMessage(message: ChatMessage, options: { ephemeral?: boolean } = {}): RenderedMessage {
  const dropped: string[] = [];
  const image = message.image ?? message.preview;
  const files: RawFile[] = image
    ? [{ name: image.filename, data: Buffer.from(image.data), contentType: image.mime }]
    : [];
  const body: DiscordMessageBody = {
    content: fitContent(message.text, dropped),
    components: actionRows(message.buttons ?? [], dropped),
    attachments: files.map((file, id) => ({ id, filename: file.name })),
    allowed_mentions: allowedMentions(message.text),
  };
  if (options.ephemeral) body.flags = MessageFlags.Ephemeral;
  // Discord refuses a message with nothing in it; a zero-width space keeps an empty answer valid.
  if (body.content === '' && files.length === 0 && body.components.length === 0) body.content = '\u200b';
  return { body, files, dropped };
}

/** Text cut to Discord's 2000 characters, never inside a surrogate pair, with an ellipsis. */
export function fitContent(text: string, dropped: string[] = []): string {
  const chars = Array.from(text);
  if (chars.length <= DISCORD_LIMITS.contentLength) return text;
  dropped.push(`text cut from ${chars.length} to ${DISCORD_LIMITS.contentLength} characters`);
  return `${chars.slice(0, DISCORD_LIMITS.contentLength - 1).join('')}…`;
}

/**
 * Only the people named with `<@id>` may be pinged: a prompt containing `@everyone` or a role
 * mention must never notify a whole server.
 */
export function allowedMentions(text: string): APIAllowedMentions {
  const users = [...new Set([...text.matchAll(/<@!?(\d{5,25})>/g)].map((match) => match[1]!))];
  return { parse: [], users: users.slice(0, DISCORD_LIMITS.mentionedUsers) };
}

/**
 * Rows of at most 5 buttons, at most 5 rows: a longer row wraps, rows beyond the fifth and
 * buttons whose custom id Discord would refuse are dropped (and reported).
 */
export function actionRows(
  rows: readonly (readonly ChatButton[])[],
  dropped: string[] = [],
): APIActionRowComponent<APIButtonComponentWithCustomId>[] {
  const wrapped: ChatButton[][] = [];
  for (const row of rows) {
    const valid = row.filter((button) => {
      const ok = button.id.length > 0 && button.id.length <= DISCORD_LIMITS.customIdLength;
      if (!ok) dropped.push(`button "${button.label}": custom id of ${button.id.length} characters`);
      return ok;
    });
    for (let i = 0; i < valid.length; i += DISCORD_LIMITS.buttonsPerRow) {
      wrapped.push(valid.slice(i, i + DISCORD_LIMITS.buttonsPerRow));
    }
  }
  if (wrapped.length > DISCORD_LIMITS.rows) {
    const lost = wrapped.slice(DISCORD_LIMITS.rows).flat();
    dropped.push(`${lost.length} button(s) beyond ${DISCORD_LIMITS.rows} rows`);
  }
  return wrapped.slice(0, DISCORD_LIMITS.rows).map((row) => ({
    type: ComponentType.ActionRow,
    components: row.map(renderButton),
  }));
}

function renderButton(button: ChatButton): APIButtonComponentWithCustomId {
  const label = Array.from(button.label).slice(0, DISCORD_LIMITS.buttonLabelLength).join('');
  return {
    type: ComponentType.Button,
    custom_id: button.id,
    style: STYLES[button.style ?? 'secondary'],
    ...(label ? { label } : {}),
    ...(button.emoji ? { emoji: { name: button.emoji } } : {}),
  };
}
