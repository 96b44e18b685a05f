/**
 * ChatMessage → Block Kit: the text as mrkdwn sections, the result image as an `image` block
 * that shows an uploaded Slack file, and each row of buttons as an `actions` block.
 * Limits are Slack's: 3,000 characters per section text, 50 blocks per message, 75 characters
 * per button label; only `primary` and `danger` button styles exist.
 * @see https://docs.slack.dev/reference/block-kit/blocks
 */
import type { types } from '@slack/bolt';
import type { ButtonStyle, ChatButton, ChatMessage } from '../../commands/types.js';
import { toMrkdwn, toPlainText } from './mrkdwn.js';

type KnownBlock = types.KnownBlock;

export const BLOCK_LIMITS = {
  sectionText: 3000,
  blocks: 50,
  buttonLabel: 75,
  altText: 2000,
  /** The brief's choice (Slack allows 25): one row of the bot's buttons stays one row on screen. */
  buttonsPerBlock: 5,
  /** Notifications and search use `text`; Slack itself cuts at 40,000. */
  fallbackText: 4000,
} as const;

/** How the message's image is shown: the uploaded file inline, or a link when it cannot be inline. */
export type ImageView =
  | { kind: 'file'; fileId: string; alt: string }
  | { kind: 'link'; permalink: string | undefined; filename: string };

export interface SlackRendering {
  /** Fallback text: notifications, search, and clients that cannot show blocks. */
  text: string;
  blocks: KnownBlock[];
}

export function renderMessage(message: ChatMessage, image?: ImageView): SlackRendering {
  const mrkdwn = toMrkdwn(message.text);
  const blocks: KnownBlock[] = sectionTexts(mrkdwn).map((text) => ({
    type: 'section',
    text: { type: 'mrkdwn', text },
  }));
  if (image?.kind === 'file') {
    blocks.push({ type: 'image', slack_file: { id: image.fileId }, alt_text: image.alt });
  } else if (image?.kind === 'link') {
    const label = image.permalink ? `<${image.permalink}|${image.filename}>` : image.filename;
    blocks.push({
      type: 'context',
      elements: [{ type: 'mrkdwn', text: `🖼 ${label} (full size in the thread)` }],
    });
  }
  for (const row of message.buttons ?? []) {
    for (let i = 0; i < row.length; i += BLOCK_LIMITS.buttonsPerBlock) {
      blocks.push(actionsBlock(row.slice(i, i + BLOCK_LIMITS.buttonsPerBlock)));
    }
  }
  return {
    text: truncate(mrkdwn || (image ? 'Image' : ' '), BLOCK_LIMITS.fallbackText),
    blocks: fitBlockCount(blocks),
  };
}

/** Alt text for an image: what the message says, without markup (screen readers read it aloud). */
export function altTextOf(message: ChatMessage): string {
  const plain = toPlainText(message.text).replace(/\s+/g, ' ').trim();
  return truncate(plain || message.image?.filename || 'Generated image', BLOCK_LIMITS.altText);
}

function actionsBlock(buttons: ChatButton[]): types.ActionsBlock {
  return { type: 'actions', elements: buttons.map(buttonElement) };
}

function buttonElement(button: ChatButton): types.Button {
  const label = button.emoji ? `${button.emoji} ${button.label}` : button.label;
  const style = slackStyle(button.style);
  return {
    type: 'button',
    action_id: button.id,
    value: button.id,
    text: { type: 'plain_text', text: truncate(label || button.id, BLOCK_LIMITS.buttonLabel), emoji: true },
    ...(style ? { style } : {}),
  };
}

function slackStyle(style: ButtonStyle | undefined): 'primary' | 'danger' | undefined {
  if (style === 'primary' || style === 'success') return 'primary';
  if (style === 'danger') return 'danger';
  return undefined;
}

/** Splits text into section-sized pieces, at line breaks where it can. */
function sectionTexts(text: string): string[] {
  const pieces: string[] = [];
  let rest = text.trim();
  while (rest.length > BLOCK_LIMITS.sectionText) {
    const cut = rest.lastIndexOf('\n', BLOCK_LIMITS.sectionText);
    const at = cut > BLOCK_LIMITS.sectionText / 2 ? cut : BLOCK_LIMITS.sectionText;
    pieces.push(rest.slice(0, at));
    rest = rest.slice(at).replace(/^\n/, '');
  }
  if (rest.length > 0) pieces.push(rest);
  return pieces;
}

/** Keeps the image and buttons when a very long text would exceed the block limit. */
function fitBlockCount(blocks: KnownBlock[]): KnownBlock[] {
  const excess = blocks.length - BLOCK_LIMITS.blocks;
  if (excess <= 0) return blocks;
  const sections = blocks.filter((b) => b.type === 'section');
  const others = blocks.filter((b) => b.type !== 'section');
  return [...sections.slice(0, Math.max(0, sections.length - excess)), ...others].slice(
    0,
    BLOCK_LIMITS.blocks,
  );
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
