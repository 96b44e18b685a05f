/**
 * Button ids. Every button on a result carries the job id and the action, nothing else: what the
 * button does is resolved from the database when it is clicked, so buttons on any earlier result
 * keep working after restarts, and a forged or stale id gets a polite refusal instead of acting.
 * Format `at1:<code>:<jobId>[:<index>]` (≤ 100 characters, Discord's custom_id limit).
 */

export type ButtonAction = 'single' | 'variation' | 'reroll' | 'upscale' | 'share' | 'delete' | 'cancel';

const CODES: Record<ButtonAction, string> = {
  single: 'u',
  variation: 'v',
  reroll: 'r',
  upscale: 'x',
  share: 's',
  delete: 'd',
  cancel: 'c',
};
const ACTIONS = new Map(Object.entries(CODES).map(([action, code]) => [code, action as ButtonAction]));
const PREFIX = 'at1';

export interface ButtonRef {
  action: ButtonAction;
  jobId: string;
  /** 0-based image index, for actions on one image of a grid. */
  index?: number;
}

export function encodeButton(ref: ButtonRef): string {
  const index = ref.index === undefined ? '' : `:${ref.index}`;
  return `${PREFIX}:${CODES[ref.action]}:${ref.jobId}${index}`;
}

/** The button a custom id names, or undefined for anything that is not one of ours. */
export function decodeButton(id: string): ButtonRef | undefined {
  const match = /^at1:([a-z]):([0-9A-Za-z]{1,40})(?::(\d{1,2}))?$/.exec(id);
  if (!match) return undefined;
  const action = ACTIONS.get(match[1]);
  if (!action) return undefined;
  return { action, jobId: match[2], ...(match[3] === undefined ? {} : { index: Number(match[3]) }) };
}
