/**
 * The `atelier` command's own manners: its version (from package.json, read at run time: there is
 * no build step) and "did you mean" for a mistyped command.
 */
import { readFileSync } from 'node:fs';
import { type Command, CommanderError } from 'commander';

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
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = editDistance(typed.toLowerCase(), name.toLowerCase());
    if (!best || distance < best.distance) best = { name, distance };
  }
  if (!best) return undefined;
  return best.distance <= Math.max(1, Math.floor(best.name.length / 3)) ? best.name : undefined;
}

function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        value = Math.min(value, d[i - 2]![j - 2]! + 1);
      d[i]![j] = value;
    }
  }
  return d[a.length]![b.length]!;
}
