/**
 * The prompt-weight syntax of the reference's tokenizer (Stability-AI/sd3.5 @ fbf8f48,
 * other_impls.py `escape_important`, `parse_parentheses`, `token_weights`, `unescape_important`;
 * the syntax comes from ComfyUI): "(word)" multiplies the weight by 1.1, "(word:1.3)" sets it,
 * "\(" and "\)" are literal parentheses. SD3 ignores the weights; what matters for the token ids is
 * exactly which characters survive, so this follows the reference character for character,
 * including its handling of unbalanced parentheses and of ":x" suffixes that are not numbers.
 */

export interface WeightedSegment {
  text: string;
  weight: number;
}

// Escaped parentheses become control characters so the parser skips them (reference's choice).
const ESCAPED_CLOSE = '\0\u0001';
const ESCAPED_OPEN = '\0\u0002';

/** Splits a prompt into segments with their weights, as `token_weights(escape_important(text), 1.0)`. */
export function parsePromptWeights(prompt: string): WeightedSegment[] {
  const escaped = prompt.replaceAll('\\)', ESCAPED_CLOSE).replaceAll('\\(', ESCAPED_OPEN);
  return tokenWeights(escaped, 1.0).map(({ text, weight }) => ({ text: unescapeParentheses(text), weight }));
}

function unescapeParentheses(text: string): string {
  return text.replaceAll(ESCAPED_CLOSE, ')').replaceAll(ESCAPED_OPEN, '(');
}

function tokenWeights(text: string, currentWeight: number): WeightedSegment[] {
  const out: WeightedSegment[] = [];
  for (let item of parseParentheses(text)) {
    if (item.length >= 2 && item.startsWith('(') && item.endsWith(')')) {
      item = item.slice(1, -1);
      const colon = item.lastIndexOf(':');
      let weight = currentWeight * 1.1;
      if (colon > 0) {
        const parsed = parsePythonFloat(item.slice(colon + 1));
        if (parsed !== undefined) {
          weight = parsed;
          item = item.slice(0, colon);
        }
      }
      out.push(...tokenWeights(item, weight));
    } else {
      out.push({ text: item, weight: currentWeight });
    }
  }
  return out;
}

/** Top-level groups: "a (b (c)) d" → ["a ", "(b (c))", " d"]; stray ")" stay in the text. */
function parseParentheses(text: string): string[] {
  const result: string[] = [];
  let current = '';
  let nesting = 0;
  for (const char of text) {
    if (char === '(') {
      if (nesting === 0) {
        if (current) result.push(current);
        current = '(';
      } else {
        current += char;
      }
      nesting += 1;
    } else if (char === ')') {
      nesting -= 1;
      if (nesting === 0) {
        result.push(`${current})`);
        current = '';
      } else {
        current += char;
      }
    } else {
      current += char;
    }
  }
  if (current) result.push(current);
  return result;
}

// Python's str.isspace() characters, which float() strips from both ends.
const PY_SPACE =
  '[\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
// Python float() literals: digits with single underscores between them, optional fraction and
// exponent, or inf/infinity/nan; any Unicode decimal digit counts (\p{Nd}).
const DIGITS = '\\p{Nd}(?:_?\\p{Nd})*';
const PY_SPACE_RUNS = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'gu');
const PY_FLOAT = new RegExp(
  `^${PY_SPACE}*[+-]?(?:(?:(?:${DIGITS})?\\.${DIGITS}|${DIGITS}\\.?)(?:[eE][+-]?${DIGITS})?|inf(?:inity)?|nan)${PY_SPACE}*$`,
  'iu',
);

/** `float(text)` in Python, or undefined where Python raises ValueError. */
export function parsePythonFloat(text: string): number | undefined {
  if (!PY_FLOAT.test(text)) return undefined;
  const ascii = text
    .replace(PY_SPACE_RUNS, '')
    .replaceAll('_', '')
    .replace(/\p{Nd}/gu, (d) => String(digitValue(d)));
  const lower = ascii.toLowerCase().replace(/^\+/, '');
  if (lower === 'nan' || lower === '-nan') return Number.NaN;
  if (lower.endsWith('inf') || lower.endsWith('infinity')) {
    return lower.startsWith('-') ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  return Number.parseFloat(lower);
}

/**
 * The value of a Unicode decimal digit. Unicode encodes every decimal digit set as ten contiguous
 * code points from 0 to 9, and adjacent sets (the mathematical digits) start at a run boundary.
 */
function digitValue(digit: string): number {
  let start = digit.codePointAt(0)!;
  while (start > 0 && /\p{Nd}/u.test(String.fromCodePoint(start - 1))) start--;
  return (digit.codePointAt(0)! - start) % 10;
}
