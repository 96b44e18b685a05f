/** A workspace member, or the bot user. */
export interface SlackUser {
  id: string;
  name: string;
  realName: string;
  /** Workspace Admin (users.info `is_admin`; owners are admins too). */
  isAdmin: boolean;
  /** Workspace Owner (`is_owner`). */
  isOwner: boolean;
  /** The Primary Owner (`is_primary_owner`): one per workspace, an owner. */
  isPrimaryOwner: boolean;
  isBot: boolean;
}

export interface SlackChannel {
  id: string;
  /** null for DMs. */
  name: string | null;
  isPrivate: boolean;
  isIm: boolean;
  /** Member user ids, the bot included. */
  members: string[];
}

export interface SlackFile {
  id: string;
  filename: string;
  title: string;
  /** Byte count announced to files.getUploadURLExternal. */
  declaredLength: number;
  /** The uploaded bytes (undefined until the upload URL received them). */
  data: Buffer | undefined;
  altText: string | undefined;
  /** Messages the file was shared in by files.completeUploadExternal. */
  shares: { channel: string; ts: string }[];
  completed: boolean;
}

export interface SlackReaction {
  /** Emoji shortcode without colons, e.g. `arrows_counterclockwise`. */
  name: string;
  users: string[];
}

export interface SlackMessageRevision {
  at: number;
  text: string;
  blocks: SlackBlock[];
}

/** A Block Kit block, kept as the bot sent it. */
export type SlackBlock = Record<string, unknown> & { type: string; block_id?: string };

export interface SlackButton {
  actionId: string;
  blockId: string | undefined;
  text: string | undefined;
  value: string | undefined;
  style: string | undefined;
  url: string | undefined;
}

export interface SlackMessage {
  channel: string;
  ts: string;
  /** Author: the bot user or a person. */
  user: string;
  /** Set for messages the bot posted. */
  botId: string | null;
  text: string;
  blocks: SlackBlock[];
  /** Every button in the message's actions blocks and section accessories. */
  buttons: SlackButton[];
  threadTs: string | null;
  files: SlackFile[];
  reactions: SlackReaction[];
  createdAt: number;
  editedAt: number | null;
  history: SlackMessageRevision[];
  deleted: boolean;
}

/** A message only one user sees: chat.postEphemeral, an ephemeral response_url post, or an ack body. */
export interface SlackEphemeral {
  /** The ts chat.postEphemeral answered with (the action container id for clicks on it). */
  ts: string;
  channel: string;
  /** The only person who sees it. */
  user: string;
  text: string;
  blocks: SlackBlock[];
  buttons: SlackButton[];
  threadTs: string | null;
  source: 'chat.postEphemeral' | 'response_url' | 'ack';
  at: number;
  /** A response_url post with replace_original/delete_original changed or removed it. */
  replaced: boolean;
  deleted: boolean;
}

export interface ApiCallRecord {
  seq: number;
  /** Web API method (`chat.postMessage`), or `upload_url` for the files v2 upload step, or a response_url post. */
  method: string;
  /** Arguments as parsed (the token removed). */
  args: Record<string, unknown>;
  /** Which token came with it. */
  token: 'bot' | 'app' | 'invalid' | 'none';
  status: number;
  ok: boolean;
  error: string | null;
  at: number;
  injected: boolean;
}

/** `raw`: a signed body given as is (malformed or hostile requests). */
export type DeliveryKind =
  | 'slash_command'
  | 'block_actions'
  | 'view_submission'
  | 'event'
  | 'url_verification'
  | 'raw';

/** How the bot acknowledged one delivery. */
export interface AckRecord {
  /** HTTP status (HTTP mode); 200 for a Socket Mode ack; null when no answer came in time. */
  status: number | null;
  /** Response body (HTTP) or ack `payload` (Socket Mode), parsed as JSON when it is JSON. */
  body: unknown;
  /** Milliseconds from sending to the ack. */
  ackMs: number;
  /** Slack gives up after 3 s ("operation_timeout" for the user). */
  timedOut: boolean;
}
