import { EventEmitter } from 'node:events';
import type { SlackDelivery } from './delivery.js';
import { messageTs, slackId } from './ids.js';
import type {
  ApiCallRecord,
  SlackBlock,
  SlackButton,
  SlackChannel,
  SlackEphemeral,
  SlackFile,
  SlackMessage,
  SlackUser,
} from './types.js';
import type { SlackView } from './views.js';

export interface SlackReactionEvent {
  message: SlackMessage;
  name: string;
  user: string;
}

/** Every event the Slack simulator emits, with its payload. */
export interface SlackEventMap {
  messageCreate: [message: SlackMessage];
  messageUpdate: [message: SlackMessage];
  messageDelete: [message: SlackMessage];
  ephemeral: [message: SlackEphemeral];
  ephemeralUpdate: [message: SlackEphemeral];
  reactionAdd: [event: SlackReactionEvent];
  reactionRemove: [event: SlackReactionEvent];
  fileUploaded: [file: SlackFile];
  /** Every Web API call (and upload / response_url post), after it was answered. */
  apiCall: [record: ApiCallRecord];
  delivery: [delivery: SlackDelivery];
  ack: [delivery: SlackDelivery];
  /** Socket Mode: an ack arrived after the 3-second window. */
  lateAck: [delivery: SlackDelivery];
  socketConnected: [connection: { id: string; at: number }];
  socketClosed: [connection: { id: string; code: number }];
  /** views.open put a modal on someone's screen. */
  viewOpened: [view: SlackView];
  /** A modal was submitted and the bot's ack closed it. */
  viewClosed: [view: SlackView];
}

/** The simulated workspace: people, channels, messages (with threads), ephemerals, files. */
export class SlackState {
  readonly events = new EventEmitter<SlackEventMap>();
  readonly teamId = slackId('T');
  readonly appId = slackId('A');
  readonly users = new Map<string, SlackUser>();
  readonly channels = new Map<string, SlackChannel>();
  /** By `${channel}:${ts}`. */
  readonly messages = new Map<string, SlackMessage>();
  readonly ephemerals: SlackEphemeral[] = [];
  readonly files = new Map<string, SlackFile>();
  /** Modals opened with views.open, by view id. */
  readonly views = new Map<string, SlackView>();

  constructor(
    readonly bot: SlackUser,
    readonly botId: string,
  ) {
    this.users.set(bot.id, bot);
    this.events.setMaxListeners(0);
  }

  /** A member; an owner is an admin too, and the primary owner an owner. */
  addUser(
    name: string,
    options: { admin?: boolean; owner?: boolean; primaryOwner?: boolean } = {},
  ): SlackUser {
    const owner = options.owner ?? options.primaryOwner ?? false;
    const user: SlackUser = {
      id: slackId('U'),
      name,
      realName: name[0]!.toUpperCase() + name.slice(1),
      isAdmin: options.admin ?? owner,
      isOwner: owner,
      isPrimaryOwner: options.primaryOwner ?? false,
      isBot: false,
    };
    this.users.set(user.id, user);
    return user;
  }

  addChannel(name: string, options: { private?: boolean; members?: string[] } = {}): SlackChannel {
    const channel: SlackChannel = {
      id: slackId('C'),
      name,
      isPrivate: options.private ?? false,
      isIm: false,
      members: options.members ?? [...this.users.keys()],
    };
    this.channels.set(channel.id, channel);
    return channel;
  }

  /** The bot's DM with `user`, created on first use. */
  im(user: SlackUser): SlackChannel {
    for (const channel of this.channels.values()) {
      if (channel.isIm && channel.members.includes(user.id)) return channel;
    }
    const channel: SlackChannel = {
      id: slackId('D'),
      name: null,
      isPrivate: true,
      isIm: true,
      members: [this.bot.id, user.id],
    };
    this.channels.set(channel.id, channel);
    return channel;
  }

  message(channel: string, ts: string): SlackMessage | undefined {
    const message = this.messages.get(`${channel}:${ts}`);
    return message && !message.deleted ? message : undefined;
  }

  postMessage(fields: {
    channel: string;
    user: string;
    text?: string;
    blocks?: SlackBlock[];
    threadTs?: string | null;
    files?: SlackFile[];
  }): SlackMessage {
    const now = Date.now();
    const blocks = fields.blocks ?? [];
    const message: SlackMessage = {
      channel: fields.channel,
      ts: messageTs(now),
      user: fields.user,
      botId: fields.user === this.bot.id ? this.botId : null,
      text: fields.text ?? '',
      blocks,
      buttons: buttonsOf(blocks),
      threadTs: fields.threadTs ?? null,
      files: fields.files ?? [],
      reactions: [],
      createdAt: now,
      editedAt: null,
      history: [{ at: now, text: fields.text ?? '', blocks }],
      deleted: false,
    };
    this.messages.set(`${message.channel}:${message.ts}`, message);
    this.events.emit('messageCreate', message);
    return message;
  }

  updateMessage(message: SlackMessage, fields: { text?: string; blocks?: SlackBlock[] }): SlackMessage {
    const now = Date.now();
    if (fields.text !== undefined) message.text = fields.text;
    if (fields.blocks !== undefined) {
      message.blocks = fields.blocks;
      message.buttons = buttonsOf(fields.blocks);
    }
    message.editedAt = now;
    message.history.push({ at: now, text: message.text, blocks: message.blocks });
    this.events.emit('messageUpdate', message);
    return message;
  }

  deleteMessage(message: SlackMessage): void {
    message.deleted = true;
    this.events.emit('messageDelete', message);
  }

  postEphemeral(
    fields: Omit<SlackEphemeral, 'ts' | 'at' | 'buttons' | 'replaced' | 'deleted'>,
  ): SlackEphemeral {
    const ephemeral: SlackEphemeral = {
      ...fields,
      ts: messageTs(),
      at: Date.now(),
      buttons: buttonsOf(fields.blocks),
      replaced: false,
      deleted: false,
    };
    this.ephemerals.push(ephemeral);
    this.events.emit('ephemeral', ephemeral);
    return ephemeral;
  }

  updateEphemeral(
    ephemeral: SlackEphemeral,
    fields: { text?: string; blocks?: SlackBlock[]; deleted?: boolean },
  ): void {
    if (fields.text !== undefined) ephemeral.text = fields.text;
    if (fields.blocks !== undefined) {
      ephemeral.blocks = fields.blocks;
      ephemeral.buttons = buttonsOf(fields.blocks);
    }
    ephemeral.replaced = true;
    if (fields.deleted) ephemeral.deleted = true;
    this.events.emit('ephemeralUpdate', ephemeral);
  }

  addReaction(message: SlackMessage, name: string, user: string): boolean {
    let reaction = message.reactions.find((r) => r.name === name);
    if (!reaction) {
      reaction = { name, users: [] };
      message.reactions.push(reaction);
    }
    if (reaction.users.includes(user)) return false;
    reaction.users.push(user);
    this.events.emit('reactionAdd', { message, name, user });
    return true;
  }

  removeReaction(message: SlackMessage, name: string, user: string): boolean {
    const reaction = message.reactions.find((r) => r.name === name);
    if (!reaction?.users.includes(user)) return false;
    reaction.users = reaction.users.filter((u) => u !== user);
    if (reaction.users.length === 0) message.reactions = message.reactions.filter((r) => r !== reaction);
    this.events.emit('reactionRemove', { message, name, user });
    return true;
  }

  channelMessages(channel: string): SlackMessage[] {
    return [...this.messages.values()].filter((m) => m.channel === channel && !m.deleted);
  }
}

/** Buttons in `actions` blocks and section accessories, in reading order. */
export function buttonsOf(blocks: readonly SlackBlock[]): SlackButton[] {
  const buttons: SlackButton[] = [];
  const take = (element: Record<string, unknown>, blockId: string | undefined) => {
    if (element.type !== 'button' || typeof element.action_id !== 'string') return;
    const text = element.text as { text?: string } | undefined;
    buttons.push({
      actionId: element.action_id,
      blockId,
      text: text?.text,
      value: typeof element.value === 'string' ? element.value : undefined,
      style: typeof element.style === 'string' ? element.style : undefined,
      url: typeof element.url === 'string' ? element.url : undefined,
    });
  };
  for (const block of blocks) {
    if (block.type === 'actions' && Array.isArray(block.elements)) {
      for (const element of block.elements as Record<string, unknown>[]) take(element, block.block_id);
    }
    if (block.type === 'section' && block.accessory)
      take(block.accessory as Record<string, unknown>, block.block_id);
  }
  return buttons;
}
