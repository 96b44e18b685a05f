/**
 * Modals: `views.open` checked as Slack checks a view, the views people have open, and what Slack
 * sends when one is submitted (a `view_submission` interactive payload; the ack may answer with
 * `response_action: errors` to keep the modal open with messages under its inputs).
 * @see https://docs.slack.dev/reference/methods/views.open
 * @see https://docs.slack.dev/reference/views/modal-views
 * @see https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload#view_submission
 */
import { randomBytes } from 'node:crypto';
import { slackId } from './ids.js';
import { VERIFICATION_TOKEN } from './payloads.js';
import type { SlackState } from './state.js';
import type { SlackUser } from './types.js';

/** A plain_text_input of an open modal, as the person sees it. */
export interface SlackViewInput {
  blockId: string;
  actionId: string;
  label: string;
  optional: boolean;
  multiline: boolean;
  initialValue: string | undefined;
  minLength: number;
  maxLength: number;
}

export interface SlackView {
  id: string;
  /** Whose screen it is on: the person whose trigger_id opened it. */
  user: string;
  callbackId: string;
  title: string;
  submit: string | undefined;
  privateMetadata: string;
  inputs: SlackViewInput[];
  /** The view as the bot sent it (with the fields Slack adds). */
  json: Record<string, unknown>;
  /** `open` until submitted (and accepted) or closed. */
  state: 'open' | 'submitted';
  /** Messages under inputs, by block id, from the last `response_action: errors` ack. */
  errors: Record<string, string>;
}

/** Slack's modal limits (Modal views reference and Block Kit). */
export const VIEW_LIMITS = {
  title: 24,
  button: 24,
  blocks: 100,
  callbackId: 255,
  privateMetadata: 3000,
  inputLabel: 2000,
  inputMaxLength: 3000,
  actionId: 255,
  blockId: 255,
  placeholder: 150,
} as const;

/** Why `views.open` refuses a view: the messages Slack puts in `response_metadata.messages`. */
export function viewProblems(view: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const at = (pointer: string, message: string) =>
    problems.push(`[ERROR] ${message} [json-pointer:/view${pointer}]`);
  const plainText = (value: unknown, pointer: string, max: number, required: boolean) => {
    if (value === undefined) {
      if (required) at(pointer, 'must provide an object');
      return;
    }
    const object = value as { type?: unknown; text?: unknown };
    if (object?.type !== 'plain_text') at(`${pointer}/type`, 'must be plain_text');
    if (typeof object?.text !== 'string' || object.text.length === 0)
      at(`${pointer}/text`, 'must be more than 0 characters');
    else if (object.text.length > max) at(`${pointer}/text`, `must be less than ${max + 1} characters`);
  };
  if (view.type !== 'modal') at('/type', 'must be modal');
  plainText(view.title, '/title', VIEW_LIMITS.title, true);
  plainText(view.close, '/close', VIEW_LIMITS.button, false);
  plainText(view.submit, '/submit', VIEW_LIMITS.button, false);
  if (typeof view.callback_id === 'string' && view.callback_id.length > VIEW_LIMITS.callbackId)
    at('/callback_id', `must be less than ${VIEW_LIMITS.callbackId + 1} characters`);
  if (typeof view.private_metadata === 'string' && view.private_metadata.length > VIEW_LIMITS.privateMetadata)
    at('/private_metadata', `must be less than ${VIEW_LIMITS.privateMetadata + 1} characters`);
  const blocks = Array.isArray(view.blocks) ? (view.blocks as Record<string, unknown>[]) : undefined;
  if (!blocks) at('/blocks', 'must provide an array');
  else if (blocks.length > VIEW_LIMITS.blocks)
    at('/blocks', `must provide no more than ${VIEW_LIMITS.blocks} items`);
  const ids = new Set<string>();
  (blocks ?? []).forEach((block, i) => {
    if (typeof block.block_id === 'string') {
      if (ids.has(block.block_id)) at(`/blocks/${i}/block_id`, 'must be unique');
      ids.add(block.block_id);
    }
    if (block.type !== 'input') return;
    // A modal with inputs needs a submit button to send them.
    if (view.submit === undefined) at('/submit', 'must be provided when the view has input blocks');
    plainText(block.label, `/blocks/${i}/label`, VIEW_LIMITS.inputLabel, true);
    const element = (block.element ?? {}) as Record<string, unknown>;
    if (element.type !== 'plain_text_input') {
      at(`/blocks/${i}/element/type`, 'must be plain_text_input (the only input the simulator models)');
      return;
    }
    if (typeof element.action_id !== 'string' || element.action_id.length > VIEW_LIMITS.actionId)
      at(`/blocks/${i}/element/action_id`, `must be 1 to ${VIEW_LIMITS.actionId} characters`);
    const max = element.max_length;
    if (max !== undefined && (typeof max !== 'number' || max < 1 || max > VIEW_LIMITS.inputMaxLength))
      at(`/blocks/${i}/element/max_length`, `must be between 1 and ${VIEW_LIMITS.inputMaxLength}`);
    const initial = element.initial_value;
    if (
      initial !== undefined &&
      (typeof initial !== 'string' || initial.length > ((max as number) ?? VIEW_LIMITS.inputMaxLength))
    )
      at(`/blocks/${i}/element/initial_value`, 'must not be longer than max_length');
    if (element.placeholder !== undefined)
      plainText(element.placeholder, `/blocks/${i}/element/placeholder`, VIEW_LIMITS.placeholder, false);
  });
  return problems;
}

/** The view as Slack returns it and remembers it for a person. */
export function openView(state: SlackState, json: Record<string, unknown>, user: string): SlackView {
  const id = slackId('V');
  const full = {
    id,
    team_id: state.teamId,
    type: 'modal',
    private_metadata: '',
    callback_id: '',
    state: { values: {} },
    hash: `${Math.floor(Date.now() / 1000)}.${randomBytes(4).toString('hex')}`,
    clear_on_close: false,
    notify_on_close: false,
    root_view_id: id,
    previous_view_id: null,
    app_id: state.appId,
    external_id: '',
    app_installed_team_id: state.teamId,
    bot_id: state.botId,
    ...json,
  } as Record<string, unknown>;
  const blocks = (full.blocks as Record<string, unknown>[]) ?? [];
  const inputs: SlackViewInput[] = [];
  blocks.forEach((block, i) => {
    if (block.type !== 'input') return;
    // Slack gives blocks without a block_id one of its own.
    if (typeof block.block_id !== 'string') block.block_id = `b${i}${randomBytes(2).toString('hex')}`;
    const element = block.element as Record<string, unknown>;
    inputs.push({
      blockId: block.block_id as string,
      actionId: element.action_id as string,
      label: (block.label as { text: string }).text,
      optional: block.optional === true,
      multiline: element.multiline === true,
      initialValue: element.initial_value as string | undefined,
      minLength: (element.min_length as number | undefined) ?? 0,
      maxLength: (element.max_length as number | undefined) ?? VIEW_LIMITS.inputMaxLength,
    });
  });
  return {
    id,
    user,
    callbackId: String(full.callback_id),
    title: (full.title as { text: string }).text,
    submit: (full.submit as { text: string } | undefined)?.text,
    privateMetadata: String(full.private_metadata),
    inputs,
    json: full,
    state: 'open',
    errors: {},
  };
}

/**
 * What Slack sends when `user` submits `view` with `values` (by action id; inputs left out keep
 * their initial text): the `view_submission` payload, or why Slack's client would not send it.
 */
export function viewSubmission(
  state: SlackState,
  teamDomain: string,
  view: SlackView,
  user: SlackUser,
  values: Readonly<Record<string, string>>,
): { payload: Record<string, unknown> } | { problem: string } {
  for (const actionId of Object.keys(values)) {
    if (!view.inputs.some((input) => input.actionId === actionId))
      return {
        problem: `the modal has no input "${actionId}" (inputs: ${view.inputs.map((i) => i.actionId).join(', ')})`,
      };
  }
  const stateValues: Record<string, Record<string, unknown>> = {};
  for (const input of view.inputs) {
    const value = values[input.actionId] ?? input.initialValue ?? '';
    // Slack's client checks required inputs and lengths before it sends anything.
    if (!input.optional && value.trim().length === 0) return { problem: `"${input.label}" is required` };
    if (value.length > input.maxLength || (value.length > 0 && value.length < input.minLength))
      return {
        problem: `"${input.label}" takes ${input.minLength}–${input.maxLength} characters, not ${value.length}`,
      };
    if (!input.multiline && value.includes('\n')) return { problem: `"${input.label}" is one line` };
    stateValues[input.blockId] = {
      [input.actionId]: { type: 'plain_text_input', value: value.length > 0 ? value : null },
    };
  }
  return {
    payload: {
      type: 'view_submission',
      team: { id: state.teamId, domain: teamDomain },
      user: { id: user.id, username: user.name, name: user.name, team_id: state.teamId },
      api_app_id: state.appId,
      token: VERIFICATION_TOKEN,
      trigger_id: '',
      view: { ...view.json, state: { values: stateValues } },
      response_urls: [],
      is_enterprise_install: false,
      enterprise: null,
    },
  };
}
