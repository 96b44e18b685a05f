import { EventEmitter } from 'node:events';
import type { APIApplicationCommand, APIEmbed, APIMessageTopLevelComponent } from 'discord-api-types/v10';
import { ChannelType, ComponentType, type InteractionType, MessageFlags } from 'discord-api-types/v10';
import { pngSize } from '../shared/image-size.js';
import type { UploadedPart } from '../shared/multipart.js';
import type { GatewaySessionInfo } from './gateway.js';
import type { InteractionHandle } from './interactions.js';
import { snowflake } from './snowflake.js';
import type {
  InteractionCallbackRecord,
  RegisteredCommands,
  RestRequestRecord,
  SimAttachment,
  SimButton,
  SimChannel,
  SimChannelType,
  SimGuild,
  SimMessage,
  SimUser,
} from './types.js';

export interface InteractionMetadata {
  id: string;
  type: InteractionType;
  userId: string;
  /** The message that is this interaction's original response, once there is one. */
  originalOf: string | null;
}

export interface ReactionEvent {
  message: SimMessage;
  emoji: string;
  userId: string;
}

/** Every event the Discord simulator emits, with its payload. */
export interface DiscordEventMap {
  messageCreate: [message: SimMessage];
  messageUpdate: [message: SimMessage];
  messageDelete: [message: SimMessage];
  reactionAdd: [event: ReactionEvent];
  reactionRemove: [event: ReactionEvent];
  channelCreate: [channel: SimChannel];
  guildCreate: [guild: SimGuild];
  commandsRegistered: [registration: RegisteredCommands];
  /** Every REST request, after it was answered. */
  request: [record: RestRequestRecord];
  interactionCreate: [interaction: InteractionHandle];
  interactionCallback: [interaction: InteractionHandle, callback: InteractionCallbackRecord];
  interactionExpired: [interaction: InteractionHandle];
  gatewayReady: [session: GatewaySessionInfo];
  gatewayResumed: [session: GatewaySessionInfo];
  gatewayClosed: [event: { code: number; sessionId: string | null }];
  heartbeat: [session: GatewaySessionInfo];
}

/** A new or edited message's content, already validated by the REST layer. */
export interface MessageContent {
  content?: string;
  embeds?: APIEmbed[];
  components?: APIMessageTopLevelComponent[];
  flags?: number;
}

export interface NewFile {
  part: UploadedPart;
  filename: string;
  description: string | undefined;
}

export interface CreateMessageInput extends MessageContent {
  channelId: string;
  author: SimUser;
  files?: NewFile[];
  interactionId?: string | null;
  webhookId?: string | null;
  ephemeralTo?: string | null;
  referencedMessageId?: string | null;
}

export interface EditMessageInput extends MessageContent {
  /** Ids of existing attachments to keep; undefined keeps all (the field was absent). */
  keepAttachmentIds?: string[];
  files?: NewFile[];
}

/**
 * The simulated world: users, servers, channels, messages, commands. Mutations emit events; the
 * gateway turns them into dispatches and the test helpers wait on them.
 */
export class DiscordState {
  readonly events = new EventEmitter<DiscordEventMap>();
  readonly users = new Map<string, SimUser>();
  readonly guilds = new Map<string, SimGuild>();
  readonly channels = new Map<string, SimChannel>();
  readonly messages = new Map<string, SimMessage>();
  /** Registered commands by guild id ('' for global). */
  readonly commands = new Map<string, APIApplicationCommand[]>();
  readonly registrations: RegisteredCommands[] = [];
  /** What messages answering an interaction say about it (`interaction_metadata`). */
  readonly interactionMetadata = new Map<string, InteractionMetadata>();
  /** Files users attached to ATTACHMENT options, by attachment id. */
  readonly userUploads = new Map<string, SimAttachment>();
  /** Set once the HTTP server listens; attachment URLs point at it. */
  baseUrl = '';

  constructor(
    readonly bot: SimUser,
    readonly applicationId: string,
    readonly dmUploadLimitBytes: number,
  ) {
    this.users.set(bot.id, bot);
    // Tests attach many waiters at once; the default limit of 10 would only produce noise.
    this.events.setMaxListeners(0);
  }

  addUser(username: string, options: { bot?: boolean; globalName?: string } = {}): SimUser {
    const user: SimUser = {
      id: snowflake(),
      username,
      globalName: options.globalName ?? username[0]!.toUpperCase() + username.slice(1),
      bot: options.bot ?? false,
    };
    this.users.set(user.id, user);
    return user;
  }

  addGuild(guild: SimGuild): SimGuild {
    this.guilds.set(guild.id, guild);
    this.events.emit('guildCreate', guild);
    return guild;
  }

  /** Adds a channel; `silent` skips CHANNEL_CREATE (for channels announced with their GUILD_CREATE). */
  addChannel(fields: Omit<SimChannel, 'id'>, options: { silent?: boolean } = {}): SimChannel {
    const channel: SimChannel = { id: snowflake(), ...fields };
    this.channels.set(channel.id, channel);
    if (!options.silent) this.events.emit('channelCreate', channel);
    return channel;
  }

  /** The DM channel between the bot and `user`, created on first use as Discord does. */
  dmChannel(user: SimUser): SimChannel {
    for (const channel of this.channels.values()) {
      if (channel.type === ChannelType.DM && channel.recipientId === user.id) return channel;
    }
    const channel: SimChannel = {
      id: snowflake(),
      type: ChannelType.DM,
      name: null,
      guildId: null,
      parentId: null,
      recipientId: user.id,
    };
    this.channels.set(channel.id, channel);
    return channel;
  }

  channelType(channelId: string): SimChannelType | undefined {
    return this.channels.get(channelId)?.type;
  }

  guildOf(channel: SimChannel): SimGuild | undefined {
    return channel.guildId ? this.guilds.get(channel.guildId) : undefined;
  }

  uploadLimitFor(channelId: string): number {
    const channel = this.channels.get(channelId);
    return (channel && this.guildOf(channel)?.uploadLimitBytes) ?? this.dmUploadLimitBytes;
  }

  createMessage(input: CreateMessageInput): SimMessage {
    const channel = this.channels.get(input.channelId);
    if (!channel) throw new Error(`simulator bug: no channel ${input.channelId}`);
    const now = Date.now();
    const flags = input.flags ?? 0;
    const message: SimMessage = {
      id: snowflake(now),
      channelId: channel.id,
      guildId: channel.guildId,
      author: input.author,
      content: input.content ?? '',
      embeds: input.embeds ?? [],
      components: input.components ?? [],
      buttons: [],
      attachments: (input.files ?? []).map((file) => this.#attachment(channel.id, file)),
      flags,
      ephemeral: (flags & MessageFlags.Ephemeral) !== 0,
      ephemeralTo: (flags & MessageFlags.Ephemeral) !== 0 ? (input.ephemeralTo ?? null) : null,
      interactionId: input.interactionId ?? null,
      webhookId: input.webhookId ?? null,
      referencedMessageId: input.referencedMessageId ?? null,
      reactions: [],
      createdAt: now,
      editedAt: null,
      history: [],
      deleted: false,
    };
    message.buttons = buttonsOf(message.components);
    message.history.push(revisionOf(message, now));
    this.messages.set(message.id, message);
    this.events.emit('messageCreate', message);
    return message;
  }

  editMessage(message: SimMessage, input: EditMessageInput): SimMessage {
    const now = Date.now();
    if (input.content !== undefined) message.content = input.content ?? '';
    if (input.embeds !== undefined) message.embeds = input.embeds ?? [];
    if (input.components !== undefined) {
      message.components = input.components ?? [];
      message.buttons = buttonsOf(message.components);
    }
    if (input.flags !== undefined) {
      // Only SUPPRESS_EMBEDS and IS_COMPONENTS_V2 may be changed by an edit; EPHEMERAL stays as created.
      const editable = MessageFlags.SuppressEmbeds | MessageFlags.IsComponentsV2;
      message.flags = (message.flags & ~editable) | (input.flags & editable);
    }
    // An edit of a deferred ("thinking…") response turns it into a real message.
    message.flags &= ~MessageFlags.Loading;
    const kept =
      input.keepAttachmentIds === undefined
        ? message.attachments
        : message.attachments.filter((a) => input.keepAttachmentIds!.includes(a.id));
    message.attachments = [
      ...kept,
      ...(input.files ?? []).map((f) => this.#attachment(message.channelId, f)),
    ];
    message.editedAt = now;
    message.history.push(revisionOf(message, now));
    this.events.emit('messageUpdate', message);
    return message;
  }

  deleteMessage(message: SimMessage): void {
    message.deleted = true;
    this.events.emit('messageDelete', message);
  }

  /** Adds `userId`'s reaction; false when it was already there (Discord answers 204 either way). */
  addReaction(message: SimMessage, emoji: string, userId: string): boolean {
    let reaction = message.reactions.find((r) => r.emoji === emoji);
    if (!reaction) {
      reaction = { emoji, userIds: [] };
      message.reactions.push(reaction);
    }
    if (reaction.userIds.includes(userId)) return false;
    reaction.userIds.push(userId);
    this.events.emit('reactionAdd', { message, emoji, userId });
    return true;
  }

  removeReaction(message: SimMessage, emoji: string, userId: string): boolean {
    const reaction = message.reactions.find((r) => r.emoji === emoji);
    if (!reaction?.userIds.includes(userId)) return false;
    reaction.userIds = reaction.userIds.filter((id) => id !== userId);
    if (reaction.userIds.length === 0) message.reactions = message.reactions.filter((r) => r !== reaction);
    this.events.emit('reactionRemove', { message, emoji, userId });
    return true;
  }

  /** Messages of a channel, oldest first, without deleted ones. */
  channelMessages(channelId: string): SimMessage[] {
    return [...this.messages.values()].filter((m) => m.channelId === channelId && !m.deleted);
  }

  #attachment(channelId: string, file: NewFile): SimAttachment {
    const id = snowflake();
    const size = pngSize(file.part.data);
    return {
      id,
      filename: file.filename,
      contentType: file.part.contentType,
      size: file.part.data.length,
      data: file.part.data,
      url: `${this.baseUrl}/attachments/${channelId}/${id}/${encodeURIComponent(file.filename)}`,
      width: size?.width,
      height: size?.height,
      description: file.description,
    };
  }
}

function revisionOf(message: SimMessage, at: number) {
  return {
    at,
    content: message.content,
    embeds: message.embeds,
    components: message.components,
    attachments: message.attachments,
    flags: message.flags,
  };
}

/** Every button in the message's action rows, in reading order. */
export function buttonsOf(components: readonly APIMessageTopLevelComponent[]): SimButton[] {
  const buttons: SimButton[] = [];
  for (const row of components) {
    if (row.type !== ComponentType.ActionRow) continue;
    for (const component of row.components) {
      if (component.type !== ComponentType.Button) continue;
      buttons.push({
        customId: 'custom_id' in component ? component.custom_id : undefined,
        label: 'label' in component ? component.label : undefined,
        emoji: 'emoji' in component && component.emoji ? (component.emoji.name ?? undefined) : undefined,
        style: component.style,
        url: 'url' in component ? component.url : undefined,
        disabled: component.disabled ?? false,
      });
    }
  }
  return buttons;
}
