/**
 * The conditioning of recent prompts, so a reroll or a variation of the same prompt skips the text
 * encoders (CLIP-L, CLIP-G and T5: on a GPU tens of milliseconds, on the CPU seconds for T5-XXL).
 * Least recently used entries are evicted past a byte budget. It lives in the pipeline process,
 * owned by the engine.
 *
 * An entry is the pair (prompt, negative prompt) encoded together, never one prompt alone: the
 * encoders batch the pair, and a batch may round differently from a single prompt, so caching per
 * prompt would make an image depend on which jobs ran before it. Keys hold everything the
 * conditioning depends on: the text encoders' identity (model, weights, precision, compute type,
 * provider: LoadedComponents.textKey) and the token ids of both prompts (what the tokenizers made
 * of the texts, truncation included).
 */
import type { Conditioning } from './conditioning.js';

export interface PromptCacheStats {
  hits: number;
  misses: number;
  evictions: number;
  entries: number;
  bytes: number;
  budgetBytes: number;
}

/** 64 MiB: about a dozen SD3.5 pairs (2 × 154 tokens × 4096 floats ≈ 5 MB each). */
export const DEFAULT_PROMPT_CACHE_BYTES = 64 * 2 ** 20;

export function conditioningBytes(conds: readonly Conditioning[]): number {
  return conds.reduce((sum, c) => sum + c.context.byteLength + c.y.byteLength, 0);
}

function copy(c: Conditioning): Conditioning {
  return { context: c.context.slice(), tokens: c.tokens, y: c.y.slice() };
}

export class PromptCache {
  readonly #entries = new Map<string, { conds: Conditioning[]; bytes: number }>();
  #bytes = 0;
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  constructor(readonly budgetBytes: number = DEFAULT_PROMPT_CACHE_BYTES) {}

  /**
   * The conditioning under `key`, or `encode()`'s result, stored when it fits the budget. Callers
   * get their own copies: nothing they do to them reaches the cache.
   */
  async get(
    key: string,
    encode: () => Promise<Conditioning[]>,
  ): Promise<{ conds: Conditioning[]; hit: boolean }> {
    const found = this.#entries.get(key);
    if (found) {
      this.#hits++;
      // Map order is insertion order: re-inserting makes this the most recently used.
      this.#entries.delete(key);
      this.#entries.set(key, found);
      return { conds: found.conds.map(copy), hit: true };
    }
    this.#misses++;
    const conds = await encode();
    const bytes = conditioningBytes(conds);
    if (bytes <= this.budgetBytes && !this.#entries.has(key)) {
      this.#entries.set(key, { conds: conds.map(copy), bytes });
      this.#bytes += bytes;
      for (const [oldest, entry] of this.#entries) {
        if (this.#bytes <= this.budgetBytes) break;
        this.#entries.delete(oldest);
        this.#bytes -= entry.bytes;
        this.#evictions++;
      }
    }
    return { conds, hit: false };
  }

  has(key: string): boolean {
    return this.#entries.has(key);
  }

  stats(): PromptCacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
      entries: this.#entries.size,
      bytes: this.#bytes,
      budgetBytes: this.budgetBytes,
    };
  }
}
