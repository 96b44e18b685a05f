/**
 * The `atelier` command's own manners: its version (from package.json, read at run time: there is
 * no build step) and "did you mean" for a mistyped command.
 */
import { readFileSync } from 'node:fs';
import { type Command, CommanderError } from 'commander';
import { nearest } from '../edit-distance.js';

export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * `atelier imagne` → "unknown command 'imagne'; did you mean 'imagine'?" on one line (exit 1),
 * for `command` and its subcommand groups, instead of commander's default.
 */
export function suggestOnUnknown(command: Command, write: (line: string) => void): void {
  command.on('command:*', (operands: string[]) => {
    const name = operands[0] ?? '';
    const known = command.commands.flatMap((c) => [c.name(), ...c.aliases()]).filter((n) => n !== 'help');
    const near = closest(name, known);
    const path = command.parent ? `atelier ${command.name()}` : 'atelier';
    const message = `${path}: unknown command '${name}'${near ? `; did you mean '${near}'?` : ''} (see ${path} --help)`;
    write(message);
    throw new CommanderError(1, 'commander.unknownCommand', message);
  });
}

/** The known name nearest to `typed` (Damerau–Levenshtein), when it is near enough to be a typo. */
export function closest(typed: string, known: readonly string[]): string | undefined {
  const near = nearest(typed, known, (s) => s.toLowerCase());
  return near && near.distance <= Math.max(1, Math.floor(near.candidate.length / 3))
    ? near.candidate
    : undefined;
}
