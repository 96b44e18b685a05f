/**
 * Discord's documented message limits — the ones an image bot runs into — checked the way the
 * API does, with its 50035 field errors:
 * content ≤ 2000 chars; ≤ 10 embeds, ≤ 6000 chars in all, title ≤ 256, description ≤ 4096,
 * ≤ 25 fields; ≤ 5 action rows of ≤ 5 buttons; custom_id 1–100 chars, unique per message;
 * label ≤ 80; link buttons need a url and no custom_id; ≤ 10 attachments.
 */
import { ButtonStyle, ComponentType, MessageFlags } from 'discord-api-types/v10';
import { type FieldPath, FormErrors, LengthErrors } from './errors.js';

export const MESSAGE_LIMITS = {
  content: 2000,
  embeds: 10,
  embedTotal: 6000,
  embedTitle: 256,
  embedDescription: 4096,
  embedFields: 25,
  actionRows: 5,
  rowComponents: 5,
  customId: 100,
  buttonLabel: 80,
  attachments: 10,
} as const;

type Json = Record<string, unknown>;

export function validateMessageBody(body: Json, errors = new FormErrors()): FormErrors {
  const add = (path: FieldPath, e: { code: string; message: string }) => errors.add(path, e.code, e.message);

  if (body.content !== undefined && body.content !== null) {
    if (typeof body.content !== 'string')
      add(['content'], { code: 'STRING_TYPE_CONVERT', message: 'Could not interpret as string.' });
    else if (body.content.length > MESSAGE_LIMITS.content)
      add(['content'], LengthErrors.atMost(MESSAGE_LIMITS.content));
  }

  if (Array.isArray(body.embeds)) {
    if (body.embeds.length > MESSAGE_LIMITS.embeds)
      add(['embeds'], LengthErrors.atMost(MESSAGE_LIMITS.embeds));
    let total = 0;
    body.embeds.forEach((embed: Json, i) => {
      const text = (value: unknown) => (typeof value === 'string' ? value.length : 0);
      if (text(embed.title) > MESSAGE_LIMITS.embedTitle)
        add(['embeds', i, 'title'], LengthErrors.atMost(256));
      if (text(embed.description) > MESSAGE_LIMITS.embedDescription)
        add(['embeds', i, 'description'], LengthErrors.atMost(4096));
      const fields = Array.isArray(embed.fields) ? (embed.fields as Json[]) : [];
      if (fields.length > MESSAGE_LIMITS.embedFields) add(['embeds', i, 'fields'], LengthErrors.atMost(25));
      total +=
        text(embed.title) +
        text(embed.description) +
        text((embed.footer as Json | undefined)?.text) +
        text((embed.author as Json | undefined)?.name) +
        fields.reduce((sum, f) => sum + text(f.name) + text(f.value), 0);
    });
    if (total > MESSAGE_LIMITS.embedTotal) {
      add(['embeds'], { code: 'BASE_TYPE_MAX_LENGTH', message: 'Embed size exceeds maximum size of 6000' });
    }
  }

  const flags = typeof body.flags === 'number' ? body.flags : 0;
  // Components v2 layouts are accepted as they are; the classic action rows are checked.
  if (Array.isArray(body.components) && (flags & MessageFlags.IsComponentsV2) === 0) {
    validateActionRows(body.components as Json[], add);
  }
  return errors;
}

function validateActionRows(
  rows: Json[],
  add: (path: FieldPath, e: { code: string; message: string }) => void,
): void {
  if (rows.length > MESSAGE_LIMITS.actionRows)
    add(['components'], LengthErrors.atMost(MESSAGE_LIMITS.actionRows));
  const seen = new Set<string>();
  rows.forEach((row, r) => {
    if (row.type !== ComponentType.ActionRow) {
      add(['components', r, 'type'], {
        code: 'UNION_TYPE_CHOICES',
        message: 'Value of field "type" must be one of (1,).',
      });
      return;
    }
    const children = Array.isArray(row.components) ? (row.components as Json[]) : [];
    if (children.length === 0 || children.length > MESSAGE_LIMITS.rowComponents) {
      add(['components', r, 'components'], LengthErrors.between(1, MESSAGE_LIMITS.rowComponents));
    }
    children.forEach((component, c) => {
      const path = ['components', r, 'components', c];
      if (component.type !== ComponentType.Button) return;
      const isLink = component.style === ButtonStyle.Link;
      if (typeof component.label === 'string' && component.label.length > MESSAGE_LIMITS.buttonLabel) {
        add([...path, 'label'], LengthErrors.atMost(MESSAGE_LIMITS.buttonLabel));
      }
      if (isLink) {
        if (typeof component.url !== 'string') add([...path, 'url'], LengthErrors.required());
        if (component.custom_id !== undefined) {
          add([...path, 'custom_id'], {
            code: 'BUTTON_LINK_CUSTOM_ID',
            message: 'A link button cannot have a custom_id.',
          });
        }
        return;
      }
      if (component.style === ButtonStyle.Premium) return;
      const customId = component.custom_id;
      if (typeof customId !== 'string') {
        add([...path, 'custom_id'], LengthErrors.required());
      } else if (customId.length < 1 || customId.length > MESSAGE_LIMITS.customId) {
        add([...path, 'custom_id'], LengthErrors.between(1, MESSAGE_LIMITS.customId));
      } else if (seen.has(customId)) {
        add([...path, 'custom_id'], {
          code: 'COMPONENT_CUSTOM_ID_DUPLICATED',
          message: 'Component custom id cannot be duplicated',
        });
      } else {
        seen.add(customId);
      }
    });
  });
}
