/**
 * The bot every adapter talks to: commands, button clicks, reactions and autocomplete come in as
 * platform-neutral calls; answers go out through the Invocation (public or private) and through
 * the adapters registered here (job progress and results). All decisions live here and in
 * ./handlers — adapters only translate.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { ValidationError } from '../src/errors.js';
import type { ReplyTarget, Requester } from '../src/jobs/types.js';
import type { BotCore } from './core.js';
import { decodeButton } from './custom-id.js';
import { defineCommands, findCommand } from './definitions.js';
import { admin } from './handlers/admin.js';
import { answering, type BotContext, tell } from './handlers/context.js';
import { help } from './handlers/help.js';
import { imagine } from './handlers/imagine.js';
import { cancel, cancelChoices, queue } from './handlers/queue.js';
import { onReaction } from './handlers/reactions.js';
import { runButton, submitRemix } from './handlers/results.js';
import { settings } from './handlers/settings.js';
import { isLoraOption, loraChoices } from './lora-choices.js';
import { JobMessenger, type MessengerOptions } from './messenger.js';
import type { BotPort, GalleryEntry, ResultImage } from './port.js';
import { type ParsedText, parseCommandText, unknownCommand } from './text-args.js';
import type { ChatAdapter, Choice, CommandArgs, CommandDef, Invocation, ReactionEvent } from './types.js';

export interface BotOptions extends MessengerOptions {}

/** The bot behind every surface; adapters see it as a `BotPort` (./port.ts). */
export class Bot implements BotPort {
  readonly #ctx: BotContext;
  readonly #messenger: JobMessenger;
  #commands: CommandDef[] | undefined;

  constructor(
    readonly app: BotCore,
    options: BotOptions = {},
  ) {
    const p = app.config.progress;
    this.#messenger = new JobMessenger(app.scheduler, app.store, app.logger, {
      minEditIntervalMs: p.minEditIntervalMs,
      previewEverySteps: p.previewEverySteps,
      oversizeFormat: app.config.images.oversizeFormat,
      ...options,
    });
    this.#ctx = { app, messenger: this.#messenger, commands: () => this.commands };
  }

  /** The commands to register or show (ranges and choices from the config and the model). */
  get commands(): CommandDef[] {
    this.#commands ??= defineCommands(this.app.validation());
    return this.#commands;
  }

  /** Job progress and results of `adapter.platform` are shown through it. */
  attach(adapter: ChatAdapter): void {
    this.#messenger.addAdapter(adapter);
  }

  start(): void {
    this.#messenger.start();
  }

  async stop(): Promise<void> {
    await this.#messenger.stop();
  }

  /** A slash command (`name` is `atelier showcase` for a subcommand). */
  async command(inv: Invocation, name: string, args: CommandArgs): Promise<void> {
    await answering(this.#ctx, inv, async () => {
      const def = findCommand(this.commands, name);
      if (!def) throw new ValidationError('command', unknownCommand(this.commands, name.trim()));
      if (def.subcommands) throw new ValidationError('command', `I don't know /${name}. Try /help.`);
      const [top, sub] = name.trim().split(/\s+/);
      switch (top) {
        case 'imagine':
          return imagine(this.#ctx, inv, args);
        case 'queue':
          return queue(this.#ctx, inv, args);
        case 'cancel':
          return cancel(this.#ctx, inv, args);
        case 'settings':
          return settings(this.#ctx, inv, args);
        case 'help':
          return help(this.#ctx, inv);
        case 'atelier':
          return admin(this.#ctx, inv, sub ?? '', args);
        default:
          throw new ValidationError('command', `I don't know /${name}. Try /help.`);
      }
    });
  }

  /** A button click, by its custom id. */
  async action(inv: Invocation, customId: string): Promise<void> {
    await answering(this.#ctx, inv, async () => {
      const ref = decodeButton(customId);
      if (!ref) {
        await inv.replyPrivately(tell("That button doesn't belong to an image I know."));
        return;
      }
      await runButton(this.#ctx, inv, ref);
    });
  }

  /** A form the bot opened came back submitted (remix: the edited prompt). */
  async submitForm(
    inv: Invocation,
    formId: string,
    values: Readonly<Record<string, string | undefined>>,
  ): Promise<void> {
    await answering(this.#ctx, inv, () => submitRemix(this.#ctx, inv, formId, values));
  }

  async reaction(event: ReactionEvent): Promise<void> {
    await onReaction(this.#ctx, event);
  }

  autocomplete(requester: Requester, command: string, option: string, partial: string): Choice[] {
    if (command === 'cancel' && option === 'job') return cancelChoices(this.#ctx, { requester }, partial);
    if (command === 'imagine' && isLoraOption(option))
      return loraChoices(this.app.validation().loras ?? [], partial);
    const def = findCommand(this.commands, command)?.options?.find((o) => o.name === option);
    return (def?.choices ?? [])
      .filter((c) => c.name.toLowerCase().includes(partial.toLowerCase()))
      .slice(0, 25);
  }

  /** A command typed as text (Slack, the playground); throws ValidationError with the usage. */
  parseText(text: string): ParsedText {
    return parseCommandText(this.commands, text);
  }

  /** A channel's recent results, newest first (the playground's gallery). */
  recentResults(where: Pick<ReplyTarget, 'platform' | 'channelId'>, limit = 30): GalleryEntry[] {
    const { store } = this.app;
    const channel = { platform: where.platform, channelId: where.channelId };
    // Made in the channel, or shared into it (a showcase holds only shares): newest appearance first.
    const made = new Map(
      store.jobs.list({ channel, states: ['done'], limit: limit * 2 }).map((j) => [j.id, j]),
    );
    const appeared = new Map([...made.values()].map((job) => [job.id, job.createdAt]));
    for (const { jobId, at } of store.results.jobsShownIn(channel, limit * 2))
      appeared.set(jobId, Math.max(at, appeared.get(jobId) ?? 0));
    const entries: GalleryEntry[] = [];
    for (const [jobId] of [...appeared].sort((a, b) => b[1] - a[1])) {
      if (entries.length === limit) break;
      const job = made.get(jobId) ?? store.jobs.get(jobId);
      if (job?.state !== 'done' || store.results.isDeleted(jobId)) continue;
      const result = store.results.get(jobId);
      if (!result || result.images.length === 0) continue;
      entries.push({
        jobId: job.id,
        prompt: job.spec.params.prompt,
        seed: result.images[0].seed,
        author: { userId: job.spec.requester.userId, displayName: job.spec.requester.displayName },
        images: result.images.length,
        width: result.images[0].width,
        height: result.images[0].height,
        createdAt: job.createdAt,
      });
    }
    return entries;
  }

  /** A result's image file (PNG with parameters): one image, or the grid. */
  async resultImage(jobId: string, index: number | 'grid'): Promise<ResultImage | undefined> {
    const { store } = this.app;
    if (store.results.isDeleted(jobId)) return undefined;
    const result = store.results.get(jobId);
    if (!result) return undefined;
    const path = index === 'grid' ? (result.gridPath ?? result.images[0]?.path) : result.images[index]?.path;
    if (!path) return undefined;
    const data = await readFile(path);
    const { width = 0, height = 0 } = await sharp(data).metadata();
    return { data, mime: 'image/png', width, height };
  }

  /** Resolves when the job's message shows its latest state (tests). */
  settled(jobId: string): Promise<void> {
    return this.#messenger.settled(jobId);
  }
}
