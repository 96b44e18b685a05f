/**
 * The playground's WebSocket protocol: JSON frames between the page and the server. Images never
 * travel in a frame; a message names them by URL (`/images/<messageId>/<hash>`) and the page
 * fetches them over HTTP, so a progress edit stays a few hundred bytes.
 */
import { z } from 'zod';
import type { ButtonStyle, ChatForm, CommandDef } from '../../commands/types.js';

/** A channel id as the page shows it: `#general`. Lowercase, URL- and selector-safe. */
export const CHANNEL_ID = /^[a-z0-9][a-z0-9_-]{0,39}$/;

// ---- page → server --------------------------------------------------------------------------

const channelId = z.string().regex(CHANNEL_ID);
/** Fields a form has at most (as a Discord modal). */
const MAX_FORM_FIELDS = 5;
const messageId = z.string().min(1).max(64);

export const clientFrameSchema = z.discriminatedUnion('type', [
  /** Who this tab speaks as; sent first and again whenever the name field changes. */
  z.object({ type: z.literal('hello'), name: z.string() }),
  /**
   * A line typed in the message box: a `/command …` or plain chat. Long enough for any prompt the
   * config allows (generation.promptMaxLength ≤ 100,000), so the bot refuses it with its own words.
   */
  z.object({ type: z.literal('say'), channelId, text: z.string().max(100_000) }),
  z.object({ type: z.literal('click'), channelId, messageId, customId: z.string().min(1).max(100) }),
  /** A form the server opened (a `form` frame) submitted: its values by field id. */
  z.object({
    type: z.literal('submit'),
    channelId,
    formId: z.string().min(1).max(100),
    values: z
      .record(z.string().min(1).max(64), z.string().max(100_000))
      .refine((values) => Object.keys(values).length <= MAX_FORM_FIELDS),
  }),
  z.object({ type: z.literal('react'), channelId, messageId, emoji: z.string().min(1).max(16) }),
  z.object({ type: z.literal('unreact'), channelId, messageId, emoji: z.string().min(1).max(16) }),
  /** Suggestions for an option value while typing (the bot's autocomplete). */
  z.object({
    type: z.literal('autocomplete'),
    requestId: z.number().int(),
    command: z.string().max(64),
    option: z.string().max(64),
    partial: z.string().max(200),
  }),
]);

export type ClientFrame = z.infer<typeof clientFrameSchema>;

// ---- server → page --------------------------------------------------------------------------

export interface WireImage {
  url: string;
  /** Pixel size when the bot knows it (results always); lets the page reserve space before loading. */
  width?: number;
  height?: number;
  /** Describes the picture for screen readers: the prompt when the bot's text names one. */
  alt: string;
}

export interface WireButton {
  customId: string;
  label: string;
  emoji?: string;
  style: ButtonStyle;
}

export interface WireReaction {
  emoji: string;
  userIds: string[];
}

export interface WireUser {
  id: string;
  name: string;
}

export interface WireMessage {
  id: string;
  channelId: string;
  author: WireUser & { bot: boolean };
  /** The bot's markdown subset, unrendered; the page renders it without HTML injection. */
  text: string;
  /** Display names for the `<@id>` mentions in `text`. */
  mentions: Record<string, string>;
  image?: WireImage;
  preview?: WireImage;
  buttons: WireButton[][];
  /** What a person did that this message answers ("used /imagine", "clicked 🔄 Reroll"). */
  interaction?: { user: WireUser; action: string };
  /** Shown only to `recipient`'s tabs ("only you can see this"). */
  private?: boolean;
  /** A bot message with an image: the page shows the 🔄 ⭐ ✖ reaction bar under it. */
  result: boolean;
  reactions: WireReaction[];
  createdAt: number;
  editedAt?: number;
}

export type ServerFrame =
  | {
      type: 'welcome';
      user: WireUser;
      channels: string[];
      commands: CommandDef[];
      reactionEmojis: string[];
      /** Recent public messages of every channel and this user's private ones, oldest first. */
      messages: WireMessage[];
    }
  | { type: 'message'; message: WireMessage }
  | { type: 'delete'; channelId: string; messageId: string }
  | { type: 'reactions'; channelId: string; messageId: string; reactions: WireReaction[] }
  | { type: 'channels'; channels: string[] }
  | { type: 'suggestions'; requestId: number; choices: { name: string; value: string | number }[] }
  /** Asks this tab's person to fill in a form (remix: the prompt), as a dialog; answered with `submit`. */
  | { type: 'form'; channelId: string; form: ChatForm }
  /** A frame the server could not use (bad JSON, no hello yet, a bad name); says what to do. */
  | { type: 'problem'; message: string; field?: 'name' };

/** Parses one frame from the page; undefined when it is not a frame this protocol knows. */
export function parseClientFrame(raw: string): ClientFrame | undefined {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const parsed = clientFrameSchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}
