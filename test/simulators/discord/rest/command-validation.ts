/**
 * Application command validation, per Discord's "Application Command Object" docs: names 1–32
 * chars matching `^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$` and lowercase for slash
 * commands; descriptions 1–100; ≤ 25 options; ≤ 25 choices, choice names 1–100, string values
 * ≤ 100; required options before optional ones; no choices with autocomplete; string lengths
 * 0–6000; ≤ 4000 characters per command in all. Errors use the codes Discord answers with.
 */
import { ApplicationCommandOptionType, ApplicationCommandType } from 'discord-api-types/v10';
import { type FieldPath, FormErrors, LengthErrors } from './errors.js';

export const COMMAND_LIMITS = {
  name: 32,
  description: 100,
  options: 25,
  choices: 25,
  choiceName: 100,
  choiceStringValue: 100,
  stringLength: 6000,
  totalCharacters: 4000,
  globalCommands: 100,
} as const;

const NAME_PATTERN = /^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u;

type Json = Record<string, unknown>;
type Add = (path: FieldPath, error: { code: string; message: string }) => void;

/** Validates one command body; `path` prefixes error keys (the index in a bulk PUT). */
export function validateCommand(command: Json, path: FieldPath, errors: FormErrors): void {
  const add: Add = (p, e) => errors.add([...path, ...p], e.code, e.message);
  const type = (command.type as number | undefined) ?? ApplicationCommandType.ChatInput;
  const isSlash = type === ApplicationCommandType.ChatInput;
  validateName(command.name, [], add, isSlash);
  if (isSlash) validateDescription(command.description, [], add);
  else if (command.description) add(['description'], LengthErrors.between(0, 0));
  const options = (command.options as Json[] | undefined) ?? [];
  if (!Array.isArray(options)) {
    add(['options'], { code: 'LIST_TYPE_CONVERT', message: 'Only iterables may be used in a ListType' });
    return;
  }
  validateOptions(options, ['options'], add, 0);
  if (commandSize(command) > COMMAND_LIMITS.totalCharacters) {
    add([], {
      code: 'APPLICATION_COMMAND_TOO_LARGE',
      message: `Command exceeds maximum size (${COMMAND_LIMITS.totalCharacters})`,
    });
  }
}

/** Validates a bulk overwrite: each command, plus unique names per type. */
export function validateCommandList(commands: unknown): FormErrors {
  const errors = new FormErrors();
  if (!Array.isArray(commands)) {
    errors.add([], 'LIST_TYPE_CONVERT', 'Only iterables may be used in a ListType');
    return errors;
  }
  const seen = new Set<string>();
  commands.forEach((command: Json, i) => {
    validateCommand(command, [i], errors);
    const key = `${command.type ?? 1}:${String(command.name)}`;
    if (seen.has(key))
      errors.add(
        [i, 'name'],
        'APPLICATION_COMMANDS_DUPLICATE_NAME',
        'Application command names must be unique',
      );
    seen.add(key);
  });
  const slashCount = commands.filter((c: Json) => (c.type ?? 1) === ApplicationCommandType.ChatInput).length;
  if (slashCount > COMMAND_LIMITS.globalCommands) {
    errors.add(
      [],
      LengthErrors.atMost(COMMAND_LIMITS.globalCommands).code,
      LengthErrors.atMost(COMMAND_LIMITS.globalCommands).message,
    );
  }
  return errors;
}

function validateName(name: unknown, path: FieldPath, add: Add, lowercaseRequired: boolean): void {
  if (typeof name !== 'string' || name.length === 0) {
    add([...path, 'name'], LengthErrors.required());
    return;
  }
  if (name.length > COMMAND_LIMITS.name) {
    add([...path, 'name'], LengthErrors.between(1, COMMAND_LIMITS.name));
    return;
  }
  if ((lowercaseRequired && !NAME_PATTERN.test(name)) || (lowercaseRequired && name !== name.toLowerCase())) {
    add([...path, 'name'], { code: 'APPLICATION_COMMAND_INVALID_NAME', message: 'Command name is invalid' });
  }
}

function validateDescription(description: unknown, path: FieldPath, add: Add): void {
  if (typeof description !== 'string' || description.length === 0) {
    add([...path, 'description'], LengthErrors.required());
    return;
  }
  if (description.length > COMMAND_LIMITS.description) {
    add([...path, 'description'], LengthErrors.between(1, COMMAND_LIMITS.description));
  }
}

function validateOptions(options: Json[], path: FieldPath, add: Add, depth: number): void {
  if (options.length > COMMAND_LIMITS.options) add(path, LengthErrors.atMost(COMMAND_LIMITS.options));
  const names = new Set<string>();
  let sawOptional = false;
  const isSub = (o: Json) =>
    o.type === ApplicationCommandOptionType.Subcommand ||
    o.type === ApplicationCommandOptionType.SubcommandGroup;
  const subs = options.filter(isSub).length;
  if (subs > 0 && subs < options.length) {
    add(path, {
      code: 'APPLICATION_COMMAND_OPTIONS_TYPE_INVALID',
      message: 'Sub-command and sub-command group option types are mutually exclusive to all other types',
    });
  }
  options.forEach((option, i) => {
    const at = [...path, i];
    validateName(option.name, at, add, true);
    validateDescription(option.description, at, add);
    const type = option.type as number;
    if (!Number.isInteger(type) || type < 1 || type > 11) {
      add([...at, 'type'], {
        code: 'BASE_TYPE_CHOICES',
        message: `Value must be one of {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}.`,
      });
    }
    if (typeof option.name === 'string') {
      if (names.has(option.name)) {
        add([...at, 'name'], {
          code: 'APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS',
          message: 'Option name already exists',
        });
      }
      names.add(option.name);
    }
    if (isSub(option)) {
      const nested = (option.options as Json[] | undefined) ?? [];
      const allowedDepth = type === ApplicationCommandOptionType.SubcommandGroup ? 0 : 1;
      if (
        depth > allowedDepth ||
        (type === ApplicationCommandOptionType.SubcommandGroup && nested.some((o) => o.type !== 1))
      ) {
        add([...at, 'options'], {
          code: 'APPLICATION_COMMAND_OPTIONS_TYPE_INVALID',
          message: 'Invalid nesting of sub-commands',
        });
      }
      validateOptions(nested, [...at, 'options'], add, depth + 1);
      return;
    }
    if (option.required === true && sawOptional) {
      add([...at, 'required'], {
        code: 'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID',
        message: 'Required options must be placed before non-required options',
      });
    }
    if (option.required !== true) sawOptional = true;
    validateChoices(option, at, add);
    validateRanges(option, at, add);
  });
}

function validateChoices(option: Json, at: FieldPath, add: Add): void {
  if (option.choices === undefined) return;
  const choices = option.choices as Json[];
  if (!Array.isArray(choices)) return;
  if (choices.length > COMMAND_LIMITS.choices)
    add([...at, 'choices'], LengthErrors.atMost(COMMAND_LIMITS.choices));
  if (option.autocomplete === true && choices.length > 0) {
    add([...at, 'autocomplete'], {
      code: 'APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_WITH_CHOICES',
      message: 'Autocomplete cannot be enabled on options that have choices',
    });
  }
  choices.forEach((choice, c) => {
    const name = choice.name;
    if (typeof name !== 'string' || name.length < 1 || name.length > COMMAND_LIMITS.choiceName) {
      add([...at, 'choices', c, 'name'], LengthErrors.between(1, COMMAND_LIMITS.choiceName));
    }
    const value = choice.value;
    if (option.type === ApplicationCommandOptionType.String) {
      if (typeof value !== 'string' || value.length < 1 || value.length > COMMAND_LIMITS.choiceStringValue) {
        add([...at, 'choices', c, 'value'], LengthErrors.between(1, COMMAND_LIMITS.choiceStringValue));
      }
    } else if (
      typeof value !== 'number' ||
      (option.type === ApplicationCommandOptionType.Integer && !Number.isInteger(value))
    ) {
      add([...at, 'choices', c, 'value'], {
        code: 'NUMBER_TYPE_COERCE',
        message: `Value "${String(value)}" is not int.`,
      });
    }
  });
}

function validateRanges(option: Json, at: FieldPath, add: Add): void {
  const {
    min_value: min,
    max_value: max,
    min_length: minLength,
    max_length: maxLength,
  } = option as Record<string, number | undefined>;
  if (min !== undefined && max !== undefined && min > max) {
    add([...at, 'min_value'], {
      code: 'NUMBER_TYPE_MAX',
      message: `int value should be less than or equal to ${max}.`,
    });
  }
  if (minLength !== undefined && (minLength < 0 || minLength > COMMAND_LIMITS.stringLength)) {
    add([...at, 'min_length'], {
      code: 'NUMBER_TYPE_MAX',
      message: `int value should be less than or equal to ${COMMAND_LIMITS.stringLength}.`,
    });
  }
  if (maxLength !== undefined && (maxLength < 1 || maxLength > COMMAND_LIMITS.stringLength)) {
    add([...at, 'max_length'], {
      code: 'NUMBER_TYPE_MAX',
      message: `int value should be less than or equal to ${COMMAND_LIMITS.stringLength}.`,
    });
  }
}

/** Characters counted toward the 4000 limit: names, descriptions, choice names and values. */
function commandSize(node: Json): number {
  const text = (value: unknown) =>
    typeof value === 'string' ? value.length : value === undefined ? 0 : String(value).length;
  let size = text(node.name) + text(node.description);
  for (const choice of (node.choices as Json[] | undefined) ?? [])
    size += text(choice.name) + text(choice.value);
  for (const option of (node.options as Json[] | undefined) ?? []) size += commandSize(option);
  return size;
}
