/**
 * How many single-character edits turn one word into another (optimal string alignment: an
 * insertion, a deletion, a substitution or a swap of two neighbours each count once). Config keys,
 * CLI commands and chat commands all suggest "did you mean" with it.
 */
export function editDistance(a: string, b: string): number {
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

export interface Nearest {
  candidate: string;
  distance: number;
  /** Another candidate is as near. */
  tied: boolean;
}

/** The candidate fewest edits away from `word`, both compared after `fold`; undefined when there is none. */
export function nearest(
  word: string,
  candidates: readonly string[],
  fold: (s: string) => string = (s) => s,
): Nearest | undefined {
  let best: Nearest | undefined;
  const folded = fold(word);
  for (const candidate of candidates) {
    const distance = editDistance(folded, fold(candidate));
    if (!best || distance < best.distance) best = { candidate, distance, tied: false };
    else if (distance === best.distance) best.tied = true;
  }
  return best;
}

/**
 * A configured name the user probably meant (styles, models, LoRAs): the nearest ignoring case
 * within 1 edit (2 past five letters) and untied, else the one name the word begins.
 */
export function closestName(word: string, names: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  const near = nearest(lower, names, (s) => s.toLowerCase());
  if (near && !near.tied && near.distance <= (word.length <= 5 ? 1 : 2)) return near.candidate;
  const prefixed = names.filter((n) => word.length >= 2 && n.toLowerCase().startsWith(lower));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/**
 * The item called `name` ignoring case and the space around `name` (configured models, styles,
 * LoRAs…: names users type); undefined when there is none.
 */
export function findByName<T>(items: Iterable<T>, name: string, nameOf: (item: T) => string): T | undefined {
  const wanted = name.trim().toLowerCase();
  for (const item of items) if (nameOf(item).toLowerCase() === wanted) return item;
  return undefined;
}
