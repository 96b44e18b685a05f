/**
 * Commands typed as text (Slack slash commands, the playground's message box):
 * `/imagine a fox in the snow --ar 16:9 --seed 3 --no blurry, people`. Free text before the first
 * flag fills the command's first required text option (the prompt); each `--flag` takes the words
 * up to the next flag, so multi-word values need no quotes. Flags are option names or aliases.
 */
import { nearest } from '../src/edit-distance.js';
import { ValidationError } from '../src/errors.js';
import { findCommand } from './definitions.js';
import type { CommandArgs, CommandDef, OptionDef } from './types.js';

export interface ParsedText {
  /** `imagine`, or `atelier showcase` for a subcommand. */
  command: string;
  args: CommandArgs;
}

export function parseCommandText(commands: readonly CommandDef[], text: string): ParsedText {
  const trimmed = text.trim();
  const words = trimmed.replace(/^\//, '').split(/\s+/);
  const name = (words.shift() ?? '').toLowerCase();
  const top = commands.find((c) => c.name === name);
  if (!trimmed.startsWith('/') || !top) {
    throw new ValidationError('command', unknownCommand(commands, trimmed.startsWith('/') ? name : ''));
  }
  let command = top;
  let commandName = top.name;
  if (top.subcommands) {
    const subName = (words.shift() ?? '').toLowerCase();
    const sub = findCommand(commands, `${top.name} ${subName}`);
    if (!sub || !subName) {
      const guess = subName
        ? closest(
            subName,
            top.subcommands.map((s) => s.name),
          )
        : undefined;
      throw new ValidationError(
        'command',
        guess
          ? `Unknown command /${top.name} ${subName}; did you mean /${top.name} ${guess}?`
          : `/${top.name} needs one of: ${top.subcommands.map((s) => s.name).join(', ')}.`,
      );
    }
    command = sub;
    commandName = `${top.name} ${sub.name}`;
  }
  return { command: commandName, args: parseArgs(command, commandName, words.join(' ')) };
}

/** "unknown command /imgine; did you mean /imagine?", or the list of commands when nothing is close. */
export function unknownCommand(commands: readonly CommandDef[], name: string): string {
  const names = commands.map((c) => c.name);
  const guess = name ? closest(name.toLowerCase(), names) : undefined;
  if (guess) return `Unknown command /${name}; did you mean /${guess}?`;
  const all = names.map((n) => `/${n}`).join(', ');
  return name ? `Unknown command /${name}. Try ${all}.` : `I don't know that command. Try ${all}.`;
}

/** The candidate within a small edit distance (typos, swapped letters), if exactly one is nearest. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const near = nearest(word, candidates);
  // A prefix ("/imag") is a clear intent too.
  if (!near || near.distance > (word.length <= 5 ? 1 : 2)) {
    const prefixed = candidates.filter((c) => word.length >= 2 && c.startsWith(word));
    return prefixed.length === 1 ? prefixed[0] : undefined;
  }
  return near.tied || near.distance === 0 ? undefined : near.candidate;
}

function parseArgs(command: CommandDef, name: string, rest: string): CommandArgs {
  const options = command.options ?? [];
  const args: CommandArgs = {};
  // Split on flags at word starts: "--ar 16:9", "--seed=3", "—ar" (phones turn -- into an em dash).
  const parts = rest.split(/(?:^|\s)(?:--|—)(?=[A-Za-z])/);
  const free = parts.shift()?.trim() ?? '';
  const positional = positionalOf(options);
  if (free) {
    if (!positional) throw new ValidationError('options', `/${name} takes no text; ${usage(name, options)}`);
    args[positional.name] = positional.type === 'channel' ? channelId(free) : free;
  }
  for (const part of parts) {
    const match = /^([A-Za-z][\w-]*)(?:=|\s+|$)([\s\S]*)$/.exec(part.trim());
    if (!match) continue;
    const flag = match[1].toLowerCase().replace(/-/g, '_');
    const preset = options.find((o) => o.presets && Object.hasOwn(o.presets, flag));
    if (preset && !match[2].trim()) {
      args[preset.name] = preset.presets![flag]!;
      continue;
    }
    const option = options.find((o) => o.name === flag || o.aliases?.includes(flag));
    if (!option) {
      throw new ValidationError('options', `Unknown option --${match[1]}. ${usage(name, options)}`);
    }
    const value = match[2].trim();
    const earlier = args[option.name];
    if (option.repeatable && typeof earlier === 'string' && earlier !== '') {
      args[option.name] = `${earlier}, ${value}`;
      continue;
    }
    args[option.name] =
      option.type === 'boolean'
        ? value === '' || !/^(false|no|0|off)$/i.test(value)
        : option.type === 'channel'
          ? channelId(value)
          : value;
  }
  for (const option of options) {
    if (option.required && args[option.name] === undefined) {
      throw new ValidationError(
        option.name,
        `/${name} needs ${option.description.toLowerCase()}. ${usage(name, options)}`,
      );
    }
  }
  return args;
}

/** Slack writes channels as `<#C123|general>`; people type `#general` or the id. */
function channelId(text: string): string {
  const slack = /^<#([A-Z0-9]+)(?:\|[^>]*)?>$/.exec(text.trim());
  return slack ? slack[1] : text.trim().replace(/^#/, '');
}

export function usage(name: string, options: readonly OptionDef[]): string {
  const positional = positionalOf(options);
  const flags = options
    .filter((o) => o !== positional)
    .flatMap((o) => [
      `--${o.aliases?.[0] ?? o.name}${o.type === 'boolean' ? '' : ` <${o.name}>`}`,
      ...Object.keys(o.presets ?? {}).map((flag) => `--${flag}`),
    ]);
  const shown = positional ? (positional.required ? ` <${positional.name}>` : ` [<${positional.name}>]`) : '';
  return `Usage: /${name}${shown}${flags.length ? ` [${flags.join('] [')}]` : ''}`;
}

/** The option free text fills: the first required text or channel option, else one marked `positional`. */
function positionalOf(options: readonly OptionDef[]): OptionDef | undefined {
  const text = (o: OptionDef) => o.type === 'string' || o.type === 'channel';
  return options.find((o) => o.required && text(o)) ?? options.find((o) => o.positional && text(o));
}
