/**
 * Modals (interaction callback type 9 MODAL) as Discord checks them, and what Discord's client sends
 * back when a person submits one (an INTERACTION_CREATE of type 5 MODAL_SUBMIT).
 * @see https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-response-object-modal
 * @see https://discord.com/developers/docs/components/reference#label
 * @see https://discord.com/developers/docs/components/reference#text-input
 */
import { ComponentType, TextInputStyle } from 'discord-api-types/v10';
import { type FieldPath, FormErrors, LengthErrors } from './errors.js';

/** One text input of an open modal, as the person sees it. */
export interface SimTextInput {
  customId: string;
  /** The Label's text (or, in a legacy action row, the input's own `label`). */
  label: string;
  style: TextInputStyle;
  required: boolean;
  minLength: number;
  maxLength: number;
  /** Prefilled text. */
  value: string | undefined;
  placeholder: string | undefined;
}

export interface SimModal {
  customId: string;
  title: string;
  inputs: SimTextInput[];
}

const MAX_COMPONENTS = 5;
const TEXT_MAX = 4000;

function text(
  errors: FormErrors,
  path: FieldPath,
  value: unknown,
  min: number,
  max: number,
  required: boolean,
): string | undefined {
  if (value === undefined || value === null) {
    if (required) errors.add(path, LengthErrors.required().code, LengthErrors.required().message);
    return undefined;
  }
  if (typeof value !== 'string' || value.length < min || value.length > max) {
    const e = min > 0 ? LengthErrors.between(min, max) : LengthErrors.atMost(max);
    errors.add(path, e.code, e.message);
    return undefined;
  }
  return value;
}

function int(
  errors: FormErrors,
  path: FieldPath,
  value: unknown,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    errors.add(path, 'NUMBER_TYPE_MAX', `int value should be between ${min} and ${max}.`);
    return undefined;
  }
  return value;
}

/** Checks a type 9 callback's `data` (50035 with Discord's field paths); the modal as shown. */
export function readModal(data: unknown): SimModal {
  const errors = new FormErrors();
  const body = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
  const customId = text(errors, ['data', 'custom_id'], body.custom_id, 1, 100, true);
  const title = text(errors, ['data', 'title'], body.title, 1, 45, true);
  const components = Array.isArray(body.components) ? (body.components as unknown[]) : undefined;
  const inputs: SimTextInput[] = [];
  if (!components || components.length < 1 || components.length > MAX_COMPONENTS) {
    const e = LengthErrors.between(1, MAX_COMPONENTS);
    errors.add(['data', 'components'], e.code, e.message);
  } else {
    components.forEach((raw, i) => {
      const component = (raw ?? {}) as Record<string, unknown>;
      const path = ['data', 'components', i];
      if (component.type === ComponentType.Label) {
        const label = text(errors, [...path, 'label'], component.label, 1, 45, true);
        text(errors, [...path, 'description'], component.description, 0, 100, false);
        const input = (component.component ?? {}) as Record<string, unknown>;
        if (input.label !== undefined) {
          // Inside a Label the input has no label of its own (the field is deprecated).
          errors.add(
            [...path, 'component', 'label'],
            'COMPONENT_INVALID_FIELD',
            'Label is not allowed here.',
          );
        }
        const read = readTextInput(errors, [...path, 'component'], input, label ?? '');
        if (read) inputs.push(read);
      } else if (component.type === ComponentType.ActionRow) {
        // The legacy layout: one text input per action row, labelled by itself.
        const row = Array.isArray(component.components) ? (component.components as unknown[]) : [];
        if (row.length !== 1) {
          const e = LengthErrors.between(1, 1);
          errors.add([...path, 'components'], e.code, e.message);
          return;
        }
        const input = (row[0] ?? {}) as Record<string, unknown>;
        const label = text(errors, [...path, 'components', 0, 'label'], input.label, 1, 45, true);
        const read = readTextInput(errors, [...path, 'components', 0], input, label ?? '');
        if (read) inputs.push(read);
      } else {
        errors.add(
          [...path, 'type'],
          'UNION_TYPE_CHOICES',
          'Value of field "type" must be one of (1, 10, 18).',
        );
      }
    });
  }
  const ids = inputs.map((input) => input.customId);
  ids.forEach((id, i) => {
    if (ids.indexOf(id) !== i)
      errors.add(
        ['data', 'components'],
        'COMPONENT_CUSTOM_ID_DUPLICATED',
        'Component custom id cannot be duplicated',
      );
  });
  errors.throwIfAny();
  return { customId: customId!, title: title!, inputs };
}

function readTextInput(
  errors: FormErrors,
  path: FieldPath,
  input: Record<string, unknown>,
  label: string,
): SimTextInput | undefined {
  if (input.type !== ComponentType.TextInput) {
    errors.add(
      [...path, 'type'],
      'UNION_TYPE_CHOICES',
      'Value of field "type" must be one of (3, 4, 5, 6, 7, 8, 19).',
    );
    return undefined;
  }
  const customId = text(errors, [...path, 'custom_id'], input.custom_id, 1, 100, true);
  if (input.style !== TextInputStyle.Short && input.style !== TextInputStyle.Paragraph) {
    errors.add([...path, 'style'], 'BASE_TYPE_CHOICES', 'Value must be one of (1, 2).');
  }
  const minLength = int(errors, [...path, 'min_length'], input.min_length, 0, TEXT_MAX) ?? 0;
  const maxLength = int(errors, [...path, 'max_length'], input.max_length, 1, TEXT_MAX) ?? TEXT_MAX;
  const value = text(errors, [...path, 'value'], input.value, 0, TEXT_MAX, false);
  if (value !== undefined && value.length > maxLength) {
    const e = LengthErrors.atMost(maxLength);
    errors.add([...path, 'value'], e.code, e.message);
  }
  const placeholder = text(errors, [...path, 'placeholder'], input.placeholder, 0, 100, false);
  if (input.required !== undefined && typeof input.required !== 'boolean') {
    errors.add([...path, 'required'], 'BASE_TYPE_BOOLEAN', 'Must be either true or false.');
  }
  if (!customId) return undefined;
  return {
    customId,
    label,
    style: input.style as TextInputStyle,
    required: input.required !== false,
    minLength,
    maxLength,
    value,
    placeholder,
  };
}

/**
 * What Discord's client sends for a submitted modal: the text of every input (prefilled text where
 * the person typed nothing new), each in its Label, as `data.components`. The client refuses to
 * submit what breaks the inputs' rules, so a test that asks for that gets a usage error.
 */
export function modalSubmitData(
  modal: SimModal,
  values: Readonly<Record<string, string>>,
): { custom_id: string; components: Record<string, unknown>[] } | { problem: string } {
  for (const id of Object.keys(values)) {
    if (!modal.inputs.some((input) => input.customId === id))
      return {
        problem: `the modal has no input "${id}" (inputs: ${modal.inputs.map((i) => i.customId).join(', ')})`,
      };
  }
  const components: Record<string, unknown>[] = [];
  let id = 1;
  for (const input of modal.inputs) {
    const value = values[input.customId] ?? input.value ?? '';
    if (input.required && value.length === 0) return { problem: `"${input.label}" is required` };
    if (value.length > 0 && (value.length < input.minLength || value.length > input.maxLength)) {
      return {
        problem: `"${input.label}" takes ${input.minLength}–${input.maxLength} characters, not ${value.length}`,
      };
    }
    if (input.style === TextInputStyle.Short && value.includes('\n'))
      return { problem: `"${input.label}" is one line; it cannot hold a newline` };
    components.push({
      type: ComponentType.Label,
      id: id++,
      component: { type: ComponentType.TextInput, id: id++, custom_id: input.customId, value },
    });
  }
  return { custom_id: modal.customId, components };
}
