/**
 * Button ids. Every button on a result carries the job id and the action, nothing else: what the
 * button does is resolved from the database when it is clicked, so buttons on any earlier result
 * keep working after restarts, and a forged or stale id gets a polite refusal instead of acting.
 * Format `at1:<code>:<jobId>[:<index>]` (≤ 100 characters, Discord's custom_id limit).
 *
 * A remix form (the prompt form a Reroll or V button opens for someone with `/settings remix:true`)
 * carries the button it stands for the same way, as `at1f:<code>:<jobId>[:<index>]` (a Discord
 * modal's custom_id, a Slack view's callback_id, a playground form's id).
 */

export type ButtonAction =
  | 'single'
  | 'variation'
  | 'varySubtle'
  | 'varyStrong'
  | 'reroll'
  | 'upscale'
  | 'share'
  | 'delete'
  | 'cancel';

const CODES: Record<ButtonAction, string> = {
  single: 'u',
  variation: 'v',
  varySubtle: 'l',
  varyStrong: 'h',
  reroll: 'r',
  upscale: 'x',
  share: 's',
  delete: 'd',
  cancel: 'c',
};
const ACTIONS = new Map(Object.entries(CODES).map(([action, code]) => [code, action as ButtonAction]));
const PREFIX = 'at1';
const FORM_PREFIX = 'at1f';

export interface ButtonRef {
  action: ButtonAction;
  jobId: string;
  /** 0-based image index, for actions on one image of a grid. */
  index?: number;
}

export function encodeButton(ref: ButtonRef): string {
  return encode(PREFIX, ref);
}

/** The button a custom id names, or undefined for anything that is not one of ours. */
export function decodeButton(id: string): ButtonRef | undefined {
  return decode(PREFIX, id);
}

/** The id of the remix form that `ref`'s button opens. */
export function encodeForm(ref: ButtonRef): string {
  return encode(FORM_PREFIX, ref);
}

/** The button a remix form stands for, or undefined for anything that is not one of ours. */
export function decodeForm(id: string): ButtonRef | undefined {
  return decode(FORM_PREFIX, id);
}

function encode(prefix: string, ref: ButtonRef): string {
  const index = ref.index === undefined ? '' : `:${ref.index}`;
  return `${prefix}:${CODES[ref.action]}:${ref.jobId}${index}`;
}

function decode(prefix: string, id: string): ButtonRef | undefined {
  const match = /^([a-z0-9]+):([a-z]):([0-9A-Za-z]{1,40})(?::(\d{1,2}))?$/.exec(id);
  if (!match || match[1] !== prefix) return undefined;
  const [, , code, jobId, index] = match;
  const action = ACTIONS.get(code!);
  if (!action) return undefined;
  return { action, jobId: jobId!, ...(index === undefined ? {} : { index: Number(index) }) };
}
