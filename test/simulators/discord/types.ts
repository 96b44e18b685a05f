import type {
  APIActionRowComponent,
  APIApplicationCommand,
  APIComponentInMessageActionRow,
  APIEmbed,
  APIInteraction,
  APIMessageTopLevelComponent,
  ChannelType,
  InteractionResponseType,
} from 'discord-api-types/v10';

/** A Discord account: a person, or the bot itself. */
export interface SimUser {
  id: string;
  username: string;
  globalName: string | null;
  bot: boolean;
}

export interface SimRole {
  id: string;
  name: string;
  /** Permission bitfield as Discord sends it (decimal string). */
  permissions: string;
}

export interface SimGuild {
  id: string;
  name: string;
  ownerId: string;
  /** Per-request upload cap for this server (boost tier), sent as `attachment_size_limit`. */
  uploadLimitBytes: number;
  roles: SimRole[];
  /** Member user ids, the bot included. */
  memberIds: string[];
  /** Role ids per member (without @everyone, whose id equals the guild id). */
  memberRoles: Map<string, string[]>;
}

/** Text channel (0), DM (1), public thread (11) or private thread (12). */
export type SimChannelType =
  | ChannelType.GuildText
  | ChannelType.DM
  | ChannelType.PublicThread
  | ChannelType.PrivateThread;

export interface SimChannel {
  id: string;
  type: SimChannelType;
  name: string | null;
  guildId: string | null;
  /** For threads: the text channel they live in. */
  parentId: string | null;
  /** For DMs: the person on the other side. */
  recipientId: string | null;
}

export interface SimAttachment {
  id: string;
  filename: string;
  contentType: string | undefined;
  size: number;
  /** The uploaded bytes, exactly as the bot sent them. */
  data: Buffer;
  /** Served by the simulator, so a bot can download what it posted (e.g. for variations). */
  url: string;
  width: number | undefined;
  height: number | undefined;
  description: string | undefined;
}

export interface SimButton {
  customId: string | undefined;
  label: string | undefined;
  emoji: string | undefined;
  style: number;
  url: string | undefined;
  disabled: boolean;
}

export interface SimReaction {
  /** Unicode emoji (`🔄`) or `name:id` for a custom emoji. */
  emoji: string;
  userIds: string[];
}

/** What a message looked like after one create/edit (the history a test can assert edit throttling on). */
export interface SimMessageRevision {
  at: number;
  content: string;
  embeds: APIEmbed[];
  components: APIMessageTopLevelComponent[];
  attachments: SimAttachment[];
  flags: number;
}

export interface SimMessage {
  id: string;
  channelId: string;
  guildId: string | null;
  author: SimUser;
  content: string;
  embeds: APIEmbed[];
  components: APIMessageTopLevelComponent[];
  /** Every button on the message, flattened from its action rows. */
  buttons: SimButton[];
  attachments: SimAttachment[];
  flags: number;
  /** Flag 64: only `ephemeralTo` sees it; never dispatched over the gateway, invisible to channel routes. */
  ephemeral: boolean;
  ephemeralTo: string | null;
  /** The interaction this message answers (original response or follow-up). */
  interactionId: string | null;
  /** Set for interaction responses and follow-ups, as Discord does (the application id). */
  webhookId: string | null;
  referencedMessageId: string | null;
  reactions: SimReaction[];
  createdAt: number;
  editedAt: number | null;
  /** First entry is the creation; one more per edit. */
  history: SimMessageRevision[];
  deleted: boolean;
}

/** `modal`: a MODAL_SUBMIT (a person submitted a modal the bot opened). */
export type InteractionKind = 'command' | 'autocomplete' | 'component' | 'modal';

/** One attempt by the bot to answer an interaction (`POST /interactions/:id/:token/callback`). */
export interface InteractionCallbackRecord {
  type: InteractionResponseType;
  /** The `data` field the bot sent (files become attachments of the resulting message). */
  data: Record<string, unknown> | undefined;
  at: number;
  /** Milliseconds from the INTERACTION_CREATE frame being sent to this callback arriving. */
  latencyMs: number;
  /** HTTP status the simulator answered; non-2xx callbacks failed (expired, already acknowledged, invalid). */
  status: number;
  errorCode: number | null;
}

export interface RestRequestRecord {
  seq: number;
  method: string;
  /** Route key (e.g. `POST /channels/:channelId/messages`), or null for a path the simulator does not serve. */
  route: string | null;
  path: string;
  query: Record<string, string>;
  status: number;
  at: number;
  /** Whether a valid `Authorization: Bot <token>` header came with it. */
  authorized: boolean;
  /** Parsed JSON body (or `payload_json` of a multipart upload). */
  body: unknown;
  /** File parts of a multipart upload: field, filename and size. */
  files: { field: string; filename: string; size: number }[];
  /** Answered with an injected failure (`failNext`) or a simulated bucket exhaustion. */
  rateLimited: boolean;
  injected: boolean;
  errorCode: number | null;
}

export interface RegisteredCommands {
  /** Guild id, or null for global commands. */
  guildId: string | null;
  commands: APIApplicationCommand[];
  at: number;
}

export type ActionRow = APIActionRowComponent<APIComponentInMessageActionRow>;
export type { APIEmbed, APIInteraction };
