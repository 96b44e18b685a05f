/**
 * ChatForm → a Discord modal (interaction callback type 9), and the submitted values back. Each
 * field is a Text Input inside a Label (the layout Discord documents now; action rows in modals
 * are deprecated), within Discord's limits: title and labels ≤ 45 characters, ≤ 5 fields, text
 * ≤ 4000 characters, custom ids ≤ 100.
 * @see https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-response-object-modal
 * @see https://discord.com/developers/docs/components/reference#text-input
 */
import {
  type APIModalInteractionResponseCallbackData,
  ComponentType,
  type ModalSubmitInteraction,
  TextInputStyle,
} from 'discord.js';
import type { ChatForm } from '../../commands/types.js';

export const MODAL_LIMITS = {
  title: 45,
  label: 45,
  fields: 5,
  text: 4000,
  placeholder: 100,
  customId: 100,
} as const;

const cut = (text: string, max: number) =>
  [...text].length <= max ? text : `${[...text].slice(0, max - 1).join('')}…`;

export function renderModal(form: ChatForm): APIModalInteractionResponseCallbackData {
  if (form.id.length > MODAL_LIMITS.customId) {
    throw new TypeError(
      `Expected a form id of at most ${MODAL_LIMITS.customId} characters, got ${form.id.length}`,
    );
  }
  return {
    custom_id: form.id,
    title: cut(form.title, MODAL_LIMITS.title),
    components: form.fields.slice(0, MODAL_LIMITS.fields).map((field) => {
      const maxLength = Math.min(field.maxLength ?? MODAL_LIMITS.text, MODAL_LIMITS.text);
      // A prefilled value longer than the input allows would be refused: it is cut to fit.
      const value = field.value === undefined ? undefined : [...field.value].slice(0, maxLength).join('');
      return {
        type: ComponentType.Label,
        label: cut(field.label, MODAL_LIMITS.label),
        component: {
          type: ComponentType.TextInput,
          custom_id: field.id,
          style: field.multiline ? TextInputStyle.Paragraph : TextInputStyle.Short,
          required: field.required ?? false,
          max_length: maxLength,
          ...(field.required ? { min_length: 1 } : {}),
          ...(value ? { value } : {}),
          ...(field.placeholder ? { placeholder: cut(field.placeholder, MODAL_LIMITS.placeholder) } : {}),
        },
      };
    }),
  };
}

/** The text of every text input of a submitted modal, by custom id. */
export function submittedValues(interaction: Pick<ModalSubmitInteraction, 'fields'>): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [customId, field] of interaction.fields.fields) {
    if (field.type === ComponentType.TextInput) values[customId] = field.value;
  }
  return values;
}
