/**
 * The one port between the chat surfaces and the bot: everything an adapter may call on it.
 * `Bot` (./bot.ts) implements it; every adapter takes a `BotPort` — or `Pick`s the members it
 * calls, so its unit tests can stand in a small double — and never sees the class. Answers go the
 * other way through the adapter's own `ChatAdapter` (./types.ts), given to `attach`.
 */
import type { ReplyTarget, Requester } from '../src/jobs/types.js';
import type { BotCore } from './core.js';
import type { ParsedText } from './text-args.js';
import type { ChatAdapter, Choice, CommandArgs, CommandDef, Invocation, ReactionEvent } from './types.js';

/** One result in a channel's gallery (the playground's). */
export interface GalleryEntry {
  jobId: string;
  prompt: string;
  seed: number;
  author: { userId: string; displayName: string };
  images: number;
  width: number;
  height: number;
  createdAt: number;
}

/** A result's image file: a PNG with its parameters. */
export interface ResultImage {
  data: Buffer;
  mime: string;
  width: number;
  height: number;
}

export interface BotPort {
  /** The commands to register or show (ranges and choices from the config and the model). */
  readonly commands: readonly CommandDef[];
  /** Job progress and results for `adapter.platform` are sent through `adapter` from now on. */
  attach(adapter: ChatAdapter): void;
  /** A slash command; `name` is `'atelier showcase'` for a subcommand. */
  command(invocation: Invocation, name: string, args: CommandArgs): Promise<void>;
  /** A button click, by its custom id. */
  action(invocation: Invocation, customId: string): Promise<void>;
  /**
   * A form the bot opened (`Invocation.openForm`) came back submitted: its id and the values by
   * field id. Answered like a click: the first public answer becomes the new job's message.
   */
  submitForm(
    invocation: Invocation,
    formId: string,
    values: Readonly<Record<string, string | undefined>>,
  ): Promise<void>;
  reaction(event: ReactionEvent): Promise<void>;
  /** Choices for an option being typed (Discord's autocomplete, the playground's). */
  autocomplete(
    requester: Requester,
    command: string,
    option: string,
    partial: string,
  ): Choice[] | Promise<Choice[]>;
  /** A command typed as text (Slack, the playground); throws ValidationError with the usage. */
  parseText(text: string): ParsedText;
  /** A channel's recent results, newest first (the playground's gallery). */
  recentResults(where: Pick<ReplyTarget, 'platform' | 'channelId'>, limit?: number): GalleryEntry[];
  /** A result's image file: one image, or the grid. */
  resultImage(jobId: string, index: number | 'grid'): Promise<ResultImage | undefined>;
  /**
   * The core, when the bot has one (the real Bot does): a surface keeps its own records in its
   * database (Slack's events acted on, the playground's conversation), checks a button against
   * its job's team, and reads its own settings (`playground.*`).
   */
  readonly app?: BotCore;
}
