/**
 * The Discord surface: a discord.js client with minimal, unprivileged intents, the Bot's
 * commands registered at start, interactions and reactions forwarded to the Bot, and the
 * ChatAdapter the Bot sends job messages through.
 */
import { once } from 'node:events';
import { Client, Events, GatewayIntentBits, Partials } from 'discord.js';
import type { BotPort } from '../../commands/port.js';
import type { ChatAdapter } from '../../commands/types.js';
import { asAtelierError } from '../../src/errors.js';
import { childLogger, type Logger } from '../../src/log.js';
import { DiscordChatAdapter } from './adapter.js';
import { registerCommands, toApplicationCommands } from './commands.js';
import { handleInteraction, type InteractionContext } from './interactions.js';
import { type DiscordSurfaceOptions, resolveSurfaceOptions } from './options.js';
import { reactionEventOf } from './reactions.js';
import { DiscordTransport } from './transport.js';
import { UploadLimits } from './upload-limits.js';

/** What the Discord surface calls on the bot (commands/port.ts; `Bot` fits). */
export type DiscordBot = Pick<
  BotPort,
  'commands' | 'attach' | 'command' | 'action' | 'submitForm' | 'reaction' | 'autocomplete'
>;

export interface DiscordSurface {
  adapter: ChatAdapter;
  /**
   * Logs in, registers the Bot's commands, attaches the adapter to the Bot and starts
   * forwarding. Resolves with one line: `discord: connected as Atelier#0001 (3 servers)`.
   */
  start(bot: DiscordBot): Promise<string>;
  /** Stops forwarding and disconnects; waits for interactions being answered. */
  stop(): Promise<void>;
}

/**
 * Guilds: servers, channels and threads (for thread parents and boost tiers).
 * GuildMessageReactions / DirectMessageReactions: 🔄 ⭐ ✖ on results. Interactions need no
 * intent. No privileged intent: message content, members and presences are never read.
 */
export const DISCORD_INTENTS = [
  GatewayIntentBits.Guilds,
  GatewayIntentBits.GuildMessageReactions,
  GatewayIntentBits.DirectMessageReactions,
] as const;

/** How long `stop()` waits for interactions being answered. */
const STOP_GRACE_MS = 3000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export function createDiscordSurface(options: DiscordSurfaceOptions): DiscordSurface {
  const settings = resolveSurfaceOptions(options);
  const logger: Logger = childLogger(settings.logger, 'discord');
  const transport = new DiscordTransport();
  let client: Client | undefined;
  const limits = new UploadLimits(
    settings.maxUploadBytes,
    (guildId) => client?.guilds.cache.get(guildId)?.premiumTier,
  );
  const adapter = new DiscordChatAdapter({ transport, limits, logger });
  const inFlight = new Set<Promise<void>>();

  const track = (work: Promise<void>) => {
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  };

  return {
    adapter,
    async start(bot) {
      if (client) throw new Error('the Discord surface is already started');
      const created = new Client({
        intents: [...DISCORD_INTENTS],
        // Reactions arrive for messages sent before this process started (results survive restarts).
        partials: [Partials.Message, Partials.Reaction, Partials.User, Partials.Channel],
        rest: { api: settings.apiUrl },
      });
      client = created;
      const context: InteractionContext = {
        bot,
        transport,
        limits,
        logger,
        deferAfterMs: settings.deferAfterMs,
      };
      created.on(Events.InteractionCreate, (interaction) => track(handleInteraction(context, interaction)));
      created.on(Events.MessageReactionAdd, (reaction, user) =>
        track(
          (async () => {
            try {
              const event = await reactionEventOf(created, reaction, user);
              if (event) await bot.reaction(event);
            } catch (error) {
              logger.error({ err: asAtelierError(error) }, 'discord: reaction failed');
            }
          })(),
        ),
      );
      created.on(Events.Error, (error) =>
        logger.error({ err: asAtelierError(error) }, 'discord: client error'),
      );
      try {
        const ready = once(created, Events.ClientReady);
        // A failed login rejects below; this keeps the unused wait from rejecting unhandled.
        ready.catch(() => {});
        await created.login(settings.token);
        await ready;
        transport.use(created.rest);
        // Attached before commands are registered: an interaction may already arrive meanwhile
        // (commands from an earlier run), and its job's progress must find the adapter.
        bot.attach(adapter);
        const applicationId = created.application?.id ?? created.user!.id;
        await registerCommands(
          created.rest,
          applicationId,
          toApplicationCommands(bot.commands),
          settings.guildIds,
        );
      } catch (error) {
        transport.use(undefined);
        client = undefined;
        await created.destroy();
        throw error;
      }
      const servers = created.guilds.cache.size;
      return `discord: connected as ${created.user!.tag} (${servers} server${servers === 1 ? '' : 's'})`;
    },
    async stop() {
      const current = client;
      if (!current) return;
      current.removeAllListeners(Events.InteractionCreate);
      current.removeAllListeners(Events.MessageReactionAdd);
      // Let answers in progress finish, but no longer than an interaction's window.
      await Promise.race([Promise.allSettled([...inFlight]), delay(STOP_GRACE_MS)]);
      transport.use(undefined);
      client = undefined;
      await current.destroy();
    },
  };
}
