import type { APIEmbed, APIMessageTopLevelComponent } from 'discord-api-types/v10';
import type { NewFile } from '../state.js';
import type { SimMessage } from '../types.js';
import { DiscordErrors, FormErrors, LengthErrors } from './errors.js';
import { MESSAGE_LIMITS, validateMessageBody } from './message-validation.js';
import type { RequestContext } from './routes.js';

export interface MessageBody {
  content?: string;
  embeds?: APIEmbed[];
  components?: APIMessageTopLevelComponent[];
  flags?: number;
  files: NewFile[];
  /** Existing attachment ids listed in `attachments` (edits); undefined when the field was absent. */
  keepAttachmentIds?: string[];
  referencedMessageId?: string;
}

type Json = Record<string, unknown>;

/**
 * Reads a message create/edit body — JSON, or multipart with `payload_json` + `files[n]` — the
 * way Discord does: `attachments[].id` is either `n` (describing the upload `files[n]`) or the
 * id of an existing attachment to keep. Enforces the upload cap (413 / 40005), ≤ 10 attachments
 * and the message limits (50035).
 */
export function readMessageBody(ctx: RequestContext, uploadLimitBytes: number): MessageBody {
  const body = (ctx.body ?? {}) as Json;
  if (typeof body !== 'object' || Array.isArray(body)) {
    const errors = new FormErrors();
    errors.add([], 'DICT_TYPE_CONVERT', 'Only dictionaries may be used in a DictType');
    throw DiscordErrors.invalidFormBody(errors);
  }
  const totalBytes = ctx.files.reduce((sum, f) => sum + f.data.length, 0);
  if (totalBytes > uploadLimitBytes) throw DiscordErrors.requestTooLarge();

  const errors = validateMessageBody(body);
  const descriptors = Array.isArray(body.attachments) ? (body.attachments as Json[]) : undefined;
  const files: NewFile[] = ctx.files.map((part) => {
    const index = /\[(\d+)\]$/.exec(part.field)?.[1] ?? /^file(\d+)$/.exec(part.field)?.[1];
    const descriptor = descriptors?.find((d) => index !== undefined && String(d.id) === index);
    return {
      part,
      filename: typeof descriptor?.filename === 'string' ? descriptor.filename : part.filename,
      description: typeof descriptor?.description === 'string' ? descriptor.description : undefined,
    };
  });
  const keepAttachmentIds = descriptors
    ?.map((d) => String(d.id))
    .filter((id) => !ctx.files.some((f) => f.field.endsWith(`[${id}]`)));
  if (
    files.length > MESSAGE_LIMITS.attachments ||
    (keepAttachmentIds?.length ?? 0) + files.length > MESSAGE_LIMITS.attachments
  ) {
    errors.add(
      ['attachments'],
      LengthErrors.atMost(MESSAGE_LIMITS.attachments).code,
      LengthErrors.atMost(10).message,
    );
  }
  errors.throwIfAny();

  const reference = body.message_reference as Json | undefined;
  return {
    ...(body.content !== undefined ? { content: typeof body.content === 'string' ? body.content : '' } : {}),
    ...(body.embeds !== undefined ? { embeds: (body.embeds as APIEmbed[] | null) ?? [] } : {}),
    ...(body.components !== undefined
      ? { components: (body.components as APIMessageTopLevelComponent[] | null) ?? [] }
      : {}),
    ...(typeof body.flags === 'number' ? { flags: body.flags } : {}),
    files,
    ...(keepAttachmentIds ? { keepAttachmentIds } : {}),
    ...(typeof reference?.message_id === 'string' ? { referencedMessageId: reference.message_id } : {}),
  };
}

/** Discord refuses a message with nothing to show (50006), on create and when an edit would empty it. */
export function assertNotEmpty(result: {
  content: string;
  embeds: unknown[];
  components: unknown[];
  attachments: number;
}): void {
  if (
    !result.content &&
    result.embeds.length === 0 &&
    result.components.length === 0 &&
    result.attachments === 0
  ) {
    throw DiscordErrors.emptyMessage();
  }
}

/** What an edit would leave, to check emptiness before applying it. */
export function afterEdit(message: SimMessage, body: MessageBody) {
  const kept =
    body.keepAttachmentIds === undefined
      ? message.attachments.length
      : message.attachments.filter((a) => body.keepAttachmentIds!.includes(a.id)).length;
  return {
    content: body.content ?? message.content,
    embeds: body.embeds ?? message.embeds,
    components: body.components ?? message.components,
    attachments: kept + body.files.length,
  };
}

export function asCreated(body: MessageBody) {
  return {
    content: body.content ?? '',
    embeds: body.embeds ?? [],
    components: body.components ?? [],
    attachments: body.files.length,
  };
}
