/**
 * The 32-bit Mersenne Twister exactly as PyTorch's CPU generator runs it (at::mt19937,
 * pytorch/pytorch aten/src/ATen/core/MT19937RNGEngine.h): Matsumoto & Nishimura's mt19937 with
 * the 2002 initialisation, seeded with the low 32 bits of the 64-bit seed. `torch.manual_seed(s)`
 * builds a fresh engine from `s`, so `new MT19937(s)` is that generator's state.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

export class MT19937 {
  readonly #state = new Uint32Array(N);
  #next = N;

  /**
   * @param seed any integer (a number or bigint); only its low 32 bits matter, two's complement for
   * negative seeds, as torch stores a negative Python seed as its 64-bit two's complement.
   */
  constructor(seed: number | bigint) {
    const state = this.#state;
    state[0] = toUint32(seed);
    for (let j = 1; j < N; j++) {
      const prev = state[j - 1] ^ (state[j - 1] >>> 30);
      state[j] = Math.imul(1812433253, prev) + j;
    }
  }

  /** The next 32-bit draw (torch's `generator->random()`). */
  nextUint32(): number {
    if (this.#next >= N) this.#twist();
    let y = this.#state[this.#next++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /**
   * torch's `random64()` reduced to the 53 bits a double uniform keeps: the first draw is the high
   * word, the second the low word, masked to (1 << 53) − 1 and scaled by 2^-53.
   */
  nextDouble53(): number {
    const hi = this.nextUint32();
    const lo = this.nextUint32();
    return ((hi & 0x1fffff) * 0x100000000 + lo) / 2 ** 53;
  }

  /** torch's float uniform: the low 24 bits of one draw, scaled by 2^-24 (exact in float32). */
  nextFloat24(): number {
    return (this.nextUint32() & 0xffffff) / 0x1000000;
  }

  #twist(): void {
    const s = this.#state;
    let k = 0;
    for (; k < N - M; k++) {
      const y = (s[k] & UPPER_MASK) | (s[k + 1] & LOWER_MASK);
      s[k] = s[k + M] ^ (y >>> 1) ^ (s[k + 1] & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      const y = (s[k] & UPPER_MASK) | (s[k + 1] & LOWER_MASK);
      s[k] = s[k + M - N] ^ (y >>> 1) ^ (s[k + 1] & 1 ? MATRIX_A : 0);
    }
    const y = (s[N - 1] & UPPER_MASK) | (s[0] & LOWER_MASK);
    s[N - 1] = s[M - 1] ^ (y >>> 1) ^ (s[0] & 1 ? MATRIX_A : 0);
    this.#next = 0;
  }
}

function toUint32(seed: number | bigint): number {
  if (typeof seed === 'bigint') return Number(BigInt.asUintN(32, seed));
  if (!Number.isSafeInteger(seed)) throw new RangeError(`Expected an integer seed, got ${seed}`);
  return Number(BigInt.asUintN(32, BigInt(seed)));
}
