/**
 * A seeded PRNG of our own, so the tiny model's bytes never depend on a library or the platform:
 * xoshiro128** (Blackman & Vigna, 2018) seeded through splitmix32. Only 32-bit integer operations
 * and exact float arithmetic, so every engine produces the same stream.
 */

function splitmix32(state: number): [number, number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [next, (z ^ (z >>> 16)) >>> 0];
}

/** FNV-1a of a string's UTF-16 code units: gives each tensor its own stream. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class Xoshiro128 {
  #s = new Uint32Array(4);

  constructor(seed: number) {
    let state = seed | 0;
    for (let i = 0; i < 4; i++) {
      let value: number;
      [state, value] = splitmix32(state);
      this.#s[i] = value;
    }
  }

  /** The next 32 random bits. */
  next(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1), 24 bits (exact in float32). */
  float(): number {
    return (this.next() >>> 8) / 16777216;
  }

  /** Uniform in [-bound, bound). */
  symmetric(bound: number): number {
    return (this.float() * 2 - 1) * bound;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
