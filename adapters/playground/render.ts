/**
 * A bot ChatMessage as the page receives it: images stored and named by URL, mentions resolved to
 * display names, alt text for the pictures. The markdown subset stays as text; the page renders
 * it into DOM nodes itself (never as HTML).
 */
import type { ChatImage, ChatMessage } from '../../commands/types.js';
import type { ImageSlot, ImageStore } from './image-store.js';
import type { WireImage, WireMessage } from './protocol.js';
import type { KnownUsers } from './users.js';

export interface RenderContext {
  images: ImageStore;
  users: KnownUsers;
}

export type RenderedContent = Pick<
  WireMessage,
  'text' | 'mentions' | 'image' | 'preview' | 'buttons' | 'result'
>;

const MENTION = /<@([^>\s]+)>/g;

export function renderContent(
  messageId: string,
  message: ChatMessage,
  context: RenderContext,
): RenderedContent {
  const mentions: Record<string, string> = {};
  for (const [, id] of message.text.matchAll(MENTION)) mentions[id] = context.users.nameOf(id);
  const alt = altText(message.text, mentions);
  const image = storeImage(messageId, 'image', message.image, alt, context.images);
  const preview = storeImage(messageId, 'preview', message.preview, `Preview: ${alt}`, context.images);
  return {
    text: message.text,
    mentions,
    image,
    preview,
    buttons: (message.buttons ?? []).map((row) =>
      row.map((b) => ({ customId: b.id, label: b.label, emoji: b.emoji, style: b.style ?? 'secondary' })),
    ),
    result: message.image !== undefined,
  };
}

function storeImage(
  messageId: string,
  slot: ImageSlot,
  image: ChatImage | undefined,
  alt: string,
  images: ImageStore,
): WireImage | undefined {
  if (!image) {
    images.clear(messageId, slot);
    return undefined;
  }
  return { url: images.put(messageId, slot, image), width: image.width, height: image.height, alt };
}

/**
 * What the picture shows, for screen readers: the bot puts the prompt first, in bold, so the first
 * bold span is the best description; else the text's first line without markup.
 */
export function altText(text: string, mentions: Record<string, string>): string {
  const plain = (s: string) =>
    s
      .replace(MENTION, (_, id: string) => `@${mentions[id] ?? id}`)
      .replace(/\*\*|`/g, '')
      .replace(/(^|\W)\*(\S[^*]*)\*/g, '$1$2')
      .trim();
  const bold = /\*\*(.+?)\*\*/s.exec(text)?.[1];
  const described = plain(bold ?? text.split('\n')[0] ?? '');
  return described.length > 0 ? described.slice(0, 300) : 'Generated image';
}
