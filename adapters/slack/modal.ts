/**
 * ChatForm → a Slack modal (views.open), and a `view_submission` back to the form's id, values
 * and conversation. A modal does not know where it was opened from, so the conversation (channel,
 * thread) rides in `private_metadata`. Slack's limits: title and buttons ≤ 24 characters,
 * plain_text_input ≤ 3,000 characters, private_metadata ≤ 3,000.
 * @see https://docs.slack.dev/reference/views/modal-views
 * @see https://docs.slack.dev/reference/block-kit/block-elements/plain-text-input-element
 */
import type { types, ViewOutput } from '@slack/bolt';
import type { ChatForm } from '../../commands/types.js';
import type { ReplyTarget } from '../../src/jobs/types.js';

export const MODAL_LIMITS = {
  title: 24,
  button: 24,
  label: 2000,
  text: 3000,
  placeholder: 150,
  callbackId: 255,
} as const;

const cut = (text: string, max: number) =>
  [...text].length <= max ? text : `${[...text].slice(0, max - 1).join('')}…`;

/** Where the form's answers go, as the modal carries it. */
interface Metadata {
  c: string;
  t?: string;
}

export function renderModal(
  form: ChatForm,
  where: Pick<ReplyTarget, 'channelId' | 'threadId'>,
): types.ModalView {
  if (form.id.length > MODAL_LIMITS.callbackId) {
    throw new TypeError(
      `Expected a form id of at most ${MODAL_LIMITS.callbackId} characters, got ${form.id.length}`,
    );
  }
  const metadata: Metadata = { c: where.channelId, ...(where.threadId ? { t: where.threadId } : {}) };
  return {
    type: 'modal',
    callback_id: form.id,
    title: { type: 'plain_text', text: cut(form.title, MODAL_LIMITS.title) },
    submit: { type: 'plain_text', text: cut(form.submitLabel, MODAL_LIMITS.button) },
    close: { type: 'plain_text', text: 'Cancel' },
    private_metadata: JSON.stringify(metadata),
    blocks: form.fields.map((field) => {
      const maxLength = Math.min(field.maxLength ?? MODAL_LIMITS.text, MODAL_LIMITS.text);
      const value = field.value === undefined ? undefined : [...field.value].slice(0, maxLength).join('');
      return {
        type: 'input',
        block_id: field.id,
        label: { type: 'plain_text', text: cut(field.label, MODAL_LIMITS.label) },
        optional: !field.required,
        element: {
          type: 'plain_text_input',
          action_id: field.id,
          multiline: field.multiline ?? false,
          max_length: maxLength,
          ...(value ? { initial_value: value } : {}),
          ...(field.placeholder
            ? { placeholder: { type: 'plain_text', text: cut(field.placeholder, MODAL_LIMITS.placeholder) } }
            : {}),
        },
      } satisfies types.InputBlock;
    }),
  };
}

/** A submitted modal: the form's id, its values by field id, and the conversation it belongs to. */
export function readSubmission(
  view: ViewOutput,
): { formId: string; values: Record<string, string>; channelId: string; threadId?: string } | undefined {
  let metadata: Partial<Metadata>;
  try {
    metadata = JSON.parse(view.private_metadata) as Partial<Metadata>;
  } catch {
    return undefined;
  }
  if (typeof metadata.c !== 'string' || metadata.c === '') return undefined;
  const values: Record<string, string> = {};
  for (const block of Object.values(view.state.values)) {
    for (const [actionId, input] of Object.entries(block)) {
      if (input.type === 'plain_text_input') values[actionId] = input.value ?? '';
    }
  }
  return {
    formId: view.callback_id,
    values,
    channelId: metadata.c,
    ...(typeof metadata.t === 'string' ? { threadId: metadata.t } : {}),
  };
}
