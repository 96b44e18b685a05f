/**
 * The platform-neutral chat vocabulary: what a command looks like (so each adapter can render it
 * as a Discord slash command, a Slack command or a playground text command), what a message
 * looks like, and the small port every adapter implements. No command logic is written per
 * platform: adapters translate, `Bot` (bot.ts) decides.
 */
import type { ReplyTarget, Requester } from '../src/jobs/types.js';

// ---- commands -------------------------------------------------------------------------------

export type OptionType = 'string' | 'integer' | 'number' | 'boolean' | 'channel';

export interface Choice {
  name: string;
  value: string | number;
}

export interface OptionDef {
  name: string;
  description: string;
  type: OptionType;
  required?: boolean;
  /** Inclusive bounds for integer/number options. */
  min?: number;
  max?: number;
  /** Longest string accepted by the platform UI (the bot re-checks with its own message). */
  maxLength?: number;
  /** A fixed list (Discord allows at most 25; use `autocomplete` beyond). */
  choices?: Choice[];
  /** Suggestions while typing (Discord autocomplete); adapters without it ignore this. */
  autocomplete?: boolean;
  /** Short flag names for text commands: `--ar 16:9` for `aspect`. */
  aliases?: string[];
  /** Flags of text commands that set this option to a value without one: `--fast` for `mode: draft`. */
  presets?: Record<string, OptionValue>;
  /** Text commands: free text fills this optional option (`/atelier model turbo`) as it fills a required one. */
  positional?: boolean;
  /** Text commands may give it more than once: the values are joined by commas (`--lora a --lora b`). */
  repeatable?: boolean;
}

export type OptionValue = string | number | boolean;
/** Parsed option values by option name; a channel option's value is the channel id. */
export type CommandArgs = Record<string, OptionValue | undefined>;

export interface CommandDef {
  name: string;
  description: string;
  options?: OptionDef[];
  /** `/atelier showcase #channel`: one level of subcommands (then `options` is unused). */
  subcommands?: CommandDef[];
  /** Shown only to admins in help; refused for others (the bot checks, not the platform). */
  adminOnly?: boolean;
}

// ---- messages -------------------------------------------------------------------------------

export type ButtonStyle = 'primary' | 'secondary' | 'success' | 'danger';

export interface ChatButton {
  /** Custom id (≤ 100 chars, see custom-id.ts): resolved from the database when clicked. */
  id: string;
  label: string;
  emoji?: string;
  style?: ButtonStyle;
}

export interface ChatImage {
  data: Uint8Array;
  filename: string;
  /** image/png, image/jpeg or image/webp. */
  mime: string;
  /** Pixel size when known (results always; progress previews may leave it out). */
  width?: number;
  height?: number;
}

/**
 * A message as the bot means it. `text` uses a small markdown subset every adapter renders:
 * `**bold**`, `*italic*`, `` `code` ``, `<@userId>` mentions (Discord and Slack syntax; the
 * playground shows `@name`), and newlines.
 */
export interface ChatMessage {
  text: string;
  /** One attachment at most: the result image or the composite grid. */
  image?: ChatImage;
  /** A small preview for progress messages (adapters may show it inline or skip it). */
  preview?: ChatImage;
  /** Rows of buttons (Discord: ≤ 5 rows × 5). */
  buttons?: ChatButton[][];
}

/** A message an adapter posted (what it needs to edit or delete it later). */
export interface PostedMessage {
  platform: string;
  channelId: string;
  messageId: string;
  threadId?: string;
  teamId?: string;
  /** Adapter-private data (Discord interaction token, Slack thread_ts …), JSON-serialisable. */
  extra?: Record<string, unknown>;
}

// ---- forms ----------------------------------------------------------------------------------

/** One text field of a form. */
export interface FormField {
  /** The key its value comes back under. */
  id: string;
  label: string;
  /** Prefilled text. */
  value?: string;
  /** Several lines (a prompt) rather than one. */
  multiline?: boolean;
  required?: boolean;
  /** Longest text accepted; adapters cap it at their platform's own limit. */
  maxLength?: number;
  placeholder?: string;
}

/**
 * A small form the bot asks one person to fill in (remix: the prompt before a reroll or
 * variation): a Discord modal, a Slack modal (views.open), a dialog in the playground. What they
 * submit comes back through `BotPort.submitForm` with `id` and the values by field id.
 */
export interface ChatForm {
  /** ≤ 100 characters (see custom-id.ts `encodeForm`). */
  id: string;
  /** Short: Discord allows 45 characters, Slack 24. */
  title: string;
  /** The submit button's label (Slack and the playground show it; Discord says "Submit"). */
  submitLabel: string;
  fields: FormField[];
}

// ---- what adapters hand to the bot ----------------------------------------------------------

/** One slash command, button click or reaction, as the adapter received it. */
export interface Invocation {
  requester: Requester;
  /** Where it happened (channel, thread, team); results of jobs it starts go here. */
  where: ReplyTarget;
  /**
   * Answers publicly (the first answer to a command or click). For /imagine this message becomes
   * the job's message: edited with progress, then with the result. Returns what was posted.
   */
  reply(message: ChatMessage): Promise<PostedMessage>;
  /** Answers only the requester (Discord ephemeral, Slack chat.postEphemeral, playground: that user). */
  replyPrivately(message: ChatMessage): Promise<void>;
  /**
   * Opens `form` for the requester instead of answering (only as the first answer to a click:
   * Discord and Slack allow it only then). Absent where the surface has no forms; the bot then
   * acts without one.
   */
  openForm?(form: ChatForm): Promise<void>;
  /**
   * Whether the platform says the requester administers the team, asked only when a team-admin
   * check runs (Slack: a users.info lookup that plain commands and clicks must not wait on).
   * Absent where `requester.isTeamAdmin` already says.
   */
  isTeamAdmin?(): Promise<boolean>;
}

export interface ReactionEvent {
  requester: Requester;
  /** The message reacted to; ignored unless it shows an Atelier result. */
  message: PostedMessage;
  /** Unicode emoji (🔄 ⭐ ✖ …); adapters map platform names (e.g. Slack's `arrows_counterclockwise`). */
  emoji: string;
  where: ReplyTarget;
}

// ---- the port adapters implement ------------------------------------------------------------

export interface EditOptions {
  /**
   * A passing state (queue position, progress) that a newer one supersedes: an adapter that must
   * ration edits (Slack's rate tiers) may hold it back, or drop it for a newer one, and resolve
   * at once. Edits without it (the result, a failure) are final: shown at once, never dropped.
   */
  transient?: boolean;
  /**
   * An adapter that shows a transient edit later, after edit() resolved, reports here the
   * message's new details from then (Slack: the progress preview files in its thread), as edit()
   * returns them; they are recorded with the job's message, so a restart finds them.
   */
  updated?(message: PostedMessage): void;
}

export interface ChatAdapter {
  /** `discord`, `slack`, `playground`: matches Requester.platform and ReplyTarget.platform. */
  readonly platform: string;
  /** Posts a new message in `target`'s channel (thread when set). */
  post(target: ReplyTarget, message: ChatMessage): Promise<PostedMessage>;
  /**
   * Replaces a posted message's text, image and buttons. May return the message's new details
   * (e.g. Slack: the file uploaded into its thread) so a later delete after a restart finds them.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: adapters with nothing new to report return nothing
  edit(message: PostedMessage, next: ChatMessage, options?: EditOptions): Promise<PostedMessage | void>;
  delete(message: PostedMessage): Promise<void>;
  /** Tells one user something privately outside an interaction (e.g. their job failed later). */
  tellPrivately(target: ReplyTarget, userId: string, message: ChatMessage): Promise<void>;
  /** Largest upload in bytes allowed in `target` (server boosts, Slack limits). */
  uploadLimit(target: ReplyTarget): number;
  /**
   * After a restart: the message that answered the interaction a job came from, for a job whose
   * answer was sent but whose message was never recorded (the process died in between).
   * `target` is the job's reply target, as stored with the job before the answer was sent (its
   * `extra` holds what the platform needs, e.g. Discord's interaction token). Only a message that
   * shows `jobId` (or the interaction's own placeholder still waiting for its answer) counts.
   * Undefined when there is none or it can no longer be known; throws when the platform cannot be
   * asked right now (the caller asks again later). Adapters without it post results anew.
   */
  findAnswer?(target: ReplyTarget, jobId: string): Promise<PostedMessage | undefined>;
}
